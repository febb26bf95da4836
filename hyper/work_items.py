"""Work items (Cloudburst's start_jobs and stop_jobs): plan, preview, then apply.

Starting work items is one submission: an array given task by task, one task per
item, each named after its item (`/` made `_`) and seeing it as `WORK_ITEM`. Every
task runs the same tasks.json pipeline, carried in the job's script, so it needs
no shared disk and runs on any provider. The pipeline is validated while planning:
a broken tasks.json is refused before anything is submitted.

Stopping work items cancels, in one request, every unfinished job (waiting,
blocked, held or running) of a queue that the plan names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from hyper import jobspec
from hyper.client import HostClient
from hyper.errors import UsageError, one_line
from hyper.jobs import UNFINISHED
from hyper.pipeline import runner, schema

DEFAULT_NAME = "work-items"
HEREDOC = "HYPER_TASKS_JSON"


class StartPlan(NamedTuple):
    job: dict[str, Any]  # the submission, as POST /jobs takes it
    items: list[str]
    tasks_source: str  # where the pipeline came from


def read_work_items(
    workitems: str | None, workitem_file: str | None, prefix: str = "", padding: int = 3
) -> list[str]:
    """Items from `-workitems` (`01-16` a zero-filled range, `a,b` as given) or from a file
    of one item a line (`-` for stdin); the prefix goes before each."""
    if workitems is not None and workitem_file is not None:
        raise UsageError("give --workitems or --workitem-file, not both")
    if workitems is not None:
        return jobspec.expand_work_items(workitems, prefix, padding)
    if workitem_file is None:
        raise UsageError("must provide --workitems or --workitem-file")
    return [f"{prefix}{line}" for line in read_lines(workitem_file, "--workitem-file")]


def read_lines(source: str, flag: str) -> list[str]:
    """The non-blank lines of a file (`-`: stdin), stripped; at least one."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{flag} {source}: {error}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"{flag} {source} is empty")
    return lines


def parse_name_values(pairs: Iterable[str]) -> dict[str, str]:
    """`-name-value KEY=VALUE` (repeatable; the value may hold '=')."""
    values = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"-name-value must be given in the form KEY=VALUE, not {pair!r}")
        name, value = jobspec.parse_env_pair(pair)
        values[name] = value
    return values


def pipeline_script(tasks_text: str, source: str) -> str:
    """The job script of every work item: its tasks.json, run by `hyper tasks run` (a
    worker puts hyper's commands on its jobs' PATH)."""
    body = tasks_text if tasks_text.endswith("\n") else tasks_text + "\n"
    return (
        "#!/bin/bash\n"
        f"# hyper items start: the pipeline of {one_line(source)} for the work item in $WORK_ITEM\n"
        f"hyper tasks run - <<'{HEREDOC}'\n"
        f"{body}{HEREDOC}\n"
    )


def plan_start(
    *,
    queue: str | None,
    definition: str | None,
    items: list[str],
    tasks_file: str | None = None,
    bucket: str | None = None,
    mode: str | None = None,
    name_values: Mapping[str, str] | None = None,
    retries: int = 0,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> StartPlan:
    """The array job that starts these work items; nothing is sent."""
    env = os.environ if env is None else env
    if not definition:
        raise UsageError("must specify --jobdef or set $BATCH_JOBDEF")
    if not queue:
        raise UsageError("must specify --queue or set $BATCH_QUEUE")
    source = runner.source_path(tasks_file, env)
    text = runner.read_source(source)
    if HEREDOC in text:
        raise UsageError(f"{source} holds the line {HEREDOC}, which the job script needs")
    job_env: dict[str, str] = {}
    if bucket:
        job_env["BUCKET_NAME"] = bucket
    if mode:
        job_env["MODE_STR"] = mode
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        job_env["AWS_REGION"] = region
    job_env.update(name_values or {})
    if not items:
        raise UsageError("no work items given")
    tasks: list[dict[str, Any]] = [
        {"name": _task_name(item), "env": {"WORK_ITEM": item, "HYPER_WORK_ITEM": item}}
        for item in items
    ]
    # checked as the first item's job will read it
    checked = schema.check(text, {**env, **job_env, **tasks[0]["env"]})
    if checked.errors:
        raise UsageError(
            f"{source}: {checked.errors[0]}"
            f" ('hyper tasks validate {source}' lists every problem); nothing was submitted"
        )
    program = (checked.document or {}).get("programName", "")
    if not name:  # the program's name when it makes a job name
        name = program if program and jobspec.is_job_name(program) else DEFAULT_NAME
    job = {
        "name": jobspec.check_job_name(name),
        "queue": queue,
        "definition": definition,
        "retries": retries,
        "script": pipeline_script(text, source),
        "submit_dir": os.getcwd(),
        "env": job_env,
        "array": {"tasks": tasks},
    }
    return StartPlan(job, items, source)


def _task_name(item: str) -> str:
    return jobspec.check_job_name(item.replace("/", "_"), f"work item {item!r}")


def describe_start(plan: StartPlan) -> list[str]:
    """The preview: what --apply would submit."""
    job = plan.job
    lines = [
        f"preview: {len(plan.items)} work items as one array job '{job['name']}'"
        f" on queue {job['queue']}, definition {job['definition']}, retries {job['retries']}",
        f"  pipeline: {plan.tasks_source} (valid)",
        "  environment: " + (" ".join(f"{k}={v}" for k, v in job["env"].items()) or "(none)"),
    ]
    for number, task in enumerate(job["array"]["tasks"], start=1):
        lines.append(f"  {number:04d}  {task['name']}  WORK_ITEM={task['env']['WORK_ITEM']}")
    lines.append("run this command again with --apply to submit them")
    return lines


def start(client: HostClient, plan: StartPlan) -> int:
    """Submit the plan; the array's id."""
    return client.submit([plan.job])[0]


def plan_stop(
    client: HostClient,
    *,
    queue: str | None,
    everything: bool = False,
    names: Iterable[str] = (),
    prefix: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The unfinished jobs of a queue to cancel, and the names asked for that match none.
    Names may be written as work items (`Dam001/Period03`) or as job names."""
    if not queue:
        raise UsageError("must specify --queue or set $BATCH_QUEUE")
    wanted = {name.strip().replace("/", "_") for name in names if name.strip()}
    start_with = prefix.replace("/", "_") if prefix else None
    if not (everything or wanted or start_with):
        raise UsageError("say which work items to stop: --all, --names, --name-file or --prefix")
    if everything and (wanted or start_with):
        raise UsageError("--all stops every unfinished job of the queue: give it alone")
    statuses = [status.value for status in UNFINISHED]
    listed = client.iter_jobs(
        queue=queue, status=statuses, name_prefix=start_with if not wanted else None
    )
    chosen = [
        job
        for job in listed
        if everything
        or job["name"] in wanted
        or (start_with is not None and job["name"].startswith(start_with))
    ]
    missing = sorted(wanted - {job["name"] for job in chosen})
    return chosen, missing


def describe_stop(jobs: list[dict[str, Any]], missing: list[str]) -> list[str]:
    lines = [f"preview: {len(jobs)} unfinished jobs would be cancelled"]
    lines += [f"  {job['id']:>8}  {job['name']}  {job['status']}" for job in jobs]
    lines += [f"  not found, or already finished: {name}" for name in missing]
    lines.append("run this command again with --apply to cancel them")
    return lines


def stop(client: HostClient, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Cancel these jobs in one request: {cancelled, stopping, finished}."""
    if not jobs:
        return {"cancelled": 0, "stopping": 0, "finished": []}
    return client.change("cancel", {"ids": [str(job["id"]) for job in jobs]})
