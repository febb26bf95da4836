"""Helpers for the reliability tests: a local host with tuned lease timings, process
trees and their memory, and processes found by what they run."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from tests.conftest import LocalHost, running_local_host
from tests.conftest import wait_until as wait_until  # the tests import it from here


@contextlib.contextmanager
def tuned_host(home: Path, cwd: Path, **settings: float) -> Iterator[LocalHost]:
    """A local host named `local` whose settings (lease_seconds, heartbeat_seconds...) are
    set before it starts; stopped, with its workers, afterwards (resumed first, as a test
    may have stopped the daemon or a worker)."""
    tuned = {"worker_patience_seconds": 60.0, **settings}
    with running_local_host(home, cwd, **tuned) as handle:
        try:
            yield handle
        finally:
            with contextlib.suppress(OSError):
                os.kill(handle.daemon_pid(), signal.SIGCONT)
            for pid in handle.worker_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)


def worker_of(local: LocalHost, job_id: str | int) -> int:
    """The pid of the worker running a job."""
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        row = db.execute(
            "SELECT w.pid FROM workers w JOIN jobs j ON j.worker_id = w.id WHERE j.id = ?",
            (int(job_id),),
        ).fetchone()
    assert row and row[0], f"job {job_id} has no worker"
    return int(row[0])


def attempts(local: LocalHost, job_id: str | int) -> list[tuple[int, str | None]]:
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        return db.execute(
            "SELECT attempt, outcome FROM attempts WHERE job_id = ? ORDER BY attempt",
            (int(job_id),),
        ).fetchall()


def processes_running(needle: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains `needle`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if needle in " ".join(process.info["cmdline"] or []):
                found.append(process.pid)
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL processes this test made (found by a command line only it uses)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class PeakMemory:
    """Samples the RSS of processes (by pid, read when sampled) and keeps each one's peak."""

    def __init__(self, pids: Callable[[], dict[str, int | None]]) -> None:
        self.pids = pids
        self.peaks: dict[str, float] = {}

    def sample(self) -> None:
        for name, pid in self.pids().items():
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                mib = psutil.Process(pid).memory_info().rss / 2**20
                self.peaks[name] = max(self.peaks.get(name, 0.0), mib)
