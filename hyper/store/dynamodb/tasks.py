"""The DynamoDB store's tasks made after their array's submit (hyper.store.rules: "tasks
made after their array's submit"): an array's item keeps its plan (``plan``, JSON,
removed once every task is made), how many tasks are made (``made``, the first ones)
and how often the plan changed (``plan_rev``); a marker in the counts table
(items.UNMADE) says which arrays have tasks to make, or wrote some within INDEX_LAG
(arrays written whole at their submit too, flagged `whole`). Whatever needs a task that
is not made yet makes it first.

An index shows a new item only a moment after its write. The array's item therefore
keeps which tasks may have been made within INDEX_LAG, in spans ("epochs") of making of
at most INDEX_LAG each: when the current one began (``epoch_at``), the made-count then
(``epoch``) and at the start of the one before (``fresh``). A chunk made INDEX_LAG or
more after ``epoch_at`` begins a new one. Every task made within INDEX_LAG is in the
current epoch or the one before, so an answer reads those from ``fresh`` on by id as well
(a qdel or a listing right after another request made them misses none), and they are
the tasks of two epochs at most, however long the making goes on. A write slower than
SLOW_WRITE stamps its epoch again once done (Tasks._restamp).

Making a chunk is one transaction: each task put where no item is, the array's
``made`` moved on from the value read (and ``plan_rev`` still the one read), the marker
still there (a tick removes it INDEX_LAG after the last chunk). Several Lambdas may make
one array's tasks at once: whoever is second fails its condition, reads again and goes on
from there, so no task is made twice, none made is ever written again (a claimed task
stays claimed), and ``made`` never passes a task that is not there."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hyper.errors import StoreUnavailable
from hyper.jobs import Verdict
from hyper.store import rules
from hyper.store.base import Fits, JobFilter
from hyper.store.dynamodb.changes import Changes
from hyper.store.dynamodb.items import (
    CHECK_FAILED,
    INDEX_LAG,
    MAKE_CHUNK,
    SEP,
    SLOW_WRITE,
    SUBMIT_CUT_OFF,
    TRANSACTION_BYTES,
    TRIES,
    UNMADE,
    WAITING,
    WRITE_BATCH,
    CounterKey,
    Item,
    _Array,
    _counter_keys,
    _id_key,
    _marshal,
    _task_item,
    _update,
)

# what making and planning read of an array
STATE = "#id, #made, #size, #plan, #plan_rev, #epoch_at, #epoch, #fresh"


@dataclass(frozen=True)
class _Unmade:
    """An array with tasks not made yet, as read (strongly consistent)."""

    info: _Array
    made: int
    plan: dict[str, Any]
    rev: int
    epoch: Epoch

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def named(self) -> bool:
        """Whether its tasks have names of their own (work items)."""
        return bool(self.plan.get("names"))

    def position(self, job_id: int) -> int | None:
        """The position of the task `job_id` when it is one of this array's not made yet."""
        return job_id - self.id - 1 if self.id + self.made < job_id <= self.id + self.size else None


@dataclass(frozen=True)
class Epoch:
    """Which of an array's tasks may have been made within INDEX_LAG (module docstring)."""

    at: float  # when the current epoch began (0: none since the array's submit)
    made: int  # the made-count then
    fresh: int  # the made-count when the one before began

    @classmethod
    def of(cls, state: Item) -> Epoch:
        made = int(state.get("made", 0))
        return cls(float(state.get("epoch_at", 0)), int(state.get("epoch", made)),
                   int(state.get("fresh", made)))  # fmt: skip

    def recent(self, now: float) -> bool:
        """Whether a task may have been written within INDEX_LAG: the current epoch's
        last chunk was stamped less than INDEX_LAG after its start, and written at most
        SLOW_WRITE after its stamp (a slower write stamps its epoch again, Tasks._restamp)."""
        return self.at > now - 2 * INDEX_LAG - SLOW_WRITE

    def after_chunk(self, first: int, now: float) -> dict[str, Any]:
        """The fields a chunk of tasks from `first` on, made at `now`, changes. A new
        epoch keeps the one before in the window whatever its age: a chunk of it may
        still be on its way (another maker's, slow), stamped in it."""
        if self.at > now - INDEX_LAG:
            return {}  # within the current epoch
        return {"epoch_at": now, "epoch": first, "fresh": self.made}


def _fresh_range(info: _Array, state: Item, now: float) -> range:
    """The ids of an array's tasks that may have been made within INDEX_LAG (an index
    may not show them yet)."""
    epoch = Epoch.of(state)
    if not epoch.recent(now):
        return range(0)
    return range(info.id + 1 + epoch.fresh, info.id + 1 + _made(info, state))


def _made(info: _Array, state: Item) -> int:
    """How many of an array's tasks are made (all, for one written whole at its submit)."""
    return int(state.get("made", info.size))


class Tasks(Changes):
    """Making an array's tasks: the first at submit, the rest when needed or in chunks."""

    # made by the submit (a store's setting: tests change it): as many as fit beside the
    # array's item in one BatchWriteItem call, so that an array of any size is accepted
    # in about the calls of one job (every further call would cost a round trip)
    first_tasks = WRITE_BATCH - 1
    tasks_per_make = rules.TASKS_PER_MAKE  # made at a time by a claim
    tasks_per_tick = rules.TASKS_PER_TICK  # made by make_tasks (a tick)

    # what is left to make -------------------------------------------------------------------

    def _marked(self, *, whole: bool = True, forget: bool = False) -> list[tuple[_Array, Item]]:
        """The arrays with a marker (tasks to make, or written within INDEX_LAG; `whole`:
        with those written whole at their submit too), oldest first, each with its STATE.
        `forget`: markers left behind are removed: of an array whose tasks were all
        written longer than INDEX_LAG ago, or of one that is not there once no submit can
        still be writing it (a submit cut off or undone)."""
        markers = self._query_all(
            self._counts_name, "#scope = :scope", {"scope": UNMADE}, consistent=True,
            filter_=None if whole else "attribute_not_exists(#whole)",
        )  # fmt: skip
        if not markers:
            return []
        ids = [int(m["array_id"]) for m in markers]
        states = self._get_jobs(ids, STATE)
        if forget:
            now = time.time()
            for marker in markers:
                state = states.get(int(marker["array_id"]))
                if state is None:
                    left = float(marker["started"]) <= now - SUBMIT_CUT_OFF
                else:
                    left = "plan" not in state and not Epoch.of(state).recent(now)
                if left:
                    self.dynamodb.delete_item(
                        TableName=self._counts_name,
                        Key=_marshal({"scope": marker["scope"], "key": marker["key"]}),
                    )
        infos = self._array_infos(states)
        return [(infos[i], states[i]) for i in ids if i in infos]

    def _unmade(self, *, forget: bool = False) -> list[_Unmade]:
        """The arrays with tasks not made yet, oldest first (`forget`: as _marked, of
        every scope)."""
        marked = self._marked(whole=forget, forget=forget)
        return [self._as_unmade(info, state) for info, state in marked if "plan" in state]

    def _unmade_one(self, array_id: int) -> _Unmade | None:
        state = self._get(self._jobs, {"id": array_id}, STATE)
        if state is None or "plan" not in state:
            return None
        info = self._array_info(array_id)
        return None if info is None else self._as_unmade(info, state)

    @staticmethod
    def _as_unmade(info: _Array, state: Item) -> _Unmade:
        made, rev = int(state["made"]), int(state["plan_rev"])
        return _Unmade(info, made, json.loads(state["plan"]), rev, Epoch.of(state))

    # making -----------------------------------------------------------------------------------

    def _make(self, array_id: int, upto: int | None = None, most: int | None = None) -> list[int]:
        """Make the array's tasks up to position `upto` (all: None), at most `most` of them
        in this call; the ids of those this call made (others may make some meanwhile)."""
        done: list[int] = []
        failed = 0
        while True:
            array = self._unmade_one(array_id)
            if array is None:
                return done
            end = array.size if upto is None else min(upto, array.size)
            if most is not None:
                end = min(end, array.made + most - len(done))
            if end <= array.made:
                return done
            stamped = time.time()
            actions, stop = self._chunk(array, end, stamped)
            codes = self._transact(actions)
            if codes is None:
                done += range(array_id + 1 + array.made, array_id + 1 + stop)
                self._restamp(array_id, stamped)
                continue
            if codes[1] == CHECK_FAILED:
                return done  # no marker: its submit is not over (or was cut off)
            failed += 1  # another maker was first: read again and go on from there
            if failed > TRIES * 10:
                raise StoreUnavailable(f"array {array_id}: its tasks kept changing; try again")

    def _chunk(self, array: _Unmade, end: int, now: float) -> tuple[list[dict[str, Any]], int]:
        """The transaction that makes tasks `array.made` up to `end` (fewer when they do
        not fit in one), stamped `now`; and where it stops."""
        first = array.made
        stop = min(end, first + MAKE_CHUNK)
        tasks = self._task_items(array, first, stop)
        room, size = TRANSACTION_BYTES, 0
        for n, task in enumerate(tasks):
            size += len(json.dumps(task))
            if size > room and n:
                tasks, stop = tasks[:n], first + n
                break
        last = stop >= array.size
        epoch = array.epoch.after_chunk(first, now)
        update = _update(
            self._jobs,
            {"id": array.id},
            set_={"made": stop, **epoch, **({"plan": None} if last else {})},
            condition="#made = :made AND #plan_rev = :rev",
            values={"made": first, "rev": array.rev},
        )
        marker = {
            "TableName": self._counts_name,
            "Key": _marshal({"scope": UNMADE, "key": _id_key(array.id)}),
            "ConditionExpression": "attribute_exists(#scope)",
            "ExpressionAttributeNames": {"#scope": "scope"},
        }
        puts = [
            {
                "Put": {
                    "TableName": self._jobs,
                    "Item": _marshal(task),
                    "ConditionExpression": "attribute_not_exists(#id)",
                    "ExpressionAttributeNames": {"#id": "id"},
                }
            }
            for task in tasks
        ]
        return [{"Update": update}, {"ConditionCheck": marker}, *puts], stop

    def _restamp(self, array_id: int, stamped: float) -> None:
        """Tasks of the array stamped at `stamped` were written only now (a write retried
        under throttling, a long submit): its current epoch begins now instead, so that
        they are read by id INDEX_LAG after they reached the table, not after the stamp."""
        now = time.time()
        if now - stamped < SLOW_WRITE:
            return
        later = "attribute_exists(#id) AND #epoch_at < :now"
        restamp = _update(self._jobs, {"id": array_id}, set_={"epoch_at": now}, condition=later,
                          values={"now": now})  # fmt: skip
        self._update_if(restamp)

    @staticmethod
    def _task_items(array: _Unmade, first: int, end: int) -> list[Item]:
        """Tasks `first` to `end` - 1 as the plan says they start."""
        plan, info = array.plan, array.info
        names, params = plan.get("names") or [], plan.get("params") or []
        claim_key = f"{info.queue}{SEP}{info.definition}"
        indices = rules.task_indices(plan, first, end)
        return [
            _task_item(
                info.id, n, index, plan["status"], queue=info.queue, claim_key=claim_key,
                priority=info.priority, left=plan["deps_left"], reason=plan["reason"],
                ended=plan["ended"], name=names[n] if n < len(names) else None,
                params=params[n] if n < len(params) else None,
            )
            for n, index in zip(range(first, end), indices, strict=True)
        ]  # fmt: skip

    def make_tasks(self, most: int | None = None) -> int:
        """Make up to `most` (the store's tasks_per_tick) tasks of arrays not all made yet,
        oldest first; how many."""
        most = most or self.tasks_per_tick
        made = 0
        for array in self._unmade(forget=True):
            if made >= most:
                break
            made += len(self._make(array.id, most=most - made))
        return made

    # made before an answer ---------------------------------------------------------------

    def _make_ids(self, ids: Iterable[int]) -> bool:
        """Make the tasks with these ids that are not made yet, with those before them;
        whether any id was one of them."""
        wanted = list(ids)
        upto: dict[int, int] = {}
        for array in self._unmade() if wanted else []:
            for job_id in wanted:
                position = array.position(job_id)
                if position is not None:
                    upto[array.id] = max(upto.get(array.id, 0), position + 1)
        for array_id, end in upto.items():
            self._make(array_id, end)
        return bool(upto)

    def _task_kinds(self, ids: Iterable[int]) -> dict[int, str]:
        """The ids among these of tasks not made yet, as "task"."""
        wanted = list(ids)
        unmade = self._unmade() if wanted else []
        return {i: "task" for i in wanted for a in unmade if a.position(i) is not None}

    def _made_for(self, where: JobFilter, *, after: int = 0, limit: int | None = None) -> list[int]:
        """Make the tasks not made yet that jobs matching `where` could be (for a page of
        `limit` after `after`, only as many as the page can show), so that an answer read
        from the jobs is what it would be had every task been written at submit. Returns
        the ids of the tasks made within INDEX_LAG (by this call or any other) that `where`
        may match, for the answer to read by id (reading._iterate)."""
        marked = self._marked()
        unmade = {info.id: self._as_unmade(info, s) for info, s in marked if "plan" in s}
        wanted: dict[int, list[int] | None] = {}  # array: positions (None: the page's)
        if where.selects:
            for array_id, indices in where.arrays:
                if (array := unmade.get(array_id)) is None:
                    continue
                found = (rules.task_position(array.plan, i) for i in indices or ())
                wanted[array_id] = None if indices is None else [p for p in found if p is not None]
            for job_id in where.ids:
                for array in unmade.values():
                    if (position := array.position(job_id)) is None:
                        continue
                    if array.id not in wanted:
                        wanted[array.id] = [position]
                    elif (positions := wanted[array.id]) is not None:
                        positions.append(position)
        else:
            wanted = {a.id: None for a in unmade.values() if self._may_match(where, a)}
        names = where.name is not None or bool(where.name_prefix)
        for array_id, positions in wanted.items():
            array = unmade[array_id]
            # tasks with names of their own are not alike under a filter by name
            paged = limit if not (names and array.named) else None
            upto = rules.to_make(
                array.made, array.size, array_id, after=after, limit=paged, positions=positions
            )
            self._make(array_id, upto)
        if wanted:  # what this call (and any other meanwhile) made
            states = self._get_jobs((info.id for info, _ in marked), STATE)
            marked = [(info, states[info.id]) for info, _ in marked if info.id in states]
        return self._fresh_ids(where, marked)

    @staticmethod
    def _fresh_ids(where: JobFilter, marked: Iterable[tuple[_Array, Item]]) -> list[int]:
        """The ids of the tasks made within INDEX_LAG that `where` may match."""
        now, found = time.time(), list[int]()
        anyhow = dataclasses.replace(where, statuses=())  # a task's state is its own
        for info, state in marked:
            window = _fresh_range(info, state, now)
            if not window:
                continue
            if where.selects:
                if any(array_id == info.id for array_id, _ in where.arrays):
                    found += window
                else:
                    found += (i for i in where.ids if i in window)
            elif rules.unmade_may_match(
                anyhow, array_id=info.id, queue=info.queue, definition=info.definition,
                name=info.name, named=True, status="",
            ):  # fmt: skip
                found += window
        return found

    @staticmethod
    def _may_match(where: JobFilter, array: _Unmade, *, whole: bool = False) -> bool:
        info = array.info
        return rules.unmade_may_match(
            where, array_id=info.id, queue=info.queue, definition=info.definition,
            name=info.name, named=array.named, status=array.plan["status"], whole=whole,
        )  # fmt: skip

    def _unmade_before(self, queue: str | None, after: int, last: int | None) -> bool:
        """Whether a task not made yet, or one made within INDEX_LAG, has an id past `after`
        and before `last` (a full page's last id; None: the page was not full), of one
        queue's arrays or all."""
        now = time.time()
        for info, state in self._marked():
            made = _made(info, state)
            fresh = _fresh_range(info, state, now)
            low = fresh.start if fresh else info.id + 1 + made
            high = info.id + (info.size if "plan" in state else made)
            if (
                queue in (None, info.queue)
                and low <= high
                and high > after
                and (last is None or low < last)
            ):
                return True
        return False

    def _make_to_claim(
        self, queue: str, definition: str, limit: int, fits: Fits | None = None
    ) -> None:
        """Before a claim of `limit` jobs: the arrays of (queue, definition) whose tasks not
        made yet are Waiting, in the order a claim takes tasks (priority, then id), each
        get at least `limit` made Waiting ones, until those the claim could take from the
        arrays seen (each's up to its cap's room; none of one whose request does not fit)
        reach `limit`. So a claim takes the same jobs as if every task had been written at
        submit (an array's tasks share its priority, request and cap, the made ones come
        first, and all come before those of arrays later in that order), and makes tasks
        of the first arrays only. An array's made Waiting tasks are its Waiting count
        (exact, every task's) less those not made yet."""
        arrays = [
            array
            for array in self._unmade()
            if (array.info.queue, array.info.definition, array.plan["status"])
            == (queue, definition, WAITING)
        ]
        arrays.sort(key=lambda array: (-array.info.priority, array.id))
        seen = 0
        for array in arrays:
            if seen >= limit:
                return
            counts = self._counts(f"array:{array.id}")
            waiting = counts.get(WAITING, 0)
            if waiting - (array.size - array.made) < limit:
                self._make(array.id, array.made + max(limit, self.tasks_per_make))
            if fits is not None and not fits(rules.request_of(array.info.options)):
                continue  # the claim takes none of its tasks
            cap = array.info.cap
            room = waiting if cap is None else max(0, cap - counts.get(rules.RUNNING, 0))
            seen += min(waiting, room)

    # a dependency of a whole array ---------------------------------------------------------

    def _settle_unmade(
        self, owner: int, size: int, verdict: Verdict, reason: str, now: float
    ) -> int:
        """A settled dependency of array `owner`, for its tasks not made yet: their plan
        changes as each of them would (rules.settled), their counts with it, in one
        transaction on the array's made-count; one that can never be met makes them all
        first (each task then ends with an event of its own). Returns how many tasks are
        made, the first ones: those to change one by one (any made later start as the
        plan says)."""
        if verdict is Verdict.NEVER:
            self._make(owner)
        for _ in range(TRIES * 10):
            array = self._unmade_one(owner)
            if array is None:
                return size
            plan = array.plan
            change = rules.settled(plan["status"], plan["deps_left"], verdict, reason, now)
            if change is None:
                return array.made
            deltas: Counter[CounterKey] = Counter()
            if change["status"] != plan["status"]:
                unmade = array.size - array.made
                view = {"queue": array.info.queue, "definition": array.info.definition,
                        "array_id": owner, "options": array.info.options}  # fmt: skip
                for key in _counter_keys(view, plan["status"]):
                    deltas[key] -= unmade
                for key in _counter_keys(view, change["status"]):
                    deltas[key] += unmade
            update = _update(
                self._jobs,
                {"id": owner},
                set_={"plan": json.dumps({**plan, **change})},
                add={"plan_rev": 1},
                condition="#made = :made AND #plan_rev = :rev",
                values={"made": array.made, "rev": array.rev},
            )
            if self._transact([{"Update": update}, *self._counter_actions(deltas)]) is None:
                return array.made
        raise StoreUnavailable(f"array {owner}: its tasks kept changing; try again")
