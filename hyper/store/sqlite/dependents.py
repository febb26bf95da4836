"""The SQLite store's dependencies: settling them when their targets end, as sets."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hyper.jobs import (
    JobStatus,
    Verdict,
    judge_dependency,
    never_met,
)
from hyper.store import rules
from hyper.store.sqlite.schema import (
    Ended,
    _set,
)
from hyper.store.sqlite.tasks import Tasks


class Dependents(Tasks):
    """Dependencies as rows of `deps`, settled as sets of jobs when their targets end."""

    def _ended(self, db: sqlite3.Connection, ended: Sequence[Ended], now: float) -> None:
        """Jobs reached a final state: count them on their arrays, and judge what depends
        on them (which may end more jobs, judged in turn)."""
        self._count_on_arrays(db, ended)
        targets = {row[0] for row in db.execute("SELECT DISTINCT target FROM deps")}
        work = [e for e in ended if e[0] in targets or e[1] in targets]
        while work:
            job_id, array_id, index, state = work.pop()
            more: list[Ended] = []
            for dep in db.execute("SELECT owner, kind FROM deps WHERE target = ?", (job_id,)):
                verdict = rules.ended_verdict(dep["kind"], state)
                more += self._settle(db, dep["owner"], dep["kind"], job_id, verdict, now)
            if array_id is not None:
                for dep in db.execute("SELECT owner, kind FROM deps WHERE target = ?", (array_id,)):
                    if dep["kind"] == "aftercorr":
                        verdict = rules.ended_verdict("aftercorr", state)
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
        """Settle a judged dependency of job or array `owner`: its row goes, and its jobs that
        wait change as one set; the jobs it ended."""
        if verdict is Verdict.PENDING:
            return []
        db.execute(
            "DELETE FROM deps WHERE owner = ? AND kind = ? AND target = ?", (owner, kind, target)
        )
        reason = never_met(kind, target)
        self._settle_later(db, owner, verdict, reason, now)
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
        for (ready when none is left), or never runnable (rules.settled, as sets). Returns
        the jobs it ended."""
        if verdict is Verdict.PENDING:
            return []
        awaiting = rules.AWAITING
        if verdict is Verdict.NEVER:
            return self._fail_unrunnable(db, f"{scope} AND status IN (?, ?)", (*args, *awaiting),
                                         reason, now)  # fmt: skip
        db.execute(
            f"UPDATE jobs SET deps_left = deps_left - 1 WHERE {scope} AND status IN (?, ?)",
            (*args, *awaiting),
        )
        db.execute(
            f"UPDATE jobs SET status = ? WHERE {scope} AND status = ? AND deps_left = 0",
            (rules.WAITING, *args, rules.BLOCKED),
        )
        return []

    def _fail_unrunnable(
        self, db: sqlite3.Connection, scope: str, args: tuple[Any, ...], reason: str, now: float
    ) -> list[Ended]:
        assign, values = _set(rules.failed_unrunnable(reason, now))
        rows = db.execute(
            f"UPDATE jobs SET {assign} WHERE {scope} RETURNING id, array_id, array_index",
            (*values, *args),
        ).fetchall()
        for row in rows:
            self._event(db, row["id"], 0, reason, now)
        return [(r["id"], r["array_id"], r["array_index"], JobStatus.FAILED) for r in rows]
