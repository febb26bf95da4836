"""A job's cgroup: its first process steps into it itself, before it runs the job; the
worker never does (so nothing another job starts meanwhile lands in it). Real processes;
the cgroup a real one where this machine lets the worker write cgroup v2, else skipped
(the mechanism is tested on a plain folder too)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from hyper.worker.agent import WorkerAgent, WorkerOptions
from hyper.worker.reaper import ENTER_BY_BASH_ENV, JobCgroup, cgroup_parent, own_cgroup
from tests.helpers.stub_host import StubHost, job


def test_the_first_process_writes_its_own_pid_then_runs_the_job(tmp_path: Path) -> None:
    """On a folder standing for a cgroup: what lands in cgroup.procs is the job's own pid
    (the shell's, which the job then is), never the caller's."""
    folder = tmp_path / "hyper-w.1.1"
    folder.mkdir()
    (folder / "cgroup.procs").write_text("")
    cgroup = JobCgroup(folder, tmp_path)
    process = subprocess.Popen(
        cgroup.wrap(["/bin/sh", "-c", "echo $$ ran"], {}, None), stdout=subprocess.PIPE
    )
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert out.decode().split() == [str(process.pid), "ran"]  # the same process, exec'd
    assert (folder / "cgroup.procs").read_text().split() == [str(process.pid)]
    assert str(os.getpid()) not in (folder / "cgroup.procs").read_text()


def test_a_job_that_cannot_enter_its_cgroup_does_not_run(tmp_path: Path) -> None:
    cgroup = JobCgroup(tmp_path / "gone", tmp_path)  # no such folder
    ran = tmp_path / "ran"
    done = subprocess.run(
        cgroup.wrap(["/bin/sh", "-c", f"touch {ran}"], {}, None), capture_output=True, timeout=30
    )
    assert done.returncode == 126
    assert b"hyper: the job could not enter its cgroup" in done.stderr
    assert not ran.exists()


def _bash_job(tmp_path: Path, folder: Path, env: dict[str, str]) -> tuple[list[str], Path]:
    """A script bash runs, wrapped for the cgroup at `folder` with an enter file."""
    enter = tmp_path / "enter-cgroup.sh"
    enter.write_text(ENTER_BY_BASH_ENV)
    script = tmp_path / "job.sh"
    script.write_text(f"touch {tmp_path / 'ran'}\necho $$\nenv\n")
    return JobCgroup(folder, tmp_path).wrap(["/bin/bash", str(script)], env, enter), enter


def test_a_script_bash_runs_enters_its_cgroup_with_no_shell_before_it(tmp_path: Path) -> None:
    """bash itself (the job's first and only process) writes its pid before the script
    runs, and the script sees neither the enter file nor the cgroup's path."""
    folder = tmp_path / "hyper-w.1.1"
    folder.mkdir()
    (folder / "cgroup.procs").write_text("")
    env = {"PATH": os.environ["PATH"]}
    command, _ = _bash_job(tmp_path, folder, env)
    assert command[0] == "/bin/bash"  # no shell of hyper's before the job's
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = out.decode().splitlines()
    assert lines[0] == str(process.pid)
    assert (folder / "cgroup.procs").read_text().split() == [str(process.pid)]
    assert not [line for line in lines if line.startswith(("BASH_ENV=", "HYPER_CGROUP_PROCS="))]


def test_a_script_bash_runs_that_cannot_enter_its_cgroup_does_not_run(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    command, _ = _bash_job(tmp_path, tmp_path / "gone", env)
    done = subprocess.run(command, env=env, capture_output=True, timeout=30)
    assert done.returncode == 126
    assert b"hyper: the job could not enter its cgroup" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_a_job_with_a_bash_env_of_its_own_enters_through_a_shell(tmp_path: Path) -> None:
    """The job's own BASH_ENV is left as it is: hyper's shell enters the cgroup first."""
    env = {"PATH": os.environ["PATH"], "BASH_ENV": "/etc/its-own"}
    command, _ = _bash_job(tmp_path, tmp_path / "hyper-w.1.1", env)
    assert command[:2] == ["/bin/sh", "-c"]
    assert env["BASH_ENV"] == "/etc/its-own" and "HYPER_CGROUP_PROCS" not in env


def _writable_cgroups() -> bool:
    parent = cgroup_parent()
    return parent is not None and os.access(parent / "cgroup.procs", os.W_OK)


@pytest.mark.e2e
@pytest.mark.skipif(not _writable_cgroups(), reason="no writable cgroup v2 here")
def test_jobs_run_in_their_cgroups_and_the_worker_stays_in_its_own(tmp_path: Path) -> None:
    home = own_cgroup()
    seen: set[str | None] = set()
    done = threading.Event()

    def watch() -> None:  # the worker's own cgroup, as often as it can be read
        while not done.is_set():
            seen.add(own_cgroup())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker = f"cg{os.getpid()}"
    agent = WorkerAgent(StubHost([]), WorkerOptions(worker, "q", "d", tmp_path / "w"))  # type: ignore[arg-type]
    try:
        # bash's scripts enter by BASH_ENV; one with a shebang of its own, through a shell
        scripts = ["cat /proc/self/cgroup"] * 5 + ["#!/bin/sh\ncat /proc/self/cgroup\n"]
        reports = [agent.run_job(job(n, script)) for n, script in enumerate(scripts, 1)]
    finally:
        done.set()
        watcher.join()
    assert seen == {home}  # never in a job's cgroup, not even while starting one
    for n, report in enumerate(reports, 1):
        assert report is not None and report["exit_code"] == 0, report
        text = "".join(piece["text"] for piece in report.get("output", []))
        assert f"hyper-{worker}.{n}.1" in text, text
        parent = cgroup_parent()
        assert parent is not None and not (parent / f"hyper-{worker}.{n}.1").exists()
