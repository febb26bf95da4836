"""qsub: submit a job script, an array of tasks, or a list of work items.

    qsub [options] FILE|-

Options on the command line override ``#HYPER`` lines, which override
``#SBATCH``/``#PBS``/``#BSUB`` lines. Only the job id goes to stdout, so
``id=$(qsub job.sh)`` works; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hyper import jobspec
from hyper.errors import UsageError, is_utf8, one_line
from hyper.jobs import SECRET_VARIABLES, wait_exit_code
from qtools.common import ArgumentParser, add_host_option, connect, run
from qtools.directives import (
    JobOptions,
    add_job_options,
    leading_block,
    options_from,
    parse_directives,
)

WAIT_POLL_SECONDS = 20.0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="qsub", description="Submit a job script to a hyper queue.", add_help=False
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("file", nargs="?", metavar="FILE", help="the job script, or - for stdin")
    add_job_options(parser)
    add = parser.add_argument
    add(
        "-c",
        "--commands",
        metavar="COMMANDS",
        help="run these commands instead of the script's body (directives kept)",
    )
    add(
        "-p",
        "--params",
        metavar="JSON",
        help='literal text replacements applied to the script first, e.g. \'{"X": "1"}\'',
    )
    add(
        "--workitems",
        metavar="ITEMS",
        help="one task per work item: 01-16 (a range) or a,b,c (as given)",
    )
    add("--workitem-file", metavar="FILE", help="work items one a line, - for stdin")
    add("--prefix", default="", help="put before every work item (e.g. Dam001/Period)")
    add("--padding", type=int, default=3, help="zero-fill numeric work items to this width")
    add(
        "--directives",
        choices=("hyper", "all", "none"),
        default="all",
        help="which directive lines to read: #HYPER only, also #SBATCH/#PBS/#BSUB (default), none",
    )
    add("--dry-run", action="store_true", help="print what would be submitted; submit nothing")
    add(
        "--wait",
        action="store_true",
        help="wait for the job (every task of an array) to end; exit with its exit code",
    )
    add_host_option(parser)
    return parser


def read_script(file: str | None, notes: list[str]) -> tuple[str, str]:
    """The script's text and the default job name; what the user should know goes to `notes`."""
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
    check_size(len(data), source(file))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source(file)} is not a text script (invalid UTF-8)") from None
    if "\x00" in text:
        raise UsageError(f"{source(file)} is not a text script (it has NUL bytes)")
    if "\r\n" in text:
        # a script saved on Windows would fail in bash at its first line ending
        text = text.replace("\r\n", "\n")
        notes.append("the script's DOS line endings (CRLF) were converted to LF")
    return text, name


def source(file: str | None) -> str:
    """How messages name where the script came from."""
    return "stdin" if file == "-" else "-c COMMANDS" if file is None else file


def check_size(size: int, where: str) -> None:
    """Refuse a script over MAX_SCRIPT_BYTES (4 MiB, Slurm's default max_script_size)."""
    if size > jobspec.MAX_SCRIPT_BYTES:
        mib = size / 2**20
        amount = f"{mib:.1f} MiB" if round(mib, 1) > 4 else f"{size:,} bytes"
        raise UsageError(f"{where} is {amount}; scripts are limited to 4 MiB")


def apply_params(text: str, params: str) -> str:
    try:
        replacements = json.loads(params)
    except ValueError as exc:
        raise UsageError(f"-p/--params is not valid JSON: {exc}") from None
    if not isinstance(replacements, dict) or not all(
        k and isinstance(v, str) for k, v in replacements.items()
    ):
        raise UsageError(
            '-p/--params must be a JSON object of text replacements (strings), e.g. {"X": "1"}'
        )
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def replace_body(text: str, commands: str) -> str:
    lines = text.splitlines()
    block = leading_block(text)
    kept = (
        lines[: block[-1][0]] if block else lines[:1] if lines and lines[0].startswith("#!") else []
    )
    return "\n".join([*kept, commands]) + "\n"


def script_options(text: str, directives: str, notes: list[str]) -> tuple[JobOptions, list[str]]:
    """The options a script's directive lines give (with warnings in `notes` for what
    hyper ignores), and the schedulers whose directives it carried."""
    if directives == "none":
        return JobOptions(), []
    own = parse_directives(text)
    if directives == "hyper":
        return own, []
    if not any(prefix in text for prefix in ("#SBATCH", "#PBS", "#BSUB")):
        return own, []
    from qtools.foreign import translate  # only for scripts written for another scheduler

    foreign = translate(text)
    notes += [f"warning: {warning}" for warning in foreign.warnings]
    return own.merged_over(foreign.options), foreign.schedulers


def environment(options: JobOptions, notes: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    if options.export_all:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        # a job's variables are text with plain names: exported bash functions
        # (BASH_FUNC_f%%) and values that are not UTF-8 stay behind, said once
        left = [k for k, v in env.items() if not (jobspec.ENV_NAME.fullmatch(k) and is_utf8(v))]
        for name in left:
            del env[name]
        if left:
            names = ", ".join(one_line(name) for name in sorted(left))
            notes.append(f"warning: -V: not passed (not a plain name, or not UTF-8): {names}")
    for item in options.env:
        if "=" in item:
            name, value = jobspec.parse_env_pair(item)
        else:  # NAME alone: its value in the submitting shell, as Slurm's --export=NAME
            name = jobspec.check_env_name(item)
            if name not in os.environ:
                raise UsageError(f"-v {name}: no such variable in this shell; use NAME=VALUE")
            value = os.environ[name]
        env[name] = value
    return env


def array_body(options: JobOptions, args: argparse.Namespace) -> dict[str, Any] | None:
    items = None
    if args.workitems is not None:
        items = jobspec.expand_work_items(args.workitems, args.prefix, args.padding)
    if args.workitem_file is not None:
        if items is not None:
            raise UsageError("give --workitems or --workitem-file, not both")
        lines = read_lines(args.workitem_file, "--workitem-file")
        items = [f"{args.prefix}{line}" for _, line in lines]
        if not items:
            raise UsageError("--workitem-file has no work items")
    if items is not None:
        if options.array:
            raise UsageError("give -a/--array or work items, not both")
        tasks = [
            {
                "name": jobspec.check_job_name(item.replace("/", "_"), "work item"),
                "env": {"HYPER_WORK_ITEM": item, "WORK_ITEM": item},
            }
            for item in items
        ]
        return {"tasks": tasks}
    if options.array is None:
        return None
    if Path(options.array).is_file():  # the original tool's array file
        tasks = []
        for number, line in read_lines(options.array, "-a"):
            try:
                replacements = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{options.array} line {number}: not JSON: {exc}") from None
            if not isinstance(replacements, dict) or "" in replacements:
                raise UsageError(
                    f"{options.array} line {number}: use a JSON object of replacements"
                )
            tasks.append({"replacements": {k: str(v) for k, v in replacements.items()}})
        if not tasks:
            raise UsageError(f"array file {options.array} has no lines")
        return {"tasks": tasks}
    jobspec.parse_array(options.array)  # refuse a bad spec before anything is sent
    return {"spec": options.array}


def read_lines(source: str, flag: str) -> list[tuple[int, str]]:
    """The non-blank lines of a file (or stdin), stripped, with their line numbers."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"{flag} {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {source}: not a text file") from None
    numbered = enumerate(text.splitlines(), start=1)
    return [(number, line.strip()) for number, line in numbered if line.strip()]


def build_job(args: argparse.Namespace, notes: list[str] | None = None) -> dict[str, Any]:
    """The job to submit. Notes for the user (CRLF converted, directives ignored) are
    written once the job is built, or added to `notes` for the caller to write once
    the host took it: a refused job gets one line, its error."""
    if args.file is None and args.commands is None:
        raise UsageError("give a script FILE (or - for stdin), or -c COMMANDS")
    if args.file == "-" and args.workitem_file == "-":
        raise UsageError("the script and the work items cannot both come from stdin")
    said: list[str] = []
    text, default_name = read_script(args.file, said)
    if args.params is not None:
        text = apply_params(text, args.params)
    if args.commands is not None:
        text = replace_body(text, args.commands)
    check_size(len(text.encode()), source(args.file))
    if not text.strip():
        raise UsageError(f"{source(args.file)} is empty: nothing to run")
    in_script, schedulers = script_options(text, args.directives, said)
    options = options_from(args, "").merged_over(in_script)
    if not options.queue:
        raise UsageError("no queue: give -q QUEUE or a '#HYPER -q QUEUE' line")
    if not options.definition:
        raise UsageError("no job definition: give -d DEFINITION or a '#HYPER -d DEFINITION' line")
    submit_dir = os.getcwd()
    if not is_utf8(submit_dir):
        raise UsageError(f"the current directory {one_line(submit_dir)} is not UTF-8; cd elsewhere")
    job: dict[str, Any] = {
        "name": jobspec.check_job_name(default_name if options.name is None else options.name),
        "queue": options.queue,
        "definition": options.definition,
        "retries": options.retries or 0,
        "script": text,
        "submit_dir": submit_dir,
        "env": environment(options, said),
        "priority": options.priority or 0,
        "hold": bool(options.hold),
        "depends": [
            {"kind": d.kind, "target": d.target}
            for spec in options.depends
            for d in jobspec.parse_dependencies(spec)
        ],
    }
    if options.time_limit is not None:
        job["time_limit"] = jobspec.parse_time_limit(options.time_limit)
    if options.stdout or options.stderr:
        job["output"] = {
            "stdout": options.stdout,
            "stderr": options.stderr,
            "join": bool(options.join),
        }
    if schedulers:
        job["compat"] = schedulers
    array = array_body(options, args)
    if array is not None:
        job["array"] = array
    if notes is None:
        sys.stderr.write("".join(f"qsub: {note}\n" for note in said))
    else:
        notes += said
    return job


def describe(job: dict[str, Any]) -> str:
    """What --dry-run prints: the job as it would be submitted."""
    lines = [f"{key}: {job[key]}" for key in ("name", "queue", "definition", "retries", "priority")]
    for key in ("time_limit", "hold", "submit_dir"):
        if job.get(key):
            lines.append(f"{key}: {job[key]}")
    if job["depends"]:
        lines.append("depends: " + ", ".join(f"{d['kind']}:{d['target']}" for d in job["depends"]))
    if job.get("output"):
        lines.append("output: " + json.dumps(job["output"]))
    env = job["env"]
    lines.append(f"environment: {len(env)} variables")
    lines += [f"  {name}={value}" for name, value in sorted(env.items())[:20]]
    array = job.get("array")
    if array and array.get("spec"):
        parsed = jobspec.parse_array(array["spec"])
        shown = ", ".join(map(str, parsed.indices[:10])) + (
            " ..." if len(parsed.indices) > 10 else ""
        )
        cap = f", at most {parsed.cap} at once" if parsed.cap else ""
        lines.append(f"tasks: {len(parsed.indices)} (indices {shown}){cap}")
    elif array:
        lines.append(f"tasks: {len(array['tasks'])}")
        for number, task in enumerate(array["tasks"], start=1):
            detail = " ".join(f"{k}={v}" for k, v in task.get("env", {}).items())
            detail += " ".join(f"{k}->{v}" for k, v in task.get("replacements", {}).items())
            lines.append(f"  {number}  {task.get('name') or job['name']}  {detail}".rstrip())
    lines.append("script:")
    lines += [f"  | {line}" for line in job["script"].splitlines()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        notes: list[str] = []
        job = build_job(args, notes)
        said = "".join(f"qsub: {note}\n" for note in notes)
        if args.dry_run:
            sys.stdout.write(describe(job))
            sys.stderr.write(f"{said}qsub: dry run: nothing was submitted\n")
            return 0
        with connect(args.host) as client:
            job_id = client.submit([job])[0]
            sys.stdout.write(f"{job_id}\n")
            sys.stdout.flush()
            sys.stderr.write(said)
            if not args.wait:
                return 0
            while True:
                record = client.get_job(job_id, wait=WAIT_POLL_SECONDS)
                counts = record.get("counts") or {record["status"]: 1}
                unfinished = sum(
                    n for s, n in counts.items() if s not in ("Successful", "Failed", "Cancelled")
                )
                if not unfinished:
                    highest = record.get("highest_exit_code", record.get("exit_code"))
                    return wait_exit_code(counts, highest)

    return run("qsub", body)


if __name__ == "__main__":
    sys.exit(main())
