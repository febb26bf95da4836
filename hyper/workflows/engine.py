"""The host side of workflows: a workflow lives in the host's store and the host moves it
on, at each scheduler tick, whether or not the client that started it is still there.

    Creating cluster -> Running -> Ending -> Successful | Failed | Cancelled

- Creating cluster: the cluster and queue made for the run (through the host's own
  deployer) must become ACTIVE within the run's timeout ("Cluster failed to create",
  "Cluster creation timed out").
- Running: the jobs are submitted at once, a sequential run as a chain of afterok
  dependencies on the host. Each job is checked every `wait_time` seconds, and at once
  when its worker reports an attempt's end to this process. A failed job ends the run
  ("Exit code not 0"), but in a parallel run with `keep_going`, where the others run on
  and the run ends when they all have.
- Ending: how the run ends is known; what has not ended is cancelled (its running
  jobs stopped), then the queue and the cluster made for the run are deleted, always,
  unless `keep_cluster`. Its packages are deleted; the jobs and their logs stay.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import time

from hyper import resources
from hyper.deployer import build_spec
from hyper.errors import Conflict, HyperError, NotFound, UsageError
from hyper.jobs import JobStatus
from hyper.models import DefinitionSpec, DeployStatus, ResourceKind, Spec
from hyper.store.base import WorkflowRecord
from hyper.workflows.model import Step, Workflow, WorkflowState
from hyper.workflows.port import WorkflowAsk, WorkflowHost, WorkflowJob

log = logging.getLogger(__name__)

TEARDOWN_ORDER = (ResourceKind.QUEUE, ResourceKind.CLUSTER)  # no cluster under a queue
STOP_GRACE_LEASES = 2  # how long jobs being stopped may take before their queue goes anyway
SAVE_TRIES = 3
SUBMIT_GRACE_SECONDS = 60.0  # a new run's jobs are being submitted by its start meanwhile


def handler_script(handler: str) -> str:
    """The job script of a workflow job: its handler, run in its unpacked package (by its
    shebang when it has one, else by bash)."""
    return f"""#!/bin/bash
handler={shlex.quote(handler)}
if [ "$(head -c 2 -- "$handler")" = '#!' ] && chmod u+x -- "$handler"; then
    exec "./$handler"
fi
exec /bin/bash -- "$handler"
"""


class WorkflowEngine:
    def __init__(self, host: WorkflowHost) -> None:
        self.host = host
        self.store = host.store
        # when each running job is checked next, by (workflow, step), and the jobs whose
        # workers reported since the last tick: in memory only (a restarted host checks
        # every job at once; another process running the same host app, by wait_time)
        self._next_check: dict[tuple[int, int], float] = {}
        self._reported: set[int] = set()

    # what requests ask ------------------------------------------------------------------

    def start(self, request: WorkflowAsk) -> Workflow:
        """Check everything first (a refusal changes nothing), then make the run's cluster
        or submit its jobs."""
        specs = self._check(request)
        cluster = request.cluster
        workflow = Workflow(
            name=request.name,
            order=request.order,
            queue=cluster.name if cluster else request.queue or "",
            definition=request.definition,
            cluster=cluster.name if cluster else None,
            cluster_timeout=cluster.timeout if cluster else 0,
            keep_cluster=request.keep_cluster,
            keep_going=request.keep_going,
            state=WorkflowState.CREATING_CLUSTER if cluster else WorkflowState.RUNNING,
            steps=[
                Step(name=s.name, handler=s.handler, package=s.package, wait_time=s.wait_time,
                     source=s.source)
                for s in request.steps
            ],
        )  # fmt: skip
        now = time.time()
        record = self.store.add_workflow(workflow.data(), now)
        workflow = Workflow.of(record)
        try:
            for kind, spec in specs:
                self.host.create_resource(kind, spec)
                workflow.made.append(kind.value)
                workflow.note(f"{kind.singular} {spec.name} being created")
            if not specs:
                self._submit(workflow, now)
        except HyperError as error:
            if specs:
                self._end(workflow, WorkflowState.FAILED, f"Cluster failed to create: {error}", now)
            else:
                self._end(workflow, WorkflowState.FAILED, f"jobs not submitted: {error}", now)
        self._save(record, workflow, now)
        self.host.wake()  # the scheduler's tick moves it on
        return workflow

    def _check(self, request: WorkflowAsk) -> list[tuple[ResourceKind, Spec]]:
        """What start() will make; raises UsageError when anything is amiss."""
        store = self.store
        definition = resources.spec_of(
            store, ResourceKind.DEFINITION, request.definition, DefinitionSpec
        )
        if request.cluster is None:
            self.host.check_fits(request.queue or "", request.definition)
            return []
        name = request.cluster.name
        for kind in (ResourceKind.CLUSTER, ResourceKind.QUEUE):
            if store.get_resource(kind.value, name) is not None:
                raise UsageError(
                    f"{kind.singular} {name!r} already exists: a workflow makes its own cluster"
                    " and queue; give --cluster a new name"
                )
        sizes = {"max_vcpus": request.cluster.max_vcpus} if request.cluster.max_vcpus else {}
        cluster = build_spec(ResourceKind.CLUSTER, {"name": name, **sizes})
        queue = build_spec(ResourceKind.QUEUE, {"name": name, "compute_environment": name})
        vcpus = cluster.model_dump()["max_vcpus"]
        if definition.vcpus > vcpus:
            raise UsageError(
                f"definition {definition.name!r} needs {definition.vcpus} vCPUs; the cluster"
                f" would have {vcpus} (--max-vcpus)"
            )
        return [(ResourceKind.CLUSTER, cluster), (ResourceKind.QUEUE, queue)]

    def get(self, workflow_id: int) -> Workflow:
        record = self.store.get_workflow(workflow_id)
        if record is None:
            raise NotFound(f"unknown workflow {workflow_id}")
        return Workflow.of(record)

    def recent(self, *, unfinished: bool = False, limit: int = 100) -> list[Workflow]:
        """The latest workflows, newest first."""
        records = self.store.list_workflows(unfinished=unfinished, limit=limit)
        return [Workflow.of(record) for record in records]

    def cancel(self, workflow_id: int, cause: str) -> Workflow:
        """End the run as Cancelled now: its jobs are stopped and its cluster deleted. A run
        that is already ending is left to end as it was going to."""
        for _ in range(SAVE_TRIES):
            record = self.store.get_workflow(workflow_id)
            if record is None:
                raise NotFound(f"unknown workflow {workflow_id}")
            workflow = Workflow.of(record)
            if workflow.result is not None:
                return workflow
            now = time.time()
            self._end(workflow, WorkflowState.CANCELLED, cause, now)
            try:
                self._save(record, workflow, now)
            except Conflict:
                continue  # the tick moved it meanwhile: decide again
            self.host.wake()
            return workflow
        raise Conflict(f"workflow {workflow_id} keeps changing; try again")

    def reported(self, job_ids: list[int]) -> None:
        """Workers reported these jobs' attempts ended: check them at the next tick."""
        self._reported.update(job_ids)

    # the tick ---------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move every unfinished workflow on as far as it can go now."""
        reported, self._reported = self._reported, set()
        for record in self.store.list_workflows(unfinished=True, limit=10_000):
            try:
                workflow = Workflow.of(record)
                if self._being_submitted(workflow, now):
                    continue
                before = workflow.data()
                if workflow.state is WorkflowState.CREATING_CLUSTER:
                    self._creating(workflow, now)
                if workflow.state is WorkflowState.RUNNING:
                    self._running(workflow, now, reported)
                if workflow.state is WorkflowState.ENDING:
                    self._ending(workflow, now)
                if workflow.data() != before:
                    self._save(record, workflow, now)
            except Conflict:
                pass  # changed meanwhile (cancelled): the next tick sees it
            except Exception:  # one workflow that cannot move must not stop the others
                log.exception("workflow %s could not move on", record.id)

    @staticmethod
    def _being_submitted(workflow: Workflow, now: float) -> bool:
        """A run whose start is still submitting its jobs (in another process, on Lambda):
        left to it for a while, then judged as any run."""
        unsubmitted = any(step.job_id is None for step in workflow.steps)
        return (
            workflow.state is WorkflowState.RUNNING
            and unsubmitted
            and now - workflow.created < SUBMIT_GRACE_SECONDS
        )

    def _creating(self, workflow: Workflow, now: float) -> None:
        found = [self.store.get_resource(kind, workflow.cluster or "") for kind in workflow.made]
        bad = next((r for r in found if r is None or r.status == DeployStatus.FAILED.value), None)
        if bad is not None or len(found) < 2:
            why = bad.log[-1].removeprefix("failed: ") if bad is not None and bad.log else "gone"
            self._end(workflow, WorkflowState.FAILED, f"Cluster failed to create: {why}", now)
        elif all(r is not None and r.status == DeployStatus.ACTIVE.value for r in found):
            workflow.note(f"cluster {workflow.cluster} ACTIVE")
            try:
                self._submit(workflow, now)
            except HyperError as error:
                self._end(workflow, WorkflowState.FAILED, f"jobs not submitted: {error}", now)
        elif now - workflow.created > workflow.cluster_timeout:
            self._end(
                workflow,
                WorkflowState.FAILED,
                f"Cluster creation timed out (not ACTIVE after {workflow.cluster_timeout:g} s)",
                now,
            )

    def _submit(self, workflow: Workflow, now: float) -> None:
        """Submit every job at once: a sequential run as a chain of afterok dependencies,
        its first job held until the whole chain is in (a refusal part-way cancels it)."""
        sequential = workflow.order == "sequential"
        jobs = [
            WorkflowJob(
                name=step.name,
                queue=workflow.queue,
                definition=workflow.definition,
                script=handler_script(step.handler),
                env={"HYPER_WORKFLOW_ID": str(workflow.id), "HYPER_WORKFLOW_JOB": step.name},
                package=step.package,
                hold=sequential and n == 0,
            )
            for n, step in enumerate(workflow.steps)
        ]
        ids: list[int] = []
        try:
            if sequential:
                for job in jobs:
                    after = ids[-1] if ids else None
                    ids += self.host.submit([dataclasses.replace(job, after=after)])
                self.host.release(ids[0])
            else:
                ids = self.host.submit(jobs)
        except HyperError:
            if ids:
                self._cancel_jobs(ids)
            raise
        for n, (step, job_id) in enumerate(zip(workflow.steps, ids, strict=True)):
            step.job_id, step.status = job_id, JobStatus.WAITING
            self._next_check[(workflow.id, n)] = now + step.wait_time
        workflow.state = WorkflowState.RUNNING
        workflow.note(f"jobs {', '.join(map(str, ids))} submitted to queue {workflow.queue}")

    def _running(self, workflow: Workflow, now: float, reported: set[int]) -> None:
        for n, step in enumerate(workflow.steps):
            due = now >= self._next_check.get((workflow.id, n), 0) or step.job_id in reported
            if not step.ended and due:
                self._check_job(workflow, step)
                self._next_check[(workflow.id, n)] = now + step.wait_time
        bad = [s for s in workflow.steps if s.ended and s.status is not JobStatus.SUCCESSFUL]
        everyone = all(step.ended for step in workflow.steps)
        if bad and (everyone or not (workflow.keep_going and workflow.order == "parallel")):
            # the cause is the job that failed, not those that could then never run
            for step in workflow.steps:
                if not step.ended:
                    self._check_job(workflow, step)
            self._end(workflow, *_why(workflow.steps), now)
        elif everyone:
            self._end(workflow, WorkflowState.SUCCESSFUL, None, now)

    def _check_job(self, workflow: Workflow, step: Step) -> None:
        job = self.store.get_job(step.job_id or 0)
        if job is None:
            step.status, step.reason = JobStatus.FAILED, "its job is gone"
        elif job.status != step.status:
            step.status, step.exit_code, step.reason = job.status, job.exit_code, job.reason
            ended = f" (exit {job.exit_code})" if job.exit_code is not None else ""
            workflow.note(f"job {step.name} ({step.job_id}) {job.status.value}{ended}")

    def _end(
        self, workflow: Workflow, result: WorkflowState, cause: str | None, now: float
    ) -> None:
        """How the run ends is known: cancel what has not ended (running jobs are stopped);
        the cluster goes once they have."""
        workflow.state, workflow.result, workflow.cause = WorkflowState.ENDING, result, cause
        workflow.ending_since = now
        workflow.note(f"{result.value}: {cause}" if cause else result.value)
        unfinished = [s.job_id for s in workflow.steps if s.job_id is not None and not s.ended]
        if unfinished:
            self._cancel_jobs(unfinished)

    def _cancel_jobs(self, ids: list[int]) -> None:
        self.host.cancel(ids)

    def _ending(self, workflow: Workflow, now: float) -> None:
        stopping = [step for step in workflow.steps if step.job_id is not None and not step.ended]
        for step in stopping:
            self._check_job(workflow, step)
        left = [step.name for step in stopping if not step.ended]
        grace = STOP_GRACE_LEASES * self.host.lease_seconds
        if left and now - (workflow.ending_since or now) < grace:
            workflow.teardown = f"waiting for job {', '.join(left)} to stop"
            return
        to_delete = [] if workflow.keep_cluster else TEARDOWN_ORDER
        for kind in to_delete:
            gone = kind.value not in workflow.made or kind.value in workflow.left
            if not gone and not self._delete(workflow, kind):
                return  # under way: the next tick looks again
        self._finish(workflow)

    def _delete(self, workflow: Workflow, kind: ResourceKind) -> bool:
        """Delete one resource made for the run; True once it is gone (or cannot go)."""
        name = workflow.cluster or ""
        record = self.store.get_resource(kind.value, name)
        if record is None:
            return True
        status = DeployStatus(record.status)
        if status is DeployStatus.DELETING:
            workflow.teardown = f"deleting {kind.singular} {name}"
        elif not status.settled:
            workflow.teardown = f"waiting for {kind.singular} {name} to settle, to delete it"
        else:
            try:
                # a queue's unfinished jobs (any left past the grace) are cancelled with it
                self.host.delete_resource(kind, name, force=kind is ResourceKind.QUEUE)
            except HyperError as error:  # say so, and go on: the rest is still torn down
                workflow.left[kind.value] = str(error)
                workflow.note(f"{kind.singular} {name} left in place: {error}")
                return True
            workflow.teardown = f"deleting {kind.singular} {name}"
            workflow.note(workflow.teardown)
        return False

    def _finish(self, workflow: Workflow) -> None:
        name = workflow.cluster
        made = " and ".join(f"{ResourceKind(k).singular} {name}" for k in workflow.made)
        if not workflow.made:
            teardown = f"nothing to tear down: ran on queue {workflow.queue}"
        elif workflow.keep_cluster:
            teardown = f"{made} kept (--keep-cluster)"
        elif workflow.left:
            teardown = "; ".join(
                f"{ResourceKind(k).singular} {name} left in place: {why}"
                for k, why in workflow.left.items()
            )
        else:
            teardown = f"{made} deleted"
        workflow.teardown = teardown
        workflow.state = workflow.result or WorkflowState.FAILED
        workflow.note(f"{workflow.state.value}; {teardown}")
        for step in workflow.steps:
            self.store.delete_files(step.package)  # the jobs and their logs stay
        for n in range(len(workflow.steps)):
            self._next_check.pop((workflow.id, n), None)

    def _save(self, record: WorkflowRecord, workflow: Workflow, now: float) -> None:
        self.store.update_workflow(
            record, workflow.data(), finished=workflow.state.finished, now=now
        )


def _why(steps: list[Step]) -> tuple[WorkflowState, str]:
    """How a run with a job that did not succeed ends, and why: the first job (in its
    order) that exited non-zero, else the first cancelled (those after it in a chain then
    fail, never having run), else the first that failed otherwise."""
    exited = [s for s in steps if s.status is JobStatus.FAILED and s.exit_code is not None]
    if exited:
        step = exited[0]
        cause = f"Exit code not 0: job {step.name} ({step.job_id}) exited with {step.exit_code}"
        if step.reason and step.reason != f"exit code {step.exit_code}":
            cause += f" ({step.reason})"  # a time limit, say
        if len(exited) > 1:
            cause += f"; {len(exited) - 1} more exited non-zero"
        return WorkflowState.FAILED, cause
    cancelled = [s for s in steps if s.status is JobStatus.CANCELLED]
    if cancelled:
        step = cancelled[0]
        return WorkflowState.CANCELLED, f"job {step.name} ({step.job_id}) was cancelled"
    step = next(s for s in steps if s.status is JobStatus.FAILED)
    return WorkflowState.FAILED, f"job {step.name} ({step.job_id}) failed: {step.reason}"
