"""qdel: cancel jobs.

    qdel ID [ID ...] [-j NAME] [-q QUEUE] [--host NAME]

Ids may come whitespace or newline separated in one argument, so
``qdel $(qstat -q Q -o)`` works. With -j or -q (and no ids) every unfinished
job of that name or queue is cancelled. A waiting job never starts; a running
job's whole process group is stopped. One request, whatever the number of ids.
"""

from __future__ import annotations

import sys

from hyper.errors import UsageError
from qtools.common import ArgumentParser, add_host_option, connect, run


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="qdel", description="Cancel hyper jobs.")
    parser.add_argument("ids", nargs="*", metavar="ID", help="job ids")
    parser.add_argument(
        "-i", "--job-id", action="append", default=[], metavar="ID", help="a job id (repeatable)"
    )
    parser.add_argument(
        "-j", "--job-name", metavar="NAME", help="every unfinished job of this name"
    )
    parser.add_argument("-q", "--queue", help="every unfinished job of this queue (or: only in it)")
    add_host_option(parser)
    return parser


def parse_ids(words: list[str]) -> list[int]:
    ids = []
    for word in words:
        for token in word.split():
            if not token.isdigit():
                raise UsageError(f"not a job id: {token!r}")
            ids.append(int(token))
    return ids


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        ids = parse_ids([*args.ids, *args.job_id])
        if not ids and args.job_name is None and args.queue is None:
            raise UsageError("say which jobs to cancel: job ids, -j NAME or -q QUEUE")
        with connect(args.host) as client:
            result = client.cancel(ids=ids, name=args.job_name, queue=args.queue)
        for job_id in result["finished"]:
            if job_id in ids:
                sys.stderr.write(f"qdel: job {job_id} had already finished\n")
        return 0

    return run("qdel", body)


if __name__ == "__main__":
    sys.exit(main())
