"""The DynamoDB store's dependencies: their targets' states, and settling them when their
targets end."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from hyper.jobs import (
    JobStatus,
    Verdict,
    judge_dependency,
    never_met,
)
from hyper.store import rules
from hyper.store.dynamodb.items import (
    FAILED,
    SEP,
    SETTLE_CHUNK,
    SUCCESSFUL,
    Ended,
    Item,
    _Change,
    _Dep,
    _marshal,
)
from hyper.store.dynamodb.reading import Reading


class Dependents(Reading):
    """Dependencies as items of the deps table, settled in transactions when their targets
    end."""

    def _state_of(self, target: Item) -> rules.State:
        """(ok, bad, size) of a dependency's target: a job, or a whole array by its counts."""
        if target.get("kind") == "array":
            counts = self._counts(f"array:{target['id']}")
            bad = sum(counts.get(s, 0) for s in rules.BAD)
            return counts.get(SUCCESSFUL, 0), bad, int(target["size"])
        return rules.job_state(target["status"])

    def _target_verdict(self, kind: str, target_id: int) -> Verdict:
        """A dependency judged on its target as it is now; one on a target that is gone (a
        submit withdrawn after the dependent saw it) can never be met."""
        item = self._get(self._jobs, {"id": target_id}, "#id, #kind, #status, #size")
        if item is None:
            return Verdict.NEVER
        ok, bad, size = self._state_of(item)
        return judge_dependency(kind, ok=ok, bad=bad, size=size)

    def _settle_gone(self, targets: Sequence[int]) -> None:
        """What depends on these jobs, which a withdrawal deletes, can never be met."""
        now = time.time()
        ended: list[Ended] = []
        for target in targets:
            for dep in self._deps_on(target):
                ended += self._settle(dep.owner, dep.kind, target, Verdict.NEVER, now)
        self._ended(ended, now)

    def _task_states(self, array_id: int, size: int) -> dict[int, str]:
        """The state of every task of an array by index (strongly consistent, by id)."""
        self._make(array_id)  # each task has a state of its own
        items = self._get_jobs(
            range(array_id + 1, array_id + size + 1), "#id, #array_index, #status"
        )
        return {item["array_index"]: item["status"] for item in items.values()}

    @staticmethod
    def _ended_of(change: _Change) -> Ended:
        after = change.after
        return (
            after["id"],
            after.get("array_id"),
            after.get("array_index"),
            JobStatus(after["status"]),
            bool(after.get("dependents")),
        )

    def _deps_on(self, target: int) -> list[_Dep]:
        items = self._query_all(
            self._deps, "#target = :target", {"target": target}, consistent=True
        )
        return [_Dep(int(i["owner"]), str(i["kind"])) for i in items]

    def _ended(self, ended: Sequence[Ended], now: float) -> None:
        """Jobs reached a final state: judge what depends on them (which may end more jobs,
        judged in turn). An array's flag is read after the endings were written: a
        dependent submitted later is judged again after it flagged the array."""
        flagged: dict[int, bool] = {}
        work = list(ended)
        while work:
            job_id, array_id, index, state, dependents = work.pop()
            more: list[Ended] = []
            if dependents:
                for dep in self._deps_on(job_id):
                    verdict = rules.ended_verdict(dep.kind, state)
                    more += self._settle(dep.owner, dep.kind, job_id, verdict, now)
            if array_id is not None:
                if array_id not in flagged:
                    array = self._get(self._jobs, {"id": array_id}, "#dependents")
                    flagged[array_id] = bool(array and array.get("dependents"))
                if flagged[array_id]:
                    for dep in self._deps_on(array_id):
                        if dep.kind == "aftercorr":
                            verdict = rules.ended_verdict("aftercorr", state)
                            more += self._settle_task(dep.owner, array_id, index, verdict, now)
                            continue
                        verdict = self._target_verdict(dep.kind, array_id)
                        more += self._settle(dep.owner, dep.kind, array_id, verdict, now)
            work += more

    def _settle(
        self, owner: int, kind: str, target: int, verdict: Verdict, now: float
    ) -> list[Ended]:
        """Settle a judged dependency of job or array `owner`: whoever removes its item (on a
        condition) applies it, once; the jobs it ended."""
        if verdict is Verdict.PENDING:
            return []
        reason = never_met(kind, target)
        dep_key = {"target": target, "dep": f"{owner}{SEP}{kind}"}
        delete = {
            "Delete": {
                "TableName": self._deps,
                "Key": _marshal(dep_key),
                "ConditionExpression": "attribute_exists(#target)",
                "ExpressionAttributeNames": {"#target": "target"},
            }
        }
        item = self._get(self._jobs, {"id": owner})
        if item is None:
            return []
        if item.get("kind") == "array":
            # the record goes first, on its condition: whoever removes it applies it, to
            # every task (in transactions of up to 100; more than one step for a big array)
            if self._transact([delete]) is not None:
                return []
            # the tasks not made yet through the plan; those made, each
            made = self._settle_unmade(owner, int(item["size"]), verdict, reason, now)
            ended: list[Ended] = []
            last = owner + made
            for first in range(owner + 1, last + 1, SETTLE_CHUNK):  # a million is read in parts
                chunk = self._get_jobs(range(first, min(first + SETTLE_CHUNK, last + 1)))
                tasks = self._complete(sorted(chunk.values(), key=lambda t: t["id"]))
                ended += self._apply(tasks, verdict, reason, now)
            return ended
        # a single job: the record's removal and the job's change are one transaction
        job = self._complete([item])[0]
        if job["status"] not in rules.AWAITING:
            self._transact([delete])
            return []
        return self._apply([job], verdict, reason, now, extra=[delete])

    def _apply(
        self,
        items: Sequence[Item],
        verdict: Verdict,
        reason: str,
        now: float,
        extra: list[dict[str, Any]] | None = None,
    ) -> list[Ended]:
        """A judged dependency of jobs that have not started: one less to wait for (ready
        when none is left), or never runnable. Returns the jobs it ended."""

        def plan(item: Item) -> _Change | None:
            left = int(item.get("deps_left", 0))
            set_ = rules.settled(item["status"], left, verdict, reason, now)
            if set_ is None:
                return None
            if verdict is Verdict.NEVER:
                return _Change(item, set_, [reason], 0, extra=list(extra or []))
            return _Change(item, set_, extra=list(extra or []))

        applied = self._transition(items, plan, now)
        return [self._ended_of(c) for c in applied if c.status == FAILED]

    def _settle_task(
        self, owner_array: int, target_array: int, index: int | None, verdict: Verdict, now: float
    ) -> list[Ended]:
        """aftercorr: task `index` of `owner_array` waited for task `index` of the target.
        (Found through the array-index index, which may lag a submit by a moment.)"""
        if verdict is Verdict.PENDING or index is None:
            return []
        ids = self._task_ids(owner_array, [index], 0)
        tasks = self._complete(list(self._get_jobs(ids).values()))
        return self._apply_corr(tasks, target_array, lambda _: verdict, now)

    def _apply_corr(
        self,
        tasks: Sequence[Item],
        target: int,
        verdict_of: Callable[[Item], Verdict],
        now: float,
    ) -> list[Ended]:
        """Settle an aftercorr dependency of tasks, each once: the target leaves the task's
        list of what it waits for in the same change."""

        def plan(item: Item) -> _Change | None:
            waits = list(item.get("corr", []))
            verdict = verdict_of(item)
            reason = never_met("aftercorr", target, item["array_index"])
            left = int(item.get("deps_left", 0))
            set_ = rules.settled(item["status"], left, verdict, reason, now)
            if target not in waits or set_ is None:
                return None
            waits.remove(target)
            set_["corr"] = waits or None
            if verdict is Verdict.NEVER:
                return _Change(item, set_, [reason], 0)
            return _Change(item, set_)

        applied = self._transition(tasks, plan, now)
        return [self._ended_of(c) for c in applied if c.status == FAILED]
