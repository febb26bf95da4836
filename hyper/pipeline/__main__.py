"""``python -m hyper.pipeline [TASKS.json|-]``: `hyper tasks run`, for a job whose PATH
does not hold the `hyper` command (the interpreter that has hyper is enough)."""

from __future__ import annotations

import os
import sys

from hyper.errors import EXIT_FAILURE, EXIT_USAGE, HyperError
from hyper.pipeline.command import run_file

USAGE = "usage: python -m hyper.pipeline [TASKS.json|-]"


def _say(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def main(argv: list[str]) -> int:
    """As `hyper tasks run` answers: bad input and errors in one line on stderr."""
    if argv[:1] in (["--help"], ["-h"]):
        _say(USAGE)
        return 0
    if len(argv) > 1:
        _say(f"hyper: {USAGE}", err=True)
        return EXIT_USAGE
    try:
        return run_file(argv[0] if argv else None, os.environ, _say)
    except HyperError as error:
        _say(f"hyper: {error}", err=True)
        return error.exit_code
    except OSError as error:  # a file the user named, say
        _say(f"hyper: {error}", err=True)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
