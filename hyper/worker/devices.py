"""Which of this machine's CPUs and GPUs the jobs of every worker here hold.

Each worker places its jobs on its own (hyper.worker.placement), yet several workers
often share a machine: a local host's, a joined machine's, a pilot's node. A job holds
each CPU and GPU it was given by an exclusive lock on a file of that device, in a folder
of this user's, so another worker's next job goes where no job runs. The kernel drops a
lock when its file is closed or its process ends: a worker that dies holds nothing.
Where the folder cannot be had safely (or locks are not to be had), no device counts as
held elsewhere, and each worker packs on its own as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TypeVar

Device = TypeVar("Device", bound=Hashable)  # a CPU's number, a GPU's id


def lock_folder() -> Path | None:
    """This user's folder of device locks: in XDG_RUNTIME_DIR, else the temporary folder,
    where it must be a real folder of this user's that no one else may write."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime or tempfile.gettempdir()) / f"hyper-devices-{os.getuid()}"
    with contextlib.suppress(FileExistsError, OSError):
        folder.mkdir(mode=0o700)
    try:
        info = folder.lstat()
    except OSError:
        return None
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    return folder if mine and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) else None


class DeviceLocks:
    """Locks on this machine's devices, each held by the open file that took it."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def take(self, kind: str, device: Hashable) -> int | None:
        """The open file holding `device` of `kind` ("cpu", "gpu") for a job of this
        worker; None when another job holds it (or there is no folder to lock in)."""
        if self.folder is None:
            return None
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.folder / f"{kind}-{device}", flags, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def free(held: Iterable[int]) -> None:
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)

    def choose(
        self, kind: str, order: list[Device], unused: set[Device], count: int
    ) -> tuple[list[Device], list[int]]:
        """`count` devices from `order` (the worker's preference): first those this worker
        leaves `unused` that no other job on the machine holds, then the rest in order.
        Returns them and the locks taken for them."""
        chosen: list[Device] = []
        held: list[int] = []
        for device in order:
            if len(chosen) == count:
                break
            if device in unused:
                fd = self.take(kind, device)
                if fd is not None:
                    chosen.append(device)
                    held.append(fd)
        for device in order:
            if len(chosen) == count:
                break
            if device not in chosen:
                chosen.append(device)
        return chosen, held
