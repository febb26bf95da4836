"""Job states and exit codes in each dialect's words: the one table every dialect prints from.

    hyper        PBS  LSF    Slurm          Slurm (compact)  Slurm reason
    Waiting      Q    PEND   PENDING        PD               Priority
    Blocked      H    PEND   PENDING        PD               Dependency
    Held         H    PSUSP  PENDING        PD               JobHeldUser
    Running      R    RUN    RUNNING        R                None
    Successful   F    DONE   COMPLETED      CD               None
    Failed       F    EXIT   FAILED         F                NonZeroExitCode
      (time up)  F    EXIT   TIMEOUT        TO               TimeLimit
      (memory)   F    EXIT   OUT_OF_MEMORY  OOM              OutOfMemory
    Cancelled    F    EXIT   CANCELLED      CA               None

Exit codes: PBS's ``Exit_status`` is the script's exit code, 256 + 9 = 265 for a
cancelled job (as PBS writes a job it killed); LSF's ``EXIT_CODE`` is the exit code
(empty for a job that has not ended, 0 is shown as empty too, as bjobs does); Slurm's
``ExitCode`` is ``N:S`` (the exit code, then the signal that ended it: 15 for a
cancelled running job and for one stopped at its time limit, 0 otherwise).

A job hyper ended without an exit code (its worker was lost, or its dependency can
never be met) counts as exit code 1 in every dialect.
"""

from __future__ import annotations

from hyper.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and pathlib cost a command's start
if TYPE_CHECKING:
    from typing import Any

CANCELLED_EXIT_STATUS = 265  # PBS: 256 + SIGKILL
SIGTERM = 15


class Words(NamedTuple):
    pbs: str
    lsf: str
    slurm: str
    slurm_compact: str
    slurm_reason: str


TABLE: dict[str, Words] = {
    "Waiting": Words("Q", "PEND", "PENDING", "PD", "Priority"),
    "Blocked": Words("H", "PEND", "PENDING", "PD", "Dependency"),
    "Held": Words("H", "PSUSP", "PENDING", "PD", "JobHeldUser"),
    "Running": Words("R", "RUN", "RUNNING", "R", "None"),
    "Successful": Words("F", "DONE", "COMPLETED", "CD", "None"),
    "Failed": Words("F", "EXIT", "FAILED", "F", "NonZeroExitCode"),
    "Cancelled": Words("F", "EXIT", "CANCELLED", "CA", "None"),
}
TIMEOUT = Words("F", "EXIT", "TIMEOUT", "TO", "TimeLimit")
OUT_OF_MEMORY = Words("F", "EXIT", "OUT_OF_MEMORY", "OOM", "OutOfMemory")

SLURM_COMPACT = {words.slurm: words.slurm_compact for words in (*TABLE.values(), TIMEOUT)}
SLURM_COMPACT[OUT_OF_MEMORY.slurm] = OUT_OF_MEMORY.slurm_compact
UNFINISHED = ("Waiting", "Blocked", "Held", "Running")
FINISHED = ("Successful", "Failed", "Cancelled")


def words(job: dict[str, Any]) -> Words:
    """A job's state in every dialect's words (an array: the state of the whole)."""
    status = job["status"]
    if status == "Failed":
        reason = (job.get("reason") or "").lower()
        if "time limit" in reason:
            return TIMEOUT
        if "memory" in reason:
            return OUT_OF_MEMORY
    return TABLE[status]


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in FINISHED


def exit_code(job: dict[str, Any]) -> int | None:
    """The job's exit code, None while it has not ended."""
    status = job["status"]
    if status not in FINISHED:
        return None
    if status == "Successful":
        return 0
    code = job.get("exit_code", job.get("highest_exit_code"))
    if status == "Cancelled":
        return code if code is not None else None
    return code if code is not None else 1


def pbs_exit_status(job: dict[str, Any]) -> int | None:
    if job["status"] == "Cancelled":
        return CANCELLED_EXIT_STATUS
    return exit_code(job)


def lsf_exit_code(job: dict[str, Any]) -> str:
    code = exit_code(job)
    if job["status"] == "Cancelled" and code is None:
        code = 128 + SIGTERM if job.get("started") else None
    return "" if not code else str(code)


def slurm_exit_code(job: dict[str, Any]) -> str:
    """``N:S``: the exit code and the signal that ended the job."""
    if job["status"] == "Cancelled":
        return f"0:{SIGTERM}" if job.get("started") else "0:0"
    code = exit_code(job)
    if code is None:
        return "0:0"
    if words(job) is TIMEOUT:
        return f"0:{SIGTERM}"
    if code > 128 and code - 128 < 65:
        return f"0:{code - 128}"
    return f"{code}:0"


def slurm_states(names: str) -> set[str]:
    """hyper statuses for Slurm state names or compact codes (`-t PD,R`, `--state=all`)."""
    wanted: set[str] = set()
    for word in (w.strip().upper() for w in names.split(",")):
        if not word:
            continue
        if word == "ALL":
            return set(TABLE)
        found = {
            status
            for status, said in (*TABLE.items(), ("Failed", TIMEOUT), ("Failed", OUT_OF_MEMORY))
            if word in (said.slurm, said.slurm_compact)
        }
        if not found and word not in ("SUSPENDED", "S", "COMPLETING", "CG", "CONFIGURING", "CF"):
            from hyper.errors import UsageError

            raise UsageError(f"invalid job state specified: {word}")
        wanted |= found
    return wanted
