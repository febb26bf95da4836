"""A job's cgroup: its first process steps into it itself, before it runs the job; the
worker never does (so nothing another job starts meanwhile lands in it). Real processes;
the cgroup a real one where this machine lets the worker write cgroup v2, else skipped
(the mechanism is tested on a plain folder too)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hyper.worker import runner
from hyper.worker.agent import WorkerAgent, WorkerOptions
from hyper.worker.reaper import (
    ENTER_BY_BASH_ENV,
    EXIT_NOT_ENTERED,
    OUTSIDE_ITS_CGROUP,
    JobCgroup,
    cgroup_parent,
    own_cgroup,
)
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


@pytest.mark.parametrize(
    "own",
    [
        {"BASH_ENV": "/etc/its-own"},  # left as it is
        {"POSIXLY_CORRECT": "1"},  # bash in POSIX mode reads no BASH_ENV
        {"SHELLOPTS": "posix"},
        {"SHELLOPTS": "noclobber:xtrace"},
        {"BASHOPTS": "extglob"},
        {"BASH_FUNC_echo%%": "() {  :\n}"},  # an exported function standing in for echo
    ],
)
def test_a_job_whose_bash_might_not_read_the_enter_file_enters_through_a_shell(
    tmp_path: Path, own: dict[str, str]
) -> None:
    """Whatever in the job's environment could make bash skip the enter file, or read it
    otherwise: hyper's shell enters the cgroup first, and the job runs in it."""
    folder = tmp_path / "hyper-w.1.1"
    folder.mkdir()
    (folder / "cgroup.procs").write_text("")
    env = {"PATH": os.environ["PATH"], **own}
    command, _ = _bash_job(tmp_path, folder, env)
    assert command[:2] == ["/bin/sh", "-c"]
    assert env == {"PATH": os.environ["PATH"], **own}  # nothing of hyper's added
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.communicate(timeout=30)
    assert process.returncode == 0
    assert (folder / "cgroup.procs").read_text().split() == [str(process.pid)]
    assert (tmp_path / "ran").exists()


def test_an_enter_file_whose_path_bash_would_expand_is_not_used(tmp_path: Path) -> None:
    """bash expands BASH_ENV ($, `): an enter file in a folder named so is not used."""
    odd = tmp_path / "a$HOME`b`"
    odd.mkdir()
    env = {"PATH": os.environ["PATH"]}
    command, _ = _bash_job(odd, tmp_path / "hyper-w.1.1", env)
    assert command[:2] == ["/bin/sh", "-c"] and "BASH_ENV" not in env


def _writable_cgroups() -> bool:
    parent = cgroup_parent()
    return parent is not None and os.access(parent / "cgroup.procs", os.W_OK)


@pytest.mark.e2e
@pytest.mark.skipif(not _writable_cgroups(), reason="no writable cgroup v2 here")
def test_jobs_run_in_their_cgroups_and_the_worker_stays_in_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = own_cgroup()
    started: list[str] = []  # how each job's first process was started
    wrap = JobCgroup.wrap

    def noted(cgroup: JobCgroup, command: list[str], *args: object) -> list[str]:
        started.append(wrap(cgroup, command, *args)[0])  # type: ignore[arg-type]
        return wrap(cgroup, command, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(JobCgroup, "wrap", noted)
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
    assert started == ["/bin/bash"] * 5 + ["/bin/sh"]  # bash itself, then a shell's


@pytest.mark.e2e
@pytest.mark.skipif(not _writable_cgroups(), reason="no writable cgroup v2 here")
def test_a_job_slow_to_enter_its_cgroup_runs_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel may take a while to move a job's first process into its cgroup (on a
    loaded machine, past the worker's first look at 0.25 s; played here by a pause before
    the way in): the job is not taken for one that never entered."""
    monkeypatch.setattr(runner, "ENTER_BY_BASH_ENV", "sleep 0.8\n" + runner.ENTER_BY_BASH_ENV)
    agent = WorkerAgent(StubHost([]), WorkerOptions(f"slow{os.getpid()}", "q", "d", tmp_path / "w"))  # type: ignore[arg-type]
    report = agent.run_job(job(1, "echo ran"))
    assert report is not None
    assert (report["exit_code"], report.get("reason")) == (0, None)
    assert "ran" in "".join(piece["text"] for piece in report.get("output", []))


@pytest.mark.e2e
@pytest.mark.skipif(not _writable_cgroups(), reason="no writable cgroup v2 here")
def test_a_job_found_outside_its_cgroup_is_stopped_once_it_had_time_to_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a job's way in be taken from it (here: the enter file says nothing), the
    worker finds it still outside its cgroup once it had ENTER_SECONDS to enter, and
    stops it, as a job that could not enter."""
    monkeypatch.setattr(runner, "ENTER_BY_BASH_ENV", "true\n")
    monkeypatch.setattr(runner, "ENTER_SECONDS", 1.0)
    agent = WorkerAgent(StubHost([]), WorkerOptions(f"out{os.getpid()}", "q", "d", tmp_path / "w"))  # type: ignore[arg-type]
    began = time.monotonic()
    report = agent.run_job(job(1, "sleep 20; echo ran"))
    assert 1.0 <= time.monotonic() - began < 10
    assert report is not None
    assert (report["exit_code"], report["reason"]) == (EXIT_NOT_ENTERED, OUTSIDE_ITS_CGROUP)
    assert "ran" not in "".join(piece["text"] for piece in report.get("output", []))
