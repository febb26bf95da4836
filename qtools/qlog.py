"""qlog: print a job's output, lifecycle events or metrics.

    qlog ID [-t STDOUT|STDERR|SYSTEM|METRICS|ALL] [-f] [--host NAME]

Without -t it prints the job's output (stdout and stderr as they arrived).
SYSTEM, METRICS and ALL print ``TYPE | time | text`` lines. -f follows the job
until it ends. An array's id prints each task's log in turn under a
``==> task INDEX (job ID, STATUS) <==`` header; name one task (``ID_3``) to follow it.
"""

from __future__ import annotations

import sys
import time

from hyper import jobspec
from hyper.errors import UsageError
from hyper.jobs import LogKind
from qtools.common import ArgumentParser, add_host_option, connect, job_id_of, run

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a command's start 3 ms
if TYPE_CHECKING:
    from typing import Any

    from hyper.client import HostClient

FOLLOW_WAIT_SECONDS = 10.0
TYPES = {
    "STDOUT": [LogKind.STDOUT],
    "STDERR": [LogKind.STDERR],
    "SYSTEM": [LogKind.SYSTEM],
    "METRICS": [LogKind.METRICS],
    "ALL": list(LogKind),
    "OUTPUT": [LogKind.STDOUT, LogKind.STDERR],
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="qlog", description="Print the log of a hyper job.")
    parser.add_argument("id", nargs="?", metavar="ID", help="the job id, or a task: ARRAY_ID_3")
    parser.add_argument("-i", "--job-id", metavar="ID", help="the job id (as the original qlog)")
    parser.add_argument(
        "-q", "--queue", help="accepted for compatibility: the id alone names a job"
    )
    parser.add_argument(
        "-t",
        "--log-type",
        default="OUTPUT",
        metavar="TYPE",
        help="STDOUT, STDERR, SYSTEM (lifecycle events), METRICS or ALL",
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the job ends"
    )
    add_host_option(parser)
    return parser


def _stamp(entry: dict[str, Any]) -> str:
    seconds = float(entry["time"])
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))
        + f".{int(seconds % 1 * 1000):03d}"
    )


def write_entries(entries: list[dict[str, Any]], raw: bool, only: str | None = None) -> None:
    """Output entries on stdout, as the job wrote them: in UTF-8 whatever the locale says
    (a job's characters a locale cannot encode are still the job's, and `qlog ID > file`
    gets its bytes back). `only`: one stream's (STDOUT or STDERR), with the notes of the
    other that say where output was cut: they are said once, in either."""
    out = sys.stdout
    if (out.encoding or "").lower().replace("-", "") != "utf8" and hasattr(out, "reconfigure"):
        out.flush()
        out.reconfigure(encoding="utf-8", errors="replace")
    if only is not None:
        from hyper.output import is_cut_note

        entries = [e for e in entries if e["kind"] == only or is_cut_note(e["text"])]
    for entry in entries:
        if raw:
            out.write(entry["text"])
        else:
            text = entry["text"].rstrip("\n")
            out.write(f"{entry['kind']} | {_stamp(entry)} | {text}\n")
    out.flush()


def print_array(
    client: HostClient,
    array: dict[str, Any],
    kinds: list[str],
    raw: bool,
    follow: bool,
    only: str | None = None,
) -> int:
    """Each task's log in turn, under a header naming it."""
    if follow:
        raise UsageError(
            f"{array['id']} is an array of {array['size']} tasks: follow one, e.g."
            f" qlog -f {array['id']}_INDEX"
        )
    for task in client.iter_jobs(array=array["id"]):
        sys.stdout.write(
            f"==> task {task['array_index']} (job {task['id']}, {task['status']}) <==\n"
        )
        after = 0
        while True:
            page = client.read_log(int(task["id"]), kinds=kinds, after=after)
            write_entries(page["entries"], raw, only)
            if not page["entries"]:
                break
            after = page["next"]
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        named = args.id if args.id is not None else args.job_id
        if named is None:
            raise UsageError("give a job ID")
        selector = jobspec.parse_selector(named)
        kind = args.log_type.upper()
        if kind not in TYPES:
            raise UsageError(
                f"unknown log type {args.log_type!r}; use STDOUT, STDERR, SYSTEM, METRICS or ALL"
            )
        raw = kind in ("OUTPUT", "STDOUT", "STDERR")
        # one stream's log is read with the other's, for the notes where output was cut
        only = kind if kind in ("STDOUT", "STDERR") else None
        kinds = [k.value for k in TYPES["OUTPUT" if only else kind]]
        with connect(args.host) as client:
            job_id = job_id_of(client, selector)
            if selector.indices is None:
                record = client.get_job(job_id)
                if record.get("kind") == "array":
                    return print_array(client, record, kinds, raw, args.follow, only)
            if args.queue is not None:
                job = client.get_job(job_id)
                if job["queue"] != args.queue:
                    raise UsageError(
                        f"job {job_id} is in queue {job['queue']!r}, not {args.queue!r}"
                    )
            after = 0
            while True:
                page = client.read_log(
                    job_id,
                    kinds=kinds,
                    after=after,
                    wait=FOLLOW_WAIT_SECONDS if args.follow else None,
                )
                write_entries(page["entries"], raw, only)
                after = page["next"]
                if page["entries"]:
                    continue
                if not args.follow or page["finished"]:
                    return 0

    return run("qlog", body, whole_process=argv is None)


if __name__ == "__main__":
    sys.exit(main())
