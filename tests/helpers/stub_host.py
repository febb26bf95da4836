"""A stub host for the worker agent's own tests: it hands out the jobs it was given,
answers every call, and records what the agent sent (the real host's rules are tested
elsewhere; these tests are about the agent's threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hyper.messages import ClaimedJob, ClaimRef, Completion


def job(job_id: int, script: str, *, cpus: int = 1, vcpus: int = 2, **extra: Any) -> ClaimedJob:
    """A claimed job as the host sends it, of a definition with `vcpus` CPUs."""
    return ClaimedJob.from_wire(
        {
            "id": job_id,
            "attempt": 1,
            "name": f"j{job_id}",
            "queue": "q",
            "definition": "d",
            "script": script,
            "options": {"request": {"cpus": cpus, "mem_mib": 100}},
            "definition_spec": {"vcpus": vcpus, "memory_limit_mib": 1000},
            "lease_seconds": 30,
            **extra,
        }
    )


class StubHost:
    """What a worker's HostClient offers, as far as the agent uses it."""

    url = "http://127.0.0.1:1"  # a local host's: its limits on a request are the local ones

    def __init__(self, jobs: list[ClaimedJob]) -> None:
        self.jobs = list(jobs)
        self.calls: list[tuple[float, str, Any]] = []  # (time, path, body)
        self.lock = threading.Lock()
        self.on_call: Callable[[str, Any], None] | None = None  # may raise, to fail a call
        self.started = time.monotonic()

    def _record(self, path: str, body: Any) -> None:
        with self.lock:
            self.calls.append((time.monotonic() - self.started, path, body))
        if self.on_call is not None:
            self.on_call(path, body)

    def claim(self, worker_id: str, **kwargs: Any) -> list[ClaimedJob]:
        self._record("claim", kwargs)
        with self.lock:
            jobs, self.jobs = self.jobs, []
        return jobs

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        self._record(path, body)
        return {"jobs": []}

    def complete(self, worker_id: str, body: Completion) -> list[ClaimedJob]:
        self.call("POST", f"/workers/{worker_id}/complete", body)
        return []

    def return_claims(self, worker_id: str, refs: list[ClaimRef]) -> None:
        self.call("POST", f"/workers/{worker_id}/return", {"jobs": refs})

    def progress(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def progress_output(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def worker_exit(self, worker_id: str) -> None:
        self._record("exit", None)

    def reported(self) -> dict[int, tuple[float, int]]:
        """Each reported job's id: when it was reported and its exit code."""
        with self.lock:
            calls = list(self.calls)
        return {
            report["job_id"]: (when, report["exit_code"])
            for when, path, body in calls
            if path.endswith("/complete")
            for report in body["reports"]
        }

    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.calls if path != "claim"]
