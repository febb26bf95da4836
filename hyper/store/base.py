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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hyper.errors import Conflict
from hyper.jobs import JobStatus, LogKind
from hyper.jobspec import Dependency, Selector

if TYPE_CHECKING:
    from hyper.messages import FileLink

# whether a job's request (its options' "request": what it asked, or None) fits in what the
# claiming worker has left; a claim passes over the jobs that do not (hyper.capacity)
Fits = Callable[[dict[str, Any] | None], bool]


@dataclass(frozen=True)
class ArrayTasks:
    """The tasks of an array submission; per-task lists run parallel to `indices`."""

    indices: Sequence[int]  # a range, or a list
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
        # its fields as they are, not dataclasses.asdict's deep copy of each (a quarter
        # of the host's time listing a page of jobs): every caller changes only the top
        data = vars(self).copy()
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
        data = vars(self).copy()  # as JobRecord's
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
        data = vars(self).copy()  # as JobRecord's: a page of a log is thousands of these
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
    # what the machine said it has, shared by its slots: `CPUS:MEM_MIB:GPU,IDS` (as
    # hyper.machine writes it); "" when it said nothing (its workers are the definition's)
    capacity: str = ""


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
    more: bool = False  # a `limit` was reached: some that match may not have ended yet


@dataclass(frozen=True)
class HoldResult:
    changed: int
    unchanged: list[int]  # ids named in the request that could not change (running, ended)
    more: bool = False  # a `limit` was reached: some that match may not have changed yet


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


# The contract, by role. A store implements them all (``Store``); a reader looking for what
# the workers' side may do reads ``AttemptStore`` alone. The stores subclass ``Store``, so
# they share the one method written here in full (``complete``) and mypy checks that none
# of the others is missing.


class ResourceStore(Protocol):
    """Named resources a host keeps (clusters, regions, definitions): a spec, a status and
    a log of what happened to them, by kind and name."""

    def put_resource(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        status: str,
        log_lines: Sequence[str],
        now: float,
    ) -> Resource:
        """Create or replace the resource `kind`/`name`; `log_lines` are added to its log
        (an existing resource keeps its creation time and the last 200 lines of its log).
        Returns it as kept."""
        ...

    def get_resource(self, kind: str, name: str) -> Resource | None:
        """The resource, or None."""
        ...

    def delete_resource(self, kind: str, name: str) -> None:
        """Remove it (nothing happens if there is none)."""
        ...

    def list_resources(self, kind: str) -> list[Resource]:
        """The resources of a kind, by name."""
        ...


class JobStore(Protocol):
    """Jobs and arrays as users see them: submit, read, count, select, cancel, hold."""

    def submit(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        """Commit new jobs and arrays before returning their ids (an array's tasks take the
        ids after its own). Dependencies are judged now: one on an unknown job raises
        ``UsageError`` and nothing is written; one that can never be met makes the job
        Failed at once. Otherwise a job starts Held (asked), Blocked (waiting for
        dependencies) or Waiting (hyper.store.rules.first_status)."""
        ...

    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None:
        """A job or task by id (None for an unknown id or an array's own id); its script
        only when asked (a task's, with its replacements made)."""
        ...

    def get_array(self, array_id: int) -> ArrayRecord | None:
        """An array as one record with its tasks' counts, or None."""
        ...

    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int = 0, collapse: bool = False
    ) -> list[JobRecord | ArrayRecord]:
        """At most `limit` jobs that match, by id, after id `after`; with `collapse`, each
        array as one ArrayRecord (unless the filter picks tasks: by array, ids or status)."""
        ...

    def count_jobs(self, where: JobFilter) -> dict[JobStatus, int]:
        """How many jobs match, per status (every status present); from kept counts,
        never by listing every job."""
        ...

    def ended_per_minute(self, since: float) -> dict[int, int]:
        """How many jobs and tasks ended at or after `since`, per minute: {the minute's
        start in epoch seconds (a multiple of 60): count} (a host's throughput)."""
        ...

    def resolve(self, selectors: Sequence[Selector]) -> JobFilter:
        """The filter for jobs a user named (ids, arrays, some tasks of arrays); an unknown
        id, or indices of what is not an array, raises ``UsageError`` naming them."""
        ...

    def cancel(self, where: JobFilter, now: float, *, limit: int | None = None) -> CancelResult:
        """Cancel what matches: what has not started ends Cancelled now; a running job is
        marked, and its worker stops it and reports (heartbeat answers True). Dependents
        of what ended are judged. With `limit`, at most that many unstarted jobs end in
        this call, and `more` says some may be left: a change of a million jobs is made
        in steps, each short, so the host serves others between them."""
        ...

    def hold(self, where: JobFilter, now: float, *, limit: int | None = None) -> HoldResult:
        """Hold the Waiting and Blocked jobs that match (they are not claimed until
        released); named jobs in other states are listed as unchanged. `limit`: as for
        cancel."""
        return self.set_hold(where, now, limit, hold=True)

    def release(self, where: JobFilter, now: float, *, limit: int | None = None) -> HoldResult:
        """Release the Held jobs that match: Blocked if dependencies remain, else Waiting.
        `limit`: as for cancel."""
        return self.set_hold(where, now, limit, hold=False)

    def set_hold(
        self, where: JobFilter, now: float, limit: int | None, *, hold: bool
    ) -> HoldResult:
        """hold (`hold`) or release: the one change each store writes its own way."""
        ...


class AttemptStore(Protocol):
    """The workers' side of a job: claims, leases, reports of an attempt's end, and what
    is lost when a worker goes. Each claim starts an attempt; only the (worker, attempt)
    that holds a running job may report on it."""

    def claim(
        self,
        worker_id: str,
        queue: str,
        definition: str,
        limit: int,
        lease: float,
        now: float,
        fits: Fits | None = None,
    ) -> list[JobRecord]:
        """Atomically take up to `limit` Waiting jobs of (queue, definition), highest
        priority first, then oldest; each becomes Running on the worker, in a new attempt
        whose lease lasts `lease` seconds. Tasks of an array at its cap of running tasks,
        and jobs that `fits` refuses, are passed over. The records carry their scripts."""
        ...

    def heartbeat(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        lease: float,
        now: float,
        process_group: int | None = None,
    ) -> bool:
        """Renew the attempt's lease (and note its process group); whether a cancel was
        asked. ``Conflict`` if the worker no longer holds the attempt."""
        ...

    def process_groups(self, worker_id: str) -> list[tuple[int, int, int]]:
        """(job id, attempt, process group) of the attempts a worker ran, as it reported
        them, that it never reported ended."""
        ...

    def complete(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        now: float,
    ) -> JobStatus:
        """End one attempt (`complete_many` with one ending and no output): the job's new
        status. ``Conflict`` if the worker no longer holds it."""
        (status,) = self.complete_many(worker_id, [Ending(job_id, attempt, exit_code, reason)], now)
        if isinstance(status, Conflict):
            raise status
        return status

    def complete_many(
        self, worker_id: str, endings: Sequence[Ending], now: float
    ) -> list[JobStatus | Conflict]:
        """End attempts, their last output with them: each is retried or takes its final
        status (hyper.store.rules.end_attempt) and the dependents of what ended are judged.
        An attempt the worker no longer holds gets a ``Conflict`` in its place, and its
        output is dropped."""
        ...

    def return_claims(self, worker_id: str, claims: Sequence[tuple[int, int]], now: float) -> int:
        """Jobs (job id, attempt) a worker claimed but never started go back to Waiting,
        as if never claimed; how many did."""
        ...

    def expire_leases(self, now: float, keep: Collection[str] = ()) -> list[int]:
        """End as lost the running attempts whose lease ran out by `now` (each retried or
        failed by policy), but those of the workers in `keep` (waited on for their
        provider's word); their job ids."""
        ...

    def lease_holders(self, now: float) -> list[str]:
        """The workers holding running jobs whose leases ran out by `now`."""
        ...

    def abandon(self, worker_id: str, now: float, *, reclaimed: bool = False) -> list[int]:
        """End what a gone worker held as lost (retried or failed by policy); `reclaimed`:
        its provider took its machine back (a spot reclaim), which uses no retry."""
        ...

    def extend_leases(self, lease: float, now: float) -> int:
        """Let every running attempt's lease last at least until `now + lease` (after the
        host itself was away); how many jobs run."""
        ...


class DemandStore(Protocol):
    """What the scheduler reads to decide how many workers to start."""

    # whether `requests` can tell what waiting jobs asked for, so that the scheduler can
    # start a worker of a job's own size (else a job larger than its definition's worker
    # is refused at submit: nothing would start it)
    counts_requests: bool

    def demand(self) -> list[tuple[str, str, int, int]]:
        """(queue, definition, waiting, running) from the kept counts; waiting counts only
        the tasks that the caps of their arrays let start now."""
        ...

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

    def make_tasks(self, most: int | None = None) -> int:
        """Make up to `most` (a store's own chunk when None) tasks of arrays whose submit
        left them to be made later (hyper.store.rules: "tasks made after their array's
        submit"), oldest arrays first; how many. A store that writes every task at submit
        makes none."""
        return 0


class LogStore(Protocol):
    """Each job's log: SYSTEM events the store writes, and the output its workers send."""

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
    ) -> list[LogEntry]:
        """Up to `limit` entries of these kinds (all when empty) after sequence number
        `after`, in order (entry 1 is the submit)."""
        ...


class TickLease(Protocol):
    """The scheduler's tick, and a resource's change, run one at a time, where several
    processes may run them (Lambda)."""

    def claim_tick(self, owner: str, now: float, seconds: float) -> bool:
        """Whether `owner` may tick now (no other claim younger than its `seconds`)."""
        ...

    def release_tick(self, owner: str) -> None:
        """Give the tick up before its time (only `owner`'s own claim)."""
        ...

    def claim_lease(self, what: str, owner: str, now: float, seconds: float) -> bool:
        """The same for any other work that must run once at a time (`what` names it: a
        resource's change): whether `owner` may do it now."""
        ...

    def release_lease(self, what: str, owner: str) -> None:
        """Give `what` up before its time (only `owner`'s own claim)."""
        ...


class WorkerStore(Protocol):
    """Workers the host started, and the machines of static regions that run them."""

    def add_worker(self, worker: WorkerRecord) -> None:
        """Record a worker (a record of the same id is replaced)."""
        ...

    def touch_worker(self, worker_id: str, now: float) -> None:
        """The worker was heard from: its last_seen, and ACTIVE once it reports."""
        ...

    def end_worker(self, worker_id: str, now: float) -> None:
        """The worker exited (its jobs are ended by abandon or their leases)."""
        ...

    def live_workers(self) -> list[WorkerRecord]:
        """Every worker not EXITED, oldest first."""
        ...

    def join_node(self, node: NodeRecord) -> None:
        """A machine of a static region joins, or says it is still there."""
        ...

    def nodes(self, region: str | None = None) -> list[NodeRecord]:
        """The machines of one static region, or of all."""
        ...

    def leave_node(self, node_id: str) -> None:
        """The machine left its region."""
        ...

    def take_assignments(self, node_id: str, now: float) -> list[WorkerRecord]:
        """Workers the scheduler placed on a node that the node has not started yet: they
        become STARTING, and are not given out again."""
        ...


class FileStore(Protocol):
    """Files under keys: packages jobs carry in, results they collect out (the rules of
    keys are in ``hyper.jobs``)."""

    def put_file(self, key: str, data: bytes, now: float) -> None:
        """Keep `data` under `key` (replacing what was there)."""
        ...

    def get_file(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""
        ...

    def delete_files(self, prefix: str) -> int:
        """Delete the key `prefix` and every key under `prefix/`; how many."""
        ...


@runtime_checkable
class FileLinks(Protocol):
    """A file store that can hand out links (presigned URLs) to move one file's bytes past
    the host, where its API cannot carry them (an AWS host's: 6 MB a request). The
    SQLite store has none: a local host streams every file itself."""

    def read_file(self, key: str, inline_bytes: int, seconds: int) -> bytes | FileLink | None:
        """The bytes under `key` when at most `inline_bytes`, else a GET link; or None."""
        ...

    def upload_link(self, key: str, size: int, md5: str, seconds: int) -> FileLink:
        """A link to PUT exactly `size` bytes of MD5 `md5` (hex) at `key`."""
        ...

    def file_stat(self, key: str) -> tuple[int, str] | None:
        """The size and ETag of the file at `key`, or None."""
        ...


class WorkflowStore(Protocol):
    """Workflows as records the engine changes only from the version it read."""

    def add_workflow(self, data: dict[str, Any], now: float) -> WorkflowRecord:
        """Keep a new, unfinished workflow; it gets the next id, version 1."""
        ...

    def get_workflow(self, workflow_id: int) -> WorkflowRecord | None:
        """The workflow, or None."""
        ...

    def list_workflows(self, *, unfinished: bool = False, limit: int = 100) -> list[WorkflowRecord]:
        """Newest first; with `unfinished`, only those not finished."""
        ...

    def update_workflow(
        self, record: WorkflowRecord, data: dict[str, Any], *, finished: bool, now: float
    ) -> WorkflowRecord:
        """Replace its data if it is still at `record`'s version (else ``Conflict``); the
        record as kept, at the next version."""
        ...


class Store(
    ResourceStore,
    JobStore,
    AttemptStore,
    DemandStore,
    LogStore,
    TickLease,
    WorkerStore,
    FileStore,
    WorkflowStore,
    Protocol,
):
    """Every record a host keeps (the promises at the top of this module hold for all)."""

    def close(self) -> None:
        """Let go of connections and threads; the store's data stays."""
        ...
