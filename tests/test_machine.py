"""What a machine has: GPUs found as the vendors' tools list them (stand-in tools on PATH),
memory from /proc/meminfo, flags over what is found, and shares between a machine's slots."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyper import machine
from hyper.capacity import Shape
from hyper.errors import UsageError


def _tool(folder: Path, name: str, output: str, code: int = 0) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\ncat <<'END'\n{output}\nEND\nexit {code}\n")
    path.chmod(0o755)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder


def test_no_tool_no_driver_no_gpu(tools: Path, tmp_path: Path) -> None:
    assert machine.gpu_ids(tmp_path / "absent") == ()


def test_nvidia_smi_lists_the_gpus(tools: Path, tmp_path: Path) -> None:
    _tool(tools, "nvidia-smi", "GPU 0: NVIDIA A100 (UUID: GPU-a)\nGPU 1: NVIDIA A100 (UUID: GPU-b)")
    assert machine.gpu_ids(tmp_path / "absent") == ("0", "1")


def test_the_driver_folder_when_nvidia_smi_fails(tools: Path, tmp_path: Path) -> None:
    _tool(tools, "nvidia-smi", "NVIDIA-SMI has failed", code=9)
    proc = tmp_path / "gpus"
    for address in ("0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"):
        (proc / address).mkdir(parents=True)
    assert machine.gpu_ids(proc) == ("0", "1", "2")


def test_rocm_smi_lists_amd_gpus(tools: Path, tmp_path: Path) -> None:
    listing = (
        "======= ROCm System Management Interface =======\n"
        "GPU[0]\t\t: Device ID: 0x740f\nGPU[0]\t\t: Device Rev: 0x02\n"
        "GPU[1]\t\t: Device ID: 0x740f\n"
    )
    _tool(tools, "rocm-smi", listing)
    assert machine.gpu_ids(tmp_path / "absent") == ("0", "1")


def test_memory_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16318480 kB\nMemFree:         1000 kB\n")
    assert machine.mem_mib(meminfo) == 15936
    assert machine.mem_mib(tmp_path / "absent") == 1024


def test_flags_override_what_is_found(tools: Path) -> None:
    _tool(tools, "nvidia-smi", "GPU 0: T4\nGPU 1: T4")
    found = machine.shape()
    assert found.gpu_ids == ("0", "1") and found.cpus >= 1 and found.mem_mib > 1
    assert machine.shape(8, "64G", "3,5") == Shape(8, 65536, ("3", "5"))
    assert machine.shape(2, "512M", "0").gpu_ids == ()
    assert machine.shape(2, "512M", "4").gpu_ids == ("0", "1", "2", "3")
    with pytest.raises(UsageError, match="--gpus"):
        machine.shape(2, "1G", "a b")
    with pytest.raises(UsageError, match="--mem"):
        machine.shape(2, "lots", None)


def test_slots_share_the_machine_and_never_a_gpu() -> None:
    whole = Shape(8, 32768, ("0", "1", "2", "3"))
    assert machine.shares(whole, 1) == [whole]
    assert machine.shares(whole, 2) == [
        Shape(4, 16384, ("0", "1")), Shape(4, 16384, ("2", "3")),
    ]  # fmt: skip
    three = machine.shares(whole, 3)
    assert [s.cpus for s in three] == [2, 2, 2] and [s.gpu_ids for s in three] == [
        ("0",), ("1",), ("2",),
    ]  # fmt: skip
    assert machine.shares(Shape(1, 100, ()), 4) == [Shape(1, 25, ())] * 4


def test_a_share_travels_to_its_worker_as_text() -> None:
    for shape in (Shape(4, 16384, ("0", "1")), Shape(1, 512, ())):
        assert machine.parse(machine.text(shape)) == shape
    with pytest.raises(UsageError):
        machine.parse("four")
