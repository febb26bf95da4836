"""Request and response bodies of the host API (what the OpenAPI schema shows)."""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hyper.jobs import FILE_KEY_PATTERN, MAX_FILE_KEY, MAX_LINKED_FILE_BYTES, LogKind, escapes
from hyper.jobspec import JOB_NAME_PATTERN, MAX_ARRAY_INDEX, MAX_NAME_LENGTH, MAX_SCRIPT_BYTES
from hyper.messages import ClaimedJob, WorkerAssignment
from hyper.models import NAME_PATTERN

MAX_ID = 2**62  # ids, indices and counts stay within SQLite's 64-bit integers
MAX_COLLECT = 100  # paths a job may collect
# a collected path becomes the key jobs/<id>/<path>: room is left for the prefix
MAX_COLLECT_PATH = MAX_FILE_KEY - len(f"jobs/{MAX_ID}/")
FileKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_FILE_KEY, pattern=FILE_KEY_PATTERN)
]
CollectPath = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_COLLECT_PATH, pattern=FILE_KEY_PATTERN)
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UploadBody(Body):
    """A file to be sent by link (hyper/host/routes/files.py): its size and MD5 (hex)."""

    size: int = Field(ge=0, le=MAX_LINKED_FILE_BYTES)
    md5: str = Field(pattern="^[0-9a-f]{32}$")


class DependencyBody(Body):
    kind: Literal["afterok", "afterany", "afternotok", "aftercorr"]
    target: int = Field(ge=1, le=MAX_ID)


class TaskBody(Body):
    """One task of an array given task by task (array files, work items)."""

    index: int | None = Field(None, ge=0, le=MAX_ARRAY_INDEX)  # as in a range spec
    name: str | None = Field(None, max_length=MAX_NAME_LENGTH, pattern=JOB_NAME_PATTERN)
    env: dict[str, str] = Field(default_factory=dict)
    replacements: dict[Annotated[str, StringConstraints(min_length=1)], str] = Field(
        default_factory=dict
    )


class ArrayBody(Body):
    """Either a range `spec` such as "1-1000:2%50", or `tasks` one by one."""

    spec: str | None = Field(None, max_length=10_000)
    tasks: list[TaskBody] | None = None
    cap: int | None = Field(None, ge=1, le=MAX_ID)


class OutputBody(Body):
    stdout: str | None = Field(None, max_length=4096)
    stderr: str | None = Field(None, max_length=4096)
    join: bool = False


class ResourcesBody(Body):
    """What the job asks for (hyper.capacity); what it does not say takes the default."""

    cpus: int | None = Field(None, ge=1, le=4096)
    mem_mib: int | None = Field(None, ge=1, le=64 * 2**20)
    gpus: int | None = Field(None, ge=0, le=64)


class JobSubmission(Body):
    name: str = Field(max_length=MAX_NAME_LENGTH, pattern=JOB_NAME_PATTERN)
    queue: str = Field(min_length=1, max_length=128)
    definition: str = Field(min_length=1, max_length=128)
    script: str = Field(max_length=MAX_SCRIPT_BYTES, description="at most 4 MiB once encoded")
    retries: int = Field(0, ge=0, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    submit_dir: str | None = Field(None, max_length=4096)
    priority: int = Field(0, ge=-10_000, le=10_000)
    time_limit: int | None = Field(None, ge=1, le=10 * 365 * 86400, description="seconds")
    hold: bool = False
    resources: ResourcesBody | None = Field(
        None, description="CPUs, memory (MiB) and GPUs the job gets on its worker"
    )
    depends: list[DependencyBody] = Field(default_factory=list, max_length=1000)
    output: OutputBody | None = None
    array: ArrayBody | None = None
    compat: list[Literal["slurm", "pbs", "lsf"]] = Field(
        default_factory=list, description="also set these schedulers' job variables"
    )
    package: FileKey | None = Field(
        None, description="a files key: a gzip'd tar archive unpacked where the job runs"
    )
    collect: list[CollectPath] = Field(
        default_factory=list,
        max_length=MAX_COLLECT,
        description="files (relative to where the job runs) kept as jobs/<id>/<path> when it ends",
    )


class SubmitRequest(Body):
    jobs: list[JobSubmission] = Field(min_length=1)


class SubmitResponse(BaseModel):
    ids: list[int]


class JobPage(BaseModel):
    jobs: list[dict[str, Any]]
    next: int | None = None


class Selection(Body):
    """Which jobs: ids (`12`, `12[1-5]`, `12_3`) and/or filters, all of which must match."""

    ids: list[str] = Field(default_factory=list)
    name: str | None = None
    queue: str | None = None
    status: str | None = None
    limit: int | None = Field(
        None, ge=1, le=MAX_ID, description="change at most this many jobs now; `more` says if"
        " some are left, for the same request again"
    )  # fmt: skip


class CancelResponse(BaseModel):
    cancelled: int
    stopping: int
    finished: list[int]
    more: bool = False


class HoldResponse(BaseModel):
    changed: int
    unchanged: list[int]
    more: bool = False


class LogPage(BaseModel):
    entries: list[dict[str, Any]]
    next: int
    finished: bool


class RoomBody(Body):
    """What a worker has left: only jobs whose requests fit in it are claimed."""

    cpus: int = Field(ge=0, le=1_000_000)
    mem_mib: int = Field(ge=0, le=2**50)
    gpus: int = Field(0, ge=0, le=1_000_000)
    # the worker's whole, when it is not its definition's shape (a joined machine's share,
    # a Batch worker of a job's own size): what a job asking nothing takes
    of_cpus: int | None = Field(None, ge=1, le=1_000_000)
    of_mem_mib: int | None = Field(None, ge=1, le=2**50)
    of_gpus: int | None = Field(None, ge=0, le=1_000_000)


class ClaimRequest(Body):
    queue: str
    definition: str
    limit: int = Field(1, ge=1, le=1000)
    wait: float = Field(0.0, ge=0.0, le=60.0)
    room: RoomBody | None = None


class ClaimResponse(BaseModel):
    jobs: list[ClaimedJob] = Field(description="the jobs claimed, each with how to run it")


class OutputChunk(Body):
    kind: LogKind
    text: str


class ProgressReport(Body):
    attempt: int = Field(ge=1, le=MAX_ID)
    output: list[OutputChunk] = Field(default_factory=list)
    metrics: dict[str, float] | None = None
    process_group: int | None = Field(
        None, ge=1, le=MAX_ID, description="where the job runs, on its machine"
    )


class ProgressResponse(BaseModel):
    cancel: bool


class CompletionReport(Body):
    attempt: int = Field(ge=1, le=MAX_ID)
    exit_code: int | None = Field(None, ge=-MAX_ID, le=MAX_ID)
    reason: str | None = Field(None, max_length=1000)
    output: list[OutputChunk] = Field(default_factory=list)
    claim_next: int = Field(0, ge=0, le=1000, description="also claim this many next jobs")
    usage: dict[str, float] | None = Field(
        None, description="what the attempt used: peak_rss_mib, cpu_seconds (sampled)"
    )


class BatchReport(CompletionReport):
    job_id: int = Field(ge=1, le=MAX_ID)


class BatchCompletion(Body):
    """Several attempts ended, reported together; with the next jobs claimed in return."""

    reports: list[BatchReport] = Field(max_length=1000)
    claim_next: int = Field(0, ge=0, le=1000)
    room: RoomBody | None = Field(None, description="the next jobs fit in this")


class BatchCompletionResponse(BaseModel):
    statuses: list[str | None] = Field(description="per report; null when it was refused")
    jobs: list[ClaimedJob] = Field(default_factory=list, description="the next jobs claimed")


class CompletionResponse(BaseModel):
    status: str
    jobs: list[ClaimedJob] = Field(default_factory=list, description="the next jobs claimed")


class ResourceList(BaseModel):
    items: list[dict[str, Any]]


class NodeJoin(Body):
    """A machine of a static region offering slots for workers of one definition."""

    region: str
    definition: str
    slots: int = Field(ge=1, le=1024)
    hostname: str = Field("", max_length=255)


class NodePoll(Body):
    wait: float = Field(0.0, ge=0.0, le=60.0)


class NodePollResponse(BaseModel):
    workers: list[WorkerAssignment] = Field(description="the workers to start now")


class ClaimRef(Body):
    job_id: int = Field(ge=1, le=MAX_ID)
    attempt: int = Field(ge=1, le=MAX_ID)


class ReturnedClaims(Body):
    """Jobs a worker claimed and will not start (it is stopping, or a long job came first)."""

    jobs: list[ClaimRef] = Field(max_length=1000)


# workflows -----------------------------------------------------------------------------


class WorkflowStep(Body):
    name: str = Field(max_length=MAX_NAME_LENGTH, pattern=JOB_NAME_PATTERN)
    handler: str = Field(
        min_length=1, max_length=4096, description="the file to run, in the package"
    )
    package: FileKey
    wait_time: int = Field(10, ge=1, le=240, description="seconds between checks of its job")
    source: str = Field("", max_length=4096, description="where its files came from")

    @field_validator("handler")
    @classmethod
    def _inside_the_package(cls, handler: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in handler):
            raise ValueError("a handler holds no control characters")
        if escapes(handler) or posixpath.normpath(handler) == ".":
            raise ValueError("a handler is a path inside its package")
        return posixpath.normpath(handler)


class WorkflowCluster(Body):
    """A cluster, and a queue of the same name on it, made for the run and deleted after."""

    name: str = Field(max_length=128, pattern=f"^{NAME_PATTERN.pattern}$")
    max_vcpus: int | None = Field(None, ge=1, le=10**6)
    timeout: float = Field(1800.0, gt=0, le=86400, description="seconds it may take to be ready")


class WorkflowRequest(Body):
    """A workflow to start: its jobs run on `queue`, or on a cluster made for it."""

    name: str = Field(min_length=1, max_length=256)
    order: Literal["sequential", "parallel"]
    steps: list[WorkflowStep] = Field(min_length=1, max_length=500)
    definition: str = Field(min_length=1, max_length=128)
    queue: str | None = Field(None, min_length=1, max_length=128)
    cluster: WorkflowCluster | None = None
    keep_cluster: bool = Field(False, description="leave the cluster made for it in place")
    keep_going: bool = Field(False, description="parallel: let the others run on after a failure")

    @model_validator(mode="after")
    def _consistent(self) -> WorkflowRequest:
        if (self.queue is None) == (self.cluster is None):
            raise ValueError("give the queue to run on, or a cluster to make for the run")
        names = [step.name for step in self.steps]
        if len(set(names)) < len(names):
            raise ValueError("every job of a workflow has its own name")
        return self


class WorkflowCancel(Body):
    cause: str = Field("cancelled by request", min_length=1, max_length=1000)
