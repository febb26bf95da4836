"""What the workflow engine needs of the host, and what it is asked: its own small
interface, so that it knows nothing of the host's HTTP models or service.

``WorkflowHost`` is what the host gives the engine (``hyper.host.service`` makes one
of its service); ``WorkflowAsk`` is what starting a workflow asks (the
host's request model has these fields); ``WorkflowJob`` is one job the engine submits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hyper.models import ResourceKind, Spec
from hyper.store.base import Store


@dataclass(frozen=True)
class WorkflowJob:
    """One job of a workflow, as the engine submits it; `after`: a job it runs after
    once that one has succeeded (afterok)."""

    name: str
    queue: str
    definition: str
    script: str
    env: dict[str, str] = field(default_factory=dict)
    package: str | None = None
    hold: bool = False
    after: int | None = None


class WorkflowHost(Protocol):
    """The host, as the workflow engine sees it."""

    @property
    def store(self) -> Store: ...

    @property
    def lease_seconds(self) -> float:
        """How long a worker's lease lasts: jobs being stopped get two before their
        queue goes anyway."""

    def check_fits(self, queue: str, definition: str) -> None:
        """Raise UsageError unless jobs of `definition` could ever run on `queue`."""

    def submit(self, jobs: Sequence[WorkflowJob]) -> list[int]:
        """Submit the jobs, all or none; their ids, in order."""

    def release(self, job_id: int) -> None:
        """Release a held job."""

    def cancel(self, job_ids: Sequence[int]) -> None:
        """Cancel the jobs (running ones are stopped)."""

    def create_resource(self, kind: ResourceKind, spec: Spec) -> None:
        """Start creating a resource (it deploys asynchronously)."""

    def delete_resource(self, kind: ResourceKind, name: str, *, force: bool) -> None:
        """Start deleting a resource; `force`: a queue's unfinished jobs are cancelled."""

    def wake(self) -> None:
        """Ask for a tick soon: there is work to move on."""


class ClusterAsk(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def max_vcpus(self) -> int | None: ...
    @property
    def timeout(self) -> float: ...


class StepAsk(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def handler(self) -> str: ...
    @property
    def package(self) -> str: ...
    @property
    def wait_time(self) -> int: ...
    @property
    def source(self) -> str: ...


class WorkflowAsk(Protocol):
    """What starting a workflow asks for (checked by the host before it comes here)."""

    @property
    def name(self) -> str: ...
    @property
    def order(self) -> Literal["sequential", "parallel"]: ...
    @property
    def steps(self) -> Sequence[StepAsk]: ...
    @property
    def definition(self) -> str: ...
    @property
    def queue(self) -> str | None: ...
    @property
    def cluster(self) -> ClusterAsk | None: ...
    @property
    def keep_cluster(self) -> bool: ...
    @property
    def keep_going(self) -> bool: ...
