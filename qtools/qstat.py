"""qstat: list jobs and their states, or every field of some jobs.

Cyclone's forms:

    qstat [-q QUEUE] [-j NAME] [-f STATUS] [-a ARRAY] [--expand] [-o] [--json]
          [--noheader] [--limit N] [--after ID] [--host NAME]
    qstat -i ID [-i ID ...] [--json]

Arrays show as one line each unless --expand (or a status filter, or -a). The
totals line counts every matching job (array tasks one by one) from the host's
store, however long the listing. JSON output is versioned:
``{"version": 1, "jobs": [...], "counts": {...}, "next": ID or null}``.

PBS Pro's and Torque's forms (shapes in ``qtools.pbs_formats``):

    qstat ID...                  Torque's table of these jobs (finished ones too)
    qstat -u USER | -x           the table of unfinished jobs (-x: finished ones too)
    qstat -f [-F json|dsv [-D DELIM]] [-x] [ID...]   every attribute

Where the two meet, ``-f``: followed by a word that is not a job id (``-f Running``,
``-fFailed``) it is Cyclone's state filter; alone, or followed by an option or a job
id, it is PBS's full output. PBS's clustered flags (``-fx``, ``-xf``) are read as
PBS's. ``-w``, ``-1``, ``-n``, ``-s``, ``-E`` and ``-J`` are accepted and change
nothing; ``-t`` lists array tasks one by one.
"""

from __future__ import annotations

import json
import re
import sys
import time

from hyper import jobspec
from hyper.errors import UsageError
from hyper.jobs import ALL_STATUSES, JobStatus
from qtools.command_line import SUPPRESS
from qtools.common import ArgumentParser, add_host_option, connect, job_id_of, run

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a command's start 3 ms
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

PBS_UNKNOWN_JOB = 153  # PBS's exit status for an unknown job id
PBS_FLAGS = "fxwt1nsEJ"

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
    add("ids", nargs="*", metavar="ID", help="PBS form: these jobs, in Torque's table")
    add("-i", "--job-id", metavar="ID", action="append", default=[],
        help="every field of a job, array or task (ID_3); repeatable")  # fmt: skip
    add("-j", "--job-name", metavar="NAME", help="only jobs whose name starts with this")
    add("-f", "--filter-status", metavar="STATUS",
        help="only jobs in this state: " + ", ".join(s.value for s in ALL_STATUSES)
        + "; -f alone, or before a job id: PBS's full output")  # fmt: skip
    add("--full", action="store_true", help=SUPPRESS)
    add("-x", dest="history", action="store_true", help="PBS form: finished jobs too")
    add("-F", dest="pbs_format", choices=("json", "dsv"),
        help="PBS form: full output as JSON or delimiter-separated values")  # fmt: skip
    add("-D", dest="delimiter", default="|", help="PBS form: the -F dsv delimiter")
    add("-u", dest="users", metavar="USER[,USER]", help="PBS form: jobs of these users")
    add("-t", dest="subjobs", action="store_true", help="PBS form: array tasks one by one")
    for flag in ("-w", "-n", "-s", "-E", "-J"):
        add(flag, action="store_true", dest=f"ignored_{flag[1:]}", help=SUPPRESS)
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


def _text(value: Any) -> str:
    """A field's value in words: no Python reprs."""
    if value is None or value == {} or value == [] or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return " ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) if not isinstance(v, dict) else
                         ":".join(_text(x) for x in v.values()) for v in value)  # fmt: skip
    return str(value).replace("\n", " ")


def print_job(job: dict[str, Any]) -> None:
    for key, value in job.items():
        if key in ("created", "started", "ended", "lease_until"):
            value = _when(value)
        elif key == "counts":
            value = " ".join(f"{k}={v}" for k, v in value.items() if v) or "-"
        else:
            value = _text(value)
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


def pbs_argv(argv: list[str]) -> list[str]:
    """Where Cyclone's and PBS's qstat meet (see the module's docstring): `-f WORD`, WORD
    not a job id, is Cyclone's state filter; any other `-f` is PBS's full output."""
    out: list[str] = []
    takes_value = {"-q", "--queue", "-i", "--job-id", "-j", "--job-name", "-a", "--array",
                   "--limit", "--after", "--host", "-F", "-D", "-u", "--filter-status"}  # fmt: skip
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word in takes_value and index < len(argv):
            out += [word, argv[index]]
            index += 1
        elif word == "--":
            out += argv[index - 1 :]
            break
        elif word in ("-f", "--filter-status") and index < len(argv):
            following = argv[index]
            if word == "-f" and (following.startswith("-") or following[:1].isdigit()):
                out.append("--full")
            else:
                out.append(f"--filter-status={following}")
                index += 1
        elif word == "-f":
            out.append("--full")
        elif word == "-1":
            continue
        elif re.fullmatch(f"-[{PBS_FLAGS}]{{2,}}", word):  # -fx, -xf, -f1
            out += [
                "--full" if letter == "f" else f"-{letter}" for letter in word[1:] if letter != "1"
            ]
        elif word.startswith("-f") and not word.startswith("--") and len(word) > 2:
            out.append(f"--filter-status={word[2:]}")
        else:
            out.append(word)
    return out


def pbs_form(args: Namespace) -> bool:
    return bool(args.ids or args.full or args.history or args.pbs_format or args.users
                or args.subjobs)  # fmt: skip


def show_pbs(args: Namespace) -> int:
    """qstat's PBS Pro and Torque forms."""
    from qtools import dialect, pbs_formats

    words = [dialect.job_word(word) for word in dialect.split_words(args.ids)]
    collapse = not args.subjobs
    missing: list[str] = []
    with connect(args.host) as client:
        if words:
            jobs, missing = dialect.fetch_named(client, words, collapse=collapse)
        else:
            jobs = dialect.fetch_all(
                client, finished=args.history, collapse=collapse, queue=args.queue
            )
    if not dialect.is_me(args.users):
        jobs = []
    if args.queue is not None:
        jobs = [job for job in jobs if job["queue"] == args.queue]
    if args.filter_status:
        wanted = JobStatus.parse(args.filter_status).value
        jobs = [job for job in jobs if job["status"] == wanted]
    for word in missing:
        sys.stderr.write(f"qstat: Unknown Job Id {word}\n")
    if args.full or args.pbs_format:
        if args.pbs_format == "json":
            sys.stdout.write(pbs_formats.full_json(jobs))
        elif args.pbs_format == "dsv":
            sys.stdout.write(pbs_formats.full_dsv(jobs, args.delimiter))
        else:
            sys.stdout.write(pbs_formats.full_text(jobs))
    elif _truthy(args.only_job_id_out):
        sys.stdout.write(pbs_formats.ids_only(jobs))
    elif jobs and args.users:  # qstat(1B) -u: jobs shown in the alternative format
        sys.stdout.write(pbs_formats.alternate_table(jobs, header=not args.noheader))
    elif jobs:
        sys.stdout.write(pbs_formats.table(jobs, header=not args.noheader))
    return PBS_UNKNOWN_JOB if missing else 0


def show_jobs(client: Any, words: list[str], as_json: bool) -> None:
    """qstat -i: every field of each job named."""
    jobs = [client.get_job(job_id_of(client, jobspec.parse_selector(w))) for w in words]
    if as_json:
        out = {"version": JSON_VERSION, "job": jobs[0]} if len(jobs) == 1 else {
            "version": JSON_VERSION, "jobs": jobs}  # fmt: skip
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    for number, job in enumerate(jobs):
        if number:
            sys.stdout.write("\n")
        print_job(job)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(pbs_argv(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        if pbs_form(args) and not args.job_id:
            return show_pbs(args)
        only_ids = _truthy(args.only_job_id_out)
        statuses = [JobStatus.parse(args.filter_status).value] if args.filter_status else None
        if args.limit < 0:
            raise UsageError("--limit must be 0 or more")
        named = [*args.job_id, *args.ids]
        for word in named:
            jobspec.parse_selector(word)  # refuse a bad id before anything is sent
        with connect(args.host) as client:
            if named:
                show_jobs(client, named, args.json)
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

    return run("qstat", body, whole_process=argv is None)


if __name__ == "__main__":
    sys.exit(main())
