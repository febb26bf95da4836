"""The job lifecycle's rules, once: which state follows which, and what is said when.

No I/O here. Each store keeps its own mechanism (SQLite its set-based SQL, DynamoDB its
conditional transactions), but asks this module what a state change is: the first status
of a new job, how its dependencies are judged, what a claim, an ending, a return, a
cancel, a hold and a lost worker write, what the scheduler's demand is, and every message
a job's log or an error says about it. Where SQLite changes many jobs in one statement,
it builds that statement from the fields and states named here; where DynamoDB changes
one item at a time, it takes the same fields from the same functions.

The verdicts on dependencies and on an attempt's exit are in ``hyper.jobs``
(``judge_dependency``, ``outcome_of_attempt``), which the host's other parts share.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hyper.errors import Conflict, UsageError
from hyper.jobs import (
    FINISHED,
    NOT_STARTED,
    JobStatus,
    Verdict,
    judge_dependency,
    never_met,
    outcome_of_attempt,
)
from hyper.jobspec import Selector
from hyper.store.base import ArrayTasks, JobFilter, NewJob

# states as the stores write them
WAITING = JobStatus.WAITING.value
BLOCKED = JobStatus.BLOCKED.value
HELD = JobStatus.HELD.value
RUNNING = JobStatus.RUNNING.value
SUCCESSFUL = JobStatus.SUCCESSFUL.value
FAILED = JobStatus.FAILED.value
CANCELLED = JobStatus.CANCELLED.value
BAD = (FAILED, CANCELLED)  # ended, and not as a dependency on success wants
FINISHED_VALUES = frozenset(s.value for s in FINISHED)
NOT_STARTED_VALUES = tuple(sorted(s.value for s in NOT_STARTED))
AWAITING = (BLOCKED, HELD)  # the states in which a settled dependency still counts

EVENTS_PER_CHANGE = 1000  # a bulk change logs each job up to this many, then one line per array

# what a job's log says
CANCELLED_BEFORE_START = "cancelled before it started"
CANCEL_REQUESTED = "cancel requested"
CANCELLED_REASON = "cancelled"  # the reason of a job cancelled while it ran
FELL_SILENT = "fell silent past its lease"


def submitted(queue: str, size: int | None = None) -> str:
    """The first event of a job (`size` None) or of an array of `size` tasks."""
    if size is None:
        return f"submitted to queue {queue}"
    return f"array of {size} tasks submitted to queue {queue}"


def attempt_started(attempt: int, worker_id: str) -> str:
    return f"attempt {attempt} started on {worker_id}"


def returned_unstarted(worker_id: str) -> str:
    return f"returned unstarted by {worker_id}"


def hold_event(hold: bool) -> str:
    return "held" if hold else "released"


def bulk_event(tasks: int, text: str) -> str:
    """The one line an array gets for a change of more than EVENTS_PER_CHANGE jobs."""
    return f"{tasks} tasks: {text}"


def is_bulk(changed: int) -> bool:
    """Whether a change of this many jobs logs one line per array instead of one a job."""
    return changed > EVENTS_PER_CHANGE


def gone(reclaimed: bool) -> str:
    """Why a worker known to be gone lost what it held."""
    return "is gone with its reclaimed machine" if reclaimed else "is gone"


def lost(worker_id: str | None, why: str) -> str:
    """The reason of an attempt whose worker was lost (`why`: FELL_SILENT or gone())."""
    return f"was lost: worker {worker_id} {why}"


def not_held(worker_id: str, attempt: int, job_id: int) -> Conflict:
    """A report from a worker that no longer holds the attempt."""
    return Conflict(f"worker {worker_id} no longer holds attempt {attempt} of job {job_id}")


def workflow_changed(workflow_id: int) -> Conflict:
    return Conflict(f"workflow {workflow_id} changed meanwhile")


# submitting ------------------------------------------------------------------------------

State = tuple[int, int, int]  # (ok, bad, size) of a dependency's target


def job_state(status: str) -> State:
    """(ok, bad, size) of a single job as a dependency's target."""
    return int(status == SUCCESSFUL), int(status in BAD), 1


def first_status(job: NewJob, deps_left: int, never: str | None = None) -> str:
    """A new job's (or task's) status: Failed when a dependency can never be met, else
    Held when submitted on hold, else Blocked while it waits for dependencies."""
    if never:
        return FAILED
    if job.hold:
        return HELD
    return BLOCKED if deps_left else WAITING


def judge_new(
    job: NewJob, is_array: Callable[[int], bool], state_of: Callable[[int], State | None]
) -> tuple[list[tuple[str, int]], str | None]:
    """The dependencies of a new job still pending, and why it can never run (or None).
    `state_of` gives a target's (ok, bad, size), None for an unknown id. An aftercorr
    dependency is judged per task (corr_pending)."""
    pending: list[tuple[str, int]] = []
    for dep in dict.fromkeys(job.depends):  # the same dependency twice counts once
        if dep.kind == "aftercorr":
            if job.array is None:
                raise UsageError("aftercorr is for arrays: task N waits for task N")
            if not is_array(dep.target):
                raise UsageError(f"aftercorr:{dep.target}: {dep.target} is not an array job")
            pending.append((dep.kind, dep.target))
            continue
        state = state_of(dep.target)
        if state is None:
            raise UsageError(f"dependency on unknown job id {dep.target}")
        ok, bad, size = state
        verdict = judge_dependency(dep.kind, ok=ok, bad=bad, size=size)
        if verdict is Verdict.NEVER:
            return [], never_met(dep.kind, dep.target)
        if verdict is Verdict.PENDING:
            pending.append((dep.kind, dep.target))
    return pending, None


def array_deps(pending: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The pending dependencies of a whole array (aftercorr ones are its tasks')."""
    return [(kind, target) for kind, target in pending if kind != "aftercorr"]


def corr_targets(pending: Sequence[tuple[str, int]]) -> list[int]:
    return [target for kind, target in pending if kind == "aftercorr"]


def corr_pending(
    targets: Sequence[int],
    indices: Sequence[int],
    task_states: Callable[[int], Iterable[tuple[int, str]]],
) -> list[tuple[list[int], str | None]]:
    """Per task of a new array: the aftercorr targets it still waits for, and a reason
    when one can never be met. `task_states` gives (index, status) of a target's tasks.
    A task with no counterpart has nothing to wait for."""
    result: list[tuple[list[int], str | None]] = [([], None) for _ in indices]
    position = {index: n for n, index in enumerate(indices)}
    for target in targets:
        for index, status in task_states(target):
            n = position.get(index)
            if n is None or status == SUCCESSFUL:
                continue
            waits, reason = result[n]
            if status in BAD:
                reason = reason or never_met("aftercorr", target, index)
            else:
                waits = [*waits, target]
            result[n] = (waits, reason)
    return result


def task_start(
    job: NewJob, array_deps_left: int, waits: Sequence[int], reason: str | None
) -> tuple[str, int, str | None]:
    """(status, dependencies left, reason) of a task of a new array that waits for
    `waits` (aftercorr targets) beside the array's own dependencies."""
    left = array_deps_left + len(waits)
    return first_status(job, left, reason), left, reason


# tasks made after their array's submit ------------------------------------------------------
#
# An array's submit writes its own record and its first FIRST_TASKS tasks; the rest are
# made later, in order: TASKS_PER_TICK by each scheduler tick, TASKS_PER_MAKE by a claim
# that finds too few made, and at once by whatever needs them (listing, cancel,
# hold, release, a dependency that can never be met, aftercorr). A task not made yet is
# exactly the task it would have been had it been written at submit: its array's plan
# says how it is now (a dependency of the whole array that is met changes the plan as it
# changes each task, `settled`), and its array's kept counts hold it from the submit on.

FIRST_TASKS = 1000  # tasks an array's submit makes itself
TASKS_PER_MAKE = 1000  # made at a time by a claim that finds too few (a few ms)
TASKS_PER_TICK = 100  # made by each scheduler tick (the tick stays within its ms)


def plan_tasks(
    tasks: ArrayTasks, status: str, deps_left: int, reason: str | None, now: float
) -> dict[str, Any]:
    """What makes any task of an array: its indices (a range when they are one, as most
    are: first, step, count), per-task names and params, and the state every task starts
    in (status, dependencies left, reason, end)."""
    indices = tasks.indices
    step = indices[1] - indices[0] if len(indices) > 1 else 1
    ranged = step > 0 and (
        isinstance(indices, range) or all(b - a == step for a, b in pairwise(indices))
    )
    plan: dict[str, Any] = {
        "range": [indices[0], step, len(indices)] if ranged else None,
        "indices": None if ranged else list(indices),
        "status": status,
        "deps_left": deps_left,
        "reason": reason,
        "ended": now if reason else None,
    }
    if tasks.names and any(tasks.names):
        plan["names"] = tasks.names
    if tasks.params and any(tasks.params):
        plan["params"] = tasks.params
    return plan


def made_later(size: int, status: str, corr: bool, first: int = FIRST_TASKS) -> bool:
    """Whether an array's tasks past the first `first` are made after its submit: not
    when they end at once (a dependency that can never be met) nor when each task waits
    for its own (aftercorr); those are all written at submit."""
    return size > first and status != FAILED and not corr


def task_indices(plan: Mapping[str, Any], first: int, end: int) -> list[int]:
    """The indices of tasks `first` to `end` - 1 (by position: task n has id array + 1 + n)."""
    if plan["range"] is not None:
        start, step, count = plan["range"]
        return list(range(start + first * step, start + min(end, count) * step, step))
    return list(plan["indices"][first:end])


def task_position(plan: Mapping[str, Any], index: int) -> int | None:
    """The position of the task of index `index`, or None if the array has none."""
    if plan["range"] is not None:
        start, step, count = plan["range"]
        n, off = divmod(index - start, step)
        return n if off == 0 and 0 <= n < count else None
    try:
        return list(plan["indices"]).index(index)
    except ValueError:
        return None


def task_extras(
    plan: Mapping[str, Any], first: int, end: int
) -> list[tuple[int, str | None, str | None]]:
    """(position, name, params as JSON) of the tasks `first` to `end` - 1 that have their
    own name or params (work items)."""
    names = plan.get("names") or []
    params = plan.get("params") or []
    found = []
    for n in range(first, min(end, max(len(names), len(params)))):
        name = names[n] if n < len(names) and names[n] else None
        param = params[n] if n < len(params) and params[n] else None
        if name or param:
            found.append((n, name, json.dumps(param) if param else None))
    return found


def unmade_may_match(
    where: JobFilter,
    *,
    array_id: int,
    queue: str,
    definition: str,
    name: str,
    named: bool,
    status: str,
    whole: bool = False,
) -> bool:
    """Whether a filter without selectors may match an array's tasks not made yet (they
    are alike: in the plan's `status`, named after their array unless the plan gives
    names of their own, `named`); `whole`: whether it matches every one of them."""
    if where.queue not in (None, queue) or where.definition not in (None, definition):
        return False
    if where.array_id not in (None, array_id):
        return False
    if where.statuses and status not in {s.value for s in where.statuses}:
        return False
    asked = []
    if where.name is not None:
        asked.append(name == where.name)
    if where.name_prefix:
        asked.append(name.startswith(where.name_prefix))
    # a task's own name may fit where its array's does not, and the reverse
    return all(fits and not named if whole else fits or named for fits in asked)


def to_make(
    made: int,
    size: int,
    array_id: int,
    *,
    after: int = 0,
    limit: int | None = None,
    positions: Iterable[int] | None = None,
) -> int:
    """How many tasks of an array (from the first) must be made for an answer to be exact:
    all (`limit` None, no `positions`); those up to the last of `positions`; or for a page
    of `limit` jobs after id `after`, the tasks up to `limit` past it (those not yet made
    are all alike: either each of them matches a filter, or none)."""
    if positions is not None:
        return min(size, max([made, *(p + 1 for p in positions)]))
    if limit is None:
        return size
    return min(size, max(made, after - array_id) + limit)


# reading ---------------------------------------------------------------------------------


def resolve(selectors: Sequence[Selector], kind_of: Mapping[int, str | None]) -> JobFilter:
    """The filter for what a request named: `kind_of` says of each id whether it is an
    "array", another kind of job, or unknown (None or absent)."""
    ids: list[int] = []
    arrays: list[tuple[int, tuple[int, ...] | None]] = []
    missing: list[str] = []
    for selector in selectors:
        kind = kind_of.get(selector.id)
        if kind == "array":
            arrays.append((selector.id, selector.indices))
        elif selector.indices is not None:
            missing.append(f"{selector.id} (not an array)")
        elif kind is not None:
            ids.append(selector.id)
        else:
            missing.append(str(selector.id))
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise UsageError(f"unknown job id{plural}: {' '.join(missing[:20])}")
    return JobFilter(ids=tuple(ids), arrays=tuple(arrays))


def one_line_per_array(where: JobFilter, collapse: bool) -> bool:
    """Whether a listing shows each array as one line: asked, and the filter picks no
    tasks (by array, ids or status). Those lines are filtered by queue and name only."""
    return collapse and where.array_id is None and not where.selects and not where.statuses


def from_counts(where: JobFilter) -> bool:
    """Whether the kept counts (by queue, definition, array and status) answer a count,
    else the jobs that match are counted."""
    return where.name is None and not where.name_prefix and not where.selects


# changing state --------------------------------------------------------------------------


def claimed(worker_id: str, attempt: int, lease: float, now: float) -> dict[str, Any]:
    """What a claim writes on a Waiting job: its attempt number `attempt` runs now."""
    return {
        "status": RUNNING,
        "worker_id": worker_id,
        "attempt": attempt,
        "lease_until": now + lease,
        "started": now,
        "exit_code": None,
    }


def returned(attempt: int) -> dict[str, Any]:
    """What a job a worker claimed but never started gets back: as if never claimed."""
    return {
        "status": WAITING,
        "attempt": attempt - 1,
        "worker_id": None,
        "lease_until": None,
        "started": None,
    }


def cancelled_unstarted(now: float) -> dict[str, Any]:
    """What a cancel writes on a job that has not started: it ends now."""
    return {
        "status": CANCELLED,
        "cancel_requested": True,
        "ended": now,
        "reason": CANCELLED_BEFORE_START,
    }


def movable(hold: bool) -> tuple[str, ...]:
    """The states a hold (or a release) moves a job from."""
    return (WAITING, BLOCKED) if hold else (HELD,)


def held_status(hold: bool, deps_left: int) -> str:
    """Where a hold puts a job, or where a release puts it back."""
    if hold:
        return HELD
    return BLOCKED if deps_left > 0 else WAITING


@dataclass(frozen=True)
class AttemptEnd:
    """How a job goes on after one of its attempts ended."""

    status: JobStatus
    retries_left: int
    reason: str | None  # the job's reason (set when it failed or was cancelled)
    event: str  # what its log says

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def fields(self, exit_code: int | None, now: float) -> dict[str, Any]:
        """What the job's record gets."""
        return {
            "status": self.status.value,
            "retries_left": self.retries_left,
            "exit_code": exit_code,
            "reason": self.reason,
            "worker_id": None,
            "lease_until": None,
            "ended": now if self.finished else None,
        }


def end_attempt(
    *,
    attempt: int,
    exit_code: int | None,
    retries_left: int,
    cancel_requested: bool,
    reason: str | None,
    reclaimed: bool = False,
) -> AttemptEnd:
    """The end of a running attempt: retried, or the job's final status and reason."""
    outcome = outcome_of_attempt(
        attempt=attempt,
        exit_code=exit_code,
        retries_left=retries_left,
        cancel_requested=cancel_requested,
        reason=reason,
        reclaimed=reclaimed,
    )
    final_reason = None
    if outcome.status is JobStatus.CANCELLED:
        final_reason = CANCELLED_REASON
    elif outcome.status is JobStatus.FAILED:
        final_reason = reason or f"exit code {exit_code}"
    return AttemptEnd(outcome.status, outcome.retries_left, final_reason, outcome.event)


def ended_verdict(kind: str, state: JobStatus) -> Verdict:
    """A dependency of `kind` on one job (or task) that ended in `state`."""
    ok = int(state is JobStatus.SUCCESSFUL)
    return judge_dependency(kind, ok=ok, bad=1 - ok, size=1)


def failed_unrunnable(reason: str, now: float) -> dict[str, Any]:
    """What a job gets whose dependency can never be met."""
    return {"status": FAILED, "reason": reason, "ended": now}


def settled(
    status: str, deps_left: int, verdict: Verdict, reason: str, now: float
) -> dict[str, Any] | None:
    """What a job that has not started gets when one of its dependencies is settled: one
    less to wait for (Waiting when none is left, unless Held), or Failed when it can
    never be met; None when nothing changes."""
    if verdict is Verdict.PENDING or status not in AWAITING:
        return None
    if verdict is Verdict.NEVER:
        return failed_unrunnable(reason, now)
    left = deps_left - 1
    return {"deps_left": left, "status": WAITING if status == BLOCKED and left <= 0 else status}


# resources -------------------------------------------------------------------------------

RESOURCE_LOG_LINES = 200  # a resource's log keeps its last this many lines


def resource_log(log: Sequence[str], lines: Sequence[str]) -> list[str]:
    """A resource's log once `lines` are added to it."""
    return [*log, *lines][-RESOURCE_LOG_LINES:]


# the scheduler's demand -----------------------------------------------------------------


def request_of(options: str | None) -> dict[str, Any] | None:
    """What a job asked for, from its options (JSON text): None when it asked nothing (or
    its options cannot be read)."""
    try:
        request = json.loads(options).get("request") if options else None
    except (ValueError, AttributeError):
        return None
    return request if isinstance(request, dict) else None


def request_items(request: dict[str, Any] | None) -> tuple[tuple[str, int], ...]:
    """A request as the scheduler counts it: its whole-number items, sorted (() for
    nothing asked)."""
    if not isinstance(request, dict):
        return ()
    return tuple(sorted((str(k), int(v)) for k, v in request.items() if isinstance(v, int)))


def demand(
    counts: Iterable[tuple[str, str, str, int]],
    capped: Iterable[tuple[str, str, int, int, int]],
) -> list[tuple[str, str, int, int]]:
    """(queue, definition, waiting, running) from the counts per (queue, definition,
    status) and, for each unfinished array with a cap, (queue, definition, cap, waiting,
    running): waiting counts only the tasks that the caps of their arrays let start now."""
    totals: dict[tuple[str, str], list[int]] = {}
    for queue, definition, status, n in counts:
        if status in (WAITING, RUNNING) and n > 0:
            pair = totals.setdefault((queue, definition), [0, 0])
            pair[0 if status == WAITING else 1] += n
    for queue, definition, cap, waiting, running in capped:
        if (queue, definition) in totals:
            allowed = max(0, min(waiting, cap - running))
            totals[queue, definition][0] -= waiting - allowed
    return [(q, d, waiting, running) for (q, d), (waiting, running) in sorted(totals.items())]
