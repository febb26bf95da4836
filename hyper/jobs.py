"""Job states and the rules that move a job between them.

Shared by every store implementation, the host and the shell tools, so it
imports nothing beyond the standard library.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobStatus(str, enum.Enum):
    WAITING = "Waiting"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @classmethod
    def parse(cls, text: str) -> JobStatus:
        """Case-insensitive lookup that names the valid states when it fails."""
        for status in cls:
            if status.value.lower() == text.strip().lower():
                return status
        names = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown status {text!r}; use one of {names}")


FINISHED = frozenset({JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED})
ALL_STATUSES = tuple(JobStatus)


class LogKind(str, enum.Enum):
    STDOUT = "STDOUT"
    STDERR = "STDERR"
    SYSTEM = "SYSTEM"
    METRICS = "METRICS"


@dataclass(frozen=True)
class Outcome:
    """Where a job goes once an attempt of it has ended."""

    status: JobStatus
    retries_left: int
    event: str


def outcome_of_attempt(
    *,
    attempt: int,
    exit_code: int | None,
    retries_left: int,
    cancel_requested: bool,
    reason: str | None = None,
) -> Outcome:
    """Decide the next state after attempt number `attempt` ended.

    `exit_code` is None when the attempt ended without one (its worker was lost);
    `reason` then says why. A non-zero exit is retried while retries remain.
    """
    ended = f"exited with code {exit_code}" if exit_code is not None else (reason or "was lost")
    if cancel_requested:
        return Outcome(JobStatus.CANCELLED, retries_left, f"attempt {attempt} {ended}; cancelled")
    if exit_code == 0:
        return Outcome(JobStatus.SUCCESSFUL, retries_left, f"attempt {attempt} {ended}; successful")
    if retries_left > 0:
        left = retries_left - 1
        return Outcome(
            JobStatus.WAITING, left, f"attempt {attempt} {ended}; retrying ({left} retries left)"
        )
    return Outcome(JobStatus.FAILED, 0, f"attempt {attempt} {ended}; failed")
