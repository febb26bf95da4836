"""Contract tests for the Store protocol (hyper/store/base.py).

Every test that takes ``any_store`` (or ``open_store``) runs against each backend
in ``BACKENDS``: SQLite in a temp dir, DynamoDB under moto's in-process mock; a new
backend joins by adding a param and a branch in ``open_store``. Tests named
``test_sqlite_*`` are about SQLite only.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hyper.errors import Conflict, UsageError
from hyper.jobs import UNFINISHED, JobStatus, LogKind
from hyper.jobspec import Dependency, Selector
from hyper.store import rules
from hyper.store.base import (
    ArrayRecord,
    ArrayTasks,
    CancelResult,
    JobFilter,
    JobRecord,
    LogEntry,
    NewJob,
    Store,
    WorkerRecord,
)
from hyper.store.sqlite import SQLiteStore
from tests.conftest import (
    fake_aws_credentials,
    moto_backs_up_a_table_once,
    moto_one_request_at_a_time,
)
from tests.helpers.store import D, Q, job

BACKENDS = ["sqlite", "dynamodb"]

LEASE = 30.0


@pytest.fixture(params=BACKENDS)
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], Store]]:
    """A factory of handles on one fresh, empty store; each call opens another handle."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "contract.db"

        def factory() -> Store:
            handle = SQLiteStore(path)
            opened.append(handle)
            return handle

        yield factory
    elif request.param == "dynamodb":
        yield from _dynamodb_factory(monkeypatch, opened)
    else:  # pragma: no cover - a backend listed without a branch
        raise AssertionError(f"no factory for backend {request.param!r}")
    for handle in opened:
        handle.close()


def _dynamodb_factory(
    monkeypatch: pytest.MonkeyPatch, opened: list[Store]
) -> Iterator[Callable[[], Store]]:
    """Fresh tables (and a bucket for big scripts) under moto's in-process mock."""
    import boto3
    import moto

    from hyper.store.dynamodb import DynamoDBStore
    from hyper.store.dynamodb_tables import create_tables

    fake_aws_credentials(monkeypatch)
    moto_one_request_at_a_time(monkeypatch)
    moto_backs_up_a_table_once(monkeypatch)
    region = "us-east-1"
    with moto.mock_aws():
        create_tables(boto3.client("dynamodb", region_name=region), "contract")
        boto3.client("s3", region_name=region).create_bucket(Bucket="contract-scripts")

        def factory() -> Store:
            handle = DynamoDBStore("contract", region, "contract-scripts")
            opened.append(handle)
            return handle

        yield factory


@pytest.fixture
def any_store(open_store: Callable[[], Store]) -> Store:
    return open_store()


def submit_one(store: Store, now: float, **kwargs: object) -> int:
    (job_id,) = store.submit([job(**kwargs)], now)  # type: ignore[arg-type]
    return job_id


def claim_one(store: Store, worker: str, now: float, lease: float = LEASE) -> int:
    claimed = store.claim(worker, Q, D, 1, lease, now)
    assert len(claimed) == 1, claimed
    return claimed[0].id


def listed(store: Store, where: JobFilter, limit: int = 100_000) -> list[JobRecord]:
    """A flat listing: jobs and tasks only, never array lines."""
    found = store.list_jobs(where, limit=limit)
    jobs = [j for j in found if isinstance(j, JobRecord)]
    assert len(jobs) == len(found)
    return jobs


def status_of(store: Store, job_id: int) -> JobStatus:
    found = store.get_job(job_id)
    assert found is not None
    return found.status


# submit and read ---------------------------------------------------------------


def test_submit_returns_increasing_unique_ids(any_store: Store) -> None:
    now = time.time()
    first = any_store.submit([job("a"), job("b"), job("c")], now)
    second = any_store.submit([job("d")], now + 1)
    ids = first + second
    assert len(set(ids)) == 4
    assert ids == sorted(ids)
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert any_store.submit([], now) == []


def test_submit_is_visible_to_another_handle(open_store: Callable[[], Store]) -> None:
    writer, reader = open_store(), open_store()
    ids = writer.submit([job("a"), job("b")], time.time())
    assert [j.id for j in reader.list_jobs(JobFilter(), limit=10)] == ids


def test_get_job_fields_with_and_without_script(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(
        any_store,
        now,
        name="n1",
        script="echo one\n",
        retries=2,
        env={"A": "1"},
        submit_dir="/tmp/x",
    )
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.id == job_id
    assert (found.name, found.queue, found.definition) == ("n1", Q, D)
    assert found.status is JobStatus.WAITING
    assert (found.retries, found.retries_left, found.attempt) == (2, 2, 0)
    assert found.exit_code is None and found.reason is None
    assert found.cancel_requested is False
    assert found.worker_id is None and found.lease_until is None
    assert found.submit_dir == "/tmp/x"
    assert found.env == {"A": "1"}
    assert found.created == pytest.approx(now)
    assert found.started is None and found.ended is None
    assert found.script is None

    with_script = any_store.get_job(job_id, with_script=True)
    assert with_script is not None
    assert with_script.script == "echo one\n"
    assert with_script.as_dict()["status"] == "Waiting"


def test_records_as_dicts_hold_every_field_and_their_values() -> None:
    """as_dict gives what dataclasses.asdict gives, statuses and kinds as their values."""
    options = {"request": {"cpus": 2}, "deps": [{"kind": "afterok", "target": 1}]}
    record = JobRecord(
        id=7, name="n", queue=Q, definition=D, status=JobStatus.RUNNING, retries=1,
        retries_left=1, attempt=1, exit_code=None, reason=None, cancel_requested=False,
        worker_id="w", lease_until=2.0, submit_dir="/tmp", env={"A": "1"}, created=1.0,
        started=1.5, ended=None, array_id=6, array_index=1, options=options,
    )  # fmt: skip
    assert record.as_dict() == {**dataclasses.asdict(record), "status": "Running"}
    entry = LogEntry(seq=3, job_id=7, attempt=1, kind=LogKind.STDOUT, time=1.0, text="hi\n")
    assert entry.as_dict() == {**dataclasses.asdict(entry), "kind": "STDOUT"}


def test_get_job_unknown_is_none(any_store: Store) -> None:
    assert any_store.get_job(424242) is None
    assert any_store.get_job(424242, with_script=True) is None


def test_list_jobs_pagination(any_store: Store) -> None:
    ids = any_store.submit([job(f"j{i}") for i in range(7)], time.time())
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        page = any_store.list_jobs(JobFilter(), limit=3, after=after)
        if not page:
            break
        assert len(page) <= 3
        seen.extend(j.id for j in page)
        after = page[-1].id
        pages += 1
    assert seen == ids
    assert pages == 3
    assert [j.id for j in any_store.list_jobs(JobFilter(), limit=2, after=ids[4])] == ids[5:7]
    assert any_store.list_jobs(JobFilter(), limit=10, after=ids[-1]) == []
    # a listing does not carry scripts
    assert all(j.script is None for j in listed(any_store, JobFilter()))


def test_list_jobs_filters(any_store: Store) -> None:
    now = time.time()
    a, b, c, d = any_store.submit(
        [job("x"), job("y"), job("x", queue="q2"), job("z", queue="q2")], now
    )
    claimed = claim_one(any_store, "w", now)
    assert claimed == a
    any_store.cancel(JobFilter(ids=(d,)), now)

    def ids(where: JobFilter) -> list[int]:
        return [j.id for j in any_store.list_jobs(where, limit=100)]

    assert ids(JobFilter()) == [a, b, c, d]
    assert ids(JobFilter(queue=Q)) == [a, b]
    assert ids(JobFilter(queue="q2")) == [c, d]
    assert ids(JobFilter(queue="none")) == []
    assert ids(JobFilter(name="x")) == [a, c]
    assert ids(JobFilter(name="x", queue="q2")) == [c]
    assert ids(JobFilter(statuses=(JobStatus.WAITING,))) == [b, c]
    assert ids(JobFilter(statuses=(JobStatus.RUNNING, JobStatus.CANCELLED))) == [a, d]
    assert ids(JobFilter(statuses=(JobStatus.SUCCESSFUL,))) == []
    assert ids(JobFilter(ids=(d, b))) == [b, d]
    assert ids(JobFilter(ids=(b, c), queue="q2")) == [c]
    assert ids(JobFilter(ids=(999999,))) == []
    assert ids(JobFilter(statuses=(JobStatus.WAITING,), name="y")) == [b]


def test_count_jobs_per_status(any_store: Store) -> None:
    now = time.time()
    empty = any_store.count_jobs(JobFilter())
    assert empty == dict.fromkeys(JobStatus, 0)

    ids = any_store.submit([job() for _ in range(6)] + [job(queue="q2")], now)
    running = claim_one(any_store, "w", now)
    done = claim_one(any_store, "w", now)
    any_store.complete("w", done, 1, 0, None, now)
    failed = claim_one(any_store, "w", now)
    any_store.complete("w", failed, 1, 1, None, now)
    any_store.cancel(JobFilter(ids=(ids[5],)), now)
    assert running == ids[0]

    counts = any_store.count_jobs(JobFilter())
    assert counts == {
        JobStatus.WAITING: 3,  # ids[3], ids[4] and the q2 job
        JobStatus.BLOCKED: 0,
        JobStatus.HELD: 0,
        JobStatus.RUNNING: 1,
        JobStatus.SUCCESSFUL: 1,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 1,
    }
    assert sum(counts.values()) == 7
    assert any_store.count_jobs(JobFilter(queue="q2")) == dict.fromkeys(JobStatus, 0) | {
        JobStatus.WAITING: 1
    }
    only = any_store.count_jobs(JobFilter(statuses=(JobStatus.RUNNING,)))
    assert only[JobStatus.RUNNING] == 1 and only[JobStatus.WAITING] == 0


def test_resolve_known_and_unknown_ids(any_store: Store) -> None:
    now = time.time()
    ids = any_store.submit([job(), job()], now)
    assert any_store.resolve([]) == JobFilter()
    where = any_store.resolve([Selector(i) for i in ids])
    assert where == JobFilter(ids=tuple(ids))
    assert where.selects
    with pytest.raises(UsageError) as error:
        any_store.resolve([Selector(ids[1]), Selector(999999), Selector(ids[0]), Selector(888888)])
    assert "888888" in str(error.value) and "999999" in str(error.value)
    assert str(ids[0]) not in str(error.value).split(":", 1)[1].split()
    # more ids than fit in one query: the tasks of a big array, each named by its id
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=list(range(1, 1201))))], now)
    task_ids = [array_id + n for n in range(1, 1201)]
    many = any_store.resolve([Selector(i) for i in [*task_ids, ids[0]]])
    assert many.ids == (*task_ids, ids[0])
    assert any_store.count_jobs(many)[JobStatus.WAITING] == 1201
    with pytest.raises(UsageError) as error:
        any_store.resolve([Selector(i) for i in [*task_ids, task_ids[-1] + 1]])
    assert str(task_ids[-1] + 1) in str(error.value)


# claiming ------------------------------------------------------------------------


def test_claim_sets_running_attempt_lease(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now - 5, script="echo claimed\n", env={"K": "v"})
    claimed = any_store.claim("w1", Q, D, 5, LEASE, now)
    assert [j.id for j in claimed] == [job_id]
    got = claimed[0]
    assert got.status is JobStatus.RUNNING
    assert got.attempt == 1
    assert got.worker_id == "w1"
    assert got.lease_until == pytest.approx(now + LEASE)
    assert got.started == pytest.approx(now)
    assert got.script == "echo claimed\n"
    assert got.env == {"K": "v"}

    stored = any_store.get_job(job_id)
    assert stored is not None
    assert stored.status is JobStatus.RUNNING
    assert stored.attempt == 1 and stored.worker_id == "w1"
    assert stored.lease_until == pytest.approx(now + LEASE)


def test_claim_respects_queue_and_definition(any_store: Store) -> None:
    now = time.time()
    other_q, other_d, right = any_store.submit([job(queue="q2"), job(definition="d2"), job()], now)
    assert any_store.claim("w", "q3", D, 10, LEASE, now) == []
    assert [j.id for j in any_store.claim("w", Q, D, 10, LEASE, now)] == [right]
    assert [j.id for j in any_store.claim("w", "q2", D, 10, LEASE, now)] == [other_q]
    assert [j.id for j in any_store.claim("w", Q, "d2", 10, LEASE, now)] == [other_d]
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []


def test_claim_passes_over_jobs_whose_request_does_not_fit(any_store: Store) -> None:
    """A worker claims only what fits in what it has left; a larger job waits for a
    worker with room, and a job asking nothing is handed on as before (None)."""
    now = time.time()
    big, small, plain = any_store.submit(
        [
            dataclasses.replace(job("big"), options={"request": {"cpus": 2}}),
            dataclasses.replace(job("small"), options={"request": {"cpus": 1}}),
            job("plain"),
        ],
        now,
    )
    (tasks,) = any_store.submit(
        [
            dataclasses.replace(
                job("tasks", array=ArrayTasks([1, 2])), options={"request": {"cpus": 3}}
            )
        ],
        now,
    )
    seen: list[object] = []

    def one_cpu(request: dict[str, object] | None) -> bool:
        seen.append(request)
        return request is not None and int(str(request.get("cpus", 1))) <= 1

    assert [j.id for j in any_store.claim("w", Q, D, 10, LEASE, now, one_cpu)] == [small]
    assert None in seen  # the plain job was asked about, with no request
    everything = any_store.claim("w2", Q, D, 10, LEASE, now, lambda request: True)
    assert [j.id for j in everything][:2] == [big, plain]
    assert len(everything) == 4  # and both tasks, whose request is their array's
    assert tasks not in (j.id for j in everything)


def test_claim_orders_by_id_and_respects_limit(any_store: Store) -> None:
    now = time.time()
    ids = any_store.submit([job(f"j{i}") for i in range(5)], now)
    first = any_store.claim("w1", Q, D, 2, LEASE, now)
    assert [j.id for j in first] == ids[:2]
    second = any_store.claim("w2", Q, D, 2, LEASE, now)
    assert [j.id for j in second] == ids[2:4]
    third = any_store.claim("w3", Q, D, 2, LEASE, now)
    assert [j.id for j in third] == ids[4:]
    assert any_store.claim("w4", Q, D, 2, LEASE, now) == []
    held = {j.id: j.worker_id for j in listed(any_store, JobFilter())}
    assert held == {
        ids[0]: "w1",
        ids[1]: "w1",
        ids[2]: "w2",
        ids[3]: "w2",
        ids[4]: "w3",
    }


def test_concurrent_claims_never_share_a_job(open_store: Callable[[], Store]) -> None:
    setup = open_store()
    ids = setup.submit([job(f"j{i}") for i in range(60)], time.time())
    handles = [open_store() for _ in range(4)]
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(handles))

    def worker(name: str, handle: Store) -> None:
        try:
            start.wait()
            mine: list[int] = []
            while True:
                batch = handle.claim(name, Q, D, 3, LEASE, time.time())
                if not batch:
                    break
                mine.extend(j.id for j in batch)
            got[name] = mine
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}", h)) for i, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    everything = [i for mine in got.values() for i in mine]
    assert sorted(everything) == ids  # each job claimed exactly once
    for name, mine in got.items():
        for job_id in mine:
            record = setup.get_job(job_id)
            assert record is not None
            assert (record.worker_id, record.attempt) == (name, 1)


# heartbeat and completion -----------------------------------------------------------


def test_heartbeat_extends_lease_and_returns_cancel_flag(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now)
    claim_one(any_store, "w", now, lease=10)
    assert any_store.heartbeat("w", job_id, 1, 100, now + 5) is False
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.lease_until == pytest.approx(now + 105)
    # the lease now outlives the original one
    assert any_store.expire_leases(now + 50) == []
    assert status_of(any_store, job_id) is JobStatus.RUNNING


@pytest.mark.parametrize(
    "worker, attempt", [("other", 1), ("w", 2), ("w", 0)], ids=["worker", "attempt", "zero"]
)
def test_reports_from_non_holders_conflict(any_store: Store, worker: str, attempt: int) -> None:
    now = time.time()
    job_id = submit_one(any_store, now)
    claim_one(any_store, "w", now)
    with pytest.raises(Conflict):
        any_store.heartbeat(worker, job_id, attempt, LEASE, now)
    with pytest.raises(Conflict):
        any_store.complete(worker, job_id, attempt, 0, None, now)
    found = any_store.get_job(job_id)
    assert found is not None
    assert (found.status, found.worker_id, found.attempt) == (JobStatus.RUNNING, "w", 1)
    assert found.lease_until == pytest.approx(now + LEASE)


def test_reports_on_unknown_or_waiting_job_conflict(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now)
    with pytest.raises(Conflict):
        any_store.heartbeat("w", job_id, 1, LEASE, now)
    with pytest.raises(Conflict):
        any_store.complete("w", job_id, 1, 0, None, now)
    with pytest.raises(Conflict):
        any_store.heartbeat("w", 999999, 1, LEASE, now)
    with pytest.raises(Conflict):
        any_store.complete("w", 999999, 1, 0, None, now)
    assert status_of(any_store, job_id) is JobStatus.WAITING


def test_complete_zero_is_successful(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=3)
    claim_one(any_store, "w", now)
    assert any_store.complete("w", job_id, 1, 0, None, now + 2) is JobStatus.SUCCESSFUL
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.SUCCESSFUL
    assert found.exit_code == 0
    assert found.retries_left == 3
    assert found.ended == pytest.approx(now + 2)
    assert found.worker_id is None and found.lease_until is None
    # a second report for the same attempt is late
    with pytest.raises(Conflict):
        any_store.complete("w", job_id, 1, 0, None, now + 3)
    assert any_store.claim("w", Q, D, 10, LEASE, now + 4) == []


def test_ended_per_minute_counts_jobs_by_the_minute_they_ended(any_store: Store) -> None:
    minute = (int(time.time()) // 60) * 60
    ids = any_store.submit([job("a"), job("b"), job("c"), job("d")], minute)
    assert any_store.ended_per_minute(minute - 600) == {}
    for job_id, ended in zip(ids[:3], (minute + 1, minute + 59, minute + 61), strict=True):
        claim_one(any_store, "w", minute)
        any_store.complete("w", job_id, 1, 0, None, ended)
    assert any_store.ended_per_minute(minute) == {minute: 2, minute + 60: 1}
    assert any_store.ended_per_minute(minute + 30) == {minute: 1, minute + 60: 1}
    assert any_store.ended_per_minute(minute + 120) == {}


def test_nonzero_exit_is_retried_then_fails(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=2)
    attempts = 0
    statuses: list[JobStatus] = []
    for step in range(10):
        claimed = any_store.claim(f"w{step}", Q, D, 1, LEASE, now + step)
        if not claimed:
            break
        assert claimed[0].id == job_id
        attempts += 1
        assert claimed[0].attempt == attempts
        statuses.append(any_store.complete(f"w{step}", job_id, attempts, 3, None, now + step))
        found = any_store.get_job(job_id)
        assert found is not None
        assert found.retries_left == max(0, 2 - attempts)
    assert attempts == 3
    assert statuses == [JobStatus.WAITING, JobStatus.WAITING, JobStatus.FAILED]
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.FAILED
    assert found.exit_code == 3
    assert found.attempt == 3
    assert found.retries_left == 0
    assert found.ended is not None
    assert found.reason  # says why


def test_retried_job_is_waiting_with_fields_reset(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=1)
    claim_one(any_store, "w", now)
    assert any_store.complete("w", job_id, 1, 7, None, now) is JobStatus.WAITING
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.WAITING
    assert found.retries_left == 0
    assert found.worker_id is None and found.lease_until is None
    assert found.ended is None
    # the next attempt starts over on whatever worker claims it
    again = any_store.claim("w2", Q, D, 1, LEASE, now + 1)
    assert [(j.id, j.attempt, j.worker_id) for j in again] == [(job_id, 2, "w2")]
    assert any_store.complete("w2", job_id, 2, 0, None, now + 2) is JobStatus.SUCCESSFUL


# cancelling -----------------------------------------------------------------------------


def test_cancel_waiting_job_is_immediate_and_never_claimed(any_store: Store) -> None:
    now = time.time()
    job_id, other = any_store.submit([job(), job()], now)
    result = any_store.cancel(JobFilter(ids=(job_id,)), now + 1)
    assert (result.cancelled, result.stopping, result.finished) == (1, 0, [])
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.CANCELLED
    assert found.ended == pytest.approx(now + 1)
    assert found.attempt == 0
    assert [j.id for j in any_store.claim("w", Q, D, 10, LEASE, now + 2)] == [other]
    assert any_store.claim("w", Q, D, 10, LEASE, now + 3) == []
    assert status_of(any_store, job_id) is JobStatus.CANCELLED


def test_cancel_retried_waiting_job_is_immediate(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=3)
    claim_one(any_store, "w", now)
    any_store.complete("w", job_id, 1, 1, None, now)
    result = any_store.cancel(JobFilter(ids=(job_id,)), now)
    assert (result.cancelled, result.stopping, result.finished) == (1, 0, [])
    assert status_of(any_store, job_id) is JobStatus.CANCELLED
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []


def test_cancel_running_job_is_stopped_by_its_worker(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=5)
    claim_one(any_store, "w", now)
    assert any_store.heartbeat("w", job_id, 1, LEASE, now) is False
    result = any_store.cancel(JobFilter(ids=(job_id,)), now + 1)
    assert (result.cancelled, result.stopping, result.finished) == (0, 1, [])
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.RUNNING
    assert found.cancel_requested is True
    # asking again is harmless and still reports it as stopping
    again = any_store.cancel(JobFilter(ids=(job_id,)), now + 1)
    assert (again.cancelled, again.stopping, again.finished) == (0, 1, [])
    assert any_store.heartbeat("w", job_id, 1, LEASE, now + 2) is True
    # even a non-zero exit with retries left ends it as Cancelled, not retried
    assert any_store.complete("w", job_id, 1, 143, None, now + 3) is JobStatus.CANCELLED
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.CANCELLED
    assert found.ended == pytest.approx(now + 3)
    assert any_store.claim("w", Q, D, 10, LEASE, now + 4) == []


def test_cancel_running_job_that_succeeds_ends_cancelled(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now)
    claim_one(any_store, "w", now)
    any_store.cancel(JobFilter(ids=(job_id,)), now)
    assert any_store.complete("w", job_id, 1, 0, None, now) is JobStatus.CANCELLED


def test_cancel_of_finished_jobs_changes_nothing(any_store: Store) -> None:
    now = time.time()
    ok, bad, gone = any_store.submit([job(), job(), job()], now)
    claim_one(any_store, "w", now)
    any_store.complete("w", ok, 1, 0, None, now)
    claim_one(any_store, "w", now)
    any_store.complete("w", bad, 1, 2, None, now)
    any_store.cancel(JobFilter(ids=(gone,)), now)
    before = {j.id: j for j in any_store.list_jobs(JobFilter(), limit=10)}

    result = any_store.cancel(JobFilter(ids=(ok, bad, gone)), now + 10)
    assert (result.cancelled, result.stopping) == (0, 0)
    assert sorted(result.finished) == [ok, bad, gone]
    after = {j.id: j for j in any_store.list_jobs(JobFilter(), limit=10)}
    assert after == before
    assert after[ok].status is JobStatus.SUCCESSFUL
    assert after[bad].status is JobStatus.FAILED


def test_cancel_by_queue_and_name(any_store: Store) -> None:
    now = time.time()
    a, b, c, d = any_store.submit(
        [job("x"), job("y"), job("x", queue="q2"), job("y", queue="q2")], now
    )
    claim_one(any_store, "w", now)  # a
    result = any_store.cancel(JobFilter(queue=Q), now)
    assert (result.cancelled, result.stopping, result.finished) == (1, 1, [])
    assert status_of(any_store, b) is JobStatus.CANCELLED
    assert status_of(any_store, a) is JobStatus.RUNNING
    result = any_store.cancel(JobFilter(name="x"), now)
    # b is over and not named by id, so not listed; a is still stopping
    assert (result.cancelled, result.stopping, result.finished) == (1, 1, [])
    assert status_of(any_store, c) is JobStatus.CANCELLED
    assert status_of(any_store, d) is JobStatus.WAITING
    empty = any_store.cancel(JobFilter(queue="none"), now)
    assert (empty.cancelled, empty.stopping, empty.finished) == (0, 0, [])


# leases ------------------------------------------------------------------------------------


def test_expire_leases_retries_then_late_worker_conflicts(any_store: Store) -> None:
    now = time.time()
    job_id, other = any_store.submit([job(retries=1), job()], now)
    claim_one(any_store, "late", now, lease=10)
    claim_one(any_store, "alive", now, lease=100)
    assert any_store.expire_leases(now + 5) == []
    assert any_store.expire_leases(now + 11) == [job_id]
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.WAITING
    assert found.retries_left == 0
    assert found.worker_id is None
    assert status_of(any_store, other) is JobStatus.RUNNING
    # once expired, nothing happens twice
    assert any_store.expire_leases(now + 12) == []
    with pytest.raises(Conflict):
        any_store.heartbeat("late", job_id, 1, LEASE, now + 12)
    with pytest.raises(Conflict):
        any_store.complete("late", job_id, 1, 0, None, now + 12)
    assert status_of(any_store, job_id) is JobStatus.WAITING

    # the retry runs elsewhere; the late worker still cannot report on it
    again = any_store.claim("fresh", Q, D, 1, 10, now + 13)
    assert [(j.id, j.attempt) for j in again] == [(job_id, 2)]
    with pytest.raises(Conflict):
        any_store.complete("late", job_id, 1, 0, None, now + 14)
    with pytest.raises(Conflict):
        any_store.complete("late", job_id, 2, 0, None, now + 14)

    # no retries left: the policy fails it
    assert any_store.expire_leases(now + 30) == [job_id]
    found = any_store.get_job(job_id)
    assert found is not None
    assert found.status is JobStatus.FAILED
    assert found.exit_code is None
    assert found.reason and "lost" in found.reason
    with pytest.raises(Conflict):
        any_store.complete("fresh", job_id, 2, 0, None, now + 31)
    assert status_of(any_store, job_id) is JobStatus.FAILED


def test_expire_lease_of_cancelled_running_job_ends_cancelled(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=3)
    claim_one(any_store, "w", now, lease=1)
    any_store.cancel(JobFilter(ids=(job_id,)), now)
    assert any_store.expire_leases(now + 2) == [job_id]
    assert status_of(any_store, job_id) is JobStatus.CANCELLED


def test_extend_leases(any_store: Store) -> None:
    now = time.time()
    short, long_, waiting = any_store.submit([job(), job(), job()], now)
    claim_one(any_store, "w", now, lease=1)
    claim_one(any_store, "w", now, lease=500)
    assert any_store.extend_leases(60, now) == 2
    by_id = {j.id: j for j in listed(any_store, JobFilter())}
    assert by_id[short].lease_until == pytest.approx(now + 60)
    assert by_id[long_].lease_until == pytest.approx(now + 500)  # never shortened
    assert by_id[waiting].lease_until is None
    assert by_id[waiting].status is JobStatus.WAITING
    assert any_store.expire_leases(now + 30) == []
    assert any_store.expire_leases(now + 61) == [short]


def test_lease_holders_are_the_workers_whose_leases_ran_out(any_store: Store) -> None:
    now = time.time()
    any_store.submit([job(), job(), job()], now)
    claim_one(any_store, "late", now, lease=10)
    claim_one(any_store, "alive", now, lease=100)
    assert any_store.lease_holders(now + 5) == []
    assert any_store.lease_holders(now + 11) == ["late"]
    assert any_store.lease_holders(now + 101) == ["alive", "late"]
    any_store.expire_leases(now + 11)
    assert any_store.lease_holders(now + 11) == []  # its job is no longer running


def test_demand(any_store: Store) -> None:
    now = time.time()
    assert any_store.demand() == []
    ids = any_store.submit(
        [job(), job(), job(), job(definition="d2"), job(queue="q2", definition="d2")], now
    )
    claim_one(any_store, "w", now)
    any_store.claim("w", "q2", "d2", 1, LEASE, now)
    assert sorted(any_store.demand()) == [(Q, D, 2, 1), (Q, "d2", 1, 0), ("q2", "d2", 0, 1)]
    # finished jobs are no demand
    any_store.complete("w", ids[0], 1, 0, None, now)
    any_store.cancel(JobFilter(ids=(ids[3],)), now)
    assert sorted(any_store.demand()) == [(Q, D, 2, 0), ("q2", "d2", 0, 1)]


def asking(name: str, request: dict[str, int] | None, **kwargs: object) -> NewJob:
    return dataclasses.replace(job(name, **kwargs), options={"request": request})  # type: ignore[arg-type]


def test_requests_count_waiting_and_running_jobs_by_what_they_asked(any_store: Store) -> None:
    """What the scheduler packs into workers: the waiting and running jobs of a (queue,
    definition) by request, array tasks by their array's; jobs that asked nothing under
    (); ended, held and blocked jobs not at all; None past `most` jobs."""
    now = time.time()
    assert any_store.requests(Q, D, 100) == {}
    two_a, two_b, plain, _other, held = any_store.submit(
        [
            asking("a", {"cpus": 2}),
            asking("b", {"cpus": 2}),
            job("plain"),
            asking("other", {"cpus": 2}, definition="d2"),
            asking("held", {"cpus": 8}, hold=True),
        ],
        now,
    )
    (array_id,) = any_store.submit(
        [asking("arr", {"cpus": 1, "mem_mib": 100}, array=ArrayTasks(indices=[1, 2, 3]))], now
    )
    (blocked,) = any_store.submit(
        [asking("after", {"gpus": 1}, depends=(Dependency("afterok", two_a),))], now
    )
    two, small = (("cpus", 2),), (("cpus", 1), ("mem_mib", 100))
    assert any_store.requests(Q, D, 100) == {two: 2, small: 3, (): 1}
    assert any_store.requests(Q, "d2", 100) == {two: 1}
    assert any_store.requests(Q, D, 5) is None  # six jobs: more than asked to read

    # claims and retries move nothing: running jobs count as waiting ones do
    claimed = {j.id for j in any_store.claim("w", Q, D, 10, LEASE, now)}
    assert claimed == {two_a, two_b, plain, array_id + 1, array_id + 2, array_id + 3}
    assert any_store.requests(Q, D, 100) == {two: 2, small: 3, (): 1}
    any_store.expire_leases(now + LEASE + 1)  # no retries left: these failed
    assert any_store.requests(Q, D, 100) == {}
    assert any_store.get_job(blocked).status is JobStatus.FAILED  # type: ignore[union-attr]

    any_store.release(JobFilter(ids=(held,)), now)
    (again,) = any_store.submit([asking("again", {"cpus": 2}, retries=1)], now)
    assert any_store.requests(Q, D, 100) == {(("cpus", 8),): 1, two: 1}
    later = now + LEASE + 2
    assert {j.id for j in any_store.claim("w", Q, D, 10, LEASE, later)} == {held, again}
    assert any_store.complete("w", again, 1, 1, None, later) is JobStatus.WAITING  # retried
    assert any_store.requests(Q, D, 100) == {(("cpus", 8),): 1, two: 1}
    any_store.complete("w", held, 1, 0, None, later)
    any_store.cancel(JobFilter(ids=(again,)), later)
    assert any_store.requests(Q, D, 100) == {}


# logs ----------------------------------------------------------------------------------------


def test_output_beyond_an_attempts_limit_is_dropped_with_one_note(any_store: Store) -> None:
    from hyper.output import NOTE_ROOM_BYTES, host_cut_note

    now = time.time()
    job_id = submit_one(any_store, now, retries=1)
    claim_one(any_store, "w", now)
    limit = 1000
    piece = "x" * 600
    metrics = (LogKind.METRICS, '{"cpu": 1.0}')
    for _ in range((limit + NOTE_ROOM_BYTES) // 600 + 3):
        any_store.append_log(job_id, 1, [(LogKind.STDOUT, piece), metrics], now, output_limit=limit)
    kept = any_store.read_log(job_id, [LogKind.STDOUT, LogKind.STDERR], limit=10_000)
    text = "".join(e.text for e in kept)
    assert text.endswith(host_cut_note(limit)) and text.count("[hyper:") == 1
    assert len(text) == limit + NOTE_ROOM_BYTES + len(host_cut_note(limit))
    assert len(any_store.read_log(job_id, [LogKind.METRICS], limit=10_000)) > 100  # all kept
    # another attempt counts afresh; without a limit nothing is counted
    any_store.append_log(job_id, 2, [(LogKind.STDERR, piece)], now, output_limit=limit)
    any_store.append_log(job_id, 1, [(LogKind.STDERR, "late")], now)
    again = any_store.read_log(job_id, [LogKind.STDERR])
    assert [(e.attempt, e.text) for e in again] == [(2, piece), (1, "late")]


def test_append_and_read_log(any_store: Store) -> None:
    now = time.time()
    job_id, other = any_store.submit([job(), job()], now)
    claim_one(any_store, "w", now)
    any_store.append_log(job_id, 1, [(LogKind.STDOUT, "out 1"), (LogKind.STDERR, "err 1")], now + 1)
    any_store.append_log(job_id, 1, [], now + 1)  # nothing to add is fine
    any_store.append_log(
        job_id, 1, [(LogKind.STDOUT, "out 2"), (LogKind.METRICS, '{"cpu": 1.0}')], now + 2
    )
    any_store.append_log(other, 0, [(LogKind.STDOUT, "someone else")], now + 2)

    everything = any_store.read_log(job_id, [])
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(e.job_id == job_id for e in everything)
    outputs = [(e.kind, e.text) for e in everything if e.kind is not LogKind.SYSTEM]
    assert outputs == [
        (LogKind.STDOUT, "out 1"),
        (LogKind.STDERR, "err 1"),
        (LogKind.STDOUT, "out 2"),
        (LogKind.METRICS, '{"cpu": 1.0}'),
    ]
    stdout = any_store.read_log(job_id, [LogKind.STDOUT])
    assert [e.text for e in stdout] == ["out 1", "out 2"]
    assert all(e.attempt == 1 for e in stdout)
    assert stdout[0].time == pytest.approx(now + 1)
    assert stdout[0].as_dict()["kind"] == "STDOUT"
    both = any_store.read_log(job_id, [LogKind.STDOUT, LogKind.STDERR])
    assert [e.text for e in both] == ["out 1", "err 1", "out 2"]

    # the cursor: entries strictly after a seq
    after_first = any_store.read_log(job_id, [LogKind.STDOUT], after=stdout[0].seq)
    assert [e.text for e in after_first] == ["out 2"]
    assert any_store.read_log(job_id, [], after=everything[-1].seq) == []
    limited = any_store.read_log(job_id, [], limit=2)
    assert limited == everything[:2]
    assert [e.text for e in any_store.read_log(other, [LogKind.STDOUT])] == ["someone else"]


def test_system_events_for_submit_start_end(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, queue=Q)
    claim_one(any_store, "w7", now + 1)
    any_store.complete("w7", job_id, 1, 0, None, now + 2)
    events = any_store.read_log(job_id, [LogKind.SYSTEM])
    assert len(events) == 3, events
    assert [e.attempt for e in events] == [0, 1, 1]
    assert all(e.kind is LogKind.SYSTEM for e in events)
    submitted, started, ended = (e.text for e in events)
    assert "submitted" in submitted and Q in submitted
    assert "started" in started and "w7" in started
    assert "code 0" in ended and "successful" in ended
    assert [e.time for e in events] == pytest.approx([now, now + 1, now + 2])


def test_system_events_for_retry_cancel_and_loss(any_store: Store) -> None:
    now = time.time()
    job_id = submit_one(any_store, now, retries=1)
    claim_one(any_store, "w", now, lease=1)
    any_store.expire_leases(now + 2)
    claim_one(any_store, "w", now + 3)
    any_store.cancel(JobFilter(ids=(job_id,)), now + 4)
    any_store.complete("w", job_id, 2, 143, None, now + 5)
    texts = [e.text for e in any_store.read_log(job_id, [LogKind.SYSTEM])]
    assert len(texts) == 6, texts
    assert "retrying" in texts[2] and "lost" in texts[2]
    assert "attempt 2" in texts[3]
    assert "cancel" in texts[4]
    assert "cancelled" in texts[5]


# workers -------------------------------------------------------------------------------------


def worker_record(worker_id: str, now: float) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        queue=Q,
        definition=D,
        region="local",
        launcher="local",
        pid=1234,
        state="STARTING",
        started=now,
        last_seen=now,
    )


def test_workers_lifecycle(any_store: Store) -> None:
    now = time.time()
    assert any_store.live_workers() == []
    any_store.add_worker(worker_record("w1", now))
    any_store.add_worker(worker_record("w2", now + 1))
    live = any_store.live_workers()
    assert [w.id for w in live] == ["w1", "w2"]
    assert live[0] == worker_record("w1", now)

    any_store.touch_worker("w1", now + 5)
    (w1,) = [w for w in any_store.live_workers() if w.id == "w1"]
    assert w1.state == "ACTIVE"
    assert w1.last_seen == pytest.approx(now + 5)

    # claiming and reporting count as signs of life
    submit_one(any_store, now)
    job_id = claim_one(any_store, "w2", now + 6)
    any_store.heartbeat("w2", job_id, 1, LEASE, now + 7)
    (w2,) = [w for w in any_store.live_workers() if w.id == "w2"]
    assert (w2.state, w2.last_seen) == ("ACTIVE", pytest.approx(now + 7))

    any_store.end_worker("w1", now + 8)
    assert [w.id for w in any_store.live_workers()] == ["w2"]
    any_store.touch_worker("w1", now + 9)  # an ended worker stays ended
    assert [w.id for w in any_store.live_workers()] == ["w2"]
    any_store.touch_worker("nobody", now + 9)  # unknown: nothing happens
    assert [w.id for w in any_store.live_workers()] == ["w2"]


# resources -----------------------------------------------------------------------------------


def test_resources(any_store: Store) -> None:
    now = time.time()
    assert any_store.get_resource("queues", "qa") is None
    assert any_store.list_resources("queues") == []
    created = any_store.put_resource("queues", "qb", {"x": 1}, "CREATING", ["creating"], now)
    assert (created.kind, created.name, created.spec, created.status) == (
        "queues",
        "qb",
        {"x": 1},
        "CREATING",
    )
    assert created.log == ["creating"]
    assert created.created == pytest.approx(now)

    updated = any_store.put_resource("queues", "qb", {"x": 2}, "ACTIVE", ["ready"], now + 5)
    assert updated.log == ["creating", "ready"]
    assert updated.created == pytest.approx(now)
    assert updated.updated == pytest.approx(now + 5)
    stored = any_store.get_resource("queues", "qb")
    assert stored == updated
    assert stored is not None and stored.as_dict()["spec"] == {"x": 2}

    any_store.put_resource("queues", "qa", {}, "ACTIVE", ["made"], now)
    any_store.put_resource("definitions", "qa", {"d": True}, "ACTIVE", ["made"], now)
    assert [r.name for r in any_store.list_resources("queues")] == ["qa", "qb"]
    assert [r.spec for r in any_store.list_resources("definitions")] == [{"d": True}]
    assert any_store.get_resource("definitions", "qb") is None

    for i in range(3):
        any_store.put_resource("queues", "qb", {"x": 2}, "ACTIVE", [f"line {i}"], now + 6 + i)
    again = any_store.get_resource("queues", "qb")
    assert again is not None
    assert again.log == ["creating", "ready", "line 0", "line 1", "line 2"]


# arrays ----------------------------------------------------------------------------------------


def tasks_of(store: Store, array_id: int) -> list[JobRecord]:
    return listed(store, JobFilter(array_id=array_id))


def statuses_of(store: Store, array_id: int) -> list[JobStatus]:
    return [t.status for t in tasks_of(store, array_id)]


def array_of(store: Store, array_id: int) -> ArrayRecord:
    found = store.get_array(array_id)
    assert found is not None
    return found


def finish(store: Store, job_id: int, exit_code: int, now: float, definition: str = D) -> JobStatus:
    """Claim `job_id` (it must be the next claimable job of Q and `definition`) and end it."""
    claimed = store.claim("w", Q, definition, 1, LEASE, now)
    assert [c.id for c in claimed] == [job_id], claimed
    return store.complete("w", job_id, claimed[0].attempt, exit_code, None, now)


def test_array_submit_ids_tasks_and_counts(any_store: Store) -> None:
    now = time.time()
    (before,) = any_store.submit([job("single")], now)
    (array_id,) = any_store.submit(
        [job("arr", array=ArrayTasks(indices=[1, 2, 3], spec="1-3"), env={"E": "1"}, retries=1)],
        now,
    )
    (after,) = any_store.submit([job("later")], now)
    # the array takes one id for itself, then one per task
    assert array_id > before
    assert after == array_id + 4
    assert any_store.get_job(array_id) is None  # the array itself is not a job

    tasks = tasks_of(any_store, array_id)
    assert [t.id for t in tasks] == [array_id + 1, array_id + 2, array_id + 3]
    assert [t.array_index for t in tasks] == [1, 2, 3]
    assert {(t.array_id, t.array_size, t.name, t.status) for t in tasks} == {
        (array_id, 3, "arr", JobStatus.WAITING)
    }
    assert all(t.env == {"E": "1"} and t.retries_left == 1 for t in tasks)
    one = any_store.get_job(array_id + 2)
    assert one is not None and (one.array_id, one.array_index) == (array_id, 2)
    single = any_store.get_job(before)
    assert single is not None and single.array_id is None and single.array_size is None

    record = array_of(any_store, array_id)
    assert (record.id, record.name, record.size, record.spec, record.kind) == (
        array_id,
        "arr",
        3,
        "1-3",
        "array",
    )
    assert record.counts == {s.value: 0 for s in JobStatus} | {"Waiting": 3}
    assert record.status == "Waiting" and not record.finished
    assert any_store.get_array(before) is None
    assert any_store.get_array(array_id + 1) is None  # a task is not an array

    # counts are of tasks, never of the array line
    counts = any_store.count_jobs(JobFilter())
    assert counts[JobStatus.WAITING] == 5 and sum(counts.values()) == 5
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == 3

    finish(any_store, before, 0, now)
    finish(any_store, array_id + 1, 0, now)
    assert finish(any_store, array_id + 2, 7, now) is JobStatus.WAITING  # retried
    assert array_of(any_store, array_id).counts["Waiting"] == 2
    assert finish(any_store, array_id + 2, 5, now) is JobStatus.FAILED
    running = any_store.claim("w", Q, D, 1, LEASE, now)
    assert [r.id for r in running] == [array_id + 3]
    record = array_of(any_store, array_id)
    assert record.counts == {s.value: 0 for s in JobStatus} | {
        "Successful": 1,
        "Failed": 1,
        "Running": 1,
    }
    assert record.status == "Running" and not record.finished
    any_store.cancel(JobFilter(ids=(array_id + 3,)), now)
    any_store.complete("w", array_id + 3, 1, 143, None, now)
    record = array_of(any_store, array_id)
    assert record.counts["Cancelled"] == 1 and record.counts["Running"] == 0
    assert record.status == "Failed" and record.finished
    # the highest exit code of a failed task (a cancelled task's 143 does not count)
    assert record.highest_exit_code == 5
    assert record.as_dict()["status"] == "Failed"


def test_list_jobs_collapse_shows_one_line_per_array(any_store: Store) -> None:
    now = time.time()
    a = submit_one(any_store, now, name="a")
    (arr1,) = any_store.submit([job("arr1", array=ArrayTasks(indices=[1, 2]))], now)
    b = submit_one(any_store, now, name="b")
    (arr2,) = any_store.submit([job("arr2", queue="q2", array=ArrayTasks(indices=[5]))], now)
    c = submit_one(any_store, now, name="c", queue="q2")

    flat = any_store.list_jobs(JobFilter(), limit=100)
    assert [r.id for r in flat] == [a, arr1 + 1, arr1 + 2, b, arr2 + 1, c]
    lines = any_store.list_jobs(JobFilter(), limit=100, collapse=True)
    assert [(r.kind, r.id) for r in lines] == [
        ("job", a),
        ("array", arr1),
        ("job", b),
        ("array", arr2),
        ("job", c),
    ]
    assert isinstance(lines[1], ArrayRecord) and lines[1].size == 2
    assert lines[1].counts["Waiting"] == 2
    # pages by id, arrays included
    page = any_store.list_jobs(JobFilter(), limit=2, after=a, collapse=True)
    assert [r.id for r in page] == [arr1, b]
    page = any_store.list_jobs(JobFilter(), limit=2, after=b, collapse=True)
    assert [r.id for r in page] == [arr2, c]
    # filters apply to the array lines too
    in_q2 = any_store.list_jobs(JobFilter(queue="q2"), limit=100, collapse=True)
    assert [r.id for r in in_q2] == [arr2, c]
    by_prefix = any_store.list_jobs(JobFilter(name_prefix="arr"), limit=100, collapse=True)
    assert [r.id for r in by_prefix] == [arr1, arr2]
    assert [r.id for r in any_store.list_jobs(JobFilter(name_prefix="arr"), limit=100)] == [
        arr1 + 1,
        arr1 + 2,
        arr2 + 1,
    ]
    assert [r.id for r in any_store.list_jobs(JobFilter(array_id=arr1), limit=100)] == [
        arr1 + 1,
        arr1 + 2,
    ]
    assert any_store.list_jobs(JobFilter(array_id=a), limit=100) == []


def test_list_jobs_collapse_keeps_the_array_filter(any_store: Store) -> None:
    now = time.time()
    (arr1,) = any_store.submit([job("arr1", array=ArrayTasks(indices=[1, 2]))], now)
    (arr2,) = any_store.submit([job("arr2", array=ArrayTasks(indices=[1, 2]))], now)
    lines = any_store.list_jobs(JobFilter(array_id=arr1), limit=100, collapse=True)
    assert arr2 not in [r.id for r in lines]


def test_array_per_task_names_env_and_replacements(any_store: Store) -> None:
    now = time.time()
    tasks = ArrayTasks(
        indices=[1, 2, 3],
        names=["item-a", "", "item-c"],
        params=[
            {"env": {"ITEM": "a", "SHARED": "task"}, "replacements": {"@ITEM@": "a"}},
            {},
            {"replacements": {"@ITEM@": "c", "@N@": 3}},
        ],
    )
    (array_id,) = any_store.submit(
        [job("items", script="run @ITEM@ @N@\n", env={"SHARED": "array"}, array=tasks)], now
    )
    first, second, third = tasks_of(any_store, array_id)
    assert [first.name, second.name, third.name] == ["item-a", "items", "item-c"]
    assert [t.id for t in any_store.list_jobs(JobFilter(name="item-c"), limit=10)] == [third.id]

    scripts = []
    for t in (first, second, third):
        found = any_store.get_job(t.id, with_script=True)
        assert found is not None
        scripts.append(found.script)
    assert scripts == ["run a @N@\n", "run @ITEM@ @N@\n", "run c 3\n"]
    plain = any_store.get_job(first.id)
    assert plain is not None and plain.script is None

    claimed = {c.id: c for c in any_store.claim("w", Q, D, 10, LEASE, now)}
    assert sorted(claimed) == [first.id, second.id, third.id]
    assert claimed[first.id].script == "run a @N@\n"
    assert claimed[third.id].script == "run c 3\n"
    # the task's variables over the array's
    assert claimed[first.id].env == {"SHARED": "task", "ITEM": "a"}
    assert claimed[second.id].env == {"SHARED": "array"}
    assert claimed[third.id].array_index == 3


def test_array_options_priority_and_time_limit_reach_tasks(any_store: Store) -> None:
    now = time.time()
    options = {"stdout": "out-%A_%a.txt", "join": True}
    (array_id,) = any_store.submit(
        [job(array=ArrayTasks(indices=[1, 2]), options=options, time_limit=90, priority=3)], now
    )
    single = submit_one(any_store, now, options={"stderr": "e.txt"}, time_limit=5)
    for t in tasks_of(any_store, array_id):
        assert (t.options, t.time_limit, t.priority) == (options, 90, 3)
    found = any_store.get_job(single)
    assert found is not None and (found.options, found.time_limit) == ({"stderr": "e.txt"}, 5)
    record = array_of(any_store, array_id)
    assert (record.options, record.time_limit, record.priority) == (options, 90, 3)
    claimed = any_store.claim("w", Q, D, 1, LEASE, now)
    assert claimed[0].options == options and claimed[0].time_limit == 90


def test_array_cap_limits_running_tasks(any_store: Store) -> None:
    now = time.time()
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2, 3, 4, 5], cap=2))], now)
    other = submit_one(any_store, now)
    assert array_of(any_store, array_id).cap == 2
    # only 2 of the 5 are wanted now, plus the single job
    assert any_store.demand() == [(Q, D, 3, 0)]
    first = any_store.claim("w", Q, D, 10, LEASE, now)
    assert [c.id for c in first] == [array_id + 1, array_id + 2, other]
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    assert any_store.demand() == [(Q, D, 0, 3)]

    any_store.complete("w", array_id + 1, 1, 0, None, now)
    assert any_store.demand() == [(Q, D, 1, 2)]
    again = any_store.claim("w", Q, D, 10, LEASE, now)
    assert [c.id for c in again] == [array_id + 3]
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    # a failed attempt with no retries also frees its place, as does a lost one
    any_store.complete("w", array_id + 2, 1, 1, None, now)
    any_store.expire_leases(now + LEASE + 1)
    assert statuses_of(any_store, array_id).count(JobStatus.RUNNING) == 0
    later = now + LEASE + 2
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, later)] == [
        array_id + 4,
        array_id + 5,
    ]
    counts = array_of(any_store, array_id).counts
    assert counts["Running"] == 2 and counts["Waiting"] == 0


def test_priority_higher_first_ties_by_id(any_store: Store) -> None:
    now = time.time()
    low, high, mid, high2 = any_store.submit(
        [job(priority=-5), job(priority=10), job(), job(priority=10)], now
    )
    (array_id,) = any_store.submit([job(priority=5, array=ArrayTasks(indices=[1, 2]))], now)
    order = [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)]
    assert order == [high, high2, array_id + 1, array_id + 2, mid, low]
    found = any_store.get_job(high)
    assert found is not None and found.priority == 10


# hold and release ------------------------------------------------------------------------------


def test_hold_and_release(any_store: Store) -> None:
    now = time.time()
    held = submit_one(any_store, now, hold=True)
    waiting = submit_one(any_store, now)
    assert status_of(any_store, held) is JobStatus.HELD
    assert any_store.count_jobs(JobFilter())[JobStatus.HELD] == 1
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [waiting]
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    assert any_store.demand() == [(Q, D, 0, 1)]

    result = any_store.release(JobFilter(ids=(held,)), now)
    assert (result.changed, result.unchanged) == (1, [])
    assert status_of(any_store, held) is JobStatus.WAITING
    # releasing again: nothing to change, and named by id it is reported
    assert any_store.release(JobFilter(ids=(held,)), now).unchanged == [held]

    # a Waiting job can be held; a Running one cannot
    result = any_store.hold(JobFilter(ids=(held, waiting)), now)
    assert (result.changed, result.unchanged) == (1, [waiting])
    assert status_of(any_store, held) is JobStatus.HELD
    assert status_of(any_store, waiting) is JobStatus.RUNNING
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    # a finished job named by id cannot change either
    any_store.complete("w", waiting, 1, 0, None, now)
    assert any_store.hold(JobFilter(ids=(waiting,)), now).unchanged == [waiting]
    assert any_store.release(JobFilter(ids=(waiting,)), now).unchanged == [waiting]

    # by filter, with nothing listed for jobs that could not change
    more = any_store.submit([job("h"), job("h"), job("other")], now)
    result = any_store.hold(JobFilter(name="h"), now)
    assert (result.changed, result.unchanged) == (2, [])
    assert [status_of(any_store, i) for i in more] == [
        JobStatus.HELD,
        JobStatus.HELD,
        JobStatus.WAITING,
    ]
    result = any_store.release(JobFilter(queue=Q), now)
    assert (result.changed, result.unchanged) == (3, [])  # held, and both "h"
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [held, *more]
    texts = [e.text for e in any_store.read_log(held, [LogKind.SYSTEM])]
    assert "held" in texts and "released" in texts


def test_release_with_pending_dependencies_is_blocked(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    dependent = submit_one(any_store, now, hold=True, depends=(Dependency("afterok", first),))
    assert status_of(any_store, dependent) is JobStatus.HELD
    assert any_store.release(JobFilter(ids=(dependent,)), now).changed == 1
    assert status_of(any_store, dependent) is JobStatus.BLOCKED
    # a Blocked job can be held too; its dependency is met while it is held
    assert any_store.hold(JobFilter(ids=(dependent,)), now).changed == 1
    finish(any_store, first, 0, now)
    assert status_of(any_store, dependent) is JobStatus.HELD
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    any_store.release(JobFilter(ids=(dependent,)), now)
    assert status_of(any_store, dependent) is JobStatus.WAITING


def test_hold_and_release_array_tasks(any_store: Store) -> None:
    now = time.time()
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2, 3]), hold=True)], now)
    assert statuses_of(any_store, array_id) == [JobStatus.HELD] * 3
    assert array_of(any_store, array_id).status == "Held"
    result = any_store.release(any_store.resolve([Selector(array_id, (2,))]), now)
    assert (result.changed, result.unchanged) == (1, [])
    assert statuses_of(any_store, array_id) == [JobStatus.HELD, JobStatus.WAITING, JobStatus.HELD]
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [array_id + 2]
    assert any_store.release(any_store.resolve([Selector(array_id)]), now).changed == 2
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [
        array_id + 1,
        array_id + 3,
    ]


# dependencies --------------------------------------------------------------------------------


def test_afterok_blocks_until_success(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    dependent = submit_one(any_store, now, depends=(Dependency("afterok", first),))
    assert status_of(any_store, dependent) is JobStatus.BLOCKED
    assert any_store.count_jobs(JobFilter())[JobStatus.BLOCKED] == 1
    assert any_store.demand() == [(Q, D, 1, 0)]  # Blocked is no demand
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [first]
    assert status_of(any_store, dependent) is JobStatus.BLOCKED
    any_store.complete("w", first, 1, 0, None, now)
    assert status_of(any_store, dependent) is JobStatus.WAITING
    assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [dependent]


def test_afterok_on_a_failure_fails_the_dependent(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now, retries=1)
    dependent = submit_one(any_store, now, depends=(Dependency("afterok", first),))
    assert finish(any_store, first, 3, now) is JobStatus.WAITING  # retried: still pending
    assert status_of(any_store, dependent) is JobStatus.BLOCKED
    assert finish(any_store, first, 3, now) is JobStatus.FAILED
    found = any_store.get_job(dependent)
    assert found is not None
    assert found.status is JobStatus.FAILED
    assert found.reason is not None and "can never be met" in found.reason
    assert str(first) in found.reason
    assert found.ended == pytest.approx(now)
    assert found.attempt == 0
    assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    events = [e.text for e in any_store.read_log(dependent, [LogKind.SYSTEM])]
    assert any("can never be met" in t for t in events)


@pytest.mark.parametrize(
    ("kind", "exit_code", "expected"),
    [
        ("afternotok", 1, JobStatus.WAITING),
        ("afternotok", 0, JobStatus.FAILED),
        ("afterany", 0, JobStatus.WAITING),
        ("afterany", 1, JobStatus.WAITING),
        ("afterok", 0, JobStatus.WAITING),
        ("afterok", 1, JobStatus.FAILED),
    ],
)
def test_dependency_kinds(any_store: Store, kind: str, exit_code: int, expected: JobStatus) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    dependent = submit_one(any_store, now, depends=(Dependency(kind, first),))
    assert status_of(any_store, dependent) is JobStatus.BLOCKED
    finish(any_store, first, exit_code, now)
    assert status_of(any_store, dependent) is expected
    if expected is JobStatus.FAILED:
        found = any_store.get_job(dependent)
        assert found is not None and "can never be met" in (found.reason or "")


@pytest.mark.parametrize(
    ("kind", "exit_code", "expected"),
    [
        ("afterok", 0, JobStatus.WAITING),
        ("afterok", 1, JobStatus.FAILED),
        ("afternotok", 1, JobStatus.WAITING),
        ("afternotok", 0, JobStatus.FAILED),
        ("afterany", 0, JobStatus.WAITING),
        ("afterany", 1, JobStatus.WAITING),
    ],
)
def test_dependency_on_a_finished_job_is_judged_at_submit(
    any_store: Store, kind: str, exit_code: int, expected: JobStatus
) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    finish(any_store, first, exit_code, now)
    dependent = submit_one(any_store, now + 1, depends=(Dependency(kind, first),))
    found = any_store.get_job(dependent)
    assert found is not None
    assert found.status is expected
    if expected is JobStatus.FAILED:
        assert "can never be met" in (found.reason or "")
        assert found.ended == pytest.approx(now + 1)
        assert any_store.claim("w", Q, D, 10, LEASE, now) == []
    else:
        assert [c.id for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [dependent]


def test_dependency_on_a_cancelled_job(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    any_store.cancel(JobFilter(ids=(first,)), now)
    ok = submit_one(any_store, now, depends=(Dependency("afterok", first),))
    notok = submit_one(any_store, now, depends=(Dependency("afternotok", first),))
    assert status_of(any_store, ok) is JobStatus.FAILED
    assert status_of(any_store, notok) is JobStatus.WAITING


def test_dependency_on_an_unknown_id_creates_nothing(any_store: Store) -> None:
    now = time.time()
    known = submit_one(any_store, now)
    with pytest.raises(UsageError) as error:
        any_store.submit(
            [
                job("fine"),
                job(depends=(Dependency("afterok", known), Dependency("afterany", 99999))),
            ],
            now,
        )
    assert "99999" in str(error.value)
    with pytest.raises(UsageError):
        any_store.submit(
            [job(array=ArrayTasks(indices=[1, 2]), depends=(Dependency("afterok", 99999),))], now
        )
    assert [j.id for j in any_store.list_jobs(JobFilter(), limit=10)] == [known]
    assert sum(any_store.count_jobs(JobFilter()).values()) == 1
    # the store still takes submits after the refusals
    (after,) = any_store.submit([job()], now)
    assert after > known and status_of(any_store, after) is JobStatus.WAITING


def test_several_dependencies_all_needed(any_store: Store) -> None:
    now = time.time()
    a, b = any_store.submit([job(), job()], now)
    both = submit_one(any_store, now, depends=(Dependency("afterok", a), Dependency("afterany", b)))
    finish(any_store, a, 0, now)
    assert status_of(any_store, both) is JobStatus.BLOCKED
    finish(any_store, b, 1, now)
    assert status_of(any_store, both) is JobStatus.WAITING


def test_the_same_dependency_twice_is_met_once(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    twice = (Dependency("afterok", first), Dependency("afterok", first))
    dependent = submit_one(any_store, now, depends=twice)
    finish(any_store, first, 0, now)
    assert status_of(any_store, dependent) is JobStatus.WAITING


def test_afterok_on_an_array_waits_for_every_task(any_store: Store) -> None:
    now = time.time()
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2, 3]))], now)
    ok = submit_one(any_store, now, depends=(Dependency("afterok", array_id),))
    anyway = submit_one(any_store, now, depends=(Dependency("afterany", array_id),))
    on_task = submit_one(any_store, now, depends=(Dependency("afterok", array_id + 1),))
    finish(any_store, array_id + 1, 0, now)
    assert status_of(any_store, on_task) is JobStatus.WAITING  # a task's own id works too
    finish(any_store, array_id + 2, 0, now)
    assert status_of(any_store, ok) is JobStatus.BLOCKED
    assert status_of(any_store, anyway) is JobStatus.BLOCKED
    finish(any_store, array_id + 3, 0, now)
    assert status_of(any_store, ok) is JobStatus.WAITING
    assert status_of(any_store, anyway) is JobStatus.WAITING


def test_afterok_on_an_array_fails_at_its_first_failed_task(any_store: Store) -> None:
    now = time.time()
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2, 3]))], now)
    ok = submit_one(any_store, now, depends=(Dependency("afterok", array_id),))
    notok = submit_one(any_store, now, depends=(Dependency("afternotok", array_id),))
    finish(any_store, array_id + 1, 4, now)
    assert status_of(any_store, ok) is JobStatus.FAILED  # can never be met, at once
    assert status_of(any_store, notok) is JobStatus.BLOCKED  # not until all have ended
    finish(any_store, array_id + 2, 0, now)
    finish(any_store, array_id + 3, 0, now)
    assert status_of(any_store, notok) is JobStatus.WAITING


def test_array_depending_on_a_job(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    (array_id,) = any_store.submit(
        [job(array=ArrayTasks(indices=[1, 2]), depends=(Dependency("afterok", first),))], now
    )
    assert statuses_of(any_store, array_id) == [JobStatus.BLOCKED] * 2
    assert array_of(any_store, array_id).status == "Blocked"
    finish(any_store, first, 0, now)
    assert statuses_of(any_store, array_id) == [JobStatus.WAITING] * 2


def test_aftercorr_task_by_task(any_store: Store) -> None:
    now = time.time()
    # A runs on its own definition, so claiming its tasks never claims one of B's
    (a,) = any_store.submit([job("A", definition="dA", array=ArrayTasks(indices=[1, 2, 3]))], now)
    after_a = (Dependency("aftercorr", a),)
    (b,) = any_store.submit(
        [job("B", array=ArrayTasks(indices=[1, 2, 3, 4]), depends=after_a)], now
    )
    # task 4 has no counterpart in A: nothing to wait for
    assert statuses_of(any_store, b) == [JobStatus.BLOCKED] * 3 + [JobStatus.WAITING]
    assert len(any_store.claim("w", Q, "dA", 10, LEASE, now)) == 3
    assert statuses_of(any_store, b)[:3] == [JobStatus.BLOCKED] * 3  # running is not ended

    any_store.complete("w", a + 2, 1, 0, None, now)
    assert statuses_of(any_store, b)[:3] == [
        JobStatus.BLOCKED,
        JobStatus.WAITING,
        JobStatus.BLOCKED,
    ]
    any_store.complete("w", a + 1, 1, 1, None, now)
    first = any_store.get_job(b + 1)
    assert first is not None and first.status is JobStatus.FAILED
    assert "can never be met" in (first.reason or "")
    assert f"task 1 of array {a}" in (first.reason or "")
    assert statuses_of(any_store, b)[1:] == [
        JobStatus.WAITING,
        JobStatus.BLOCKED,
        JobStatus.WAITING,
    ]
    any_store.complete("w", a + 3, 1, 0, None, now)
    assert statuses_of(any_store, b) == [JobStatus.FAILED] + [JobStatus.WAITING] * 3
    assert [c.array_index for c in any_store.claim("w", Q, D, 10, LEASE, now)] == [2, 3, 4]

    # submitted after A ended: judged per task at once
    (late,) = any_store.submit(
        [job("late", array=ArrayTasks(indices=[1, 2]), depends=after_a)], now
    )
    assert statuses_of(any_store, late) == [JobStatus.FAILED, JobStatus.WAITING]


def test_aftercorr_needs_arrays(any_store: Store) -> None:
    now = time.time()
    (a,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2]))], now)
    single = submit_one(any_store, now)
    with pytest.raises(UsageError):
        any_store.submit([job(depends=(Dependency("aftercorr", a),))], now)
    with pytest.raises(UsageError):
        any_store.submit(
            [job(array=ArrayTasks(indices=[1]), depends=(Dependency("aftercorr", single),))], now
        )
    assert sum(any_store.count_jobs(JobFilter()).values()) == 3


def test_failure_cascades_down_a_chain(any_store: Store) -> None:
    now = time.time()
    a = submit_one(any_store, now)
    b = submit_one(any_store, now, depends=(Dependency("afterok", a),))
    c = submit_one(any_store, now, depends=(Dependency("afterok", b),))
    (arr,) = any_store.submit(
        [job(array=ArrayTasks(indices=[1, 2]), depends=(Dependency("afterok", c),))], now
    )
    after_arr = submit_one(any_store, now, depends=(Dependency("afternotok", arr),))
    finish(any_store, a, 2, now)
    assert status_of(any_store, b) is JobStatus.FAILED
    assert status_of(any_store, c) is JobStatus.FAILED
    assert statuses_of(any_store, arr) == [JobStatus.FAILED] * 2
    assert array_of(any_store, arr).status == "Failed"
    assert status_of(any_store, after_arr) is JobStatus.WAITING
    found = any_store.get_job(c)
    assert found is not None and str(b) in (found.reason or "")


def test_cancelling_a_waiting_job_settles_its_dependents(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now)
    ok = submit_one(any_store, now, depends=(Dependency("afterok", first),))
    anyway = submit_one(any_store, now, depends=(Dependency("afterany", first),))
    notok = submit_one(any_store, now, depends=(Dependency("afternotok", first),))
    result = any_store.cancel(JobFilter(ids=(first,)), now)
    assert (result.cancelled, result.stopping, result.finished) == (1, 0, [])
    assert status_of(any_store, ok) is JobStatus.FAILED
    assert status_of(any_store, anyway) is JobStatus.WAITING
    assert status_of(any_store, notok) is JobStatus.WAITING
    # cancelling a Blocked or Held job ends it too
    blocked = submit_one(any_store, now, depends=(Dependency("afterok", anyway),))
    held = submit_one(any_store, now, hold=True)
    result = any_store.cancel(JobFilter(ids=(blocked, held)), now)
    assert (result.cancelled, result.stopping, result.finished) == (2, 0, [])
    assert status_of(any_store, blocked) is JobStatus.CANCELLED
    assert status_of(any_store, held) is JobStatus.CANCELLED


def test_cancel_of_a_job_and_its_dependent_counts_it_once(any_store: Store) -> None:
    now = time.time()
    (y,) = any_store.submit([job("y", array=ArrayTasks(indices=[1, 2, 3]))], now)
    (x,) = any_store.submit(
        [job("x", array=ArrayTasks(indices=[1, 2, 3]), depends=(Dependency("aftercorr", y),))],
        now,
    )
    z = submit_one(any_store, now, queue="q2", depends=(Dependency("afterany", x),))
    # task 1 of y and its counterpart in x, in one request
    result = any_store.cancel(any_store.resolve([Selector(y, (1,)), Selector(x, (1,))]), now)
    assert result.cancelled == 2  # both named, both cancelled, counted once each
    assert status_of(any_store, x + 1) is JobStatus.CANCELLED
    finish(any_store, y + 2, 0, now)
    finish(any_store, y + 3, 0, now)
    finish(any_store, x + 2, 0, now)
    assert status_of(any_store, x + 3) is JobStatus.WAITING
    assert status_of(any_store, z) is JobStatus.BLOCKED  # x has a task still to run


# selecting ---------------------------------------------------------------------------------


def test_resolve_jobs_arrays_and_tasks(any_store: Store) -> None:
    now = time.time()
    single = submit_one(any_store, now)
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2, 3, 4]))], now)
    assert any_store.resolve([Selector(single)]) == JobFilter(ids=(single,))
    assert any_store.resolve([Selector(array_id)]) == JobFilter(arrays=((array_id, None),))
    assert any_store.resolve([Selector(array_id, (2, 3)), Selector(single)]) == JobFilter(
        ids=(single,), arrays=((array_id, (2, 3)),)
    )
    # a task by its own id is a job
    assert any_store.resolve([Selector(array_id + 1)]) == JobFilter(ids=(array_id + 1,))
    with pytest.raises(UsageError) as error:
        any_store.resolve([Selector(single, (1,))])
    assert str(single) in str(error.value) and "not an array" in str(error.value)
    with pytest.raises(UsageError):
        any_store.resolve([Selector(999999, (1,))])

    all_tasks = any_store.resolve([Selector(array_id)])
    assert any_store.count_jobs(all_tasks)[JobStatus.WAITING] == 4
    assert [j.id for j in any_store.list_jobs(all_tasks, limit=10)] == [
        array_id + n for n in (1, 2, 3, 4)
    ]


def test_cancel_some_tasks_of_an_array(any_store: Store) -> None:
    now = time.time()
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=[1, 2, 3, 4]))], now)
    single = submit_one(any_store, now)
    result = any_store.cancel(any_store.resolve([Selector(array_id, (2, 3))]), now)
    assert (result.cancelled, result.stopping, result.finished) == (2, 0, [])
    assert statuses_of(any_store, array_id) == [
        JobStatus.WAITING,
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
        JobStatus.WAITING,
    ]
    assert status_of(any_store, single) is JobStatus.WAITING
    # the whole array: the running task is stopped, the rest cancelled
    assert [c.id for c in any_store.claim("w", Q, D, 1, LEASE, now)] == [array_id + 1]
    result = any_store.cancel(any_store.resolve([Selector(array_id)]), now)
    assert (result.cancelled, result.stopping, result.finished) == (1, 1, [])
    assert any_store.complete("w", array_id + 1, 1, 143, None, now) is JobStatus.CANCELLED
    record = array_of(any_store, array_id)
    assert record.counts["Cancelled"] == 4 and record.status == "Cancelled"


def test_big_array_is_one_quick_submit(any_store: Store) -> None:
    now = time.time()
    started = time.monotonic()
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=list(range(10_000))))], now)
    # a bound a loaded machine keeps, that per-task round trips or quadratic work would not:
    # the speed itself is bench/run's to measure
    assert time.monotonic() - started < 60
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == 10_000
    assert array_of(any_store, array_id).size == 10_000
    last = any_store.get_job(array_id + 10_000)
    assert last is not None and (last.array_id, last.array_index) == (array_id, 9_999)
    assert submit_one(any_store, now) == array_id + 10_001
    assert any_store.demand() == [(Q, D, 10_001, 0)]


# arrays whose tasks are made after the submit (SQLite makes the first FIRST at
# submit, the rest later; every answer must be as if all were written at submit) ----------

FIRST = 10  # tasks a submit makes in these tests (SQLite's setting, lowered to keep them quick)
LATER = FIRST * 3 + 7  # an array with tasks left to make, past several chunks


def made_later(store: Store) -> Store:
    """The store, making the first FIRST tasks at submit and 8 at a time later."""
    from hyper.store.dynamodb import DynamoDBStore

    if isinstance(store, SQLiteStore | DynamoDBStore):
        store.first_tasks, store.tasks_per_make = FIRST, 8
    return store


def later_array(store: Store, now: float, n: int = LATER, **kwargs: object) -> int:
    """An array of `n` tasks of indices 1..n."""
    made_later(store)
    tasks = ArrayTasks(indices=list(range(1, n + 1)), spec=f"1-{n}")
    (array_id,) = store.submit([job("lazy", array=tasks, **kwargs)], now)  # type: ignore[arg-type]
    return array_id


def test_array_tasks_not_made_yet_read_as_if_written(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now)
    (after,) = any_store.submit([job("after")], now)
    assert after == array_id + LATER + 1
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == LATER
    assert any_store.count_jobs(JobFilter())[JobStatus.WAITING] == LATER + 1
    assert array_of(any_store, array_id).counts["Waiting"] == LATER
    assert any_store.demand() == [(Q, D, LATER + 1, 0)]
    # a page across the tasks made and those not
    start = array_id + FIRST - 5
    page = any_store.list_jobs(JobFilter(queue=Q), limit=20, after=start)
    assert [j.id for j in page] == list(range(start + 1, start + 21))
    assert all(isinstance(j, JobRecord) and j.array_index == j.id - array_id for j in page)
    last = any_store.get_job(array_id + LATER, with_script=True)
    assert last is not None and (last.array_index, last.status) == (LATER, JobStatus.WAITING)
    assert last.script == "echo hi\n" and last.name == "lazy"
    assert any_store.get_job(array_id + LATER + 1) is not None  # the job after it
    # selectors name tasks not made yet
    where = any_store.resolve([Selector(array_id + LATER - 1), Selector(array_id, (LATER,))])
    assert where.ids == (array_id + LATER - 1,)
    counted = any_store.count_jobs(where)
    assert counted[JobStatus.WAITING] == 2 and sum(counted.values()) == 2
    every = tasks_of(any_store, array_id)
    assert [t.array_index for t in every] == list(range(1, LATER + 1))
    assert [t.id for t in every] == list(range(array_id + 1, array_id + LATER + 1))
    assert {(t.status, t.name, t.created) for t in every} == {(JobStatus.WAITING, "lazy", now)}
    assert len(listed(any_store, JobFilter(name="lazy"))) == LATER


def test_cancel_hold_release_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now)
    far = tuple(range(LATER - 10, LATER - 7))  # qdel ID[LATER-10 - LATER-8]
    result = any_store.cancel(any_store.resolve([Selector(array_id, far)]), now)
    assert (result.cancelled, result.stopping) == (3, 0)
    counts = array_of(any_store, array_id).counts
    assert (counts["Cancelled"], counts["Waiting"]) == (3, LATER - 3)
    assert [status_of(any_store, array_id + i) for i in (LATER - 11, *far, LATER - 7)] == [
        JobStatus.WAITING, *[JobStatus.CANCELLED] * 3, JobStatus.WAITING,
    ]  # fmt: skip
    # hold a range not made yet, then the whole array, then release it
    held = any_store.hold(JobFilter(arrays=((array_id, (LATER - 1, LATER)),)), now)
    assert held.changed == 2
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.HELD] == 2
    assert any_store.hold(JobFilter(arrays=((array_id, None),)), now).changed == LATER - 5
    assert any_store.demand() == []
    released = any_store.release(JobFilter(arrays=((array_id, None),)), now)
    assert released.changed == LATER - 3
    counts = array_of(any_store, array_id).counts
    assert (counts["Waiting"], counts["Held"], counts["Cancelled"]) == (LATER - 3, 0, 3)
    assert any_store.demand() == [(Q, D, LATER - 3, 0)]


def test_cancel_of_whole_arrays_with_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now)
    on_task = submit_one(any_store, now, depends=(Dependency("afterok", array_id + LATER),))
    on_array = submit_one(any_store, now, depends=(Dependency("afterany", array_id),))
    result = any_store.cancel(any_store.resolve([Selector(array_id)]), now)
    assert (result.cancelled, result.stopping, result.finished) == (LATER, 0, [])
    record = array_of(any_store, array_id)
    assert record.counts["Cancelled"] == LATER and record.finished
    assert statuses_of(any_store, array_id) == [JobStatus.CANCELLED] * LATER
    last = any_store.get_job(array_id + LATER)
    assert last is not None and last.cancel_requested and last.ended == now
    assert last.reason == rules.CANCELLED_BEFORE_START
    texts = [e.text for e in any_store.read_log(array_id + LATER, [LogKind.SYSTEM])]
    assert texts == [rules.CANCELLED_BEFORE_START]
    assert status_of(any_store, on_task) is JobStatus.FAILED
    assert status_of(any_store, on_array) is JobStatus.WAITING
    assert any_store.demand() == [(Q, D, 1, 0)]
    assert sum(any_store.ended_per_minute(now - 60).values()) == LATER + 1  # and on_task
    # by queue and state: every task of another array, made or not
    other = later_array(any_store, now, definition="dB")
    where = JobFilter(queue=Q, definition="dB", statuses=(JobStatus.WAITING,))
    assert any_store.cancel(where, now).cancelled == LATER
    assert any_store.count_jobs(JobFilter(array_id=other))[JobStatus.CANCELLED] == LATER
    assert [t.array_index for t in tasks_of(any_store, other)] == list(range(1, LATER + 1))


def test_a_held_array_with_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now, hold=True)
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.HELD] == LATER
    assert any_store.claim("w", Q, D, 5, LEASE, now) == []
    assert status_of(any_store, array_id + LATER) is JobStatus.HELD
    assert any_store.release(JobFilter(arrays=((array_id, None),)), now).changed == LATER
    assert statuses_of(any_store, array_id) == [JobStatus.WAITING] * LATER


def test_claims_take_tasks_not_made_yet_in_order(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now)
    single = submit_one(any_store, now)
    # the first FIRST tasks end: the next claims take the tasks after them, by id,
    # before the job submitted after the array
    first = tuple(range(1, FIRST + 1))
    any_store.cancel(JobFilter(arrays=((array_id, first),)), now)
    claimed = any_store.claim("w", Q, D, 3, LEASE, now)
    assert [c.id for c in claimed] == [array_id + FIRST + n for n in (1, 2, 3)]
    assert [c.script for c in claimed] == ["echo hi\n"] * 3
    higher = submit_one(any_store, now, priority=5)
    assert claim_one(any_store, "w", now) == higher
    assert claim_one(any_store, "w", now) == array_id + FIRST + 4
    assert single not in [c.id for c in any_store.claim("w", Q, D, 2, LEASE, now)]


def test_cap_on_an_array_with_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    tasks = ArrayTasks(indices=list(range(1, LATER + 1)), cap=2)
    made_later(any_store)
    (array_id,) = any_store.submit([job("capped", array=tasks)], now)
    assert [c.id for c in any_store.claim("w", Q, D, 5, LEASE, now)] == [
        array_id + 1,
        array_id + 2,
    ]
    assert any_store.demand() == [(Q, D, 0, 2)]


def test_dependencies_on_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now)
    last = array_id + LATER
    ok_after = submit_one(any_store, now, depends=(Dependency("afterok", last),))
    any_after = submit_one(any_store, now, depends=(Dependency("afterany", last),))
    assert status_of(any_store, ok_after) is JobStatus.BLOCKED
    any_store.cancel(JobFilter(ids=(last,)), now)
    assert status_of(any_store, ok_after) is JobStatus.FAILED
    assert status_of(any_store, any_after) is JobStatus.WAITING
    with pytest.raises(UsageError):  # past the array's last task: unknown
        submit_one(any_store, now, depends=(Dependency("afterok", last + 100),))


def test_an_array_waiting_on_a_job_with_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    first = submit_one(any_store, now, definition="dA")
    array_id = later_array(any_store, now, depends=(Dependency("afterok", first),))
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.BLOCKED] == LATER
    assert status_of(any_store, array_id + LATER) is JobStatus.BLOCKED
    assert finish(any_store, first, 0, now, definition="dA") is JobStatus.SUCCESSFUL
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == LATER
    assert statuses_of(any_store, array_id) == [JobStatus.WAITING] * LATER
    # and one that can never run: every task fails with it
    second = submit_one(any_store, now, definition="dA")
    failing = later_array(any_store, now, depends=(Dependency("afterok", second),))
    assert finish(any_store, second, 3, now, definition="dA") is JobStatus.FAILED
    assert any_store.count_jobs(JobFilter(array_id=failing))[JobStatus.FAILED] == LATER
    assert array_of(any_store, failing).finished


def test_aftercorr_on_an_array_with_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    a = later_array(any_store, now, definition="dA")
    any_store.cancel(JobFilter(arrays=((a, (LATER,)),)), now)  # A's last task never succeeds
    (b,) = any_store.submit(
        [
            job(
                "B",
                array=ArrayTasks(indices=list(range(1, LATER + 1))),
                depends=(Dependency("aftercorr", a),),
            )
        ],
        now,
    )
    statuses = statuses_of(any_store, b)
    assert statuses == [JobStatus.BLOCKED] * (LATER - 1) + [JobStatus.FAILED]
    any_store.cancel(JobFilter(arrays=((a, (LATER - 1,)),)), now)
    assert status_of(any_store, b + LATER - 1) is JobStatus.FAILED
    assert status_of(any_store, b + LATER - 2) is JobStatus.BLOCKED


def test_per_task_names_and_params_of_tasks_not_made_yet(any_store: Store) -> None:
    now = time.time()
    n = LATER
    made_later(any_store)
    tasks = ArrayTasks(
        indices=list(range(1, n + 1)),
        names=[f"item-{i}" if i % 2 else "" for i in range(1, n + 1)],
        params=[
            {"env": {"ITEM": str(i)}, "replacements": {"@I@": str(i)}} for i in range(1, n + 1)
        ],
    )
    (array_id,) = any_store.submit([job("items", script="run @I@\n", array=tasks)], now)
    last = any_store.get_job(array_id + n, with_script=True)
    assert last is not None
    assert (last.name, last.env, last.script) == (f"item-{n}", {"ITEM": str(n)}, f"run {n}\n")
    even = any_store.get_job(array_id + n - 1)
    assert even is not None and even.name == "items"
    assert [j.id for j in listed(any_store, JobFilter(name=f"item-{n - 2}"))] == [array_id + n - 2]
    assert any_store.count_jobs(JobFilter(name_prefix="item-"))[JobStatus.WAITING] == (n + 1) // 2


def test_tasks_not_made_yet_survive_a_new_handle(open_store: Callable[[], Store]) -> None:
    """What a submit acknowledged is on disk: another handle (a daemon started again after
    a kill) sees every task, made or not, and goes on making them."""
    now = time.time()
    first = open_store()
    array_id = later_array(first, now)
    second = made_later(open_store())
    assert second.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == LATER
    assert [t.array_index for t in tasks_of(second, array_id)] == list(range(1, LATER + 1))
    assert status_of(second, array_id + LATER) is JobStatus.WAITING


def test_make_tasks_is_bounded_and_changes_no_answer(any_store: Store) -> None:
    now = time.time()
    array_id = later_array(any_store, now)
    made = []
    while count := any_store.make_tasks(5):
        assert count <= 5
        made.append(count)
    assert sum(made) in (0, LATER - FIRST)  # 0: a store that writes all at submit
    assert any_store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == LATER
    assert [t.array_index for t in tasks_of(any_store, array_id)] == list(range(1, LATER + 1))
    assert any_store.demand() == [(Q, D, LATER, 0)]


def test_a_big_array_submit_writes_a_bounded_number_of_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        (array_id,) = store.submit([job(array=ArrayTasks(indices=list(range(50_000))))], 1.0)
        (rows,) = store._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert rows == rules.FIRST_TASKS
        assert store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == 50_000
        assert store.make_tasks() == rules.TASKS_PER_TICK  # a tick's share, no more
        (rows,) = store._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert rows == rules.FIRST_TASKS + rules.TASKS_PER_TICK
        # what cannot be among the tasks not made yet makes none: another name or state
        assert sum(store.count_jobs(JobFilter(name="other")).values()) == 0
        assert store.cancel(JobFilter(statuses=(JobStatus.HELD,)), 1.0).cancelled == 0
        assert store.release(JobFilter(queue=Q), 1.0).changed == 0
        (rows,) = store._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert rows == rules.FIRST_TASKS + rules.TASKS_PER_TICK
        # a deep page reads as if every task were there, and makes only what it shows
        page = store.list_jobs(JobFilter(array_id=array_id), limit=10, after=array_id + 40_000)
        assert [j.id for j in page] == list(range(array_id + 40_001, array_id + 40_011))
        (rows,) = store._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert rows == 40_010
    finally:
        store.close()


def test_a_cancel_in_steps_makes_a_big_arrays_tasks_a_step_at_a_time(tmp_path: Path) -> None:
    """`qdel` of fresh arrays in steps (limit): the tasks not made yet are made Cancelled,
    at most `limit` a step, so no step is one long transaction; together they end every
    task once, and the counts follow."""
    store = SQLiteStore(tmp_path / "s.db")
    try:
        arrays = [
            store.submit([job(array=ArrayTasks(indices=list(range(30_000))), hold=True)], 1.0)[0]
            for _ in range(2)
        ]
        steps = [store.cancel(JobFilter(queue=Q), 1.0, limit=20_000)]
        while steps[-1].more and len(steps) < 10:
            steps.append(store.cancel(JobFilter(queue=Q), 1.0, limit=20_000))
        assert [s.cancelled for s in steps if s.cancelled] == [20_000, 20_000, 20_000]
        for array_id in arrays:
            counts = store.count_jobs(JobFilter(array_id=array_id))
            assert {k: v for k, v in counts.items() if v} == {JobStatus.CANCELLED: 30_000}
            assert status_of(store, array_id + 30_000) is JobStatus.CANCELLED
        (rows,) = store._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert rows == 60_000
    finally:
        store.close()


def test_a_met_dependency_of_a_big_array_makes_no_tasks(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        now = time.time()
        first = submit_one(store, now)
        tasks = ArrayTasks(indices=list(range(50_000)))
        (array_id,) = store.submit([job(array=tasks, depends=(Dependency("afterok", first),))], now)
        assert finish(store, first, 0, now) is JobStatus.SUCCESSFUL
        (rows,) = store._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert rows == 1 + rules.FIRST_TASKS
        assert store.count_jobs(JobFilter(array_id=array_id))[JobStatus.WAITING] == 50_000
        assert store.demand() == [(Q, D, 50_000, 0)]
        assert status_of(store, array_id + 50_000) is JobStatus.WAITING
        claimed = store.claim("w", Q, D, 1, LEASE, now)
        assert [c.id for c in claimed] == [array_id + 1]
    finally:
        store.close()


# files -------------------------------------------------------------------------------------


def test_files_round_trip_and_are_replaced(any_store: Store) -> None:
    data = bytes(range(256)) * 1000  # every byte value, NUL included
    any_store.put_file("pkg/a.tar.gz", data, time.time())
    assert any_store.get_file("pkg/a.tar.gz") == data
    any_store.put_file("pkg/a.tar.gz", b"", time.time())
    assert any_store.get_file("pkg/a.tar.gz") == b""
    assert any_store.get_file("pkg/missing") is None
    assert any_store.get_file("pkg") is None  # a folder of keys is not a file


def test_delete_files_takes_the_key_and_what_is_under_it_only(any_store: Store) -> None:
    now = time.time()
    keys = ["jobs/1", "jobs/1/out.txt", "jobs/1/deep/er.txt", "jobs/12/out.txt", "jobs/1x", "j"]
    for key in keys:
        any_store.put_file(key, key.encode(), now)
    assert any_store.delete_files("jobs/1") == 3
    left = [k for k in keys if any_store.get_file(k) is not None]
    assert left == ["jobs/12/out.txt", "jobs/1x", "j"]
    assert any_store.delete_files("jobs/1") == 0
    assert any_store.delete_files("jobs") == 2
    assert any_store.get_file("j") == b"j"


# workflows ---------------------------------------------------------------------------------


def test_workflows_are_added_read_and_listed_newest_first(any_store: Store) -> None:
    now = time.time()
    first = any_store.add_workflow({"name": "a", "steps": [{"job_id": 3}]}, now)
    second = any_store.add_workflow({"name": "b"}, now + 1)
    assert second.id > first.id
    assert (first.finished, first.version, first.created) == (False, 1, now)
    found = any_store.get_workflow(first.id)
    assert found == first and found.data == {"name": "a", "steps": [{"job_id": 3}]}
    assert any_store.get_workflow(second.id + 100) is None
    assert [w.id for w in any_store.list_workflows()] == [second.id, first.id]
    assert [w.id for w in any_store.list_workflows(limit=1)] == [second.id]


def test_a_workflow_changes_only_from_the_version_read(open_store: Callable[[], Store]) -> None:
    store, other = open_store(), open_store()
    now = time.time()
    record = store.add_workflow({"state": "Running"}, now)
    changed = store.update_workflow(record, {"state": "Ending"}, finished=False, now=now + 1)
    assert (changed.version, changed.updated, changed.data) == (2, now + 1, {"state": "Ending"})
    # a second writer that read the first version is refused, and changes nothing
    with pytest.raises(Conflict):
        other.update_workflow(record, {"state": "Cancelled"}, finished=True, now=now + 2)
    assert other.get_workflow(record.id) == changed
    done = other.update_workflow(changed, {"state": "Failed"}, finished=True, now=now + 3)
    assert store.get_workflow(record.id) == done and done.finished


def test_only_unfinished_workflows_are_listed_as_such(any_store: Store) -> None:
    now = time.time()
    records = [any_store.add_workflow({"n": n}, now) for n in range(4)]
    any_store.update_workflow(records[1], {"n": 1}, finished=True, now=now)
    any_store.update_workflow(records[3], {"n": 3}, finished=True, now=now)
    assert [w.data["n"] for w in any_store.list_workflows(unfinished=True)] == [2, 0]
    assert [w.data["n"] for w in any_store.list_workflows()] == [3, 2, 1, 0]


# SQLite only ---------------------------------------------------------------------------------


def test_sqlite_submit_is_committed_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    now = time.time()
    first = SQLiteStore(path)
    try:
        ids = first.submit([job("a", script="echo a\n"), job("b")], now)
        # another connection sees the jobs while the first is still open
        other = SQLiteStore(path)
        try:
            assert [j.id for j in other.list_jobs(JobFilter(), limit=10)] == ids
            found = other.get_job(ids[0], with_script=True)
            assert found is not None and found.script == "echo a\n"
        finally:
            other.close()
    finally:
        first.close()

    reopened = SQLiteStore(path)
    try:
        assert [j.name for j in reopened.list_jobs(JobFilter(), limit=10)] == ["a", "b"]
        more = reopened.submit([job("c")], now)
        assert more[0] > ids[-1]
    finally:
        reopened.close()


def test_sqlite_a_queues_unfinished_jobs_are_listed_without_walking_those_that_ended(
    tmp_path: Path,
) -> None:
    """squeue's listing (a queue's unfinished jobs) costs the same with 20,000 ended jobs
    in the queue as with none: SQLite's steps are counted, not timed."""
    store = SQLiteStore(tmp_path / "s.db")
    now = time.time()
    unfinished = JobFilter(queue=Q, statuses=tuple(UNFINISHED))

    def steps_to_list() -> tuple[int, int]:
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        store._db.set_progress_handler(count, 1)
        try:
            listed = store.list_jobs(unfinished, limit=1000)
        finally:
            store._db.set_progress_handler(None, 1)
        return len(listed), steps[0]

    submit_one(store, now)
    alone = steps_to_list()
    tasks = ArrayTasks(indices=list(range(1, 20_001)), spec="1-20000")
    store.submit([job("ended", array=tasks, hold=True)], now)  # type: ignore[arg-type]
    store.cancel(JobFilter(queue=Q, statuses=(JobStatus.HELD,)), now)
    (rows,) = store._db.execute("SELECT count(*) FROM jobs WHERE status = 'Cancelled'").fetchone()
    assert rows == 20_000
    among_ended = steps_to_list()
    assert alone[0] == among_ended[0] == 1
    assert among_ended[1] < 2 * alone[1] + 100, (alone, among_ended)


def test_sqlite_ids_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    try:
        ids = store.submit([job(), job(), job()], time.time())
        with sqlite3.connect(path) as raw:
            raw.execute("DELETE FROM jobs WHERE id = ?", (ids[-1],))
        raw.close()
        (again,) = store.submit([job()], time.time())
        assert again > ids[-1]
    finally:
        store.close()


def test_sqlite_a_store_from_before_machines_said_their_capacity_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # the nodes table as it was, with a machine in it
        raw.execute(
            "CREATE TABLE nodes (id TEXT PRIMARY KEY, region TEXT NOT NULL, definition TEXT"
            " NOT NULL, slots INTEGER NOT NULL, hostname TEXT NOT NULL, joined REAL NOT NULL,"
            " last_seen REAL NOT NULL)"
        )
        raw.execute("INSERT INTO nodes VALUES ('n1', 'lab', 'd1', 2, 'n1.example', 1.0, 1.0)")
        raw.execute("PRAGMA user_version=5")
    store = SQLiteStore(path)
    try:
        (old,) = store.nodes()
        assert (old.id, old.slots, old.capacity) == ("n1", 2, "")  # it said nothing
        store.join_node(dataclasses.replace(old, capacity="4:8192:"))
        assert [n.capacity for n in store.nodes("lab")] == ["4:8192:"]
    finally:
        store.close()


def test_a_change_with_a_limit_is_made_in_steps(any_store: Store) -> None:
    """A cancel, hold or release of many jobs, made in steps of `limit` (a million jobs
    changed by one request would hold the host): each step changes at most `limit` jobs
    that have not started, says whether more may be left, and the steps together make
    exactly the change one call would."""
    now = time.time()
    running = submit_one(any_store, now)
    assert [c.id for c in any_store.claim("w", Q, D, 1, LEASE, now)] == [running]
    (array_id,) = any_store.submit([job(array=ArrayTasks(indices=list(range(1, 26))))], now)
    whole = JobFilter(queue=Q)

    held = [any_store.hold(whole, now, limit=10)]
    while held[-1].more and len(held) < 5:
        held.append(any_store.hold(whole, now, limit=10))
    assert [h.changed for h in held][:3] == [10, 10, 5]
    assert statuses_of(any_store, array_id) == [JobStatus.HELD] * 25
    released = any_store.release(whole, now, limit=30)
    assert (released.changed, released.more) == (25, False)

    steps: list[CancelResult] = []
    while (not steps or steps[-1].more) and len(steps) < 5:
        steps.append(any_store.cancel(whole, now, limit=10))
        assert steps[-1].cancelled <= 10
        assert steps[-1].stopping == 1  # the running job, asked to stop at each step
    assert [s.cancelled for s in steps][:3] == [10, 10, 5]
    assert sum(s.cancelled for s in steps) == 25
    assert statuses_of(any_store, array_id) == [JobStatus.CANCELLED] * 25
    assert any_store.count_jobs(whole)[JobStatus.CANCELLED] == 25
    assert any_store.heartbeat("w", running, 1, LEASE, now) is True  # its worker stops it


def test_sqlite_a_store_from_before_tasks_were_made_later_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    (old,) = store.submit([job("old", array=ArrayTasks(indices=[1, 2, 3]))], 1.0)
    store.close()
    with sqlite3.connect(path) as raw:  # the arrays table as it was
        raw.execute("DROP INDEX arrays_unmade")
        raw.execute("ALTER TABLE arrays DROP COLUMN plan")
        raw.execute("ALTER TABLE arrays DROP COLUMN made")
        raw.execute("PRAGMA user_version=5")
    store = SQLiteStore(path)
    try:
        assert statuses_of(store, old) == [JobStatus.WAITING] * 3
        new = later_array(store, 2.0)
        assert store.count_jobs(JobFilter())[JobStatus.WAITING] == 3 + LATER
        assert [c.id for c in store.claim("w", Q, D, 4, LEASE, 2.0)] == [
            old + 1, old + 2, old + 3, new + 1,
        ]  # fmt: skip
    finally:
        store.close()
