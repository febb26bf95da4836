"""qdel, qhold, qrls: cancel, hold or release jobs.

    qdel ID [ID ...] [-j NAME] [-q QUEUE] [-f STATUS] [--host NAME]

An ID is a job (`12`), a whole array (`20`), or some of its tasks (`20[1-5]`,
`20_3`); PBS's forms `12.server` and `20[3].server` are read as 12 and 20[3].
Ids may come whitespace or newline separated in one argument, so
``qdel $(qstat -q Q -o)`` works; ``-`` reads them from stdin, as does a pipe or a
file on stdin when no id or filter is given, so ``qstat -f Waiting -o | qdel`` works.
With -j, -q or -f (and no ids) every matching job is chosen; with ids too, only the
ids that match. One request to the host, whatever the number of ids.

qdel: a waiting job never starts; a running job's whole process group is
stopped. qhold: waiting jobs do not start until qrls releases them.

Exit codes: 0 every chosen job was changed (or nothing was chosen from an empty stdin);
1 some could not be (already finished, or not in a state to hold or release), each named
on stderr, the others changed; 2 bad input, nothing changed; 69 host unreachable;
77 key refused.
"""

from __future__ import annotations

import os
import stat
import sys

from hyper.errors import EXIT_FAILURE, UsageError
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
        "ids",
        nargs="*",
        metavar="ID",
        help="job ids: 12, 20 (an array), 20[1-5], 20_3; - reads them from stdin",
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


def stdin_is_data() -> bool:
    """Whether stdin is a pipe or a file (not a terminal, not closed or /dev/null)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def act(prog: str, argv: list[str] | None) -> int:
    action = VERBS[prog][0]
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        words = [*args.ids, *args.job_id]
        filters = args.job_name or args.queue or args.filter_status
        from_stdin = "-" in words or (not words and not filters and stdin_is_data())
        if from_stdin:
            words = [word for word in words if word != "-"] + [sys.stdin.read()]
            if not parse_ids(words) and not filters:
                sys.stderr.write(f"{prog}: no job ids on stdin; nothing to do\n")
                return 0
        ids = parse_ids(words)
        if not (ids or filters):
            raise UsageError(
                "say which jobs: job ids (or - for stdin), -j NAME, -q QUEUE or -f STATUS"
            )
        selection = {
            "ids": ids,
            "name": args.job_name,
            "queue": args.queue,
            "status": args.filter_status,
        }
        with connect(args.host) as client:
            result = client.change(action, selection)
        if action == "cancel":
            refused = result["finished"]
            for job_id in refused:
                sys.stderr.write(f"{prog}: job {job_id} had already finished\n")
        else:
            refused = result["unchanged"]
            for job_id in refused:
                sys.stderr.write(f"{prog}: job {job_id} cannot be {DONE[action]} in its state\n")
        return EXIT_FAILURE if refused else 0

    return run(prog, body, whole_process=argv is None)


def main(argv: list[str] | None = None) -> int:
    return act("qdel", argv)


def hold_main(argv: list[str] | None = None) -> int:
    return act("qhold", argv)


def release_main(argv: list[str] | None = None) -> int:
    return act("qrls", argv)


if __name__ == "__main__":
    sys.exit(main())
