"""What is particular to the DynamoDB store (the contract suite in test_store.py runs it
too): scripts in S3, claim races, AWS calls per job, and the worker-side calls the
contract suite does not cover, each compared with the SQLite store. All under moto's
in-process mock; run with ``-s`` to see the call counts printed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import moto
import pytest

from hyper.deployer import Deployer
from hyper.errors import Conflict, StoreUnavailable, UsageError
from hyper.jobs import JobStatus, LogKind
from hyper.jobspec import Dependency
from hyper.models import ResourceKind, Spec
from hyper.providers.local import LocalProvider
from hyper.store.base import ArrayTasks, Ending, JobFilter, NodeRecord, Store, WorkerRecord
from hyper.store.dynamodb import DynamoDBStore
from hyper.store.dynamodb.items import SCRIPT_INLINE_BYTES
from hyper.store.dynamodb_tables import create_tables, table_definitions
from hyper.store.sqlite import SQLiteStore
from tests.conftest import moto_backs_up_a_table_once, moto_one_request_at_a_time
from tests.helpers.store import job

REGION = "us-east-1"
PREFIX = "test"
BUCKET = "test-scripts"
Q, D, LEASE = "q1", "d1", 30.0


@pytest.fixture
def aws(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh tables and a script bucket under moto."""
    moto_one_request_at_a_time(monkeypatch)
    moto_backs_up_a_table_once(monkeypatch)
    with moto.mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), PREFIX)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def store(aws: None) -> Iterator[DynamoDBStore]:
    handle = DynamoDBStore(PREFIX, REGION, BUCKET)
    yield handle
    handle.close()


def counting(store: DynamoDBStore) -> Counter[str]:
    """AWS calls the store makes from now on, by operation (a botocore event hook)."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    store.dynamodb.meta.events.register("before-call.dynamodb", count)
    return calls


def show(title: str, calls: Counter[str]) -> None:
    listed = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
    print(f"\n{title}: {sum(calls.values())} calls ({listed})")


# scripts ------------------------------------------------------------------------------------


def test_scripts_above_the_item_size_round_trip_through_s3(store: DynamoDBStore) -> None:
    now = time.time()
    big = "#!/bin/bash\n" + "echo 'a line of a long generated script'\n" * 12_000
    assert SCRIPT_INLINE_BYTES < len(big.encode()) < 4 * 1024 * 1024
    small = "echo small\n"
    single, plain = store.submit([job("big", script=big), job("small", script=small)], now)
    (array_id,) = store.submit([job("arr", script=big + "@X@\n", array=_tasks(2))], now)

    s3 = boto3.client("s3", region_name=REGION)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert keys == {f"scripts/{single}", f"scripts/{array_id}"}  # the small one stays inline
    stored = s3.get_object(Bucket=BUCKET, Key=f"scripts/{single}")["Body"].read().decode()
    assert stored == big

    for handle in (store, DynamoDBStore(PREFIX, REGION, BUCKET)):  # a fresh one reads S3
        found = handle.get_job(single, with_script=True)
        assert found is not None and found.script == big
        task = handle.get_job(array_id + 2, with_script=True)
        assert task is not None and task.script == big + "two\n"
        assert handle.get_job(single) is not None
        assert handle.get_job(single).script is None  # type: ignore[union-attr]
    claimed = {c.id: c.script for c in store.claim("w", Q, D, 10, LEASE, now)}
    assert claimed == {single: big, plain: small, array_id + 1: big + "one\n",
                       array_id + 2: big + "two\n"}  # fmt: skip


def test_a_big_script_without_a_bucket_is_refused_and_nothing_is_written(aws: None) -> None:
    store = DynamoDBStore(PREFIX, REGION)  # no bucket
    big = "x" * (SCRIPT_INLINE_BYTES + 1)
    with pytest.raises(UsageError, match="S3 bucket"):
        store.submit([job("fine"), job("big", script=big)], time.time())
    assert store.list_jobs(JobFilter(), limit=10) == []
    assert sum(store.count_jobs(JobFilter()).values()) == 0
    (first,) = store.submit([job("fine")], time.time())
    assert first == 1  # the refused submit took no ids


# files and workflows --------------------------------------------------------------------------


def test_files_are_objects_under_files_in_the_hosts_bucket(store: DynamoDBStore) -> None:
    store.put_file("pkg/a.tar.gz", b"\x1f\x8b bytes", time.time())
    s3 = boto3.client("s3", region_name=REGION)
    body = s3.get_object(Bucket=BUCKET, Key="files/pkg/a.tar.gz")["Body"].read()
    assert body == b"\x1f\x8b bytes"
    # more keys than one DeleteObjects call takes, and a neighbour that stays
    for n in range(1001):
        s3.put_object(Bucket=BUCKET, Key=f"files/pkg/many/{n}", Body=b"")
    store.put_file("pkg2", b"stays", time.time())
    assert store.delete_files("pkg") == 1002
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert left == ["files/pkg2"]


def test_files_without_a_bucket_are_refused_with_one_line(aws: None) -> None:
    store = DynamoDBStore(PREFIX, REGION)  # no bucket
    with pytest.raises(StoreUnavailable, match="no S3 bucket"):
        store.put_file("a", b"x", time.time())


def test_the_tick_reads_only_unfinished_workflows(store: DynamoDBStore) -> None:
    now = time.time()
    records = [store.add_workflow({"n": n}, now) for n in range(30)]
    for record in records[:-2]:
        store.update_workflow(record, record.data, finished=True, now=now)
    calls = counting(store)
    assert [w.data["n"] for w in store.list_workflows(unfinished=True)] == [29, 28]
    assert calls == {"Query": 1, "GetItem": 2}  # the open markers, then their two records


def _tasks(n: int) -> ArrayTasks:
    words = ["one", "two", "three", "four"]
    return ArrayTasks(
        indices=list(range(1, n + 1)),
        params=[{"replacements": {"@X@": words[i % 4]}} for i in range(n)],
    )


# claim races --------------------------------------------------------------------------------


def _race(handles: list[DynamoDBStore], limit: int) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(handles))

    def worker(name: str, handle: DynamoDBStore) -> None:
        try:
            start.wait()
            mine: list[int] = []
            while batch := handle.claim(name, Q, D, limit, LEASE, time.time()):
                mine += [j.id for j in batch]
            got[name] = mine
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=(f"w{n}", handle)) for n, handle in enumerate(handles)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return got


def test_one_tick_at_a_time_across_processes(store: DynamoDBStore) -> None:
    """Lambda may run ticks in several containers at once: one holds the tick's lease
    until it releases it or the lease runs out."""
    other = DynamoDBStore(PREFIX, REGION, BUCKET)  # another container
    try:
        assert store.claim_tick("a", 1000.0, 300)
        assert not other.claim_tick("b", 1001.0, 300)
        assert store.claim_tick("a", 1002.0, 300)  # its own again
        store.release_tick("b")  # not b's to release
        assert not other.claim_tick("b", 1003.0, 300)
        store.release_tick("a")
        assert other.claim_tick("b", 1004.0, 300)
        assert not store.claim_tick("a", 1304.0, 300)  # b's lasts until 1304
        assert store.claim_tick("a", 1305.0, 300)  # a crashed tick frees it in time
    finally:
        other.close()


class SlowClusters(LocalProvider):
    """Clusters made only once `go` is set, counted (the rest as on a local host)."""

    def __init__(self) -> None:
        self.go, self.started, self.made = threading.Event(), threading.Event(), 0

    def deploy(self, kind: ResourceKind, spec: Spec, log: Callable[[str], None]) -> Spec:
        self.made += 1
        self.started.set()
        assert self.go.wait(timeout=60)
        return super().deploy(kind, spec, log)


def test_two_runs_of_one_change_at_once_make_it_once(store: DynamoDBStore) -> None:
    """Lambda may run a deploy event twice at once (a retry, a duplicate delivery): the
    second run finds the change leased and does nothing; the lease goes with the first."""
    store.put_resource("clusters", "c1", {"name": "c1"}, "CREATING", ["creating"], time.time())
    provider = SlowClusters()
    containers = [DynamoDBStore(PREFIX, REGION, BUCKET) for _ in range(2)]
    deployers = [Deployer(handle, provider) for handle in containers]
    for deployer in deployers:
        deployer.hand_off(lambda kind, name: None, stale_after=960)
    results: list[str | None] = []
    try:
        first = threading.Thread(
            target=lambda: results.append(asyncio.run(deployers[0].run(ResourceKind.CLUSTER, "c1")))
        )
        first.start()
        assert provider.started.wait(timeout=60)
        assert asyncio.run(deployers[1].run(ResourceKind.CLUSTER, "c1")) is None  # leased
        provider.go.set()
        first.join(timeout=60)
        assert results == ["ACTIVE"] and provider.made == 1
        assert store.claim_lease("deploy clusters/c1", "next", time.time(), 960)  # let go
    finally:
        provider.go.set()
        for handle in containers:
            handle.close()


def test_two_workers_claiming_one_queue_at_once_get_disjoint_jobs(store: DynamoDBStore) -> None:
    ids = store.submit([job(f"j{n}") for n in range(40)], time.time())
    handles = [DynamoDBStore(PREFIX, REGION, BUCKET) for _ in range(2)]
    # both workers' first claims wait for each other: they read the same first candidates,
    # so at least one claim is lost to the other worker and must be handled
    together = threading.Barrier(2)
    calls: Counter[str] = Counter()
    for handle in handles:
        first = threading.Event()

        def meet(model: Any, first: threading.Event = first, **_: Any) -> None:
            calls[model.name] += 1
            if model.name == "TransactWriteItems" and not first.is_set():
                first.set()
                together.wait(timeout=10)

        handle.dynamodb.meta.events.register("before-call.dynamodb", meet)
    got = _race(handles, limit=4)
    first_worker, second_worker = got["w0"], got["w1"]
    assert not set(first_worker) & set(second_worker)
    assert sorted(first_worker + second_worker) == ids
    assert calls["TransactWriteItems"] > len(ids)  # claims were lost, and nothing broke
    for name, mine in got.items():
        for job_id in mine:
            record = store.get_job(job_id)
            assert record is not None and (record.worker_id, record.attempt) == (name, 1)
    # the counters followed every claim, won or lost
    counts = store.count_jobs(JobFilter())
    assert (counts[JobStatus.RUNNING], counts[JobStatus.WAITING]) == (40, 0)
    assert store.demand() == [(Q, D, 0, 40)]


def test_racing_claims_never_pass_an_array_cap(store: DynamoDBStore) -> None:
    (array_id,) = store.submit([job(array=ArrayTasks(indices=list(range(20)), cap=3))], time.time())
    got = _race([DynamoDBStore(PREFIX, REGION, BUCKET) for _ in range(3)], limit=2)
    taken = [i for mine in got.values() for i in mine]
    assert len(taken) == len(set(taken)) == 3
    record = store.get_array(array_id)
    assert record is not None and record.counts["Running"] == 3


# AWS calls per job --------------------------------------------------------------------------


def test_api_calls_per_1000_submitted_jobs(
    store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor: 1,000 items at 25 a BatchWriteItem call is 40 calls; besides them one
    UpdateItem reserves the ids, one transaction adds to the counters with the submit's
    journal entry, and one DeleteItem removes the entry once the items are written. An
    array of any size takes one call of items and one of its marker."""
    # on a loaded machine a submit may outlast SLOW_WRITE, and then stamps its arrays
    # again once done (one UpdateItem each, tasks.Tasks._restamp): not counted here
    monkeypatch.setattr("hyper.store.dynamodb.tasks.SLOW_WRITE", 3600.0)
    now = time.time()
    calls = counting(store)
    ids = store.submit([job(f"j{n}") for n in range(1000)], now)
    show("submit 1,000 jobs", calls)
    assert len(ids) == 1000
    assert calls == {
        "BatchWriteItem": 40, "UpdateItem": 1, "TransactWriteItems": 1, "DeleteItem": 1
    }  # fmt: skip

    # an array of any size: its marker (tasks to make), then its item and its first 24
    # tasks in one call; its counters, of the queue and of the array, in one transaction
    for size in (1000, 100_000):
        calls.clear()
        store.submit([job("arr", array=ArrayTasks(indices=range(size)))], now)
        show(f"submit an array of {size:,} tasks", calls)
        assert calls == {
            "BatchWriteItem": 2, "UpdateItem": 1, "TransactWriteItems": 1, "DeleteItem": 1
        }  # fmt: skip


class CutOff(BaseException):
    """The end of a Lambda that timed out: no handler of the store's runs after it."""


def _cut_at_write(store: DynamoDBStore, calls_let_through: int) -> None:
    """Cut the store off at its BatchWriteItem call after `calls_let_through` of them."""
    left = [calls_let_through]

    def cut(**_: Any) -> None:
        if left[0] <= 0:
            raise CutOff
        left[0] -= 1

    store.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", cut, "cut-off")


@pytest.mark.parametrize("written", [0, 1])
def test_a_submit_cut_off_after_its_counters_is_taken_back_by_the_tick(
    store: DynamoDBStore, written: int
) -> None:
    """A submit cut off after it counted its jobs, before it wrote all of them (none, or
    the first 25 of 63), leaves counters that ask for workers for jobs that do not
    exist. Once no submit can still be running, the scheduler's tick takes back what was
    counted for the jobs never written, and nothing else: counts, demand and the
    listing agree again."""
    from hyper.scheduler import Scheduler
    from hyper.store.dynamodb.items import SUBMIT_CUT_OFF

    now = time.time()
    store.first_tasks = 100  # its array is written whole (made later: test_dynamodb_tasks.py)
    (kept,) = store.submit([job("kept")], now)
    _cut_at_write(store, written)
    two, one = {"request": {"cpus": 2}}, {"request": {"cpus": 1}}
    with pytest.raises(CutOff):
        store.submit([job("a", options=two), job("b"),
                      job("arr", array=_tasks(60), options=one)], now)  # fmt: skip
    store.dynamodb.meta.events.unregister("before-call.dynamodb.BatchWriteItem", None, "cut-off")
    assert store.demand() == [(Q, D, 63, 0)]  # 1 + 2 + 60 counted
    cpus = lambda n: (("cpus", n),)  # noqa: E731
    assert store.requests(Q, D, 1000) == {cpus(2): 1, cpus(1): 60, (): 2}

    scheduler = Scheduler(store, {}, silence_seconds=60)
    scheduler.tick(now + 60)  # the cut-off Lambda could still be writing: left alone
    assert store.demand() == [(Q, D, 63, 0)]
    scheduler.tick(now + SUBMIT_CUT_OFF + 1)
    listed = store.list_jobs(JobFilter(), limit=1000)
    waiting = [j for j in listed if j.status is JobStatus.WAITING]
    # written: the first batch of 25 items (2 jobs, the array and 22 of its tasks)
    expected = 1 + (2 + 22 if written else 0)
    assert len(waiting) == expected and kept in {j.id for j in waiting}
    assert store.demand() == [(Q, D, expected, 0)]
    assert store.count_jobs(JobFilter())[JobStatus.WAITING] == expected
    # and by request: what the scheduler packs is what was written
    assert store.requests(Q, D, 1000) == ({cpus(2): 1, cpus(1): 22, (): 2} if written else {(): 1})
    assert store.reconcile_counts(now + 2 * SUBMIT_CUT_OFF) == 0  # settled once
    assert store.demand() == [(Q, D, expected, 0)]


def test_api_calls_per_job_run(store: DynamoDBStore) -> None:
    """A job's life after its submit: claimed in batches of 10, ended in batches of 10
    (what a worker of short jobs does), then counted and listed as qstat would."""
    now = time.time()
    ids = store.submit([job(f"j{n}") for n in range(50)], now)
    store.add_worker(WorkerRecord("w", Q, D, "local", "local", 1, "ACTIVE", now, now))
    calls = counting(store)
    for _ in range(5):
        claimed = store.claim("w", Q, D, 10, LEASE, now)
        endings = [Ending(c.id, c.attempt, 0, None, [(LogKind.STDOUT, "out\n")]) for c in claimed]
        assert store.complete_many("w", endings, now) == [JobStatus.SUCCESSFUL] * 10
    show("claim and end 50 jobs (10 a call)", calls)
    # per job: a transaction to claim it, a read and a transaction to end it; per call of
    # 10: a Query of the arrays with tasks to make (none here), one of the claim index
    # and a touch of the worker
    assert calls == {"Query": 10, "TransactWriteItems": 100, "GetItem": 50, "UpdateItem": 10}

    calls.clear()
    assert store.count_jobs(JobFilter())[JobStatus.SUCCESSFUL] == 50
    page = store.list_jobs(JobFilter(queue=Q), limit=20, after=ids[10])
    assert [j.id for j in page] == ids[11:31]
    assert store.demand() == []
    show("count, list a page of 20, demand", calls)
    assert "Scan" not in calls
    assert calls["Query"] <= 6  # counters (3) and one page of the queue's Successful jobs


def test_requests_are_counted_on_submit_and_end_never_on_a_claim_or_heartbeat(
    store: DynamoDBStore,
) -> None:
    """The counters of jobs by request move when a job starts or stops waiting or running
    (a submit, an end), not when it is claimed, retried or heartbeats: no partition more
    than the job counters already have, none written per heartbeat."""
    now = time.time()
    written: list[tuple[str, int]] = []  # (scope, n) of each counter update

    def note(params: dict[str, Any], **_: Any) -> None:
        updates = [a["Update"] for a in params.get("TransactItems", []) if "Update" in a]
        updates += [params] if "UpdateExpression" in params else []
        for update in updates:
            if update["TableName"].endswith("-counts"):
                n = int(next(v["N"] for k, v in update["ExpressionAttributeValues"].items()))
                written.append((update["Key"]["scope"]["S"], n))

    store.dynamodb.meta.events.register("provide-client-params.dynamodb", note)
    one = {"request": {"cpus": 1}}
    store.submit([job(f"j{n}", options=one, retries=1) for n in range(10)], now)
    assert ("requests", 10) in written
    store.add_worker(WorkerRecord("w", Q, D, "local", "local", 1, "ACTIVE", now, now))
    written.clear()
    claimed = store.claim("w", Q, D, 10, LEASE, now)
    for c in claimed:
        store.heartbeat("w", c.id, c.attempt, LEASE, now + 1)
    store.complete("w", claimed[0].id, 1, 1, None, now)  # retried: Waiting again
    assert [scope for scope, _ in written if scope == "requests"] == []
    store.complete_many("w", [Ending(c.id, 1, 0, None, []) for c in claimed[1:]], now)
    assert sum(n for scope, n in written if scope == "requests") == -9
    assert store.requests(Q, D, 100) == {(("cpus", 1),): 1}


# the rest of the protocol, compared with SQLite -----------------------------------------------


@pytest.fixture
def both(store: DynamoDBStore, tmp_path: Path) -> Iterator[list[Store]]:
    sqlite = SQLiteStore(tmp_path / "parity.db")
    yield [sqlite, store]
    sqlite.close()


def same(both: list[Store], scenario: Callable[[Store], Any]) -> Any:
    """Run a scenario on each store; its results must be equal."""
    results = [scenario(handle) for handle in both]
    assert results[0] == results[1]
    return results[0]


def _log(store: Store, job_id: int) -> list[tuple[int, str, str]]:
    return [(e.attempt, e.kind.value, e.text) for e in store.read_log(job_id, [])]


def test_return_claims_abandon_and_process_groups_as_in_sqlite(both: list[Store]) -> None:
    now = 1_700_000_000.0

    def scenario(store: Store) -> Any:
        a, b, c = store.submit([job("a", retries=1), job("b"), job("c")], now)
        claimed = [j.id for j in store.claim("w", Q, D, 3, LEASE, now)]
        assert store.heartbeat("w", a, 1, LEASE, now, process_group=4242) is False
        assert store.heartbeat("w", b, 1, LEASE, now, process_group=4343) is False
        returned = store.return_claims("w", [(c, 1), (a, 2), (b, 7)], now + 1)
        groups = store.process_groups("w")
        store.complete("w", b, 1, 0, None, now + 2)  # ended: its group is no orphan
        after_end = store.process_groups("w")
        lost = store.abandon("w", now + 3)  # a is lost (retried); its group stays listed
        return (
            claimed, returned, groups, after_end, lost, store.process_groups("w"),
            [(j.id, j.status.value, j.attempt, j.worker_id, j.retries_left, j.reason)
             for j in store.list_jobs(JobFilter(), limit=10)],  # type: ignore[union-attr]
            [_log(store, i) for i in (a, b, c)],
            store.count_jobs(JobFilter()), store.demand(),
        )  # fmt: skip

    result = same(both, scenario)
    assert result[1] == 1 and result[4] == [1]


def test_complete_many_with_output_and_late_reports_as_in_sqlite(both: list[Store]) -> None:
    now = 1_700_000_000.0

    def scenario(store: Store) -> Any:
        a, b = store.submit([job("a"), job("b", retries=1)], now)
        store.claim("w", Q, D, 2, LEASE, now)
        many = [(LogKind.STDOUT, f"line {n}\n") for n in range(120)]  # more than a transaction
        results = store.complete_many(
            "w",
            [Ending(a, 1, 0, None, many), Ending(b, 2, 0, None, [(LogKind.STDOUT, "late")]),
             Ending(b, 1, 3, None, [(LogKind.STDERR, "failed")]), Ending(999, 1, 0, None)],
            now + 1,
        )  # fmt: skip
        kinds = [type(r).__name__ if isinstance(r, Conflict) else r.value for r in results]
        return kinds, _log(store, a), _log(store, b), store.count_jobs(JobFilter())

    kinds, log_a, _, _ = same(both, scenario)
    assert kinds == ["Successful", "Conflict", "Waiting", "Conflict"]
    assert [text for _, kind, text in log_a if kind == "STDOUT"] == [
        f"line {n}\n" for n in range(120)
    ]


def test_nodes_workers_and_assignments_as_in_sqlite(both: list[Store]) -> None:
    now = 1_700_000_000.0

    def worker(worker_id: str, state: str, node: str | None) -> WorkerRecord:
        return WorkerRecord(worker_id, Q, D, "lab", "static", None, state, now, now, None, node)

    def scenario(store: Store) -> Any:
        store.join_node(NodeRecord("n1", "lab", D, 4, "n1.example", now, now))
        store.join_node(NodeRecord("n2", "other", D, 2, "n2.example", now, now, "8:16384:0,1"))
        store.join_node(NodeRecord("n1", "lab", D, 8, "n1.example", now + 5, now + 5,
                                   "16:65536:"))  # again, saying what it has  # fmt: skip
        for record in (worker("a", "ASSIGNED", "n1"), worker("b", "ASSIGNED", "n1"),
                       worker("c", "ASSIGNED", "n2"), worker("d", "ACTIVE", None)):  # fmt: skip
            store.add_worker(record)
        store.touch_worker("b", now + 1)  # a sign of life: no longer waiting for its node
        taken = store.take_assignments("n1", now + 2)
        again = store.take_assignments("n1", now + 3)
        store.end_worker("d", now + 4)
        store.end_worker("d", now + 9)  # once ended, stays as it ended
        nodes = [store.nodes(), store.nodes("lab")]
        store.leave_node("n2")
        return taken, again, nodes, store.nodes(), store.live_workers()

    taken, again, nodes, left, live = same(both, scenario)
    assert [w.id for w in taken] == ["a"] and again == []
    assert nodes[1][0].slots == 8 and nodes[1][0].joined == now  # joined when first seen
    assert [n.capacity for n in nodes[0]] == ["16:65536:", "8:16384:0,1"]
    assert [n.id for n in left] == ["n1"]
    assert [w.id for w in live] == ["a", "b", "c"]


def test_dependencies_hold_and_bulk_events_as_in_sqlite(
    both: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a change of more jobs than this logs one line per array (moto copies a whole table
    # for every item of a transaction, so the test stays small rather than above 1,000)
    import hyper.store.rules

    monkeypatch.setattr(hyper.store.rules, "EVENTS_PER_CHANGE", 10)
    now = 1_700_000_000.0

    def scenario(store: Store) -> Any:
        first = store.submit([job("first")], now)[0]
        (arr,) = store.submit(
            [job("arr", array=ArrayTasks(indices=list(range(30))), hold=True,
                 depends=(Dependency("afterok", first),))],
            now,
        )  # fmt: skip
        released = store.release(JobFilter(arrays=((arr, None),)), now + 1)
        blocked = store.count_jobs(JobFilter(array_id=arr))
        store.claim("w", Q, D, 1, LEASE, now + 2)
        store.complete("w", first, 1, 0, None, now + 3)
        waiting = store.count_jobs(JobFilter(array_id=arr))
        cancelled = store.cancel(JobFilter(name="arr"), now + 4)
        record = store.get_array(arr)
        assert record is not None
        return (released.changed, blocked, waiting, cancelled, record.counts, record.status,
                _log(store, arr), _log(store, arr + 5), store.count_jobs(JobFilter()))  # fmt: skip

    result = same(both, scenario)
    assert result[3].cancelled == 30
    assert result[6][-1] == (0, "SYSTEM", "30 tasks: cancelled before it started")


@pytest.mark.slow
def test_listing_pages_through_many_items(store: DynamoDBStore) -> None:
    now = time.time()
    ids = store.submit([job(f"j{n}") for n in range(700)], now)
    (arr,) = store.submit([job("arr", array=ArrayTasks(indices=list(range(600))))], now)
    tasks = [arr + 1 + n for n in range(600)]
    store.claim("w", Q, D, 5, LEASE, now)  # the first five are Running now
    everything = [j.id for j in store.list_jobs(JobFilter(), limit=100_000)]
    assert everything == [*ids, *tasks]
    page = store.list_jobs(JobFilter(queue=Q), limit=600, after=ids[3])
    assert [j.id for j in page] == [*ids[4:], *tasks][:600]
    lines = store.list_jobs(JobFilter(), limit=1000, after=ids[650], collapse=True)
    assert [r.id for r in lines] == [*ids[651:], arr]
    assert store.count_jobs(JobFilter(name_prefix="j6"))[JobStatus.WAITING] == 1 + 10 + 100


# the module and the tables ---------------------------------------------------------------------


def test_the_store_imports_and_constructs_without_aws() -> None:
    code = (
        "import sys\n"
        "from hyper.store.dynamodb import DynamoDBStore\n"
        "store = DynamoDBStore('p', 'eu-west-1', 'bucket')\n"
        "print('boto3' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # no client made, so no call possible


def test_every_call_to_the_bucket_names_its_owner(aws: None) -> None:
    """Scripts and files: each S3 call of a store given its bucket's owner carries
    ExpectedBucketOwner (S3 then refuses a same-named bucket of another account)."""
    owner = "123456789012"
    store = DynamoDBStore(PREFIX, REGION, BUCKET, bucket_owner=owner)
    seen: list[tuple[str, str | None]] = []

    def note(model: Any, params: dict[str, Any], **_: Any) -> None:
        seen.append((model.name, params["headers"].get("x-amz-expected-bucket-owner")))

    store.s3.meta.events.register("before-call.s3", note)
    try:
        big = "#!/bin/bash\n" + "echo 'a long script'\n" * 20_000
        (job_id,) = store.submit([job("big", script=big)], time.time())
        store._scripts.clear()
        record = store.get_job(job_id, with_script=True)
        assert record is not None and record.script == big
        store.put_file("jobs/1/out.txt", b"x", time.time())
        assert store.get_file("jobs/1/out.txt") == b"x"
        assert store.delete_files("jobs/1") == 1
    finally:
        store.close()
    operations = {name for name, _ in seen}
    assert {"PutObject", "GetObject", "ListObjectsV2", "DeleteObjects"} <= operations
    assert all(given == owner for _, given in seen), seen


def test_table_definitions_are_plain_data() -> None:
    tables = table_definitions("host")
    assert json.loads(json.dumps(tables)) == tables
    assert tables == table_definitions("host")
    assert all(t["TableName"].startswith("host-") for t in tables)
    assert all(t["BillingMode"] == "PAY_PER_REQUEST" for t in tables)
    jobs = next(t for t in tables if t["TableName"] == "host-jobs")
    indexes = {i["IndexName"] for i in jobs["GlobalSecondaryIndexes"]}
    assert {"queue-status", "name", "definition", "array", "claim"} <= indexes


def test_throttling_past_botocores_retries_is_a_503_clients_ask_again(
    store: DynamoDBStore,
) -> None:
    """DynamoDB throttling (a hot partition) reaches the host as StoreUnavailable, which
    it answers with 503, instead of an unhandled error (a 500 no client retries); the
    store's own retry loops still see the ClientError and try again."""
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    from hyper.host.app import HTTP_STATUS

    [ids] = [store.submit([job("t1")], time.time())]
    left = [10**6]

    def throttle(**_: Any) -> Any:
        if left[0] <= 0:
            return None
        left[0] -= 1
        error = {"Error": {"Code": "ProvisionedThroughputExceededException",
                           "Message": "hot partition"}, "ResponseMetadata": {}}  # fmt: skip
        return AWSResponse("https://dynamodb.test", 400, {}, None), error

    store.dynamodb.meta.events.register("before-call.dynamodb.GetItem", throttle)
    with pytest.raises(StoreUnavailable) as raised:
        store.get_job(ids[0])
    assert isinstance(raised.value, ClientError)
    assert dict(HTTP_STATUS)[StoreUnavailable] == 503
    left[0] = 0
    assert store.get_job(ids[0]) is not None


@pytest.mark.slow  # hundreds of workers' heartbeats under moto, 7 s: not the fast tier
def test_heartbeats_spread_over_partitions_with_margin_at_10000_running_jobs(
    store: DynamoDBStore,
) -> None:
    """Every write the store makes under heartbeat load, counted per partition key of
    the table and of each index, as DynamoDB counts index writes (tests/helpers/
    dynamodb_writes.py: only a change of an index's keys or projected attributes writes
    it). A heartbeat writes its job, the lease index (its sort key is the lease's end:
    a delete and a put, two writes) and the live-worker index: those two are sharded,
    each partition taking its 1/16 share (lease shards by job id: exactly; live shards
    by a hash of the worker's id: within 3 times with only 64 workers). The queue-status and array
    indexes project keys only, so heartbeats write them not at all (with whole items
    projected, every heartbeat rewrote its queue's one partition). By calculation,
    10,000 running jobs reporting every 30 s (an AWS host's heartbeat) give the busiest
    partition of any index 42 writes/s (a lease shard; at most 63 for a live shard as
    measured here) against DynamoDB's 1,000: a margin above 10."""
    from hyper.store.dynamodb.items import SHARDS
    from tests.helpers.dynamodb_writes import WriteCounter

    now = time.time()
    ids = store.submit([job(f"j{n}") for n in range(32)], now)
    (array_id,) = store.submit([job("arr", array=_tasks(32))], now)
    workers = [f"b-{n:012x}-{n}" for n in range(64)]  # one job each
    for worker in workers:
        store.add_worker(WorkerRecord(worker, Q, D, "us-east-1", "aws", None, "ACTIVE", now, now))
    held: dict[int, str] = {}
    for worker in workers:
        held.update({c.id: worker for c in store.claim(worker, Q, D, 1, LEASE, now)})
    assert len(held) == 64 and set(ids) <= set(held)
    counter = WriteCounter(store.dynamodb)
    beats = 0
    for round_ in range(3):
        for job_id, worker in held.items():
            store.heartbeat(worker, job_id, 1, LEASE, now + round_ + 1, process_group=job_id)
            beats += 1
    jobs, workers_table = f"{PREFIX}-jobs", f"{PREFIX}-workers"
    leases = counter.writes_of(f"{jobs}/lease")
    live = counter.writes_of(f"{workers_table}/live")
    assert len(leases) == SHARDS and len(live) >= SHARDS // 2
    for sharded, spread in ((leases, 2), (live, 3)):  # by id: even; by hash: 64 is few
        assert max(sharded.values()) <= spread * beats / SHARDS, sharded
    # nothing a running job is listed by is written by its heartbeats
    for index in ("queue-status", "array", "worker", "claim", "name", "definition"):
        assert counter.writes_of(f"{jobs}/{index}") == {}, index
    assert str(array_id) not in counter.writes_of(jobs)
    # the margin at 10,000 running jobs: the busiest partition of any table or index
    busiest = max(counter.per_partition.values())
    per_second_at_10000 = 10_000 / 30 * busiest / beats
    print(f"\nbusiest partition: {busiest} of {beats} heartbeats;"
          f" at 10,000 jobs {per_second_at_10000:.0f} writes/s of 1,000")  # fmt: skip
    assert per_second_at_10000 <= 1000 / 10, counter.per_partition.most_common(3)


def test_a_journal_entry_too_big_for_an_item_keeps_all_or_nothing() -> None:
    """Tasks whose states change every few (aftercorr) make many runs of counter keys;
    past what an item holds they are left out, and a cut-off submit is then taken back
    only when none of its jobs were written."""
    from hyper.store.dynamodb.items import JOURNAL_RUNS_CHARS, _journal_deltas, _journal_entry

    a, b = ("jobs", "q/d/Waiting/t", False), ("jobs", "q/d/Failed/t", False)
    few = _journal_entry([(1, [a]), (2, [a]), (3, [b])], {a: 2, b: 1}, 0.0)
    assert _journal_deltas(few, [(2, 3)]) == [[*b, 1], [*a, 1]]
    many = [(n, [a if n % 2 else b]) for n in range(1, 20_001)]
    big = _journal_entry(many, {a: 10_000, b: 10_000}, 0.0)
    assert big["runs"] is None and len(json.dumps(big)) < JOURNAL_RUNS_CHARS
    assert _journal_deltas(big, [(1, 20_000)]) == _journal_deltas(big)
    assert _journal_deltas(big, [(5, 20_000)]) == []
