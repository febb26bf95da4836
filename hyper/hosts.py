"""Hosts as a user sees them: create, list, select, update, delete, import, connect.

The ``hyper hosts`` commands and the shell tools both stand on this module; what
only some paths need (starting a daemon, making keys) is imported where used,
to keep a qsub quick.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hyper import config
from hyper.client import HostClient
from hyper.config import DEFAULT_LOCAL_HOST, HostConfig
from hyper.errors import UsageError
from hyper.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and pathlib cost a qsub's start
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

PROVIDERS = ("local", "aws")  # the providers this version can create hosts with
SUBNET_ID = r"subnet-[0-9a-f]{8,17}"  # compiled where used: not on a command's start


class HostRequest(NamedTuple):
    """What creating a host needs: the walkthrough's answers or the flags."""

    name: str = DEFAULT_LOCAL_HOST
    provider: str = "local"
    bind: str = ""  # local: a TCP address for other machines (TLS); "": the Unix socket only
    port: int = 0
    region: str | None = None  # aws: where the control plane goes
    account: str | None = None  # aws: checked against the credentials' account
    vpc: str | None = None  # aws: a CIDR or vpc-id for the main region
    subnets: str | None = None  # aws, with a vpc-id: its subnets for workers (a,b)
    enable_dashboard: bool = False  # aws: a CloudWatch dashboard
    code_bundle: Path | None = None  # aws: a Lambda bundle built before (default: build one)
    allowed_policies: str | None = None  # aws: IAM policies clusters and definitions may use
    allowed_vpcs: str | None = None  # aws: existing VPCs (vpc-a,vpc-b) regions may put workers in
    # aws: privileged,host-volumes,devices,log-groups,root-jobs
    allowed_container_options: str | None = None
    key_readers: str | None = None  # aws: IAM users and roles (ARNs) who may read the keys too


Log = Callable[[str], None]


def create_host(
    request: HostRequest, *, select: bool = True, start: bool = True, log: Log = print
) -> HostConfig:
    name = config.validate_new_host_name(request.name)
    if request.provider not in PROVIDERS:
        raise UsageError(
            f"provider {request.provider!r} is not available; use {', '.join(PROVIDERS)}"
        )
    if name in config.list_host_names():
        raise UsageError(f"a host named {name!r} already exists")
    if request.provider == "aws":
        host = _deploy_aws_host(request._replace(name=name), log)
    else:
        host = _new_local_host(name, request)
    config.save_host(host)
    if select:
        config.select_host(name)
    if start and host.provider == "local":
        from hyper import local_host

        local_host.start(host)
    return config.load_host(name)


def _new_local_host(name: str, request: HostRequest) -> HostConfig:
    """A local host's data folder, settings and key; its daemon is not started yet."""
    check_address(request.bind, request.port)
    bind = "" if request.bind in NO_TCP else request.bind
    from hyper.host_settings import HostSettings

    data_dir = config.data_root() / "hosts" / name
    if data_dir.exists() and any(data_dir.iterdir()):
        raise UsageError(f"{data_dir} already holds data; move it away or pick another name")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    import secrets

    key = secrets.token_urlsafe(32)
    HostSettings(data_dir=data_dir, api_key=key, name=name).save()
    return HostConfig(
        name=name,
        provider="local",
        url="",
        api_key=key,
        data_dir=str(data_dir),
        bind=bind,
        port=request.port,
    )


def _aws() -> Any:
    """The AWS provider's host module, or one line saying what to install."""
    try:
        from hyper.providers.aws import host as aws_host
    except ImportError as error:
        raise UsageError(
            f"the aws provider needs boto3 ({error});"
            " install it with: pip install 'hyper-scheduler[aws]'"
        ) from None
    return aws_host


def aws_account(region: str) -> str:
    """The AWS account of the credentials in use (the create-host walkthrough shows it)."""
    account: str = _aws().caller_account(region)
    return account


def vpc_subnets(region: str, vpc: str) -> tuple[list[str], list[str]]:
    """The subnets of an existing VPC, described, and the ids chosen when none are given
    (the create-host walkthrough offers the first and ticks the second)."""
    from hyper.providers.aws import stacks

    return stacks.describe_subnets(vpc, region), stacks.lookup_vpc(vpc, region).subnet_ids


def _deploy_aws_host(request: HostRequest, log: Log) -> HostConfig:
    if not request.region:
        raise UsageError("an aws host needs --region (the AWS region of its control plane)")
    from hyper.models import check_vpc

    if request.vpc:
        try:
            check_vpc(request.vpc)
        except ValueError as error:
            raise UsageError(f"--vpc {error}") from None
    if request.subnets:
        if not (request.vpc or "").startswith("vpc-"):
            raise UsageError("--subnets are chosen in an existing VPC: give --vpc vpc-...")
        wrong = [s for s in request.subnets.split(",") if not re.fullmatch(SUBNET_ID, s)]
        if wrong:
            raise UsageError(f"--subnets: {wrong[0]!r} is not a subnet id (subnet-...)")
    aws = _aws()
    deployed: HostConfig = aws.deploy_host(
        aws.AwsHostRequest(
            name=request.name,
            region=request.region,
            account=request.account,
            vpc=request.vpc,
            subnets=request.subnets,
            enable_dashboard=request.enable_dashboard,
            allowed_policies=request.allowed_policies,
            allowed_vpcs=request.allowed_vpcs,
            allowed_container_options=request.allowed_container_options,
            key_readers=request.key_readers,
        ),
        log,
        code=request.code_bundle,
    )
    return deployed._replace(dashboard=request.enable_dashboard)


def is_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def exposure_warning(host: HostConfig) -> str | None:
    """What to tell whoever starts a local host that serves other machines: where they
    reach it (its certificate's fingerprint in the URL, which they pin)."""
    if host.provider != "local" or not host.bind or not host.tls_url:
        return None
    return (
        f"host {host.name!r} serves other machines over TLS at {host.tls_url}"
        " (import it there with this URL: the fingerprint after # is its certificate's)"
    )


NO_TCP = ("", "none")  # --bind values that turn the TCP door off


def check_address(bind: str, port: int) -> None:
    """A daemon address that can be listened on: an IP address (or localhost) and a port,
    or no address at all (the Unix socket only)."""
    import ipaddress

    if not 0 <= port <= 65535:
        raise UsageError(f"invalid port {port}: use 0 (any free port) to 65535")
    if bind in NO_TCP:
        return
    if bind != "localhost":
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise UsageError(f"invalid bind address {bind!r}: use an IP address") from None


def import_aws_deployment(name: str, region: str) -> HostConfig:
    """Save the credentials of an aws host from its stack and its secret."""
    config.validate_host_name(name)
    if name in config.list_host_names():
        raise UsageError(f"a host named {name!r} already exists")
    host: HostConfig = _aws().import_host(name, region)
    config.save_host(host)
    return host


def import_deployment(name: str, url: str, api_key: str, provider: str = "remote") -> HostConfig:
    config.validate_host_name(name)
    if name in config.list_host_names():
        raise UsageError(f"a host named {name!r} already exists")
    if not api_key.strip():
        raise UsageError("the API key is empty")
    host = HostConfig(name=name, provider=provider, url=checked_url(url), api_key=api_key.strip())
    config.save_host(host)
    return host


def checked_url(url: str) -> str:
    if url.startswith("unix:/"):
        return url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"invalid URL {url!r}: it must start with https://, http:// or unix:/")
    from hyper.transport import PIN_PREFIX

    base, _, pin = url.partition("#")
    if pin and not (
        pin.startswith(PIN_PREFIX) and re.fullmatch(r"[0-9a-fA-F]{64}", pin[len(PIN_PREFIX) :])
    ):
        raise UsageError(f"invalid URL {url!r}: after # comes {PIN_PREFIX} and 64 hex digits")
    return base.rstrip("/") + (f"#{pin.lower()}" if pin else "")


def update_host(
    name: str,
    *,
    bind: str | None = None,
    port: int | None = None,
    url: str | None = None,
    data_dir: Path | None = None,
    code_bundle: Path | None = None,
    allowed_vpcs: str | None = None,
    key_readers: str | None = None,
    log: Log = print,
) -> HostConfig:
    """Change a host's saved settings; a local host's daemon restarts on them (and on the
    installed code); an aws host's control plane is deployed again with this code."""
    host = config.load_host(name)
    if host.provider == "local":
        if url is not None:
            raise UsageError("--url is for imported hosts; a local host's URL follows its port")
        for flag, value in (("--allowed-vpcs", allowed_vpcs), ("--key-readers", key_readers)):
            if value is not None:
                raise UsageError(f"{flag} is for aws hosts")
        new_bind = host.bind if bind is None else ("" if bind in NO_TCP else bind)
        changed = host._replace(bind=new_bind, port=host.port if port is None else port)
        if not new_bind:
            changed = changed._replace(tls_url=None)
        check_address(changed.bind, changed.port)
        from hyper import local_host

        if data_dir is not None:
            _check_move(host, data_dir.resolve())
        local_host.stop(host)
        if data_dir is not None:
            changed = _move_data(changed, data_dir.resolve())
        config.save_host(changed)
        local_host.start(changed)
    else:
        if bind is not None or port is not None or data_dir is not None:
            raise UsageError("--bind, --port and --data-dir are for local hosts")
        for flag, value in (("--allowed-vpcs", allowed_vpcs), ("--key-readers", key_readers)):
            if value is not None and (host.provider != "aws" or url is not None):
                raise UsageError(f"{flag} is for aws hosts")
        if url is not None:
            config.save_host(host._replace(url=checked_url(url)))
        elif host.provider == "aws":  # the control plane again, on the installed code
            request = HostRequest(
                name=name,
                provider="aws",
                region=host.region,
                account=host.account,
                vpc=host.vpc,
                subnets=host.subnets,
                enable_dashboard=host.dashboard,
                code_bundle=code_bundle,
                allowed_vpcs=allowed_vpcs,
                key_readers=key_readers,
            )
            config.save_host(_deploy_aws_host(request, log))
    return config.load_host(name)


def _check_move(host: HostConfig, new: Path) -> None:
    """A data folder moves to a new place, or is found where it was moved by hand."""
    from pathlib import Path

    old = Path(host.data_dir or "")
    moved_by_hand = not old.exists() and (new / "hyper.db").is_file()
    if new != old and not moved_by_hand and not (old.is_dir() and not new.exists()):
        problem = f"{new} exists already" if new.exists() else f"{old} is missing"
        raise UsageError(f"cannot move host {host.name!r}'s data to {new}: {problem}")


def _move_data(host: HostConfig, new: Path) -> HostConfig:
    from pathlib import Path

    old = Path(host.data_dir or "")
    if old.is_dir() and not new.exists():
        import shutil

        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(old, new)
    return host._replace(data_dir=str(new))


def delete_host(
    name: str, *, keep_data: bool = False, backup: bool = True, log: Log = print
) -> None:
    host = config.load_host(name)
    if host.provider == "aws":
        _aws().delete_host(host, log, backup=backup)
    if host.provider == "local" and host.data_dir:
        import shutil
        from pathlib import Path

        from hyper import local_host

        local_host.stop(host)
        if not keep_data:
            shutil.rmtree(Path(host.data_dir), ignore_errors=True)
    config.delete_host_file(name)


def host_status(host: HostConfig) -> dict[str, Any]:
    """Where a host is and whether it answers: `health` when it does, `error` when not;
    a local host's daemon state too."""
    from hyper.errors import HyperError

    info: dict[str, Any] = {"name": host.name, "provider": host.provider, "url": host.url}
    if host.provider == "local" and host.data_dir:
        from hyper import local_host

        state = local_host.status(host)
        info.update(running=state.running, pid=state.pid, data_dir=host.data_dir)
    if host.url and info.get("running", True):
        try:
            with HostClient(host.url, host.api_key, host_name=host.name, retries=0, timeout=5) as c:
                info["health"] = c.call("GET", "/health")
        except HyperError as error:
            info["error"] = str(error)
    return info


def default_host_name(explicit: str | None = None) -> str:
    name = config.resolve_host_name(explicit)
    if name:
        return name
    known = config.list_host_names()
    if known:
        raise UsageError(
            f"no host selected; run 'hyper hosts select-host NAME' (saved: {', '.join(known)})"
        )
    raise UsageError("no host yet; run 'hyper hosts create-host'")


def first_use_note(created: HostConfig) -> str:
    """What a command says when its call made the first host (see `connect`)."""
    return f"no host was configured; created the local host {created.name!r} and selected it"


def connect(
    explicit: str | None = None,
    *,
    on_first_use: Callable[[HostConfig], None] | None = None,
    timeout: float = 30.0,
) -> HostClient:
    """A client for the host in use. With no host saved at all, the default local host
    is created first (so a new user's first qsub just works) and `on_first_use` is told."""
    name = config.resolve_host_name(explicit)
    if name is None and not config.list_host_names():
        with config.lock("first-use"):  # several first commands at once make one host
            if not config.list_host_names():
                created = create_host(HostRequest(), start=False)
                if on_first_use is not None:
                    on_first_use(created)
    host = config.load_host(default_host_name(explicit))

    def reconnect() -> str | None:
        from hyper import local_host  # only when the host does not answer

        return local_host.ensure_running(host)

    url = host.url
    if not url:
        url = reconnect() or ""
        if not url:
            raise UsageError(f"host {host.name!r} has no URL; import it again with its URL")
    return HostClient(url, host.api_key, host_name=host.name, timeout=timeout, reconnect=reconnect)
