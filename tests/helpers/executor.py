"""Functions that hyper.Executor tests run remotely, and what they look at afterwards."""

from __future__ import annotations

import contextlib
import sqlite3

from tests.conftest import LocalHost

QUEUE, DEFINITION = "sample-queue-1", "sample-def-1"


def fail(n: int) -> None:
    raise ValueError(f"bad input {n}")


def files_left(local: LocalHost) -> int:
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
