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
import stat
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
    _own_alone(folder, "a backup holds the store and its jobs' secrets")
    partial = folder / (DATABASE + ".partial")  # renamed only once complete
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
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
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(folder / MANIFEST, flags, 0o600), "w") as file:
        file.write(json.dumps(manifest, indent=2) + "\n")
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
    # the store runs its jobs as this user: a backup another user could have written is
    # someone else's jobs to run
    _own_alone(folder, "a restored store's jobs run as you", writable_only=True)
    target = _database(host)
    incoming = target.with_name(DATABASE + ".restoring")
    try:
        with open(os.open(copy, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
            _own_alone_file(copy, os.fstat(file.fileno()))
            data = file.read()
    except OSError as error:
        raise UsageError(f"cannot read {copy}: {error.strerror}") from None
    incoming.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with open(os.open(incoming, flags, 0o600), "wb") as file:
        file.write(data)
        os.fsync(file.fileno())
    try:  # what was read is what is checked, and what is restored
        with contextlib.closing(sqlite3.connect(f"{incoming.as_uri()}?mode=ro", uri=True)) as db:
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            jobs = _jobs_in(db)
    except sqlite3.Error as error:
        incoming.unlink(missing_ok=True)
        raise UsageError(f"{copy} is not a hyper backup: {error}") from None
    if verdict != "ok":
        incoming.unlink(missing_ok=True)
        raise UsageError(f"{copy} is damaged: {verdict}")
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


def _own_alone(folder: Path, why: str, *, writable_only: bool = False) -> None:
    """UsageError unless `folder` is a folder of this user's that no other may write
    (nor, unless `writable_only`, read or enter)."""
    found = os.lstat(folder)
    others = 0o022 if writable_only else 0o077
    if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & others:
        return
    if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not writable_only:
        os.chmod(folder, 0o700)  # the user's own, made as their umask says: made private
        return
    raise UsageError(
        f"{folder} is not a folder of yours that only you may "
        f"{'write' if writable_only else 'use'} (owner uid {found.st_uid},"
        f" mode {stat.S_IMODE(found.st_mode):o}): {why}"
    )


def _own_alone_file(path: Path, found: os.stat_result) -> None:
    if not stat.S_ISREG(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o022:
        raise UsageError(
            f"{path} is not a file of yours that only you may write (owner uid"
            f" {found.st_uid}, mode {stat.S_IMODE(found.st_mode):o}): a restored store's"
            " jobs run as you"
        )


def _database(host: HostConfig) -> Path:
    if host.provider != "local" or not host.data_dir:
        raise UsageError(f"host {host.name!r} is not a local host: its store is not here")
    return Path(host.data_dir) / DATABASE


def _fsync(path: Path) -> None:
    with open(path, "rb") as done:
        os.fsync(done.fileno())
