"""The store on SQLite: one file in the host's data directory, WAL journal.

Used from one thread (the host's event loop), so a write transaction is never
interleaved with another (a daemon's store moves its write-ahead log into the file from
a thread and connection of its own, so that no claim or submit waits for that);
``BEGIN IMMEDIATE`` still guards against a second process opening the same file.
Submits commit with ``synchronous=FULL`` (an acknowledged job survives a power cut);
everything else with NORMAL.

Arrays: one ``arrays`` row holds the script and options once; each task is a
``jobs`` row with its own id (ids come from one sequence, so the array's id is
never a task's). Counters on the array row (running, ok, bad) make concurrency
caps and dependencies on whole arrays O(1).

Dependencies: a ``deps`` row per (owner, kind, target), the owner a job or an
array; ``jobs.deps_left`` counts what each job still waits for. When a job
ends, the rows that target it (or its array) are judged, and a job whose
dependency can never be met ends Failed, which may end its own dependents.
Integrity: ``SQLiteStore.open`` (the daemon's start) runs ``PRAGMA quick_check`` and
refuses a damaged store; ids come from ``meta.next_id``, and every reservation is
also written (fsynced, after its commit) to ``hyper.db.ids`` beside the store, a
high-water mark outside the pages the write-ahead log covers. A store whose
next id is below that mark lost acknowledged jobs (a deleted WAL, a copy put back
by hand): ``open`` refuses it, and ``accept_rollback`` lifts its next id above
every id ever given, so that no id is used twice. ``close`` checkpoints the WAL
into the store and truncates it. ``purge`` deletes finished jobs, their logs and
files older than a time; the freed pages go back to the file system
(``auto_vacuum=INCREMENTAL``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from hyper import output
from hyper.errors import Conflict, StoreDamaged, StoreUnavailable, UsageError
from hyper.jobs import (
    FINISHED,
    NOT_STARTED,
    JobStatus,
    LogKind,
    Verdict,
    judge_dependency,
    never_met,
    outcome_of_attempt,
    task_script,
)
from hyper.jobspec import Selector
from hyper.store.base import (
    ArrayRecord,
    CancelResult,
    Ending,
    Fits,
    HoldResult,
    JobFilter,
    JobRecord,
    LogEntry,
    NewJob,
    NodeRecord,
    Resource,
    WorkerRecord,
    WorkflowRecord,
)

SCHEMA_VERSION = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
    log TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS arrays (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, queue TEXT NOT NULL, definition TEXT NOT NULL,
    script TEXT NOT NULL, env TEXT NOT NULL, submit_dir TEXT, retries INTEGER NOT NULL,
    priority INTEGER NOT NULL, time_limit INTEGER, options TEXT NOT NULL,
    size INTEGER NOT NULL, cap INTEGER, spec TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0, ok INTEGER NOT NULL DEFAULT 0,
    bad INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS arrays_by_queue ON arrays (queue);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, array_id INTEGER, array_index INTEGER,
    name TEXT NOT NULL, queue TEXT NOT NULL, definition TEXT NOT NULL,
    script TEXT, env TEXT, params TEXT, submit_dir TEXT,
    status TEXT NOT NULL, retries INTEGER NOT NULL, retries_left INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, exit_code INTEGER, reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, worker_id TEXT, lease_until REAL,
    priority INTEGER NOT NULL DEFAULT 0, time_limit INTEGER, options TEXT,
    deps_left INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, started REAL, ended REAL
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (status, queue, definition, priority DESC, id);
CREATE INDEX IF NOT EXISTS jobs_by_queue ON jobs (queue, id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, id);  -- qstat -f STATE, page by page
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs (name);
CREATE INDEX IF NOT EXISTS jobs_by_array ON jobs (array_id, array_index);
CREATE INDEX IF NOT EXISTS jobs_by_ended ON jobs (ended);  -- throughput, on the dashboard
-- pages of single jobs (array_id NULL) or of one array's tasks, by id, without a sort
CREATE INDEX IF NOT EXISTS jobs_by_array_id ON jobs (array_id);
-- counts per (queue, definition, array, status), so that qstat's totals and the scheduler's
-- demand never scan the jobs (array_id 0: jobs outside arrays); submits add theirs in bulk,
-- a trigger follows every change of state
CREATE TABLE IF NOT EXISTS job_counts (
    queue TEXT NOT NULL, definition TEXT NOT NULL, array_id INTEGER NOT NULL,
    status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (queue, definition, array_id, status)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_counts_by_array ON job_counts (array_id);
CREATE TRIGGER IF NOT EXISTS jobs_counted_on_update AFTER UPDATE OF status ON jobs
WHEN OLD.status != NEW.status BEGIN
    UPDATE job_counts SET n = n - 1
    WHERE queue = OLD.queue AND definition = OLD.definition
      AND array_id = coalesce(OLD.array_id, 0) AND status = OLD.status;
    INSERT INTO job_counts VALUES (NEW.queue, NEW.definition, coalesce(NEW.array_id, 0),
                                   NEW.status, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS deps (
    owner INTEGER NOT NULL, kind TEXT NOT NULL, target INTEGER NOT NULL,
    PRIMARY KEY (owner, kind, target)
);
CREATE INDEX IF NOT EXISTS deps_by_target ON deps (target);
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, worker_id TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, exit_code INTEGER, outcome TEXT,
    process_group INTEGER,  -- where the worker runs it, once reported
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS job_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, time REAL NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_log_by_job ON job_log (job_id, kind, seq);
-- bytes of output kept per attempt, against the definition's output limit
CREATE TABLE IF NOT EXISTS output_kept (
    job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, definition TEXT NOT NULL, region TEXT NOT NULL,
    launcher TEXT NOT NULL, pid INTEGER, state TEXT NOT NULL, started REAL NOT NULL,
    last_seen REAL NOT NULL, ended REAL, node TEXT
);
CREATE INDEX IF NOT EXISTS workers_by_state ON workers (state);
-- machines of static regions that joined to run workers (`hyper worker join`)
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, region TEXT NOT NULL, definition TEXT NOT NULL, slots INTEGER NOT NULL,
    hostname TEXT NOT NULL, joined REAL NOT NULL, last_seen REAL NOT NULL
);
-- jobs' packages and what they collect, by key
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY, data BLOB NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT, finished INTEGER NOT NULL, version INTEGER NOT NULL,
    data TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_unfinished ON workflows (finished, id);
"""

JOB_COLUMNS = (
    "j.id, j.name, j.queue, j.definition, j.status, j.retries, j.retries_left, j.attempt,"
    " j.exit_code, j.reason, j.cancel_requested, j.worker_id, j.lease_until,"
    " coalesce(j.submit_dir, a.submit_dir) AS submit_dir,"
    " coalesce(j.env, a.env) AS env, j.created, j.started, j.ended, j.array_id, j.array_index,"
    " a.size AS array_size, j.priority, j.time_limit, coalesce(j.options, a.options) AS options"
)
JOB_FROM = "jobs j LEFT JOIN arrays a ON a.id = j.array_id"
ARRAY_COLUMNS = (
    "id, name, queue, definition, size, cap, spec, retries, priority, time_limit, submit_dir,"
    " env, options, created"
)
BAD = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)
LOG_INSERT = "INSERT INTO job_log (job_id, attempt, kind, time, text) VALUES (?, ?, ?, ?, ?)"
NOT_STARTED_VALUES = tuple(sorted(s.value for s in NOT_STARTED))
EVENTS_PER_CHANGE = 1000  # a bulk change logs each job up to this many, then one line per array
Ended = tuple[int, int | None, int | None, JobStatus]  # job id, array id, index, final state


def _job(row: sqlite3.Row, script: str | None = None) -> JobRecord:
    return JobRecord(
        id=row["id"],
        name=row["name"],
        queue=row["queue"],
        definition=row["definition"],
        status=JobStatus(row["status"]),
        retries=row["retries"],
        retries_left=row["retries_left"],
        attempt=row["attempt"],
        exit_code=row["exit_code"],
        reason=row["reason"],
        cancel_requested=bool(row["cancel_requested"]),
        worker_id=row["worker_id"],
        lease_until=row["lease_until"],
        submit_dir=row["submit_dir"],
        env=json.loads(row["env"] or "{}"),
        created=row["created"],
        started=row["started"],
        ended=row["ended"],
        array_id=row["array_id"],
        array_index=row["array_index"],
        array_size=row["array_size"],
        priority=row["priority"],
        time_limit=row["time_limit"],
        options=json.loads(row["options"] or "{}"),
        script=script,
    )


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _where(where: JobFilter, alias: str = "j.") -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if where.queue is not None:
        clauses.append(f"{alias}queue = ?")
        args.append(where.queue)
    if where.name is not None:
        clauses.append(f"{alias}name = ?")
        args.append(where.name)
    if where.definition is not None:
        clauses.append(f"{alias}definition = ?")
        args.append(where.definition)
    if where.name_prefix:
        clauses.append(f"{alias}name >= ? AND {alias}name < ?")
        args += [where.name_prefix, where.name_prefix + "\U0010ffff"]
    if where.statuses:
        clauses.append(f"{alias}status IN ({_in(where.statuses)})")
        args.extend(s.value for s in where.statuses)
    if where.array_id is not None:
        clauses.append(f"{alias}array_id = ?")
        args.append(where.array_id)
    if where.selects:
        picks: list[str] = []
        if where.ids:
            picks.append(f"{alias}id IN ({_in(where.ids)})")
            args.extend(where.ids)
        for array_id, indices in where.arrays:
            if indices is None:
                picks.append(f"{alias}array_id = ?")
                args.append(array_id)
            else:  # any number of indices: one JSON parameter, not one variable each
                picks.append(
                    f"({alias}array_id = ? AND {alias}array_index IN"
                    " (SELECT value FROM json_each(?)))"
                )
                args += [array_id, json.dumps(list(indices))]
        clauses.append("(" + " OR ".join(picks) + ")")
    return (" AND ".join(clauses) or "1"), args


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


class SQLiteStore:
    counts_requests = True

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
        # only another process (a user's sqlite3 shell, a copy) locks the daemon's store;
        # a write waits this long for it, then is refused and retried by the client
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise UsageError(
                f"{self.path} was written by another version of hyper (schema {version},"
                f" this one reads {SCHEMA_VERSION})"
            )
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def open(cls, path: Path | str) -> SQLiteStore:
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

    @staticmethod
    def accept_rollback(path: Path | str) -> int:
        """Serve a rolled-back store as it is, its next id above every id ever given (the
        restored or surviving jobs keep theirs). Returns that next id."""
        store = SQLiteStore(path)
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

    # resources ---------------------------------------------------------------

    def put_resource(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        status: str,
        log_lines: Sequence[str],
        now: float,
    ) -> Resource:
        with self._write(durable=True) as db:
            row = db.execute(
                "SELECT log, created FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
            log = json.loads(row["log"]) if row else []
            log.extend(log_lines)
            created = row["created"] if row else now
            db.execute(
                "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, name, json.dumps(spec), status, json.dumps(log[-200:]), created, now),
            )
        return Resource(kind, name, spec, status, log[-200:], created, now)

    def _resource(self, row: sqlite3.Row) -> Resource:
        return Resource(
            kind=row["kind"],
            name=row["name"],
            spec=json.loads(row["spec"]),
            status=row["status"],
            log=json.loads(row["log"]),
            created=row["created"],
            updated=row["updated"],
        )

    def delete_resource(self, kind: str, name: str) -> None:
        with self._write(durable=True) as db:
            db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))

    def get_resource(self, kind: str, name: str) -> Resource | None:
        row = self._db.execute(
            "SELECT * FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        return self._resource(row) if row else None

    def list_resources(self, kind: str) -> list[Resource]:
        rows = self._db.execute("SELECT * FROM resources WHERE kind = ? ORDER BY name", (kind,))
        return [self._resource(row) for row in rows]

    # submitting ----------------------------------------------------------------

    def submit(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        ids: list[int] = []
        with self._write(durable=True) as db:
            for job in jobs:
                if job.array is None:
                    ids.append(self._submit_single(db, job, now))
                else:
                    ids.append(self._submit_array(db, job, now))
        return ids

    def _target_state(self, db: sqlite3.Connection, target: int) -> tuple[int, int, int]:
        """(ok, bad, size) of a dependency's target: a job or a whole array."""
        row = db.execute("SELECT ok, bad, size FROM arrays WHERE id = ?", (target,)).fetchone()
        if row is not None:
            return row["ok"], row["bad"], row["size"]
        row = db.execute("SELECT status FROM jobs WHERE id = ?", (target,)).fetchone()
        if row is None:
            raise UsageError(f"dependency on unknown job id {target}")
        status = row["status"]
        return int(status == JobStatus.SUCCESSFUL.value), int(status in BAD), 1

    def _judge_new(
        self, db: sqlite3.Connection, job: NewJob
    ) -> tuple[list[tuple[str, int]], str | None]:
        """The dependencies still pending, and why the job can never run (or None)."""
        pending: list[tuple[str, int]] = []
        for dep in dict.fromkeys(job.depends):  # the same dependency twice counts once
            if dep.kind == "aftercorr":
                if job.array is None:
                    raise UsageError("aftercorr is for arrays: task N waits for task N")
                if (
                    db.execute("SELECT 1 FROM arrays WHERE id = ?", (dep.target,)).fetchone()
                    is None
                ):
                    raise UsageError(f"aftercorr:{dep.target}: {dep.target} is not an array job")
                pending.append((dep.kind, dep.target))  # judged per task
                continue
            ok, bad, size = self._target_state(db, dep.target)
            verdict = judge_dependency(dep.kind, ok=ok, bad=bad, size=size)
            if verdict is Verdict.NEVER:
                return [], never_met(dep.kind, dep.target)
            if verdict is Verdict.PENDING:
                pending.append((dep.kind, dep.target))
        return pending, None

    def _first_status(self, job: NewJob, deps_left: int) -> str:
        if job.hold:
            return JobStatus.HELD.value
        return (JobStatus.BLOCKED if deps_left else JobStatus.WAITING).value

    def _submit_single(self, db: sqlite3.Connection, job: NewJob, now: float) -> int:
        pending, never = self._judge_new(db, job)
        job_id = self._reserve_ids(db, 1)
        status = JobStatus.FAILED.value if never else self._first_status(job, len(pending))
        db.execute(
            "INSERT INTO jobs (id, name, queue, definition, script, env, submit_dir, status,"
            " retries, retries_left, priority, time_limit, options, deps_left, reason, created,"
            " ended) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id, job.name, job.queue, job.definition, job.script, json.dumps(job.env),
                job.submit_dir, status, job.retries, job.retries, job.priority, job.time_limit,
                json.dumps(job.options), len(pending), never, now, now if never else None,
            ),
        )  # fmt: skip
        self._count(db, job, 0, status, 1)
        db.executemany(
            "INSERT OR IGNORE INTO deps VALUES (?, ?, ?)", [(job_id, k, t) for k, t in pending]
        )
        self._event(db, job_id, 0, f"submitted to queue {job.queue}", now)
        if never:
            self._event(db, job_id, 0, never, now)
        return job_id

    def _submit_array(self, db: sqlite3.Connection, job: NewJob, now: float) -> int:
        tasks = job.array
        assert tasks is not None
        pending, never = self._judge_new(db, job)
        size = len(tasks.indices)
        array_id = self._reserve_ids(db, size + 1)
        db.execute(
            "INSERT INTO arrays (id, name, queue, definition, script, env, submit_dir, retries,"
            " priority, time_limit, options, size, cap, spec, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                array_id, job.name, job.queue, job.definition, job.script, json.dumps(job.env),
                job.submit_dir, job.retries, job.priority, job.time_limit,
                json.dumps(job.options), size, tasks.cap, tasks.spec, now,
            ),
        )  # fmt: skip
        array_deps = [(k, t) for k, t in pending if k != "aftercorr"]
        status = JobStatus.FAILED.value if never else self._first_status(job, len(array_deps))
        # every task in one statement: SQLite walks the indices itself (4x faster than rows)
        db.execute(
            "INSERT INTO jobs (id, array_id, array_index, name, queue, definition, status,"
            " retries, retries_left, priority, time_limit, deps_left, reason, created, ended)"
            " SELECT ? + key + 1, ?, value, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)",
            (
                array_id, array_id, job.name, job.queue, job.definition, status, job.retries,
                job.retries, job.priority, job.time_limit, len(array_deps), never, now,
                now if never else None, json.dumps(tasks.indices),
            ),
        )  # fmt: skip
        self._count(db, job, array_id, status, size)
        if tasks.names or tasks.params:
            names = tasks.names or [""] * size
            params = tasks.params or [{}] * size
            db.executemany(
                "UPDATE jobs SET name = coalesce(?, name), params = ? WHERE id = ?",
                [
                    (
                        names[n] or None,
                        json.dumps(params[n]) if params[n] else None,
                        array_id + 1 + n,
                    )
                    for n in range(size)
                ],
            )
        corr_targets = [t for k, t in pending if k == "aftercorr"]
        if corr_targets and not never:
            changes = []
            for n, (left, reason) in enumerate(self._corr_pending(db, corr_targets, tasks.indices)):
                if left or reason:
                    total = len(array_deps) + left
                    new = JobStatus.FAILED.value if reason else self._first_status(job, total)
                    changes.append((new, total, reason, now if reason else None, array_id + 1 + n))
            db.executemany(  # the counts follow by trigger
                "UPDATE jobs SET status = ?, deps_left = ?, reason = ?, ended = ? WHERE id = ?",
                changes,
            )
        failed = db.execute(
            "SELECT sum(n) FROM job_counts WHERE array_id = ? AND status = ?",
            (array_id, JobStatus.FAILED.value),
        ).fetchone()
        if failed and failed[0]:
            db.execute("UPDATE arrays SET bad = ? WHERE id = ?", (failed[0], array_id))
        db.executemany(
            "INSERT OR IGNORE INTO deps VALUES (?, ?, ?)", [(array_id, k, t) for k, t in pending]
        )
        self._event(db, array_id, 0, f"array of {size} tasks submitted to queue {job.queue}", now)
        return array_id

    def _count(
        self, db: sqlite3.Connection, job: NewJob, array_id: int, status: str, n: int
    ) -> None:
        """Add new jobs to the kept counts (changes of state are counted by a trigger)."""
        db.execute(
            "INSERT INTO job_counts VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + ?",
            (job.queue, job.definition, array_id, status, n, n),
        )

    def _corr_pending(
        self, db: sqlite3.Connection, targets: list[int], indices: list[int]
    ) -> list[tuple[int, str | None]]:
        """Per task: how many aftercorr dependencies are still pending, and a reason when
        one can never be met. A task with no counterpart has nothing to wait for."""
        result: list[tuple[int, str | None]] = [(0, None)] * len(indices)
        position = {index: n for n, index in enumerate(indices)}
        for target in targets:
            rows = db.execute(
                "SELECT array_index, status FROM jobs WHERE array_id = ?", (target,)
            ).fetchall()
            for row in rows:
                n = position.get(row["array_index"])
                if n is None:
                    continue
                left, reason = result[n]
                status = row["status"]
                if status == JobStatus.SUCCESSFUL.value:
                    continue
                if status in BAD:
                    reason = reason or never_met("aftercorr", target, row["array_index"])
                else:
                    left += 1
                result[n] = (left, reason)
        return result

    # reading ---------------------------------------------------------------------

    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None:
        row = self._db.execute(
            f"SELECT {JOB_COLUMNS}, coalesce(j.script, a.script) AS script, j.params"
            f" FROM {JOB_FROM} WHERE j.id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        return _task(row, with_script=with_script)

    def get_array(self, array_id: int) -> ArrayRecord | None:
        row = self._db.execute(
            f"SELECT {ARRAY_COLUMNS} FROM arrays WHERE id = ?", (array_id,)
        ).fetchone()
        return self._array(row) if row else None

    def _array(self, row: sqlite3.Row) -> ArrayRecord:
        counts = dict.fromkeys((s.value for s in JobStatus), 0)
        for status, n in self._db.execute(
            "SELECT status, sum(n) FROM job_counts WHERE array_id = ? GROUP BY status",
            (row["id"],),
        ):
            counts[status] = n
        highest = None
        if counts[JobStatus.FAILED.value]:
            highest = self._db.execute(
                "SELECT max(exit_code) FROM jobs WHERE array_id = ? AND status = ?",
                (row["id"], JobStatus.FAILED.value),
            ).fetchone()[0]
        return ArrayRecord(
            id=row["id"],
            name=row["name"],
            queue=row["queue"],
            definition=row["definition"],
            size=row["size"],
            cap=row["cap"],
            spec=row["spec"],
            retries=row["retries"],
            priority=row["priority"],
            time_limit=row["time_limit"],
            submit_dir=row["submit_dir"],
            env=json.loads(row["env"]),
            options=json.loads(row["options"]),
            created=row["created"],
            counts=counts,
            highest_exit_code=highest,
        )

    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int = 0, collapse: bool = False
    ) -> list[JobRecord | ArrayRecord]:
        clause, args = _where(where)
        if not collapse or where.array_id is not None or where.selects or where.statuses:
            rows = self._db.execute(
                f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE {clause} AND j.id > ?"
                " ORDER BY j.id LIMIT ?",
                [*args, after, limit],
            )
            return [_job(row) for row in rows]
        # single jobs as they are, each array as one line
        singles = [
            _job(row)
            for row in self._db.execute(
                f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE {clause} AND j.array_id IS NULL"
                " AND j.id > ? ORDER BY j.id LIMIT ?",
                [*args, after, limit],
            )
        ]
        array_clause, array_args = _where(
            JobFilter(queue=where.queue, name=where.name, name_prefix=where.name_prefix), ""
        )
        arrays = [
            self._array(row)
            for row in self._db.execute(
                f"SELECT {ARRAY_COLUMNS} FROM arrays WHERE {array_clause} AND id > ?"
                " ORDER BY id LIMIT ?",
                [*array_args, after, limit],
            )
        ]
        merged: list[JobRecord | ArrayRecord] = [*singles, *arrays]
        merged.sort(key=lambda record: record.id)
        return merged[:limit]

    def count_jobs(self, where: JobFilter) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        if where.name is None and not where.name_prefix and not where.selects:
            # by queue, definition, array and state: from the kept counts
            clauses = ["n > 0"]
            args: list[Any] = []
            if where.queue is not None:
                clauses.append("queue = ?")
                args.append(where.queue)
            if where.array_id is not None:
                clauses.append("array_id = ?")
                args.append(where.array_id)
            if where.definition is not None:
                clauses.append("definition = ?")
                args.append(where.definition)
            if where.statuses:
                clauses.append(f"status IN ({_in(where.statuses)})")
                args += [s.value for s in where.statuses]
            rows = self._db.execute(
                f"SELECT status, sum(n) AS n FROM job_counts WHERE {' AND '.join(clauses)}"
                " GROUP BY status",
                args,
            )
        else:
            clause, args = _where(where, "")
            rows = self._db.execute(
                f"SELECT status, count(*) AS n FROM jobs WHERE {clause} GROUP BY status", args
            )
        for row in rows:
            counts[JobStatus(row["status"])] = row["n"]
        return counts

    def ended_per_minute(self, since: float) -> dict[int, int]:
        # a count over each minute's range of the index (a tenth of the time of one GROUP
        # BY), from one minute with ends to the next
        counts: dict[int, int] = {}
        start = since
        while True:
            (first,) = self._db.execute(
                "SELECT min(ended) FROM jobs WHERE ended >= ?", (start,)
            ).fetchone()
            if first is None:
                return counts
            minute = int(first // 60) * 60
            (n,) = self._db.execute(
                "SELECT count(*) FROM jobs INDEXED BY jobs_by_ended WHERE ended >= ? AND ended < ?",
                (max(minute, since), minute + 60),
            ).fetchone()
            counts[minute] = n
            start = minute + 60

    def resolve(self, selectors: Sequence[Selector]) -> JobFilter:
        ids: list[int] = []
        arrays: list[tuple[int, tuple[int, ...] | None]] = []
        missing: list[str] = []
        for selector in selectors:
            if self._db.execute("SELECT 1 FROM arrays WHERE id = ?", (selector.id,)).fetchone():
                arrays.append((selector.id, selector.indices))
            elif selector.indices is not None:
                missing.append(f"{selector.id} (not an array)")
            elif self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (selector.id,)).fetchone():
                ids.append(selector.id)
            else:
                missing.append(str(selector.id))
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise UsageError(f"unknown job id{plural}: {' '.join(missing[:20])}")
        return JobFilter(ids=tuple(ids), arrays=tuple(arrays))

    # changing state ------------------------------------------------------------------

    def cancel(self, where: JobFilter, now: float) -> CancelResult:
        clause, args = _where(where, "")
        with self._write() as db:
            finished = self._named(db, where, tuple(s.value for s in FINISHED), among=True)
            stopping = db.execute(
                f"SELECT count(*) FROM jobs WHERE {clause} AND status = ?",
                [*args, JobStatus.RUNNING.value],
            ).fetchone()[0]
            asked = db.execute(
                f"UPDATE jobs SET cancel_requested = 1 WHERE {clause} AND status = ?"
                " AND cancel_requested = 0 RETURNING id, attempt",
                [*args, JobStatus.RUNNING.value],
            ).fetchall()
            for row in asked:  # their workers stop them at their next report
                self._event(db, row["id"], row["attempt"], "cancel requested", now)
            # what has not started ends now, in one statement however many
            ended = db.execute(
                f"UPDATE jobs SET status = ?, cancel_requested = 1, ended = ?,"
                f" reason = 'cancelled before it started'"
                f" WHERE {clause} AND status IN ({_in(NOT_STARTED_VALUES)})"
                " RETURNING id, array_id, array_index, attempt",
                [JobStatus.CANCELLED.value, now, *args, *NOT_STARTED_VALUES],
            ).fetchall()
            self._bulk_events(db, ended, "cancelled before it started", now)
            rows = [(r["id"], r["array_id"], r["array_index"], JobStatus.CANCELLED) for r in ended]
            self._ended(db, rows, now)
        return CancelResult(len(ended), stopping, finished)

    def _named(
        self, db: sqlite3.Connection, where: JobFilter, statuses: tuple[str, ...], *, among: bool
    ) -> list[int]:
        """Of the job ids a request named, those in (or, among=False, not in) these states."""
        if not where.ids:
            return []
        negate = "" if among else "NOT "
        rows = db.execute(
            f"SELECT id FROM jobs WHERE id IN ({_in(where.ids)})"
            f" AND status {negate}IN ({_in(statuses)})",
            [*where.ids, *statuses],
        )
        return [row[0] for row in rows]

    def _bulk_events(
        self, db: sqlite3.Connection, rows: Sequence[sqlite3.Row], text: str, now: float
    ) -> None:
        """One event per job for a small change; one per array (and per single job) for a
        large one, so that changing a million jobs writes no million log lines."""
        if len(rows) <= EVENTS_PER_CHANGE:
            for row in rows:
                self._event(db, row["id"], row["attempt"], text, now)
            return
        per_array = Counter(row["array_id"] for row in rows)
        for array_id, n in per_array.items():
            if array_id is not None:
                self._event(db, array_id, 0, f"{n} tasks: {text}", now)
        for row in rows:
            if row["array_id"] is None:
                self._event(db, row["id"], row["attempt"], text, now)

    def hold(self, where: JobFilter, now: float) -> HoldResult:
        return self._set_hold(where, now, hold=True)

    def release(self, where: JobFilter, now: float) -> HoldResult:
        return self._set_hold(where, now, hold=False)

    def _set_hold(self, where: JobFilter, now: float, *, hold: bool) -> HoldResult:
        clause, args = _where(where, "")
        movable: tuple[str, ...]
        if hold:
            movable = (JobStatus.WAITING.value, JobStatus.BLOCKED.value)
            new = "?"
            new_args: list[Any] = [JobStatus.HELD.value]
        else:
            movable = (JobStatus.HELD.value,)
            new = "CASE WHEN deps_left > 0 THEN ? ELSE ? END"
            new_args = [JobStatus.BLOCKED.value, JobStatus.WAITING.value]
        with self._write() as db:
            unchanged = self._named(db, where, movable, among=False)  # named, to say so
            changed = db.execute(
                f"UPDATE jobs SET status = {new} WHERE {clause} AND status IN ({_in(movable)})"
                " RETURNING id, array_id, attempt",
                [*new_args, *args, *movable],
            ).fetchall()
            self._bulk_events(db, changed, "held" if hold else "released", now)
        return HoldResult(len(changed), unchanged)

    def claim(
        self,
        worker_id: str,
        queue: str,
        definition: str,
        limit: int,
        lease: float,
        now: float,
        fits: Fits | None = None,
    ) -> list[JobRecord]:
        claimed = []
        sized = ""
        if fits is not None:  # the request is in the job's options (a task's: its array's)
            sized = (
                " AND hyper_fits(coalesce(j.options,"
                " (SELECT a.options FROM arrays a WHERE a.id = j.array_id)))"
            )
        with self._write() as db:
            if fits is not None:
                db.create_function("hyper_fits", 1, _fits_function(fits))
            for _ in range(limit):
                row = db.execute(
                    "SELECT j.id, j.array_id FROM jobs j INDEXED BY jobs_claim"
                    " WHERE j.status = ? AND j.queue = ? AND j.definition = ? AND"
                    " (j.array_id IS NULL OR NOT EXISTS (SELECT 1 FROM arrays a WHERE"
                    "  a.id = j.array_id AND a.cap IS NOT NULL AND a.running >= a.cap))"
                    f"{sized} ORDER BY j.priority DESC, j.id LIMIT 1",
                    (JobStatus.WAITING.value, queue, definition),
                ).fetchone()
                if row is None:
                    break
                db.execute(
                    "UPDATE jobs SET status = ?, worker_id = ?, attempt = attempt + 1,"
                    " lease_until = ?, started = ?, exit_code = NULL WHERE id = ?",
                    (JobStatus.RUNNING.value, worker_id, now + lease, now, row["id"]),
                )
                if row["array_id"] is not None:
                    db.execute(
                        "UPDATE arrays SET running = running + 1 WHERE id = ?", (row["array_id"],)
                    )
                job = db.execute(
                    f"SELECT {JOB_COLUMNS}, coalesce(j.script, a.script) AS script, j.params"
                    f" FROM {JOB_FROM} WHERE j.id = ?",
                    (row["id"],),
                ).fetchone()
                db.execute(
                    "INSERT INTO attempts (job_id, attempt, worker_id, started)"
                    " VALUES (?, ?, ?, ?)",
                    (job["id"], job["attempt"], worker_id, now),
                )
                started = f"attempt {job['attempt']} started on {worker_id}"
                self._event(db, job["id"], job["attempt"], started, now)
                claimed.append(_task(job, with_script=True))
            self._touch(db, worker_id, now)
        return claimed

    def _held(
        self, db: sqlite3.Connection, worker_id: str, job_id: int, attempt: int
    ) -> sqlite3.Row:
        row = db.execute(
            "SELECT id, status, worker_id, attempt, retries_left, cancel_requested, array_id,"
            " array_index FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if (
            row is None
            or row["status"] != JobStatus.RUNNING.value
            or row["worker_id"] != worker_id
            or row["attempt"] != attempt
        ):
            raise Conflict(f"worker {worker_id} no longer holds attempt {attempt} of job {job_id}")
        return row

    def heartbeat(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        lease: float,
        now: float,
        process_group: int | None = None,
    ) -> bool:
        with self._write() as db:
            row = self._held(db, worker_id, job_id, attempt)
            db.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (now + lease, job_id))
            if process_group is not None:
                db.execute(
                    "UPDATE attempts SET process_group = ? WHERE job_id = ? AND attempt = ?",
                    (process_group, job_id, attempt),
                )
            self._touch(db, worker_id, now)
        return bool(row["cancel_requested"])

    def process_groups(self, worker_id: str) -> list[tuple[int, int, int]]:
        """(job id, attempt, process group) of the attempts a worker ran, as it reported
        them, that it never reported ended."""
        rows = self._db.execute(
            "SELECT job_id, attempt, process_group FROM attempts WHERE worker_id = ?"
            " AND process_group IS NOT NULL AND exit_code IS NULL",
            (worker_id,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def complete(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        now: float,
    ) -> JobStatus:
        ending = Ending(job_id, attempt, exit_code, reason, ())
        status = self.complete_many(worker_id, [ending], now)[0]
        if isinstance(status, Conflict):
            raise status
        return status

    def complete_many(
        self, worker_id: str, endings: Sequence[Ending], now: float
    ) -> list[JobStatus | Conflict]:
        """End several attempts in one transaction, their last output with them; an attempt
        the worker no longer holds gets a Conflict in its place, and its output is dropped."""
        results: list[JobStatus | Conflict] = []
        with self._write() as db:
            for ending in endings:
                try:
                    row = self._held(db, worker_id, ending.job_id, ending.attempt)
                except Conflict as conflict:
                    results.append(conflict)
                    continue
                results.append(self._end_attempt(db, row, ending.exit_code, ending.reason, now))
                db.executemany(
                    LOG_INSERT,
                    [(ending.job_id, ending.attempt, k.value, now, t) for k, t in ending.output],
                )
            self._touch(db, worker_id, now)
        return results

    def _end_attempt(
        self,
        db: sqlite3.Connection,
        row: sqlite3.Row,
        exit_code: int | None,
        reason: str | None,
        now: float,
        reclaimed: bool = False,
    ) -> JobStatus:
        job_id, attempt = row["id"], row["attempt"]
        outcome = outcome_of_attempt(
            attempt=attempt,
            exit_code=exit_code,
            retries_left=row["retries_left"],
            cancel_requested=bool(row["cancel_requested"]),
            reason=reason,
            reclaimed=reclaimed,
        )
        finished = outcome.status in FINISHED
        final_reason = None
        if outcome.status is JobStatus.CANCELLED:
            final_reason = "cancelled"
        elif outcome.status is JobStatus.FAILED:
            final_reason = reason or f"exit code {exit_code}"
        db.execute(
            "UPDATE jobs SET status = ?, retries_left = ?, exit_code = ?, reason = ?,"
            " worker_id = NULL, lease_until = NULL, ended = ? WHERE id = ?",
            (
                outcome.status.value,
                outcome.retries_left,
                exit_code,
                final_reason,
                now if finished else None,
                job_id,
            ),
        )
        db.execute(
            "UPDATE attempts SET ended = ?, exit_code = ?, outcome = ? WHERE job_id = ? AND"
            " attempt = ?",
            (now, exit_code, outcome.status.value, job_id, attempt),
        )
        if row["array_id"] is not None:
            db.execute("UPDATE arrays SET running = running - 1 WHERE id = ?", (row["array_id"],))
        self._event(db, job_id, attempt, outcome.event, now)
        if finished:
            self._ended(db, [(job_id, row["array_id"], row["array_index"], outcome.status)], now)
        return outcome.status

    def _ended(self, db: sqlite3.Connection, ended: Sequence[Ended], now: float) -> None:
        """Jobs reached a final state: count them on their arrays, and judge what depends
        on them (which may end more jobs, judged in turn)."""
        self._count_on_arrays(db, ended)
        targets = {row[0] for row in db.execute("SELECT DISTINCT target FROM deps")}
        work = [e for e in ended if e[0] in targets or e[1] in targets]
        while work:
            job_id, array_id, index, state = work.pop()
            more: list[Ended] = []
            ok = int(state is JobStatus.SUCCESSFUL)
            for dep in db.execute("SELECT owner, kind FROM deps WHERE target = ?", (job_id,)):
                verdict = judge_dependency(dep["kind"], ok=ok, bad=1 - ok, size=1)
                more += self._settle(db, dep["owner"], dep["kind"], job_id, verdict, now)
            if array_id is not None:
                for dep in db.execute("SELECT owner, kind FROM deps WHERE target = ?", (array_id,)):
                    if dep["kind"] == "aftercorr":
                        verdict = judge_dependency("aftercorr", ok=ok, bad=1 - ok, size=1)
                        more += self._settle_task(db, dep["owner"], array_id, index, verdict, now)
                        continue
                    counts = db.execute(
                        "SELECT ok, bad, size FROM arrays WHERE id = ?", (array_id,)
                    ).fetchone()
                    verdict = judge_dependency(
                        dep["kind"], ok=counts["ok"], bad=counts["bad"], size=counts["size"]
                    )
                    more += self._settle(db, dep["owner"], dep["kind"], array_id, verdict, now)
            self._count_on_arrays(db, more)
            work += [e for e in more if e[0] in targets or e[1] in targets]

    def _count_on_arrays(self, db: sqlite3.Connection, ended: Sequence[Ended]) -> None:
        tally = Counter(
            (array_id, "ok" if state is JobStatus.SUCCESSFUL else "bad")
            for _, array_id, _, state in ended
            if array_id is not None
        )
        for (array_id, column), n in tally.items():
            db.execute(f"UPDATE arrays SET {column} = {column} + ? WHERE id = ?", (n, array_id))

    def _settle(
        self,
        db: sqlite3.Connection,
        owner: int,
        kind: str,
        target: int,
        verdict: Verdict,
        now: float,
    ) -> list[Ended]:
        """Apply a judged dependency of a job or a whole array; return the jobs it ended."""
        if verdict is Verdict.PENDING:
            return []
        db.execute(
            "DELETE FROM deps WHERE owner = ? AND kind = ? AND target = ?", (owner, kind, target)
        )
        reason = never_met(kind, target)
        return self._apply(db, "(id = ? OR array_id = ?)", (owner, owner), verdict, reason, now)

    def _settle_task(
        self,
        db: sqlite3.Connection,
        owner_array: int,
        target_array: int,
        index: int | None,
        verdict: Verdict,
        now: float,
    ) -> list[Ended]:
        """aftercorr: task `index` of `owner_array` waited for task `index` of the target."""
        reason = never_met("aftercorr", target_array, index)
        scope = "array_id = ? AND array_index = ?"
        return self._apply(db, scope, (owner_array, index), verdict, reason, now)

    def _apply(
        self,
        db: sqlite3.Connection,
        scope: str,
        args: tuple[Any, ...],
        verdict: Verdict,
        reason: str,
        now: float,
    ) -> list[Ended]:
        """A judged dependency of the jobs in `scope` that have not started: one less to wait
        for (ready when none is left), or never runnable. Returns the jobs it ended."""
        if verdict is Verdict.PENDING:
            return []
        waiting = (JobStatus.BLOCKED.value, JobStatus.HELD.value)
        if verdict is Verdict.NEVER:
            return self._fail_unrunnable(db, f"{scope} AND status IN (?, ?)", (*args, *waiting),
                                         reason, now)  # fmt: skip
        db.execute(
            f"UPDATE jobs SET deps_left = deps_left - 1 WHERE {scope} AND status IN (?, ?)",
            (*args, *waiting),
        )
        db.execute(
            f"UPDATE jobs SET status = ? WHERE {scope} AND status = ? AND deps_left = 0",
            (JobStatus.WAITING.value, *args, JobStatus.BLOCKED.value),
        )
        return []

    def _fail_unrunnable(
        self, db: sqlite3.Connection, scope: str, args: tuple[Any, ...], reason: str, now: float
    ) -> list[Ended]:
        rows = db.execute(
            f"UPDATE jobs SET status = ?, reason = ?, ended = ? WHERE {scope}"
            " RETURNING id, array_id, array_index",
            (JobStatus.FAILED.value, reason, now, *args),
        ).fetchall()
        for row in rows:
            self._event(db, row["id"], 0, reason, now)
        return [(r["id"], r["array_id"], r["array_index"], JobStatus.FAILED) for r in rows]

    def return_claims(self, worker_id: str, claims: Sequence[tuple[int, int]], now: float) -> int:
        """Jobs a worker claimed but never started go back to waiting, as if never claimed."""
        returned = 0
        with self._write() as db:
            for job_id, attempt in claims:
                row = db.execute(
                    "UPDATE jobs SET status = ?, attempt = attempt - 1, worker_id = NULL,"
                    " lease_until = NULL, started = NULL WHERE id = ? AND status = ? AND"
                    " worker_id = ? AND attempt = ? RETURNING array_id",
                    (JobStatus.WAITING.value, job_id, JobStatus.RUNNING.value, worker_id, attempt),
                ).fetchone()
                if row is None:
                    continue
                returned += 1
                db.execute(
                    "DELETE FROM attempts WHERE job_id = ? AND attempt = ?", (job_id, attempt)
                )
                if row["array_id"] is not None:
                    db.execute(
                        "UPDATE arrays SET running = running - 1 WHERE id = ?", (row["array_id"],)
                    )
                self._event(db, job_id, attempt - 1, f"returned unstarted by {worker_id}", now)
        return returned

    def expire_leases(self, now: float, keep: Collection[str] = ()) -> list[int]:
        kept = sorted(keep)
        clause = "lease_until < ?" + (
            f" AND worker_id NOT IN ({', '.join('?' * len(kept))})" if kept else ""
        )
        return self._lose(clause, (now, *kept), "fell silent past its lease", now)

    def lease_holders(self, now: float) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT worker_id FROM jobs WHERE status = ? AND lease_until < ?"
            " AND worker_id IS NOT NULL",
            (JobStatus.RUNNING.value, now),
        )
        return sorted(row[0] for row in rows)

    def abandon(self, worker_id: str, now: float, *, reclaimed: bool = False) -> list[int]:
        """The worker is known to be gone: what it held is lost now, not when leases end."""
        why = "is gone with its reclaimed machine" if reclaimed else "is gone"
        return self._lose("worker_id = ?", (worker_id,), why, now, reclaimed=reclaimed)

    def _lose(
        self,
        clause: str,
        args: tuple[Any, ...],
        why: str,
        now: float,
        *,
        reclaimed: bool = False,
    ) -> list[int]:
        """End the running attempts that match as lost: each is retried or fails by policy."""
        lost: list[int] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, worker_id, attempt, retries_left, cancel_requested, array_id,"
                f" array_index FROM jobs WHERE status = ? AND {clause}",
                (JobStatus.RUNNING.value, *args),
            ).fetchall()
            for row in rows:
                reason = f"was lost: worker {row['worker_id']} {why}"
                self._end_attempt(db, row, None, reason, now, reclaimed)
                lost.append(row["id"])
        return lost

    def extend_leases(self, lease: float, now: float) -> int:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = max(coalesce(lease_until, 0), ?) WHERE status = ?",
                (now + lease, JobStatus.RUNNING.value),
            )
            return cursor.rowcount

    def reconcile_counts(self, now: float) -> int:
        """Nothing to do: counts change in the same transaction as their jobs."""
        return 0

    def demand(self) -> list[tuple[str, str, int, int]]:
        """(queue, definition, waiting, running): waiting counts only the tasks that the
        caps of their arrays let start now."""
        totals: dict[tuple[str, str], list[int]] = {}
        for row in self._db.execute(
            "SELECT queue, definition, status, sum(n) AS n FROM job_counts"
            " WHERE status IN (?, ?) AND n > 0 GROUP BY queue, definition, status",
            (JobStatus.WAITING.value, JobStatus.RUNNING.value),
        ):
            counts = totals.setdefault((row["queue"], row["definition"]), [0, 0])
            counts[0 if row["status"] == JobStatus.WAITING.value else 1] += row["n"]
        for row in self._db.execute(
            "SELECT a.queue, a.definition, a.cap, a.running, (SELECT coalesce(sum(n), 0)"
            "  FROM job_counts c WHERE c.array_id = a.id AND c.status = ?) AS waiting"
            " FROM arrays a WHERE a.cap IS NOT NULL AND a.ok + a.bad < a.size",
            (JobStatus.WAITING.value,),
        ):
            pair = (row["queue"], row["definition"])
            if pair in totals:
                allowed = max(0, min(row["waiting"], row["cap"] - row["running"]))
                totals[pair][0] -= row["waiting"] - allowed
        return [(q, d, waiting, running) for (q, d), (waiting, running) in sorted(totals.items())]

    def requests(
        self, queue: str, definition: str, most: int
    ) -> dict[tuple[tuple[str, int], ...], int] | None:
        rows = self._db.execute(
            "SELECT json_extract(coalesce(j.options, a.options), '$.request') AS r FROM jobs j"
            " INDEXED BY jobs_claim LEFT JOIN arrays a ON a.id = j.array_id"
            " WHERE j.status IN (?, ?) AND j.queue = ? AND j.definition = ? LIMIT ?",
            (JobStatus.WAITING.value, JobStatus.RUNNING.value, queue, definition, most + 1),
        ).fetchall()
        if len(rows) > most:
            return None
        found: dict[tuple[tuple[str, int], ...], int] = {}
        for row in rows:
            key = _request_key(row["r"])
            found[key] = found.get(key, 0) + 1
        return found

    # logs ------------------------------------------------------------------------

    def _event(
        self, db: sqlite3.Connection, job_id: int, attempt: int, text: str, now: float
    ) -> None:
        db.execute(
            LOG_INSERT,
            (job_id, attempt, LogKind.SYSTEM.value, now, text),
        )

    def append_log(
        self,
        job_id: int,
        attempt: int,
        entries: Sequence[tuple[LogKind, str]],
        now: float,
        *,
        output_limit: int | None = None,
    ) -> None:
        if not entries:
            return
        with self._write() as db:
            if output_limit is not None:
                row = db.execute(
                    "SELECT bytes FROM output_kept WHERE job_id = ? AND attempt = ?",
                    (job_id, attempt),
                ).fetchone()
                entries, kept = output.within(entries, row[0] if row else 0, output_limit)
                db.execute(
                    "INSERT INTO output_kept VALUES (?, ?, ?) ON CONFLICT (job_id, attempt)"
                    " DO UPDATE SET bytes = excluded.bytes",
                    (job_id, attempt, kept),
                )
            db.executemany(
                LOG_INSERT,
                [(job_id, attempt, kind.value, now, text) for kind, text in entries],
            )

    def read_log(
        self, job_id: int, kinds: Sequence[LogKind], *, after: int = 0, limit: int = 1000
    ) -> list[LogEntry]:
        wanted = kinds or tuple(LogKind)
        rows = self._db.execute(
            f"SELECT * FROM job_log WHERE job_id = ? AND kind IN ({_in(wanted)})"
            " AND seq > ? ORDER BY seq LIMIT ?",
            [job_id, *(k.value for k in wanted), after, limit],
        )
        return [
            LogEntry(
                seq=row["seq"],
                job_id=row["job_id"],
                attempt=row["attempt"],
                kind=LogKind(row["kind"]),
                time=row["time"],
                text=row["text"],
            )
            for row in rows
        ]

    # workers -----------------------------------------------------------------------

    def add_worker(self, worker: WorkerRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    worker.id,
                    worker.queue,
                    worker.definition,
                    worker.region,
                    worker.launcher,
                    worker.pid,
                    worker.state,
                    worker.started,
                    worker.last_seen,
                    worker.ended,
                    worker.node,
                ),
            )

    def _touch(self, db: sqlite3.Connection, worker_id: str, now: float) -> None:
        db.execute(
            "UPDATE workers SET last_seen = ?, state = 'ACTIVE' WHERE id = ? AND state != 'EXITED'",
            (now, worker_id),
        )

    def claim_tick(self, owner: str, now: float, seconds: float) -> bool:
        return True  # one daemon owns the file, and its ticks run one after another

    def release_tick(self, owner: str) -> None:
        pass

    def touch_worker(self, worker_id: str, now: float) -> None:
        with self._write() as db:
            self._touch(db, worker_id, now)

    def end_worker(self, worker_id: str, now: float) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE workers SET state = 'EXITED', ended = ? WHERE id = ? AND state != 'EXITED'",
                (now, worker_id),
            )

    def live_workers(self) -> list[WorkerRecord]:
        rows = self._db.execute("SELECT * FROM workers WHERE state != 'EXITED' ORDER BY started")
        return [WorkerRecord(**dict(row)) for row in rows]

    # nodes of static regions ----------------------------------------------------------

    def join_node(self, node: NodeRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " region = excluded.region, definition = excluded.definition,"
                " slots = excluded.slots, hostname = excluded.hostname,"
                " last_seen = excluded.last_seen",
                (node.id, node.region, node.definition, node.slots, node.hostname, node.joined,
                 node.last_seen),
            )  # fmt: skip

    def nodes(self, region: str | None = None) -> list[NodeRecord]:
        if region is None:
            rows = self._db.execute("SELECT * FROM nodes ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM nodes WHERE region = ? ORDER BY id", (region,))
        return [NodeRecord(**dict(row)) for row in rows]

    def leave_node(self, node_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))

    def take_assignments(self, node_id: str, now: float) -> list[WorkerRecord]:
        """Workers the scheduler placed on a node that the node has not started yet."""
        with self._write() as db:
            db.execute("UPDATE nodes SET last_seen = ? WHERE id = ?", (now, node_id))
            rows = db.execute(
                "UPDATE workers SET state = 'STARTING', last_seen = ? WHERE node = ? AND"
                " state = 'ASSIGNED' RETURNING *",
                (now, node_id),
            ).fetchall()
        return [WorkerRecord(**dict(row)) for row in rows]

    # files -------------------------------------------------------------------------------

    def put_file(self, key: str, data: bytes, now: float) -> None:
        with self._write(durable=True) as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (key, data, now))

    def put_file_from(self, key: str, source: BinaryIO, size: int, now: float) -> None:
        """Store `size` bytes read from `source` a chunk at a time, never all in memory."""
        with self._write(durable=True) as db:
            (rowid,) = db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, zeroblob(?), ?) RETURNING rowid",
                (key, size, now),
            ).fetchone()
            blobopen = getattr(db, "blobopen", None)  # Python 3.11 and later
            if blobopen is None:
                db.execute("UPDATE files SET data = ? WHERE rowid = ?", (source.read(), rowid))
                return
            with blobopen("files", "data", rowid) as blob:
                while chunk := source.read(FILE_CHUNK):
                    blob.write(chunk)

    # retention ----------------------------------------------------------------------

    def purge(self, before: float, *, rewrite: bool = False) -> dict[str, int]:
        """Delete the jobs that finished before `before` (an array once all its tasks
        have), their logs, attempts and files (what they collected, and their package if
        no job left uses it), and workers that ended before it; then give the freed pages
        back to the file system (a store made without auto_vacuum only with `rewrite`: a
        VACUUM holds the store for as long as it takes). What was deleted, counted."""
        done = ",".join(f"'{s.value}'" for s in FINISHED)
        with self._write() as db:
            db.execute("DROP TABLE IF EXISTS temp.purged")
            db.execute(
                "CREATE TEMP TABLE purged AS"
                f" SELECT id, array_id FROM jobs WHERE array_id IS NULL AND status IN ({done})"
                "   AND ended < ?1"
                " UNION ALL SELECT j.id, j.array_id FROM jobs j WHERE j.array_id IN ("
                "   SELECT array_id FROM jobs WHERE array_id IS NOT NULL GROUP BY array_id"
                f"   HAVING sum(status NOT IN ({done}) OR ended IS NULL OR ended >= ?1) = 0)",
                (before,),
            )
            db.execute("CREATE INDEX temp.purged_id ON purged (id)")
            packages = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT json_extract(coalesce(j.options, a.options), '$.package')"
                    " FROM purged p JOIN jobs j ON j.id = p.id"
                    " LEFT JOIN arrays a ON a.id = j.array_id"
                )
                if row[0]
            ]
            counted = db.execute(
                "SELECT j.queue, j.definition, coalesce(j.array_id, 0), j.status, count(*)"
                " FROM purged p JOIN jobs j ON j.id = p.id GROUP BY 1, 2, 3, 4"
            ).fetchall()
            for queue, definition, array_id, status, n in counted:
                db.execute(
                    "UPDATE job_counts SET n = n - ? WHERE queue = ? AND definition = ?"
                    " AND array_id = ? AND status = ?",
                    (n, queue, definition, array_id, status),
                )
            db.execute("DELETE FROM job_counts WHERE n <= 0")
            logs = db.execute(
                "DELETE FROM job_log WHERE job_id IN (SELECT id FROM purged)"
            ).rowcount
            db.execute("DELETE FROM attempts WHERE job_id IN (SELECT id FROM purged)")
            db.execute(
                "DELETE FROM deps WHERE owner IN (SELECT id FROM purged)"
                " OR owner IN (SELECT array_id FROM purged)"
            )
            files = db.execute(
                "DELETE FROM files WHERE key GLOB 'jobs/[0-9]*/*' AND CAST(substr(key, 6,"
                " instr(substr(key, 6), '/') - 1) AS INTEGER) IN (SELECT id FROM purged)"
            ).rowcount
            jobs = db.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM purged)").rowcount
            db.execute("DELETE FROM arrays WHERE id IN (SELECT array_id FROM purged)")
            for package in packages:
                in_use = db.execute(
                    "SELECT 1 FROM jobs j LEFT JOIN arrays a ON a.id = j.array_id WHERE"
                    " json_extract(coalesce(j.options, a.options), '$.package') = ? LIMIT 1",
                    (package,),
                ).fetchone()
                if not in_use:
                    files += db.execute("DELETE FROM files WHERE key = ?", (package,)).rowcount
            workers = db.execute(
                "DELETE FROM workers WHERE ended IS NOT NULL AND ended < ?", (before,)
            ).rowcount
            db.execute("DROP TABLE temp.purged")
        if jobs or files or workers:
            self._give_back_space(rewrite=rewrite)
        return {"jobs": jobs, "log_lines": logs, "files": files, "workers": workers}

    def _give_back_space(self, *, rewrite: bool) -> None:
        """Return free pages to the file system and empty the write-ahead log. A store made
        before auto_vacuum was set is rewritten (VACUUM) to set it, when `rewrite`."""
        try:
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                if rewrite:
                    self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    self._db.execute("VACUUM")
            else:
                # sqlite3_exec steps it to the end (execute would free one page per call)
                self._db.executescript("PRAGMA incremental_vacuum;")
            # the file shrinks only when the log is checkpointed whole: a checkpoint of the
            # daemon's own checkpointer thread running at that moment makes this one busy
            deadline = time.monotonic() + GIVE_BACK_SECONDS
            while self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        except sqlite3.OperationalError as error:
            raise _unavailable(self.path, error) from error

    def get_file(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT data FROM files WHERE key = ?", (key,)).fetchone()
        return bytes(row["data"]) if row else None

    def delete_files(self, prefix: str) -> int:
        with self._write() as db:
            # the key, and the keys from "prefix/" up to "prefix0" ('0' follows '/')
            cursor = db.execute(
                "DELETE FROM files WHERE key = ? OR (key > ? AND key < ?)",
                (prefix, prefix + "/", prefix + "0"),
            )
            return cursor.rowcount

    # workflows -----------------------------------------------------------------------------

    def add_workflow(self, data: dict[str, Any], now: float) -> WorkflowRecord:
        with self._write(durable=True) as db:
            row = db.execute(
                "INSERT INTO workflows (finished, version, data, created, updated)"
                " VALUES (0, 1, ?, ?, ?) RETURNING *",
                (json.dumps(data), now, now),
            ).fetchone()
        return _workflow(row)

    def get_workflow(self, workflow_id: int) -> WorkflowRecord | None:
        row = self._db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchone()
        return _workflow(row) if row else None

    def list_workflows(self, *, unfinished: bool = False, limit: int = 100) -> list[WorkflowRecord]:
        clause = "WHERE finished = 0" if unfinished else ""
        rows = self._db.execute(
            f"SELECT * FROM workflows {clause} ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_workflow(row) for row in rows]

    def update_workflow(
        self, record: WorkflowRecord, data: dict[str, Any], *, finished: bool, now: float
    ) -> WorkflowRecord:
        with self._write(durable=True) as db:
            row = db.execute(
                "UPDATE workflows SET finished = ?, version = version + 1, data = ?, updated = ?"
                " WHERE id = ? AND version = ? RETURNING *",
                (int(finished), json.dumps(data), now, record.id, record.version),
            ).fetchone()
        if row is None:
            raise Conflict(f"workflow {record.id} changed meanwhile")
        return _workflow(row)


def _request_key(text: str | None) -> tuple[tuple[str, int], ...]:
    """A request kept as JSON text, as sorted items (() for nothing asked)."""
    try:
        request = json.loads(text) if text else None
    except ValueError:
        request = None
    if not isinstance(request, dict):
        return ()
    return tuple(sorted((k, int(v)) for k, v in request.items() if isinstance(v, int)))


def _fits_function(fits: Fits) -> Callable[[str | None], int]:
    """`fits` as an SQL function of a job's options (JSON text)."""

    def call(options: str | None) -> int:
        try:
            request = json.loads(options).get("request") if options else None
        except (ValueError, AttributeError):
            request = None
        return int(fits(request if isinstance(request, dict) else None))

    return call


def _workflow(row: sqlite3.Row) -> WorkflowRecord:
    return WorkflowRecord(
        id=row["id"],
        finished=bool(row["finished"]),
        data=json.loads(row["data"]),
        version=row["version"],
        created=row["created"],
        updated=row["updated"],
    )


def _task(row: sqlite3.Row, *, with_script: bool) -> JobRecord:
    """A job read with its script and params: a task's own variables over its array's."""
    record = _job(row, _task_script(row) if with_script else None)
    record.env = {**record.env, **_task_params(row).get("env", {})}
    return record


def _task_params(row: sqlite3.Row) -> dict[str, Any]:
    return json.loads(row["params"]) if row["params"] else {}


def _task_script(row: sqlite3.Row) -> str:
    return task_script(row["script"], _task_params(row).get("replacements", {}))
