"""What each dashboard page shows, read from the host's service and store.

Every read is one the API makes too: counts from the store's kept counts, a page of
jobs by id, a log after a sequence number. Nothing here scans every job.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hyper.host.service import HostService
from hyper.jobs import FINISHED, JobStatus, LogKind
from hyper.models import ResourceKind
from hyper.store.base import ArrayRecord, JobFilter, JobRecord

PAGE_SIZE = 50
TASKS_SHOWN = 100
LOG_LINES = 500  # at most per answer: the page asks again for the rest
THROUGHPUT_MINUTES = 60
STATES = [s.value for s in JobStatus]
RESOURCE_KINDS = [k.value for k in ResourceKind]


def overview(service: HostService) -> dict[str, Any]:
    store = service.store
    queues = []
    for queue in store.list_resources(ResourceKind.QUEUE.value):
        counts = store.count_jobs(JobFilter(queue=queue.name))
        queues.append(
            {
                "name": queue.name,
                "status": queue.status,
                "counts": {s.value: n for s, n in counts.items()},
                "total": sum(counts.values()),
            }
        )
    regions: Counter[str] = Counter()
    for worker in store.live_workers():
        regions[worker.region] += 1
    clusters = [
        {
            "name": c.name,
            "max_vcpus": c.spec.get("max_vcpus"),
            "type": c.spec.get("type"),
            "status": c.status,
        }
        for c in store.list_resources(ResourceKind.CLUSTER.value)
    ]
    settings = service.settings
    limits = {
        "lease (s)": settings.lease_seconds,
        "worker idle (s)": settings.worker_idle_seconds,
        "script size (bytes)": settings.max_script_bytes,
        "longest wait of a request (s)": settings.max_wait_seconds,
    }
    return {
        "queues": queues,
        "states": STATES,
        "regions": sorted(regions.items()),
        "workers": sum(regions.values()),
        "clusters": clusters,
        "limits": limits,
        "store": store_size(service),
        "jobs": sum(q["total"] for q in queues),
    }


def store_size(service: HostService) -> str:
    """The store's size on disk, where it is a file (SQLite with its journal)."""
    where = getattr(service.store, "path", None)
    if not isinstance(where, str) or where == ":memory:":
        return "kept by the cloud provider"
    database = Path(where)
    total = 0
    for suffix in ("", "-wal", "-shm"):
        path = database.with_name(database.name + suffix)
        if path.is_file():
            total += path.stat().st_size
    return human_bytes(total) if total else "kept by the cloud provider"


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def throughput(service: HostService, now: float) -> dict[str, list[int]]:
    """Jobs and tasks ended per minute over the last hour: minute starts and counts."""
    first = (int(now) // 60 - THROUGHPUT_MINUTES + 1) * 60
    counts = service.store.ended_per_minute(first)
    minutes = [first + 60 * n for n in range(THROUGHPUT_MINUTES)]
    return {"t": minutes, "n": [counts.get(minute, 0) for minute in minutes]}


@dataclasses.dataclass(frozen=True)
class JobQuery:
    """The jobs table's filters, as the page's form gives them."""

    queue: str = ""
    state: str = ""
    name: str = ""
    array: int | None = None
    after: int = 0

    def where(self) -> JobFilter:
        name, prefix = self.name, None
        if name.endswith("*"):
            name, prefix = "", name[:-1]
        return JobFilter(
            queue=self.queue or None,
            name=name or None,
            name_prefix=prefix or None,
            statuses=(JobStatus.parse(self.state),) if self.state else (),
            array_id=self.array,
        )

    def link(self, **changes: Any) -> str:
        """The query string of this query with `changes`."""
        from urllib.parse import urlencode

        values = {**dataclasses.asdict(self), **changes}
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 0)})


def jobs_page(service: HostService, query: JobQuery) -> dict[str, Any]:
    where = query.where()
    jobs, next_after = service.list_jobs(
        where, limit=PAGE_SIZE, after=query.after, collapse=query.array is None
    )
    counts = service.store.count_jobs(where) if not where.name and not where.name_prefix else None
    return {
        "rows": [row(job) for job in jobs],
        "next": next_after,
        "query": query,
        "counts": {s.value: n for s, n in counts.items()} if counts is not None else None,
        "total": sum(counts.values()) if counts is not None else None,
        "queues": [q.name for q in service.store.list_resources(ResourceKind.QUEUE.value)],
        "states": STATES,
    }


def row(job: JobRecord | ArrayRecord) -> dict[str, Any]:
    """A line of the jobs table: a job, a task, or a whole array with its progress."""
    if isinstance(job, ArrayRecord):
        done = sum(job.counts.get(s.value, 0) for s in FINISHED)
        return {
            "id": job.id,
            "label": f"{job.id}[]",
            "name": job.name,
            "queue": job.queue,
            "status": job.status,
            "array": True,
            "size": job.size,
            "done": done,
            "failed": job.counts.get(JobStatus.FAILED.value, 0),
            "running": job.counts.get(JobStatus.RUNNING.value, 0),
            "created": job.created,
            "exit_code": job.highest_exit_code,
        }
    label = str(job.id) if job.array_id is None else f"{job.array_id}[{job.array_index}]"
    return {
        "id": job.id,
        "label": label,
        "name": job.name,
        "queue": job.queue,
        "status": job.status.value,
        "array": False,
        "created": job.created,
        "exit_code": job.exit_code,
    }


def job_page(service: HostService, job_id: int) -> dict[str, Any]:
    found = service.job(job_id)
    data: dict[str, Any] = {"job": found, "fields": fields(found), "row": row(found)}
    if isinstance(found, ArrayRecord):
        tasks = service.store.list_jobs(JobFilter(array_id=job_id), limit=TASKS_SHOWN)
        data["tasks"] = [row(task) for task in tasks]
        data["attempts"] = []
        data["finished"] = found.finished
        data["depends"] = dependencies(service, found)
    else:
        data["attempts"] = attempts(service, job_id)
        data["finished"] = found.finished
        data["depends"] = dependencies(service, found)
    return data


def dependencies(service: HostService, job: JobRecord | ArrayRecord) -> list[dict[str, Any]]:
    """What the job waits for, as submitted (afterok:12...), each with its state now."""
    found = []
    for said in job.options.get("depends") or []:
        kind, _, target = str(said).partition(":")
        if not target.isdigit():
            continue
        record = service.store.get_job(int(target)) or service.store.get_array(int(target))
        status = (
            (record.status if isinstance(record, ArrayRecord) else record.status.value)
            if record
            else "unknown"
        )
        found.append({"kind": kind, "target": int(target), "status": status})
    return found


def fields(job: JobRecord | ArrayRecord) -> list[tuple[str, Any]]:
    shown = job.as_dict()
    for hidden in ("env", "options", "script", "counts", "kind", "lease_until"):
        shown.pop(hidden, None)
    for moment in ("created", "started", "ended"):
        if shown.get(moment):
            shown[moment] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(shown[moment]))
    return [(k, v) for k, v in shown.items() if v not in (None, "", {})]


def attempts(service: HostService, job_id: int) -> list[dict[str, Any]]:
    """Each attempt with what the host noted of it (started where, how it ended)."""
    by_attempt: dict[int, list[str]] = {}
    for entry in service.store.read_log(job_id, [LogKind.SYSTEM], limit=LOG_LINES):
        by_attempt.setdefault(entry.attempt, []).append(entry.text.strip())
    return [{"attempt": n, "notes": notes} for n, notes in sorted(by_attempt.items())]


def log_after(service: HostService, job_id: int, after: int) -> dict[str, Any]:
    kinds = [LogKind.STDOUT, LogKind.STDERR, LogKind.SYSTEM]
    entries = service.store.read_log(job_id, kinds, after=after, limit=LOG_LINES)
    finished = service.job(job_id).finished
    return {
        "entries": entries,
        "next": entries[-1].seq if entries else after,
        # once the job is over and all was read, the page stops asking
        "more": not finished or len(entries) == LOG_LINES,
        "job_id": job_id,
    }


def workflows(service: HostService) -> list[dict[str, Any]]:
    return [w.shown() for w in service.workflows.recent(unfinished=False, limit=100)]


def resources(service: HostService, kind: str) -> list[dict[str, Any]]:
    return [r.as_dict() for r in service.store.list_resources(ResourceKind(kind).value)]
