"""The SQLite store's connection: opening and checking the file, write transactions,
ids and their high-water mark, and the checkpointer thread."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from hyper.errors import StoreDamaged, StoreUnavailable, UsageError
from hyper.jobs import (
    LogKind,
)
from hyper.store.sqlite.schema import (
    LOG_INSERT,
    SCHEMA,
    SCHEMA_VERSION,
    UPGRADABLE,
)

BUSY_TIMEOUT_MS = 2000
CHECKPOINT_SECONDS = 0.5  # how often a daemon's store moves its write-ahead log into the file
FILE_CHUNK = 2**20  # an upload goes into the store this much at a time
IDS_SUFFIX = ".ids"  # the high-water mark of ids, beside the store
RESTORE_HINT = "restore it with 'hyper hosts restore-host --from BACKUP'"


def _check(path: str) -> str | None:
    """What is wrong with the store file at `path` (PRAGMA quick_check), or None."""
    try:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True)
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            rows = db.execute("PRAGMA quick_check(3)").fetchall()
        finally:
            db.close()
    except sqlite3.Error as error:
        return " ".join(str(error).split())
    found = [str(row[0]) for row in rows]
    if found == ["ok"]:
        return None
    lines = [line.strip() for text in found for line in text.splitlines()]
    said = "; ".join(line for line in lines if line and not line.startswith("***"))
    return said[:160] + ("..." if len(said) > 160 else "")


def _read_high_water(path: str) -> int:
    try:
        with open(path + IDS_SUFFIX, "rb") as marks:
            text = marks.read(64).strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _unavailable(path: str, error: sqlite3.OperationalError) -> Exception:
    """A write the store could not make, said in a user's words; nothing was changed."""
    text = str(error)
    if "full" in text:
        return StoreUnavailable(f"the disk holding {path} is full; nothing was changed")
    if "locked" in text or "busy" in text:
        return StoreUnavailable(f"{path} is locked by another process; nothing was changed")
    if "I/O" in text or "readonly" in text:
        return StoreUnavailable(f"{path} cannot be written ({text}); nothing was changed")
    return error


GIVE_BACK_SECONDS = 10.0  # how long a purge tries to empty the log while it is busy


class _Checkpointer(threading.Thread):
    """Moves the write-ahead log into the store, beside the host's work. A checkpoint
    writes pages and syncs the file; left to SQLite it runs inside whichever commit
    crosses its threshold (a claim or a submit then takes ten times as long). Its own
    connection: SQLite lets a checkpoint run while the store is read and written."""

    def __init__(self, path: str) -> None:
        super().__init__(name="sqlite-checkpointer", daemon=True)
        self.path = path
        self.halt = threading.Event()

    def run(self) -> None:
        with suppress(sqlite3.Error):
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                while not self.halt.wait(CHECKPOINT_SECONDS):
                    with suppress(sqlite3.Error):
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                db.close()

    def stop(self) -> None:
        self.halt.set()
        self.join()


_Opened = TypeVar("_Opened", bound="SQLiteBase")


class SQLiteBase:
    """The connection every part of the store writes through: opened and checked, one
    write transaction at a time, ids reserved and their high-water mark kept."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._checkpointer: _Checkpointer | None = None
        self._high_water = 0  # the next id, once reserved: written beside the store on commit
        self._marked = 0  # the next id last written there
        self._marks: int | None = None  # the open high-water file
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if fresh:  # before any table: pages freed by a purge can go back to the disk
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # SQLite as Debian builds it overwrites every deleted byte (secure_delete): a purge
        # wrote all it deleted again, into a log twice the store's size (a full disk, 30 s).
        # FAST zeroes what costs no I/O; the store is its user's alone, and a purge gives
        # the freed pages back to the file system
        self._db.execute("PRAGMA secure_delete=FAST")
        # only another process (a user's sqlite3 shell, a copy) locks the daemon's store;
        # a write waits this long for it, then is refused and retried by the client
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION, *UPGRADABLE):
            raise UsageError(
                f"{self.path} was written by another version of hyper (schema {version},"
                f" this one reads {SCHEMA_VERSION})"
            )
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(nodes)")}
        if "capacity" not in columns:  # a store from before machines said their capacity
            self._db.execute("ALTER TABLE nodes ADD COLUMN capacity TEXT NOT NULL DEFAULT ''")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(arrays)")}
        if "plan" not in columns:  # a store from before tasks were made after the submit
            self._db.execute("ALTER TABLE arrays ADD COLUMN made INTEGER NOT NULL DEFAULT 0")
            self._db.execute("ALTER TABLE arrays ADD COLUMN plan TEXT")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS arrays_unmade ON arrays (id) WHERE plan IS NOT NULL"
        )
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def open(cls: type[_Opened], path: Path | str) -> _Opened:
        """The store of a daemon about to serve it: checked first. A damaged store, or one
        that lost what it had acknowledged, is refused with one StoreDamaged line."""
        path = str(path)
        if os.path.exists(path):
            problem = _check(path)
            if problem:
                raise StoreDamaged(f"the store {path} is damaged ({problem}); {RESTORE_HINT}")
        store = cls(path)
        known = store._next_id()
        given = _read_high_water(path)
        if known < given:
            store.close()
            raise StoreDamaged(
                f"the store {path} lost acknowledged jobs (ids up to {given - 1} were given,"
                f" it knows of ids below {known}: its write-ahead log was lost, or an older copy"
                f" was put back); {RESTORE_HINT}, or keep what it holds with"
                " 'hyper hosts start-host --accept-store'"
            )
        store._checkpoint_aside()
        return store

    def _checkpoint_aside(self) -> None:
        """Checkpoint in a thread of its own rather than in the commits (a daemon's store)."""
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    @classmethod
    def accept_rollback(cls, path: Path | str) -> int:
        """Serve a rolled-back store as it is, its next id above every id ever given (the
        restored or surviving jobs keep theirs). Returns that next id."""
        store = cls(path)
        try:
            with store._write(durable=True) as db:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('next_id', 1)")
                db.execute(
                    "UPDATE meta SET value = max(value, ?) WHERE key = 'next_id'",
                    (_read_high_water(store.path),),
                )
            store._high_water = store._next_id()
            store._record_high_water()
            return store._high_water
        finally:
            store.close()

    def _next_id(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        return int(row[0]) if row else 1

    def _record_high_water(self) -> None:
        """Write the next id beside the store and fsync it: what the WAL may lose, this keeps."""
        if self._marks is None:
            self._marks = os.open(self.path + IDS_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self._marks, f"{self._high_water:020d}\n".encode(), 0)
        os.fsync(self._marks)

    def close(self) -> None:
        """Checkpoint the write-ahead log into the store, empty it, and close."""
        # (another process may be reading it: SQLite checkpoints again on its last close)
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        if self._marks is not None:
            os.close(self._marks)
            self._marks = None

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        db = self._db
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (disk full)
                    db.execute("ROLLBACK")
                self._high_water = self._marked  # the ids it reserved were not given
                raise
            if self._high_water > self._marked:
                self._record_high_water()
                self._marked = self._high_water
        except sqlite3.OperationalError as error:
            raise _unavailable(self.path, error) from error
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")

    def _reserve_ids(self, db: sqlite3.Connection, count: int) -> int:
        """The first of `count` consecutive new ids (ids are never reused)."""
        db.execute("INSERT OR IGNORE INTO meta VALUES ('next_id', 1)")
        row = db.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'next_id' RETURNING value", (count,)
        ).fetchone()
        self._high_water = int(row[0])  # recorded beside the store once committed
        return int(row[0]) - count

    def _event(
        self, db: sqlite3.Connection, job_id: int, attempt: int, text: str, now: float
    ) -> None:
        db.execute(
            LOG_INSERT,
            (job_id, attempt, LogKind.SYSTEM.value, now, text),
        )

    def _touch(self, db: sqlite3.Connection, worker_id: str, now: float) -> None:
        db.execute(
            "UPDATE workers SET last_seen = ?, state = 'ACTIVE' WHERE id = ? AND state != 'EXITED'",
            (now, worker_id),
        )
