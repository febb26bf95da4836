"""The DynamoDB store's journal of submits: what a submit counted, kept until it is over,
so that a submit cut off is settled by the tick (the counts of jobs it never wrote taken
back) and one that failed is withdrawn (every job it wrote taken back, with its counts).

A job a withdrawn submit wrote may have been changed by another request meanwhile (a
worker claimed it, a qdel cancelled it): it is deleted in the state it is in, and its
counters are moved back from that state to the one it was counted in, so that taking
back the submit's counts leaves none of it. A withdrawal cut short is finished by the
tick's settle: nothing of a withdrawn submit is kept, nor made again from a plan."""

from __future__ import annotations

import bisect
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from hyper.aws_errors import error_code
from hyper.errors import StoreUnavailable
from hyper.store.dynamodb.dependents import Dependents
from hyper.store.dynamodb.items import (
    MAKE_CHUNK,
    SETTLED_PER_TICK,
    SUBMIT_CUT_OFF,
    SUBMITS,
    TRANSACTION_ITEMS,
    TRIES,
    UNMADE,
    WRITE_BATCH,
    CounterKey,
    Item,
    _chunks,
    _counter_keys,
    _id_key,
    _journal_deltas,
    _marshal,
    _unmade_marker,
    _update,
    _values,
)

log = logging.getLogger(__name__)


class Journal(Dependents):
    """Submits' journal entries in the counts table (scope SUBMITS), settled or withdrawn."""

    def _mark_unmade(self, arrays: Iterable[int], now: float) -> None:
        """The markers of a submit's arrays with tasks to make (items.UNMADE)."""
        self._write([(self._counts_name, _marker_put(a, now)) for a in sorted(arrays)])

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

    # a submit that failed --------------------------------------------------------------

    def _undo_submit(self, items: Sequence[Item], entry: Item) -> None:
        """A submit that failed part-way takes back what it wrote (`items`: what it was
        writing), as far as it can; its ids stay used (they are never reused). Its entry
        is marked withdrawn first, so that the tick's settle finishes a withdrawal cut
        short, rather than keep what is there as it does for a submit cut off."""
        try:
            if items:
                key = {"scope": SUBMITS, "key": entry["key"]}
                self._update_if(
                    _update(self._counts_name, key, set_={"withdrawn": True},
                            condition="attribute_exists(#key)")
                )  # fmt: skip
            found = self._get(self._counts_name, {"scope": SUBMITS, "key": entry["key"]})
            if found is not None:
                self._settle_submit(found)
        except Exception:  # the error being raised says more than this one; the tick
            pass  # settles what is left

    def _withdraw(self, entry: Item) -> None:
        """Delete every job a submit wrote: its arrays' markers first (no task is made
        from then on), then the tasks made since for them, then its own jobs, the last
        first, so that those a failure here leaves are still the first ones (_unwritten).
        Each in the state it is in, its counters moved back to those it was counted with;
        what depends on any of them can never be met (settled before it goes: a withdrawal
        cut short after a delete would not find it again)."""
        later = json.loads(entry.get("later") or "[]")  # [array, first unmade id, last]
        counted = _Counted(entry)
        if later:
            self._write(
                [(self._counts_name,
                  {"DeleteRequest": {"Key": _marshal({"scope": UNMADE, "key": _id_key(a)})}})
                 for a, _, _ in later]
            )  # fmt: skip
        for array_id, low, _ in reversed(later):
            self._unmake_since(array_id, low, counted)
        ids = self._written(entry)
        while ids:
            ids = ids[: len(ids) - self._delete_last(ids[-MAKE_CHUNK:], counted)]

    def _unmake_since(self, array_id: int, low: int, counted: _Counted) -> None:
        """Delete an array's tasks made after its submit (ids from `low` on), the last ones
        first, each chunk in one transaction with the array's made-count (and its epoch,
        tasks.Epoch) lowered to match: a withdrawal cut short leaves an array whose count
        says which tasks are there."""
        refused = 0
        while True:
            state = self._get(self._jobs, {"id": array_id}, "#id, #made, #epoch, #fresh")
            if state is None or "made" not in state:
                return
            made = int(state["made"])
            top = array_id + 1 + made  # one past the last task made
            if top <= low:
                return
            tasks = self._as_they_are(range(max(low, top - MAKE_CHUNK), top))

            def actions(start: int, state: Item = state, tasks: list[Item] = tasks) -> list[Any]:
                lowered = start - array_id - 1
                fields = {"made": lowered}
                fields |= {k: lowered for k in ("epoch", "fresh") if int(state.get(k, 0)) > lowered}
                update = _update(
                    self._jobs, {"id": array_id}, set_=fields, condition="#made = :made",
                    values={"made": state["made"]},
                )  # fmt: skip
                deletes = self._deletes([t for t in tasks if t["id"] >= start], counted)
                return [{"Update": update}, *deletes]

            chosen, start = _fitting(actions, range(max(low, top - MAKE_CHUNK), top))
            self._settle_gone([t["id"] for t in tasks if t["id"] >= start and t.get("dependents")])
            if self._transact(chosen) is not None:
                refused += 1  # made or changed meanwhile: read again
                if refused > TRIES * 10:
                    raise StoreUnavailable(f"array {array_id}: its tasks kept changing; try again")

    def _delete_last(self, ids: Sequence[int], counted: _Counted) -> int:
        """Delete the last of these jobs (as many as one transaction takes, all where their
        counters allow), each in the state it is in; how many ids were done."""
        refused = 0
        while True:
            found = self._as_they_are(ids)

            def actions(start: int, found: list[Item] = found) -> list[Any]:
                return self._deletes([item for item in found if item["id"] >= start], counted)

            chosen, start = _fitting(actions, ids)
            self._settle_gone([j["id"] for j in found if j["id"] >= start and j.get("dependents")])
            if not chosen or self._transact(chosen) is None:
                return sum(1 for i in ids if i >= start)
            refused += 1  # changed meanwhile: read again
            if refused > TRIES * 10:
                raise StoreUnavailable(f"jobs {ids[0]}-{ids[-1]} kept changing; try again")

    def _as_they_are(self, ids: Iterable[int]) -> list[Item]:
        """The jobs there of these ids, in id order, as read now, tasks completed from
        their arrays (what their counters need). A task whose array's item is not there
        (a call of the submit's written in part) was never read by anyone: it is left as
        it is, and deleted with no counter moved."""
        found = sorted(self._get_jobs(ids).values(), key=lambda item: int(item["id"]))
        arrays = self._array_infos({i["array_id"] for i in found if i.get("kind") == "task"})
        self._complete([i for i in found if i.get("kind") != "task" or i["array_id"] in arrays])
        return found

    def _deletes(self, items: Sequence[Item], counted: _Counted) -> list[dict[str, Any]]:
        """Deletes of these jobs, each only in the state read, with the counter ADDs that
        move each from that state back to the one the submit counted it in."""
        back: Counter[CounterKey] = Counter()
        actions: list[dict[str, Any]] = []
        for item in items:
            # as read: a dependency linked since (a version more) is settled first, re-read
            same = {"version": item["version"]} if "version" in item else {}
            condition = "#version = :version" if same else "attribute_not_exists(#version)"
            names = {"#version": "version"}
            if item.get("kind") != "array":  # an array's own item counts for nothing
                condition += " AND #status = :status"
                names["#status"], same["status"] = "status", item["status"]
                was = counted.keys(item) if "queue" in item else None  # (not completed)
                if was is not None:
                    back.update(was)
                    back.subtract(_counter_keys(item, item["status"]))
            delete: dict[str, Any] = {
                "TableName": self._jobs, "Key": _marshal({"id": item["id"]}),
                "ConditionExpression": condition, "ExpressionAttributeNames": names,
            }  # fmt: skip
            if same:
                delete["ExpressionAttributeValues"] = _values(same)
            actions.append({"Delete": delete})
        return actions + self._counter_actions(back)

    # settling ------------------------------------------------------------------------------

    def reconcile_counts(self, now: float) -> int:
        """Settle the journal entries of submits cut off (older than SUBMIT_CUT_OFF) or
        withdrawn, a few a tick: the counters of their jobs that were never written (or
        were deleted) are taken back. How many were settled."""
        settled = 0
        pages = self._query(
            self._counts_name, "#scope = :scope", {"scope": SUBMITS}, consistent=True,
            limit=100,
        )  # fmt: skip
        for entry in (entry for items, _ in pages for entry in items):
            # a withdrawn submit wrote its last: its withdrawal is finished at once
            if entry.get("withdrawn") or float(entry["started"]) <= now - SUBMIT_CUT_OFF:
                try:
                    self._settle_submit(entry)
                except Exception as error:  # the others, and the rest of the tick (its
                    # scaling), go on; a later tick takes this one up again
                    log.warning("the submit from job %s: not settled yet: %s", entry["first"],
                                error)  # fmt: skip
                    continue
                settled += 1
                if settled >= SETTLED_PER_TICK:
                    break
        return settled

    def _settle_submit(self, entry: Item) -> None:
        """Take back what a submit that did not finish counted for jobs it never wrote
        (all of them, once a withdrawn one's are deleted), then remove its entry. Each
        step is a transaction on the entry's `applied`, so a settle cut off in turn is
        taken up where it stopped, never done twice."""
        key = {"scope": SUBMITS, "key": entry["key"]}
        if not entry.get("withdrawn"):
            self._remark_unmade(entry)
        elif not entry.get("undo"):
            self._withdraw(entry)
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

    def _last_batch(self, spans: Sequence[range]) -> int | None:
        """Of a submit's own ids (`spans`), written in order WRITE_BATCH at a time, each
        batch finished before the next: the last batch with any job there (None: none),
        found by halving (a few reads). The batches before it are all there."""

        def any_there(batch: int) -> bool:
            return bool(self._get_jobs(_taken(spans, batch * WRITE_BATCH, WRITE_BATCH), "#id"))

        if not any_there(0):
            return None
        low, high = 0, (sum(len(span) for span in spans) - 1) // WRITE_BATCH
        while low < high:
            middle = (low + high + 1) // 2
            if any_there(middle):
                low = middle
            else:
                high = middle - 1
        return low

    def _written(self, entry: Item) -> list[int]:
        """The ids of a submit's own jobs that may be there: up to its last batch with any."""
        spans = _own_spans(entry)
        last = self._last_batch(spans)
        return [] if last is None else _taken(spans, 0, (last + 1) * WRITE_BATCH)

    def _unwritten(self, entry: Item) -> list[tuple[int, int]]:
        """The ranges of ids (first, last) of a submit's jobs that are not there: those of
        its last batch with any job that are missing, and every one after it. The ids of
        tasks made after the submit were not written by it: they are skipped (what they
        count is the array's, there when its item is)."""
        first, last = int(entry["first"]), int(entry["last"])
        spans = _own_spans(entry)
        low = self._last_batch(spans)
        if low is None:
            return [(first, last)]
        ids = _taken(spans, low * WRITE_BATCH, WRITE_BATCH)
        there = set(self._get_jobs(ids, "#id"))
        missing = [(i, i) for i in ids if i not in there]
        after = _taken(spans, (low + 1) * WRITE_BATCH, 1)
        if after:
            missing.append((after[0], last))
        return missing


class _Counted:
    """The counter keys a submit counted each of its jobs with: from its journal entry's
    runs, or, for a submit too varied to keep them, the status each job was written in
    (`s0`, on the job) or its array's plan made it in (the entry's `planned`). A task
    made after the submit was counted with its array's id."""

    def __init__(self, entry: Item) -> None:
        runs = entry.get("runs")
        self._runs: list[Any] = json.loads(runs) if runs else []
        self._lows = [run[0] for run in self._runs]
        self._later = [(low, high, a) for a, low, high in json.loads(entry.get("later") or "[]")]
        self._planned = {int(a): s for a, s in json.loads(entry.get("planned") or "{}").items()}

    def keys(self, job: Item) -> list[CounterKey] | None:
        job_id = int(job["id"])
        array_id = next((a for low, high, a in self._later if low <= job_id <= high), None)
        if not self._runs:
            status = job.get("s0") if array_id is None else self._planned.get(array_id)
            return None if status is None else _counter_keys(job, status)
        at = bisect.bisect_right(self._lows, job_id if array_id is None else array_id) - 1
        if at < 0 or (job_id if array_id is None else array_id) > self._runs[at][1]:
            return None
        return [(scope, key, bool(pinned)) for scope, key, pinned, *_ in self._runs[at][2]]


def _fitting(actions: Any, starts: Sequence[int]) -> tuple[list[dict[str, Any]], int]:
    """`actions(start)` for the first of `starts` (ascending ids) whose actions fit in one
    transaction, and that start: each job left out takes out its delete and its counters
    (a job's own are a few, so the last start always fits)."""
    for start in starts:
        chosen = actions(start)
        if len(chosen) <= TRANSACTION_ITEMS:
            return chosen, start
    raise StoreUnavailable(f"jobs from {starts[0]}: too many counters to move at once")


def _own_spans(entry: Item) -> list[range]:
    """The ids of a submit's own jobs (those it wrote itself), as ranges."""
    later = [(low, high) for _, low, high in json.loads(entry.get("later") or "[]")]
    return _spans(int(entry["first"]), int(entry["last"]), later)


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
