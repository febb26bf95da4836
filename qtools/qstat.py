"""qstat: list jobs and their states, or every field of one job.

    qstat [-q QUEUE] [-j NAME] [-f STATUS] [-a ARRAY] [--expand] [-o] [--json]
          [--noheader] [--limit N] [--after ID] [--host NAME]
    qstat -i ID [--json]

Arrays show as one line each unless --expand (or a status filter, or -a). The
totals line counts every matching job (array tasks one by one) from the host's
store, however long the listing. JSON output is versioned:
``{"version": 1, "jobs": [...], "counts": {...}, "next": ID or null}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from hyper import jobspec
from hyper.errors import UsageError
from hyper.jobs import ALL_STATUSES, JobStatus
from qtools.common import ArgumentParser, add_host_option, connect, job_id_of, run

JSON_VERSION = 1
COLUMNS = ("ID", "NAME", "QUEUE", "STATUS", "ATTEMPTS", "RETRIES LEFT", "EXIT", "REASON")
DEFAULT_LIMIT = 1000


def _truthy(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise UsageError(f"-o/--only-job-id-out takes no value (or True/False), not {text!r}")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="qstat", description="Show hyper jobs.")
    add = parser.add_argument
    add("-q", "--queue", help="only this queue (default: all queues)")
    add("-i", "--job-id", metavar="ID", help="every field of one job, array or task (ID_3)")
    add("-j", "--job-name", metavar="NAME", help="only jobs whose name starts with this")
    add("-f", "--filter-status", metavar="STATUS",
        help="only jobs in this state: " + ", ".join(s.value for s in ALL_STATUSES))  # fmt: skip
    add("-a", "--array", type=int, metavar="ARRAY_ID", help="only the tasks of this array")
    add("--expand", action="store_true", help="list array tasks one by one")
    add("-o", "--only-job-id-out", nargs="?", const="true", default="false", metavar="",
        help="print job ids only, one a line (for pipes)")  # fmt: skip
    add("--json", action="store_true", help="machine-readable output (versioned)")
    add("--noheader", action="store_true", help="no column titles and no totals line")
    add("--limit", type=int, default=DEFAULT_LIMIT,
        help=f"list at most this many jobs (0: all; default {DEFAULT_LIMIT})")  # fmt: skip
    add("--after", type=int, default=0, metavar="ID", help="continue a listing after this id")
    add_host_option(parser)
    return parser


def _when(value: Any) -> str:
    if not value:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))


def print_job(job: dict[str, Any]) -> None:
    for key, value in job.items():
        if key in ("created", "started", "ended", "lease_until"):
            value = _when(value)
        elif key == "env":
            value = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key == "counts":
            value = " ".join(f"{k}={v}" for k, v in value.items() if v) or "-"
        elif value is None or value == {}:
            value = "-"
        sys.stdout.write(f"{key:<17}{value}\n")


def _row(job: dict[str, Any]) -> list[str]:
    def text(value: Any) -> str:
        return "-" if value is None else str(value)

    if job.get("kind") == "array":
        tasks = ", ".join(f"{n} {s}" for s, n in job["counts"].items() if n)
        job_id = f"{job['id']}[{job['spec']}]" if job["spec"][:1].isdigit() else f"{job['id']}[]"
        return [job_id, job["name"], job["queue"], job["status"], "-", "-", "-",
                f"{job['size']} tasks: {tasks}"]  # fmt: skip
    name = job["name"]
    job_id = str(job["id"])
    if job.get("array_id") is not None:
        job_id = f"{job['array_id']}_{job['array_index']}"
    reason = (job.get("reason") or "")[:70]
    return [job_id, name, job["queue"], job["status"], text(job["attempt"]),
            text(job["retries_left"]), text(job["exit_code"]), reason]  # fmt: skip


def print_table(jobs: list[dict[str, Any]], header: bool) -> None:
    rows = [_row(job) for job in jobs]
    titles = list(COLUMNS)
    widths = [max(len(cell) for cell in column) for column in zip(titles, *rows, strict=True)]
    for row in ([titles] if header else []) + rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        only_ids = _truthy(args.only_job_id_out)
        statuses = [JobStatus.parse(args.filter_status).value] if args.filter_status else None
        if args.limit < 0:
            raise UsageError("--limit must be 0 or more")
        one = jobspec.parse_selector(args.job_id) if args.job_id is not None else None
        with connect(args.host) as client:
            if one is not None:
                job = client.get_job(job_id_of(client, one))
                if args.json:
                    out = {"version": JSON_VERSION, "job": job}
                    sys.stdout.write(json.dumps(out, indent=2) + "\n")
                else:
                    print_job(job)
                return 0
            filters = {"queue": args.queue, "name_prefix": args.job_name, "array": args.array}
            collapse = not (args.expand or statuses or args.array)
            limit = args.limit or None
            jobs = list(
                client.iter_jobs(
                    limit=None if limit is None else limit + 1,
                    after=args.after or None,
                    status=statuses,
                    collapse=collapse,
                    **filters,
                )
            )
            more = limit is not None and len(jobs) > limit
            jobs = jobs[:limit]
            next_after = jobs[-1]["id"] if more else None
            if more and not args.json:
                sys.stderr.write(
                    f"qstat: showing {len(jobs)}; continue with --after {next_after}\n"
                )
            if only_ids:
                sys.stdout.write("".join(f"{job['id']}\n" for job in jobs))
                return 0
            counts = client.count_jobs(**filters)
            if args.json:
                out = {"version": JSON_VERSION, "jobs": jobs, "counts": counts, "next": next_after}
                sys.stdout.write(json.dumps(out, indent=2) + "\n")
                return 0
            if jobs:
                print_table(jobs, header=not args.noheader)
            if not args.noheader:
                totals = ["Total"] + [s.value for s in ALL_STATUSES]
                sys.stdout.write("  ".join(f"{k}: {counts.get(k, 0)}" for k in totals) + "\n")
        return 0

    return run("qstat", body)


if __name__ == "__main__":
    sys.exit(main())
