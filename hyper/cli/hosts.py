"""``hyper hosts``: create, list, select, update, delete, import, start and stop hosts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from hyper import config, hosts, local_host
from hyper.cli.walkthrough import answer, confirm, interactive, refuse_missing
from hyper.errors import UsageError
from hyper.hosts import HostRequest

app = typer.Typer(help="Hosts: the control planes jobs are submitted to.", no_args_is_help=True)

HostOption = typer.Option(
    None, "--host", envvar="HYPER_HOST", help="the host (default: the one in use)"
)


def read_secret(source: str) -> str:
    """A key from a file, or from stdin with `-` (keys never go on command lines)."""
    try:
        return (sys.stdin.read() if source == "-" else Path(source).read_text()).strip()
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror}") from None


def _target(name: str | None, host: str | None) -> str:
    return hosts.default_host_name(name or host)


def _local_target(name: str | None, host: str | None) -> config.HostConfig:
    target = config.load_host(_target(name, host))
    if target.provider != "local":
        raise UsageError(f"host {target.name!r} is not a local host")
    return target


def ask_host_request(
    defaults: HostRequest, *, input: Any = None, output: Any = None
) -> HostRequest:
    """The create-host walkthrough: the same questions as the flags, in their order."""
    import questionary

    io = {"input": input, "output": output} if input is not None else {}
    name = answer(
        questionary.text(
            "Host name:",
            default=defaults.name,
            validate=lambda text: (
                (
                    bool(config.HOST_NAME_PATTERN.fullmatch(text))
                    and not config.SHARED_PREFIX.search(text)
                )
                or "letters, digits, '.', '_' or '-' (at most 63; no '--', no '-' at the end)"
            ),
            **io,
        )
    )
    provider = answer(
        questionary.select(
            "Provider:", choices=list(hosts.PROVIDERS), default=defaults.provider, **io
        )
    )
    if provider != "aws":
        return defaults._replace(name=name, provider=provider)
    region = answer(
        questionary.text(
            "AWS region:",
            default=defaults.region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            **io,
        )
    )
    account = hosts.aws_account(region)
    if not answer(questionary.confirm(f"Deploy to AWS account {account}?", default=True, **io)):
        raise typer.Exit(1)
    vpc = answer(
        questionary.text(
            "VPC for the main region (a CIDR such as 10.0.0.0/16, or a vpc-id):",
            default=defaults.vpc or "10.0.0.0/16",
            validate=_vpc_error,
            **io,
        )
    )
    subnets = defaults.subnets
    if vpc.startswith("vpc-") and not subnets:
        described, chosen = hosts.vpc_subnets(region, vpc)
        picked = answer(
            questionary.checkbox(
                f"Subnets of {vpc} for workers:",
                choices=[
                    questionary.Choice(text, checked=text.split()[0] in chosen)
                    for text in described
                ],
                validate=lambda ticked: bool(ticked) or "tick at least one subnet",
                **io,
            )
        )
        subnets = ",".join(text.split()[0] for text in picked)
    dashboard = answer(
        questionary.confirm("A CloudWatch dashboard?", default=defaults.enable_dashboard, **io)
    )
    return defaults._replace(
        name=name,
        provider=provider,
        region=region,
        account=account,
        vpc=vpc,
        subnets=subnets,
        enable_dashboard=dashboard,
    )


def _vpc_error(text: str) -> bool | str:
    from hyper.models import check_vpc

    try:
        check_vpc(text)
    except ValueError as error:
        return str(error)
    return True


@app.command("create-host")
def create_host(
    name: str = typer.Option(None, "--name", help="host name (default: local)"),
    provider: str = typer.Option(None, "--provider", help="local (this machine) or aws"),
    bind: str = typer.Option(
        "",
        "--bind",
        help="local: also serve other machines on this address, over TLS with a certificate"
        " they pin (default: none; the owner's commands and workers use a Unix socket)",
    ),
    port: int = typer.Option(0, "--port", help="local, with --bind: the port (0: any free)"),
    region: str = typer.Option(None, "--region", help="aws: the AWS region of the host"),
    account: str = typer.Option(
        None, "--account", help="aws: the AWS account (checked against your credentials)"
    ),
    vpc: str = typer.Option(
        None, "--vpc", help="aws: a CIDR (10.0.0.0/16) or vpc-id for the main region"
    ),
    subnets: str = typer.Option(
        None,
        "--subnets",
        help="aws, with --vpc vpc-...: its subnets for workers (a,b; default: one per zone,"
        " private first)",
    ),
    enable_dashboard: bool = typer.Option(
        False, "--enable-dashboard", help="aws: a CloudWatch dashboard"
    ),
    code_bundle: Path = typer.Option(
        None, "--code-bundle", help="aws: a Lambda bundle built before (default: build one)"
    ),
    allowed_policies: str = typer.Option(
        None,
        "--allowed-policies",
        help="aws: the IAM policies (names or ARNs, a,b) clusters and definitions may attach;"
        " default none",
    ),
    allowed_vpcs: str = typer.Option(
        None,
        "--allowed-vpcs",
        help="aws: existing VPCs (vpc-a,vpc-b) that add-region --vpc-id may put workers in;"
        " default none (the host's own --vpc is always allowed)",
    ),
    allowed_container_options: str = typer.Option(
        None,
        "--allowed-container-options",
        help="aws: what definitions may ask beyond their container (privileged,host-volumes,"
        "devices,log-groups,root-jobs); default none",
    ),
    key_readers: str = typer.Option(
        None,
        "--key-readers",
        help="aws: IAM users or roles (ARNs, a,b) who may read the host's keys besides you,"
        " their owner (to import the host, or deploy it again; not change or delete it);"
        " default none",
    ),
    select: bool = typer.Option(True, "--select/--no-select", help="use the new host from now on"),
    yes: bool = typer.Option(False, "--yes", "-y", help="take the defaults for anything not given"),
) -> None:
    """Create a host and start it (a local host runs as a daemon on this machine; an aws
    host is deployed to AWS with your credentials)."""
    request = HostRequest(
        name=name or config.DEFAULT_LOCAL_HOST,
        provider=provider or "local",
        bind=bind,
        port=port,
        region=region,
        account=account,
        vpc=vpc,
        subnets=subnets,
        enable_dashboard=enable_dashboard,
        code_bundle=code_bundle,
        allowed_policies=allowed_policies,
        allowed_vpcs=allowed_vpcs,
        allowed_container_options=allowed_container_options,
        key_readers=key_readers,
    )
    missing = [
        flag for flag, value in (("--name", name), ("--provider", provider)) if value is None
    ]
    if request.provider == "aws" and region is None:
        missing.append("--region")
    if missing and not yes:
        if interactive():
            request = ask_host_request(request)
        else:
            refuse_missing(["--name"] if name is None else [])
    host = hosts.create_host(request, select=select, log=_say)
    typer.echo(f"created host {host.name!r} ({host.provider}) at {host.url}", err=True)
    _warn_if_exposed(host)


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _warn_if_exposed(host: config.HostConfig) -> None:
    warning = hosts.exposure_warning(host)
    if warning:
        typer.echo(warning, err=True)


@app.command("list-hosts")
def list_hosts(
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    show_key: bool = typer.Option(False, "--show-key", help="include API keys"),
) -> None:
    """List saved hosts; the one in use is marked."""
    current = config.current_host_name(strict=False)
    rows = []
    for name in config.list_host_names():
        host = config.load_host(name)
        state = "-"
        if host.provider == "local" and host.data_dir and Path(host.data_dir).is_dir():
            state = "running" if local_host.status(host).running else "stopped"
        rows.append({**host.public(show_key=show_key), "in_use": name == current, "state": state})
    if as_json:
        typer.echo(json.dumps({"version": 1, "hosts": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "", "NAME", "PROVIDER", "URL", "STATE", *(["API KEY"] if show_key else []), box=None
    )
    for row in rows:
        keys = ["name", "provider", "url", "state", *(["api_key"] if show_key else [])]
        table.add_row("*" if row["in_use"] else "", *(str(row[k] or "-") for k in keys))
    Console().print(table)


@app.command("select-host")
def select_host(name: str = typer.Argument(..., help="the saved host to use from now on")) -> None:
    """Use this host from now on."""
    config.select_host(name)
    typer.echo(f"host {name!r} is now in use", err=True)


@app.command("update-host")
def update_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    bind: str = typer.Option(
        None, "--bind", help="local: serve other machines on this address (none: stop)"
    ),
    port: int = typer.Option(None, "--port", help="local, with --bind: the port"),
    url: str = typer.Option(None, "--url", help="imported hosts: the new URL"),
    data_dir: Path = typer.Option(
        None,
        "--data-dir",
        help="local: move the host's data folder here (or find it here, moved by hand)",
    ),
    code_bundle: Path = typer.Option(
        None, "--code-bundle", help="aws: a Lambda bundle built before (default: build one)"
    ),
    allowed_vpcs: str = typer.Option(
        None,
        "--allowed-vpcs",
        help='aws: the existing VPCs (vpc-a,vpc-b) regions may use from now on ("": none);'
        " default: as before",
    ),
    key_readers: str = typer.Option(
        None,
        "--key-readers",
        help="aws: IAM users or roles (ARNs, a,b) who may read the keys from now on, besides"
        ' their owner ("": none); default: as before. The owner or the root only',
    ),
) -> None:
    """Change a host's settings and restart it on the installed code."""
    updated = hosts.update_host(
        _target(name, host),
        bind=bind,
        port=port,
        url=url,
        data_dir=data_dir,
        code_bundle=code_bundle,
        allowed_vpcs=allowed_vpcs,
        key_readers=key_readers,
        log=_say,
    )
    typer.echo(f"host {updated.name!r} updated ({updated.url})", err=True)
    _warn_if_exposed(updated)


@app.command("delete-host")
def delete_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    keep_data: bool = typer.Option(False, "--keep-data", help="keep a local host's jobs and logs"),
    yes: bool = typer.Option(False, "--yes", "-y", help="delete without asking"),
    backup: bool = typer.Option(
        True, "--backup/--no-backup", help="an AWS host: back up its tables before deleting"
    ),
) -> None:
    """Stop a host and forget it; a local host's data is deleted unless --keep-data. An
    AWS host is removed from every region (its tables backed up first unless --no-backup)."""
    target = config.load_host(_target(name, host))
    if target.provider == "local" and not keep_data and not yes:
        confirm(
            f"Delete host {target.name!r} and all its jobs and logs in {target.data_dir}?",
            ["--yes (or --keep-data)"],
        )
    if target.provider == "aws" and not yes:
        kept = "backed up first" if backup else "NOT backed up (--no-backup)"
        confirm(
            f"Delete AWS host {target.name!r} and everything it made in every region (jobs, "
            f"logs, clusters, images, roles, networks); its tables are {kept}?",
            ["--yes"],
        )
    hosts.delete_host(target.name, keep_data=keep_data, backup=backup, log=_say)
    typer.echo(f"deleted host {target.name!r}", err=True)


@app.command("check-host")
def check_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    queue: str = typer.Option(None, "--queue", help="with --definition: run one job there"),
    definition: str = typer.Option(None, "--definition", help="the one job's definition"),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds the one job may take"),
    as_json: bool = typer.Option(False, "--json", help="the checks as JSON"),
) -> None:
    """An AWS host: what the account still lacks (credentials, stack and roles, the Batch
    service-linked role, quotas, images, and with --queue/--definition a one-job round
    trip). Exit 1 when something is missing."""
    target = config.load_host(_target(name, host))
    if target.provider != "aws":
        raise UsageError("check-host checks AWS hosts; for this host: hyper hosts host-status")
    from hyper.providers.aws import check

    with hosts.connect(target.name) as client:
        kinds = ("regions", "clusters", "definitions")
        resources = {kind: client.list_resources(kind) for kind in kinds}
        trip = None
        if queue and definition:
            job = {"name": "hyper-check", "queue": queue, "definition": definition,
                   "script": "echo hyper check-host\n"}  # fmt: skip
            trip = lambda: check.wait_for_job(  # noqa: E731
                lambda: int(client.submit([job])[0]),
                lambda j: str(client.get_job(j).get("status", "")),
                timeout,
            )
        found = check.check_host(target, resources, round_trip=trip)
    if as_json:
        typer.echo(json.dumps({"checks": [c.__dict__ for c in found]}, indent=2))
    else:
        mark = {True: "ok", False: "MISSING", None: "?"}
        for item in found:
            typer.echo(f"{mark[item.ok]:8} {item.what}: {item.detail}")
    if any(item.ok is False for item in found):
        raise typer.Exit(1)


@app.command("import-deployment")
def import_deployment(
    name: str = typer.Option(..., "--name", help="name to save the host under"),
    url: str = typer.Option(None, "--url", help="the host's API URL"),
    region: str = typer.Option(
        None, "--region", help="aws: the host's AWS region (its credentials are read from AWS)"
    ),
    api_key_file: str = typer.Option(
        None,
        "--api-key-file",
        help="file holding the API key, - for stdin (keeps it off the command line)",
    ),
    provider: str = typer.Option(
        "remote", "--provider", help="what runs the host: local, aws or remote"
    ),
) -> None:
    """Save the credentials of a host deployed elsewhere: an aws host by --region, any
    other by --url and its key."""
    if region is not None:
        if url is not None or api_key_file is not None:
            raise UsageError("--region reads an aws host's URL and key from AWS: drop --url")
        hosts.import_aws_deployment(name, region)
    else:
        if url is None:
            raise UsageError("say where the host is: --url URL (or --region for an aws host)")
        api_key = read_secret(api_key_file) if api_key_file is not None else None
        if api_key is None:
            if not interactive():
                refuse_missing(["--api-key-file"])
            import questionary

            api_key = answer(questionary.password("API key:"))
        hosts.import_deployment(name, url, api_key, provider)
    typer.echo(f"saved host {name!r}; select it with 'hyper hosts select-host {name}'", err=True)


@app.command("start-host")
def start_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    accept_store: bool = typer.Option(
        False,
        "--accept-store",
        help="serve a store that lost acknowledged jobs as it is (new ids stay above every"
        " id given before); restore-host brings a backup back instead",
    ),
) -> None:
    """Start a local host's daemon (commands also start it when they find it down)."""
    target = _local_target(name, host)
    if accept_store:
        from hyper import backup

        backup.accept_store(target)
    typer.echo(f"host {target.name!r} running at {local_host.start(target)}", err=True)
    _warn_if_exposed(config.load_host(target.name))


@app.command("stop-host")
def stop_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
) -> None:
    """Stop a local host's daemon; jobs and logs stay, and waiting jobs run when it is back."""
    target = _local_target(name, host)
    was_running = local_host.stop(target)
    typer.echo(f"host {target.name!r} {'stopped' if was_running else 'was not running'}", err=True)


@app.command("backup-host")
def backup_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    to: Path = typer.Option(..., "--to", help="a new or empty folder for the copy"),
) -> None:
    """Copy a local host's jobs, logs and resources while it runs (SQLite online backup)."""
    from hyper import backup

    done = backup.backup(_local_target(name, host), to)
    typer.echo(f"backed up {done.jobs} jobs ({_size(done.size)}) to {done.folder}", err=True)


@app.command("restore-host")
def restore_host(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    source: Path = typer.Option(..., "--from", help="a folder written by backup-host"),
    yes: bool = typer.Option(False, "--yes", "-y", help="replace without asking"),
) -> None:
    """Replace a local host's jobs, logs and resources with a backup, and restart it. The
    host keeps its name, key and port."""
    from hyper import backup

    target = _local_target(name, host)
    if not yes:
        confirm(
            f"Replace every job, log and resource of host {target.name!r} with {source}?",
            ["--yes"],
        )
    done = backup.restore(target, source)
    typer.echo(f"restored host {target.name!r}: {done.jobs} jobs from {source}", err=True)


@app.command("purge")
def purge(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    older_than: float = typer.Option(
        None,
        "--older-than",
        min=0,
        help="days since a job finished (default: the host's retention_days, 30)",
    ),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Delete finished jobs, their logs and files now (the host also does it hourly, after
    its retention), and give the space back to the disk."""
    with hosts.connect(_target(name, host)) as client:
        done = client.call("POST", "/purge", {"older_than_days": older_than})
    if as_json:
        typer.echo(json.dumps(done, indent=2))
        return
    kept = (
        "; the disk was too full to give their space back to it, so the store keeps it for new jobs"
        if done.get("space_kept")
        else ""
    )
    folders = done.get("worker_folders")
    workers = f" (and {folders} ended workers' folders)" if folders else ""
    typer.echo(
        f"purged {done['jobs']} jobs, {done['log_lines']} log lines and {done['files']} files"
        f" that finished more than {done['older_than_days']:g} days ago{workers}{kept}",
        err=True,
    )


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


@app.command("host-status")
def host_status(
    name: str = typer.Argument(None, help="the host (default: the one in use)"),
    host: str = HostOption,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Say whether a host answers, and where."""
    info = hosts.host_status(config.load_host(_target(name, host)))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            typer.echo(f"{key:<10}{value}")
    if "health" not in info:
        raise typer.Exit(1)
