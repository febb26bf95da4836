"""``hyper items``: Work items.

The original start_jobs/stop_jobs spellings (`-bucket`, `-workitems`, `-apply`...)
are accepted beside the double-dash ones.
"""

from __future__ import annotations

import json

import typer

from hyper import hosts, work_items
from hyper.client import HostClient
from hyper.config import HostConfig
from hyper.errors import UsageError

app = typer.Typer(
    help="Work items: start and stop them as array jobs, with a preview first.",
    no_args_is_help=True,
)

QueueOption = typer.Option(None, "--queue", "-queue", "-q", envvar="BATCH_QUEUE", help="the queue")
ApplyOption = typer.Option(False, "--apply", "-apply", help="act; without it, only preview")
JsonOption = typer.Option(False, "--json", help="print the plan (or the result) as JSON")
HostOption = typer.Option(
    None, "--host", envvar="HYPER_HOST", help="the host (default: the one in use)"
)


def _connect(host: str | None) -> HostClient:
    def first_use(created: HostConfig) -> None:
        typer.echo(f"hyper: {hosts.first_use_note(created)}", err=True)

    return hosts.connect(host, on_first_use=first_use)


@app.command("start")
def start(
    workitems: str = typer.Option(
        None, "--workitems", "-workitems", help="01-16 (a zero-filled range) or a,b,c (as given)"
    ),
    workitem_file: str = typer.Option(
        None, "--workitem-file", "-workitemfile", help="work items one a line; - for stdin"
    ),
    prefix: str = typer.Option(
        "", "--prefix", "-prefix", help="put before every item, e.g. Dam001/Period"
    ),
    padding: int = typer.Option(
        3, "--padding", "-padding", help="zero-fill range items to this width"
    ),
    queue: str = QueueOption,
    jobdef: str = typer.Option(
        None,
        "--jobdef",
        "-jobdef",
        "--definition",
        "-d",
        envvar="BATCH_JOBDEF",
        help="the job definition",
    ),
    bucket: str = typer.Option(
        None, "--bucket", "-bucket", envvar="BUCKET_NAME", help="passed to jobs as BUCKET_NAME"
    ),
    mode: str = typer.Option(None, "--mode", "-mode", help="passed to jobs as MODE_STR"),
    name_value: list[str] = typer.Option(
        [],
        "--name-value",
        "-name-value",
        "-v",
        help="KEY=VALUE for the jobs' environment (repeatable)",
    ),
    tasks: str = typer.Option(
        None,
        "--tasks",
        "-tasks",
        help="the tasks.json every item runs (default: $TASKS_PATH, then ./tasks.json)",
    ),
    retries: int = typer.Option(
        0, "--retries", "-r", min=0, max=100, help="retries of a failed item"
    ),
    name: str = typer.Option(
        None, "--name", help="the array's name (default: programName of tasks.json)"
    ),
    apply: bool = ApplyOption,
    as_json: bool = JsonOption,
    host: str = HostOption,
) -> None:
    """Start work items: one array job whose tasks each run tasks.json for their item
    (WORK_ITEM). Prints what it would submit; --apply submits and prints the array id."""
    if tasks == "-" and workitem_file == "-":
        raise UsageError("the tasks.json and the work items cannot both come from stdin")
    items = work_items.read_work_items(workitems, workitem_file, prefix, padding)
    plan = work_items.plan_start(
        queue=queue,
        definition=jobdef,
        items=items,
        tasks_file=tasks,
        bucket=bucket,
        mode=mode,
        name_values=work_items.parse_name_values(name_value),
        retries=retries,
        name=name,
    )
    if not apply:
        if as_json:
            typer.echo(json.dumps({"apply": False, "job": plan.job, "items": plan.items}, indent=2))
        else:
            typer.echo("\n".join(work_items.describe_start(plan)))
        return
    with _connect(host) as client:
        array_id = work_items.start(client, plan)
    typer.echo(json.dumps({"array_id": array_id, "items": len(items)}) if as_json else array_id)
    typer.echo(
        f"hyper: started {len(items)} work items as array {array_id} (qstat -a {array_id})",
        err=True,
    )


@app.command("stop")
def stop(
    queue: str = QueueOption,
    everything: bool = typer.Option(
        False, "--all", "-all", help="every unfinished job of the queue"
    ),
    names: list[str] = typer.Option(
        [], "--names", "-jobnames", help="work items or job names, comma separated (repeatable)"
    ),
    name_file: str = typer.Option(
        None, "--name-file", "-jobnamefile", help="names one a line; - for stdin"
    ),
    prefix: str = typer.Option(None, "--prefix", "-jobprefix", help="names starting with this"),
    apply: bool = ApplyOption,
    as_json: bool = JsonOption,
    host: str = HostOption,
) -> None:
    """Stop work items: cancel their unfinished jobs (waiting, blocked, held or running) in
    one request. Prints what it would cancel; --apply cancels."""
    wanted = [part for entry in names for part in entry.split(",")]
    if name_file is not None:
        wanted += work_items.read_lines(name_file, "--name-file")
    with _connect(host) as client:
        jobs, missing = work_items.plan_stop(
            client, queue=queue, everything=everything, names=wanted, prefix=prefix
        )
        if not apply:
            if as_json:
                typer.echo(
                    json.dumps({"apply": False, "jobs": jobs, "not_found": missing}, indent=2)
                )
            else:
                typer.echo("\n".join(work_items.describe_stop(jobs, missing)))
            return
        result = work_items.stop(client, jobs)
    if as_json:
        typer.echo(json.dumps({**result, "not_found": missing}))
    for name in missing:
        typer.echo(f"hyper: not found, or already finished: {name}", err=True)
    stopping = (
        f" ({result['stopping']} were running and are stopping)" if result["stopping"] else ""
    )
    typer.echo(
        f"hyper: cancelled {result['cancelled'] + result['stopping']} jobs{stopping}", err=True
    )
