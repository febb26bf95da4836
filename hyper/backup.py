"""Copies of a local host's store, taken while it runs, and restoring from them.

A backup is a folder holding ``hyper.db``, a consistent copy made with SQLite's
online backup (the daemon keeps serving meanwhile), and ``backup.json`` saying
what it holds. Restoring replaces the store of an existing local host (its own
name, key and port stay) and restarts its daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

from hyper import local_host
from hyper.config import HostConfig
from hyper.errors import UsageError
from hyper.version import __version__

DATABASE = "hyper.db"
MANIFEST = "backup.json"


class BackupSummary(NamedTuple):
    folder: Path
    jobs: int
    size: int  # bytes of the copied store


def backup(host: HostConfig, folder: Path) -> BackupSummary:
    """Copy the host's store into `folder`, a new or empty directory."""
    source = _database(host)
    if not source.exists():
        raise UsageError(f"host {host.name!r} has no store at {source} yet")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"{folder} exists and is not an empty folder")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = folder / (DATABASE + ".partial")  # renamed only once complete
    try:
        with contextlib.closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout=10000")
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                db.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                jobs = _jobs_in(copy)
                (schema,) = copy.execute("PRAGMA user_version").fetchone()
        os.chmod(partial, 0o600)
        _fsync(partial)
        partial.rename(folder / DATABASE)
    except (sqlite3.Error, OSError) as error:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot back up host {host.name!r} to {folder}: {error}") from None
    manifest = {
        "host": host.name,
        "created": time.time(),
        "jobs": jobs,
        "schema": schema,
        "hyper": __version__,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return BackupSummary(folder, jobs, (folder / DATABASE).stat().st_size)


def _jobs_in(db: sqlite3.Connection) -> int:
    """The jobs and tasks a store holds, those of arrays not made yet among them."""
    (jobs,) = db.execute("SELECT count(*) FROM jobs").fetchone()
    if "plan" in {row[1] for row in db.execute("PRAGMA table_info(arrays)")}:
        (later,) = db.execute(
            "SELECT coalesce(sum(size - made), 0) FROM arrays WHERE plan IS NOT NULL"
        ).fetchone()
        jobs += later
    return int(jobs)


def restore(host: HostConfig, folder: Path) -> BackupSummary:
    """Replace the host's store with the backup in `folder` and restart its daemon. The
    backup is checked whole before anything of the host is touched."""
    copy = folder / DATABASE
    if not copy.is_file():
        raise UsageError(f"{folder} holds no backup ({DATABASE} is missing)")
    try:
        with contextlib.closing(sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)) as db:
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            jobs = _jobs_in(db)
    except sqlite3.Error as error:
        raise UsageError(f"{copy} is not a hyper backup: {error}") from None
    if verdict != "ok":
        raise UsageError(f"{copy} is damaged: {verdict}")
    target = _database(host)
    incoming = target.with_name(DATABASE + ".restoring")
    incoming.write_bytes(copy.read_bytes())
    os.chmod(incoming, 0o600)
    _fsync(incoming)
    was_running = local_host.stop(host)
    # the old write-ahead log belongs to the old store: applied to the new one it would
    # corrupt it
    for leftover in ("-wal", "-shm"):
        target.with_name(DATABASE + leftover).unlink(missing_ok=True)
    incoming.rename(target)
    from hyper.store.sqlite import SQLiteStore

    SQLiteStore.accept_rollback(target)  # new ids stay above every id the host gave before
    if was_running:
        local_host.start(host)
    return BackupSummary(folder, jobs, target.stat().st_size)


def accept_store(host: HostConfig) -> int:
    """Let a local host serve its store as it is, after it lost acknowledged jobs: its next
    id goes above every id it gave before. The daemon must be down. Returns that id."""
    from hyper.store.sqlite import SQLiteStore

    if local_host.status(host).running:
        raise UsageError(f"host {host.name!r} is running: its store was accepted already")
    return SQLiteStore.accept_rollback(_database(host))


def _database(host: HostConfig) -> Path:
    if host.provider != "local" or not host.data_dir:
        raise UsageError(f"host {host.name!r} is not a local host: its store is not here")
    return Path(host.data_dir) / DATABASE


def _fsync(path: Path) -> None:
    with open(path, "rb") as done:
        os.fsync(done.fileno())
