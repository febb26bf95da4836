"""The SQLite store's tasks made after their array's submit (hyper.store.rules: "tasks
made after their array's submit"): an array's row keeps its plan (``arrays.plan``, None
once every task is made) and how many tasks are made (``arrays.made``, the first ones);
whatever needs a task that is not made yet makes it first, in its own transaction."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hyper.jobs import Verdict
from hyper.store import rules
from hyper.store.base import JobFilter
from hyper.store.sqlite.connection import SQLiteBase
from hyper.store.sqlite.schema import _placed

PENDING = "SELECT id, made, size, plan FROM arrays WHERE plan IS NOT NULL"


class Tasks(SQLiteBase):
    """Making an array's tasks: the first at submit, the rest when needed or in chunks."""

    first_tasks = rules.FIRST_TASKS  # made by the submit (a store's setting: tests lower it)
    tasks_per_make = rules.TASKS_PER_MAKE  # made at a time by a claim
    tasks_per_tick = rules.TASKS_PER_TICK  # made by make_tasks (a tick)

    def _make(self, db: sqlite3.Connection, array_id: int, upto: int | None = None) -> int:
        """Make the tasks of the array up to position `upto` (all: None); how many made."""
        row = db.execute(
            "SELECT id, name, queue, definition, retries, priority, time_limit, created, size,"
            " made, plan FROM arrays WHERE id = ? AND plan IS NOT NULL",
            (array_id,),
        ).fetchone()
        if row is None:
            return 0
        end = row["size"] if upto is None else min(upto, row["size"])
        first = row["made"]
        if end <= first:
            return 0
        plan = json.loads(row["plan"])
        self._write_tasks(db, row, plan, first, end)
        db.execute(
            "UPDATE arrays SET made = ?, plan = ? WHERE id = ?",
            (end, None if end >= row["size"] else row["plan"], array_id),
        )
        return end - first

    def _write_tasks(
        self, db: sqlite3.Connection, array: Any, plan: dict[str, Any], first: int, end: int
    ) -> None:
        """Tasks `first` to `end` - 1 of the array, as rules.plan_tasks says they start
        (their kept counts were added at submit)."""
        # one statement however many: SQLite walks the indices itself (4x faster than rows)
        db.execute(
            "INSERT INTO jobs (id, array_id, array_index, name, queue, definition, status,"
            " retries, retries_left, priority, time_limit, deps_left, reason, created, ended,"
            " cancel_requested)"
            " SELECT ? + key, ?, value, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)",
            (
                array["id"] + 1 + first, array["id"], array["name"], array["queue"],
                array["definition"], plan["status"], array["retries"], array["retries"],
                array["priority"], array["time_limit"], plan["deps_left"], plan["reason"],
                array["created"], plan["ended"], int(plan.get("cancel_requested", False)),
                json.dumps(rules.task_indices(plan, first, end)),
            ),
        )  # fmt: skip
        db.executemany(
            "UPDATE jobs SET name = coalesce(?, name), params = ? WHERE id = ?",
            [
                (name, params, array["id"] + 1 + n)
                for n, name, params in rules.task_extras(plan, first, end)
            ],
        )

    def _settle_later(
        self, db: sqlite3.Connection, owner: int, verdict: Verdict, reason: str, now: float
    ) -> None:
        """A settled dependency of array `owner`, for its tasks not made yet: their plan
        changes as each of them would (rules.settled), their counts with it; one that can
        never be met makes them all first (each task ends with an event of its own)."""
        row = db.execute(
            "SELECT queue, definition, made, size, plan FROM arrays WHERE id = ?"
            " AND plan IS NOT NULL",
            (owner,),
        ).fetchone()
        if row is None:
            return
        if verdict is Verdict.NEVER:
            self._make(db, owner)
            return
        plan = json.loads(row["plan"])
        change = rules.settled(plan["status"], plan["deps_left"], verdict, reason, now)
        if change is None:
            return
        unmade = row["size"] - row["made"]
        if change["status"] != plan["status"]:
            for status, n in ((plan["status"], -unmade), (change["status"], unmade)):
                db.execute(
                    "INSERT INTO job_counts VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET n = n + ?",
                    (row["queue"], row["definition"], owner, status, n, n),
                )
        plan.update(change)
        db.execute("UPDATE arrays SET plan = ? WHERE id = ?", (json.dumps(plan), owner))

    def _covering(self, db: sqlite3.Connection, job_id: int) -> tuple[int, int] | None:
        """(array id, position) of the task `job_id` when it is one of an array whose tasks
        are not all made yet, else None."""
        row = db.execute(
            "SELECT id, size, plan FROM arrays WHERE id < ? ORDER BY id DESC LIMIT 1", (job_id,)
        ).fetchone()
        if row is None or row["plan"] is None or job_id > row["id"] + row["size"]:
            return None
        return row["id"], job_id - row["id"] - 1

    def _pending_status(self, db: sqlite3.Connection, job_id: int) -> str | None:
        """The status of a task not made yet (as it starts), or None."""
        found = self._covering(db, job_id)
        if found is None:
            return None
        (status,) = db.execute(
            "SELECT json_extract(plan, '$.status') FROM arrays WHERE id = ?", (found[0],)
        ).fetchone()
        return str(status)

    def _make_for(
        self,
        db: sqlite3.Connection,
        where: JobFilter,
        *,
        after: int = 0,
        limit: int | None = None,
    ) -> None:
        """Make the tasks not made yet that jobs matching `where` could be (for a page of
        `limit` after `after`, only as many as the page can show), so that an answer read
        from the jobs is what it would be had every task been written at submit."""
        if db.execute(f"{PENDING} LIMIT 1").fetchone() is None:
            return
        names = where.name is not None or bool(where.name_prefix)
        wanted: dict[int, list[int] | None] = {}  # array: positions (None: the page's)
        if where.selects:
            for array_id, indices in where.arrays:
                row = db.execute("SELECT plan FROM arrays WHERE id = ?", (array_id,)).fetchone()
                if row is None or row["plan"] is None:
                    continue
                if indices is None:
                    wanted[array_id] = None
                else:
                    plan = json.loads(row["plan"])
                    found = (rules.task_position(plan, i) for i in indices)
                    wanted[array_id] = [p for p in found if p is not None]
            for job_id in where.ids:
                covering = self._covering(db, job_id)
                if covering is None:
                    continue
                array_id, position = covering
                if array_id not in wanted:
                    wanted[array_id] = [position]
                elif (positions := wanted[array_id]) is not None:
                    positions.append(position)
        else:
            wanted = dict.fromkeys(self._pending_matching(db, where, whole=False))
        for array_id, positions in wanted.items():
            row = db.execute(
                "SELECT made, size, json_extract(plan, '$.names') IS NOT NULL AS named"
                " FROM arrays WHERE id = ? AND plan IS NOT NULL",
                (array_id,),
            ).fetchone()
            if row is None:
                continue
            # tasks with names of their own are not alike under a filter by name
            paged = limit if not (names and row["named"]) else None
            upto = rules.to_make(
                row["made"], row["size"], array_id, after=after, limit=paged, positions=positions
            )
            self._make(db, array_id, upto)

    def _unmade_before(self, queue: str | None, after: int, last: int | None) -> bool:
        """Whether a task not made yet has an id past `after` and before `last` (a full
        page's last id; None: the page was not full), of one queue's arrays or all."""
        clause, args = ("", []) if queue is None else (" AND queue = ?", [queue])
        found = self._db.execute(
            f"SELECT 1 FROM arrays WHERE plan IS NOT NULL{clause} AND id + size > ?"
            " AND (? IS NULL OR id + 1 + made < ?) LIMIT 1",
            [*args, after, last, last],
        ).fetchone()
        return found is not None

    def _pending_matching(
        self, db: sqlite3.Connection, where: JobFilter, *, whole: bool
    ) -> list[int]:
        """The arrays with tasks not made yet that a filter without selectors may reach
        (`whole`: only those whose tasks not made yet it matches every one of)."""
        # the tasks not made yet are in the plan's status
        placed, args = _placed(where, array="id", status="json_extract(plan, '$.status')")
        clauses = ["plan IS NOT NULL", *placed]
        # by name: the array's, unless its tasks have names of their own
        named = "json_extract(plan, '$.names') IS NOT NULL"
        if where.name is not None:
            clauses.append(f"name = ? AND NOT {named}" if whole else f"(name = ? OR {named})")
            args.append(where.name)
        if where.name_prefix:
            prefix = "name >= ? AND name < ?"
            clauses.append(f"{prefix} AND NOT {named}" if whole else f"(({prefix}) OR {named})")
            args += [where.name_prefix, where.name_prefix + "\U0010ffff"]
        rows = db.execute(f"SELECT id FROM arrays WHERE {' AND '.join(clauses)}", args)
        return [row[0] for row in rows]

    def _cancel_unmade(
        self, db: sqlite3.Connection, where: JobFilter, now: float, limit: int | None = None
    ) -> tuple[list[Any], bool]:
        """A cancel of whole arrays with tasks not made yet: those tasks are made as the
        cancel leaves them (rules.cancelled_unstarted), their counts moved in one step,
        rather than made and then changed one by one; at most `limit` of them (the rest
        stay to be made, as they were, for the cancel's next step). Returns (id, array_id,
        array_index, attempt) of each, as the cancel's own change returns those it ends,
        and whether the limit left some."""
        if db.execute(f"{PENDING} LIMIT 1").fetchone() is None:
            return [], False
        if where.selects:
            plain = where.ids == () and not (
                where.queue or where.name or where.name_prefix or where.definition
                or where.statuses or where.array_id is not None
            )  # fmt: skip
            arrays = [a for a, indices in where.arrays if indices is None] if plain else []
        else:
            arrays = self._pending_matching(db, where, whole=True)
        fields = rules.cancelled_unstarted(now)
        ended: list[Any] = []
        for array_id in arrays:
            row = db.execute(
                "SELECT id, name, queue, definition, retries, priority, time_limit, created,"
                " size, made, plan FROM arrays WHERE id = ? AND plan IS NOT NULL",
                (array_id,),
            ).fetchone()
            if row is None:
                continue
            plan = json.loads(row["plan"])
            first, size = row["made"], row["size"]
            end = size if limit is None else min(size, first + limit - len(ended))
            if end <= first:
                return ended, True
            self._write_tasks(db, row, {**plan, **fields}, first, end)
            for status, n in ((plan["status"], first - end), (fields["status"], end - first)):
                db.execute(
                    "INSERT INTO job_counts VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET n = n + ?",
                    (row["queue"], row["definition"], array_id, status, n, n),
                )
            if end == size:
                db.execute("UPDATE arrays SET made = size, plan = NULL WHERE id = ?", (array_id,))
            else:
                db.execute("UPDATE arrays SET made = ? WHERE id = ?", (end, array_id))
            indices = rules.task_indices(plan, first, end)
            ended += [
                {"id": array_id + 1 + first + k, "array_id": array_id, "array_index": index,
                 "attempt": 0}
                for k, index in enumerate(indices)
            ]  # fmt: skip
            if end < size:
                return ended, True
        return ended, False

    def _make_to_claim(
        self, db: sqlite3.Connection, queue: str, definition: str, limit: int
    ) -> None:
        """Before a claim of `limit` jobs: each array of (queue, definition) whose tasks not
        made yet are Waiting gets at least `limit` made Waiting ones, so that a claim takes
        the same jobs as if every task had been written at submit (an array's tasks share
        its priority, request and cap, and the made ones come first)."""
        arrays = db.execute(
            "SELECT id, made, priority FROM arrays WHERE plan IS NOT NULL AND queue = ?"
            " AND definition = ? AND json_extract(plan, '$.status') = ?",
            (queue, definition, rules.WAITING),
        ).fetchall()
        for row in arrays:
            (ready,) = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_claim WHERE status = ?"
                " AND queue = ? AND definition = ? AND priority = ? AND id > ? AND id <= ?"
                " LIMIT ?)",
                (rules.WAITING, queue, definition, row["priority"], row["id"],
                 row["id"] + row["made"], limit),
            ).fetchone()  # fmt: skip
            if ready < limit:
                self._make(db, row["id"], row["made"] + max(limit, self.tasks_per_make))

    def make_tasks(self, most: int | None = None) -> int:
        """Make up to `most` (the store's tasks_per_tick) tasks of arrays not all made yet,
        oldest first; how many."""
        most = most or self.tasks_per_tick
        if self._db.execute(f"{PENDING} LIMIT 1").fetchone() is None:
            return 0
        made = 0
        with self._write() as db:
            for row in db.execute(f"{PENDING} ORDER BY id").fetchall():
                if made >= most:
                    break
                made += self._make(db, row["id"], row["made"] + most - made)
        return made
