"""qstat: list jobs and their states, or every field of one job.

    qstat [-q QUEUE] [-j NAME] [-f STATUS] [-o] [--json] [--limit N] [--host NAME]
    qstat -i ID [--json]

JSON output (``--json``) is versioned: ``{"version": 1, "jobs": [...], "counts": {...}}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from hyper.errors import UsageError
from hyper.jobs import ALL_STATUSES, JobStatus
from qtools.common import ArgumentParser, add_host_option, connect, run

JSON_VERSION = 1
COLUMNS = (
    ("ID", "id"),
    ("NAME", "name"),
    ("QUEUE", "queue"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempt"),
    ("RETRIES LEFT", "retries_left"),
    ("EXIT", "exit_code"),
)


def _truthy(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise UsageError(f"-o/--only-job-id-out takes no value (or True/False), not {text!r}")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="qstat", description="Show hyper jobs.")
    parser.add_argument("-q", "--queue", help="only this queue (default: all queues)")
    parser.add_argument("-i", "--job-id", type=int, metavar="ID", help="every field of one job")
    parser.add_argument("-j", "--job-name", metavar="NAME", help="only jobs with this name")
    parser.add_argument(
        "-f",
        "--filter-status",
        metavar="STATUS",
        help="only jobs in this state: " + ", ".join(s.value for s in ALL_STATUSES),
    )
    parser.add_argument(
        "-o",
        "--only-job-id-out",
        nargs="?",
        const="true",
        default="false",
        metavar="",
        help="print job ids only, one a line (for pipes)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--limit", type=int, default=1000, help="list at most this many jobs (0: all; default 1000)"
    )
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
        elif value is None:
            value = "-"
        sys.stdout.write(f"{key:<17}{value}\n")


def print_table(jobs: list[dict[str, Any]]) -> None:
    titles = [title for title, _ in COLUMNS]
    rows = [[str("-" if job[key] is None else job[key]) for _, key in COLUMNS] for job in jobs]
    widths = [max(len(cell) for cell in column) for column in zip(titles, *rows, strict=True)]
    for row in (titles, *rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        only_ids = _truthy(args.only_job_id_out)
        try:
            statuses = [JobStatus.parse(args.filter_status).value] if args.filter_status else None
        except ValueError as error:
            raise UsageError(str(error)) from None
        if args.limit < 0:
            raise UsageError("--limit must be 0 or more")
        with connect(args.host) as client:
            if args.job_id is not None:
                job = client.get_job(args.job_id)
                if args.json:
                    sys.stdout.write(
                        json.dumps({"version": JSON_VERSION, "job": job}, indent=2) + "\n"
                    )
                else:
                    print_job(job)
                return 0
            filters = {"queue": args.queue, "name": args.job_name}
            jobs = list(client.iter_jobs(limit=args.limit or None, status=statuses, **filters))
            if only_ids:
                sys.stdout.write("".join(f"{job['id']}\n" for job in jobs))
                return 0
            counts = client.count_jobs(**filters)
            if args.json:
                out = {"version": JSON_VERSION, "jobs": jobs, "counts": counts}
                sys.stdout.write(json.dumps(out, indent=2) + "\n")
                return 0
            if jobs:
                print_table(jobs)
            shown = sum(counts.get(s, 0) for s in statuses) if statuses else counts["Total"]
            if args.limit and shown > len(jobs):
                sys.stderr.write(
                    f"qstat: showing {len(jobs)} of {shown} jobs; use --limit 0 for all\n"
                )
            totals = ["Total"] + [s.value for s in ALL_STATUSES]
            sys.stdout.write("  ".join(f"{k}: {counts.get(k, 0)}" for k in totals) + "\n")
        return 0

    return run("qstat", body)


if __name__ == "__main__":
    sys.exit(main())
