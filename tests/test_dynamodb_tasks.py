"""The DynamoDB store's tasks made after their array's submit (test_store.py checks every
answer on both stores with small arrays): what a big array's submit writes, several
handles (Lambdas) making one array's tasks at once, and a submit cut off part-way. All
under moto's in-process mock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import moto
import pytest

from hyper.jobs import JobStatus
from hyper.jobspec import Selector
from hyper.store import rules
from hyper.store.base import ArrayTasks, JobFilter
from hyper.store.dynamodb import DynamoDBStore
from hyper.store.dynamodb.items import SUBMIT_CUT_OFF
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
    assert len(task_items(store, array_id)) == rules.FIRST_TASKS
    assert store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == n
    assert store.demand() == [(Q, D, n, 0)]
    assert store.make_tasks() == rules.TASKS_PER_TICK  # a tick's share, no more
    made = rules.FIRST_TASKS + rules.TASKS_PER_TICK
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
    assert one._make(array_id, 30) == 10
    one.cancel(JobFilter(arrays=((array_id, tuple(range(25))),)), now)
    (claimed,) = one.claim("w", Q, D, 1, LEASE, now)
    assert claimed.id == array_id + 26
    actions, stop = late._chunk(stale, 40)
    assert stop == 40 and late._transact(actions) is not None  # refused: made moved on
    assert late._make(array_id, 40) == 10  # read again: only those after the 30 made
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


@pytest.mark.parametrize("written", [0, 1, 3])
def test_a_submit_cut_off_keeps_the_counts_of_tasks_its_array_can_make(
    open_store: Any, written: int
) -> None:
    """Cut off after none, one or all three of its BatchWriteItem calls of items (the
    array's item and its first 24 tasks, 25 more, the 50th), before its marker: once no
    submit can still be running, the tick takes back what was counted for the items
    never written. The tasks not made yet are the array's: there when its item is (the
    tick then marks it, and they are made), else taken back with it."""
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
    expected = {0: 0, 1: 24 + 250, 3: 300}[written]
    assert store.demand() == ([(Q, D, expected, 0)] if expected else [])
    assert store.count_jobs(JobFilter())[JobStatus.WAITING] == expected
    listed = store.list_jobs(JobFilter(queue=Q), limit=1000)
    assert len(listed) == expected
    assert store.reconcile_counts(now + 2 * SUBMIT_CUT_OFF) == 0  # settled once


def test_a_submit_that_fails_at_its_marker_takes_everything_back(open_store: Any) -> None:
    """A submit whose last write (its array's marker) fails takes back its items and
    counts, and its array has no task left to make."""
    store = open_store()
    calls = [0]

    def fail_the_marker(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == 4:  # three calls of items (51 of them), then the marker
            raise RuntimeError("DynamoDB went away")

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", fail_the_marker)
    with pytest.raises(RuntimeError):
        _later(store, n=300, first=50)
    assert store.demand() == []
    assert store.list_jobs(JobFilter(), limit=1000) == []
    assert store.make_tasks() == 0
    assert store.reconcile_counts(time.time() + 2 * SUBMIT_CUT_OFF) == 0
