"""``hyper workflows``: job workflows from INI files (CfnCluster Step Functions' jobs
files), run by the host: ``run``, ``validate``, ``list``, ``status``, ``cancel``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from hyper import hosts
from hyper.client import HostClient
from hyper.workflows import client as runs
from hyper.workflows import jobsfile, tree
from hyper.workflows.model import Workflow

app = typer.Typer(
    help="Job workflows from INI files: jobs run in order on a cluster made for the run.",
    no_args_is_help=True,
)

HostOption = typer.Option(None, "--host", envvar="HYPER_HOST", help="the saved host to use")
INTERRUPTED = 130  # 128 + SIGINT
INTERRUPT_CAUSE = "the client was interrupted (Ctrl-C)"


def _load(path: Path) -> jobsfile.JobsFile:
    jobs_file = jobsfile.load(path)
    for warning in jobs_file.warnings:
        typer.echo(f"hyper: warning: {path}: {warning}", err=True)
    return jobs_file


@app.command("run")
def run(
    jobs: Path = typer.Argument(..., metavar="JOBS.ini", help="the jobs file"),
    cluster: str = typer.Option(
        None,
        "--cluster",
        help="make this cluster (and a queue of its name) for the run;"
        " deleted after it, whatever happens",
    ),
    max_vcpus: int = typer.Option(None, "--max-vcpus", min=1, help="the cluster's vCPUs"),
    cluster_timeout: float = typer.Option(
        1800.0, "--cluster-timeout", min=1, help="seconds the cluster may take to be ready"
    ),
    keep_cluster: bool = typer.Option(False, "--keep-cluster", help="do not delete the cluster"),
    keep_going: bool = typer.Option(
        False, "--keep-going", help="parallel: a failed job does not stop the others"
    ),
    queue: str = typer.Option(None, "--queue", "-q", help="run on this queue (no --cluster)"),
    definition: str = typer.Option(
        runs.SAMPLE_DEFINITION, "--definition", "-d", help="how the jobs run (vCPUs, memory...)"
    ),
    detach: bool = typer.Option(
        False, "--detach", help="print the run's id and return: the host runs it"
    ),
    host: str = HostOption,
) -> None:
    """Check JOBS.ini, pack each job's files, start the run on the host and watch it:
    a live tree on a terminal, else a line per change on stderr. stdout gets the run's id
    only. Exit 0 when every job succeeded, 1 when the run failed, 143 when it was
    cancelled; Ctrl-C cancels the run (its cluster is still deleted) and exits 130."""
    options = runs.RunOptions(
        definition=definition,
        queue=queue,
        cluster=cluster,
        max_vcpus=max_vcpus,
        cluster_timeout=cluster_timeout,
        keep_cluster=keep_cluster,
        keep_going=keep_going,
    )
    jobs_file = _load(jobs)
    with hosts.connect(host) as client:
        workflow = runs.start(client, jobs_file, options)
        typer.echo(workflow.id)
        if detach:
            return
        try:
            final = _watch(client, workflow.id)
        except KeyboardInterrupt:
            typer.echo(
                f"hyper: interrupted: run {workflow.id} is cancelled; the host tears it down"
                f" (Ctrl-C again to stop watching; hyper workflows status {workflow.id})",
                err=True,
            )
            runs.cancel(client, workflow.id, INTERRUPT_CAUSE)
            with contextlib.suppress(KeyboardInterrupt):
                _watch(client, workflow.id)
            raise typer.Exit(INTERRUPTED) from None
    raise typer.Exit(runs.EXIT_CODES[final.workflow.state])


def _watch(client: HostClient, workflow_id: int) -> runs.Snapshot:
    """Follow a run to its end: a live tree on a terminal, else its changes as lines."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.live import Live

        with Live(console=Console(stderr=True), refresh_per_second=4) as live:
            return runs.follow(client, workflow_id, lambda s: live.update(tree.render(s)))
    shown: set[str] = set()

    def show(snapshot: runs.Snapshot) -> None:
        for line in tree.lines(snapshot):
            if line not in shown:
                shown.add(line)
                typer.echo(f"hyper: {line}", err=True)

    return runs.follow(client, workflow_id, show)


@app.command("validate")
def validate(jobs: Path = typer.Argument(..., metavar="JOBS.ini")) -> None:
    """Check a jobs file as run does, handlers inside their packages included (S3 prefixes
    are listed), and show what would run; exit 2 with one line when anything is wrong."""
    jobs_file = _load(jobs)
    typer.echo(f"{jobs}: valid, {len(jobs_file.jobs)} jobs, {jobs_file.order}")
    for job in jobs_file.jobs:
        typer.echo(
            f"  {job.name}: {job.handler} from {job.source}, checked every {job.wait_time} s"
        )


@app.command("list")
def list_runs(
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="the latest this many"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
    host: str = HostOption,
) -> None:
    """The latest runs, newest first: state, jobs done, cluster and cause."""
    with hosts.connect(host) as client:
        found = runs.recent(client, limit=limit)
    if as_json:
        typer.echo(json.dumps({"version": 1, "workflows": [w.shown() for w in found]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("RUN", "NAME", "STATE", "JOBS", "CLUSTER", "CAUSE", box=None)
    for workflow in found:
        done = sum(1 for step in workflow.steps if step.ended)
        table.add_row(str(workflow.id), workflow.name, workflow.state.value,
                      f"{done}/{len(workflow.steps)}", workflow.cluster or "-",
                      workflow.cause or "")  # fmt: skip
    Console(width=200).print(table)


@app.command("status")
def status(
    run_id: int = typer.Argument(..., metavar="RUN", min=1),
    as_json: bool = typer.Option(False, "--json", help="the run and its jobs, machine-readable"),
    watch: bool = typer.Option(
        None, "--watch/--no-watch", help="follow it to its end (default: on a terminal)"
    ),
    host: str = HostOption,
) -> None:
    """A run as a tree of its states, live until it ends on a terminal (Ctrl-C stops
    watching, not the run); --json prints {"version": 1, "workflow": ..., "jobs": [...]}."""
    with hosts.connect(host) as client:
        if as_json:
            snapshot = runs.look(client, run_id)
            shown = {"version": 1, "workflow": snapshot.workflow.shown(),
                     "jobs": list(snapshot.jobs.values())}  # fmt: skip
            typer.echo(json.dumps(shown))
            return
        from rich.console import Console

        if sys.stdout.isatty() if watch is None else watch:
            from rich.live import Live

            live = Live(console=Console(), refresh_per_second=4)
            with live, contextlib.suppress(KeyboardInterrupt):
                runs.follow(client, run_id, lambda s: live.update(tree.render(s)))
            return
        # not a terminal: lines as long as they are, for a log or a pipe
        Console(width=None if sys.stdout.isatty() else 10_000).print(
            tree.render(runs.look(client, run_id))
        )


@app.command("cancel")
def cancel(run_id: int = typer.Argument(..., metavar="RUN", min=1), host: str = HostOption) -> None:
    """Cancel a run: its jobs are stopped, then its cluster is deleted, on the host."""
    with hosts.connect(host) as client:
        workflow = runs.cancel(client, run_id, "cancelled with hyper workflows cancel")
    typer.echo(f"hyper: run {run_id}: {_said(workflow)}", err=True)


def _said(workflow: Workflow) -> str:
    if workflow.state.finished:
        return f"already {workflow.state.value}"
    return f"{workflow.result.value if workflow.result else workflow.state.value}: {workflow.cause}"
