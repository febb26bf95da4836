"""The DynamoDB store's tasks made after their array's submit (test_store.py checks every
answer on both stores with small arrays): what a big array's submit writes, several
handles (Lambdas) making one array's tasks at once, and a submit cut off part-way. All
under moto's in-process mock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import moto
import pytest

from hyper.errors import Conflict
from hyper.jobs import JobStatus
from hyper.jobspec import Dependency, Selector
from hyper.store import rules
from hyper.store.base import ArrayTasks, Ending, JobFilter
from hyper.store.dynamodb import DynamoDBStore
from hyper.store.dynamodb import submit as submit_module
from hyper.store.dynamodb.items import INDEX_LAG, SLOW_WRITE, SUBMIT_CUT_OFF, _Array
from hyper.store.dynamodb.journal import Journal
from hyper.store.dynamodb.tasks import Epoch, _fresh_range
from hyper.store.dynamodb_tables import create_tables
from tests.conftest import moto_backs_up_a_table_once, moto_one_request_at_a_time
from tests.helpers.store import D, Q, job

REGION, PREFIX, LEASE = "us-east-1", "tasks", 30.0


@pytest.fixture
def open_store(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory of handles on one fresh set of tables: each is another Lambda."""
    moto_one_request_at_a_time(monkeypatch)
    moto_backs_up_a_table_once(monkeypatch)
    opened: list[DynamoDBStore] = []
    with moto.mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), PREFIX)

        def factory() -> DynamoDBStore:
            opened.append(DynamoDBStore(PREFIX, REGION))
            return opened[-1]

        yield factory
        for handle in opened:
            handle.close()


def task_items(store: DynamoDBStore, array_id: int) -> list[dict[str, Any]]:
    """The task items of an array in the table, as they are (a Scan: tests only)."""
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": f"{PREFIX}-jobs",
        "FilterExpression": "array_id = :a",
        "ExpressionAttributeValues": {":a": {"N": str(array_id)}},
    }
    while True:
        page = store.dynamodb.scan(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_big_arrays_submit_writes_its_first_tasks_and_answers_exactly(open_store: Any) -> None:
    store = open_store()
    now = time.time()
    n = 5000
    (array_id,) = store.submit([job("big", array=ArrayTasks(indices=range(1, n + 1)))], now)
    assert len(task_items(store, array_id)) == store.first_tasks == 24
    assert store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == n
    assert store.demand() == [(Q, D, n, 0)]
    assert store.make_tasks() == rules.TASKS_PER_TICK  # a tick's share, no more
    made = store.first_tasks + rules.TASKS_PER_TICK
    assert len(task_items(store, array_id)) == made
    # nothing that cannot be among the tasks not made yet makes any
    assert store.cancel(JobFilter(statuses=(JobStatus.HELD,)), now).cancelled == 0
    assert sum(store.count_jobs(JobFilter(name="other")).values()) == 0
    assert store.claim("w", Q, D, 3, LEASE, now)[0].id == array_id + 1
    assert len(task_items(store, array_id)) == made
    # a deep page, a far task, and a qdel of ID[4990-5000]
    page = store.list_jobs(JobFilter(array_id=array_id), limit=10, after=array_id + 4000)
    assert [j.id for j in page] == list(range(array_id + 4001, array_id + 4011))
    assert store.get_job(array_id + 4500) is not None
    far = tuple(range(n - 10, n + 1))
    assert store.cancel(store.resolve([Selector(array_id, far)]), now).cancelled == 11
    counts = store.count_jobs(JobFilter(array_id=array_id))
    assert (counts[JobStatus.WAITING], counts[JobStatus.RUNNING]) == (n - 14, 3)
    assert counts[JobStatus.CANCELLED] == 11
    assert store.demand() == [(Q, D, n - 14, 3)]


@pytest.mark.slow
def test_a_big_arrays_cancel_in_steps_ends_every_task_once(open_store: Any) -> None:
    store = open_store()
    now = time.time()
    n = 5000
    (array_id,) = store.submit([job("big", array=ArrayTasks(indices=range(1, n + 1)))], now)
    store.claim("w", Q, D, 3, LEASE, now)
    store.cancel(store.resolve([Selector(array_id, tuple(range(n - 10, n + 1)))]), now)
    steps = [store.cancel(JobFilter(queue=Q), now, limit=2000)]
    while steps[-1].more:
        steps.append(store.cancel(JobFilter(queue=Q), now, limit=2000))
    assert sum(s.cancelled for s in steps) == n - 14
    assert len(task_items(store, array_id)) == n
    counts = store.count_jobs(JobFilter(array_id=array_id))
    assert {k: v for k, v in counts.items() if v} == {
        JobStatus.CANCELLED: n - 3, JobStatus.RUNNING: 3,
    }  # fmt: skip
    assert store.make_tasks() == 0


def _later(store: DynamoDBStore, n: int = 300, first: int = 20) -> int:
    store.first_tasks = first
    (array_id,) = store.submit([job("race", array=ArrayTasks(indices=range(n)))], time.time())
    return array_id


def test_a_late_maker_never_writes_over_a_task_made_and_claimed(open_store: Any) -> None:
    one, late = open_store(), open_store()
    now = time.time()
    array_id = _later(one)
    stale = late._unmade_one(array_id)  # the late maker read the array here...
    assert stale is not None and stale.made == 20
    # ...then another made the next tasks and a worker claimed one of them
    assert one._make(array_id, 30) == list(range(array_id + 21, array_id + 31))
    one.cancel(JobFilter(arrays=((array_id, tuple(range(25))),)), now)
    (claimed,) = one.claim("w", Q, D, 1, LEASE, now)
    assert claimed.id == array_id + 26
    actions, stop = late._chunk(stale, 40, time.time())
    assert stop == 40 and late._transact(actions) is not None  # refused: made moved on
    assert len(late._make(array_id, 40)) == 10  # read again: only those after the 30 made
    task = late.get_job(array_id + 26)
    assert task is not None and (task.status, task.worker_id) == (JobStatus.RUNNING, "w")
    counts = late.count_jobs(JobFilter(array_id=array_id))
    assert (counts[JobStatus.RUNNING], counts[JobStatus.WAITING]) == (1, 300 - 26)


def test_handles_making_one_array_at_once_make_each_task_once(open_store: Any) -> None:
    """Three handles make one array's tasks at once, by a tick's share, a claim's and a
    read far into it, while a worker claims; every task is made once and none is
    written again after its claim."""
    handles = [open_store() for _ in range(4)]
    for handle in handles:
        handle.tasks_per_make = 7
    array_id = _later(handles[0])
    errors: list[BaseException] = []
    claimed: list[int] = []
    start = threading.Barrier(len(handles))

    def run(n: int, handle: DynamoDBStore) -> None:
        try:
            start.wait()
            for k in range(8):
                if n == 0:
                    claimed.extend(j.id for j in handle.claim("w", Q, D, 5, LEASE, time.time()))
                elif n == 1:
                    handle.make_tasks(13)
                elif n == 2:
                    handle.get_job(array_id + 40 * (k + 1))
                else:
                    handle.list_jobs(JobFilter(array_id=array_id), limit=9, after=array_id + 30 * k)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n, h)) for n, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(claimed) == 40 and len(set(claimed)) == 40
    items = task_items(handles[0], array_id)
    assert sorted(int(i["id"]["N"]) for i in items) == list(
        range(array_id + 1, array_id + 1 + len(items))
    )  # the first ones, each once (no gap: made never passes a task that is not there)
    running = {int(i["id"]["N"]) for i in items if i["status"]["S"] == rules.RUNNING}
    assert running == set(claimed)
    counts = handles[1].count_jobs(JobFilter(array_id=array_id))
    assert (counts[JobStatus.RUNNING], counts[JobStatus.WAITING]) == (40, 260)
    assert [t.id for t in handles[2].list_jobs(JobFilter(array_id=array_id), limit=1000)] == list(
        range(array_id + 1, array_id + 301)
    )


class CutOff(BaseException):
    """The end of a Lambda that timed out: no handler of the store's runs after it."""


@pytest.mark.parametrize("written", [0, 1, 2, 3])
def test_a_submit_cut_off_keeps_the_counts_of_tasks_its_array_can_make(
    open_store: Any, written: int
) -> None:
    """Cut off after none, one, two or three of its BatchWriteItem calls (its array's
    marker; then its items: the array's item and its first 24 tasks, 25 more, the 50th):
    once no submit can still be running, the tick takes back what was counted for the
    items never written. The tasks not made yet are the array's: there when its item
    is (they are made), else taken back with it."""
    store = open_store()
    now = time.time()
    left = [written]

    def cut(**_: Any) -> None:
        if left[0] <= 0:
            raise CutOff
        left[0] -= 1

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", cut, "cut-off")
    with pytest.raises(CutOff):
        _later(store, n=300, first=50)
    store.dynamodb.meta.events.unregister("before-call.dynamodb.BatchWriteItem", None, "cut-off")
    assert store.demand() == [(Q, D, 300, 0)]
    store.reconcile_counts(now + SUBMIT_CUT_OFF + 1)
    expected = {0: 0, 1: 0, 2: 24 + 250, 3: 49 + 250}[written]
    assert store.demand() == ([(Q, D, expected, 0)] if expected else [])
    assert store.count_jobs(JobFilter())[JobStatus.WAITING] == expected
    listed = store.list_jobs(JobFilter(queue=Q), limit=1000)
    assert len(listed) == expected
    assert store.reconcile_counts(now + 2 * SUBMIT_CUT_OFF) == 0  # settled once


def test_a_submit_that_fails_at_its_last_write_takes_everything_back(open_store: Any) -> None:
    """A submit whose last write (its last tasks) fails takes back its marker, its items
    and counts, and its array has no task left to make."""
    store = open_store()
    calls = [0]

    def fail_the_last(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == 4:  # the marker, then three calls of items (51 of them)
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_last)
    with pytest.raises(RuntimeError):
        _later(store, n=300, first=50)
    assert store.demand() == []
    assert store.list_jobs(JobFilter(), limit=1000) == []
    assert store.make_tasks() == 0
    assert store.reconcile_counts(time.time() + 2 * SUBMIT_CUT_OFF) == 0


@pytest.mark.parametrize("cut_at", ["BatchWriteItem", "DeleteItem"])
def test_a_submit_cut_off_anywhere_leaves_no_task_to_run_after_a_cancel(
    open_store: Any, cut_at: str
) -> None:
    """Cut off at its second write (of its marker and its items, one call each) or at
    its end (its journal entry): where its array was written, other Lambdas see every
    task of it at once, and a cancel of it sticks (no task is made later to run)."""
    store, other = open_store(), open_store()
    now = time.time()
    calls = [0]

    def cut(**_: Any) -> None:
        calls[0] += 1
        if cut_at == "DeleteItem" or calls[0] == 2:
            raise CutOff

    store.dynamodb.meta.events.register(f"before-call.dynamodb.{cut_at}", cut, "cut-off")
    with pytest.raises(CutOff):
        _later(store, n=37, first=10)
    for array in other.list_jobs(JobFilter(), limit=5, collapse=True):
        assert other.count_jobs(JobFilter(name="race"))[JobStatus.WAITING] == 37
        assert other.cancel(other.resolve([Selector(array.id)]), now).cancelled == 37
    other.reconcile_counts(now + SUBMIT_CUT_OFF + 1)
    while other.make_tasks(1000):
        pass
    assert other.claim("w", Q, D, 100, LEASE, now) == []
    assert other.demand() == []


def lagging(*stores: DynamoDBStore) -> set[int]:
    """DynamoDB's indexes show a write a moment after it, moto's at once: the index
    Queries of these handles miss the tasks any of them wrote (at submit or made later)
    until the set returned is cleared. The handles' own calls are left as they are: only
    the answers AWS gives change."""
    hidden: set[int] = set()

    def seen(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"])
        puts = [a.get("Put", {}) for a in body.get("TransactItems", [])]
        for requests in body.get("RequestItems", {}).values():
            puts += [r.get("PutRequest", {}) for r in requests]
        tasks = [p["Item"] for p in puts if {"id", "array_id"} <= set(p.get("Item", {}))]
        hidden.update(int(task["id"]["N"]) for task in tasks)

    def asked(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["from_index"] = "IndexName" in json.loads(params["body"])

    def behind(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("from_index") and "Items" in parsed:
            parsed["Items"] = [i for i in parsed["Items"] if int(i["id"]["N"]) not in hidden]
            parsed["Count"] = len(parsed["Items"])

    for store in stores:
        events = store.dynamodb.meta.events
        events.register("before-call.dynamodb.TransactWriteItems", seen)
        events.register("before-call.dynamodb.BatchWriteItem", seen)
        events.register("before-call.dynamodb.Query", asked)
        events.register("after-call.dynamodb.Query", behind)
    return hidden


def test_what_a_call_made_counts_in_its_answer_before_the_index_shows_it(
    open_store: Any,
) -> None:
    """A cancel, hold, release, count or page that makes tasks answers with them, though
    no index shows them yet: the tasks a call made are read by id as well."""
    store = open_store()
    now = time.time()
    store.first_tasks, store.tasks_per_make = 10, 8

    def lazy(name: str, **kwargs: Any) -> int:
        tasks = ArrayTasks(indices=list(range(1, 38)))
        (array_id,) = store.submit([job(name, array=tasks, **kwargs)], now)
        return int(array_id)

    hidden = lagging(store)
    first = lazy("first")
    result = store.cancel(store.resolve([Selector(first, (30, 31))]), now)
    assert (result.cancelled, result.more) == (2, False)
    whole = lazy("whole")
    assert store.cancel(store.resolve([Selector(whole)]), now).cancelled == 37
    lazy("named")
    assert store.count_jobs(JobFilter(name="named"))[JobStatus.WAITING] == 37
    held = lazy("held", hold=True)
    assert store.release(JobFilter(arrays=((held, None),)), now).changed == 37
    paged = lazy("paged")
    page = store.list_jobs(JobFilter(array_id=paged), limit=30, after=paged + 5)
    assert [record.id for record in page] == list(range(paged + 6, paged + 36))
    hidden.clear()  # the indexes caught up: the answers were the same as now
    for array_id, status in ((whole, JobStatus.CANCELLED), (held, JobStatus.WAITING)):
        assert store.count_jobs(JobFilter(array_id=array_id))[status] == 37
    assert {store.get_job(first + i).status for i in (30, 31)} == {JobStatus.CANCELLED}


def test_tasks_another_call_made_count_before_the_index_shows_them(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick (another Lambda) makes tasks; a qdel of some, a page past them, a qdel in
    steps and a listing by state right after see every one, though no index shows them
    yet: the tasks made within INDEX_LAG are read by id as well. Once that long has
    passed, the tick forgets the markers of arrays all made."""
    store, tick = open_store(), open_store()
    now = time.time()
    tick.tasks_per_tick = 20
    hidden = lagging(store, tick)
    first = _later(store, n=37, first=10)
    assert tick.make_tasks() == 20  # its tasks 11 to 30, in no index yet
    result = store.cancel(store.resolve([Selector(first, (25, 26))]), now)
    assert (result.cancelled, result.more) == (2, False)
    page = store.list_jobs(JobFilter(array_id=first), limit=10, after=first + 10)
    assert [record.id for record in page] == list(range(first + 11, first + 21))
    stepped = _later(store, n=37, first=10)
    while tick.make_tasks():  # every task made: the arrays have no plan left
        pass
    cancelled, more = 0, True
    while more:
        result = store.cancel(store.resolve([Selector(stepped)]), now, limit=10)
        cancelled, more = cancelled + result.cancelled, result.more
    assert cancelled == 37
    waiting = store.list_jobs(JobFilter(queue=Q, statuses=(JobStatus.WAITING,)), limit=100)
    assert [r.id for r in waiting] == [
        i for i in range(first + 1, first + 38) if i - first not in (26, 27)
    ]
    hidden.clear()  # the indexes caught up: the answers were the same as now
    assert store.count_jobs(JobFilter(array_id=stepped))[JobStatus.CANCELLED] == 37
    monkeypatch.setattr("hyper.store.dynamodb.tasks.INDEX_LAG", 0.0)
    monkeypatch.setattr("hyper.store.dynamodb.tasks.SLOW_WRITE", 0.0)
    assert tick.make_tasks() == 0
    assert tick._marked() == []


def test_an_arrays_tasks_written_at_its_submit_count_before_the_index_shows_them(
    open_store: Any,
) -> None:
    """A qdel right after the submit of an array written whole (as small ones are) or of
    one whose first tasks its submit wrote cancels every task, though no index shows them
    yet."""
    store = open_store()
    now = time.time()
    hidden = lagging(store)
    whole = _later(store, n=150, first=200)
    assert store.cancel(store.resolve([Selector(whole)]), now).cancelled == 150
    first = _later(store, n=300, first=200)
    assert store.cancel(store.resolve([Selector(first)]), now).cancelled == 300
    hidden.clear()
    for array_id in (whole, first):
        assert set(store.count_jobs(JobFilter(array_id=array_id)).values()) <= {0, 150, 300}
        assert store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == 0


def test_a_claim_makes_tasks_of_the_first_arrays_it_takes_from_only(open_store: Any) -> None:
    """Thirty arrays of 50 tasks in one queue (24 written at each submit): a claim of 32
    makes the rest of the first array and takes its first 32, no other array's; an
    array whose request does not fit the claim does not hold back those after it."""
    store = open_store()
    now = time.time()
    big: dict[str, object] = {"request": {"cpus": 4}}
    arrays = [
        store.submit(
            [job(f"a{n}", array=ArrayTasks(indices=range(50)), options=big if n == 0 else {})], now
        )[0]
        for n in range(30)
    ]
    fits = lambda request: not request or request.get("cpus", 1) <= 2  # noqa: E731
    claimed = store.claim("w", Q, D, 32, LEASE, now, fits)
    assert [job.id for job in claimed] == list(range(arrays[1] + 1, arrays[1] + 33))
    made = {a: len(task_items(store, a)) for a in arrays}
    assert made == {a: 50 if n in (0, 1) else 24 for n, a in enumerate(arrays)}


def test_the_tasks_read_by_id_are_those_made_within_a_few_index_lags() -> None:
    """An array whose tasks are made a chunk every 8 s for four minutes, then again after
    a pause of a minute: at every moment the tasks written within INDEX_LAG (+ SLOW_WRITE)
    are among those read by id, and those are never more than two epochs' (an epoch is at
    most two chunks here); a while after the last chunk, none are."""
    fields = {"name": "n", "queue": Q, "definition": D, "retries": 0, "priority": 0}
    info = _Array.of({"id": 0, "size": 10_000, "created": 0.0, **fields})
    state: dict[str, Any] = {"made": 0, "epoch_at": 0.0, "epoch": 0, "fresh": 0}
    made_at: list[tuple[float, int]] = []  # each chunk: when, its first task's position
    times = [1000.0 + 8 * step for step in range(30)] + [1300.0 + 8 * step for step in range(5)]
    for now in times:
        state |= Epoch.of(state).after_chunk(state["made"], now)
        made_at.append((now, state["made"]))
        state["made"] += 100
        for later in (now, now + 0.5, now + 7.9):  # readers between this chunk and the next
            window = _fresh_range(info, state, later)
            lag = INDEX_LAG + SLOW_WRITE
            recent = [first for when, first in made_at if when > later - lag]
            assert all(info.id + 1 + first in window for first in recent)
            assert len(window) <= 4 * 100
    assert not _fresh_range(info, state, times[-1] + 2 * INDEX_LAG + SLOW_WRITE + 1)


def test_tasks_written_slowly_are_read_by_id_from_when_they_were_written(
    open_store: Any,
) -> None:
    """A chunk whose write DynamoDB took long over (throttled and retried), and a slow
    submit: the array's epoch begins when the tasks reached the table, not when they
    were stamped, so they are read by id for INDEX_LAG after that."""
    store = open_store()
    written: list[float] = []

    def slow(**_: Any) -> None:
        time.sleep(SLOW_WRITE + 0.1)

    def done(**_: Any) -> None:
        written.append(time.time())

    for operation in ("BatchWriteItem", "TransactWriteItems"):
        store.dynamodb.meta.events.register(f"before-call.dynamodb.{operation}", slow)
        store.dynamodb.meta.events.register(f"after-call.dynamodb.{operation}", done)
    array_id = _later(store, n=60, first=10)
    state = store._get(store._jobs, {"id": array_id})
    assert state is not None and float(state["epoch_at"]) >= written[-1]
    store.tasks_per_tick = 20
    assert store.make_tasks() == 20
    state = store._get(store._jobs, {"id": array_id})
    assert state is not None and float(state["epoch_at"]) >= written[-1]


def _meanwhile(other: DynamoDBStore, what: str, now: float) -> list[int]:
    """What another Lambda does to an array while its submit fails (the ids it claims)."""
    (array,) = other.list_jobs(JobFilter(), limit=5, collapse=True)
    if what == "made some":
        assert len(other._make(array.id, 150)) == 100
    elif what == "made all":
        assert len(other._make(array.id)) == 250
    elif what == "made all, cancelled one":
        assert len(other._make(array.id)) == 250
        assert other.cancel(other.resolve([Selector(array.id, (200,))]), now).cancelled == 1
    elif what == "cancelled all":
        assert other.cancel(JobFilter(queue=Q), now).cancelled == 299
    elif what == "claimed some":
        return [claimed.id for claimed in other.claim("w1", Q, D, 60, LEASE, now)]
    return []


def _left_of_it(other: DynamoDBStore, array_id: int, claimed: list[int], now: float) -> None:
    """Nothing of a withdrawn submit's array is left: no item, no count, nothing to make
    or claim; the worker that claimed some of its tasks is told they are gone."""
    assert other.make_tasks(1000) == 0
    assert task_items(other, array_id) == []
    assert other.list_jobs(JobFilter(), limit=5) == []
    counts = other.count_jobs(JobFilter(queue=Q))
    assert set(counts.values()) == {0}
    assert other.claim("w2", Q, D, 300, LEASE, now) == []
    if claimed:
        done = other.complete_many("w1", [Ending(i, 1, 0, None) for i in claimed], now)
        assert {type(answer) for answer in done} == {Conflict}
    assert other.count_jobs(JobFilter(queue=Q)) == counts
    assert other.demand() == []


@pytest.mark.parametrize(
    "what", ["made some", "made all", "made all, cancelled one", "cancelled all", "claimed some"]
)
def test_a_failed_submit_takes_back_its_tasks_counted_as_they_are(
    open_store: Any, what: str
) -> None:
    """A submit fails at its last write after another Lambda made some or all of its
    tasks, a qdel cancelled one or all, or a worker claimed 60 of them: its undo takes back
    every task in the state it is in, with its counts, so that none is left."""
    store, other = open_store(), open_store()
    now = time.time()
    writes, claimed = [0], []

    def fail_the_last(**_: Any) -> None:
        writes[0] += 1
        if writes[0] == 4:  # the marker, then three calls of items: the last fails
            claimed.extend(_meanwhile(other, what, now))
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_last)
    with pytest.raises(RuntimeError, match="went away"):
        _later(store, n=300, first=50)
    array_id = 1  # the first id of fresh tables
    assert len(claimed) == (60 if what == "claimed some" else 0)
    _left_of_it(other, array_id, claimed, now)  # at once: the undo ended
    other.reconcile_counts(now + SUBMIT_CUT_OFF + 1)
    _left_of_it(other, array_id, claimed, now)


def test_a_failed_submit_of_jobs_and_arrays_takes_back_those_claimed_meanwhile(
    open_store: Any,
) -> None:
    """A submit of 30 jobs, an array written whole (in another queue) and an array made
    later fails at its last write, after a worker claimed 60 of its jobs and tasks (of
    both kinds): nothing of it is left, nor counted, in either queue."""
    store, other = open_store(), open_store()
    store.first_tasks = 50
    now = time.time()
    writes, claimed = [0], []

    def fail_the_last(**_: Any) -> None:
        writes[0] += 1
        if writes[0] == 6:  # the marker, then five calls of items: the last fails
            claimed.extend(j.id for j in other.claim("w1", Q, D, 60, LEASE, now))
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_last)
    jobs = [job(f"single-{n}") for n in range(30)]
    jobs += [job("whole", queue="other", array=ArrayTasks(indices=range(20))),
             job("later", array=ArrayTasks(indices=range(300)))]  # fmt: skip
    with pytest.raises(RuntimeError, match="went away"):
        store.submit(jobs, now)
    assert len(claimed) == 60 and min(claimed) < 30 < max(claimed)  # jobs and tasks
    other.reconcile_counts(now + SUBMIT_CUT_OFF + 1)
    for handle in (store, other):
        assert handle.list_jobs(JobFilter(), limit=500) == []
        assert set(handle.count_jobs(JobFilter()).values()) == {0}
    done = other.complete_many("w1", [Ending(i, 1, 0, None) for i in claimed], now)
    assert {type(answer) for answer in done} == {Conflict}
    assert other.demand() == []


@pytest.mark.parametrize("what", ["made some", "made all", "cancelled all", "claimed some"])
def test_an_undo_cut_short_is_finished_by_the_tick(open_store: Any, what: str) -> None:
    """As above, with the undo cut short after it took back one chunk of tasks: the
    submit was withdrawn, so the next tick's settle finishes its undo (it keeps nothing
    of it, and makes none of its tasks again, as it would for a submit cut off)."""
    store, other = open_store(), open_store()
    now = time.time()
    writes: list[str] = []  # the submitting Lambda's calls that write
    claimed: list[int] = []

    def write(event_name: str, **_: Any) -> None:
        writes.append(event_name.rsplit(".", 1)[1])
        if len(writes) == 6:  # its ids, counts, marker, three calls of items: the last fails
            claimed.extend(_meanwhile(other, what, now))
            raise RuntimeError("DynamoDB went away")
        if len(writes) == 10:  # its undo: withdrawn, its marker, a chunk taken back, cut
            raise RuntimeError("the undo is cut short")

    store.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", write)
    for operation in ("BatchWriteItem", "TransactWriteItems"):
        store.dynamodb.meta.events.register(f"before-call.dynamodb.{operation}", write)
    with pytest.raises(RuntimeError, match="went away"):
        _later(store, n=300, first=50)
    undo = ["UpdateItem", "BatchWriteItem", "TransactWriteItems", "TransactWriteItems"]
    assert writes[6:] == undo  # withdrawn, its marker, a chunk taken back, a chunk cut
    array_id = 1  # the first id of fresh tables
    left = task_items(other, array_id)
    assert 0 < len(left) < 299  # cut short: some of its tasks are still there
    assert other.make_tasks(1000) == 0  # none is made meanwhile
    other.reconcile_counts(now)  # the next tick: a withdrawn entry waits for no cut-off
    _left_of_it(other, array_id, claimed, now)


def test_an_undo_of_many_chunks_ends_though_no_refusal_is_allowed(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An undo takes back the tasks made since its submit a chunk at a time: only the
    chunks refused (made or changed meanwhile) count against its tries, so an undo of
    any size ends (here: three chunks, with no refusal allowed)."""
    store, other = open_store(), open_store()
    monkeypatch.setattr("hyper.store.dynamodb.journal.TRIES", 0)
    writes, arrays = [0], []

    def fail_the_last(**_: Any) -> None:
        writes[0] += 1
        if writes[0] == 4:  # the marker, then three calls of items: the last fails
            arrays.extend(other.list_jobs(JobFilter(), limit=5, collapse=True))
            assert len(other._make(arrays[0].id)) == 250  # all the others
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_last)
    with pytest.raises(RuntimeError, match="went away"):
        _later(store, n=300, first=50)
    assert store.list_jobs(JobFilter(), limit=1000) == []
    assert task_items(other, arrays[0].id) == []
    assert other.demand() == []


def test_a_failed_sweep_whose_jobs_have_counters_of_their_own_is_taken_back(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """125 jobs each asking a memory of their own (a counter each), the 100 written
    cancelled by a qdel while the submit fails at its last call: a chunk's counters
    outnumber its deletes, and the undo still takes back every job, a few at a time."""
    store, other = open_store(), open_store()
    now = time.time()
    rounds = []
    taken_back = Journal._delete_last

    def counted(self: Journal, ids: Any, was: Any) -> int:
        rounds.append(taken_back(self, ids, was))
        assert len(rounds) < 50, "the undo goes round without deleting"
        return rounds[-1]

    monkeypatch.setattr(Journal, "_delete_last", counted)
    calls = [0]

    def fail_the_last(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == 5:  # four calls of items (100 jobs) were written
            assert other.cancel(JobFilter(queue=Q), now).cancelled == 100
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_last)
    sweep = [job(f"m{n}", options={"request": {"mem_mib": 100 + n}}) for n in range(125)]
    with pytest.raises(RuntimeError, match="went away"):
        store.submit(sweep, now)
    assert 0 not in rounds and sum(rounds) >= 100
    assert other.list_jobs(JobFilter(), limit=200) == []
    assert set(other.count_jobs(JobFilter()).values()) == {0}
    assert other.demand() == []


def test_tasks_written_without_their_arrays_item_are_taken_back(open_store: Any) -> None:
    """A BatchWriteItem call that leaves the array's item unprocessed (its tasks in the
    same call written), whose retry fails: the undo takes back those tasks too, and the
    tick has nothing left to settle."""
    store, other = open_store(), open_store()
    now = time.time()
    calls: list[str] = []
    held: list[Any] = []

    def strip(params: dict[str, Any], **_: Any) -> None:
        calls.append("write")
        puts = params["RequestItems"].get(f"{PREFIX}-jobs")
        if puts and len(calls) == 2:  # its first call of items: the array's item held back
            held.extend(p for p in puts if "size" in p["PutRequest"]["Item"])  # the array's
            params["RequestItems"][f"{PREFIX}-jobs"] = [p for p in puts if p not in held]
        elif len(calls) == 3:
            raise RuntimeError("DynamoDB went away")

    def unprocessed(parsed: dict[str, Any], **_: Any) -> None:
        if len(calls) == 2 and held:
            parsed["UnprocessedItems"] = {f"{PREFIX}-jobs": held}

    events = store.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb.BatchWriteItem", strip)
    events.register("after-call.dynamodb.BatchWriteItem", unprocessed)
    with pytest.raises(RuntimeError, match="went away"):
        _later(store, n=300, first=24)
    assert held and task_items(other, 1) == []
    assert other.reconcile_counts(now) == 0
    assert set(other.count_jobs(JobFilter()).values()) == {0}
    assert other.claim("w", Q, D, 5, LEASE, now) == []
    assert other.demand() == []


def test_a_failed_submit_too_varied_for_its_journals_runs_takes_back_its_claimed_jobs(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs alternating between two definitions, too many runs for their journal entry
    to keep (here 100 jobs, and room for a few runs: 4,000 at the real size), 10 claimed
    while the submit fails at its last call: each job says how it was counted, so the
    undo moves the claimed ones' counters back too."""
    monkeypatch.setattr("hyper.store.dynamodb.items.JOURNAL_RUNS_CHARS", 500)
    entries: list[Any] = []
    made = submit_module._journal_entry
    monkeypatch.setattr(
        submit_module,
        "_journal_entry",
        lambda *a, **k: entries.append(made(*a, **k)) or entries[-1],
    )
    store, other = open_store(), open_store()
    now = time.time()
    jobs = [job(f"j{n}", definition=D if n % 2 == 0 else "d2") for n in range(100)]
    calls, claimed = [0], []

    def fail_the_last(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == 100 // 25:
            claimed.extend(j.id for j in other.claim("w1", Q, D, 10, LEASE, now))
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_last)
    with pytest.raises(RuntimeError, match="went away"):
        store.submit(jobs, now)
    assert len(claimed) == 10 and entries[0]["runs"] is None
    for when in (now, now + SUBMIT_CUT_OFF + 1):
        other.reconcile_counts(when)
        assert set(other.count_jobs(JobFilter()).values()) == {0}
        assert other.demand() == []


def test_what_depends_on_a_withdrawn_job_can_never_be_met(open_store: Any) -> None:
    """Another user's job depends on one of a failing submit, seen in the queue before
    the submit failed: once that job is withdrawn, the dependent ends as one whose
    dependency can never be met (it was Blocked for good), and so does one that linked
    to it after it was gone."""
    store, other = open_store(), open_store()
    now = time.time()
    calls, seen = [0], {}

    def fail_the_second(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:  # its first call of items was written, the second fails
            target = other.list_jobs(JobFilter(queue=Q), limit=1)[0].id
            after = Dependency("afterok", target)
            (seen["dependent"],) = other.submit([job("dep", queue="q2", depends=(after,))], now)
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_second)
    with pytest.raises(RuntimeError, match="went away"):
        store.submit([job(f"s{n}") for n in range(40)], now)
    dependent = other.get_job(seen["dependent"])
    assert dependent is not None and dependent.status is JobStatus.FAILED
    assert "can never be met" in (dependent.reason or "")
    (target,) = other.submit([job("t")], now)
    linked = other._link

    def gone_first(links: Any, at: float) -> None:  # judged while there, linked once gone
        other.dynamodb.delete_item(TableName=f"{PREFIX}-jobs", Key={"id": {"N": str(target)}})
        linked(links, at)

    other._link = gone_first  # type: ignore[method-assign]
    (late,) = other.submit([job("late", depends=(Dependency("afterok", target),))], now)
    assert other.get_job(late).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_a_submit_that_cannot_be_settled_keeps_neither_the_others_nor_the_tick_waiting(
    open_store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two submits cut off; settling the first fails (here: always): the second is
    settled all the same, and the tick goes on (its scaling comes after), the first
    named in a warning and taken up again by a later tick."""
    store = open_store()
    now = time.time()
    events = store.dynamodb.meta.events
    events.register("before-call.dynamodb.BatchWriteItem", _cut_off, "cut-off")
    for name in ("first", "second"):  # each cut off as it writes its job
        with pytest.raises(CutOff):
            store.submit([job(name)], now)
    settle = Journal._settle_submit

    def failing_first(self: Journal, entry: Any) -> None:
        if int(entry["first"]) == 1:
            raise RuntimeError("DynamoDB went away")
        settle(self, entry)

    monkeypatch.setattr(Journal, "_settle_submit", failing_first)
    assert store.reconcile_counts(now + SUBMIT_CUT_OFF + 1) == 1
    assert "the submit from job 1: not settled yet: DynamoDB went away" in caplog.text
    monkeypatch.setattr(Journal, "_settle_submit", settle)
    assert store.reconcile_counts(now + SUBMIT_CUT_OFF + 1) == 1
    assert store.demand() == []


def _cut_off(**_: Any) -> None:
    raise CutOff


@pytest.mark.parametrize("race", ["cut after its delete", "linked before its delete"])
def test_what_depends_on_a_withdrawn_job_is_settled_however_the_withdrawal_goes(
    open_store: Any, race: str
) -> None:
    """A dependent of a job of a failing submit ends "never met" when the undo is cut
    right after the job's delete (the next tick finds the job gone, and must not need
    to), and when its link lands between the undo's read of the job and its delete."""
    store, other = open_store(), open_store()
    now = time.time()
    calls, seen = [0], {}

    def link(target: int) -> None:
        after = (Dependency("afterok", target),)
        (seen["dependent"],) = other.submit([job("dep", queue="q2", depends=after)], now)

    def step(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[1]
        if operation == "BatchWriteItem" and "undo" not in seen:
            calls[0] += 1
            if calls[0] == 2:  # its first call of items written, the second fails
                seen["target"] = other.list_jobs(JobFilter(queue=Q), limit=1)[0].id
                if race == "cut after its delete":
                    link(seen["target"])
                seen["undo"] = True
                raise RuntimeError("DynamoDB went away")
        elif operation == "TransactWriteItems" and seen.get("undo"):
            if race == "linked before its delete" and "dependent" not in seen:
                link(seen["target"])  # read already, not deleted yet
            elif race == "cut after its delete" and seen.pop("undo"):
                seen["cut"] = True  # this delete goes; the undo's next call is cut
        elif seen.get("cut") and operation != "TransactWriteItems":
            raise RuntimeError("the undo is cut short")

    store.dynamodb.meta.events.register("before-call.dynamodb.*", step)
    with pytest.raises(RuntimeError):
        store.submit([job(f"s{n}") for n in range(40)], now)
    other.reconcile_counts(now)
    assert other.get_job(seen["target"]) is None
    dependent = other.get_job(seen["dependent"])
    assert dependent is not None and dependent.status is JobStatus.FAILED
    assert other.count_jobs(JobFilter(queue="q2"))[JobStatus.BLOCKED] == 0
