"""The store on SQLite: one file in the host's data directory, WAL journal.

Used from one thread (the host's event loop), so a write transaction is never
interleaved with another; ``BEGIN IMMEDIATE`` still guards against a second
process opening the same file. Submits commit with ``synchronous=FULL`` (an
acknowledged job survives a power cut); everything else with NORMAL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hyper.errors import Conflict
from hyper.jobs import FINISHED, JobStatus, LogKind, outcome_of_attempt
from hyper.store.base import (
    CancelResult,
    JobFilter,
    JobRecord,
    LogEntry,
    NewJob,
    Resource,
    WorkerRecord,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
    log TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, queue TEXT NOT NULL, definition TEXT NOT NULL,
    script TEXT NOT NULL, env TEXT NOT NULL, submit_dir TEXT,
    status TEXT NOT NULL, retries INTEGER NOT NULL, retries_left INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, exit_code INTEGER, reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, worker_id TEXT, lease_until REAL,
    created REAL NOT NULL, started REAL, ended REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_queue ON jobs (queue, status);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, queue, definition);
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs (name);
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, worker_id TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, exit_code INTEGER, outcome TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS job_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, time REAL NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_log_by_job ON job_log (job_id, kind, seq);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, definition TEXT NOT NULL, region TEXT NOT NULL,
    launcher TEXT NOT NULL, pid INTEGER, state TEXT NOT NULL, started REAL NOT NULL,
    last_seen REAL NOT NULL, ended REAL
);
CREATE INDEX IF NOT EXISTS workers_by_state ON workers (state);
"""

JOB_COLUMNS = (
    "id, name, queue, definition, status, retries, retries_left, attempt, exit_code, reason, "
    "cancel_requested, worker_id, lease_until, submit_dir, env, created, started, ended"
)


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
        env=json.loads(row["env"]),
        created=row["created"],
        started=row["started"],
        ended=row["ended"],
        script=script,
    )


def _where(where: JobFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if where.queue is not None:
        clauses.append("queue = ?")
        args.append(where.queue)
    if where.name is not None:
        clauses.append("name = ?")
        args.append(where.name)
    if where.statuses:
        clauses.append(f"status IN ({','.join('?' * len(where.statuses))})")
        args.extend(s.value for s in where.statuses)
    if where.ids:
        clauses.append(f"id IN ({','.join('?' * len(where.ids))})")
        args.extend(where.ids)
    return (" AND ".join(clauses) or "1"), args


class SQLiteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        db = self._db
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")

    # resources ---------------------------------------------------------------

    def put_resource(
        self, kind: str, name: str, spec: dict[str, Any], status: str, log_line: str, now: float
    ) -> Resource:
        with self._write(durable=True) as db:
            row = db.execute(
                "SELECT log, created FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
            log = json.loads(row["log"]) if row else []
            log.append(log_line)
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

    def get_resource(self, kind: str, name: str) -> Resource | None:
        row = self._db.execute(
            "SELECT * FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        return self._resource(row) if row else None

    def list_resources(self, kind: str) -> list[Resource]:
        rows = self._db.execute("SELECT * FROM resources WHERE kind = ? ORDER BY name", (kind,))
        return [self._resource(row) for row in rows]

    # jobs ----------------------------------------------------------------------

    def submit(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        ids: list[int] = []
        with self._write(durable=True) as db:
            for job in jobs:
                cursor = db.execute(
                    "INSERT INTO jobs (name, queue, definition, script, env, submit_dir, status,"
                    " retries, retries_left, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.name,
                        job.queue,
                        job.definition,
                        job.script,
                        json.dumps(job.env),
                        job.submit_dir,
                        JobStatus.WAITING.value,
                        job.retries,
                        job.retries,
                        now,
                    ),
                )
                job_id = int(cursor.lastrowid or 0)
                ids.append(job_id)
                self._event(db, job_id, 0, f"submitted to queue {job.queue}", now)
        return ids

    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None:
        columns = JOB_COLUMNS + (", script" if with_script else "")
        row = self._db.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        return _job(row, row["script"] if with_script else None)

    def list_jobs(self, where: JobFilter, *, limit: int, after: int = 0) -> list[JobRecord]:
        clause, args = _where(where)
        rows = self._db.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} AND id > ? ORDER BY id LIMIT ?",
            [*args, after, limit],
        )
        return [_job(row) for row in rows]

    def count_jobs(self, where: JobFilter) -> dict[JobStatus, int]:
        clause, args = _where(where)
        counts = dict.fromkeys(JobStatus, 0)
        rows = self._db.execute(
            f"SELECT status, count(*) AS n FROM jobs WHERE {clause} GROUP BY status", args
        )
        for row in rows:
            counts[JobStatus(row["status"])] = row["n"]
        return counts

    def missing_ids(self, ids: Sequence[int]) -> list[int]:
        wanted = sorted(set(ids))
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(row["id"] for row in rows)
        return [i for i in wanted if i not in found]

    def cancel(self, where: JobFilter, now: float) -> CancelResult:
        clause, args = _where(where)
        cancelled: list[int] = []
        stopping: list[int] = []
        finished: list[int] = []
        with self._write() as db:
            rows = db.execute(
                f"SELECT id, status, attempt, cancel_requested FROM jobs WHERE {clause}", args
            ).fetchall()
            for row in rows:
                status = JobStatus(row["status"])
                if status in FINISHED:
                    finished.append(row["id"])
                elif status is JobStatus.RUNNING:
                    stopping.append(row["id"])
                    if not row["cancel_requested"]:
                        db.execute(
                            "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (row["id"],)
                        )
                        self._event(db, row["id"], row["attempt"], "cancel requested", now)
                else:
                    cancelled.append(row["id"])
                    db.execute(
                        "UPDATE jobs SET status = ?, cancel_requested = 1, ended = ?,"
                        " reason = 'cancelled before it started' WHERE id = ?",
                        (JobStatus.CANCELLED.value, now, row["id"]),
                    )
                    self._event(db, row["id"], row["attempt"], "cancelled before it started", now)
        return CancelResult(cancelled, stopping, finished)

    # the worker side ------------------------------------------------------------

    def claim(
        self, worker_id: str, queue: str, definition: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        with self._write() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status = ? AND queue = ? AND definition = ?"
                " ORDER BY id LIMIT ?",
                (JobStatus.WAITING.value, queue, definition, limit),
            ).fetchall()
            claimed = []
            for row in rows:
                job = db.execute(
                    "UPDATE jobs SET status = ?, worker_id = ?, attempt = attempt + 1,"
                    " lease_until = ?, started = ?, exit_code = NULL WHERE id = ?"
                    f" RETURNING {JOB_COLUMNS}, script",
                    (JobStatus.RUNNING.value, worker_id, now + lease, now, row["id"]),
                ).fetchone()
                db.execute(
                    "INSERT INTO attempts (job_id, attempt, worker_id, started)"
                    " VALUES (?, ?, ?, ?)",
                    (job["id"], job["attempt"], worker_id, now),
                )
                started = f"attempt {job['attempt']} started on {worker_id}"
                self._event(db, job["id"], job["attempt"], started, now)
                claimed.append(job)
            self._touch(db, worker_id, now)
        return [_job(row, row["script"]) for row in claimed]

    def _held(
        self, db: sqlite3.Connection, worker_id: str, job_id: int, attempt: int
    ) -> sqlite3.Row:
        row = db.execute(
            "SELECT status, worker_id, attempt, retries_left, cancel_requested FROM jobs"
            " WHERE id = ?",
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
        self, worker_id: str, job_id: int, attempt: int, lease: float, now: float
    ) -> bool:
        with self._write() as db:
            row = self._held(db, worker_id, job_id, attempt)
            db.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (now + lease, job_id))
            self._touch(db, worker_id, now)
        return bool(row["cancel_requested"])

    def complete(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        now: float,
    ) -> JobStatus:
        with self._write() as db:
            row = self._held(db, worker_id, job_id, attempt)
            self._touch(db, worker_id, now)
            return self._end_attempt(db, job_id, row, exit_code, reason, now)

    def _end_attempt(
        self,
        db: sqlite3.Connection,
        job_id: int,
        row: sqlite3.Row,
        exit_code: int | None,
        reason: str | None,
        now: float,
    ) -> JobStatus:
        attempt = row["attempt"]
        outcome = outcome_of_attempt(
            attempt=attempt,
            exit_code=exit_code,
            retries_left=row["retries_left"],
            cancel_requested=bool(row["cancel_requested"]),
            reason=reason,
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
        self._event(db, job_id, attempt, outcome.event, now)
        return outcome.status

    def expire_leases(self, now: float) -> list[int]:
        expired: list[int] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, worker_id, attempt, retries_left, cancel_requested FROM jobs"
                " WHERE status = ? AND lease_until < ?",
                (JobStatus.RUNNING.value, now),
            ).fetchall()
            for row in rows:
                reason = f"was lost: worker {row['worker_id']} fell silent past its lease"
                self._end_attempt(db, row["id"], row, None, reason, now)
                expired.append(row["id"])
        return expired

    def extend_leases(self, lease: float, now: float) -> int:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = max(coalesce(lease_until, 0), ?) WHERE status = ?",
                (now + lease, JobStatus.RUNNING.value),
            )
            return cursor.rowcount

    def demand(self) -> list[tuple[str, str, int, int]]:
        rows = self._db.execute(
            "SELECT queue, definition, status, count(*) AS n FROM jobs WHERE status IN (?, ?)"
            " GROUP BY queue, definition, status",
            (JobStatus.WAITING.value, JobStatus.RUNNING.value),
        )
        totals: dict[tuple[str, str], list[int]] = {}
        for row in rows:
            counts = totals.setdefault((row["queue"], row["definition"]), [0, 0])
            counts[0 if row["status"] == JobStatus.WAITING.value else 1] += row["n"]
        return [(q, d, waiting, running) for (q, d), (waiting, running) in sorted(totals.items())]

    # logs ------------------------------------------------------------------------

    def _event(
        self, db: sqlite3.Connection, job_id: int, attempt: int, text: str, now: float
    ) -> None:
        db.execute(
            "INSERT INTO job_log (job_id, attempt, kind, time, text) VALUES (?, ?, ?, ?, ?)",
            (job_id, attempt, LogKind.SYSTEM.value, now, text),
        )

    def append_log(
        self, job_id: int, attempt: int, entries: Sequence[tuple[LogKind, str]], now: float
    ) -> None:
        if not entries:
            return
        with self._write() as db:
            db.executemany(
                "INSERT INTO job_log (job_id, attempt, kind, time, text) VALUES (?, ?, ?, ?, ?)",
                [(job_id, attempt, kind.value, now, text) for kind, text in entries],
            )

    def read_log(
        self, job_id: int, kinds: Sequence[LogKind], *, after: int = 0, limit: int = 1000
    ) -> list[LogEntry]:
        wanted = kinds or tuple(LogKind)
        rows = self._db.execute(
            f"SELECT * FROM job_log WHERE job_id = ? AND kind IN ({','.join('?' * len(wanted))})"
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
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )

    def _touch(self, db: sqlite3.Connection, worker_id: str, now: float) -> None:
        db.execute(
            "UPDATE workers SET last_seen = ?, state = 'ACTIVE' WHERE id = ? AND state != 'EXITED'",
            (now, worker_id),
        )

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
