"""Damaged files get one line that says which file and what to do, never a traceback
(issue 17, finding 6): saved credentials, the pointer to the host in use, a host's
settings, the daemon's state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyper import config, local_host
from tests.conftest import LocalHost

pytestmark = pytest.mark.e2e

GARBAGE = {
    "binary": b"\xff\xfe\x00garbage\x9c",
    "not-json": b'{"name": "local", ',
    "a-list": b"[1, 2]",
    "wrong-types": b'{"name": "local", "provider": "local", "url": 7, "api_key": "k"}',
    "bad-port": b'{"name": "local", "provider": "local", "url": "", "api_key": "k", "port": "x"}',
    "empty": b"",
}


def one_line(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "Error(" not in err, err


@pytest.mark.parametrize("content", list(GARBAGE.values()), ids=list(GARBAGE))
def test_damaged_credentials(local: LocalHost, content: bytes) -> None:
    path = config.host_file("local")
    saved = path.read_bytes()
    path.write_bytes(content)
    try:
        for argv in (
            ("qstat",),
            ("hyper", "hosts", "host-status"),
            ("hyper", "hosts", "stop-host"),
        ):
            result = local.sh(*argv)
            assert result.code == 2, (argv, result)
            one_line(result.err)
            assert str(path) in result.err and "import the host again" in result.err
    finally:
        path.write_bytes(saved)


def test_credentials_that_are_a_folder(local: LocalHost) -> None:
    path = config.host_file("local")
    saved = path.read_bytes()
    path.unlink()
    path.mkdir()
    try:
        result = local.sh("qstat")
    finally:
        path.rmdir()
        path.write_bytes(saved)
    assert result.code == 2 and str(path) in result.err
    one_line(result.err)
    assert "Total: 0 " in local.ok("qstat")


@pytest.mark.parametrize("content", [b"\xff\xfe\x00", b"../../etc/passwd\n", b"a b c\n"])
def test_a_damaged_pointer_to_the_host_in_use(local: LocalHost, content: bytes) -> None:
    path = config.config_root() / "current"
    path.write_bytes(content)
    result = local.sh("qstat")
    assert result.code == 2
    one_line(result.err)
    assert str(path) in result.err and "select-host" in result.err
    assert "local" in local.ok("hyper", "hosts", "list-hosts")  # still lists
    local.ok("hyper", "hosts", "select-host", "local")
    assert "Total: 0 " in local.ok("qstat")


def test_a_pointer_that_is_a_folder(local: LocalHost) -> None:
    path = config.config_root() / "current"
    path.unlink()
    path.mkdir()
    result = local.sh("qstat")
    assert result.code == 2 and "select-host" in result.err
    one_line(result.err)
    local.ok("hyper", "hosts", "select-host", "local")
    assert path.is_file() and "Total: 0 " in local.ok("qstat")


@pytest.mark.parametrize(
    "content",
    [b"\xff\x00", b"{", b"[]", b'{"api_key": 5}', b'{"api_key": "k", "lease_seconds": "x"}'],
    ids=["binary", "cut", "a-list", "key-not-text", "wrong-type"],
)
def test_damaged_settings_at_start(local: LocalHost, content: bytes) -> None:
    local.ok("hyper", "hosts", "stop-host")
    path = local.data_dir / "host.json"
    saved = path.read_bytes()
    path.write_bytes(content)
    result = local.sh("qstat")
    assert result.code == 1, result
    one_line(result.err)
    assert str(path) in result.err and "damaged" in result.err
    assert "unreachable" not in result.err
    path.write_bytes(saved)
    assert "Total: 0 " in local.ok("qstat")


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'{"pid": "x"}'])
def test_a_damaged_state_file_while_the_daemon_runs(local: LocalHost, content: bytes) -> None:
    pid = local.daemon_pid()
    (local.data_dir / "daemon.json").write_bytes(content)
    result = local.sh("hyper", "hosts", "stop-host")
    assert result.code == 0 and "stopped" in result.err and "not running" not in result.err
    assert not local_host.status(config.load_host("local")).running
    local.wait_for(lambda: _gone(pid), 30, "the daemon to exit")


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True
