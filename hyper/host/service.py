"""What the host does for each request, apart from HTTP: the routes call these."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from hyper import capacity, jobspec, output, resources
from hyper.deployer import Deployer
from hyper.errors import Conflict, HostStopping, NotFound, UsageError
from hyper.host.schemas import (
    MAX_ID,
    ArrayBody,
    BatchCompletion,
    BatchReport,
    DependencyBody,
    JobSubmission,
    NodeJoin,
    OutputChunk,
    ProgressReport,
    Selection,
)
from hyper.host_settings import HostSettings
from hyper.jobs import (
    INLINE_FILE_BYTES,
    LINK_SECONDS,
    MAX_FILE_KEY,
    MAX_LINKED_FILE_BYTES,
    JobStatus,
    LogKind,
)
from hyper.messages import ClaimedJob, FileLink, WorkerAssignment
from hyper.models import (
    ClusterSpec,
    DefinitionSpec,
    ImageSpec,
    QueueSpec,
    RegionSpec,
    ResourceKind,
    Spec,
)
from hyper.providers import Provider
from hyper.store.base import (
    ArrayRecord,
    ArrayTasks,
    CancelResult,
    Ending,
    FileLinks,
    HoldResult,
    JobFilter,
    JobRecord,
    LogEntry,
    NewJob,
    NodeRecord,
    Store,
)
from hyper.workflows.engine import WorkflowEngine
from hyper.workflows.port import WorkflowJob

LOG_PAGE = 1000  # log entries per answer, at most
LOG_PAGE_BYTES = 4 * 2**20  # and about this much text (a reader streams a big log page by page)
LOG_STEP = 64  # entries read from the store at a time while filling a page, at most
LOG_ENTRY_CHARS = 2**20  # longer output is kept as several entries
DEFINITION_CACHE_SECONDS = 10.0  # how long a definition's output limit is taken as read


def _report_output(chunks: Sequence[OutputChunk]) -> list[tuple[LogKind, str]]:
    """The output of a final report, at most NOTE_ROOM_BYTES of it (then one note)."""
    entries = [(chunk.kind, chunk.text) for chunk in chunks]
    if output.size_of(entries) <= output.NOTE_ROOM_BYTES:
        return entries
    return output.within(entries, 0, 0)[0]


def _usage(report: BatchReport) -> list[tuple[LogKind, str]]:
    """What an attempt used (peak memory, CPU time), kept as its last METRICS entry, marked
    `final` (qstat -i shows it)."""
    if not report.usage:
        return []
    return [(LogKind.METRICS, json.dumps({**report.usage, "final": 1.0}, sort_keys=True))]


USED_ENTRIES = 20_000  # METRICS entries a job's `used` is read from, at most


class Pulse:
    """Wakes every coroutine waiting on it; used for long-polls and to wake the scheduler."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float, *, settle: float = 0.0) -> bool:
        """Wait until it fires (True) or `timeout` passes (False). With `settle`, first
        let that long pass, a fire meanwhile counting: a burst of fires wakes it once."""
        event = self._event
        if settle > 0:
            await asyncio.sleep(settle)
            if event.is_set():
                return True
            timeout -= settle
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
            return True
        return False


class HostService:
    def __init__(self, store: Store, settings: HostSettings, provider: Provider) -> None:
        self.store = store
        self.settings = settings
        self.work_arrived = Pulse()  # jobs became claimable
        self.jobs_changed = Pulse()  # a job changed state or got output
        self.assignments = Pulse()  # workers were assigned to joined machines
        self.deployer = Deployer(store, provider, on_change=self.work_arrived.fire)
        self.workflows = WorkflowEngine(ServiceWorkflowHost(self))
        self._limits: dict[str, tuple[float, int]] = {}  # definition: (read at, output limit)
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop_waiting(self) -> None:
        """The host is stopping: long-polls (claims, a job's wait, a log's follow, a
        machine's assignments) stop waiting, so that the server can close their
        connections at once rather than cut them after its grace period. Those that
        have nothing to answer yet are refused (503): their clients pause and send them
        again, to the host once it is back (a claim takes no job it cannot hand out)."""
        self._stopping = True
        for pulse in (self.work_arrived, self.jobs_changed, self.assignments):
            pulse.fire()

    async def _wait(self, pulse: Pulse, seconds: float) -> None:
        """A long-poll's wait for `pulse`, at most `seconds`; HostStopping once the host
        stops (stop_waiting)."""
        if not self._stopping:
            await pulse.wait(seconds)
        if self._stopping:
            raise HostStopping("the host is stopping; send it again once it is back")

    # jobs ---------------------------------------------------------------------

    def submit(self, jobs: Sequence[JobSubmission]) -> list[int]:
        new = [self._new_job(job) for job in jobs]
        for queue, definition in {(job.queue, job.definition) for job in jobs}:
            self.check_fits(queue, definition)
        self._check_requests(jobs)
        ids = self.store.submit(new, time.time())
        self.work_arrived.fire()
        self.jobs_changed.fire()
        return ids

    def check_fits(self, queue: str, definition: str) -> None:
        """The queue and definition exist, and a worker of the definition fits the cluster."""
        q = resources.spec_of(self.store, ResourceKind.QUEUE, queue, QueueSpec)
        d = resources.spec_of(self.store, ResourceKind.DEFINITION, definition, DefinitionSpec)
        cluster = resources.find_spec(
            self.store, ResourceKind.CLUSTER, q.compute_environment, ClusterSpec
        )
        if cluster is not None and d.vcpus > cluster.max_vcpus:
            raise UsageError(
                f"definition {definition!r} needs {d.vcpus} vCPUs; queue {queue!r} runs on"
                f" cluster {cluster.name!r} with at most {cluster.max_vcpus} per region"
            )

    def _check_requests(self, jobs: Sequence[JobSubmission]) -> None:
        """A job asking more than any worker of its definition could ever have is refused,
        with what fits."""
        shapes: dict[str, capacity.Shape] = {}
        for job in jobs:
            if not job.resources:
                continue
            if job.definition not in shapes:
                spec = resources.spec_of(
                    self.store, ResourceKind.DEFINITION, job.definition, DefinitionSpec
                )
                shapes[job.definition] = capacity.shape_of(spec.model_dump())
            why = capacity.refusal(
                job.resources.model_dump(), shapes[job.definition], job.definition
            )
            if why and not self._sized_worker_fits(job, shapes[job.definition]):
                raise UsageError(f"job {job.name!r}: {why}")

    def _sized_worker_fits(self, job: JobSubmission, shape: capacity.Shape) -> bool:
        """A job larger than its definition's worker still runs where its queue reaches AWS
        Batch, which starts a worker of its own size (containerOverrides), when that many
        vCPUs fit in the queue's cluster and the store can tell the scheduler about it."""
        q = resources.find_spec(self.store, ResourceKind.QUEUE, job.queue, QueueSpec)
        if q is None or job.resources is None or not self.store.counts_requests:
            return False
        cluster = resources.find_spec(
            self.store, ResourceKind.CLUSTER, q.compute_environment, ClusterSpec
        )
        active = {r.name: r.kind for r in resources.active_regions(self.store)}
        names = active if q.automate_region_weights else q.region_distribution_weights
        sizing = any(active.get(name) == "aws" for name in names)
        want = capacity.effective(job.resources.model_dump(), shape)
        return sizing and cluster is not None and want.cpus <= cluster.max_vcpus

    def _new_job(self, job: JobSubmission) -> NewJob:
        if len(job.script.encode()) > self.settings.max_script_bytes:
            raise UsageError(
                f"script of job {job.name!r} is larger than {self.settings.max_script_bytes} bytes"
            )
        if "\x00" in job.script:
            raise UsageError(f"script of job {job.name!r} contains a NUL byte")
        for name in job.env:
            jobspec.check_env_name(name)
        output = job.output.model_dump() if job.output else {}
        # what the worker needs besides the script travels in the options
        options = {**output, "compat": job.compat, "package": job.package, "collect": job.collect}
        # kept for people to read (the dashboard): the store settles dependencies its own way
        options["depends"] = [f"{d.kind}:{d.target}" for d in job.depends]
        if job.resources:  # what the job asked for; the worker gives it (hyper.capacity)
            asked = job.resources.model_dump(exclude_none=True)
            options["request"] = asked or None
        return NewJob(
            name=job.name,
            queue=job.queue,
            definition=job.definition,
            script=job.script,
            retries=job.retries,
            env=job.env,
            submit_dir=job.submit_dir,
            priority=job.priority,
            time_limit=job.time_limit,
            hold=job.hold,
            depends=tuple(jobspec.Dependency(d.kind, d.target) for d in job.depends),
            options={k: v for k, v in options.items() if v},
            array=_array_tasks(job.array) if job.array else None,
        )

    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int, collapse: bool
    ) -> tuple[list[JobRecord | ArrayRecord], int | None]:
        """A page of jobs, and the id to continue after (None on the last page). Arrays are
        one line each when `collapse`, unless states are filtered (tasks differ in state)."""
        jobs = self.store.list_jobs(
            where, limit=limit, after=after, collapse=collapse and not where.statuses
        )
        return jobs, jobs[-1].id if len(jobs) == limit else None

    def count_jobs(self, where: JobFilter) -> dict[str, int]:
        counts = self.store.count_jobs(where)
        return {"Total": sum(counts.values()), **{s.value: n for s, n in counts.items()}}

    def script(self, job_id: int) -> str | None:
        job = self.store.get_job(job_id, with_script=True)
        if job is None:
            raise NotFound(f"unknown job id {job_id}")
        return job.script

    def job(self, job_id: int) -> JobRecord | ArrayRecord:
        found = self.store.get_job(job_id) or self.store.get_array(job_id)
        if found is None:
            raise NotFound(f"unknown job id {job_id}")
        return found

    def job_details(self, job: JobRecord | ArrayRecord) -> dict[str, Any]:
        """A job's fields, with what it gets on its worker (`resources`: CPUs, memory in
        MiB, GPUs, from what it asked and its definition) and, once it ran, what it used
        (`used`: peak resident memory and CPU time, as its worker sampled them)."""
        data = job.as_dict()
        found = self.store.get_resource(ResourceKind.DEFINITION.value, job.definition)
        if found is not None:
            asked = (job.options or {}).get("request")
            data["resources"] = capacity.effective(asked, capacity.shape_of(found.spec)).as_dict()
        if isinstance(job, JobRecord) and job.started is not None:
            used = self._used(job.id)
            if used:
                data["used"] = used
        return data

    def _used(self, job_id: int) -> dict[str, float]:
        """Peak memory and CPU time from the job's METRICS entries, the highest over its
        attempts (read up to USED_ENTRIES of them)."""
        peak = cpu = 0.0
        after, seen = 0, 0
        while seen < USED_ENTRIES:
            entries = self.store.read_log(job_id, [LogKind.METRICS], after=after, limit=1000)
            for entry in entries:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    sample = json.loads(entry.text)
                    peak = max(peak, float(sample.get("peak_rss_mib", sample.get("rss_mib", 0))))
                    cpu = max(cpu, float(sample.get("cpu_seconds", 0)))
            seen += len(entries)
            if len(entries) < 1000:
                break
            after = entries[-1].seq
        if not (peak or cpu):
            return {}  # it ended before its worker took a sample
        return {"peak_rss_mib": round(peak, 1), "cpu_seconds": round(cpu, 2)}

    async def wait_for_job(self, job_id: int, wait: float) -> JobRecord | ArrayRecord:
        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            job = self.job(job_id)
            left = deadline - time.monotonic()
            if job.finished or left <= 0:
                return job
            await self._wait(self.jobs_changed, left)

    def named(self, ids: Sequence[str], where: JobFilter) -> JobFilter:
        """`where`, narrowed to the jobs and tasks `ids` name."""
        chosen = self.store.resolve([jobspec.parse_selector(word) for word in ids])
        return dataclasses.replace(
            chosen,
            queue=where.queue,
            name=where.name,
            name_prefix=where.name_prefix,
            statuses=where.statuses,
            array_id=where.array_id,
        )

    def select(self, selection: Selection) -> JobFilter:
        """The jobs a cancel, hold or release names: ids, filters, or both."""
        if not (selection.ids or selection.name or selection.queue or selection.status):
            raise UsageError("say which jobs: job ids, a job name, a queue or a state")
        selectors = [jobspec.parse_selector(word) for word in selection.ids]
        chosen = self.store.resolve(selectors) if selectors else JobFilter()
        if selection.queue is not None:
            resources.require(self.store, ResourceKind.QUEUE, selection.queue)
        statuses = (JobStatus.parse(selection.status),) if selection.status else ()
        return dataclasses.replace(
            chosen, queue=selection.queue, name=selection.name, statuses=statuses
        )

    def cancel(self, selection: Selection) -> CancelResult:
        result = self.store.cancel(self.select(selection), time.time(), limit=selection.limit)
        self.jobs_changed.fire()
        self.work_arrived.fire()  # ended jobs may have released their dependents
        return result

    def hold(self, selection: Selection, *, hold: bool) -> HoldResult:
        where = self.select(selection)
        now = time.time()
        result = self.store.set_hold(where, now, selection.limit, hold=hold)
        self.jobs_changed.fire()
        if not hold:
            self.work_arrived.fire()
        return result

    async def read_log(
        self, job_id: int, kinds: Sequence[LogKind], after: int, wait: float
    ) -> tuple[list[LogEntry], bool]:
        """Entries after `after`; with `wait`, hold the request until there are some
        or the job has finished."""
        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            finished = self.job(job_id).finished
            entries, full = self._log_page(job_id, kinds, after)
            left = deadline - time.monotonic()
            if entries or finished or left <= 0:
                # the reader is done once the job is and this page was not full
                return entries, finished and not full
            await self._wait(self.jobs_changed, left)

    def _log_page(
        self, job_id: int, kinds: Sequence[LogKind], after: int
    ) -> tuple[list[LogEntry], bool]:
        """Entries after `after`, up to LOG_PAGE of them or about LOG_PAGE_BYTES of text;
        and whether the page is full (there may be more)."""
        entries: list[LogEntry] = []
        size = 0
        step = 4  # entries hold up to LOG_ENTRY_CHARS: a few first, then as many as fit
        largest = 1024
        while len(entries) < LOG_PAGE and size < LOG_PAGE_BYTES:
            step = min(step, LOG_PAGE - len(entries))
            found = self.store.read_log(job_id, kinds, after=after, limit=step)
            entries += found
            size += sum(len(e.text) for e in found)
            if len(found) < step:
                return entries, False
            after = found[-1].seq
            largest = max(largest, *(len(e.text) for e in found))
            step = max(1, min(LOG_STEP, (LOG_PAGE_BYTES - size) // largest))
        return entries, True

    # workers --------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queue: str,
        definition: str,
        limit: int,
        wait: float,
        room: dict[str, int] | None = None,
    ) -> list[ClaimedJob]:
        """Jobs for a worker, each with how to run it: its definition (limits, image...)
        and the container image to use, if any. With `room` (what the worker has left),
        only jobs whose requests fit in it."""
        spec = resources.spec_of(self.store, ResourceKind.DEFINITION, definition, DefinitionSpec)
        fits = None
        if room is not None:
            whole = {k: room.pop(f"of_{k}", None) for k in ("cpus", "mem_mib", "gpus")}
            shape, free = capacity.shape_of(spec.model_dump()), capacity.Request(**room)
            if whole["cpus"] and whole["mem_mib"]:
                ids = tuple(str(i) for i in range(whole["gpus"] or 0))
                shape = capacity.Shape(whole["cpus"], whole["mem_mib"], ids, shape.share_cpus)

            def fits(asked: dict[str, Any] | None) -> bool:
                return capacity.effective(asked, shape).fits(free)

        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            jobs = self.store.claim(
                worker_id,
                queue,
                definition,
                limit,
                self.settings.lease_seconds,
                time.time(),
                fits,
            )
            left = deadline - time.monotonic()
            if jobs or left <= 0:
                break
            await self._wait(self.work_arrived, left)
        if jobs:
            self.jobs_changed.fire()
        image = self._container_image(spec)
        definition_spec = spec.model_dump() if jobs else {}
        claimed = []
        for job in jobs:
            job.env = {**spec.environment, **job.env}
            claimed.append(
                ClaimedJob.from_wire(
                    {
                        **job.as_dict(),
                        "definition_spec": definition_spec,
                        "image": image,
                        "lease_seconds": self.settings.lease_seconds,  # it fences itself by it
                    }
                )
            )
        return claimed

    def _container_image(self, spec: DefinitionSpec) -> str | None:
        if spec.native:
            return None
        if not spec.use_cyclone_image:
            return spec.image_uri  # `_REGION_` is for cloud registries; a worker fills it in
        image = resources.spec_of(
            self.store, ResourceKind.IMAGE, spec.cyclone_image_name, ImageSpec
        )
        return image.uri or f"hyper/{image.name}:latest"

    def _append_output(
        self,
        job_id: int,
        attempt: int,
        output: list[OutputChunk],
        metrics: dict[str, float] | None,
        now: float,
    ) -> None:
        entries = [
            (chunk.kind, chunk.text[i : i + LOG_ENTRY_CHARS])
            for chunk in output
            for i in range(0, len(chunk.text), LOG_ENTRY_CHARS)
        ]
        if metrics:
            entries.append((LogKind.METRICS, json.dumps(metrics, sort_keys=True)))
        if entries:
            limit = self._output_limit(job_id) if output else None
            self.store.append_log(job_id, attempt, entries, now, output_limit=limit)
            self.jobs_changed.fire()

    def _output_limit(self, job_id: int) -> int:
        """How much output an attempt of the job keeps (its definition's, read at most
        once every few seconds)."""
        job = self.store.get_job(job_id)
        name = job.definition if job else ""
        seen = self._limits.get(name)
        if seen is None or time.monotonic() - seen[0] > DEFINITION_CACHE_SECONDS:
            found = self.store.get_resource(ResourceKind.DEFINITION.value, name) if name else None
            seen = (time.monotonic(), output.limit_bytes(found.spec if found else None))
            self._limits[name] = seen
        return seen[1]

    def progress(self, worker_id: str, job_id: int, report: ProgressReport) -> bool:
        now = time.time()
        cancel = self.store.heartbeat(
            worker_id,
            job_id,
            report.attempt,
            self.settings.lease_seconds,
            now,
            report.process_group,
        )
        self._append_output(job_id, report.attempt, report.output, report.metrics, now)
        return cancel

    async def complete(
        self, worker_id: str, batch: BatchCompletion
    ) -> tuple[list[JobStatus | Conflict], list[ClaimedJob]]:
        """End attempts (in one transaction), and in the same round trip claim the worker's
        next jobs. A report for an attempt the worker no longer holds is refused."""
        # a report's own output is short (notes); the job's output came with its progress
        endings = [
            Ending(r.job_id, r.attempt, r.exit_code, r.reason, _report_output(r.output) + _usage(r))
            for r in batch.reports
        ]
        results = self.store.complete_many(worker_id, endings, time.time())
        self.workflows.reported([r.job_id for r in batch.reports])
        self.work_arrived.fire()  # retries, or dependents released; workflows move on
        self.jobs_changed.fire()
        following: list[ClaimedJob] = []
        # a worker that lost a lease is behind: it gets nothing more until it catches up
        if batch.claim_next and batch.reports and not any(isinstance(r, Conflict) for r in results):
            job = self.job(batch.reports[0].job_id)
            room = batch.room.model_dump() if batch.room else None
            following = await self.claim(
                worker_id, job.queue, job.definition, batch.claim_next, 0, room
            )
        return results, following

    def return_claims(self, worker_id: str, claims: list[tuple[int, int]]) -> int:
        returned = self.store.return_claims(worker_id, claims, time.time())
        if returned:
            self.work_arrived.fire()
        return returned

    def worker_exit(self, worker_id: str) -> None:
        self.store.end_worker(worker_id, time.time())

    # files ----------------------------------------------------------------------

    def put_file(self, key: str, data: bytes) -> None:
        self.store.put_file(key, data, time.time())

    def get_file(self, key: str) -> bytes:
        data = self.store.get_file(key)
        if data is None:
            raise NotFound(f"no file {key!r} on this host")
        return data

    def delete_files(self, key: str) -> int:
        return self.store.delete_files(key)

    def held_job(self, worker_id: str, job_id: int) -> JobRecord:
        """The job, when `worker_id` holds it (claimed and not ended); Conflict otherwise:
        a worker reaches the files of its own jobs only."""
        job = self.store.get_job(job_id)
        if job is None or job.finished or job.worker_id != worker_id:
            raise Conflict(f"worker {worker_id!r} does not hold job {job_id}")
        return job

    def job_file_key(self, worker_id: str, job_id: int, key: str) -> str:
        """Where a file that a job the worker holds collects is kept: ``jobs/{job_id}/{key}``."""
        self.held_job(worker_id, job_id)
        full = f"jobs/{job_id}/{key}"
        if len(full) > MAX_FILE_KEY:
            raise UsageError(f"a file key is at most {MAX_FILE_KEY} characters: {full[:40]}...")
        return full

    def job_package(self, worker_id: str, job_id: int) -> bytes | FileLink:
        """The package of a job the worker holds (NotFound when it has none), or a link to
        it (see read_file)."""
        package = self.held_job(worker_id, job_id).options.get("package")
        if not package:
            raise NotFound(f"job {job_id} has no package")
        return self.read_file(str(package))

    # files past the API, by presigned URL (a store that has them: an AWS host's bucket) ---

    def read_file(self, key: str) -> bytes | FileLink:
        """The file's bytes; a link to GET them instead when the store gives links and the
        file is over INLINE_FILE_BYTES (an AWS host's API carries 6 MB at most)."""
        if not isinstance(self.store, FileLinks):
            return self.get_file(key)
        found = self.store.read_file(key, INLINE_FILE_BYTES, LINK_SECONDS)
        if found is None:
            raise NotFound(f"no file {key!r} on this host")
        return found

    def upload_link(self, key: str, size: int, md5: str) -> FileLink | None:
        """A link to PUT a file of `size` bytes and MD5 `md5` (hex) straight into the store,
        scoped to `key` alone; None when the store gives no links (send it to the host)."""
        if not isinstance(self.store, FileLinks):
            return None
        if size > MAX_LINKED_FILE_BYTES:
            raise UsageError(
                f"file {key!r} is {size:,} bytes; this host keeps files of at most"
                f" {MAX_LINKED_FILE_BYTES // 2**30} GiB"
            )
        return self.store.upload_link(key, size, md5, LINK_SECONDS)

    def uploaded(self, key: str, size: int, md5: str) -> None:
        """Accept a file sent by link only once it is in the store whole: `size` bytes of
        MD5 `md5`; an upload cut short, or another file there, is refused (Conflict)."""
        if not isinstance(self.store, FileLinks):
            raise UsageError("this host gives no upload links: send the file itself")
        there = self.store.file_stat(key)
        if there is None:
            raise Conflict(f"the upload of {key!r} has not arrived; send it again")
        if there != (size, md5):
            raise Conflict(
                f"the upload of {key!r} did not arrive whole ({there[0]:,} bytes there,"
                f" {size:,} sent; MD5 {there[1]} there, {md5} sent); send it again"
            )

    def job_upload_link(
        self, worker_id: str, job_id: int, key: str, size: int, md5: str
    ) -> FileLink | None:
        """upload_link for a file a job the worker holds collects (Conflict otherwise)."""
        return self.upload_link(self.job_file_key(worker_id, job_id, key), size, md5)

    def job_uploaded(self, worker_id: str, job_id: int, key: str, size: int, md5: str) -> None:
        self.uploaded(self.job_file_key(worker_id, job_id, key), size, md5)

    # resources ------------------------------------------------------------------

    def list_resources(self, kind: ResourceKind) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.store.list_resources(kind.value)]

    def get_resource(self, kind: ResourceKind, name: str) -> dict[str, Any]:
        found = self.store.get_resource(kind.value, name)
        if found is None:
            raise resources.unknown(kind, name, resources.names(self.store, kind))
        return found.as_dict()

    # machines of static regions ---------------------------------------------------

    def join_node(self, node_id: str, request: NodeJoin) -> dict[str, Any]:
        region = resources.spec_of(self.store, ResourceKind.REGION, request.region, RegionSpec)
        if region.kind != "static":
            raise UsageError(
                f"region {region.name!r} is a {region.kind} region; machines join static"
                " regions (hyper regions add-region --kind static)"
            )
        resources.require(self.store, ResourceKind.DEFINITION, request.definition)
        now = time.time()
        node = NodeRecord(node_id, request.region, request.definition, request.slots,
                          request.hostname, now, now)  # fmt: skip
        self.store.join_node(node)
        self.work_arrived.fire()  # new room: the scheduler may start workers there now
        return {"id": node_id, "url": self.settings.url}

    async def poll_node(self, node_id: str, wait: float) -> list[WorkerAssignment]:
        """Workers assigned to the machine that it should start now."""
        if not any(n.id == node_id for n in self.store.nodes()):
            raise NotFound(f"no machine {node_id!r} has joined; run hyper worker join again")
        deadline = time.monotonic() + min(wait, self.settings.max_wait_seconds)
        while True:
            workers = self.store.take_assignments(node_id, time.time())
            left = deadline - time.monotonic()
            if workers or left <= 0:
                break
            await self._wait(self.assignments, left)
        settings = self.settings
        assignments = []
        for w in workers:
            spec = resources.find_spec(
                self.store, ResourceKind.DEFINITION, w.definition, DefinitionSpec
            )
            lifetime = spec.timeout_minutes * 60 if spec and spec.timeout_minutes else None
            assignments.append(
                WorkerAssignment(
                    worker_id=w.id,
                    queue=w.queue,
                    definition=w.definition,
                    idle_seconds=settings.worker_idle_seconds,
                    heartbeat_seconds=settings.heartbeat_seconds,
                    patience_seconds=settings.worker_patience_seconds,
                    lifetime_seconds=lifetime,
                )
            )
        return assignments

    def nodes(self, region: str | None) -> list[dict[str, Any]]:
        return [dataclasses.asdict(node) for node in self.store.nodes(region)]

    def leave_node(self, node_id: str) -> None:
        self.store.leave_node(node_id)

    def health(self) -> dict[str, Any]:
        from hyper.version import __version__

        return {
            "status": "ok",
            "host": self.settings.name,
            "version": __version__,
            "pid": os.getpid(),
        }


def _array_tasks(body: ArrayBody) -> ArrayTasks:
    """An array from a range spec, or from tasks given one by one (numbered from 1)."""
    if (body.spec is None) == (body.tasks is None):
        raise UsageError("an array needs either a range spec or a list of tasks")
    if body.spec is not None:
        parsed = jobspec.parse_array(body.spec)
        if parsed.cap is not None and parsed.cap > MAX_ID:  # more than the store holds
            raise UsageError(f"array {body.spec!r}: the cap after % goes up to {MAX_ID}")
        return ArrayTasks(indices=parsed.indices, cap=body.cap or parsed.cap, spec=body.spec)
    tasks = body.tasks or []
    if not tasks:
        raise UsageError("an array needs at least one task")
    if len(tasks) > jobspec.MAX_ARRAY_SIZE:
        raise UsageError(f"an array has at most {jobspec.MAX_ARRAY_SIZE} tasks")
    indices = [t.index if t.index is not None else n for n, t in enumerate(tasks, start=1)]
    if len(set(indices)) != len(indices):
        raise UsageError("array task indices must be unique")
    for task in tasks:
        for name in task.env:
            jobspec.check_env_name(name)
    named = any(t.name for t in tasks)
    params = [
        {k: v for k, v in (("env", t.env), ("replacements", t.replacements)) if v} for t in tasks
    ]
    return ArrayTasks(
        indices=indices,
        cap=body.cap,
        spec=f"{len(tasks)} tasks",
        names=[t.name or "" for t in tasks] if named else None,
        params=params if any(params) else None,
    )


class ServiceWorkflowHost:
    """The host as the workflow engine sees it (``hyper.workflows.port.WorkflowHost``),
    made of its service: the engine's jobs become the API's submissions here."""

    def __init__(self, service: HostService) -> None:
        self.service = service

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def lease_seconds(self) -> float:
        return self.service.settings.lease_seconds

    def check_fits(self, queue: str, definition: str) -> None:
        self.service.check_fits(queue, definition)

    def submit(self, jobs: Sequence[WorkflowJob]) -> list[int]:
        return self.service.submit([_submission(job) for job in jobs])

    def release(self, job_id: int) -> None:
        self.service.hold(Selection(ids=[str(job_id)]), hold=False)

    def cancel(self, job_ids: Sequence[int]) -> None:
        self.service.cancel(Selection(ids=[str(i) for i in job_ids]))

    def create_resource(self, kind: ResourceKind, spec: Spec) -> None:
        self.service.deployer.create(kind, spec)

    def delete_resource(self, kind: ResourceKind, name: str, *, force: bool) -> None:
        self.service.deployer.delete(kind, name, force=force)

    def wake(self) -> None:
        self.service.work_arrived.fire()


def _submission(job: WorkflowJob) -> JobSubmission:
    after = [DependencyBody(kind="afterok", target=job.after)] if job.after else []
    return JobSubmission(
        name=job.name,
        queue=job.queue,
        definition=job.definition,
        script=job.script,
        env=job.env,
        package=job.package,
        hold=job.hold,
        depends=after,
    )
