"""The store protocol and the records it holds.

Promises every implementation keeps (the contract tests check them):
- a submit is committed before it returns, and ids are never reused;
- a claim is atomic: a job is held by at most one (worker, attempt) at a time;
- a report from a worker that no longer holds the job raises ``Conflict``;
- counts come from the store, never from listing every job;
- a workflow record changes only from the version that was read (else ``Conflict``).

Files: the host keeps bytes under keys (jobs' packages in, the files they collect
out; the rules of keys are in ``hyper.jobs``). A prefix names a key and everything
under ``prefix/``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from hyper.errors import Conflict
from hyper.jobs import JobStatus, LogKind
from hyper.jobspec import Dependency, Selector

# whether a job's request (its options' "request": what it asked, or None) fits in what the
# claiming worker has left; a claim passes over the jobs that do not (hyper.capacity)
Fits = Callable[[dict[str, Any] | None], bool]


@dataclass(frozen=True)
class ArrayTasks:
    """The tasks of an array submission; per-task lists run parallel to `indices`."""

    indices: list[int]
    cap: int | None = None  # most tasks running at once
    spec: str = ""  # as the user wrote it, for display
    names: list[str] | None = None  # work items name their tasks
    params: list[dict[str, Any]] | None = None  # {"env": {...}, "replacements": {...}}


@dataclass(frozen=True)
class NewJob:
    name: str
    queue: str
    definition: str
    script: str
    retries: int = 0
    env: dict[str, str] = field(default_factory=dict)
    submit_dir: str | None = None
    priority: int = 0
    time_limit: int | None = None  # seconds
    hold: bool = False
    depends: tuple[Dependency, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # output files: stdout, stderr, join
    array: ArrayTasks | None = None


@dataclass
class JobRecord:
    id: int
    name: str
    queue: str
    definition: str
    status: JobStatus
    retries: int
    retries_left: int
    attempt: int
    exit_code: int | None
    reason: str | None
    cancel_requested: bool
    worker_id: str | None
    lease_until: float | None
    submit_dir: str | None
    env: dict[str, str]
    created: float
    started: float | None
    ended: float | None
    array_id: int | None = None
    array_index: int | None = None
    array_size: int | None = None
    priority: int = 0
    time_limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    script: str | None = None  # only filled where the caller needs it
    kind: str = "job"

    @property
    def finished(self) -> bool:
        return self.status.finished

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


@dataclass
class ArrayRecord:
    """An array as one line: its tasks are jobs with their own ids."""

    id: int
    name: str
    queue: str
    definition: str
    size: int
    cap: int | None
    spec: str
    retries: int
    priority: int
    time_limit: int | None
    submit_dir: str | None
    env: dict[str, str]
    options: dict[str, Any]
    created: float
    counts: dict[str, int]
    highest_exit_code: int | None = None
    kind: str = "array"

    @property
    def status(self) -> str:
        """One word for the whole array: Running while any task runs, then Waiting,
        Blocked or Held while any task has not started, then how it ended."""
        for state in (JobStatus.RUNNING, JobStatus.WAITING, JobStatus.BLOCKED, JobStatus.HELD):
            if self.counts.get(state.value):
                return state.value
        for state in (JobStatus.FAILED, JobStatus.CANCELLED):
            if self.counts.get(state.value):
                return state.value
        return JobStatus.SUCCESSFUL.value

    @property
    def finished(self) -> bool:
        done = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)
        return sum(self.counts.get(s.value, 0) for s in done) >= self.size

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status
        return data


@dataclass(frozen=True)
class JobFilter:
    queue: str | None = None
    name: str | None = None
    name_prefix: str | None = None
    definition: str | None = None
    statuses: tuple[JobStatus, ...] = ()
    ids: tuple[int, ...] = ()  # single jobs or tasks, by id
    arrays: tuple[tuple[int, tuple[int, ...] | None], ...] = ()  # array id, some indices or all
    array_id: int | None = None  # only the tasks of this array

    @property
    def selects(self) -> bool:
        return bool(self.ids or self.arrays)


@dataclass(frozen=True)
class LogEntry:
    seq: int
    job_id: int
    attempt: int
    kind: LogKind
    time: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    spec: dict[str, Any]
    status: str
    log: list[str]
    created: float
    updated: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorkerRecord:
    id: str
    queue: str
    definition: str
    region: str
    launcher: str
    pid: int | None
    state: str  # ASSIGNED (to a node, not started yet), STARTING, ACTIVE, EXITED
    started: float
    last_seen: float
    ended: float | None = None
    node: str | None = None  # the static-region machine it runs on


@dataclass
class NodeRecord:
    """A machine of a static region that runs workers for one definition."""

    id: str
    region: str
    definition: str
    slots: int
    hostname: str
    joined: float
    last_seen: float


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, as its worker reports it."""

    job_id: int
    attempt: int
    exit_code: int | None
    reason: str | None
    output: Sequence[tuple[LogKind, str]] = ()


@dataclass(frozen=True)
class CancelResult:
    cancelled: int  # ended now (they had not started)
    stopping: int  # running: their workers stop them and report
    finished: list[int]  # already over: left as they were (ids named in the request)


@dataclass(frozen=True)
class HoldResult:
    changed: int
    unchanged: list[int]  # ids named in the request that could not change (running, ended)


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow as the host keeps it. The store reads only `finished`; `data` is what
    ``hyper.workflows.model`` puts there (its steps, cluster, state and cause)."""

    id: int
    finished: bool
    data: dict[str, Any]
    version: int
    created: float
    updated: float


class Store(Protocol):
    # whether `requests` can tell what waiting jobs asked for, so that the scheduler can
    # start a worker of a job's own size (else a job larger than its definition's worker
    # is refused at submit: nothing would start it)
    counts_requests: bool

    def close(self) -> None: ...

    # resources
    def put_resource(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        status: str,
        log_lines: Sequence[str],
        now: float,
    ) -> Resource: ...
    def get_resource(self, kind: str, name: str) -> Resource | None: ...
    def delete_resource(self, kind: str, name: str) -> None: ...
    def list_resources(self, kind: str) -> list[Resource]: ...

    # jobs
    def submit(self, jobs: Sequence[NewJob], now: float) -> list[int]: ...
    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None: ...
    def get_array(self, array_id: int) -> ArrayRecord | None: ...
    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int = 0, collapse: bool = False
    ) -> list[JobRecord | ArrayRecord]: ...
    def count_jobs(self, where: JobFilter) -> dict[JobStatus, int]: ...
    def ended_per_minute(self, since: float) -> dict[int, int]:
        """How many jobs and tasks ended at or after `since`, per minute: {the minute's
        start in epoch seconds (a multiple of 60): count} (a host's throughput)."""
        ...

    def resolve(self, selectors: Sequence[Selector]) -> JobFilter: ...
    def cancel(self, where: JobFilter, now: float) -> CancelResult: ...
    def hold(self, where: JobFilter, now: float) -> HoldResult: ...
    def release(self, where: JobFilter, now: float) -> HoldResult: ...

    # the worker side of a job
    def claim(
        self,
        worker_id: str,
        queue: str,
        definition: str,
        limit: int,
        lease: float,
        now: float,
        fits: Fits | None = None,
    ) -> list[JobRecord]: ...
    def heartbeat(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        lease: float,
        now: float,
        process_group: int | None = None,
    ) -> bool: ...
    def process_groups(self, worker_id: str) -> list[tuple[int, int, int]]: ...
    def complete(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        now: float,
    ) -> JobStatus: ...
    def complete_many(
        self, worker_id: str, endings: Sequence[Ending], now: float
    ) -> list[JobStatus | Conflict]: ...
    def return_claims(
        self, worker_id: str, claims: Sequence[tuple[int, int]], now: float
    ) -> int: ...
    def expire_leases(self, now: float, keep: Collection[str] = ()) -> list[int]:
        """End as lost the running attempts whose leases ran out by `now`, but those of the
        workers in `keep` (waited on for their provider's word); their job ids."""
        ...

    def lease_holders(self, now: float) -> list[str]:
        """The workers holding running jobs whose leases ran out by `now`."""
        ...

    def abandon(self, worker_id: str, now: float, *, reclaimed: bool = False) -> list[int]:
        """End what a gone worker held as lost (retried or failed by policy); `reclaimed`:
        its provider took its machine back (a spot reclaim), which uses no retry."""
        ...

    def extend_leases(self, lease: float, now: float) -> int: ...
    def demand(self) -> list[tuple[str, str, int, int]]: ...
    def requests(
        self, queue: str, definition: str, most: int
    ) -> dict[tuple[tuple[str, int], ...], int] | None:
        """The waiting and running jobs of (queue, definition) counted by what they asked
        (a request's items, sorted; () = nothing); None when there are more than `most`
        of them or the store cannot tell (the scheduler then counts jobs)."""
        return None

    def reconcile_counts(self, now: float) -> int:
        """Bring the counters demand() reads back in line with the jobs where a write that
        was cut off left them apart (a bounded amount of work a call); how many fixes."""
        ...

    # logs
    def append_log(
        self,
        job_id: int,
        attempt: int,
        entries: Sequence[tuple[LogKind, str]],
        now: float,
        *,
        output_limit: int | None = None,
    ) -> None:
        """Add entries to a job's log. With `output_limit`, the attempt's stdout and
        stderr count against it (hyper.output.within): what goes past it is dropped, with
        one note where it was cut."""
        ...

    def read_log(
        self, job_id: int, kinds: Sequence[LogKind], *, after: int = 0, limit: int = 1000
    ) -> list[LogEntry]: ...

    # the scheduler's tick: one at a time, where several processes may run it (Lambda)
    def claim_tick(self, owner: str, now: float, seconds: float) -> bool:
        """Whether `owner` may tick now (no other claim younger than its `seconds`)."""
        ...

    def release_tick(self, owner: str) -> None: ...

    # workers
    def add_worker(self, worker: WorkerRecord) -> None: ...
    def touch_worker(self, worker_id: str, now: float) -> None: ...
    def end_worker(self, worker_id: str, now: float) -> None: ...
    def live_workers(self) -> list[WorkerRecord]: ...

    # machines of static regions
    def join_node(self, node: NodeRecord) -> None: ...
    def nodes(self, region: str | None = None) -> list[NodeRecord]: ...
    def leave_node(self, node_id: str) -> None: ...
    def take_assignments(self, node_id: str, now: float) -> list[WorkerRecord]: ...

    # files: packages jobs carry in, results they collect out
    def put_file(self, key: str, data: bytes, now: float) -> None: ...
    def get_file(self, key: str) -> bytes | None: ...
    def delete_files(self, prefix: str) -> int: ...

    # workflows (newest first; `unfinished` only those not finished)
    def add_workflow(self, data: dict[str, Any], now: float) -> WorkflowRecord: ...
    def get_workflow(self, workflow_id: int) -> WorkflowRecord | None: ...
    def list_workflows(
        self, *, unfinished: bool = False, limit: int = 100
    ) -> list[WorkflowRecord]: ...
    def update_workflow(
        self, record: WorkflowRecord, data: dict[str, Any], *, finished: bool, now: float
    ) -> WorkflowRecord: ...
