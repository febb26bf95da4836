"""Every program hyper runs on a host's behalf (docker, podman...) goes through here."""

from __future__ import annotations

import subprocess

from hyper.errors import CommandFailed


def run(command: list[str], *, timeout: float = 600, cwd: str | None = None) -> str:
    """Run a command to completion and return its stdout; CommandFailed says what went wrong."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except FileNotFoundError:
        raise CommandFailed(command, 127, "", f"{command[0]}: not found") from None
    except subprocess.TimeoutExpired as expired:
        raise CommandFailed(command, 124, "", f"timed out after {expired.timeout} s") from None
    if done.returncode != 0:
        raise CommandFailed(command, done.returncode, done.stdout, done.stderr)
    return done.stdout
