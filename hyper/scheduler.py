"""The scheduler: what the host does besides answering requests.

Each tick it ends attempts whose workers fell silent past their lease (the
job is retried or failed by policy; a worker whose launcher still runs it and can say
how it ended, as AWS Batch can, is waited on up to the launcher's `confirm_seconds`
first: a machine reclaimed costs its jobs no retry), forgets workers that are gone, and asks
the launchers for ``ceil((waiting + running) / ratio)`` workers per
(queue, definition), split between the queue's regions by weight (largest
remainder) and capped per region by the vCPUs of the queue's cluster and by
what the region can take.

Leases are judged on the host's own time: a host that notices it did not run for a
while (a gap between ticks: the daemon was stopped, its machine suspended or swapping)
gives every running job a full lease from the moment it is back, before it judges any
worker. A worker whose lease ran out is ended first, with its jobs' processes (when its
launcher can reach them), and only then are its jobs retried: two attempts of one job
never run at once.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Generic

from hyper.capacity import Request, Shape, shape_of, too_large, workers_for
from hyper.launchers.base import Launcher, LaunchRequest
from hyper.models import ClusterSpec, DefinitionSpec, QueueSpec, RegionSpec, ResourceKind
from hyper.resources import SpecT, active_regions, find_spec
from hyper.store.base import Store, WorkerRecord

log = logging.getLogger(__name__)

# past this many waiting and running jobs of a (queue, definition), workers are counted from
# jobs, not packed from requests (a read of every job each tick would cost too much)
REQUESTS_READ = 10_000

NOT_REPORTED = frozenset({"ASSIGNED", "STARTING"})  # worker states before its first report


@dataclass(frozen=True)
class TickReport:
    expired: list[int]
    started: int
    gone: int


def split_by_weight(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` shared in proportion to `weights`, the remainder going to the largest
    fractions (ties to the larger weight, then by name)."""
    positive = {name: w for name, w in weights.items() if w > 0}
    if total <= 0 or not positive:
        return dict.fromkeys(positive, 0)
    whole = sum(positive.values())
    exact = {name: total * w / whole for name, w in positive.items()}
    shares = {name: math.floor(x) for name, x in exact.items()}
    left = total - sum(shares.values())
    order = sorted(positive, key=lambda n: (-(exact[n] - shares[n]), -positive[n], n))
    for name in order[:left]:
        shares[name] += 1
    return shares


class Scheduler:
    def __init__(
        self,
        store: Store,
        launchers: dict[str, Launcher],
        *,
        silence_seconds: float,
        lease_seconds: float | None = None,
        stall_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.launchers = launchers  # by region kind
        self.silence_seconds = silence_seconds
        self.lease_seconds = lease_seconds or silence_seconds / 2
        # a gap between ticks longer than this is a stall of the host (None: ticks come
        # when something calls them, as on AWS, and gaps mean nothing)
        self.stall_seconds = stall_seconds
        self._last_tick: float | None = None

    def tick(self, now: float) -> TickReport:
        self._after_stall(now)
        fenced, waiting = self._fence(now)
        expired = self.store.expire_leases(now, keep=waiting)
        for job_id in expired:
            log.warning("job %s: its worker fell silent past the lease", job_id)
        for worker_id in fenced:
            self.store.abandon(worker_id, now)  # what else it held (its leases ran on)
        gone = len(fenced) + self._forget_gone_workers(now, waiting)
        self.store.reconcile_counts(now)  # a submit cut off must not ask for workers
        self.store.make_tasks()  # a bounded chunk of arrays' tasks not made yet
        started = self._scale()
        return TickReport(expired, started, gone)

    def _after_stall(self, now: float) -> None:
        """When the host did not run for a while, nobody could renew a lease with it: every
        running job gets a full lease from now (at least the gap), and every live worker
        counts as just heard from, before anything is judged."""
        last, self._last_tick = self._last_tick, now
        if self.stall_seconds is None or last is None or now - last <= self.stall_seconds:
            return
        extended = self.store.extend_leases(self.lease_seconds, now)
        for worker in self.store.live_workers():
            self.store.touch_worker(worker.id, now)
        log.warning(
            "the host did not run for %.1f s: leases of %d running jobs extended", now - last,
            extended,
        )  # fmt: skip

    def _fence(self, now: float) -> tuple[list[str], set[str]]:
        """Workers holding leases that ran out are ended, with what their jobs left
        running, before those jobs are retried: their ids. Their launchers are asked
        afresh how they are: one that ended as its machine was reclaimed costs its jobs
        no retry; one its launcher still runs is waited on for the launcher's word, up to
        its `confirm_seconds` past the lease (the ids waited on)."""
        holders = set(self.store.lease_holders(now))
        if not holders:
            return [], set()
        candidates = [w for w in self.store.live_workers() if w.id in holders]
        for worker in candidates:  # all first: one fresh look serves them all
            launcher = self.launchers.get(worker.launcher)
            if launcher is not None:
                launcher.look_again(worker)
        fenced, waiting = [], set()
        for worker in candidates:
            launcher = self.launchers.get(worker.launcher)
            alive = launcher.alive(worker) if launcher else None
            if alive and launcher is not None and self._confirming(worker, launcher, now):
                waiting.add(worker.id)
                continue
            self._end_worker(worker, launcher, alive, now, abandon=False)
            fenced.append(worker.id)
        return fenced, waiting

    def _confirming(self, worker: WorkerRecord, launcher: Launcher, now: float) -> bool:
        """Whether a silent worker its launcher still runs is still waited on."""
        patience = launcher.confirm_seconds
        return patience > 0 and now - worker.last_seen < self.lease_seconds + patience

    def _forget_gone_workers(self, now: float, waiting: set[str]) -> int:
        gone = 0
        for worker in self.store.live_workers():
            if worker.id in waiting:  # judged by _fence this tick
                continue
            launcher = self.launchers.get(worker.launcher)
            alive = launcher.alive(worker) if launcher else None
            # a worker reports at least every long-poll (10 s) or heartbeat (0.5 s): one
            # silent this long is stuck even when its process is there, and its slot is freed
            silent = now - worker.last_seen > self._allowed_silence(worker, launcher)
            if alive is False or silent:
                self._end_worker(worker, launcher, alive, now)
                gone += 1
        return gone

    def _end_worker(
        self,
        worker: WorkerRecord,
        launcher: Launcher | None,
        alive: bool | None,
        now: float,
        *,
        abandon: bool = True,
    ) -> None:
        self.store.end_worker(worker.id, now)
        reclaimed = alive is False and launcher is not None and launcher.reclaimed(worker)
        if launcher is not None:
            if alive:
                launcher.stop(worker)
            # what it ran and never reported ended is gone before a retry can start
            launcher.end_orphans(worker, self.store.process_groups(worker.id))
        if abandon or reclaimed:
            # its jobs are retried now (a reclaim, before their leases run out, so that
            # it is not counted against their retries)
            self.store.abandon(worker.id, now, reclaimed=reclaimed)

    def _allowed_silence(self, worker: WorkerRecord, launcher: Launcher | None) -> float:
        """A worker that has not reported yet may take its launcher's start-up time."""
        startup = launcher.startup_seconds if launcher else None
        if worker.state in NOT_REPORTED and startup is not None:
            return max(startup, self.silence_seconds)
        return self.silence_seconds

    def _weights(
        self,
        queue: QueueSpec,
        regions: dict[str, RegionSpec],
        definition: str,
        cluster: ClusterSpec,
        current: Counter[tuple[str, str, str]],
    ) -> dict[str, int]:
        """The regions this queue's workers may go to now, with their weights: `auto`
        asks each kind's launcher to weigh its ACTIVE regions (AWS: spot placement scores)
        and weighs the rest equally. A region that cannot take a worker of this definition
        at all (a pool with no machine for it) is left out."""
        if queue.automate_region_weights:
            weights = self._auto_weights(regions, cluster)
        else:
            weights = {n: w for n, w in queue.region_distribution_weights.items() if n in regions}
        usable = {}
        for name, weight in weights.items():
            launcher = self.launchers.get(regions[name].kind)
            if launcher is None or weight <= 0:
                continue
            room = launcher.capacity(name, definition)
            if room is None or room > 0 or current[(queue.name, definition, name)]:
                usable[name] = weight
        return usable

    def _auto_weights(self, regions: dict[str, RegionSpec], cluster: ClusterSpec) -> dict[str, int]:
        weights = dict.fromkeys(regions, 1)
        by_kind: dict[str, list[str]] = {}
        for name, region in regions.items():
            by_kind.setdefault(region.kind, []).append(name)
        for kind, names in by_kind.items():
            launcher = self.launchers.get(kind)
            found = launcher.auto_weights(names, cluster) if launcher else None
            weights.update({name: found.get(name, 1) for name in names} if found else {})
        return weights

    def _scale(self) -> int:
        workers = self.store.live_workers()
        current = Counter((w.queue, w.definition, w.region) for w in workers)
        queues = _Specs(self.store, ResourceKind.QUEUE, QueueSpec)
        definitions = _Specs(self.store, ResourceKind.DEFINITION, DefinitionSpec)
        clusters = _Specs(self.store, ResourceKind.CLUSTER, ClusterSpec)
        regions = {r.name: r for r in active_regions(self.store)}

        used: Counter[tuple[str, str]] = Counter()  # vCPUs held, per (cluster, region)
        for w in workers:
            q, d = queues.get(w.queue), definitions.get(w.definition)
            if q and d:
                used[(q.compute_environment, w.region)] += d.vcpus

        started = 0
        for queue_name, definition_name, waiting, running in self.store.demand():
            q, d = queues.get(queue_name), definitions.get(definition_name)
            cluster = clusters.get(q.compute_environment) if q else None
            if not waiting or q is None or d is None or cluster is None:
                continue
            weights = self._weights(q, regions, d.name, cluster, current)
            if all(cluster.max_vcpus - used[(q.compute_environment, r)] <= 0 for r in weights):
                continue  # full wherever they may go: their requests need not be read
            wanted, big = self._wanted(queue_name, d, waiting + running)
            if not any(self.launchers[regions[r].kind].sizes_workers for r in weights):
                big = []  # no region here can size a worker for them: none started
            shares = split_by_weight(wanted + len(big), weights)
            for region, share in shares.items():
                launcher = self.launchers[regions[region].kind]
                key = (q.compute_environment, region)
                count = share - current[(queue_name, definition_name, region)]
                while big and count > 0 and launcher.sizes_workers:
                    if cluster.max_vcpus - used[key] < big[0].cpus:
                        break
                    want = big.pop(0)
                    ids = tuple(str(i) for i in range(want.gpus))
                    shape = Shape(want.cpus, want.mem_mib, ids)
                    sized = LaunchRequest(queue_name, d, region, 1, shape=shape)
                    for record in launcher.launch(sized):
                        self.store.add_worker(record)
                        used[key] += want.cpus
                        started += 1
                    count -= 1
                count = min(count, (cluster.max_vcpus - used[key]) // d.vcpus)
                if count <= 0:
                    continue
                request = LaunchRequest(queue_name, d, region, count)
                for record in launcher.launch(request):
                    self.store.add_worker(record)
                    used[key] += d.vcpus
                    started += 1
        return started

    def _wanted(self, queue: str, d: DefinitionSpec, jobs: int) -> tuple[int, list[Request]]:
        """Workers for `jobs` waiting and running jobs of (queue, definition): their
        requests packed into the definition's worker shape, jobs asking nothing one worker
        per ratio; by count alone (ceil(jobs / ratio)) past REQUESTS_READ jobs or when the
        store cannot tell. Besides: the requests larger than the definition's worker (each
        wants a worker of its own size)."""
        counted = math.ceil(jobs / d.jobs_to_workers_ratio)
        asked = self.store.requests(queue, d.name, REQUESTS_READ) if jobs else None
        if asked is None or sum(asked.values()) != jobs:  # capped arrays: counts hold
            return counted, []
        shape = shape_of(d.model_dump())
        return workers_for(asked, shape, d.jobs_to_workers_ratio), too_large(asked, shape)


class _Specs(Generic[SpecT]):
    """Resource specs of one kind, read at most once per tick."""

    def __init__(self, store: Store, kind: ResourceKind, model: type[SpecT]) -> None:
        self.store, self.kind, self.model = store, kind, model
        self._seen: dict[str, SpecT | None] = {}

    def get(self, name: str) -> SpecT | None:
        if name not in self._seen:
            self._seen[name] = find_spec(self.store, self.kind, name, self.model)
        return self._seen[name]
