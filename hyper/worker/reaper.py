"""Every process of a job ends with it.

A job's processes may leave its process group and session (``setsid``), double-fork so
that their parent is gone, and clear their environment (``env -i``). Two things find them
anyway, neither relying on anything the job can change:

- the worker is a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``): a process whose
  parent ends is re-parented to the worker, not to init, so every process a job started
  stays a descendant of the worker while the worker lives. When a job ends alone on its
  worker, all the worker's descendants are that job's, and they are killed. A job that
  may run beside others (and has no cgroup) starts under a subreaper of its own
  (hyper.worker.jobreaper), which kills what the job left when the job's first process
  ends, while the others run on;
- where the machine has cgroup v2 and lets the worker write to it, each job runs in a
  cgroup of its own, named ``hyper-<worker>.<job>.<attempt>`` beside the worker's cgroup.
  A cgroup outlives the worker: the host's local launcher finds the cgroups of a worker
  it judged gone by their names, and kills what they hold before a retry starts.

Elsewhere (no cgroup v2, or not writable) the worker falls back on the subreapers
alone, and the local launcher on the process groups and environments it knows.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
CGROUP_PREFIX = "hyper-"
EXIT_NOT_ENTERED = 126  # a job that could not enter its cgroup (its first process exits so)
OUTSIDE_ITS_CGROUP = "stopped: it was not in its cgroup (it could not enter it)"
# the start of a job in a cgroup: `sh -c ENTER_CGROUP PROCS COMMAND...` (PROCS is $0)
ENTER_CGROUP = (
    'echo $$ > "$0" || { echo "hyper: the job could not enter its cgroup $0" >&2; '
    f"exit {EXIT_NOT_ENTERED}; }}\n"
    'exec "$@"'
)
# the same for a script bash runs (no shebang), with no shell before it: bash reads the file
# BASH_ENV names before the script, and nothing it starts runs before that (`builtin`: no
# function of the job's environment stands in; `>|`: whatever its shell options)
ENTER_BY_BASH_ENV = (
    "builtin unset BASH_ENV\n"
    '{ builtin echo $$ >| "$HYPER_CGROUP_PROCS"; } 2>/dev/null || {\n'
    '  builtin echo "hyper: the job could not enter its cgroup $HYPER_CGROUP_PROCS" >&2\n'
    f"  builtin exit {EXIT_NOT_ENTERED}; }}\n"
    "builtin unset HYPER_CGROUP_PROCS\n"
)
# what makes bash skip BASH_ENV (POSIX mode) or read it differently (options, functions)
BASH_STARTUP_VARIABLES = ("BASH_ENV", "ENV", "POSIXLY_CORRECT", "SHELLOPTS", "BASHOPTS")
# a path bash takes as it is: BASH_ENV's value is expanded ($, `) before it is read
PLAIN_PATH = re.compile(r"[A-Za-z0-9/._+-]+")


def bash_reads_enter_file(env: dict[str, str], enter: Path) -> bool:
    """Whether a bash started with `env` reads `enter` through BASH_ENV before its
    script, exactly as written: not in POSIX or privileged mode, with no shell options,
    exported functions or startup file of the job's own, from a path with nothing to expand."""
    if os.getuid() != os.geteuid() or os.getgid() != os.getegid():
        return False  # bash's privileged mode reads no startup file
    if any(name in env for name in BASH_STARTUP_VARIABLES):
        return False
    if any(name.startswith("BASH_FUNC_") for name in env):
        return False
    return PLAIN_PATH.fullmatch(str(enter)) is not None


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: int, *, zombies: bool = False, keep: Sequence[int] = ()) -> list[int]:
    """The processes below `pid`, but for those in `keep` and theirs; those that ended and
    wait to be reaped only with `zombies`. Found from each process's own list of children
    (/proc/PID/task/TID/children): the cost follows the job's processes, not the machine's
    (a scan of every process in /proc, where the kernel keeps no such lists)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        children = _children(todo.pop())
        if children is None:
            return _descendants_by_scan(pid, zombies=zombies, keep=keep)
        for child in children:
            if child in keep:
                continue
            if zombies or not _is_zombie(child):
                found.append(child)
            todo.append(child)
    return found


def _children(pid: int) -> list[int] | None:
    """The children of every thread of `pid` ([] when it is gone); None when the kernel
    keeps no children lists (CONFIG_PROC_CHILDREN off)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for thread in threads:
        path = f"/proc/{pid}/task/{thread}/children"
        try:
            data = read_whole(path)
        except FileNotFoundError:
            if os.path.exists(f"/proc/{pid}/task/{thread}"):
                return None  # the thread is there, its list is not: no such lists here
            continue  # the thread ended meanwhile
        except OSError:
            continue
        found += [int(word) for word in data.split()]
    return found


def process_state(pid: int) -> str | None:
    """The state letter of process `pid` (R, S, Z for one that ended and waits to be
    reaped...); None when no process has it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3].decode()


def _is_zombie(pid: int) -> bool:
    return process_state(pid) == "Z"  # None: reaped meanwhile, it is no one's to kill


def _descendants_by_scan(pid: int, *, zombies: bool = False, keep: Sequence[int] = ()) -> list[int]:
    """As `descendants`, from every process's parent in /proc (any Linux)."""
    children: dict[int, list[int]] = {}
    dead: set[int] = set()
    for name in _pids():
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        with contextlib.suppress(ValueError, IndexError):
            children.setdefault(int(fields[1]), []).append(name)
            if fields[0] == b"Z":
                dead.add(name)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child in keep:
                continue
            if zombies or child not in dead:
                found.append(child)
            todo.append(child)
    return found


def _pids() -> Iterator[int]:
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                yield int(name)


def kill_descendants(
    patience: float = 2.0, *, spare: int | None = None, keep: Sequence[int] = ()
) -> None:
    """SIGKILL every descendant of this process (a subreaper: what its jobs left), again
    until none is left (they may fork meanwhile) or `patience` runs out, and reap those that
    were re-parented here. Only the pids killed are reaped: a child the worker waits for
    itself (`spare`: the job's first process, through subprocess) keeps its exit status.
    Processes in `keep` and below them are left alone."""
    own = os.getpid()
    if not descendants(own, zombies=True, keep=keep):
        return  # the common case: the job left nothing, not even a process to reap
    deadline = time.monotonic() + patience
    while True:
        left = descendants(own, keep=keep)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        reap([pid for pid in descendants(own, zombies=True, keep=keep) if pid != spare])
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def reaper_command(command: list[str]) -> list[str]:
    """`command`, started under a keeper of its own processes (hyper.worker.jobreaper):
    what it leaves behind ends when it does, whatever else runs on the worker."""
    keeper = Path(__file__).with_name("jobreaper.py")
    return [sys.executable, "-I", "-S", str(keeper), *command]


def kill_tree(pid: int, patience: float = 2.0) -> None:
    """SIGKILL every process below `pid` (a job's keeper: all the job's processes are
    there), again until none is left or `patience` runs out; `pid` reaps them."""
    deadline = time.monotonic() + patience
    while True:
        left = descendants(pid)
        for child in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def reap(pids: list[int]) -> None:
    """Collect those of `pids` that ended and are children of this process."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def cgroup_v2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid
    machines), if anywhere."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            return Path(before.split()[4])
    return None


def own_cgroup(pid: int | str = "self") -> str | None:
    """The cgroup v2 path of a process, relative to the hierarchy's root."""
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip()
    except OSError:
        pass
    return None


def cgroup_parent() -> Path | None:
    """The folder this process's job cgroups go in (its own cgroup), when there is one."""
    mount, path = cgroup_v2_mount(), own_cgroup()
    if mount is None or path is None:
        return None
    folder = mount / path.lstrip("/")
    return folder if (folder / "cgroup.procs").exists() else None


def cgroup_name(worker_id: str, job_id: int, attempt: int) -> str:
    return f"{CGROUP_PREFIX}{worker_id}.{job_id}.{attempt}"


class JobCgroup:
    """A cgroup v2 of one job attempt; the job's first process steps into it before it
    runs the job (`wrap`), so that nothing the job forks is ever outside."""

    def __init__(self, folder: Path, home: Path) -> None:
        self.folder = folder
        self.home = home  # the worker's own cgroup

    @classmethod
    def make(cls, worker_id: str, job_id: int, attempt: int, parent: Path) -> JobCgroup | None:
        """A new cgroup for the attempt, under `parent` (the worker's own cgroup, from
        cgroup_parent); None where it is not writable."""
        if not os.access(parent / "cgroup.procs", os.W_OK):
            return None
        folder = parent / cgroup_name(worker_id, job_id, attempt)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder)
            if not os.path.exists(f"{folder}/cgroup.procs"):
                return None
        except OSError:
            return None
        return cls(folder, parent)

    def limit(self, cpus: int, mem_mib: int) -> bool:
        """Hold the job to its CPUs (cpu.max) and memory (memory.max, no swap) where the
        machine's cgroup v2 has those controllers for us; True when memory is held here."""
        folder = str(self.folder)
        with contextlib.suppress(OSError):  # no such file: no cpu controller here
            write_control(f"{folder}/cpu.max", f"{cpus * 100_000} 100000")
        try:
            write_control(f"{folder}/memory.max", str(mem_mib * 2**20))
        except OSError:
            return False  # no memory controller here (or it would not take the limit)
        with contextlib.suppress(OSError):
            write_control(f"{folder}/memory.swap.max", "0")
        return True

    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for going over memory.max."""
        try:
            for line in (self.folder / "memory.events").read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "oom_kill":
                    return int(count)
        except (OSError, ValueError):
            pass
        return 0

    def wrap(self, command: list[str], env: dict[str, str], enter: Path | None) -> list[str]:
        """`command`, started so that its first process steps into this cgroup before it
        runs the job: nothing the job forks is ever outside it, and the worker itself never
        enters it. A script bash runs enters it from `enter` (a file holding
        ENTER_BY_BASH_ENV, through `env`) where bash surely reads it; any other command
        through a shell that writes its own pid to cgroup.procs, then execs the command
        (one process start more). Either way the job does not run if it cannot enter."""
        procs = str(self.folder / "cgroup.procs")
        if enter is not None and command[0] == "/bin/bash" and bash_reads_enter_file(env, enter):
            env.update(BASH_ENV=str(enter), HYPER_CGROUP_PROCS=procs)
            return command
        return ["/bin/sh", "-c", ENTER_CGROUP, procs, *command]

    def holds(self, pid: int) -> bool | None:
        """Whether the process is in this cgroup (or one below it); None when it is gone."""
        path = own_cgroup(pid)
        return None if path is None else self.folder.name in path.split("/")

    def kill(self, patience: float = 2.0, *, spare: int | None = None) -> None:
        kill_cgroup(self.folder, patience, spare=spare)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


def _move(pid: int, folder: Path) -> bool:
    try:
        write_control(f"{folder}/cgroup.procs", str(pid))
        return True
    except OSError:
        return False


def write_control(path: str, value: str) -> None:
    """Write a cgroup's control file, which must be there (it is never made), at once."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_whole(path: str) -> bytes:
    """The whole of a small file (a cgroup's, /proc's), read without Python's buffered
    and text layers: a short job's start and end read several."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while part := os.read(fd, 65536):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(fd)


def cgroup_pids(folder: Path) -> list[int]:
    try:
        return [int(p) for p in read_whole(f"{folder}/cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(folder: Path, patience: float = 2.0, *, spare: int | None = None) -> None:
    """SIGKILL everything in the cgroup (all at once with cgroup.kill where the kernel has
    it), never this process, and wait until it is empty (or `patience` runs out)."""
    own = os.getpid()
    deadline = time.monotonic() + patience
    left = cgroup_pids(folder)
    if not left:
        return  # the common end of a job: nothing it started outlived it
    at_once = (folder / "cgroup.kill").exists() and own not in left
    while True:
        left = [pid for pid in left if pid != own]
        if not left or time.monotonic() > deadline:
            return
        if at_once:
            with contextlib.suppress(OSError):
                write_control(f"{folder}/cgroup.kill", "1")
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        reap([pid for pid in left if pid != spare])
        time.sleep(0.01)
        left = cgroup_pids(folder)


def worker_cgroups(parent: Path, worker_id: str) -> list[Path]:
    """The job cgroups a worker made under `parent` (its own cgroup when it started)."""
    try:
        return sorted(parent.glob(f"{CGROUP_PREFIX}{worker_id}.*"))
    except OSError:
        return []
