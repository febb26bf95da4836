"""The SQLite store's workers' side of jobs: claims, leases, endings, returns, lost
workers, and the counts the scheduler reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from hyper.errors import Conflict
from hyper.jobs import (
    JobStatus,
)
from hyper.store import rules
from hyper.store.base import (
    Ending,
    Fits,
    JobRecord,
)
from hyper.store.sqlite.dependents import Dependents
from hyper.store.sqlite.schema import (
    JOB_COLUMNS,
    JOB_FROM,
    LOG_INSERT,
    _fits_function,
    _request_key,
    _set,
    _task,
)


class Attempts(Dependents):
    """Claims, leases, endings, lost workers, and the scheduler's demand."""

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
            self._make_to_claim(db, queue, definition, limit)
            for _ in range(limit):
                row = db.execute(
                    "SELECT j.id, j.array_id, j.attempt FROM jobs j INDEXED BY jobs_claim"
                    " WHERE j.status = ? AND j.queue = ? AND j.definition = ? AND"
                    " (j.array_id IS NULL OR NOT EXISTS (SELECT 1 FROM arrays a WHERE"
                    "  a.id = j.array_id AND a.cap IS NOT NULL AND a.running >= a.cap))"
                    f"{sized} ORDER BY j.priority DESC, j.id LIMIT 1",
                    (JobStatus.WAITING.value, queue, definition),
                ).fetchone()
                if row is None:
                    break
                assign, values = _set(rules.claimed(worker_id, row["attempt"] + 1, lease, now))
                db.execute(f"UPDATE jobs SET {assign} WHERE id = ?", (*values, row["id"]))
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
                started = rules.attempt_started(job["attempt"], worker_id)
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
            raise rules.not_held(worker_id, attempt, job_id)
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
        rows = self._db.execute(
            "SELECT job_id, attempt, process_group FROM attempts WHERE worker_id = ?"
            " AND process_group IS NOT NULL AND exit_code IS NULL",
            (worker_id,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

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
        outcome = rules.end_attempt(
            attempt=attempt,
            exit_code=exit_code,
            retries_left=row["retries_left"],
            cancel_requested=bool(row["cancel_requested"]),
            reason=reason,
            reclaimed=reclaimed,
        )
        assign, values = _set(outcome.fields(exit_code, now))
        db.execute(f"UPDATE jobs SET {assign} WHERE id = ?", (*values, job_id))
        db.execute(
            "UPDATE attempts SET ended = ?, exit_code = ?, outcome = ? WHERE job_id = ? AND"
            " attempt = ?",
            (now, exit_code, outcome.status.value, job_id, attempt),
        )
        if row["array_id"] is not None:
            db.execute("UPDATE arrays SET running = running - 1 WHERE id = ?", (row["array_id"],))
        self._event(db, job_id, attempt, outcome.event, now)
        if outcome.finished:
            self._ended(db, [(job_id, row["array_id"], row["array_index"], outcome.status)], now)
        return outcome.status

    def return_claims(self, worker_id: str, claims: Sequence[tuple[int, int]], now: float) -> int:
        returned = 0
        with self._write() as db:
            assign_at = {attempt: _set(rules.returned(attempt)) for _, attempt in claims}
            for job_id, attempt in claims:
                assign, values = assign_at[attempt]
                row = db.execute(
                    f"UPDATE jobs SET {assign} WHERE id = ? AND status = ? AND"
                    " worker_id = ? AND attempt = ? RETURNING array_id",
                    (*values, job_id, rules.RUNNING, worker_id, attempt),
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
                self._event(db, job_id, attempt - 1, rules.returned_unstarted(worker_id), now)
        return returned

    def expire_leases(self, now: float, keep: Collection[str] = ()) -> list[int]:
        kept = sorted(keep)
        clause = "lease_until < ?" + (
            f" AND worker_id NOT IN ({', '.join('?' * len(kept))})" if kept else ""
        )
        return self._lose(clause, (now, *kept), rules.FELL_SILENT, now)

    def lease_holders(self, now: float) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT worker_id FROM jobs WHERE status = ? AND lease_until < ?"
            " AND worker_id IS NOT NULL",
            (JobStatus.RUNNING.value, now),
        )
        return sorted(row[0] for row in rows)

    def abandon(self, worker_id: str, now: float, *, reclaimed: bool = False) -> list[int]:
        why = rules.gone(reclaimed)
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
        """End as lost the running attempts that `clause` picks, in one transaction (each
        retried or failed as rules.end_attempt decides); their job ids."""
        lost: list[int] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, worker_id, attempt, retries_left, cancel_requested, array_id,"
                f" array_index FROM jobs WHERE status = ? AND {clause}",
                (JobStatus.RUNNING.value, *args),
            ).fetchall()
            for row in rows:
                reason = rules.lost(row["worker_id"], why)
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
        counts = self._db.execute(
            "SELECT queue, definition, status, sum(n) AS n FROM job_counts"
            " WHERE status IN (?, ?) AND n > 0 GROUP BY queue, definition, status",
            (rules.WAITING, rules.RUNNING),
        ).fetchall()
        capped = self._db.execute(
            "SELECT a.queue, a.definition, a.cap, (SELECT coalesce(sum(n), 0)"
            "  FROM job_counts c WHERE c.array_id = a.id AND c.status = ?) AS waiting, a.running"
            " FROM arrays a WHERE a.cap IS NOT NULL AND a.ok + a.bad < a.size",
            (rules.WAITING,),
        ).fetchall()
        return rules.demand([tuple(r) for r in counts], [tuple(r) for r in capped])

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
