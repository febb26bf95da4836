"""Workers sharing a machine put their jobs on CPUs and GPUs no other worker's job holds
(hyper.worker.devices): real locks in a real folder, between packings as between workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyper import capacity
from hyper.worker.agent import WorkerAgent, WorkerOptions
from hyper.worker.devices import DeviceLocks, lock_folders
from hyper.worker.placement import Packing
from tests.helpers.stub_host import StubHost, job

ONE_CPU = capacity.Request(cpus=1, mem_mib=100, gpus=0)


def packing(folder: Path, cpus: list[int], gpus: tuple[str, ...] = ()) -> Packing:
    """A worker's packing on a machine of these CPUs and GPUs, its locks in `folder`."""
    shape = capacity.Shape(cpus=len(cpus), mem_mib=1000, gpu_ids=gpus)
    packed = Packing(shape, DeviceLocks(folder))
    packed.machine_cpus = cpus
    return packed


def test_two_workers_one_cpu_jobs_go_to_different_cpus_and_back_when_they_end(
    tmp_path: Path,
) -> None:
    first, second = packing(tmp_path, [0, 1]), packing(tmp_path, [0, 1])
    a = first.place(ONE_CPU)
    b = second.place(ONE_CPU)
    assert (a.cpus, b.cpus) == ((0,), (1,))
    third = packing(tmp_path, [0, 1]).place(ONE_CPU)  # every CPU held: it shares, as before
    assert third.cpus == (0,) and third.locks == []
    first.release(a)
    fourth = packing(tmp_path, [0, 1])
    again = fourth.place(ONE_CPU)
    assert again.cpus == (0,) and again.locks  # free again
    for owner, placed in ((second, b), (fourth, again)):
        owner.release(placed)


def test_a_worker_never_doubles_up_its_own_jobs_to_dodge_another_workers(
    tmp_path: Path,
) -> None:
    other = packing(tmp_path, [0, 1, 2]).place(ONE_CPU)  # holds CPU 0
    mine = packing(tmp_path, [0, 1, 2])
    for key, expected in (((1, 1), (1,)), ((2, 1), (2,)), ((3, 1), (0,))):
        placed = mine.place(ONE_CPU)
        mine.running[key] = placed
        assert placed.cpus == expected  # the third shares CPU 0 with the other worker
    assert other.cpus == (0,)
    for placed in [other, *mine.running.values()]:
        mine.release(placed)


def test_gpus_too_are_held_machine_wide(tmp_path: Path) -> None:
    request = capacity.Request(cpus=1, mem_mib=100, gpus=1)
    first, second = packing(tmp_path, [0, 1], ("3", "5")), packing(tmp_path, [0, 1], ("3", "5"))
    a, b = first.place(request), second.place(request)
    assert {a.gpus, b.gpus} == {("3",), ("5",)}
    first.release(a)
    second.release(b)


def test_a_worker_that_dies_holds_nothing(tmp_path: Path) -> None:
    code = (
        "import sys, time; from hyper.worker.devices import DeviceLocks;"
        f"DeviceLocks(__import__('pathlib').Path({str(tmp_path)!r})).take('cpu', 0);"
        "print('held', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "held\n"
            assert DeviceLocks(tmp_path).take("cpu", 0) is None
            child.kill()
            child.wait(timeout=10)
            held = DeviceLocks(tmp_path).take("cpu", 0)
            assert held is not None
            DeviceLocks.free([held])
        finally:
            child.kill()


def test_the_lock_folder_is_this_users_own_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = tmp_path / f"hyper-devices-{os.getuid()}"
    assert lock_folders()[0] == folder
    assert DeviceLocks(folder).usable
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o777)  # anyone may write in it: not to be trusted
    assert not DeviceLocks(folder).usable
    folder.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder.symlink_to(elsewhere)  # a link, wherever it leads: not to be trusted
    assert not DeviceLocks(folder).usable


def test_an_unusable_runtime_folder_falls_back_to_the_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Slurm job carries the login node's XDG_RUNTIME_DIR, which its node may lack."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone" / "run"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # looked for again, from TMPDIR
    monkeypatch.chdir(tmp_path / "..")
    locks = DeviceLocks.here()
    assert locks.usable
    assert (tmp_path / f"hyper-devices-{os.getuid()}").is_dir()


def test_a_planted_file_that_is_no_regular_file_holds_nothing_and_blocks_nothing(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "cpu-0")  # opening a FIFO to read would wait for a writer
    locks = DeviceLocks(tmp_path)
    assert locks.take("cpu", 0) is None
    held = locks.take("cpu", 1)
    assert held is not None
    DeviceLocks.free([held])


def test_without_a_folder_no_device_is_held_and_packing_is_as_before() -> None:
    first, second = packing(None, [0, 1]), packing(None, [0, 1])  # type: ignore[arg-type]
    assert first.place(ONE_CPU).cpus == second.place(ONE_CPU).cpus == (0,)


def test_a_worker_that_sees_no_other_workers_locks_pins_only_where_it_runs_alone() -> None:
    # in a container of its own, one CPU of a machine's four: any CPU it chose, every
    # worker beside it would choose alike (CPU 0); it leaves its jobs to the kernel
    share = Packing(capacity.Shape(cpus=1, mem_mib=1000, gpu_ids=()), DeviceLocks(None))
    share.machine_cpus = [0, 1, 2, 3]
    assert share.place(ONE_CPU).cpus == ()
    whole = packing(None, [0, 1, 2, 3])  # type: ignore[arg-type]  # the machine is its own
    assert whole.place(ONE_CPU).cpus == (0,)


def test_a_worker_in_a_batch_container_starts_its_jobs_on_every_cpu_it_may_use(
    tmp_path: Path,
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs this process may use")
    options = WorkerOptions("wbatch", "q", "d", tmp_path / "w", idle_seconds=1, in_image=True)
    agent = WorkerAgent(StubHost([]), options)  # type: ignore[arg-type]
    out = tmp_path / "cpus"
    spec = {"vcpus": 1, "memory_limit_mib": 1000, "user": "root"}  # as itself, if root
    script = f"grep Cpus_allowed_list /proc/self/status > {out}"
    report = agent.run_job(job(1, script, definition_spec=spec))
    assert report is not None and report["exit_code"] == 0
    mine = Path("/proc/self/status").read_text().splitlines()
    assert out.read_text().strip() in mine  # all of them, not one CPU of every container's
