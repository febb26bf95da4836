"""A workflow run from the client's side: pack and send its jobs' files, start it on the
host, watch it, cancel it. The host runs it: nothing here has to stay alive."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyper.client import HostClient
from hyper.errors import EXIT_CANCELLED, EXIT_FAILURE, HyperError, UsageError
from hyper.resources import SAMPLE_DEFINITION, SAMPLE_QUEUE
from hyper.workflows.jobsfile import JobsFile
from hyper.workflows.model import Workflow, WorkflowState

FOLLOW_SECONDS = 0.5  # between two looks at a run being watched
EXIT_CODES = {
    WorkflowState.SUCCESSFUL: 0,
    WorkflowState.FAILED: EXIT_FAILURE,
    WorkflowState.CANCELLED: EXIT_CANCELLED,
}


@dataclass(frozen=True)
class RunOptions:
    """Where and how a run goes: on `queue`, or on a cluster (and queue) made for it."""

    definition: str = SAMPLE_DEFINITION
    queue: str | None = None  # SAMPLE_QUEUE when there is no cluster
    cluster: str | None = None
    max_vcpus: int | None = None
    cluster_timeout: float = 1800.0
    keep_cluster: bool = False
    keep_going: bool = False

    def __post_init__(self) -> None:
        if self.cluster and self.queue:
            raise UsageError(
                "give --queue or --cluster, not both: a run's cluster has its own queue"
            )


@dataclass(frozen=True)
class Snapshot:
    """A run, and its jobs as they are now (by id)."""

    workflow: Workflow
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)


def start(client: HostClient, jobs_file: JobsFile, options: RunOptions) -> Workflow:
    """Pack every job's files (all of them before anything is sent), put them on the host
    and start the run there. A refused start leaves no file behind."""
    packages = [job.source.pack() for job in jobs_file.jobs]
    folder = f"workflows/{secrets.token_hex(8)}"
    steps = []
    try:
        for n, (job, data) in enumerate(zip(jobs_file.jobs, packages, strict=True)):
            key = f"{folder}/{n}.tar.gz"
            client.put_file(key, data)
            steps.append({"name": job.name, "handler": job.handler, "package": key,
                          "wait_time": job.wait_time, "source": str(job.source)})  # fmt: skip
        cluster = None
        if options.cluster:
            cluster = {"name": options.cluster, "max_vcpus": options.max_vcpus,
                       "timeout": options.cluster_timeout}  # fmt: skip
        body = {
            "name": jobs_file.path.name,
            "order": jobs_file.order,
            "steps": steps,
            "definition": options.definition,
            "queue": None if cluster else options.queue or SAMPLE_QUEUE,
            "cluster": cluster,
            "keep_cluster": options.keep_cluster,
            "keep_going": options.keep_going,
        }
    except BaseException:
        _forget(client, folder)
        raise
    try:
        return Workflow.model_validate(client.call("POST", "/workflows", body))
    except UsageError:  # refused; not when the answer was lost: the run may have started
        _forget(client, folder)
        raise


def _forget(client: HostClient, folder: str) -> None:
    with contextlib.suppress(HyperError):
        client.delete_files(folder)


def look(client: HostClient, workflow_id: int) -> Snapshot:
    """The run and the current state of its jobs: two requests."""
    workflow = Workflow.model_validate(client.call("GET", f"/workflows/{int(workflow_id)}"))
    if not workflow.job_ids:
        return Snapshot(workflow)
    page = client.list_jobs(ids=[str(i) for i in workflow.job_ids], limit=1000)
    return Snapshot(workflow, {job["id"]: job for job in page["jobs"]})


def follow(client: HostClient, workflow_id: int, show: Callable[[Snapshot], None]) -> Snapshot:
    """Show the run each time it is looked at, until it has finished."""
    while True:
        snapshot = look(client, workflow_id)
        show(snapshot)
        if snapshot.workflow.state.finished:
            return snapshot
        time.sleep(FOLLOW_SECONDS)


def cancel(client: HostClient, workflow_id: int, cause: str) -> Workflow:
    path = f"/workflows/{int(workflow_id)}/cancel"
    return Workflow.model_validate(client.call("POST", path, {"cause": cause}))


def recent(client: HostClient, *, limit: int = 100) -> list[Workflow]:
    found = client.call("GET", "/workflows", query={"limit": limit})["workflows"]
    return [Workflow.model_validate(item) for item in found]
