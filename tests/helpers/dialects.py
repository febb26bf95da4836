"""Running the PBS, LSF and Slurm commands as a tool does: their folders first on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qtools.dialect_path import folder
from tests.conftest import BIN, LocalHost, Result

DEF = "#HYPER -d sample-def-1\n"  # until each queue has a default definition


def dialect_path(local: LocalHost) -> str:
    """PATH with the lsf, slurm and pbs folders (made in the host's HYPER_HOME) first."""
    home = Path(local.env["HYPER_HOME"]) / "data" / "dialects"
    folders = [str(folder(name, home)) for name in ("lsf", "slurm", "pbs")]
    return os.pathsep.join([*folders, str(BIN), local.env.get("PATH", "/usr/bin:/bin")])


def sh(local: LocalHost, command: str, *, input: str | None = None, timeout: float = 60) -> Result:
    """A shell command line, as tools run them (redirections, pipes), with the dialects
    on PATH."""
    env = {**local.env, "PATH": dialect_path(local)}
    done = subprocess.run(
        command,
        shell=True,
        input=input,
        capture_output=True,
        text=True,
        env=env,
        cwd=local.cwd,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def ok(local: LocalHost, command: str, *, input: str | None = None) -> str:
    result = sh(local, command, input=input)
    assert result.code == 0, f"{command} exited {result.code}: {result.err}"
    return result.out


def unfinished(local: LocalHost) -> list[dict]:
    """Jobs of the host that have not ended."""
    import json

    jobs = json.loads(local.ok("qstat", "--json", "--expand", "--limit", "0"))["jobs"]
    return [job for job in jobs if job["status"] not in ("Successful", "Failed", "Cancelled")]
