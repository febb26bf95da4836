"""Where hyper keeps things, and the saved credentials of each host.

Layout (``HYPER_HOME`` replaces both roots when set, for tests and for
several independent set-ups on one machine):

    <config>/hosts/<name>.json   one file per host, mode 0600 (holds the API key)
    <config>/current             the name of the host in use
    <data>/hosts/<name>/         a local host's database, logs and worker directories
"""

from __future__ import annotations

import contextlib
import json
import os
import re

from hyper.errors import NotFound, UsageError
from hyper.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOST_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# what a new host's name may not hold: AWS names are built as `hyper-NAME-...` with '.'
# made '-', and another host's grants reach `hyper-OTHER--*`; so no two of '-' and '.' in a
# row and none at the end (`prod--x`, `prod-` and `prod.` would fall under host `prod`'s)
SHARED_PREFIX = re.compile(r"[-.]{2}|[-.]$")
DEFAULT_LOCAL_HOST = "local"


def config_folder() -> str:
    """config_root() as text: the shell tools read a host's credentials without
    pathlib (its import costs a command's start a few milliseconds)."""
    home = os.environ.get("HYPER_HOME")
    if home:
        return os.path.join(os.path.expanduser(home), "config")
    import platformdirs  # only when no HYPER_HOME: keeps the shell tools quick

    return str(platformdirs.user_config_dir("hyper"))


def config_root() -> Path:
    from pathlib import Path

    return Path(config_folder())


def data_root() -> Path:
    from pathlib import Path

    home = os.environ.get("HYPER_HOME")
    if home:
        return Path(home).expanduser() / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir("hyper"))


class HostConfig(NamedTuple):
    """The saved credentials of one host (change one with `_replace`, then `save_host`)."""

    name: str
    provider: str
    url: str
    api_key: str
    data_dir: str | None = None  # local hosts: where the daemon keeps its state
    bind: str = ""  # local hosts: a TCP address to serve other machines on ("": none)
    port: int = 0  # local hosts with a bind address: the port tried first at start
    region: str | None = None  # aws hosts: where the control plane runs
    account: str | None = None  # aws hosts: the AWS account
    vpc: str | None = None  # aws hosts: the CIDR or vpc-id the main region uses
    subnets: str | None = None  # aws hosts with a vpc-id: the subnets workers use (a,b)
    dashboard: bool = False  # aws hosts: with a CloudWatch dashboard
    tls_url: str | None = None  # local hosts with a bind address: the URL other machines
    # use, with the fingerprint of the host's certificate (https://addr:port#sha256=...)

    def __repr__(self) -> str:  # never shows the key
        return f"HostConfig(name={self.name!r}, provider={self.provider!r}, url={self.url!r})"

    def public(self, *, show_key: bool = False) -> dict[str, object]:
        data = self._asdict()
        if not show_key:
            data["api_key"] = "********"
        return data


def validate_host_name(name: str) -> str:
    if not HOST_NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"invalid host name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)"
        )
    return name


def validate_new_host_name(name: str) -> str:
    """A name for a host being created: `validate_host_name`'s rule, and none of whose
    cloud resource names another host's may cover (`SHARED_PREFIX`)."""
    validate_host_name(name)
    if SHARED_PREFIX.search(name):
        raise UsageError(
            f"invalid host name {name!r}: no '--' (nor '.' next to '-' or '.') and no '-' or '.'"
            " at the end, so that no name of another host starts like this host's"
        )
    if name.lower().startswith("hyper-"):  # host X tags its Batch side `hyper-X`
        raise UsageError(
            f"invalid host name {name!r}: it may not start with 'hyper-', so that its tags"
            " are never another host's"
        )
    return name


def _hosts_dir() -> Path:
    return config_root() / "hosts"


def host_file(name: str) -> Path:
    return _hosts_dir() / f"{validate_host_name(name)}.json"


def _host_file_name(name: str) -> str:
    """host_file(name) as text (see config_folder)."""
    return os.path.join(config_folder(), "hosts", f"{validate_host_name(name)}.json")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically (no window where it is 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def lock(name: str) -> Iterator[None]:
    """An exclusive lock between hyper processes of this user, held for the block."""
    import fcntl

    path = config_root() / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def save_host(host: HostConfig) -> None:
    write_private(host_file(host.name), json.dumps(host._asdict(), indent=2) + "\n")


def load_host(name: str) -> HostConfig:
    path = _host_file_name(name)
    try:
        with open(path) as file:
            data = json.loads(file.read())
    except FileNotFoundError:
        known = ", ".join(list_host_names()) or "none"
        raise NotFound(f"no host named {name!r} (saved hosts: {known})") from None
    except (OSError, ValueError) as exc:
        data = exc
    if isinstance(data, dict) and _well_typed(data):
        return HostConfig(**{k: v for k, v in data.items() if k in HostConfig._fields})
    raise UsageError(
        f"the credentials of host {name!r} at {host_file(name)} are damaged; fix the file"
        " (JSON), or delete it and import the host again ('hyper hosts import-deployment')"
    )


def _well_typed(data: dict[str, object]) -> bool:
    """Whether saved credentials hold what a HostConfig needs, each of its type."""
    if not all(isinstance(data.get(k), str) and data.get(k) for k in ("name", "provider")):
        return False
    if not isinstance(data.get("url", ""), str) or not isinstance(data.get("api_key"), str):
        return False
    port = data.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        return False
    for key in ("data_dir", "bind", "tls_url", "region", "account", "vpc", "subnets"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            return False
    return True


def list_host_names() -> list[str]:
    folder = _hosts_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if HOST_NAME_PATTERN.fullmatch(p.stem))


def delete_host_file(name: str) -> None:
    host_file(name).unlink(missing_ok=True)
    if current_host_name(strict=False) == name:
        (config_root() / "current").unlink(missing_ok=True)


def current_host_name(*, strict: bool = True) -> str | None:
    """The host in use, or None. A damaged pointer is one UsageError saying how to mend
    it (or None when not `strict`)."""
    try:
        with open(os.path.join(config_folder(), "current"), "rb") as file:
            name = file.read().decode().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        name = "\0"
    if not name:
        return None
    if HOST_NAME_PATTERN.fullmatch(name):
        return name
    if not strict:
        return None
    raise UsageError(
        f"{config_root() / 'current'} (which host is in use) is damaged; choose one with"
        " 'hyper hosts select-host NAME'"
    )


def select_host(name: str) -> None:
    load_host(name)  # refuses unknown names
    path = config_root() / "current"
    if path.is_dir():  # a damaged pointer is replaced
        path.rmdir()
    write_private(path, name + "\n")


def resolve_host_name(explicit: str | None = None) -> str | None:
    """The host a command talks to: --host, then HYPER_HOST, then the host in use."""
    return explicit or os.environ.get("HYPER_HOST") or current_host_name()
