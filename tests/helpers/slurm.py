"""A real Slurm for the `slurm` tests (.ci/start-slurm starts one): what its commands say
about a region's pilots, and the marks that skip those tests where there is no Slurm."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

needs_slurm = pytest.mark.skipif(
    shutil.which("sbatch") is None,
    reason="no sbatch on PATH: start a Slurm with .ci/start-slurm (as root)",
)


def squeue(name: str) -> list[tuple[str, str]]:
    """(job id, state) of every array element of that job name, pending ones too."""
    done = subprocess.run(
        ["squeue", "--noheader", "--array", f"--name={name}", "--format=%i|%T"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [
        (job, state)
        for line in done.stdout.splitlines()
        if "|" in line
        for job, state in [line.strip().split("|", 1)]
    ]


def scancel_all(name: str, wait: float = 120.0) -> None:
    """Cancel every job of that name, and wait (up to `wait` seconds) until Slurm lists
    none, COMPLETING ones included: the next test sees only its own pilots."""
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=60, check=False)
    deadline = time.monotonic() + wait
    while squeue(name) and time.monotonic() < deadline:
        time.sleep(0.5)


@contextlib.contextmanager
def slurm_to_itself() -> Iterator[None]:
    """Hold the machine's Slurm for one test at a time, across the test run's processes
    (pytest-xdist's workers): its pilots share a job name, which another test's setup
    would cancel and its listing would count."""
    path = os.path.join(tempfile.gettempdir(), "hyper-tests-slurm.lock")
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
