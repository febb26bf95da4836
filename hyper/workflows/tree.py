"""The picture of a run: a tree of its states (rich), its jobs under it, a sequential
run's each under the one before, a parallel run's side by side; and the same as lines
of text, one per change, for a log that is not a terminal."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from hyper.workflows.client import Snapshot
from hyper.workflows.model import Step, Workflow, WorkflowState

STYLES = {
    "Successful": "bold green",
    "Failed": "bold red",
    "Cancelled": "magenta",
    "Running": "bold yellow",
    "Ending": "yellow",
    "Creating cluster": "cyan",
}


def _state(text: str) -> Text:
    return Text(text, style=STYLES.get(text, "dim"))


def job_state(step: Step, snapshot: Snapshot) -> tuple[str, str]:
    """A job's state as it is now (else as the host last saw it), and what else to say."""
    job = snapshot.jobs.get(step.job_id or 0)
    if job is None:
        status = step.status.value if step.status else "not submitted"
        return status, ""
    said = [f"job {job['id']}"]
    if job.get("exit_code") is not None:
        said.append(f"exit {job['exit_code']}")
    if job.get("reason") and job["reason"] != f"exit code {job.get('exit_code')}":
        said.append(job["reason"])
    return job["status"], ", ".join(said)


def cluster_phase(workflow: Workflow) -> str:
    if workflow.state is WorkflowState.CREATING_CLUSTER:
        return "being created"
    return workflow.teardown or ("ready" if workflow.result is None else "to be deleted")


def render(snapshot: Snapshot) -> Tree:
    workflow = snapshot.workflow
    title = Text.assemble(
        (f"run {workflow.id} ", "bold"),
        f"{workflow.name} ({workflow.order}) ",
        _state(workflow.state.value),
    )
    if workflow.cause:
        title.append(f"  {workflow.cause}", style="red")
    root = Tree(title)
    if workflow.cluster:
        root.add(Text(f"cluster {workflow.cluster}: {cluster_phase(workflow)}", style="cyan"))
    else:
        root.add(Text(f"queue {workflow.queue}", style="cyan"))
    parent = root
    for step in workflow.steps:
        status, said = job_state(step, snapshot)
        label = Text.assemble((step.name, "bold"), "  ", _state(status))
        if said:
            label.append(f"  {said}")
        node = parent.add(label)
        if workflow.order == "sequential":
            parent = node  # each runs after the one above it
    return root


def lines(snapshot: Snapshot) -> list[str]:
    """The run's states as lines: the run's own, then each job's."""
    workflow = snapshot.workflow
    run = f"run {workflow.id}: {workflow.state.value}"
    if workflow.cause:
        run += f": {workflow.cause}"
    if workflow.teardown:
        run += f" (tear-down: {workflow.teardown})"
    found = [run]
    for step in workflow.steps:
        status, said = job_state(step, snapshot)
        found.append(f"run {workflow.id}: {step.name}: {status}" + (f" ({said})" if said else ""))
    return found
