"""What host and worker say to each other: the messages of the worker protocol, and the
timings both ends go by. Standard library only: the worker (and qtools, which share the
client) import it without pulling in the host.

The wire is JSON; each message here is what one JSON body holds, field for field. The
host's request and response models (hyper.host.schemas) mirror these, with the bounds the
host enforces, so that ``/openapi.json`` shows what a worker gets and sends. A message
read from the wire takes the fields it knows and leaves the rest (a newer host may send
more), so that workers and hosts of neighbouring versions understand each other.

    POST /workers/{id}/claim          ClaimRequest (Room)    -> {"jobs": [ClaimedJob]}
    POST /workers/{id}/jobs/{j}/progress   Progress          -> {"cancel": bool}
    POST /workers/{id}/complete       Completion (Ending...) -> {"statuses", "jobs"}
    POST /workers/{id}/return         {"jobs": [ClaimRef]}   -> {"returned": n}
    POST /workers/{id}/exit           {}                     -> {"ok": true}
    GET  /workers/{id}/jobs/{j}/package   -> the bytes, or 307 {"link": FileLink}
    POST /workers/{id}/jobs/{j}/links/upload/{key}   {"size", "md5"} -> {"link": FileLink|null}
    POST /workers/{id}/jobs/{j}/links/uploaded/{key} {"size", "md5"} -> 204

and a machine of a static region (hyper.worker.node):

    POST /nodes/{id}/join             NodeJoin               -> {"id", "url"}
    POST /nodes/{id}/poll             {"wait": seconds}      -> {"workers": [WorkerAssignment]}
    POST /nodes/{id}/leave            {}                     -> {"ok": true}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


@dataclass(frozen=True)
class WorkerTimings:
    """How often a worker reports and how long the host waits for it: one set of defaults
    for the host's settings, the worker's options and the launchers that start workers."""

    heartbeat_seconds: float = 0.5  # how often a running job's worker reports (and learns of qdel)
    lease_seconds: float = 30.0  # a running job's worker must report within this
    idle_seconds: float = 10.0  # a worker with nothing to do leaves after this
    patience_seconds: float = 120.0  # a worker keeps trying this long while the host is down
    max_wait_seconds: float = 20.0  # the longest a host holds a long-poll request
    claim_wait_seconds: float = 10.0  # the longest an idle worker asks its claim to wait


TIMINGS = WorkerTimings()
# an AWS host's (hyper.host.lambda_app, docs/aws.md): every request is a Lambda invocation
AWS_TIMINGS = WorkerTimings(
    heartbeat_seconds=30.0, lease_seconds=150.0, idle_seconds=60.0, max_wait_seconds=10.0
)


class OutputPiece(TypedDict):
    """Some of a job's output: `kind` is "stdout" or "stderr" (hyper.jobs.LogKind)."""

    kind: str
    text: str


class Room(TypedDict, total=False):
    """What a worker has left (a claim takes only jobs that fit in it); with its whole
    (`of_*`) when that is not its definition's shape."""

    cpus: int
    mem_mib: int
    gpus: int
    of_cpus: int
    of_mem_mib: int
    of_gpus: int


class ClaimRequest(TypedDict, total=False):
    """Up to `limit` jobs of a queue and definition, waiting up to `wait` seconds for one."""

    queue: str
    definition: str
    limit: int
    wait: float
    room: Room | None


class JobOptions(TypedDict, total=False):
    """The options of a claimed job that its worker reads (a job may carry others)."""

    stdout: str | None  # -o pattern
    stderr: str | None  # -e pattern
    join: bool  # stderr goes with stdout
    package: str | None  # the file key of a gzip'd tar archive to unpack and run in
    collect: list[str]  # the files sent back to the host when the job ends
    request: dict[str, Any] | None  # what it asked: cpus, mem_mib, gpus (hyper.capacity)
    compat: list[str]  # the schedulers whose variables it gets: slurm, pbs, lsf


@dataclass
class ClaimedJob:
    """A job handed to a worker by a claim: the job as the host holds it, and how to run
    it (its definition, its container image, the lease the worker fences itself by)."""

    id: int
    attempt: int
    name: str
    queue: str
    definition: str
    script: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # JobOptions, and others
    submit_dir: str | None = None
    time_limit: int | None = None  # seconds
    array_id: int | None = None
    array_index: int | None = None
    array_size: int | None = None
    definition_spec: dict[str, Any] = field(default_factory=dict)  # hyper.models.DefinitionSpec
    image: str | None = None  # the container image to run it in, if any
    lease_seconds: float = TIMINGS.lease_seconds
    # the job as the host holds it: not read by the worker, sent as they are
    status: str = "Running"
    retries: int = 0
    retries_left: int = 0
    exit_code: int | None = None
    reason: str | None = None
    cancel_requested: bool = False
    worker_id: str | None = None
    lease_until: float | None = None
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    priority: int = 0
    kind: str = "job"

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ClaimedJob:
        """From a claim's JSON: the fields known here (others are left), each missing
        optional one at its default (None in JSON, for a mapping or a number, too)."""
        return cls(**{k: data[k] for k in _CLAIMED_FIELDS if data.get(k) is not None})

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> tuple[int, int]:
        """The attempt: (job id, attempt)."""
        return (int(self.id), int(self.attempt))

    def job_options(self) -> JobOptions:
        return self.options  # type: ignore[return-value]


_CLAIMED_FIELDS = tuple(f.name for f in dataclasses.fields(ClaimedJob))


class Progress(TypedDict, total=False):
    """A running job's report: its lease renewed, output and metrics sent."""

    attempt: int
    output: list[OutputPiece]
    metrics: dict[str, float] | None
    process_group: int | None  # where the job runs on its machine (its host may end it)


class Ending(TypedDict, total=False):
    """How one attempt ended; `usage`: peak_rss_mib, cpu_seconds (sampled)."""

    job_id: int
    attempt: int
    exit_code: int | None
    reason: str | None
    output: list[OutputPiece]
    usage: dict[str, float] | None


class Completion(TypedDict, total=False):
    """Attempts that ended, reported together; `claim_next` more jobs claimed in return,
    those that fit in `room`."""

    reports: list[Ending]
    claim_next: int
    room: Room | None


class ClaimRef(TypedDict):
    """A claimed attempt a worker hands back unstarted."""

    job_id: int
    attempt: int


class NodeJoin(TypedDict):
    """A machine of a static region offering `slots` workers of one definition."""

    region: str
    definition: str
    slots: int
    hostname: str


@dataclass(frozen=True)
class WorkerAssignment:
    """A worker the scheduler placed on a joined machine, for the machine to start now."""

    worker_id: str
    queue: str
    definition: str
    idle_seconds: float = TIMINGS.idle_seconds
    heartbeat_seconds: float = TIMINGS.heartbeat_seconds
    patience_seconds: float = TIMINGS.patience_seconds
    lifetime_seconds: float | None = None  # the definition's timeout: the worker leaves then

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WorkerAssignment:
        """From a poll's JSON: the fields known here, each missing one at its default."""
        return cls(**{k: data[k] for k in _ASSIGNMENT_FIELDS if data.get(k) is not None})

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ASSIGNMENT_FIELDS = tuple(f.name for f in dataclasses.fields(WorkerAssignment))


class FileLink(TypedDict):
    """Where one file's bytes go or come from past the host's API (an AWS host's files
    over 4 MB): a presigned URL of exactly that object in the host's bucket, the method
    it was signed for, the headers the request must carry (signed with it), the file's
    size, and when the link stops working (epoch seconds). The API key never goes with
    it."""

    url: str
    method: str
    headers: dict[str, str]
    size: int
    expires: float


def ending(
    job_id: int, attempt: int, exit_code: int, reason: str | None, output: list[OutputPiece]
) -> Ending:
    return {
        "job_id": job_id,
        "attempt": attempt,
        "exit_code": exit_code,
        "reason": reason,
        "output": output,
    }
