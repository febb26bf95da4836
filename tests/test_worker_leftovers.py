"""What a job leaves behind ends with that job, even without cgroups and while other jobs
run on its worker: a job that may run beside others starts under a keeper of its own
processes (hyper.worker.jobreaper). Real processes and a real agent; the host is a stub
(tests/helpers/stub_host)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from hyper.errors import EXIT_TIME_LIMIT
from hyper.worker import jobreaper
from hyper.worker.agent import WorkerAgent, WorkerOptions
from hyper.worker.reaper import reaper_command
from tests.conftest import wait_until
from tests.helpers.stub_host import StubHost, job


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_keeper_ends_what_its_job_left_and_ends_as_the_job_did(tmp_path: Path) -> None:
    """Left-behind processes, in the job's session or a session of their own, end when
    the job's first process does; the keeper's exit is the job's."""
    pids = tmp_path / "pids"
    script = f"sleep 1000 & echo $! >> {pids}; setsid sleep 1001 & echo $! >> {pids}; exit 3"
    done = subprocess.run(reaper_command(["/bin/sh", "-c", script]), timeout=60)
    assert done.returncode == 3
    left = [int(p) for p in pids.read_text().split()]
    assert len(left) == 2
    wait_until(lambda: not any(_alive(p) for p in left), timeout=10, what="leftovers gone")
    killed = subprocess.run(reaper_command(["/bin/sh", "-c", "kill -TERM $$"]), timeout=60)
    assert killed.returncode == -15  # as the job ended: by the same signal
    missing = subprocess.run(reaper_command([str(tmp_path / "nothing")]), capture_output=True)
    assert missing.returncode == 127
    assert b"hyper: could not start the script" in missing.stderr


def test_the_keeper_is_a_standalone_file_of_the_standard_library() -> None:
    command = reaper_command(["true"])
    assert command[:3] == [sys.executable, "-I", "-S"]
    assert command[3] == jobreaper.__file__


@pytest.mark.e2e
def test_a_jobs_leftovers_end_with_it_while_another_job_runs(tmp_path: Path) -> None:
    """Two jobs on one worker with no cgroups: A leaves a `sleep 1000 &` behind, one in
    its process group and one in a session of its own, and ends; while B still runs, both
    are gone (not kept until the worker is quiet)."""
    pidfile, release = tmp_path / "a.pids", tmp_path / "release"
    script = f"sleep 1000 & echo $! >> {pidfile}\nsetsid sleep 1001 & echo $! >> {pidfile}\n"
    first = job(1, script, time_limit=60)
    second = job(2, f"while [ ! -e {release} ]; do sleep 0.05; done\n", time_limit=60)
    host = StubHost([first, second])  # both fit on the worker (1 CPU each of 2)
    options = WorkerOptions("w1", "q", "d", tmp_path / "w", idle_seconds=1, cgroups=False)
    agent = WorkerAgent(host, options)  # type: ignore[arg-type]
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: 1 in host.reported(), timeout=60, what="A reported")
        wait_until(lambda: len(pidfile.read_text().split()) == 2, what="A's pids")
        left = [int(pid) for pid in pidfile.read_text().split()]
        wait_until(lambda: not any(_alive(p) for p in left), timeout=10, what="A's sleeps gone")
        assert 2 not in host.reported()  # B still runs
        assert any(p.tree for p in list(agent._running.values()))  # B under its keeper
    finally:
        release.touch()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert host.reported()[2][1] == 0


@pytest.mark.e2e
def test_a_job_alone_on_its_worker_starts_without_a_keeper(tmp_path: Path) -> None:
    """A job that takes the whole worker cannot have a neighbour: the worker's own sweep
    at its end is enough, and it starts as before (no keeper process)."""
    mark = tmp_path / "parent"
    whole = job(1, f"echo $PPID > {mark}\n", cpus=2, time_limit=60)
    host = StubHost([whole])
    options = WorkerOptions("w1", "q", "d", tmp_path / "w", idle_seconds=1, cgroups=False)
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    assert host.reported()[1][1] == 0
    assert int(mark.read_text()) == os.getpid()  # the worker (here, in this process) itself


@pytest.mark.e2e
def test_a_time_limit_ends_every_process_of_a_job_under_its_keeper(tmp_path: Path) -> None:
    """A job beside another, ignoring SIGTERM, with a process in a session of its own:
    at its time limit all of it ends (SIGKILL below its keeper after the grace), it is
    reported as over its time, and its neighbour runs on."""
    pids, release = tmp_path / "pids", tmp_path / "release"
    script = f"trap '' TERM\nsetsid sleep 1002 & echo $! >> {pids}\necho $$ >> {pids}\nsleep 1003\n"
    first = job(1, script, time_limit=1)
    second = job(2, f"while [ ! -e {release} ]; do sleep 0.05; done\n", time_limit=60)
    host = StubHost([first, second])
    options = WorkerOptions("w1", "q", "d", tmp_path / "w", idle_seconds=1, cgroups=False)
    agent = WorkerAgent(host, options)  # type: ignore[arg-type]
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: 1 in host.reported(), timeout=60, what="A reported")
        left = [int(pid) for pid in pids.read_text().split()]
        wait_until(lambda: not any(_alive(p) for p in left), timeout=10, what="A's processes gone")
        assert 2 not in host.reported()  # B still runs
    finally:
        release.touch()
        runner.join(timeout=60)
    assert host.reported()[1][1] == EXIT_TIME_LIMIT
    assert host.reported()[2][1] == 0
