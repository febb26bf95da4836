"""``hyper regions|clusters|queues|images|definitions``: the resource commands.

Each add command is a walkthrough (``hyper.cli.questions``) whose every
question is also a flag; update changes only the flags given; delete refuses
while the resource is in use unless --force; list shows each record's state
and the last line of its deployment log. Changes are asynchronous on the host:
commands wait until the record settles (ACTIVE or FAILED) unless --no-wait.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from hyper import hosts
from hyper.cli import questions as q
from hyper.cli.walkthrough import Answers, Question, parse, walk
from hyper.client import HostClient
from hyper.errors import HyperError, NotFound, UsageError
from hyper.models import DeployStatus, ResourceKind

SETTLE_TIMEOUT = 600.0


def connect(host: str | None) -> HostClient:
    return hosts.connect(host)


def resource_path(kind: ResourceKind, name: str) -> str:
    return f"/resources/{kind.value}/{quote(name, safe='')}"


def to_spec(kind: ResourceKind, answers: Answers) -> dict[str, Any]:
    """Walkthrough answers as the fields of a resource spec."""
    spec = dict(answers)
    if kind is ResourceKind.REGION:
        vpc = spec.pop("vpc", None)
        if vpc:
            spec["import_vpc"] = False
            spec["vpc_id" if vpc.startswith("vpc-") else "cidr"] = vpc
    if spec.get("local_build_directory"):  # the host may run elsewhere than this shell
        spec["local_build_directory"] = str(Path(spec["local_build_directory"]).resolve())
    if kind is ResourceKind.DEFINITION:
        for field in ("gpu_count", "timeout_minutes"):
            if spec.get(field) == 0:
                spec[field] = None
    return spec


def pushed_here(
    kind: ResourceKind, spec: dict[str, Any], host: str | None, client: HostClient
) -> dict[str, Any]:
    """An AWS host's image is built and pushed from this machine (its functions have no
    docker): the spec with the URI it was pushed to. Other specs and hosts: as given."""
    if kind is not ResourceKind.IMAGE:
        return spec
    from hyper import config
    from hyper.providers.aws import images

    if not images.needs_push(spec):
        return spec
    saved = config.load_host(hosts.default_host_name(host))
    if saved.provider != "aws":
        return spec
    regions = [
        r["name"]
        for r in client.list_resources(ResourceKind.REGION.value)
        if r["status"] == DeployStatus.ACTIVE.value and r["spec"].get("kind") == "aws"
    ]
    return images.push_from_here(saved, spec, regions, lambda line: typer.echo(line, err=True))


# ---- waiting and showing -------------------------------------------------------------


def settle(client: HostClient, kind: ResourceKind, name: str, *, deleting: bool = False) -> None:
    """Wait for a change to settle; say how it ended; fail when it FAILED."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            record = client.call("GET", resource_path(kind, name))
        except NotFound:
            record = None
        except UsageError:  # the host answers 400 "unknown ..." for a record that is gone
            record = None
        if record is None:
            if deleting:
                typer.echo(f"{kind.singular} {name!r} deleted", err=True)
                return
            raise HyperError(f"{kind.singular} {name!r} disappeared")
        if DeployStatus(record["status"]).settled and not deleting:
            line = record["log"][-1] if record["log"] else ""
            typer.echo(f"{kind.singular} {name!r} {record['status']}: {line}", err=True)
            if record["status"] == "FAILED":
                raise typer.Exit(1)
            return
        time.sleep(0.2)
    raise HyperError(f"{kind.singular} {name!r} did not settle in {SETTLE_TIMEOUT:.0f} s")


def summary(kind: ResourceKind, spec: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    if kind is ResourceKind.REGION:
        text = f"{spec.get('kind')}{' (main)' if spec.get('main_region') else ''}"
        if spec.get("kind") == "static":
            mine = [n for n in nodes if n["region"] == spec["name"]]
            slots = sum(n["slots"] for n in mine)
            text += f", {len(mine)} machine{'s' if len(mine) != 1 else ''} ({slots} slots)"
        return text
    if kind is ResourceKind.CLUSTER:
        return (f"{spec.get('max_vcpus')} vCPUs/region, {spec.get('type')},"
                f" {','.join(spec.get('instance_list', []))}")  # fmt: skip
    if kind is ResourceKind.QUEUE:
        weights = spec.get("region_distribution_weights") or {}
        shown = "auto" if spec.get("automate_region_weights") else json.dumps(weights)
        return f"cluster {spec.get('compute_environment')}, weights {shown}"
    if kind is ResourceKind.IMAGE:
        return spec.get("uri") or spec.get("local_build_directory") or "this machine"
    image = (
        spec.get("cyclone_image_name") if spec.get("use_cyclone_image") else spec.get("image_uri")
    )
    return (f"image {image}, {spec.get('vcpus')} vCPU, {spec.get('memory_limit_mib')} MiB,"
            f" ratio {spec.get('jobs_to_workers_ratio')}")  # fmt: skip


def print_table(
    kind: ResourceKind, items: list[dict[str, Any]], nodes: list[dict[str, Any]]
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("NAME", "STATUS", "WHAT", "LOG", box=None)
    for item in items:
        last = item["log"][-1] if item["log"] else ""
        table.add_row(item["name"], item["status"], summary(kind, item["spec"], nodes), last)
    Console(width=200).print(table)


# ---- building the commands -----------------------------------------------------------


def _option(question: Question) -> inspect.Parameter:
    if question.kind == "bool":
        annotation: Any = bool | None
    elif question.kind == "pairs":
        annotation = list[str] | None
    else:
        annotation = str | None
    default = typer.Option(None, *question.flags, help=question.help or question.prompt)
    return inspect.Parameter(
        question.key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _param(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


HOST = _param(
    "host", typer.Option(None, "--host", envvar="HYPER_HOST", help="the saved host to use"),
    str | None,
)  # fmt: skip
WAIT = _param(
    "wait", typer.Option(True, "--wait/--no-wait", help="wait until the change settles"), bool
)
NAME = _param("name", typer.Argument(..., help="the resource's name"), str)
REDEPLOY = _param(
    "redeploy",
    typer.Option(False, "--redeploy", help="deploy it again as it is (with this release's"
                 " grants: hyper hosts check-host names what needs it)"),
    bool,
)  # fmt: skip


def _command(
    body: Callable[..., None], params: list[inspect.Parameter], doc: str
) -> Callable[..., None]:
    def command(**kwargs: Any) -> None:
        body(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command


def add_command(
    kind: ResourceKind, asked: list[Question], doc: str, fixed: Answers | None = None
) -> Callable[..., None]:
    def body(*, host: str | None, wait: bool, yes: bool, **given: Any) -> None:
        with connect(host) as client:

            def refs(which: str) -> list[str]:
                items = client.list_resources(which)
                return [i["name"] for i in items if i["status"] == "ACTIVE"]

            answers = walk(asked, given, yes=yes, refs=refs)
            spec = to_spec(kind, {**answers, **(fixed or {})})
            spec = pushed_here(kind, spec, host, client)
            record = client.call("POST", f"/resources/{kind.value}", spec)
            typer.echo(f"{kind.singular} {record['name']!r} {record['status']}", err=True)
            if wait:
                settle(client, kind, record["name"])

    yes = _param("yes", typer.Option(False, "--yes", "-y", help="take the defaults"), bool)
    return _command(body, [*map(_option, asked), yes, WAIT, HOST], doc)


def update_command(kind: ResourceKind, asked: list[Question], doc: str) -> Callable[..., None]:
    changeable = [question for question in asked if question.key != "name"]

    def body(*, name: str, host: str | None, wait: bool, redeploy: bool, **given: Any) -> None:
        changes = {
            question.key: parse(question, given[question.key])
            for question in changeable
            if given.get(question.key) not in (None, [])
        }
        if not changes and not redeploy:
            flags = ", ".join(question.flag for question in changeable)
            raise UsageError(f"nothing to change: give one or more of {flags}, or --redeploy")
        changes = to_spec(kind, changes)
        with connect(host) as client:
            client.call("PATCH", resource_path(kind, name), changes)
            if wait:
                settle(client, kind, name)

    return _command(body, [NAME, *map(_option, changeable), REDEPLOY, WAIT, HOST], doc)


def delete_command(kind: ResourceKind, doc: str) -> Callable[..., None]:
    def body(*, name: str, force: bool, host: str | None, wait: bool) -> None:
        with connect(host) as client:
            client.call("DELETE", resource_path(kind, name), query={"force": force})
            if wait:
                settle(client, kind, name, deleting=True)

    force = _param("force", typer.Option(False, "--force", help="delete even while in use"), bool)
    return _command(body, [NAME, force, WAIT, HOST], doc)


def list_command(kind: ResourceKind, doc: str) -> Callable[..., None]:
    def body(*, as_json: bool, watch: bool, host: str | None) -> None:
        with connect(host) as client:
            deadline = time.monotonic() + SETTLE_TIMEOUT
            shown = None
            while True:
                items = client.list_resources(kind.value)
                if as_json:
                    typer.echo(json.dumps({"version": 1, "items": items}, indent=2))
                elif items != shown:
                    nodes = (
                        client.call("GET", "/nodes")["nodes"] if kind is ResourceKind.REGION else []
                    )
                    print_table(kind, items, nodes)
                    shown = items
                settled = all(DeployStatus(i["status"]).settled for i in items)
                if not watch or settled or as_json or time.monotonic() > deadline:
                    return
                time.sleep(0.5)

    as_json = _param("as_json", typer.Option(False, "--json", help="machine-readable"), bool)
    watch = _param(
        "watch", typer.Option(False, "--watch", help="follow until every change settles"), bool
    )
    return _command(body, [as_json, watch, HOST], doc)


def group(kind: ResourceKind, asked: list[Question], help: str) -> typer.Typer:
    app = typer.Typer(help=help, no_args_is_help=True)
    word = kind.singular
    app.command(f"add-{word}")(add_command(kind, asked, f"Create a {word} (asks on a terminal)."))
    app.command(f"list-{kind.value}")(list_command(kind, f"List {kind.value} and their state."))
    app.command(f"update-{word}")(
        update_command(kind, asked, f"Change the given fields of a {word} and re-deploy it.")
    )
    app.command(f"delete-{word}")(delete_command(kind, f"Delete a {word} that nothing uses."))
    return app


regions = typer.Typer(help="Regions: where a host's compute is.", no_args_is_help=True)
regions.command("init-main-region")(
    add_command(ResourceKind.REGION, q.MAIN_REGION, "Create the host's main region.",
                fixed={"main_region": True})
)  # fmt: skip
regions.command("add-region")(
    add_command(ResourceKind.REGION, q.REGION, "Add a region: a pool of machines that join"
                " (--kind static), or an AWS region.")
)  # fmt: skip
regions.command("list-regions")(list_command(ResourceKind.REGION, "List regions and their state."))
regions.command("update-region")(
    update_command(ResourceKind.REGION, q.REGION, "Change the given fields of a region.")
)
regions.command("delete-region")(
    delete_command(ResourceKind.REGION, "Delete a region that no queue or worker uses.")
)


@regions.command("list-pilots")
def list_pilots(
    name: str = typer.Argument(..., help="the Slurm region's name"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
) -> None:
    """List a Slurm region's pilot jobs as Slurm sees them (run where squeue works)."""
    import getpass

    from hyper.launchers.slurm import list_pilots as pilots

    found = pilots(name, getpass.getuser())
    if as_json:
        typer.echo(json.dumps({"version": 1, "items": found}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("SLURM JOB", "STATE", "TIME", "LEFT", "NODE/REASON", box=None)
    for pilot in found:
        table.add_row(*(pilot.get(k, "") for k in ("job_id", "state", "time", "time_left",
                                                     "where")))  # fmt: skip
    Console(width=200).print(table)


clusters = group(ResourceKind.CLUSTER, q.CLUSTER, "Clusters: capacity across every region.")
queues = group(ResourceKind.QUEUE, q.QUEUE, "Queues: where jobs wait, weighted over regions.")
definitions = group(
    ResourceKind.DEFINITION, q.DEFINITION, "Definitions: how jobs run (image, limits, ratio)."
)

images = typer.Typer(help="Images: the software workers run in.", no_args_is_help=True)
images.command("add-image")(
    add_command(ResourceKind.IMAGE, q.IMAGE, "Build an image from a directory with a Dockerfile.")
)
images.command("list-images")(list_command(ResourceKind.IMAGE, "List images and their state."))
images.command("delete-image")(delete_command(ResourceKind.IMAGE, "Delete an unused image."))


def _replace(*, host: str | None, wait: bool, yes: bool, **given: Any) -> None:
    with connect(host) as client:

        def refs(which: str) -> list[str]:
            return [i["name"] for i in client.list_resources(which)]

        answers = walk(q.REPLACE_IMAGE, given, yes=yes, refs=refs)
        name = answers["name"]
        changes = {"local_docker_image": answers["local_docker_image"]}
        pushed = pushed_here(ResourceKind.IMAGE, {"name": name, **changes}, host, client)
        changes.update({k: v for k, v in pushed.items() if k == "uri"})
        client.call("PATCH", resource_path(ResourceKind.IMAGE, name), changes)
        if wait:
            settle(client, ResourceKind.IMAGE, name)


_yes = _param("yes", typer.Option(False, "--yes", "-y", help="take the defaults"), bool)
images.command("replace-with-local-image")(
    _command(_replace, [*map(_option, q.REPLACE_IMAGE), _yes, WAIT, HOST],
             "Use a locally built image (repo:tag) for an image.")
)  # fmt: skip
