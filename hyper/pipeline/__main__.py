"""``python -m hyper.pipeline [TASKS.json|-]``: `hyper tasks run`, for a job whose PATH
does not hold the `hyper` command (the interpreter that has hyper is enough)."""

from __future__ import annotations

import sys

from hyper.cli import main

if __name__ == "__main__":
    sys.exit(main(["tasks", "run", *sys.argv[1:]]))
