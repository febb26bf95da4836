"""The launcher contract: one public ``launch`` and small per-backend hooks."""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from hyper.capacity import Shape
from hyper.models import ClusterSpec, DefinitionSpec
from hyper.store.base import WorkerRecord


@dataclass(frozen=True)
class LaunchRequest:
    queue: str
    definition: DefinitionSpec
    region: str
    count: int
    # workers of their own size for jobs larger than the definition's (None: its shape)
    shape: Shape | None = None


class Launcher(ABC):
    kind: str = ""
    # how long a started worker may take to report for the first time before it counts
    # as silent (None: no longer than any worker may stay silent)
    startup_seconds: float | None = None
    # it can start a worker larger than its definition's for a job that needs one
    sizes_workers: bool = False
    # how long past the lease of a silent worker it still says is running its jobs wait
    # for its word on how the worker ended (a reclaimed machine costs them no retry)
    confirm_seconds: float = 0.0

    def launch(self, request: LaunchRequest) -> list[WorkerRecord]:
        """Start up to `count` workers for (queue, definition) and return their records."""
        started = []
        for _ in range(request.count):
            record = self._start(f"w-{uuid.uuid4().hex[:12]}", request)
            if record is None:  # no room left where this launcher starts workers
                break
            started.append(record)
        return started

    @abstractmethod
    def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
        """Start one worker; None when there is no room for it."""

    def capacity(self, region: str, definition: str) -> int | None:
        """How many more workers of `definition` the region can take (None: no own limit)."""
        return None

    def auto_weights(self, regions: list[str], cluster: ClusterSpec) -> dict[str, int] | None:
        """Weights for a queue with `auto` weights over these regions of this launcher's
        kind (None: they weigh the same)."""
        return None

    def stop(self, worker: WorkerRecord) -> None:  # noqa: B027 - not every backend can
        """End a worker that is stuck (its record is already ended)."""

    def end_orphans(  # noqa: B027 - only a launcher on the workers' machine can
        self, worker: WorkerRecord, groups: list[tuple[int, int, int]]
    ) -> None:
        """End the process groups of jobs a gone worker left running: (job, attempt, group)."""

    def alive(self, worker: WorkerRecord) -> bool | None:
        """True or False when the launcher can tell, None when only silence can."""
        return None

    def look_again(self, worker: WorkerRecord) -> None:  # noqa: B027 - most ask afresh anyway
        """What `alive` says of the worker next is asked afresh: its lease ran out."""

    def reclaimed(self, worker: WorkerRecord) -> bool:
        """Whether a worker that `alive` found ended was ended by its provider taking the
        machine back (a spot reclaim), not by anything of its own or its jobs'."""
        return False

    def close(self) -> None:  # noqa: B027 - most launchers hold nothing to let go of
        """Forget started workers (they keep running and report in on their own)."""

    def _record(
        self,
        worker_id: str,
        request: LaunchRequest,
        *,
        pid: int | None = None,
        state: str = "STARTING",
        node: str | None = None,
    ) -> WorkerRecord:
        now = time.time()
        return WorkerRecord(
            id=worker_id,
            queue=request.queue,
            definition=request.definition.name,
            region=request.region,
            launcher=self.kind,
            pid=pid,
            state=state,
            started=now,
            last_seen=now,
            node=node,
        )
