"""Workers as processes on this machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from hyper.host_settings import HostSettings
from hyper.launchers.base import Launcher, LaunchRequest
from hyper.store.base import WorkerRecord
from hyper.worker.reaper import cgroup_parent, kill_cgroup, process_state, worker_cgroups
from hyper.worker.spawn import WorkerStart, spawn_worker


def worker_start(settings: HostSettings, worker_id: str, request: LaunchRequest) -> WorkerStart:
    lifetime = request.definition.timeout_minutes
    return WorkerStart(
        url=settings.url,
        worker_id=worker_id,
        queue=request.queue,
        definition=request.definition.name,
        idle_seconds=settings.worker_idle_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        patience_seconds=settings.worker_patience_seconds,
        lifetime_seconds=lifetime * 60 if lifetime else None,
        region=request.region,
        self_fence=False,  # this launcher ends a silent worker's jobs before their retry
    )


ORPHAN_PATIENCE_SECONDS = 5.0  # how long a dead worker's jobs may take to die of SIGKILL
# how long a stuck worker told to end gets before SIGKILL: the host waits meanwhile (the
# tick holds its loop), and the worker's last reports, which would need the host, are
# refused anyway (it was ended first); its jobs' processes are ended by end_orphans
STOP_PATIENCE_SECONDS = 0.5


class LocalLauncher(Launcher):
    kind = "local"

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
        start = worker_start(self.settings, worker_id, request)
        child = spawn_worker(start, self.settings.api_key, self.settings.workers_dir)
        self._children[child.pid] = child
        return self._record(worker_id, request, pid=child.pid)

    def alive(self, worker: WorkerRecord) -> bool | None:
        if worker.pid is None:
            return None
        child = self._children.get(worker.pid)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[worker.pid]
            return False
        # started by an earlier run of the daemon: gone when no process has its pid (it
        # left while the host was stopped, unable to say so) or only a zombie does; a
        # live process with it may be another that reused the pid: only silence can tell
        return False if process_state(worker.pid) in (None, "Z", "X") else None

    def stop(self, worker: WorkerRecord) -> None:
        """A stuck worker of ours: woken (it may be stopped) and asked to end, which ends
        every process of its job (it is their subreaper); killed if it has not ended at
        once. Each second here every request to the host waits: two stalled workers held
        it 10 s, and jobs that had ended while their workers were stopped ran again."""
        child = self._children.get(worker.pid or -1)
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGCONT)
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=STOP_PATIENCE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def end_orphans(self, worker: WorkerRecord, groups: list[tuple[int, int, int]]) -> None:
        """A job's processes outlive a killed worker (they have their own session). They
        are found by the worker's id in their environment, as a job may end its worker
        before the worker reports where it runs; and by the process groups reported, each
        while its leader still carries that attempt in its environment (a process id
        reused since is someone else's); and, where the machine has cgroup v2, by the
        cgroups the worker made for its jobs, which nothing a job does can leave. Returns
        when they are gone, so that a retry never runs beside them."""
        for job_id, attempt, group in groups:
            environ = _environment(group)
            if f"HYPER_JOB_ID={job_id}".encode() in environ and (
                f"HYPER_ATTEMPT={attempt}".encode() in environ
            ):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        # the cgroups its jobs ran in (beside this daemon's, which the worker inherited)
        parent = cgroup_parent()
        for cgroup in worker_cgroups(parent, worker.id) if parent else []:
            kill_cgroup(cgroup, ORPHAN_PATIENCE_SECONDS)
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        mark = f"HYPER_WORKER_ID={worker.id}".encode()
        deadline = time.monotonic() + ORPHAN_PATIENCE_SECONDS
        while time.monotonic() < deadline:  # again, for what forked meanwhile
            left = [pid for pid in _process_ids() if mark in _environment(pid)]
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def close(self) -> None:
        for child in list(self._children.values()):
            child.poll()
        self._children.clear()


def _process_ids() -> list[int]:
    own = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != own]


def _environment(pid: int) -> list[bytes]:
    """A process's environment entries; empty once it has ended (or is not ours to read)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []
