"""A launched worker's key and token stay out of what /proc shows of it: a job (the same
user, in the same container, where the worker is PID 1) could otherwise read them from
``/proc/PID/environ``, which keeps a process's initial environment whatever
``os.environ.pop`` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")

KEY, TOKEN = "workerkey0123456789abcdef", "launchtoken0123456789abcdef"


def _environment(**more: str) -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith("HYPER_")}
    return {**found, "HYPER_API_KEY": KEY, "HYPER_WORKER_TOKEN": TOKEN, **more}


def _shown(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _started_again(pid: int, timeout: float = 60) -> bytes:
    """/proc's environment of `pid` once it has exec'd again (the pipe's fd marks it)."""
    deadline = time.monotonic() + timeout
    while b"HYPER_WORKER_SECRETS_FD=" not in (shown := _shown(pid)):
        assert time.monotonic() < deadline, "the worker did not start again"
        time.sleep(0.05)
    return shown


def test_the_re_exec_passes_the_secrets_through_a_pipe_and_not_the_environment() -> None:
    child = (
        "import json, sys\n"
        "from hyper.worker.__main__ import take_secrets\n"
        "print(json.dumps(take_secrets()), flush=True)\n"
        "sys.stdin.read()\n"
    )
    start = (
        "import sys\n"
        "from hyper.worker.__main__ import hide_secrets\n"
        f"hide_secrets([sys.executable, '-c', {child!r}])\n"
        "print('not re-executed', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", start], env=_environment(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdin is not None
        line = process.stdout.readline()  # the re-executed process has read them
        assert json.loads(line) == {"HYPER_API_KEY": KEY, "HYPER_WORKER_TOKEN": TOKEN}
        shown = _shown(process.pid)  # the same pid: exec keeps it
        assert KEY.encode() not in shown and TOKEN.encode() not in shown
        assert b"HYPER_WORKER_SECRETS_FD=" in shown
        fds = os.listdir(f"/proc/{process.pid}/fd")
        assert sorted(fds) == ["0", "1", "2"], fds  # the pipe is closed once read
        process.stdin.close()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_started_worker_shows_neither_its_key_nor_its_token(tmp_path: Path) -> None:
    """`python -m hyper.worker` as start.sh runs it, against a host that does not answer
    (it keeps trying): once it has started again, /proc shows neither value."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hyper.worker", "--url", "http://127.0.0.1:9/v1",
         "--worker-id", "w-1", "--queue", "q", "--definition", "d",
         "--workdir", str(tmp_path), "--patience-seconds", "120"],
        env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        shown = _started_again(process.pid)
        assert KEY.encode() not in shown and TOKEN.encode() not in shown
    finally:
        process.kill()
        process.wait()


def test_a_worker_without_a_token_starts_as_it_is() -> None:
    """A local host's worker (no token) is not started again: nothing changes there."""
    start = (
        "import os, sys\n"
        "from hyper.worker.__main__ import hide_secrets\n"
        "hide_secrets([sys.executable, '-c', 'print(1)'])\n"
        "print('as it is', flush=True)\n"
    )
    environment = _environment()
    del environment["HYPER_WORKER_TOKEN"]
    done = subprocess.run([sys.executable, "-c", start], env=environment, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "as it is"
