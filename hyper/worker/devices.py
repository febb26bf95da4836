"""Which of this machine's CPUs and GPUs the jobs of every worker here hold.

Each worker places its jobs on its own (hyper.worker.placement), yet several workers
often share a machine: a local host's, a joined machine's, a pilot's node. A job holds
each CPU and GPU it was given by an exclusive lock on a file of that device, in a folder
of this user's, so another worker's next job goes where no job runs. The kernel drops a
lock when its file is closed or its process ends: a worker that dies holds nothing (its
jobs, should they outlive it, then share their CPUs with later ones). Where no folder can
be had safely, no device counts as held elsewhere, and each worker packs on its own.
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

from hyper.transport import private_folder_problem

Device = TypeVar("Device", bound=Hashable)  # a CPU's number, a GPU's id


def lock_folders() -> list[Path]:
    """Where this user's device locks may live, in order: in XDG_RUNTIME_DIR, then in the
    temporary folder (never the current one, tempfile's last resort: workers start in
    folders of their own, and would not see each other's locks)."""
    name = f"hyper-devices-{os.getuid()}"
    found = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        found.append(Path(runtime) / name)
    with contextlib.suppress(OSError):
        temporary = Path(tempfile.gettempdir())
        if temporary.resolve() != Path.cwd().resolve():
            found.append(temporary / name)
    return found


def _own_folder(path: Path) -> int | None:
    """The folder, opened (made first when missing), when it is a real folder of this
    user's that no one else may write; its locks are opened through this descriptor, so
    nothing put in its place later is used."""
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if private_folder_problem(fd, str(path)) is not None:
        os.close(fd)
        return None
    return fd


class DeviceLocks:
    """Locks on this machine's devices, each held by the open file that took it."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = _own_folder(folder) if folder is not None else None

    @classmethod
    def here(cls) -> DeviceLocks:
        """The locks of this user's first folder that can be had (none: no locks)."""
        for folder in lock_folders():
            locks = cls(folder)
            if locks.usable:
                return locks
        return cls(None)

    @property
    def usable(self) -> bool:
        return self._folder is not None

    def take(self, kind: str, device: Hashable) -> int | None:
        """The open file holding `device` of `kind` ("cpu", "gpu") for a job of this
        worker; None when another job holds it (or there is no folder to lock in)."""
        if self._folder is None:
            return None
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(f"{kind}-{device}", flags, 0o600, dir_fd=self._folder)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a device: not ours
                raise OSError
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
