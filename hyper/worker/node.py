"""A machine of a static region: it joins the host, offering slots for workers of one
definition, and starts the worker agents the scheduler assigns to it. It runs until
stopped (SIGTERM or Ctrl-C), then stops its workers and leaves.

It fences its workers, as the local launcher does on the host's machine: a worker that
runs a job touches a file at each renewal of the job's lease; one that has not touched
it for its fence time (2/3 of the lease, written in the file) plus a second is stalled
(stopped, hung) and cannot fence itself, so the node SIGKILLs it with every process of
its job (its cgroups, and what carries its id), before the host may retry the job."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hyper import capacity, machine
from hyper.client import HostClient
from hyper.errors import HostFailure, HostUnreachable, NotFound
from hyper.messages import NodeJoin, WorkerAssignment
from hyper.worker.options import LEASE_MARK
from hyper.worker.reaper import (
    become_subreaper,
    cgroup_parent,
    kill_cgroup,
    kill_descendants,
    worker_cgroups,
)
from hyper.worker.spawn import WorkerStart, spawn_worker

POLL_WAIT_SECONDS = 10.0
WATCH_SECONDS = 0.5  # how often the node looks at its workers' leases
WATCH_GRACE_SECONDS = 1.0  # past a worker's own fence time, before the node ends it


@dataclass(frozen=True)
class NodeOptions:
    node_id: str
    region: str
    definition: str
    slots: int
    workdir: Path
    hostname: str = ""
    # what the machine has (detected, or said by flags on join): its workers share it
    shape: capacity.Shape | None = None


class NodeAgent:
    def __init__(self, client: HostClient, api_key: str, options: NodeOptions) -> None:
        self.client = client
        self.api_key = api_key
        self.options = options
        self.children: list[subprocess.Popen[bytes]] = []
        self._ids: dict[int, str] = {}  # worker ids by pid
        self._stopping = False
        whole = options.shape
        self._shares = machine.shares(whole, options.slots) if whole else []
        self._held: dict[int, int] = {}  # which share each live worker (by pid) holds

    def _path(self, action: str) -> str:
        return f"/nodes/{quote(self.options.node_id, safe='')}/{action}"

    def join(self) -> None:
        o = self.options
        body: NodeJoin = {"region": o.region, "definition": o.definition, "slots": o.slots,
                          "hostname": o.hostname}  # fmt: skip
        self.client.call("POST", self._path("join"), dict(body))

    def stop_on_signal(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        become_subreaper()  # what a killed worker's jobs leave stays the node's to end
        self.join()
        watchdog = threading.Thread(target=self._watch, name="fence", daemon=True)
        watchdog.start()
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
                    self.start(WorkerAssignment.from_wire(assignment))
        finally:
            self.leave()
        return 0

    def _free_share(self) -> int | None:
        """A share of the machine no live worker holds (None: the machine said nothing)."""
        if not self._shares:
            return None
        live = {c.pid for c in self.children if c.poll() is None}
        self._held = {pid: share for pid, share in self._held.items() if pid in live}
        free = [i for i in range(len(self._shares)) if i not in self._held.values()]
        return free[0] if free else 0

    def start(self, assignment: WorkerAssignment) -> None:
        share = self._free_share()
        start = WorkerStart(
            url=self.client.url,
            worker_id=assignment.worker_id,
            queue=assignment.queue,
            definition=assignment.definition,
            idle_seconds=assignment.idle_seconds,
            heartbeat_seconds=assignment.heartbeat_seconds,
            patience_seconds=assignment.patience_seconds,
            lifetime_seconds=assignment.lifetime_seconds,
            region=self.options.region,
            capacity=machine.text(self._shares[share]) if share is not None else "",
        )
        child = spawn_worker(start, self.api_key, self.options.workdir)
        if share is not None:
            self._held[child.pid] = share
        self._ids[child.pid] = start.worker_id
        self.children.append(child)

    def _watch(self) -> None:
        while not self._stopping:
            for child in list(self.children):
                worker_id = self._ids.get(child.pid)
                if worker_id and child.poll() is None and self._stalled(worker_id):
                    self.fence(child, worker_id)
            time.sleep(WATCH_SECONDS)

    def _stalled(self, worker_id: str) -> bool:
        mark = self.options.workdir / worker_id / LEASE_MARK
        try:
            fence = float(mark.read_text())
            touched = mark.stat().st_mtime
        except (OSError, ValueError):
            return False  # no job running, or it just ended
        return time.time() - touched > fence + WATCH_GRACE_SECONDS

    def fence(self, child: subprocess.Popen[bytes], worker_id: str) -> None:
        """End a stalled worker and every process of its job."""
        child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
        parent = cgroup_parent()
        for cgroup in worker_cgroups(parent, worker_id) if parent else []:
            kill_cgroup(cgroup)
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        kill_descendants(spare=None, keep=[c.pid for c in self.children if c is not child])
        (self.options.workdir / worker_id / LEASE_MARK).unlink(missing_ok=True)

    def leave(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()  # a worker stops its job on SIGTERM; the job is retried
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        with contextlib.suppress(HostUnreachable, HostFailure, NotFound):
            self.client.call("POST", self._path("leave"), {})
