"""qsub: submit a job script.

    qsub [-j NAME] [-q QUEUE] [-r RETRIES] [-d DEFINITION] [-c COMMANDS] [-p JSON]
         [--wait] [--host NAME] FILE|-

Options on the command line override ``#HYPER`` directives in the script.
Only the job id goes to stdout, so ``id=$(qsub job.sh)`` works.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hyper.errors import EXIT_CANCELLED, UsageError
from qtools.common import ArgumentParser, add_host_option, connect, run
from qtools.directives import JobOptions, leading_block, parse_directives, parse_retries

WAIT_POLL_SECONDS = 20.0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="qsub", description="Submit a job script to a hyper queue.")
    parser.add_argument("file", nargs="?", metavar="FILE", help="the job script, or - for stdin")
    parser.add_argument(
        "-j",
        "--job-name",
        "--name",
        dest="name",
        metavar="NAME",
        help="job name (default: the script's file name)",
    )
    parser.add_argument("-q", "--queue", metavar="QUEUE", help="queue to submit to")
    parser.add_argument(
        "-r",
        "--retries",
        metavar="N",
        help="retries after the first attempt when it fails (default 0)",
    )
    parser.add_argument("-d", "--definition", metavar="DEFINITION", help="job definition")
    parser.add_argument(
        "-c",
        "--commands",
        metavar="COMMANDS",
        help="run these commands instead of the script's body (directives kept)",
    )
    parser.add_argument(
        "-p",
        "--params",
        metavar="JSON",
        help='literal text replacements applied to the script first, e.g. \'{"X": "1"}\'',
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait for the job to end and exit with its exit code"
    )
    add_host_option(parser)
    return parser


def read_script(file: str | None) -> tuple[str, str]:
    """The script's text and the default job name."""
    if file is None:
        return "", "wrap"
    if file == "-":
        data = sys.stdin.buffer.read()
        name = "stdin"
    else:
        path = Path(file)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"no such file: {file}") from None
        except IsADirectoryError:
            raise UsageError(f"{file} is a directory, not a script") from None
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from None
        name = path.name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            f"{file if file != '-' else 'stdin'} is not a text script (invalid UTF-8)"
        ) from None
    if "\x00" in text:
        raise UsageError(
            f"{file if file != '-' else 'stdin'} is not a text script (it has NUL bytes)"
        )
    if "\r\n" in text:
        # a script saved on Windows would fail in bash at its first line ending
        text = text.replace("\r\n", "\n")
        sys.stderr.write("qsub: the script's DOS line endings (CRLF) were converted to LF\n")
    return text, name


def apply_params(text: str, params: str) -> str:
    try:
        replacements = json.loads(params)
    except ValueError as exc:
        raise UsageError(f"-p/--params is not valid JSON: {exc}") from None
    if not isinstance(replacements, dict) or not all(
        isinstance(v, (str, int, float)) for v in replacements.values()
    ):
        raise UsageError('-p/--params must be a JSON object of replacements, e.g. {"X": "1"}')
    for old, new in replacements.items():
        text = text.replace(old, str(new))
    return text


def replace_body(text: str, commands: str) -> str:
    lines = text.splitlines()
    block = leading_block(text)
    kept = (
        lines[: block[-1][0]] if block else lines[:1] if lines and lines[0].startswith("#!") else []
    )
    return "\n".join([*kept, commands]) + "\n"


def build_job(args: object) -> dict[str, object]:
    file = getattr(args, "file", None)
    commands = getattr(args, "commands", None)
    if file is None and commands is None:
        raise UsageError("give a script FILE (or - for stdin), or -c COMMANDS")
    text, default_name = read_script(file)
    if getattr(args, "params", None):
        text = apply_params(text, args.params)  # type: ignore[attr-defined]
    if commands is not None:
        text = replace_body(text, commands)
    if not text.strip():
        raise UsageError(f"{file} is empty: nothing to run")
    retries = getattr(args, "retries", None)
    given = JobOptions(
        name=getattr(args, "name", None),
        queue=getattr(args, "queue", None),
        retries=parse_retries(retries, "-r/--retries") if retries is not None else None,
        definition=getattr(args, "definition", None),
    )
    options = given.merged_over(parse_directives(text))
    if not options.queue:
        raise UsageError("no queue: give -q QUEUE or a '#HYPER -q QUEUE' line")
    if not options.definition:
        raise UsageError("no job definition: give -d DEFINITION or a '#HYPER -d DEFINITION' line")
    return {
        "name": options.name or default_name,
        "queue": options.queue,
        "definition": options.definition,
        "retries": options.retries or 0,
        "script": text,
        "submit_dir": os.getcwd(),
    }


def exit_code_of(job: dict[str, object]) -> int:
    status = job["status"]
    if status == "Successful":
        return 0
    if status == "Cancelled":
        return EXIT_CANCELLED
    code = job.get("exit_code")
    return code if isinstance(code, int) and code > 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        job = build_job(args)
        with connect(args.host) as client:
            job_id = client.submit([job])[0]
            sys.stdout.write(f"{job_id}\n")
            sys.stdout.flush()
            if not args.wait:
                return 0
            while True:
                record = client.get_job(job_id, wait=WAIT_POLL_SECONDS)
                if record["status"] in ("Successful", "Failed", "Cancelled"):
                    return exit_code_of(record)

    return run("qsub", body)


if __name__ == "__main__":
    sys.exit(main())
