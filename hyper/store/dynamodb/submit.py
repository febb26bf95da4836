"""The DynamoDB store's submits: judging, items of jobs and arrays, written in batches
after their counts (hyper.store.dynamodb.journal), and pending dependencies."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from hyper.errors import UsageError
from hyper.jobs import (
    FINISHED,
    JobStatus,
    LogKind,
    Verdict,
)
from hyper.store import rules
from hyper.store.base import (
    NewJob,
)
from hyper.store.dynamodb.items import (
    PLAN_ITEM_BYTES,
    SCRIPT_INLINE_BYTES,
    SEP,
    SUBMITS,
    CounterKey,
    Ended,
    Item,
    _counter_keys,
    _index_keys,
    _journal_entry,
    _marshal,
    _name_key,
    _task_item,
    _update,
)
from hyper.store.dynamodb.journal import Journal, _marker_put


class Submitting(Journal):
    """Submits: judged, counted in a journal, written in batches, then linked."""

    # submitting -------------------------------------------------------------------------

    def submit(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        if not jobs:
            return []
        judged = self._judge_all(jobs)  # refusals come before anything is written
        for job in jobs:
            if len(job.script.encode()) > SCRIPT_INLINE_BYTES and self.bucket is None:
                raise UsageError(
                    f"script of job {job.name!r} is larger than {SCRIPT_INLINE_BYTES} bytes,"
                    " and this host has no S3 bucket for scripts"
                )
        total = sum(1 if job.array is None else len(job.array.indices) + 1 for job in jobs)
        next_id = self._reserve_ids(total)
        ids: list[int] = []
        items: list[Item] = []
        logs: list[Item] = []
        links: list[tuple[int, str, int]] = []  # owner, kind, target: pending dependencies
        deltas: Counter[CounterKey] = Counter()
        counted: list[tuple[int, list[CounterKey]]] = []  # each job's keys, for the journal
        later: dict[int, tuple[int, int]] = {}  # array: ids of its tasks made after the submit
        planned: dict[int, str] = {}  # array: the status those start in
        arrays: list[int] = []
        for job, (pending, never, corr) in zip(jobs, judged, strict=True):
            ids.append(next_id)
            links += [(next_id, kind, target) for kind, target in pending]
            if job.array is None:
                item = self._single_item(job, next_id, pending, never, now)
                items.append(item)
                deltas.update(_counter_keys(item, item["status"]))
                counted.append((next_id, _counter_keys(item, item["status"])))
                if never:
                    event = {"job_id": next_id, "seq": 2, "attempt": 0, "text": never}
                    logs.append({**event, "kind": LogKind.SYSTEM.value, "time": now})
                next_id += 1
            else:
                arrays.append(next_id)
                made, unmade, later_status = self._array_items(
                    job, next_id, pending, never, corr, now
                )
                items += made
                view = {"queue": job.queue, "definition": job.definition, "array_id": next_id,
                        "options": json.dumps(job.options)}  # fmt: skip
                statuses = Counter(task["status"] for task in made[1:])
                if unmade:  # every task is counted from the submit on, made or not
                    statuses[later_status] += unmade
                    size = len(job.array.indices)
                    later[next_id] = (next_id + 1 + size - unmade, next_id + size)
                    planned[next_id] = later_status
                for status, n in statuses.items():
                    for key in _counter_keys(view, status):
                        deltas[key] += n
                plan_keys = _counter_keys(view, later_status) if unmade else []
                counted.append((next_id, plan_keys))
                counted += [(t["id"], _counter_keys(view, t["status"])) for t in made[1:]]
                next_id += len(job.array.indices) + 1
        entry = _journal_entry(counted, deltas, now, later=later)
        if entry["runs"] is None:  # too varied to keep: each job says how it was counted
            entry["planned"] = json.dumps(planned) if planned else None
            for item in items:
                if "status" in item:
                    item["s0"] = item["status"]
        try:
            self._count_submit(entry)
        except Exception:
            self._undo_submit((), entry)
            raise
        writes = [(self._jobs, {"PutRequest": {"Item": _marshal(i)}}) for i in items]
        writes += [(self._log, {"PutRequest": {"Item": _marshal(e)}}) for e in logs]
        # every array's marker: its tasks are read by id while an index may not show them
        whole = [a for a in arrays if a not in later]
        writes += [(self._counts_name, _marker_put(a, now, whole=True)) for a in whole]
        try:
            # the markers of arrays with tasks to make first: from the array's item on,
            # every reader must know they are there to make, even if this submit is cut
            # off (the tasks made meanwhile come after those the submit writes)
            self._mark_unmade(later, now)
            self._write(writes)
        except Exception:
            self._undo_submit(items, entry)
            raise
        for item in items:
            if "epoch_at" in item:  # an array's, maybe written later than it was stamped
                self._restamp(item["id"], item["epoch_at"])
        self.dynamodb.delete_item(
            TableName=self._counts_name, Key=_marshal({"scope": SUBMITS, "key": entry["key"]})
        )
        if links:
            self._link(links, now)
        return ids

    def _reserve_ids(self, count: int) -> int:
        """The first of `count` consecutive new ids: one atomic ADD (ids are never reused)."""
        response = self.dynamodb.update_item(
            **_update(self._counts_name, {"scope": "ids", "key": "next"}, add={"n": count}),
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["n"]["N"]) - count + 1

    def _put_script(self, job_id: int, script: str) -> dict[str, Any]:
        data = script.encode()
        if len(data) <= SCRIPT_INLINE_BYTES:
            return {"script": script}
        key = f"scripts/{job_id}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return {"script_s3": key}

    def _single_item(
        self,
        job: NewJob,
        job_id: int,
        pending: list[tuple[str, int]],
        never: str | None,
        now: float,
    ) -> Item:
        status = rules.first_status(job, len(pending), never)
        item: Item = {
            "id": job_id,
            "kind": "job",
            "name": job.name,
            "queue": job.queue,
            "definition": job.definition,
            "status": status,
            "retries": job.retries,
            "retries_left": job.retries,
            "submit_dir": job.submit_dir,
            "env": json.dumps(job.env),
            "priority": job.priority,
            "time_limit": job.time_limit,
            "options": json.dumps(job.options),
            "deps_left": len(pending) or None,
            "reason": never,
            "created": now,
            "ended": now if never else None,
            "log_seq": 2 if never else 1,  # 1: the submit event, read from the item itself
            "nh": f"s{job.name[:1]}",
            "nk": _name_key(job.name, job_id),
            **self._put_script(job_id, job.script),
        }
        item.update(_index_keys(item))
        return {k: v for k, v in item.items() if v is not None}

    def _array_items(
        self,
        job: NewJob,
        array_id: int,
        pending: list[tuple[str, int]],
        never: str | None,
        corr: list[tuple[list[int], str | None]] | None,
        now: float,
    ) -> tuple[list[Item], int, str]:
        """The array's item and the tasks its submit writes: the first ones when the rest
        can be made later (rules.made_later; the item then holds the plan that makes
        them), else all. Returns them, how many tasks are left to make and the status
        those start in."""
        tasks = job.array
        assert tasks is not None
        size = len(tasks.indices)
        array: Item = {
            "id": array_id,
            "kind": "array",
            "name": job.name,
            "queue": job.queue,
            "definition": job.definition,
            "env": json.dumps(job.env),
            "submit_dir": job.submit_dir,
            "retries": job.retries,
            "priority": job.priority,
            "time_limit": job.time_limit,
            "options": json.dumps(job.options),
            "size": size,
            "cap": tasks.cap,
            "spec": tasks.spec,
            "created": now,
            "log_seq": 1,
            "ak": "array",
            "capped": "1" if tasks.cap else None,
            **self._put_script(array_id, job.script),
        }
        array = {k: v for k, v in array.items() if v is not None}
        array |= {"epoch_at": time.time(), "epoch": 0, "fresh": 0}  # its tasks: tasks.Epoch
        array_deps = len(rules.array_deps(pending))
        first = rules.first_status(job, array_deps, never)
        written = size
        if rules.made_later(size, first, corr is not None, self.first_tasks):
            plan = json.dumps(rules.plan_tasks(tasks, first, array_deps, never, now))
            if len(plan) + len(json.dumps(array)) <= PLAN_ITEM_BYTES:  # else written whole
                written = self.first_tasks
                array |= {"plan": plan, "made": written, "plan_rev": 0}
        items = [array]
        names = tasks.names or [""] * size
        params = tasks.params or [{}] * size
        claim_key = f"{job.queue}{SEP}{job.definition}"
        for n, index in zip(range(written), tasks.indices, strict=False):
            status, left, reason, waits = first, array_deps, never, None
            if corr is not None and not never:
                waits, corr_reason = corr[n]
                if waits or corr_reason:
                    status, left, reason = rules.task_start(job, array_deps, waits, corr_reason)
            items.append(
                _task_item(
                    array_id, n, index, status, queue=job.queue, claim_key=claim_key,
                    priority=job.priority, left=left, reason=reason, ended=now,
                    name=names[n], params=params[n], waits=waits,
                )
            )  # fmt: skip
        return items, size - written, first

    def _judge_all(
        self, jobs: Sequence[NewJob]
    ) -> list[tuple[list[tuple[str, int]], str | None, list[tuple[list[int], str | None]] | None]]:
        """Per job: the dependencies still pending, why it can never run (or None), and per
        task of an aftercorr array the targets it waits for and why it can never run."""
        targets = {dep.target for job in jobs for dep in job.depends}
        items = self._get_jobs(targets) if targets else {}
        if self._make_ids(targets - set(items)):  # tasks not made yet: made, to be flagged
            items = self._get_jobs(targets)
        found = self._complete(list(items.values()))
        by_id = {item["id"]: item for item in found}
        judged = []
        for job in jobs:
            pending, never = self._judge_new(job, by_id)
            corr = None
            corr_targets = rules.corr_targets(pending)
            if corr_targets and not never and job.array is not None:
                corr = self._corr_pending(corr_targets, job.array.indices, by_id)
            judged.append((pending, never, corr))
        return judged

    def _judge_new(
        self, job: NewJob, found: dict[int, Item]
    ) -> tuple[list[tuple[str, int]], str | None]:
        def is_array(target: int) -> bool:
            return found.get(target, {}).get("kind") == "array"

        def state_of(target: int) -> rules.State | None:
            return self._state_of(found[target]) if target in found else None

        return rules.judge_new(job, is_array, state_of)

    def _corr_pending(
        self, targets: list[int], indices: Sequence[int], found: dict[int, Item]
    ) -> list[tuple[list[int], str | None]]:
        """rules.corr_pending over the targets' tasks, read by id (strongly consistent)."""

        def task_states(target: int) -> Iterable[tuple[int, str]]:
            return self._task_states(target, int(found[target]["size"])).items()

        return rules.corr_pending(targets, indices, task_states)

    def _link(self, links: Sequence[tuple[int, str, int]], now: float) -> None:
        """Record pending dependencies, then judge them again. Targets are flagged first, so
        that a target ending from then on looks for what depends on it; one that ended
        before is seen ended when judged again. Settling removes the record on a
        condition, so whichever sees a dependency met first settles it, once."""
        for target in sorted({target for _, _, target in links}):
            self._update_if(
                _update(
                    self._jobs,
                    {"id": target},
                    set_={"dependents": True},
                    add={"version": 1},
                    condition="attribute_exists(#id)",
                )
            )
        self._write(
            [
                (
                    self._deps,
                    {
                        "PutRequest": {
                            "Item": _marshal(
                                {
                                    "target": target,
                                    "dep": f"{owner}{SEP}{kind}",
                                    "owner": owner,
                                    "kind": kind,
                                }
                            )
                        }
                    },
                )
                for owner, kind, target in links
            ]
        )
        ended: list[Ended] = []
        for owner, kind, target in links:
            if kind == "aftercorr":
                ended += self._recheck_corr(owner, target, now)
                continue
            ended += self._settle(owner, kind, target, self._target_verdict(kind, target), now)
        self._ended(ended, now)

    def _recheck_corr(self, owner: int, target: int, now: float) -> list[Ended]:
        infos = self._array_infos([owner, target])
        if target not in infos:  # withdrawn since the dependent saw it
            return self._settle(owner, "aftercorr", target, Verdict.NEVER, now)
        states = self._task_states(target, infos[target].size)
        tasks = self._complete(
            list(self._get_jobs(range(owner + 1, owner + infos[owner].size + 1)).values())
        )
        judged = {}
        for task in tasks:
            status = states.get(task["array_index"])
            if target in task.get("corr", []) and status in FINISHED:
                judged[task["id"]] = rules.ended_verdict("aftercorr", JobStatus(status))
        chosen = [t for t in tasks if t["id"] in judged]
        return self._apply_corr(chosen, target, lambda item: judged[item["id"]], now)
