"""The SQLite store's jobs as users see them: submit, read, count, select, cancel, hold."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hyper.jobs import (
    FINISHED,
    JobStatus,
)
from hyper.jobspec import Selector
from hyper.store import rules
from hyper.store.base import (
    ArrayRecord,
    CancelResult,
    HoldResult,
    JobFilter,
    JobRecord,
    NewJob,
)
from hyper.store.sqlite.dependents import Dependents
from hyper.store.sqlite.schema import (
    ARRAY_COLUMNS,
    JOB_COLUMNS,
    JOB_FROM,
    _from_row,
    _in,
    _job,
    _placed,
    _set,
    _task,
    _where,
)


class Jobs(Dependents):
    """Submitting, reading, counting, cancelling and holding jobs."""

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

    def _target_state(self, db: sqlite3.Connection, target: int) -> rules.State | None:
        """(ok, bad, size) of a dependency's target: a job or a whole array (None: unknown)."""
        row = db.execute("SELECT ok, bad, size FROM arrays WHERE id = ?", (target,)).fetchone()
        if row is not None:
            return row["ok"], row["bad"], row["size"]
        row = db.execute("SELECT status FROM jobs WHERE id = ?", (target,)).fetchone()
        if row is None:  # a task not made yet is as it starts
            status = self._pending_status(db, target)
            return None if status is None else rules.job_state(status)
        return rules.job_state(row["status"])

    def _judge_new(
        self, db: sqlite3.Connection, job: NewJob
    ) -> tuple[list[tuple[str, int]], str | None]:
        """The dependencies still pending, and why the job can never run (or None)."""

        def is_array(target: int) -> bool:
            return db.execute("SELECT 1 FROM arrays WHERE id = ?", (target,)).fetchone() is not None

        return rules.judge_new(job, is_array, lambda target: self._target_state(db, target))

    def _submit_single(self, db: sqlite3.Connection, job: NewJob, now: float) -> int:
        pending, never = self._judge_new(db, job)
        job_id = self._reserve_ids(db, 1)
        status = rules.first_status(job, len(pending), never)
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
        self._event(db, job_id, 0, rules.submitted(job.queue), now)
        if never:
            self._event(db, job_id, 0, never, now)
        return job_id

    def _submit_array(self, db: sqlite3.Connection, job: NewJob, now: float) -> int:
        tasks = job.array
        assert tasks is not None
        pending, never = self._judge_new(db, job)
        size = len(tasks.indices)
        array_id = self._reserve_ids(db, size + 1)
        array_deps = rules.array_deps(pending)
        status = rules.first_status(job, len(array_deps), never)
        corr_targets = rules.corr_targets(pending) if not never else []
        plan = rules.plan_tasks(tasks, status, len(array_deps), never, now)
        later = rules.made_later(size, status, bool(corr_targets), self.first_tasks)
        db.execute(
            "INSERT INTO arrays (id, name, queue, definition, script, env, submit_dir, retries,"
            " priority, time_limit, options, size, cap, spec, created, plan)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                array_id, job.name, job.queue, job.definition, job.script, json.dumps(job.env),
                job.submit_dir, job.retries, job.priority, job.time_limit,
                json.dumps(job.options), size, tasks.cap, tasks.spec, now, json.dumps(plan),
            ),
        )  # fmt: skip
        # the first tasks now (all of them unless the rest can be made later: rules)
        self._make(db, array_id, self.first_tasks if later else size)
        self._count(db, job, array_id, status, size)  # every task, made or not
        if corr_targets:
            changes = []
            for n, (waits, why) in enumerate(self._corr_pending(db, corr_targets, tasks.indices)):
                if waits or why:
                    new, total, reason = rules.task_start(job, len(array_deps), waits, why)
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
        self._event(db, array_id, 0, rules.submitted(job.queue, size), now)
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
        self, db: sqlite3.Connection, targets: list[int], indices: Sequence[int]
    ) -> list[tuple[list[int], str | None]]:
        """rules.corr_pending over the targets' tasks as they are in this transaction."""

        def task_states(target: int) -> list[tuple[int, str]]:
            self._make(db, target)
            rows = db.execute("SELECT array_index, status FROM jobs WHERE array_id = ?", (target,))
            return [(row[0], row[1]) for row in rows]

        return rules.corr_pending(targets, indices, task_states)

    # reading ---------------------------------------------------------------------

    def _made_for(self, where: JobFilter, *, after: int = 0, limit: int | None = None) -> None:
        """Before an answer read from the jobs: the tasks it could show are made."""
        if self._db.execute("SELECT 1 FROM arrays WHERE plan IS NOT NULL LIMIT 1").fetchone():
            with self._write() as db:
                self._make_for(db, where, after=after, limit=limit)

    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None:
        row = self._db.execute(
            f"SELECT {JOB_COLUMNS}, coalesce(j.script, a.script) AS script, j.params"
            f" FROM {JOB_FROM} WHERE j.id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            covering = self._covering(self._db, job_id)
            if covering is None:
                return None
            with self._write() as db:  # a task not made yet: made first, with those before it
                self._make(db, covering[0], covering[1] + 1)
            return self.get_job(job_id, with_script=with_script)
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
        record: ArrayRecord = _from_row(
            ArrayRecord,
            row,
            env=json.loads(row["env"]),
            options=json.loads(row["options"]),
            counts=counts,
            highest_exit_code=highest,
        )
        return record

    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int = 0, collapse: bool = False
    ) -> list[JobRecord | ArrayRecord]:
        clause, args = _where(where)
        if not rules.one_line_per_array(where, collapse):
            query = (
                f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE {clause} AND j.id > ?"
                " ORDER BY j.id LIMIT ?"
            )
            page: list[JobRecord | ArrayRecord]
            page = [_job(row) for row in self._db.execute(query, [*args, after, limit])]
            last = page[-1].id if len(page) == limit else None
            if self._unmade_before(where.queue, after, last):  # the page may miss some
                self._made_for(where, after=after, limit=limit)
                page = [_job(row) for row in self._db.execute(query, [*args, after, limit])]
            return page
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
        if rules.from_counts(where):
            # by queue, definition, array and state: from the kept counts
            placed, args = _placed(where, array="array_id", status="status")
            clauses = ["n > 0", *placed]
            rows = self._db.execute(
                f"SELECT status, sum(n) AS n FROM job_counts WHERE {' AND '.join(clauses)}"
                " GROUP BY status",
                args,
            )
        else:
            self._made_for(where)
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
        kinds: dict[int, str | None] = {}
        for selector in selectors:
            if self._db.execute("SELECT 1 FROM arrays WHERE id = ?", (selector.id,)).fetchone():
                kinds[selector.id] = "array"
            elif selector.indices is None:
                found = self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (selector.id,))
                known = found.fetchone() or self._covering(self._db, selector.id)
                kinds[selector.id] = "job" if known else None
        return rules.resolve(selectors, kinds)

    # changing state ------------------------------------------------------------------

    def cancel(self, where: JobFilter, now: float, *, limit: int | None = None) -> CancelResult:
        clause, args = _where(where, "")
        with self._write() as db:
            made_ended, spent = self._cancel_unmade(db, where, now, limit)
            if not spent:
                self._make_for(db, where)
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
                self._event(db, row["id"], row["attempt"], rules.CANCEL_REQUESTED, now)
            # what has not started ends now, in one statement however many (up to what is
            # left of `limit` after the tasks made Cancelled)
            assign, values = _set(rules.cancelled_unstarted(now))
            unstarted = rules.NOT_STARTED_VALUES
            left = None if limit is None else limit - len(made_ended)
            ended = []
            if left is None or left > 0:
                chosen, chosen_args = _up_to(left, f"{clause} AND status IN ({_in(unstarted)})")
                ended = db.execute(
                    f"UPDATE jobs SET {assign} WHERE {chosen} RETURNING id, array_id,"
                    " array_index, attempt",
                    [*values, *args, *unstarted, *chosen_args],
                ).fetchall()
            more = spent or (left is not None and len(ended) == left)
            ended = [*made_ended, *ended]
            self._bulk_events(db, ended, rules.CANCELLED_BEFORE_START, now)
            rows = [(r["id"], r["array_id"], r["array_index"], JobStatus.CANCELLED) for r in ended]
            self._ended(db, rows, now)
        return CancelResult(len(ended), stopping, finished, more=more)

    def _named(
        self, db: sqlite3.Connection, where: JobFilter, statuses: tuple[str, ...], *, among: bool
    ) -> list[int]:
        """The job ids a request named that are in these states (among=False: not in them),
        in one query."""
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
        if not rules.is_bulk(len(rows)):
            for row in rows:
                self._event(db, row["id"], row["attempt"], text, now)
            return
        per_array = Counter(row["array_id"] for row in rows)
        for array_id, n in per_array.items():
            if array_id is not None:
                self._event(db, array_id, 0, rules.bulk_event(n, text), now)
        for row in rows:
            if row["array_id"] is None:
                self._event(db, row["id"], row["attempt"], text, now)

    def set_hold(
        self, where: JobFilter, now: float, limit: int | None, *, hold: bool
    ) -> HoldResult:
        clause, args = _where(where, "")
        movable = rules.movable(hold)
        new = "CASE WHEN deps_left > 0 THEN ? ELSE ? END"  # one job at a time: held_status()
        new_args = [rules.held_status(hold, 1), rules.held_status(hold, 0)]
        moving = tuple(s for s in where.statuses or JobStatus if s.value in movable)
        with self._write() as db:
            self._make_for(db, dataclasses.replace(where, statuses=moving))  # what may move
            unchanged = self._named(db, where, movable, among=False)  # named, to say so
            chosen, chosen_args = _up_to(limit, f"{clause} AND status IN ({_in(movable)})")
            changed = db.execute(
                f"UPDATE jobs SET status = {new} WHERE {chosen} RETURNING id, array_id, attempt",
                [*new_args, *args, *movable, *chosen_args],
            ).fetchall()
            self._bulk_events(db, changed, rules.hold_event(hold), now)
        return HoldResult(len(changed), unchanged, more=len(changed) == limit)


def _up_to(limit: int | None, condition: str) -> tuple[str, list[Any]]:
    """An UPDATE's WHERE for the jobs that meet `condition`, at most `limit` of them."""
    if limit is None:
        return condition, []
    return f"id IN (SELECT id FROM jobs WHERE {condition} LIMIT ?)", [limit]
