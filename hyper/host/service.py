"""What the host does for each request, apart from HTTP: the routes call these."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from hyper import resources
from hyper.errors import NotFound, UsageError
from hyper.host.schemas import (
    CompletionReport,
    JobSubmission,
    OutputChunk,
    ProgressReport,
)
from hyper.host.settings import HostSettings
from hyper.jobs import JobStatus, LogKind
from hyper.models import DefinitionSpec, ResourceKind
from hyper.store.base import CancelResult, JobFilter, JobRecord, LogEntry, NewJob, Store


class Pulse:
    """Wakes every coroutine waiting on it; used for long-polls and to wake the scheduler."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        event = self._event
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class HostService:
    def __init__(self, store: Store, settings: HostSettings) -> None:
        self.store = store
        self.settings = settings
        self.work_arrived = Pulse()  # jobs became claimable
        self.jobs_changed = Pulse()  # a job changed state or got output

    # jobs ---------------------------------------------------------------------

    def submit(self, jobs: Sequence[JobSubmission]) -> list[int]:
        queues = set()
        definitions = set()
        for job in jobs:
            if len(job.script.encode()) > self.settings.max_script_bytes:
                raise UsageError(
                    f"script of job {job.name!r} is larger than"
                    f" {self.settings.max_script_bytes} bytes"
                )
            if "\x00" in job.script:
                raise UsageError(f"script of job {job.name!r} contains a NUL byte")
            queues.add(job.queue)
            definitions.add(job.definition)
        for queue in queues:
            resources.require(self.store, ResourceKind.QUEUE, queue)
        for definition in definitions:
            resources.require(self.store, ResourceKind.DEFINITION, definition)
        new = [
            NewJob(
                name=job.name,
                queue=job.queue,
                definition=job.definition,
                script=job.script,
                retries=job.retries,
                env=job.env,
                submit_dir=job.submit_dir,
            )
            for job in jobs
        ]
        ids = self.store.submit(new, time.time())
        self.work_arrived.fire()
        self.jobs_changed.fire()
        return ids

    def job(self, job_id: int) -> JobRecord:
        found = self.store.get_job(job_id)
        if found is None:
            raise NotFound(f"unknown job id {job_id}")
        return found

    async def wait_for_job(self, job_id: int, wait: float) -> JobRecord:
        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            job = self.job(job_id)
            left = deadline - time.monotonic()
            if job.status.finished or left <= 0:
                return job
            await self.jobs_changed.wait(left)

    def cancel(self, ids: list[int], name: str | None, queue: str | None) -> CancelResult:
        if not ids and name is None and queue is None:
            raise UsageError("say which jobs to cancel: job ids, a job name or a queue")
        missing = self.store.missing_ids(ids)
        if missing:
            raise UsageError(
                f"unknown job id{'s' if len(missing) > 1 else ''}: "
                + " ".join(map(str, missing[:20]))
            )
        if queue is not None:
            resources.require(self.store, ResourceKind.QUEUE, queue)
        result = self.store.cancel(JobFilter(queue=queue, name=name, ids=tuple(ids)), time.time())
        self.jobs_changed.fire()
        return result

    async def read_log(
        self, job_id: int, kinds: Sequence[LogKind], after: int, wait: float
    ) -> tuple[list[LogEntry], bool]:
        """Entries after `after`; with `wait`, hold the request until there are some
        or the job has finished."""
        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            finished = self.job(job_id).status.finished
            entries = self.store.read_log(job_id, kinds, after=after)
            left = deadline - time.monotonic()
            if entries or finished or left <= 0:
                return entries, finished and len(entries) < 1000
            await self.jobs_changed.wait(left)

    # workers --------------------------------------------------------------------

    async def claim(
        self, worker_id: str, queue: str, definition: str, limit: int, wait: float
    ) -> list[JobRecord]:
        spec = resources.spec_of(self.store, ResourceKind.DEFINITION, definition, DefinitionSpec)
        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            jobs = self.store.claim(
                worker_id, queue, definition, limit, self.settings.lease_seconds, time.time()
            )
            left = deadline - time.monotonic()
            if jobs or left <= 0:
                break
            await self.work_arrived.wait(left)
        if jobs:
            self.jobs_changed.fire()
        for job in jobs:
            job.env = {**spec.environment, **job.env}
        return jobs

    def _append_output(
        self,
        job_id: int,
        attempt: int,
        output: list[OutputChunk],
        metrics: dict[str, float] | None,
        now: float,
    ) -> None:
        entries = [(chunk.kind, chunk.text) for chunk in output]
        if metrics:
            entries.append((LogKind.METRICS, json.dumps(metrics, sort_keys=True)))
        if entries:
            self.store.append_log(job_id, attempt, entries, now)
            self.jobs_changed.fire()

    def progress(self, worker_id: str, job_id: int, report: ProgressReport) -> bool:
        now = time.time()
        cancel = self.store.heartbeat(
            worker_id, job_id, report.attempt, self.settings.lease_seconds, now
        )
        self._append_output(job_id, report.attempt, report.output, report.metrics, now)
        return cancel

    def complete(self, worker_id: str, job_id: int, report: CompletionReport) -> JobStatus:
        now = time.time()
        # check the lease first, so a late worker's output is refused with its report
        self.store.heartbeat(worker_id, job_id, report.attempt, self.settings.lease_seconds, now)
        self._append_output(job_id, report.attempt, report.output, None, now)
        status = self.store.complete(
            worker_id, job_id, report.attempt, report.exit_code, report.reason, now
        )
        if status is JobStatus.WAITING:
            self.work_arrived.fire()
        self.jobs_changed.fire()
        return status

    def worker_exit(self, worker_id: str) -> None:
        self.store.end_worker(worker_id, time.time())

    # resources ------------------------------------------------------------------

    def list_resources(self, kind: ResourceKind) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.store.list_resources(kind.value)]

    def get_resource(self, kind: ResourceKind, name: str) -> dict[str, Any]:
        found = self.store.get_resource(kind.value, name)
        if found is None:
            raise resources.unknown(kind, name, resources.names(self.store, kind))
        return found.as_dict()

    def health(self) -> dict[str, Any]:
        from hyper import __version__

        return {
            "status": "ok",
            "host": self.settings.name,
            "version": __version__,
            "pid": os.getpid(),
        }
