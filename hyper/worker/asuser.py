"""Start a job as another user, for a worker that runs as root (hyper.worker.identity):

    python -I -S asuser.py UID GID GROUPS|- [--address-space BYTES] -- COMMAND [ARG...]

It sets ``no_new_privs`` (no set-uid program of the image makes the job root again), its
supplementary groups (GROUPS, comma-separated; ``-`` for none), its gid, then its uid (real,
effective and saved, so that no way back to root is left, and every capability goes),
checks that root is out of reach, and executes COMMAND in its place. It is the last step
before the job: the worker's cgroup and keeper of processes (hyper.worker.reaper) run
before it, as root.

Run as a file with the standard library only (``-I -S``), as hyper.worker.jobreaper is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys

PR_SET_NO_NEW_PRIVS = 38


def signals_at_their_default(keep: frozenset[int] = frozenset()) -> None:
    """Every ignored signal but `keep` back at its default: those Python ignores at its
    start, and any a process was started with ignored (a host started from a script's
    background job ignores SIGINT and SIGQUIT), which a job would otherwise keep."""
    for number in signal.valid_signals() - keep:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(number) == signal.SIG_IGN:
                signal.signal(number, signal.SIG_DFL)


def _fail(message: str) -> int:
    sys.stderr.write(f"hyper: could not start the job as its user: {message}\n")
    sys.stderr.flush()
    return 126


def main(argv: list[str]) -> int:
    limit = None
    if argv[3:4] == ["--address-space"] and len(argv) > 4:
        limit, argv = int(argv[4]), argv[:3] + argv[5:]
    if len(argv) < 5 or argv[3] != "--":
        sys.stderr.write(
            "usage: asuser.py UID GID GROUPS|- [--address-space BYTES] -- COMMAND [ARG...]\n"
        )
        return 2
    uid, gid = int(argv[0]), int(argv[1])
    groups = [] if argv[2] == "-" else [int(g) for g in argv[2].split(",")]
    command = argv[4:]
    if uid == 0 or gid == 0:
        return _fail("not as root")
    # the memory limit, set here as root: once the job's uid is another, only a worker
    # with CAP_SYS_RESOURCE (which a container does not have) could set it from outside
    if limit is not None:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (OSError, ValueError) as error:
            return _fail(f"its memory limit: {error}")
    # what execvp imports on its way (warnings), while the standard library is still
    # readable: the worker's Python may live where the job's user cannot read
    os.get_exec_path()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return _fail(os.strerror(ctypes.get_errno()))
    try:
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as error:
        return _fail(str(error))
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        return _fail("root is still within reach")
    signals_at_their_default()
    try:
        os.execvp(command[0], command)
    except OSError as error:
        sys.stderr.write(f"hyper: could not start the script: {error}\n")
        sys.stderr.flush()
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
