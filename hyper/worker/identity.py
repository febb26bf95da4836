"""Who a job runs as on its worker: the rule, in this one place.

A worker that AWS Batch starts in its image runs as root (the image sets no ``USER``)
and holds in its memory what no job may have: the worker key and its launch's token,
with which a job could claim its siblings and write their results. So its jobs run as
another user, without capabilities: the definition's ``user`` (``name``, ``uid``,
``name:group`` or ``uid:gid``, as ``docker run --user`` takes it), else JOB_USER, which
the example image's Dockerfile makes with uid and gid JOB_UID (an image without it: uid
and gid JOB_UID, with no name). The kernel then keeps the worker out of their reach: a
process of another uid may not ptrace it, nor read its ``/proc/PID/mem`` or ``environ``,
nor write its files; and ``no_new_privs`` keeps the image's set-uid programs from
making them root again (hyper.worker.asuser).

A definition keeps its jobs as root only by naming root as its user (`names_root`),
which an AWS host accepts only when its owner allowed ``root-jobs``
(create-host --allowed-container-options).

Anywhere else a job runs as its worker's own user, as it always did: a worker that is
not root cannot change user, and a local host's worker that root runs runs its jobs as
root (whoever holds a local host's key may already do what its daemon's user may).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import sys
from dataclasses import dataclass, field
from pathlib import Path

JOB_USER = "hyperjob"
JOB_UID = 10001  # JOB_USER's uid and gid in the example image, and the fallback elsewhere
ROOT_NAMES = ("root", "0")


class UnknownUser(Exception):
    """A definition's user is not in the image, or is root there without saying so."""


@dataclass(frozen=True)
class JobUser:
    uid: int
    gid: int
    name: str = ""  # "" for a uid with no name in the image
    home: str = ""
    groups: tuple[int, ...] = field(default_factory=tuple)

    def variables(self, folder: Path) -> dict[str, str]:
        """What the job finds in its environment of itself: HOME (its own folder when it
        has no home), USER and LOGNAME."""
        home = self.home if self.home and os.path.isdir(self.home) else str(folder)
        name = self.name or str(self.uid)
        return {"HOME": home, "USER": name, "LOGNAME": name}

    def command(self, command: list[str], address_space: int | None = None) -> list[str]:
        """`command`, started as this user (hyper.worker.asuser, run by the worker's
        Python in isolated mode: the job's variables cannot change what it does), held
        to `address_space` bytes (RLIMIT_AS) when given."""
        helper = Path(__file__).with_name("asuser.py")
        groups = ",".join(str(g) for g in self.groups) or "-"
        limit = [] if address_space is None else ["--address-space", str(address_space)]
        return [sys.executable, "-I", "-S", str(helper), str(self.uid), str(self.gid),
                groups, *limit, "--", *command]  # fmt: skip

    def hand_over(self, folder: Path) -> None:
        """Make `folder` and everything in it this user's (links themselves, never
        what they point to): the job writes there, the worker (root) reads it after."""
        os.chown(folder, self.uid, self.gid, follow_symlinks=False)
        for top, folders, files in os.walk(folder):
            for name in folders + files:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(top, name), self.uid, self.gid, follow_symlinks=False)


def names_root(user: str) -> bool:
    """Whether a definition's `user` names root (the user root or uid 0, any group)."""
    return user.partition(":")[0].strip() in ROOT_NAMES


def job_user(user: str, *, in_image: bool, euid: int | None = None) -> JobUser | None:
    """Who a job whose definition names `user` runs as; None: as the worker itself."""
    if not in_image or (os.geteuid() if euid is None else euid) != 0 or names_root(user):
        return None
    name, _, group = (user.strip() or JOB_USER).partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is not None:
        found = JobUser(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)
    elif name == JOB_USER:
        found = JobUser(JOB_UID, JOB_UID)
    elif name.isdigit():
        found = JobUser(int(name), int(name))
    else:
        raise UnknownUser(f"its definition's user {name!r} is not in the image")
    gid = _group(group) if group else found.gid
    groups: tuple[int, ...] = ()
    if found.name and not group:
        groups = tuple(g for g in os.getgrouplist(found.name, gid) if g != 0)
    if found.uid == 0 or gid == 0:
        raise UnknownUser(
            f"its definition's user {user.strip() or JOB_USER!r} is root in the image: "
            "a definition runs its jobs as root only by naming root"
        )
    return JobUser(found.uid, gid, found.name, found.home, groups)


def _group(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnknownUser(f"its definition's group {group!r} is not in the image") from None
