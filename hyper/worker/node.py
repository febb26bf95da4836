"""A machine of a static region: it joins the host, offering slots for workers of one
definition, and starts the worker agents the scheduler assigns to it. It runs until
stopped (SIGTERM or Ctrl-C), then stops its workers and leaves."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hyper.client import HostClient
from hyper.errors import HostFailure, HostUnreachable, NotFound
from hyper.worker.spawn import WorkerStart, spawn_worker

POLL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class NodeOptions:
    node_id: str
    region: str
    definition: str
    slots: int
    workdir: Path
    hostname: str = ""


class NodeAgent:
    def __init__(self, client: HostClient, api_key: str, options: NodeOptions) -> None:
        self.client = client
        self.api_key = api_key
        self.options = options
        self.children: list[subprocess.Popen[bytes]] = []
        self._stopping = False

    def _path(self, action: str) -> str:
        return f"/nodes/{quote(self.options.node_id, safe='')}/{action}"

    def join(self) -> None:
        o = self.options
        body = {"region": o.region, "definition": o.definition, "slots": o.slots,
                "hostname": o.hostname}  # fmt: skip
        self.client.call("POST", self._path("join"), body)

    def stop_on_signal(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        self.join()
        try:
            while not self._stopping:
                self.children = [c for c in self.children if c.poll() is None]
                try:
                    answer = self.client.call(
                        "POST",
                        self._path("poll"),
                        {"wait": POLL_WAIT_SECONDS},
                    )
                except NotFound:  # the host forgot this machine (its data was restored)
                    self.join()
                    continue
                except (HostUnreachable, HostFailure):
                    time.sleep(2.0)  # a node is a service: it waits for its host to return
                    continue
                for assignment in answer["workers"]:
                    self.start(assignment)
        finally:
            self.leave()
        return 0

    def start(self, assignment: dict[str, Any]) -> None:
        start = WorkerStart(
            url=self.client.url,
            worker_id=assignment["worker_id"],
            queue=assignment["queue"],
            definition=assignment["definition"],
            idle_seconds=assignment["idle_seconds"],
            heartbeat_seconds=assignment["heartbeat_seconds"],
            patience_seconds=assignment["patience_seconds"],
            lifetime_seconds=assignment.get("lifetime_seconds"),
            region=self.options.region,
        )
        self.children.append(spawn_worker(start, self.api_key, self.options.workdir))

    def leave(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()  # a worker stops its job on SIGTERM; the job is retried
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        with contextlib.suppress(HostUnreachable, HostFailure, NotFound):
            self.client.call("POST", self._path("leave"), {})
