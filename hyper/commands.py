"""Every program hyper runs on a host's behalf (docker, podman...) goes through here."""

from __future__ import annotations

import errno
import os
import subprocess

from hyper.errors import CommandFailed

# what hyper's own commands hold near their top: its console scripts and the dialect
# folders' launchers (qtools.dialect_path) are Python that imports qtools
OWN_COMMAND_MARKS = (b"from qtools.", b"import qtools")


def past_own_commands(command: list[str]) -> list[str]:
    """`command` with its program found on PATH past hyper's own commands of that name: a
    host started from a shell with a dialect's folder first on PATH (as docs/dialects.md
    suggests) ran its own `squeue` for its Slurm region's, which asked the host itself,
    and both waited until the command's time was up."""
    name = command[0]
    if os.sep in name:
        return command
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or os.curdir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK) and not _own(path):
            return [path, *command[1:]]
    # none but hyper's own, or none at all: not found (run() says so), never hyper's own
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _own(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(1024)
    except OSError:
        return False
    return head.startswith(b"#!") and any(mark in head for mark in OWN_COMMAND_MARKS)


def run(command: list[str], *, timeout: float = 600, cwd: str | None = None) -> str:
    """Run a command to completion and return its stdout; CommandFailed says what went
    wrong. The program is never one of hyper's own (past_own_commands)."""
    try:
        done = subprocess.run(
            past_own_commands(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError:
        raise CommandFailed(command, 127, "", f"{command[0]}: not found") from None
    except subprocess.TimeoutExpired as expired:
        raise CommandFailed(command, 124, "", f"timed out after {expired.timeout} s") from None
    if done.returncode != 0:
        raise CommandFailed(command, done.returncode, done.stdout, done.stderr)
    return done.stdout
