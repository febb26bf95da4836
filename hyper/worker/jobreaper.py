"""The keeper of one job's processes, where no cgroup holds them: a small process that
starts the job and outlives it by a moment, so that what the job leaves behind ends
with that job, even while other jobs run on the same worker.

    python -I -S jobreaper.py COMMAND [ARG...]

It is a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): whatever the job starts,
however it leaves its session or double-forks, stays below it. It runs COMMAND as its
child; when that child ends it kills every process left below it (SIGKILL, again until
none is left or PATIENCE_SECONDS pass), reaps them, and ends as the child ended (its exit
code, or the same signal). It ignores SIGTERM, SIGINT and SIGHUP (sent to the job's
process group, they are the job's to handle), and the job gets them back at their default.

Run as a file with the standard library only (``-I -S``: no site, no user paths, none of
the job's PYTHON* variables), so that it starts fast and the job's environment cannot
change what it does; hyper.worker.runner starts it (hyper.worker.reaper.reaper_command).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
PATIENCE_SECONDS = 2.0
PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# what Python ignores at its start and a job must get at their default
RESTORED = (*PASSED_ON, signal.SIGPIPE, signal.SIGXFSZ)


def _children(pid: int) -> list[int]:
    """The children of `pid` (of each of its threads), from /proc; else by every
    process's parent (kernels without children lists)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", "rb") as file:
                found += [int(word) for word in file.read().split()]
        except FileNotFoundError:
            return _children_by_scan(pid)
        except OSError:
            continue
    return found


def _children_by_scan(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{name}/stat", "rb") as file:
                    stat = file.read()
                if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                    found.append(int(name))
    return found


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


def _reap() -> bool:
    """Collect the children that ended; False once it has none at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _end_what_is_left() -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not _reap() or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _run(argv: list[str]) -> int:
    try:
        pid = os.fork()
    except OSError as error:
        sys.stderr.write(f"hyper: could not start the script: {error}\n")
        return 127
    if pid == 0:
        for number in RESTORED:
            signal.signal(number, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as error:
            sys.stderr.write(f"hyper: could not start the script: {error}\n")
            sys.stderr.flush()
        os._exit(127)
    while True:  # the job's first process; orphans that end meanwhile are reaped too
        try:
            ended, status = os.waitpid(-1, 0)
        except ChildProcessError:  # not expected: its child is there until reaped here
            return 127
        if ended == pid:
            break
    _end_what_is_left()
    if os.WIFSIGNALED(status):
        code = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(code, signal.SIG_DFL)
            os.kill(os.getpid(), code)  # ends as the job ended
        return 128 + code
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: jobreaper.py COMMAND [ARG...]\n")
        return 2
    for number in PASSED_ON:
        signal.signal(number, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    return _run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
