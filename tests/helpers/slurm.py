"""A real Slurm for the `slurm` tests (.ci/start-slurm starts one): what its commands say
about a region's pilots, and the marks that skip those tests where there is no Slurm."""

from __future__ import annotations

import shutil
import subprocess

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


def scancel_all(name: str) -> None:
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=60, check=False)
