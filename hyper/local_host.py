"""Starting, stopping and checking a local host's daemon, from any command.

Light on purpose: the shell tools call ``ensure_running`` when the daemon does
not answer, so it imports no web framework.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from hyper.config import HostConfig, save_host
from hyper.errors import HostUnreachable, StoreDamaged, UsageError

STATE_FILE = "daemon.json"
ERROR_FILE = "daemon.error"  # why the daemon refused to start: one line
LOCK_FILE = "daemon.lock"
START_LOCK_FILE = "start.lock"
LOG_FILE = "host.log"


class DaemonState(NamedTuple):
    running: bool
    pid: int | None
    url: str | None
    tls_url: str | None = None  # for other machines, when it listens on TCP


def _data_dir(host: HostConfig) -> Path:
    if not host.data_dir:
        raise UsageError(f"host {host.name!r} has no data directory on this machine")
    return Path(host.data_dir)


def _lock_held(path: Path) -> bool:
    """Whether a daemon holds its lock: true even if its pid was reused, false once it died."""
    try:
        with open(path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def _lock_holder(path: Path) -> int | None:
    """The process holding the flock on `path`, from /proc/locks (Linux)."""
    try:
        inode = path.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            pid = int(fields[4])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None  # a daemon of an older version: locked before it forked
            except PermissionError:
                pass
            return pid
    return None


def status(host: HostConfig) -> DaemonState:
    data_dir = _data_dir(host)
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        if not isinstance(state, dict):
            state = {}
    except (OSError, ValueError):  # missing, or half-written by a daemon that died
        state = {}
    running = _lock_held(data_dir / LOCK_FILE)
    pid, url, tls_url = state.get("pid"), state.get("url"), state.get("tls_url")
    return DaemonState(
        running,
        pid if running and isinstance(pid, int) and pid > 0 else None,
        url if isinstance(url, str) and url else None,
        tls_url if isinstance(tls_url, str) and tls_url else None,
    )


@contextlib.contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    with open(data_dir / START_LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def start(host: HostConfig, *, timeout: float = 30.0) -> str:
    """Start the daemon unless it runs; return its URL (saved with the host's credentials,
    with the pinned TLS URL other machines use when it listens on TCP)."""
    data_dir = _data_dir(host)
    if not (data_dir / "host.json").exists():
        raise UsageError(
            f"host {host.name!r}: no host data in {data_dir}; delete and create the host again"
        )
    if host.url.startswith("http://") and host.bind in ("127.0.0.1", "::1", "localhost"):
        # saved by a version that served plain HTTP on loopback by default: the Unix
        # socket replaces it (other machines never reached it anyway)
        host = host._replace(bind="", port=0)
    with _start_lock(data_dir):
        current = status(host)
        if not (current.running and current.url):
            (data_dir / STATE_FILE).unlink(missing_ok=True)
            # where it listens goes in its environment: a command line is public
            env = {
                **os.environ,
                "HYPER_DAEMON_BIND": host.bind,
                "HYPER_DAEMON_PORT": str(host.port),
            }
            with open(data_dir / LOG_FILE, "ab") as log:
                subprocess.run(
                    [sys.executable, "-m", "hyper.host.daemon", "--detach", "--data-dir",
                     str(data_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    timeout=timeout,
                    check=False,
                    env=env,
                )  # fmt: skip
            current = _await_daemon(host, timeout)
    assert current.url is not None
    tls_url = current.tls_url
    port = int(tls_url.split("#")[0].rsplit(":", 1)[1]) if tls_url else host.port
    saved = host._replace(url=current.url, tls_url=tls_url, port=port)
    if saved != host:
        save_host(saved)
    return current.url


def _await_daemon(host: HostConfig, timeout: float) -> DaemonState:
    """Wait for the detached daemon to listen. It holds its lock before detaching, so a
    lock that is not held means it died."""
    deadline = time.monotonic() + timeout
    data_dir = _data_dir(host)
    while time.monotonic() < deadline:
        current = status(host)
        if not current.running:
            break
        if current.url and current.pid:
            return current
        time.sleep(0.02)
    refusal = _refusal(data_dir)
    if refusal:
        raise StoreDamaged(f"host {host.name!r} did not start: {refusal}")
    raise HostUnreachable(
        f"the daemon of host {host.name!r} did not start: {_tail(data_dir / LOG_FILE)}"
    )


def _refusal(data_dir: Path) -> str:
    """The one line a daemon left when it refused to start, if it did."""
    try:
        return (data_dir / ERROR_FILE).read_text(errors="replace").strip()
    except OSError:
        return ""


def ensure_running(host: HostConfig) -> str | None:
    """For the host client: bring a local host's daemon back when it does not answer."""
    if host.provider != "local" or not host.data_dir or not Path(host.data_dir).is_dir():
        return None
    return start(host)


def stop(host: HostConfig, *, timeout: float = 10.0) -> bool:
    """Stop the daemon (its workers finish their current job and exit on their own):
    SIGTERM, then SIGKILL after `timeout`. The process signalled is the one holding the
    daemon's lock, read again each round: a daemon started meanwhile is stopped too.
    Returns whether one was running."""
    data_dir = _data_dir(host)
    lock = data_dir / LOCK_FILE
    if not _lock_held(lock):
        return False
    signalled: int | None = None
    deadline = time.monotonic() + timeout
    while _lock_held(lock):
        pid = _lock_holder(lock) or status(host).pid  # its daemon.json may be damaged
        if pid is None:  # between two holders, maybe: look again
            if time.monotonic() > deadline:
                raise UsageError(
                    f"the daemon of host {host.name!r} runs but its pid is unknown; see {data_dir}"
                )
        elif pid != signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            signalled, deadline = pid, time.monotonic() + timeout
        elif time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)
    return True
