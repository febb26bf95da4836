"""Job states and the rules that move a job between them.

Shared by every store implementation, the host and the shell tools, so it
imports nothing heavy: the standard library and hyper's errors.
"""

from __future__ import annotations

import enum
import posixpath

from hyper.records import NamedTuple


class JobStatus(str, enum.Enum):
    WAITING = "Waiting"  # ready to run
    BLOCKED = "Blocked"  # waiting for its dependencies
    HELD = "Held"  # not to start until released
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @classmethod
    def parse(cls, text: str) -> JobStatus:
        """Case-insensitive lookup; a user's typo is a UsageError naming the valid states."""
        from hyper.errors import UsageError

        for status in cls:
            if status.value.lower() == text.strip().lower():
                return status
        names = ", ".join(s.value for s in cls)
        raise UsageError(f"unknown status {text!r}; use one of {names}")


FINISHED = frozenset({JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED})
NOT_STARTED = frozenset({JobStatus.WAITING, JobStatus.BLOCKED, JobStatus.HELD})
UNFINISHED = tuple(s for s in JobStatus if s not in FINISHED)
SECRET_VARIABLES = ("HYPER_API_KEY", "HYPER_WORKER_TOKEN")  # never passed on to jobs
# the submitting shell's umask, in octal, which the job runs and makes its files with: in
# its environment, as sbatch passes SLURM_UMASK (and a host of any version takes it)
UMASK_VARIABLE = "HYPER_UMASK"
ALL_STATUSES = tuple(JobStatus)


class LogKind(str, enum.Enum):
    STDOUT = "STDOUT"
    STDERR = "STDERR"
    SYSTEM = "SYSTEM"
    METRICS = "METRICS"


class Outcome(NamedTuple):
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
    reclaimed: bool = False,
) -> Outcome:
    """Decide the next state after attempt number `attempt` ended.

    `exit_code` is None when the attempt ended without one (its worker was lost);
    `reason` then says why. A non-zero exit is retried while retries remain. An attempt
    lost because its provider took the machine back (`reclaimed`: a spot instance
    reclaimed) is no fault of the job: it is retried without using one of its retries.
    """
    ended = f"exited with code {exit_code}" if exit_code is not None else (reason or "was lost")
    if cancel_requested:
        return Outcome(JobStatus.CANCELLED, retries_left, f"attempt {attempt} {ended}; cancelled")
    if reclaimed and exit_code is None:
        return Outcome(
            JobStatus.WAITING,
            retries_left,
            f"attempt {attempt} {ended}; retrying, its machine was reclaimed"
            f" (not counted: {retries_left} retries left)",
        )
    if exit_code is not None and reason:  # e.g. stopped at its time limit
        ended = f"{ended} ({reason})"
    if exit_code == 0:
        return Outcome(JobStatus.SUCCESSFUL, retries_left, f"attempt {attempt} {ended}; successful")
    if retries_left > 0:
        left = retries_left - 1
        return Outcome(
            JobStatus.WAITING, left, f"attempt {attempt} {ended}; retrying ({left} retries left)"
        )
    return Outcome(JobStatus.FAILED, 0, f"attempt {attempt} {ended}; failed")


class Verdict(str, enum.Enum):
    MET = "met"
    NEVER = "never"
    PENDING = "pending"


def never_met(kind: str, target: int, index: int | None = None) -> str:
    """The reason a job fails when its dependency on `target` can no longer be met."""
    which = f"task {index} of array {target}" if index is not None else f"job {target}"
    return f"dependency {kind}:{target} can never be met ({which} did not end as required)"


def task_script(script: str, replacements: dict[str, str]) -> str:
    """The script a task runs: its array's, with the task's text replacements applied."""
    for old, new in replacements.items():
        script = script.replace(old, str(new))
    return script


def judge_dependency(kind: str, *, ok: int, bad: int, size: int) -> Verdict:
    """Whether a dependency of `kind` on a job (size 1) or array (size N) is met, can
    never be met, or is still pending, from how many of its tasks ended well or not.

    afterok: all succeeded. afternotok: all ended and at least one did not succeed.
    afterany: all ended. aftercorr is judged per task, as afterok on the one task.
    """
    done = ok + bad >= size
    if kind in ("afterok", "aftercorr"):
        return Verdict.NEVER if bad else Verdict.MET if done else Verdict.PENDING
    if kind == "afternotok":
        if not done:
            return Verdict.PENDING
        return Verdict.MET if bad else Verdict.NEVER
    if kind == "afterany":
        return Verdict.MET if done else Verdict.PENDING
    raise ValueError(f"unknown dependency type {kind!r}")


def wait_exit_code(counts: dict[str, int], highest_failed_code: int | None) -> int:
    """What `qsub --wait` exits with for a job or a whole array (as Slurm's --wait):
    0 when all succeeded, else the highest exit code of a failed task (1 when it had
    none), else the fixed code for cancelled."""
    from hyper.errors import EXIT_CANCELLED

    if counts.get(JobStatus.FAILED.value):
        return highest_failed_code if highest_failed_code and highest_failed_code > 0 else 1
    if counts.get(JobStatus.CANCELLED.value):
        return EXIT_CANCELLED
    return 0


# files jobs carry in (packages) and out (what they collect), kept by the host by key

# a segment of a files key: not empty, not "." nor ".." (no lookarounds: pydantic's regex
# engine has none)
_SEGMENT = r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
FILE_KEY_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
MAX_FILE_KEY = 512  # characters
MAX_FILE_BYTES = 64 * 2**20
# An AWS host answers through API Gateway and Lambda, whose request and response carry at
# most 6 MB, bodies base64-encoded (4/3 as long): a file of at most this many bytes goes
# through them; a bigger one goes straight to and from the host's bucket by a presigned
# URL the host gives for that one object (hyper/host/routes/files.py), up to S3's
# largest single PUT, for LINK_SECONDS.
INLINE_FILE_BYTES = 4_000_000
MAX_LINKED_FILE_BYTES = 5 * 2**30
LINK_SECONDS = 900


def is_under(key: str, prefix: str) -> bool:
    """Whether `key` is `prefix` itself or a file under the folder `prefix/`."""
    return key == prefix or key.startswith(prefix + "/")


def escapes(path: str) -> bool:
    """Whether a path meant to be inside a folder reaches out of it (absolute, or up
    through `..`)."""
    return path.startswith("/") or posixpath.normpath(path).split("/")[0] == ".."
