"""A worker that runs as root in its image (an AWS Batch child) runs its jobs as another
user (hyper.worker.identity), who cannot reach the worker: not its environment, not its
memory, not by ptrace, not its files; and its jobs still work (outputs, exit codes,
collected files, the Python API's results).

The real thing, as root: a local host hands the jobs of a queue that starts no worker of
its own to a worker started here as Batch starts one (``AWS_BATCH_JOB_ID``, a worker
key's place taken by the host's key, a launch token), with the system's Python (the job's
user cannot enter /root, where this venv's Python lives)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import hyper
from hyper.resources import DEFAULT_CLUSTER, MAIN_REGION
from hyper.worker import identity
from tests.conftest import ROOT, LocalHost
from tests.helpers.job_user import passable_folder

SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
TOKEN = "LaunchToken0fThisWorker0123456789"
QUEUE, DEFINITION = "q-image", "sample-def-1"

# what a job tries against its worker (PID given); it prints what it found, as JSON
PROBE = r"""
import ctypes, json, os, sys
worker, key, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
found = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid()}
def attempt(name, call):
    try:
        call()
        found[name] = "allowed"
    except OSError as error:
        found[name] = type(error).__name__
attempt("environ", lambda: open(f"/proc/{worker}/environ", "rb").read())
attempt("mem", lambda: open(f"/proc/{worker}/mem", "rb").read(1))
attempt("maps", lambda: open(f"/proc/{worker}/maps", "rb").read())
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
if libc.ptrace(PTRACE_ATTACH, worker, None, None) == 0:
    found["ptrace"] = "allowed"
    libc.ptrace(PTRACE_DETACH, worker, None, None)
else:
    found["ptrace"] = os.strerror(ctypes.get_errno())
workdir = os.path.dirname(os.environ["HYPER_WORKDIR"])
attempt("write_workdir", lambda: open(os.path.join(workdir, "planted"), "wb").write(b"x"))
attempt("setuid_root", lambda: os.setuid(0))
seen = []  # the key or token anywhere this user may read in /proc (but here)
for pid in set(filter(str.isdigit, os.listdir("/proc"))) - {str(os.getpid())}:
    for part in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{part}", "rb").read()
        except OSError:
            continue
        if key.encode() in data or token.encode() in data:
            seen.append(f"{pid}/{part}")
found["secrets_seen"] = seen
found["in_env"] = [k for k, v in os.environ.items() if v in (key, token)]
found["home"] = os.environ.get("HOME")
print(json.dumps(found))
"""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0 or not SYSTEM_PYTHON.exists(),
        reason="changing user takes root, on Linux, and a Python the job's user can run",
    ),
]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """The worker's folder, where the job's user may pass (pytest's are root's alone)."""
    with passable_folder("hyper-job-user-") as folder:
        yield folder


def _image_worker(local: LocalHost, workdir: Path) -> subprocess.Popen[bytes]:
    """A worker as a Batch child starts: root, in its image, with a launch token."""
    settings = json.loads((local.data_dir / "host.json").read_text())
    state = json.loads((local.data_dir / "daemon.json").read_text())
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    env = {
        **local.env,
        "HYPER_API_KEY": settings["api_key"],
        "HYPER_WORKER_TOKEN": TOKEN,
        "AWS_BATCH_JOB_ID": "0123-abcd",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{site}",
        "HOME": "/root",
    }
    command = [str(SYSTEM_PYTHON), "-m", "hyper.worker", "--url", state["url"],
               "--worker-id", "b-image-1", "--queue", QUEUE, "--definition", DEFINITION,
               "--workdir", str(workdir), "--idle-seconds", "120"]  # fmt: skip
    with (workdir / "worker.log").open("wb") as log:
        return subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                                stderr=log)  # fmt: skip


def test_a_root_worker_in_its_image_runs_jobs_as_a_user_who_cannot_reach_it(
    local: LocalHost, workdir: Path
) -> None:
    local.ok("hyper", "regions", "add-region", "--name", "pool", "--kind", "static", "--yes")
    local.ok("hyper", "queues", "add-queue", "--name", QUEUE, "--compute-environment",
             DEFAULT_CLUSTER, "--manual-region-weights", "-rw", MAIN_REGION, "0",
             "-rw", "pool", "1", "--yes")  # fmt: skip
    key = json.loads((local.data_dir / "host.json").read_text())["api_key"]
    worker = _image_worker(local, workdir)
    try:
        local.script(
            "probe.sh",
            f"cat > probe.py <<'EOF'\n{PROBE}\nEOF\n"
            f"{SYSTEM_PYTHON} probe.py {worker.pid} {key} {TOKEN}\n",
        )
        local.script("fail.sh", "echo to stderr >&2\necho to stdout\nexit 7\n")
        probing = local.ok("qsub", "-q", QUEUE, "-d", DEFINITION, "probe.sh").strip()
        failing = local.ok("qsub", "-q", QUEUE, "-d", DEFINITION, "fail.sh").strip()
        job = local.wait_finished(probing, timeout=120)
        log = local.ok("qlog", probing)
        assert job["status"] == "Successful", (job, log, (workdir / "worker.log").read_text())
        found = json.loads(log.strip().splitlines()[-1])
        assert (found["uid"], found["euid"], found["gid"]) == (identity.JOB_UID,) * 3
        for reached in ("environ", "mem", "maps", "write_workdir", "setuid_root"):
            assert found[reached] == "PermissionError", found
        assert found["ptrace"] == os.strerror(1), found  # EPERM: "Operation not permitted"
        assert found["secrets_seen"] == [] and found["in_env"] == [], found
        assert not (workdir / "planted").exists()
        ended = local.wait_finished(failing, timeout=120)
        assert (ended["status"], ended["exit_code"]) == ("Failed", 7), ended
        assert "to stdout" in local.ok("qlog", failing)
        assert "to stderr" in local.ok("qlog", "-t", "STDERR", failing)

        # the Python API: a package unpacked for the job's user, result.pickle collected
        with hyper.Executor(queue=QUEUE, definition=DEFINITION) as ex:
            assert list(ex.map(pow, [2, 3, 4], [10, 2, 0])) == [1024, 9, 1]
            assert ex.submit(os.getuid).result(timeout=120) == identity.JOB_UID
        assert [p.name for p in workdir.iterdir() if p.name.startswith("job-")] == []
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
