"""No one but the owner gets in (issue 17, finding 2): a local host listens on a Unix
socket in its owner's private folder; a host serving other machines speaks TLS with a
certificate its clients pin; the key never goes to a server that has not proved who it
is, and no command line says where to squat."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from hyper import config, local_host
from tests.conftest import LocalHost
from tests.helpers.squatters import tcp_squatter, unix_squatter_as_other_user

pytestmark = pytest.mark.e2e

NOBODY_SEES = ("hyper.sock", "--url", "--port", "--bind", "HYPER_API_KEY")


def _listening_tcp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def test_a_local_host_listens_only_on_a_private_unix_socket(local: LocalHost) -> None:
    data_dir = local.data_dir
    assert local.config.url == f"unix:{data_dir / 'hyper.sock'}"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    sock = data_dir / "hyper.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    # no TCP port at all
    assert not _socket_inodes(local.daemon_pid()) & _listening_tcp_inodes()
    assert local.ok("qstat").startswith("Total: 0")


def test_no_command_line_says_where_to_connect(local: LocalHost) -> None:
    script = local.script(
        "nap.sh", "#!/bin/bash\n#HYPER -q sample-queue-1 -d sample-def-1\nsleep 30\n"
    )
    job = local.ok("qsub", str(script)).strip()
    local.wait_for(lambda: local.job(job)["status"] == "Running", 60, "the job to run")
    pids = [local.daemon_pid(), *local.worker_pids()]
    shown = subprocess.run(
        ["ps", "-o", "args=", "-p", ",".join(map(str, pids))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "hyper.worker" in shown and "hyper.host.daemon" in shown
    for secret in (*NOBODY_SEES, local.config.api_key, str(local.data_dir / "hyper.sock")):
        assert secret not in shown, secret
    local.ok("qdel", job)


def test_the_socket_folder_must_be_private(local: LocalHost) -> None:
    """A folder others could write to might hold anyone's socket: nothing is sent."""
    data_dir = local.data_dir
    os.chmod(data_dir, 0o777)
    try:
        result = local.sh("qstat")
    finally:
        os.chmod(data_dir, 0o700)
    assert result.code == 77, result
    assert result.err.count("\n") == 1 and "chmod 700" in result.err
    assert "Traceback" not in result.err
    assert local.ok("qstat").startswith("Total: 0")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to listen as another user")
def test_a_squatter_of_another_user_on_the_socket_gets_no_key(
    local: LocalHost, tmp_path: Path
) -> None:
    """The daemon is down and another user's process listens where the client connects
    (as if it could write to the folder): the client sees who listens and sends nothing."""
    host = config.load_host("local")
    local_host.stop(host)
    record = tmp_path / "squatter-got"
    record.touch()
    os.chmod(record, 0o666)
    sock = local.data_dir / "hyper.sock"
    with unix_squatter_as_other_user(sock, record):
        for argv in (("qstat",), ("qdel", "1"), ("hyper", "hosts", "purge")):
            result = local.sh(*argv)
            assert result.code == 77, (argv, result)
            assert "runs as user 65534" in result.err and "Traceback" not in result.err
    assert record.read_bytes() == b""
    # the daemon comes back on its own socket, replacing the squatter's file
    sock.unlink()
    assert local.ok("qstat").startswith("Total: 0")


@pytest.fixture
def tls_local(local: LocalHost) -> LocalHost:
    """The local host, also serving other machines on 127.0.0.1 over TLS; and `remote`, a
    second saved host that reaches it that way (as another machine would)."""
    local.ok("hyper", "hosts", "update-host", "--bind", "127.0.0.1")
    saved = config.load_host("local")
    assert saved.tls_url and saved.tls_url.startswith("https://127.0.0.1:")
    assert "#sha256=" in saved.tls_url
    local.ok(
        "hyper", "hosts", "import-deployment", "--name", "remote", "--url", saved.tls_url,
        "--api-key-file", "-", input=saved.api_key + "\n",
    )  # fmt: skip
    return local


def test_tls_door_serves_a_client_that_pins_its_certificate(tls_local: LocalHost) -> None:
    assert tls_local.ok("qstat", "--host", "remote").startswith("Total: 0")
    job = tls_local.ok("qsub", "--host", "remote", "--wait", str(_echo(tls_local))).strip()
    assert tls_local.job(job)["status"] == "Successful"
    # the owner's own commands still use the socket
    assert config.load_host("local").url.startswith("unix:")


def test_a_wrong_pin_sends_nothing(tls_local: LocalHost) -> None:
    url = config.load_host("remote").url
    wrong = url.split("#")[0] + "#sha256=" + "0" * 64
    tls_local.ok(
        "hyper", "hosts", "import-deployment", "--name", "wrongpin", "--url", wrong,
        "--api-key-file", "-", input="k\n",
    )  # fmt: skip
    result = tls_local.sh("qstat", "--host", "wrongpin")
    assert result.code == 77 and "not the host's" in result.err and "was not sent" in result.err


@pytest.mark.parametrize("squatter_tls", [False, True], ids=["plain", "own-certificate"])
def test_a_squatter_on_the_tcp_port_gets_no_key(tls_local: LocalHost, squatter_tls: bool) -> None:
    """The issue's attack: the daemon is down, someone else binds its port; the next
    command sends nothing the squatter can use, whatever it speaks."""
    remote = config.load_host("remote")
    port = int(remote.url.split("#")[0].rsplit(":", 1)[1])
    local_host.stop(config.load_host("local"))
    with tcp_squatter(port, tls=squatter_tls) as squatter:
        for argv in (("qstat", "--host", "remote"), ("qdel", "--host", "remote", "1")):
            result = tls_local.sh(*argv)
            assert result.code == 77, (argv, result)
            assert result.err.count("\n") == 1 and "API key was not sent" in result.err
    assert squatter.connections >= 2
    assert remote.api_key.encode() not in squatter.received
    assert b"x-api-key" not in squatter.received.lower()
    if squatter_tls:
        assert squatter.received == b""  # decrypted: the client said nothing after hello


def test_import_refuses_a_malformed_pin(local: LocalHost) -> None:
    result = local.sh(
        "hyper", "hosts", "import-deployment", "--name", "bad", "--url",
        "https://127.0.0.1:1#sha256=abc", "--api-key-file", "-", input="k\n",
    )  # fmt: skip
    assert result.code == 2 and "64 hex digits" in result.err


def test_the_tls_certificate_and_key_are_private(tls_local: LocalHost) -> None:
    folder = tls_local.data_dir / "tls"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("cert.pem", "key.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    state = json.loads((tls_local.data_dir / "daemon.json").read_text())
    assert state["tls_url"] == config.load_host("local").tls_url


def _echo(local: LocalHost) -> Path:
    return local.script(
        "echo.sh", "#!/bin/bash\n#HYPER -q sample-queue-1 -d sample-def-1\necho hi\n"
    )


def test_a_restarted_host_keeps_its_certificate(tls_local: LocalHost) -> None:
    before = config.load_host("local").tls_url
    local_host.stop(config.load_host("local"))
    tls_local.ok("hyper", "hosts", "start-host")
    after = config.load_host("local").tls_url
    assert before and after and before.split("#")[1] == after.split("#")[1]
    assert tls_local.ok("qstat", "--host", "remote").startswith("Total: 0")
