"""What this machine has: its CPUs, memory and GPUs, as a worker's shape.

GPUs are found as the vendors' tools and drivers list them: `nvidia-smi -L` (else the
entries of /proc/driver/nvidia/gpus), then `rocm-smi --showid`; their ids are the indices
CUDA_VISIBLE_DEVICES and HIP_VISIBLE_DEVICES take. A tool that is missing, fails or
hangs (bounded at 10 s) counts as no GPU of its vendor.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from hyper import capacity
from hyper.errors import UsageError

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
TOOL_SECONDS = 10.0


def _listing(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return ""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TOOL_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def gpu_ids(proc: Path = NVIDIA_PROC) -> tuple[str, ...]:
    """The ids of this machine's GPUs (() when it has none that a tool or driver shows)."""
    nvidia = re.findall(r"^GPU (\d+):", _listing("nvidia-smi", "-L"), re.MULTILINE)
    if not nvidia:
        try:
            nvidia = [str(i) for i in range(len(list(proc.iterdir())))]
        except OSError:
            nvidia = []
    if nvidia:
        return tuple(nvidia)
    amd = re.findall(r"^GPU\[(\d+)\]", _listing("rocm-smi", "--showid"), re.MULTILINE)
    return tuple(dict.fromkeys(amd))


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def mem_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """The machine's memory (MemTotal), in MiB."""
    try:
        found = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.MULTILINE)
    except OSError:
        found = None
    return int(found.group(1)) // 1024 if found else 1024


def shape(
    cpu_count: int | None = None, mem: str | None = None, gpus: str | None = None
) -> capacity.Shape:
    """This machine's shape: what is detected, each part overridden when given (`gpus`:
    a count, or ids separated by commas)."""
    ids = gpu_ids()
    if gpus is not None:
        text = gpus.strip()
        if text.isdigit():
            ids = tuple(str(i) for i in range(int(text)))
        else:
            ids = tuple(g.strip() for g in text.split(",") if g.strip())
            if not all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", g) for g in ids):
                raise UsageError(f"--gpus {gpus!r}: give a count or ids such as 0,1")
    return capacity.Shape(
        cpu_count if cpu_count is not None else cpus(),
        capacity.parse_size(mem, "M", "--mem") if mem is not None else mem_mib(),
        ids,
    )


def shares(whole: capacity.Shape, slots: int) -> list[capacity.Shape]:
    """A machine's shape split between `slots` workers: CPUs and memory evenly (each at
    least 1), GPUs dealt out in runs, none held by two."""
    slots = max(1, slots)
    each = len(whole.gpu_ids) // slots
    return [
        capacity.Shape(
            max(1, whole.cpus // slots),
            max(1, whole.mem_mib // slots),
            whole.gpu_ids[i * each : (i + 1) * each],
        )
        for i in range(slots)
    ]


def text(shape_: capacity.Shape) -> str:
    """A shape as a worker's --capacity: `CPUS:MEM_MIB:GPU,IDS`."""
    return f"{shape_.cpus}:{shape_.mem_mib}:{','.join(shape_.gpu_ids)}"


def parse(value: str) -> capacity.Shape:
    try:
        cpu_text, mem_text, ids = value.split(":", 2)
        return capacity.Shape(int(cpu_text), int(mem_text), tuple(g for g in ids.split(",") if g))
    except ValueError:
        raise UsageError(f"--capacity {value!r}: use CPUS:MEM_MIB:GPU,IDS") from None
