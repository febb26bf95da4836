"""The scheduler: what the host does besides answering requests.

Each tick it ends attempts whose workers fell silent past their lease (the
job is retried or failed by policy), forgets workers that are gone, and asks
the launcher for ``ceil((waiting + running) / ratio)`` workers per
(queue, definition), capped by the vCPUs of the queue's cluster.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Generic

from hyper.launchers.base import Launcher, LaunchRequest
from hyper.models import ClusterSpec, DefinitionSpec, QueueSpec, ResourceKind
from hyper.resources import MAIN_REGION, SpecT, find_spec
from hyper.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    expired: list[int]
    started: int
    gone: int


class Scheduler:
    def __init__(self, store: Store, launcher: Launcher, *, silence_seconds: float) -> None:
        self.store = store
        self.launcher = launcher
        self.silence_seconds = silence_seconds

    def tick(self, now: float) -> TickReport:
        expired = self.store.expire_leases(now)
        for job_id in expired:
            log.warning("job %s: its worker fell silent past the lease", job_id)
        gone = self._forget_gone_workers(now)
        started = self._scale(now)
        return TickReport(expired, started, gone)

    def _forget_gone_workers(self, now: float) -> int:
        gone = 0
        for worker in self.store.live_workers():
            alive = self.launcher.alive(worker)
            silent = now - worker.last_seen > self.silence_seconds
            if alive is False or (alive is None and silent):
                self.store.end_worker(worker.id, now)
                gone += 1
        return gone

    def _scale(self, now: float) -> int:
        workers = self.store.live_workers()
        per_pair = Counter((w.queue, w.definition) for w in workers)
        queues = _Specs(self.store, ResourceKind.QUEUE, QueueSpec)
        definitions = _Specs(self.store, ResourceKind.DEFINITION, DefinitionSpec)
        clusters = _Specs(self.store, ResourceKind.CLUSTER, ClusterSpec)

        used: Counter[str] = Counter()  # vCPUs held by live workers, per cluster
        for w in workers:
            q, d = queues.get(w.queue), definitions.get(w.definition)
            if q and d:
                used[q.compute_environment] += d.vcpus

        started = 0
        for queue_name, definition_name, waiting, running in self.store.demand():
            q, d = queues.get(queue_name), definitions.get(definition_name)
            cluster = clusters.get(q.compute_environment) if q else None
            if not waiting or q is None or d is None or cluster is None:
                continue
            wanted = math.ceil((waiting + running) / d.jobs_to_workers_ratio)
            room = (cluster.max_vcpus - used[q.compute_environment]) // d.vcpus
            count = min(wanted - per_pair[(queue_name, definition_name)], room)
            if count <= 0:
                continue
            request = LaunchRequest(queue=queue_name, definition=d, region=MAIN_REGION, count=count)
            for record in self.launcher.launch(request):
                self.store.add_worker(record)
            used[q.compute_environment] += count * d.vcpus
            started += count
        return started


class _Specs(Generic[SpecT]):
    """Resource specs of one kind, read at most once per tick."""

    def __init__(self, store: Store, kind: ResourceKind, model: type[SpecT]) -> None:
        self.store, self.kind, self.model = store, kind, model
        self._seen: dict[str, SpecT | None] = {}

    def get(self, name: str) -> SpecT | None:
        if name not in self._seen:
            self._seen[name] = find_spec(self.store, self.kind, name, self.model)
        return self._seen[name]
