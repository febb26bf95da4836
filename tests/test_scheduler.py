"""The scheduler: how many workers it asks for, where, and which it forgets.

Runs over a real SQLite store with resources deployed by the real deployer and local
provider; the static region uses the real StaticLauncher, and "local" a small launcher
that records what it is asked for instead of starting processes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from hyper.deployer import Deployer
from hyper.launchers.base import Launcher, LaunchRequest
from hyper.launchers.static import StaticLauncher
from hyper.models import (
    ClusterSpec,
    DefinitionSpec,
    ImageSpec,
    QueueSpec,
    RegionSpec,
    ResourceKind,
    Spec,
)
from hyper.providers.local import LocalProvider
from hyper.scheduler import Scheduler, split_by_weight
from hyper.store.base import ArrayTasks, NewJob, NodeRecord, WorkerRecord
from hyper.store.sqlite import SQLiteStore

# ---- split_by_weight ------------------------------------------------------------------------


def test_split_in_proportion() -> None:
    assert split_by_weight(8, {"local": 1, "pool": 3}) == {"local": 2, "pool": 6}
    assert split_by_weight(9, {"a": 1, "b": 1, "c": 1}) == {"a": 3, "b": 3, "c": 3}
    assert split_by_weight(1, {"only": 5}) == {"only": 1}


def test_split_remainder_goes_to_the_largest_fraction() -> None:
    # exact shares 1/3 and 2/3: the one left goes to the larger fraction
    assert split_by_weight(1, {"a": 1, "b": 2}) == {"a": 0, "b": 1}
    # 10 * (1, 2, 4) / 7 = 1.43, 2.86, 5.71: floors 1, 2, 5, two left for .86 and .71
    assert split_by_weight(10, {"a": 1, "b": 2, "c": 4}) == {"a": 1, "b": 3, "c": 6}


def test_split_remainder_ties_go_to_the_larger_weight_then_the_name() -> None:
    # 2 * (1, 3) / 4 = 0.5, 1.5: equal fractions, the larger weight wins
    assert split_by_weight(2, {"a": 1, "b": 3}) == {"a": 0, "b": 2}
    assert split_by_weight(2, {"b": 3, "a": 1}) == {"a": 0, "b": 2}
    # equal fractions and weights: by name
    assert split_by_weight(1, {"b": 1, "a": 1}) == {"a": 1, "b": 0}
    assert split_by_weight(2, {"c": 1, "b": 1, "a": 1}) == {"a": 1, "b": 1, "c": 0}


def test_split_drops_zero_weights() -> None:
    assert split_by_weight(5, {"off": 0, "on": 2}) == {"on": 5}
    assert split_by_weight(5, {"off": 0, "neg": -1}) == {}
    assert split_by_weight(5, {}) == {}


def test_split_of_nothing() -> None:
    assert split_by_weight(0, {"a": 1, "b": 3, "off": 0}) == {"a": 0, "b": 0}
    assert split_by_weight(-3, {"a": 1}) == {"a": 0}


def test_split_always_shares_the_whole_total() -> None:
    for total in range(0, 40):
        for weights in ({"a": 1, "b": 3}, {"a": 2, "b": 2, "c": 5}, {"x": 7, "y": 0, "z": 1}):
            shares = split_by_weight(total, weights)
            assert sum(shares.values()) == total
            assert all(shares[name] >= 0 for name in shares)
            assert set(shares) == {name for name, w in weights.items() if w > 0}


# ---- the scheduler over a real store ------------------------------------------------------


class Recording(Launcher):
    """The "local" backend hook: records requests and hands out worker records."""

    kind = "local"

    def __init__(self) -> None:
        self.requests: list[LaunchRequest] = []
        self.dead: set[str] = set()

    def launch(self, request: LaunchRequest) -> list[WorkerRecord]:
        self.requests.append(request)
        return super().launch(request)

    def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
        return self._record(worker_id, request, pid=None)

    def alive(self, worker: WorkerRecord) -> bool | None:
        return worker.id not in self.dead


def deploy(store: SQLiteStore, *items: tuple[ResourceKind, Spec]) -> None:
    """Create resources as the host does, and wait until they are ACTIVE."""

    async def run() -> None:
        deployer = Deployer(store, LocalProvider())
        for kind, spec in items:
            deployer.create(kind, spec)
        await deployer.settled()

    asyncio.run(run())
    for kind, spec in items:
        record = store.get_resource(kind.value, spec.name)
        assert record is not None and record.status == "ACTIVE", record


def build(
    store: SQLiteStore,
    *,
    max_vcpus: int = 8,
    weights: dict[str, int] | None = None,
    ratio: int = 50,
    vcpus: int = 1,
    queues: tuple[str, ...] = ("q1",),
) -> None:
    """Regions `local` (main) and `pool` (static), cluster c1, queue(s), definition d1."""
    if weights is None:
        weights = {"local": 1, "pool": 3}
    queue_specs = [
        QueueSpec(
            name=name,
            compute_environment="c1",
            automate_region_weights=not weights,
            region_distribution_weights=weights,
        )
        for name in queues
    ]
    deploy(
        store,
        (ResourceKind.REGION, RegionSpec(name="local", kind="local", main_region=True)),
        (ResourceKind.REGION, RegionSpec(name="pool", kind="static")),
        (ResourceKind.IMAGE, ImageSpec(name="native")),
        (ResourceKind.CLUSTER, ClusterSpec(name="c1", max_vcpus=max_vcpus)),
        *((ResourceKind.QUEUE, spec) for spec in queue_specs),
        (
            ResourceKind.DEFINITION,
            DefinitionSpec(name="d1", jobs_to_workers_ratio=ratio, vcpus=vcpus),
        ),
    )


def submit(store: SQLiteStore, count: int, *, queue: str = "q1", cap: int | None = None) -> None:
    tasks = ArrayTasks(indices=list(range(count)), cap=cap)
    store.submit([NewJob("job", queue, "d1", "true", array=tasks)], time.time())


def join(store: SQLiteStore, node: str, slots: int, region: str = "pool") -> None:
    now = time.time()
    store.join_node(NodeRecord(node, region, "d1", slots, f"{node}.example", now, now))


def placed(store: SQLiteStore) -> dict[str, int]:
    """Live workers per region."""
    counts: dict[str, int] = {}
    for worker in store.live_workers():
        counts[worker.region] = counts.get(worker.region, 0) + 1
    return counts


@pytest.fixture
def local() -> Recording:
    return Recording()


@pytest.fixture
def scheduler(store: SQLiteStore, local: Recording) -> Scheduler:
    return Scheduler(store, {"local": local, "static": StaticLauncher(store)}, silence_seconds=30)


def test_weights_split_workers_between_regions(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    build(store)
    submit(store, 400)
    join(store, "n1", slots=6)
    assert store.demand() == [("q1", "d1", 400, 0)]

    report = scheduler.tick(time.time())

    assert report.started == 8 and report.expired == [] and report.gone == 0
    assert placed(store) == {"local": 2, "pool": 6}
    assert [(r.queue, r.definition.name, r.region, r.count) for r in local.requests] == [
        ("q1", "d1", "local", 2)
    ]
    pool = [w for w in store.live_workers() if w.region == "pool"]
    assert {(w.state, w.node, w.launcher, w.queue, w.definition) for w in pool} == {
        ("ASSIGNED", "n1", "static", "q1", "d1")
    }
    assert len(store.take_assignments("n1", time.time())) == 6

    again = scheduler.tick(time.time())  # enough workers already: nothing more
    assert again.started == 0 and placed(store) == {"local": 2, "pool": 6}
    assert len(local.requests) == 1


def test_a_static_region_without_machines_is_left_out(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    build(store)
    submit(store, 400)
    join(store, "other", slots=6, region="elsewhere")  # a machine, but not of this region

    assert scheduler.tick(time.time()).started == 8
    assert placed(store) == {"local": 8}
    assert [r.count for r in local.requests] == [8]


def test_a_full_static_region_takes_what_it_can(store: SQLiteStore, scheduler: Scheduler) -> None:
    build(store)
    submit(store, 400)
    join(store, "n1", slots=2)
    join(store, "n2", slots=1)

    scheduler.tick(time.time())

    assert placed(store) == {"local": 2, "pool": 3}
    nodes = sorted(w.node or "" for w in store.live_workers() if w.region == "pool")
    assert nodes == ["n1", "n1", "n2"]


def test_cluster_vcpus_cap_each_region(store: SQLiteStore, scheduler: Scheduler) -> None:
    build(store, max_vcpus=3, weights={})  # automatic weights
    submit(store, 400)
    join(store, "n1", slots=10)

    assert scheduler.tick(time.time()).started == 6
    assert placed(store) == {"local": 3, "pool": 3}  # 4 wanted in each, 3 vCPUs in each
    assert scheduler.tick(time.time()).started == 0


def test_cluster_vcpus_cap_the_total_over_queues(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    build(store, max_vcpus=5, weights={"local": 1}, vcpus=2, queues=("q1", "q2"))
    submit(store, 400, queue="q1")
    submit(store, 400, queue="q2")

    scheduler.tick(time.time())
    scheduler.tick(time.time())

    workers = store.live_workers()
    assert len(workers) == 2 and {w.queue for w in workers} == {"q1"}  # 2 x 2 vCPUs of 5
    assert [(r.queue, r.count) for r in local.requests] == [("q1", 2)]


def test_automatic_weights_use_every_active_region(
    store: SQLiteStore, scheduler: Scheduler
) -> None:
    build(store, weights={})
    now = time.time()
    for name, status in (("pending", "CREATING"), ("broken", "FAILED")):
        spec = RegionSpec(name=name, kind="static").model_dump()
        store.put_resource("regions", name, spec, status, ["not ready"], now)
        join(store, f"{name}-node", slots=10, region=name)
    join(store, "n1", slots=10)
    submit(store, 400)

    assert scheduler.tick(time.time()).started == 8
    assert placed(store) == {"local": 4, "pool": 4}


def test_manual_weights_ignore_regions_that_are_not_active(
    store: SQLiteStore, scheduler: Scheduler
) -> None:
    build(store, weights={"local": 1, "pool": 1})
    store.put_resource(
        "regions", "pool", RegionSpec(name="pool", kind="static").model_dump(), "UPDATING",
        ["updating"], time.time(),
    )  # fmt: skip
    join(store, "n1", slots=10)
    submit(store, 400)

    scheduler.tick(time.time())
    assert placed(store) == {"local": 8}


def test_capped_arrays_limit_demand(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    build(store, ratio=1, weights={"local": 1})
    submit(store, 100, cap=3)
    assert store.demand() == [("q1", "d1", 3, 0)]

    assert scheduler.tick(time.time()).started == 3
    assert placed(store) == {"local": 3}

    submit(store, 2)  # uncapped work adds to it
    assert store.demand() == [("q1", "d1", 5, 0)]
    assert scheduler.tick(time.time()).started == 2
    assert [r.count for r in local.requests] == [3, 2]


def test_no_waiting_jobs_no_workers(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    build(store)
    join(store, "n1", slots=6)
    assert scheduler.tick(time.time()).started == 0
    assert local.requests == [] and placed(store) == {}


def _state(path: Path, worker_id: str) -> tuple[str, float | None]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT state, ended FROM workers WHERE id = ?", (worker_id,)).fetchone()
    return row[0], row[1]


def test_dead_workers_are_ended_on_the_next_tick(
    store: SQLiteStore, scheduler: Scheduler, local: Recording, tmp_path: Path
) -> None:
    build(store, weights={"local": 1})
    submit(store, 400)
    scheduler.tick(time.time())
    first = [w.id for w in store.live_workers()]
    assert len(first) == 8

    local.dead.update(first[:2])
    now = time.time()
    report = scheduler.tick(now)

    assert report.gone == 2
    for worker_id in first[:2]:
        state, ended = _state(tmp_path / "store.db", worker_id)
        assert state == "EXITED" and ended == pytest.approx(now)
    live = {w.id for w in store.live_workers()}
    assert set(first[2:]) <= live and not live & set(first[:2])
    assert report.started == 2 and len(live) == 8  # replaced, since the jobs still wait


def test_silent_workers_are_ended_when_no_launcher_can_tell(
    store: SQLiteStore, scheduler: Scheduler, tmp_path: Path
) -> None:
    build(store)
    join(store, "n1", slots=6)
    submit(store, 400)
    scheduler.tick(time.time())
    pool = [w.id for w in store.live_workers() if w.region == "pool"]
    assert len(pool) == 6

    assert scheduler.tick(time.time() + 10).gone == 0  # quiet, but not for long
    store.leave_node("n1")  # nothing to replace them with
    report = scheduler.tick(time.time() + 60)  # past silence_seconds (30)

    # silent past the window is stuck, whether or not a launcher says its process lives
    assert report.gone == 8
    assert all(_state(tmp_path / "store.db", w)[0] == "EXITED" for w in pool)
    assert placed(store) == {"local": 8}  # the emptied pool is left out: all go local


def test_workers_get_their_launchers_start_up_time_before_their_first_report(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    """Batch workers wait RUNNABLE for instances: until a worker first reports, silence
    is measured against its launcher's start-up time, and after it against the lease."""
    build(store, weights={"local": 1})
    submit(store, 400)
    local.startup_seconds = 300
    now = time.time()
    scheduler.tick(now)
    started = [w.id for w in store.live_workers()]
    assert len(started) == 8 and {w.state for w in store.live_workers()} == {"STARTING"}

    assert scheduler.tick(now + 120).gone == 0  # silent past 30 s, but still starting
    store.touch_worker(started[0], now + 120)  # its first report: ACTIVE from now on
    report = scheduler.tick(now + 200)
    assert report.gone == 1 and started[0] not in {w.id for w in store.live_workers()}
    scheduler.tick(now + 400)  # past the start-up time too
    assert not set(started) & {w.id for w in store.live_workers()}


class Fencing(Recording):
    """Records, with the state of a watched job at that moment, when it ended a worker."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__()
        self.store = store
        self.watched = 0
        self.ended: list[tuple[str, str]] = []

    def end_orphans(self, worker: WorkerRecord, groups: list[tuple[int, int, int]]) -> None:
        job = self.store.get_job(self.watched)
        self.ended.append((worker.id, job.status.value if job else ""))


def test_a_worker_whose_lease_ran_out_is_ended_before_its_job_is_retried(
    store: SQLiteStore,
) -> None:
    launcher = Fencing(store)
    scheduler = Scheduler(store, {"local": launcher}, silence_seconds=60, lease_seconds=30)
    build(store, weights={"local": 1})
    submit(store, 1)
    now = time.time()
    scheduler.tick(now)
    (worker,) = store.live_workers()
    (job,) = store.claim(worker.id, "q1", "d1", 1, 30, now)
    launcher.watched = job.id
    scheduler.tick(now + 31)  # its lease ran out (its silence is not yet past 60 s)
    assert launcher.ended == [(worker.id, "Running")]  # ended while it still held the job
    found = store.get_job(job.id)
    assert found is not None and found.status.value == "Failed"  # then the job, by policy
    assert worker.id not in {w.id for w in store.live_workers()}


def test_after_a_stall_leases_run_on_from_when_the_host_is_back(store: SQLiteStore) -> None:
    launcher = Recording()
    scheduler = Scheduler(
        store, {"local": launcher}, silence_seconds=6, lease_seconds=3, stall_seconds=2
    )
    build(store, weights={"local": 1})
    submit(store, 1)
    now = time.time()
    scheduler.tick(now)
    (worker,) = store.live_workers()
    (job,) = store.claim(worker.id, "q1", "d1", 1, 3, now)
    report = scheduler.tick(now + 10)  # the host did not run for 10 s: over three leases
    assert report.expired == [] and report.gone == 0
    assert scheduler.tick(now + 11).expired == []  # ticking again: no stall, the lease runs on
    assert scheduler.tick(now + 12).expired == []
    assert scheduler.tick(now + 13.5).expired == [job.id]  # a full lease after it was back


def test_without_a_stall_setting_gaps_between_ticks_mean_nothing(store: SQLiteStore) -> None:
    scheduler = Scheduler(store, {"local": Recording()}, silence_seconds=6, lease_seconds=3)
    build(store, weights={"local": 1})
    submit(store, 1)
    now = time.time()
    scheduler.tick(now)
    (worker,) = store.live_workers()
    (job,) = store.claim(worker.id, "q1", "d1", 1, 3, now)
    assert scheduler.tick(now + 10).expired == [job.id]  # ticks on demand, as on AWS


def _sized(store: SQLiteStore, count: int, request: dict[str, int] | None) -> None:
    options = {"request": request} if request else {}
    jobs = [NewJob("job", "q1", "d1", "true", options=dict(options)) for _ in range(count)]
    store.submit(jobs, time.time())


def test_workers_are_started_for_the_requests_waiting(
    store: SQLiteStore, scheduler: Scheduler, local: Recording
) -> None:
    build(store, max_vcpus=100, weights={"local": 1}, ratio=1, vcpus=4)
    _sized(store, 6, {"cpus": 1})  # four to a 4-vCPU worker
    _sized(store, 2, {"cpus": 3})  # one to a worker, a 1-CPU job beside each
    assert scheduler.tick(time.time()).started == 3
    _sized(store, 2, None)  # asking nothing: the whole worker, one a worker at ratio 1
    assert scheduler.tick(time.time()).started == 2
    assert placed(store) == {"local": 5}


def test_requests_waiting_are_still_capped_by_the_cluster(
    store: SQLiteStore, scheduler: Scheduler
) -> None:
    build(store, max_vcpus=8, weights={"local": 1}, ratio=1, vcpus=4)
    _sized(store, 5, {"cpus": 4})
    assert scheduler.tick(time.time()).started == 2  # five wanted, 8 vCPUs hold two


def test_a_full_cluster_reads_no_waiting_jobs_requests(
    store: SQLiteStore, scheduler: Scheduler
) -> None:
    """Once the cluster holds all the workers it may, a tick starts none and does not read
    the waiting jobs' requests to find how many it would want (a burst of short jobs
    ticks every 50 ms)."""
    build(store, max_vcpus=2, weights={"local": 1}, ratio=1, vcpus=1)
    _sized(store, 50, {"cpus": 1})
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    assert scheduler.tick(time.time()).started == 2
    assert any("$.request" in sql for sql in statements)  # read while there was room
    statements.clear()
    assert scheduler.tick(time.time()).started == 0
    assert not any("$.request" in sql for sql in statements)
    store._db.set_trace_callback(None)
