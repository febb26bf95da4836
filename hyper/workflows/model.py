"""A workflow as its host keeps it (the ``data`` of its store record) and shows it."""

from __future__ import annotations

import enum
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from hyper.jobs import JobStatus
from hyper.store.base import WorkflowRecord

LOG_LINES = 100  # of a workflow's own history, the latest


class WorkflowState(str, enum.Enum):
    CREATING_CLUSTER = "Creating cluster"  # its cluster and queue are being made
    RUNNING = "Running"  # its jobs are submitted
    ENDING = "Ending"  # how it ends is known: what runs is stopped, then its cluster deleted
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (WorkflowState.SUCCESSFUL, WorkflowState.FAILED, WorkflowState.CANCELLED)


class Step(BaseModel):
    """One job of the workflow, and its job's state when the host last checked it."""

    name: str
    handler: str
    package: str  # the files key of its package
    wait_time: int  # seconds between the host's checks of its job
    source: str = ""  # where its files came from
    job_id: int | None = None
    status: JobStatus | None = None
    exit_code: int | None = None
    reason: str | None = None

    @property
    def ended(self) -> bool:
        return self.status is not None and self.status.finished


class Workflow(BaseModel):
    id: int = 0
    name: str  # the jobs file's
    order: Literal["sequential", "parallel"]
    queue: str
    definition: str
    cluster: str | None = None  # made for the run, with a queue of the same name
    made: list[str] = Field(default_factory=list)  # resource kinds made for it: to delete
    left: dict[str, str] = Field(default_factory=dict)  # kinds not deleted, and why
    cluster_timeout: float = 1800.0
    keep_cluster: bool = False
    keep_going: bool = False
    state: WorkflowState
    result: WorkflowState | None = None  # how it ends, once known
    cause: str | None = None
    teardown: str | None = None  # what became of its cluster, or is becoming
    ending_since: float | None = None
    steps: list[Step]
    log: list[tuple[float, str]] = Field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0

    @classmethod
    def of(cls, record: WorkflowRecord) -> Workflow:
        return cls.model_validate(
            {**record.data, "id": record.id, "created": record.created, "updated": record.updated}
        )

    def data(self) -> dict[str, Any]:
        """What the store keeps (the record keeps the id and times itself)."""
        return self.model_dump(mode="json", exclude={"id", "created", "updated"})

    def shown(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def note(self, text: str) -> None:
        self.log = [*self.log, (time.time(), text)][-LOG_LINES:]

    @property
    def job_ids(self) -> list[int]:
        return [step.job_id for step in self.steps if step.job_id is not None]
