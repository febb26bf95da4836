"""qdel, qhold, qrls: cancel, hold or release jobs.

    qdel ID [ID ...] [-j NAME] [-q QUEUE] [-f STATUS] [--host NAME]

An ID is a job (`12`), a whole array (`20`), or some of its tasks (`20[1-5]`,
`20_3`); PBS's forms `12.server` and `20[3].server` are read as 12 and 20[3].
Ids may come whitespace or newline separated in one argument, so
``qdel $(qstat -q Q -o)`` works. With -j, -q or -f (and no ids) every matching
job is chosen; with ids too, only the ids that match. One request to the host,
whatever the number of ids.

qdel: a waiting job never starts; a running job's whole process group is
stopped. qhold: waiting jobs do not start until qrls releases them.
"""

from __future__ import annotations

import sys

from hyper.errors import UsageError
from qtools.common import ArgumentParser, add_host_option, connect, run

VERBS = {
    "qdel": ("cancel", "Cancel hyper jobs."),
    "qhold": ("hold", "Hold waiting hyper jobs: they do not start until released."),
    "qrls": ("release", "Release held hyper jobs."),
}
DONE = {"hold": "held", "release": "released"}


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=VERBS[prog][1])
    parser.add_argument(
        "ids", nargs="*", metavar="ID", help="job ids: 12, 20 (an array), 20[1-5], 20_3"
    )
    parser.add_argument("-i", "--job-id", action="append", default=[], metavar="ID",
                        help="a job id (repeatable)")  # fmt: skip
    parser.add_argument("-j", "--job-name", metavar="NAME", help="jobs of exactly this name")
    parser.add_argument("-q", "--queue", help="jobs of this queue")
    parser.add_argument("-f", "--filter-status", metavar="STATUS", help="jobs in this state")
    add_host_option(parser)
    return parser


def parse_ids(words: list[str]) -> list[str]:
    """Job ids, refused before anything is sent when they are not; PBS's `12.server`
    and `12[].server` name job 12 and array 12."""
    from qtools.dialect import job_word

    return [job_word(token) for word in words for token in word.split()]


def act(prog: str, argv: list[str] | None) -> int:
    action = VERBS[prog][0]
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        ids = parse_ids([*args.ids, *args.job_id])
        if not (ids or args.job_name or args.queue or args.filter_status):
            raise UsageError("say which jobs: job ids, -j NAME, -q QUEUE or -f STATUS")
        selection = {
            "ids": ids,
            "name": args.job_name,
            "queue": args.queue,
            "status": args.filter_status,
        }
        with connect(args.host) as client:
            result = client.change(action, selection)
        if action == "cancel":
            for job_id in result["finished"]:
                sys.stderr.write(f"{prog}: job {job_id} had already finished\n")
        else:
            for job_id in result["unchanged"]:
                sys.stderr.write(f"{prog}: job {job_id} cannot be {DONE[action]} in its state\n")
        return 0

    return run(prog, body)


def main(argv: list[str] | None = None) -> int:
    return act("qdel", argv)


def hold_main(argv: list[str] | None = None) -> int:
    return act("qhold", argv)


def release_main(argv: list[str] | None = None) -> int:
    return act("qrls", argv)


if __name__ == "__main__":
    sys.exit(main())
