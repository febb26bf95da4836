"""The launcher contract: one public ``launch`` and small per-backend hooks."""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from hyper.models import DefinitionSpec
from hyper.store.base import WorkerRecord


@dataclass(frozen=True)
class LaunchRequest:
    queue: str
    definition: DefinitionSpec
    region: str
    count: int


class Launcher(ABC):
    kind: str = ""

    def launch(self, request: LaunchRequest) -> list[WorkerRecord]:
        """Start `count` workers for (queue, definition) and return their records."""
        started = []
        for _ in range(request.count):
            worker_id = f"w-{uuid.uuid4().hex[:12]}"
            now = time.time()
            pid = self._start(worker_id, request)
            started.append(
                WorkerRecord(
                    id=worker_id,
                    queue=request.queue,
                    definition=request.definition.name,
                    region=request.region,
                    launcher=self.kind,
                    pid=pid,
                    state="STARTING",
                    started=now,
                    last_seen=now,
                )
            )
        return started

    @abstractmethod
    def _start(self, worker_id: str, request: LaunchRequest) -> int | None:
        """Start one worker; return its process id where there is one."""

    def alive(self, worker: WorkerRecord) -> bool | None:
        """True or False when the launcher can tell, None when only silence can."""
        return None

    def close(self) -> None:  # noqa: B027 - most launchers hold nothing to let go of
        """Forget started workers (they keep running and report in on their own)."""
