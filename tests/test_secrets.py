"""No one let in: the key is on no command line, in no log and in no job's environment;
files holding it are private; the daemon listens on its private Unix socket only unless
told to serve other machines, and then over TLS with a certificate they pin."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import psutil
import pytest

from hyper import config
from tests.conftest import BIN, LocalHost

pytestmark = pytest.mark.e2e

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def test_the_key_is_nowhere_but_its_private_files(local: LocalHost) -> None:
    key = local.config.api_key
    local.script("env.sh", "env\nsleep 2\n")
    job_id = local.ok("qsub", *Q, "env.sh").strip()
    local.wait_for(lambda: local.job(job_id)["status"] == "Running", what="the job to run")
    daemon = psutil.Process(local.daemon_pid())
    workers = [psutil.Process(pid) for pid in local.worker_pids() if psutil.pid_exists(pid)]
    assert workers
    for process in [daemon, *workers, *workers[0].children(recursive=True)]:
        assert key not in " ".join(process.cmdline()), process
    local.wait_finished(job_id)
    assert key not in local.ok("qlog", job_id)  # the job's environment
    assert "HYPER_API_KEY" not in local.ok("qlog", job_id)
    assert key not in local.ok("qstat", "-i", job_id, "--json")
    assert key not in local.ok("hyper", "hosts", "list-hosts", "--json")
    assert key not in local.ok("hyper", "hosts", "host-status", "--json")
    for path in local.data_dir.rglob("*"):
        if path.is_file() and path.suffix != ".db" and "hyper.db" not in path.name:
            text = path.read_bytes()
            if path.name == "host.json":
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
            else:
                assert key.encode() not in text, path
    assert stat.S_IMODE(config.host_file("local").stat().st_mode) == 0o600


def test_the_daemon_listens_on_its_private_socket_only(local: LocalHost) -> None:
    daemon = psutil.Process(local.daemon_pid())
    on_network = [c.laddr for c in daemon.net_connections() if c.status == psutil.CONN_LISTEN]
    assert on_network == []
    listening = [c.laddr for c in daemon.net_connections(kind="unix") if c.laddr]
    # a path too long for a socket address is bound through its folder held open
    # (/proc/self/fd/N/hyper.sock), so the name is matched, and the file is checked
    assert [a for a in listening if os.path.basename(a) == "hyper.sock"], listening
    assert stat.S_ISSOCK((local.data_dir / "hyper.sock").stat().st_mode)


def test_a_host_beyond_loopback_serves_tls_with_a_pinned_certificate(tmp_path: Path) -> None:
    """In a network namespace of its own, where 10.99.0.1 is an address of this test only."""
    home = tmp_path / "home"
    script = f"""
set -e
ip link set lo up
ip addr add 10.99.0.1/32 dev lo
{BIN}/hyper hosts create-host --name wide --bind 10.99.0.1 --yes
{BIN}/qstat > /dev/null
{BIN}/hyper hosts stop-host
"""
    done = subprocess.run(
        ["unshare", "--net", "bash", "-c", script],
        env={**os.environ, "HYPER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    saved = json.loads((home / "config" / "hosts" / "wide.json").read_text())
    assert saved["bind"] == "10.99.0.1"
    assert saved["tls_url"].startswith("https://10.99.0.1:") and "#sha256=" in saved["tls_url"]
    said = f"serves other machines over TLS at {saved['tls_url']}"
    assert sum(said in line for line in done.stderr.splitlines()) == 1, done.stderr
    log = (home / "data" / "hosts" / "wide" / "host.log").read_text()
    assert saved["tls_url"] in log
    assert saved["url"].startswith("unix:")  # the owner's own commands use the socket
