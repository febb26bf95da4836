"""The DynamoDB store's submits: judging, items of jobs and arrays, the journal that
takes back what a cut-off submit counted, and pending dependencies."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from hyper.aws_errors import error_code
from hyper.errors import StoreUnavailable, UsageError
from hyper.jobs import (
    FINISHED,
    JobStatus,
    LogKind,
    judge_dependency,
)
from hyper.store import rules
from hyper.store.base import (
    NewJob,
)
from hyper.store.dynamodb.dependents import Dependents
from hyper.store.dynamodb.items import (
    MAKE_CHUNK,
    PLAN_ITEM_BYTES,
    SCRIPT_INLINE_BYTES,
    SEP,
    SETTLED_PER_TICK,
    SUBMIT_CUT_OFF,
    SUBMITS,
    TRANSACTION_ITEMS,
    TRIES,
    UNMADE,
    WRITE_BATCH,
    CounterKey,
    Ended,
    Item,
    _chunks,
    _counter_keys,
    _id_key,
    _index_keys,
    _journal_deltas,
    _journal_entry,
    _marshal,
    _name_key,
    _task_item,
    _unmade_marker,
    _update,
    _values,
)


class Submitting(Dependents):
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
                for status, n in statuses.items():
                    for key in _counter_keys(view, status):
                        deltas[key] += n
                plan_keys = _counter_keys(view, later_status) if unmade else []
                counted.append((next_id, plan_keys))
                counted += [(t["id"], _counter_keys(view, t["status"])) for t in made[1:]]
                next_id += len(job.array.indices) + 1
        entry = _journal_entry(counted, deltas, now, later=later)
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

    def _mark_unmade(self, arrays: Iterable[int], now: float) -> None:
        """The markers of a submit's arrays with tasks to make (items.UNMADE)."""
        self._write([(self._counts_name, _marker_put(a, now)) for a in sorted(arrays)])

    def _undo_submit(self, items: Sequence[Item], entry: Item) -> None:
        """A submit that failed part-way takes back what it wrote, as far as it can; its ids
        stay used (they are never reused). Its arrays' markers go first (no task is made
        from then on), then any task made since; its jobs go last first, so that those
        left by a failure here are still the first ones, as the journal expects."""
        try:
            later = json.loads(entry.get("later") or "[]")  # [array, first unmade id, last]
            if later and items:
                self._write(
                    [(self._counts_name,
                      {"DeleteRequest": {"Key": _marshal({"scope": UNMADE, "key": _id_key(a)})}})
                     for a, _, _ in later]
                )  # fmt: skip
                plans = {int(i["id"]): i["plan"] for i in items if "plan" in i}
                for array_id, low, _ in reversed(later):
                    self._unmake_since(array_id, low, plans[array_id])
            for chunk in reversed(list(_chunks(items, WRITE_BATCH))):
                self._write(
                    [(self._jobs, {"DeleteRequest": {"Key": _marshal({"id": i["id"]})}})
                     for i in chunk]
                )  # fmt: skip
            found = self._get(self._counts_name, {"scope": SUBMITS, "key": entry["key"]})
            if found is not None:
                self._settle_submit(found)
        except Exception:  # the error being raised says more than this one; the tick
            pass  # settles what is left

    def _unmake_since(self, array_id: int, low: int, plan: str) -> None:
        """Delete an array's tasks made after its submit (ids from `low` on), the last ones
        first, each chunk in one transaction with the array's made-count (and its epoch,
        tasks.Epoch) lowered to match, and its `plan` (the submit's) put back if every task
        had been made: an undo cut off part-way leaves an array whose count and plan still
        say which tasks are there and make the rest (the journal's settle marks it again).
        Like the submit's own items, a task is deleted whatever another request did to it
        meanwhile: the submit failed, and its jobs are taken back."""
        refused = 0
        while True:
            state = self._get(self._jobs, {"id": array_id}, "#id, #made, #plan, #epoch, #fresh")
            if state is None or "made" not in state:
                return
            made = int(state["made"])
            top = array_id + 1 + made  # one past the last task made
            if top <= low:
                return
            start = max(low, top - MAKE_CHUNK)
            lowered = start - array_id - 1
            fields: dict[str, Any] = {"made": lowered}
            fields |= {k: lowered for k in ("epoch", "fresh") if int(state.get(k, 0)) > lowered}
            fields |= {"plan": plan} if "plan" not in state else {}
            update = _update(
                self._jobs, {"id": array_id}, set_=fields, condition="#made = :made",
                values={"made": made},
            )  # fmt: skip
            deletes = [
                {"Delete": {"TableName": self._jobs, "Key": _marshal({"id": task_id})}}
                for task_id in range(start, top)
            ]
            if self._transact([{"Update": update}, *deletes]) is not None:
                refused += 1  # made or changed meanwhile: read again
                if refused > TRIES * 10:
                    raise StoreUnavailable(f"array {array_id}: its tasks kept changing; try again")

    # the journal of submits -------------------------------------------------------------

    def _count_submit(self, entry: Item) -> None:
        """A submit's counters, with its journal entry: put with the first transaction of
        counters, then its `applied` raised by each further one, so that it always says
        how many of them were made."""
        deltas = _journal_deltas(entry)
        key = {"scope": SUBMITS, "key": entry["key"]}
        for n, chunk in enumerate(_chunks(deltas, TRANSACTION_ITEMS - 1) if deltas else [[]]):
            if n == 0:
                step = {"Put": {"TableName": self._counts_name,
                                "Item": _marshal({**key, **entry, "applied": 1})}}  # fmt: skip
            else:
                step = {"Update": _update(self._counts_name, key, add={"applied": 1})}
            made = Counter({(sc, k, bool(p)): n for sc, k, p, n in chunk})
            self._transact([*self._counter_actions(made), step])

    def reconcile_counts(self, now: float) -> int:
        """Settle the journal entries of submits cut off (older than SUBMIT_CUT_OFF), a few
        a tick: the counters of their jobs that were never written are taken back. How
        many were settled."""
        settled = 0
        for items, _ in self._query(
            self._counts_name, "#scope = :scope", {"scope": SUBMITS}, consistent=True,
            limit=100,
        ):  # fmt: skip
            for entry in items:
                if float(entry["started"]) <= now - SUBMIT_CUT_OFF:
                    self._settle_submit(entry)
                    settled += 1
                    if settled >= SETTLED_PER_TICK:
                        return settled
        return settled

    def _settle_submit(self, entry: Item) -> None:
        """Take back what a submit that did not finish counted for jobs it never wrote,
        then remove its entry. Each step is a transaction on the entry's `applied`, so a
        settle cut off in turn is taken up where it stopped, never done twice."""
        key = {"scope": SUBMITS, "key": entry["key"]}
        self._remark_unmade(entry)
        deltas = _journal_deltas(entry)
        chunks = [list(c) for c in _chunks(deltas, TRANSACTION_ITEMS - 1)] or [[]]
        applied = int(entry["applied"])
        if not entry.get("undo") and applied == len(chunks):
            # every counter was made: the jobs never written are the ones to take back
            undo = _journal_deltas(entry, self._unwritten(entry))
            chunks = [list(c) for c in _chunks(undo, TRANSACTION_ITEMS - 1)]
            done = self._update_if(
                _update(
                    self._counts_name, key,
                    set_={"deltas": json.dumps(undo), "applied": len(chunks), "undo": True},
                    condition="#applied = :applied", values={"applied": applied},
                )
            )  # fmt: skip
            if done is None:
                return  # someone else is settling it
            applied = len(chunks)
        while applied > 0:
            back = Counter({(sc, k, bool(p)): -n for sc, k, p, n in chunks[applied - 1]})
            step = _update(
                self._counts_name, key, add={"applied": -1},
                condition="#applied = :applied", values={"applied": applied},
            )  # fmt: skip
            if self._transact([*self._counter_actions(back), {"Update": step}]) is not None:
                return
            applied -= 1
        try:
            self.dynamodb.delete_item(
                TableName=self._counts_name,
                Key=_marshal(key),
                ConditionExpression="#applied = :zero",
                ExpressionAttributeNames={"#applied": "applied"},
                ExpressionAttributeValues=_values({"zero": 0}),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def _remark_unmade(self, entry: Item) -> None:
        """A submit cut off after it wrote an array with tasks to make, before its marker:
        the marker is put now (the array's tasks are counted, so they must be made)."""
        later = json.loads(entry.get("later") or "[]")
        if not later:
            return
        found = self._get_jobs((a for a, _, _ in later), "#id, #plan")
        self._mark_unmade((a for a, item in found.items() if "plan" in item), entry["started"])

    def _unwritten(self, entry: Item) -> list[tuple[int, int]]:
        """The ranges of ids (first, last) of a submit's jobs that are not there. They were
        written in order, WRITE_BATCH at a time, each batch finished before the next: so
        the batches up to one are all there, that one maybe in part, none after it. The
        last batch with any job is found by halving (a few reads), then read in full. The
        ids of tasks made after the submit were not written by it: they are skipped (what
        they count is the array's, there when its item is)."""
        first, last = int(entry["first"]), int(entry["last"])
        written = _spans(first, last, [(low, high) for _, low, high in
                                       json.loads(entry.get("later") or "[]")])  # fmt: skip
        batches = (sum(len(span) for span in written) - 1) // WRITE_BATCH + 1

        def ids_of(batch: int) -> list[int]:
            return _taken(written, batch * WRITE_BATCH, WRITE_BATCH)

        def any_there(batch: int) -> bool:
            return bool(self._get_jobs(ids_of(batch), "#id"))

        low, high = -1, batches - 1  # the last batch with a job is in (low, high]
        if not any_there(0):
            return [(first, last)]
        low = 0
        while low < high:
            middle = (low + high + 1) // 2
            if any_there(middle):
                low = middle
            else:
                high = middle - 1
        there = set(self._get_jobs(ids_of(low), "#id"))
        missing = [(i, i) for i in ids_of(low) if i not in there]
        if low + 1 < batches:
            missing.append((ids_of(low + 1)[0], last))
        return missing

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
            ok, bad, size = self._target_state(target)
            verdict = judge_dependency(kind, ok=ok, bad=bad, size=size)
            ended += self._settle(owner, kind, target, verdict, now)
        self._ended(ended, now)

    def _recheck_corr(self, owner: int, target: int, now: float) -> list[Ended]:
        infos = self._array_infos([owner, target])
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


def _spans(first: int, last: int, skipped: Sequence[tuple[int, int]]) -> list[range]:
    """The ids from `first` to `last` but those of the `skipped` ranges, as ranges."""
    spans, start = [], first
    for low, high in sorted(skipped):
        spans.append(range(start, low))
        start = high + 1
    spans.append(range(start, last + 1))
    return [span for span in spans if span]


def _taken(spans: Sequence[range], start: int, count: int) -> list[int]:
    """`count` ids of `spans` from the one at position `start`."""
    found: list[int] = []
    for span in spans:
        if start >= len(span):
            start -= len(span)
            continue
        found += span[start : start + count - len(found)]
        start = 0
        if len(found) >= count:
            break
    return found


def _marker_put(array_id: int, now: float, *, whole: bool = False) -> dict[str, Any]:
    return {"PutRequest": {"Item": _marshal(_unmade_marker(array_id, now, whole=whole))}}
