"""What a job starts with on its worker: its environment and the variables of what it
got (and of the scheduler its script was written for), its -o/-e files, the command that
runs its script (itself, bash, or a container) and its package, unpacked."""

from __future__ import annotations

import contextlib
import errno
import functools
import getpass
import io
import os
import resource
import socket
import stat
import sys
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from hyper import tarballs
from hyper.jobs import SECRET_VARIABLES, UMASK_VARIABLE, LogKind
from hyper.jobspec import expand_output_pattern
from hyper.messages import ClaimedJob
from hyper.worker.container import container_command, container_tool
from hyper.worker.placement import Placement

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                 "ZE_AFFINITY_MASK")  # fmt: skip


class PackageError(Exception):
    """A job's package could not be fetched or unpacked: the attempt ends with exit 1."""


def unpack_package(data: bytes, folder: Path) -> None:
    """Unpack a gzip'd tar archive into `folder` (made here), nothing outside it."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        try:
            tarballs.extract(archive, folder)
        except tarballs.UnsafeArchive as error:
            raise PackageError(str(error)) from None


def compat_variables(scheduler: str, env: dict[str, str]) -> dict[str, str]:
    """What a script written for another scheduler reads about its job."""
    job_id, name = env["HYPER_JOB_ID"], env["HYPER_JOB_NAME"]
    array_id, index = env.get("HYPER_ARRAY_JOB_ID"), env.get("HYPER_ARRAY_INDEX")
    submit_dir, attempt = env["HYPER_SUBMIT_DIR"], int(env["HYPER_ATTEMPT"])
    if scheduler == "slurm":
        node = socket.gethostname().split(".")[0]
        found = {
            "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id, "SLURM_JOB_NAME": name,
            "SLURM_SUBMIT_DIR": submit_dir, "SLURM_RESTART_COUNT": str(attempt - 1),
            "SLURM_JOB_PARTITION": env["HYPER_QUEUE"],
            # the batch step: task 0 of one, on this one machine
            "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": node, "SLURM_NODELIST": node,
            "SLURMD_NODENAME": node, "SLURM_NODEID": "0", "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0",
        }  # fmt: skip
        if array_id:
            found |= {
                "SLURM_ARRAY_JOB_ID": array_id, "SLURM_ARRAY_TASK_ID": index or "",
                "SLURM_ARRAY_TASK_COUNT": env.get("HYPER_ARRAY_SIZE", ""),
            }  # fmt: skip
        return found
    if scheduler == "pbs":
        found = {"PBS_JOBID": job_id, "PBS_JOBNAME": name, "PBS_O_WORKDIR": submit_dir,
                 "PBS_QUEUE": env["HYPER_QUEUE"]}  # fmt: skip
        if array_id:
            found |= {"PBS_ARRAY_INDEX": index or "", "PBS_ARRAY_ID": array_id}
        return found
    if scheduler == "lsf":
        found = {"LSB_JOBID": job_id, "LSB_JOBNAME": name, "LS_SUBCWD": submit_dir,
                 "LSB_QUEUE": env["HYPER_QUEUE"]}  # fmt: skip
        if array_id:
            found |= {"LSB_JOBINDEX": index or "", "LSB_JOBID": array_id}
        return found
    return {}


def time_limit_notice(job: ClaimedJob, now: float) -> str | None:
    """What the job's own scheduler writes at the end of its stderr when it ends the job
    at its time limit (myqueue reads Slurm's line to tell a timeout), None for hyper's."""
    compat = job.job_options().get("compat", [])
    if "slurm" in compat:
        node = socket.gethostname().split(".")[0]
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        said = f"*** JOB {job.id} ON {node} CANCELLED AT {when} DUE TO TIME LIMIT ***"
        return f"slurmstepd: error: {said}\n"
    if "pbs" in compat:
        return f"=>> PBS: job killed: walltime exceeded limit {job.time_limit}\n"
    if "lsf" in compat:
        return "TERM_RUNLIMIT: job killed after reaching LSF run time limit.\n"
    return None


def close_all(files: dict[LogKind, BinaryIO]) -> None:
    for handle in set(files.values()):
        with contextlib.suppress(OSError):  # what a full disk kept of it is lost already
            handle.close()


def worker_environment() -> dict[str, str]:
    """The worker's environment but its secrets: what every job's starts from."""
    return {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}


def environment(
    job: ClaimedJob, workdir: Path, worker_id: str, base: Mapping[str, str]
) -> dict[str, str]:
    """What the job's processes find in their environment: the worker's (`base`, from
    worker_environment, read once by a worker that runs many jobs), the job's own, and
    what hyper says of the job."""
    env = dict(base)
    env.update(job.env)
    env.update(
        {
            "HYPER_JOB_ID": str(job.id),
            "HYPER_JOB_NAME": job.name,
            "HYPER_QUEUE": job.queue,
            "HYPER_DEFINITION": job.definition,
            "HYPER_ATTEMPT": str(job.attempt),
            "HYPER_SUBMIT_DIR": job.submit_dir or "",
            "HYPER_WORKER_ID": worker_id,
            "HYPER_WORKDIR": str(workdir),
        }
    )
    if not job.image:  # in a container, hyper is whatever its image holds
        # hyper's own commands and Python, for jobs that call them (a workflow's
        # handler, a work item's pipeline, the Python API); the job's PATH first
        commands = str(Path(sys.executable).parent)
        path = env.get("PATH", "")
        if commands not in path.split(os.pathsep):
            env["PATH"] = f"{path}{os.pathsep}{commands}" if path else commands
        env["HYPER_WORKER_PYTHON"] = sys.executable
    if job.array_id is not None:
        env["HYPER_ARRAY_JOB_ID"] = str(job.array_id)
        env["HYPER_ARRAY_INDEX"] = str(job.array_index)
        env["HYPER_ARRAY_SIZE"] = str(job.array_size)
    for scheduler in job.job_options().get("compat", []):
        env.update(compat_variables(scheduler, env))
    return env


def resource_variables(job: ClaimedJob, placement: Placement, gpus_here: bool) -> dict[str, str]:
    """What the job reads about what it got: HYPER_CPUS, HYPER_MEM (MiB), HYPER_GPUS,
    OMP_NUM_THREADS (unless the job sets it), the GPU variables of every vendor, and
    its dialect's own (SLURM_CPUS_PER_TASK, NCPUS, LSB_DJOB_NUMPROC...)."""
    request = placement.request
    cpus, mem = str(request.cpus), str(request.mem_mib)
    found = {"HYPER_CPUS": cpus, "HYPER_MEM": mem, "HYPER_GPUS": ",".join(placement.gpus)}
    if "OMP_NUM_THREADS" not in job.env:
        found["OMP_NUM_THREADS"] = cpus
    if placement.gpus or gpus_here:
        found |= {name: ",".join(placement.gpus) for name in GPU_VARIABLES}
    compat = job.job_options().get("compat", [])
    if "slurm" in compat:
        found |= {"SLURM_CPUS_PER_TASK": cpus, "SLURM_CPUS_ON_NODE": cpus,
                  "SLURM_MEM_PER_NODE": mem, "SLURM_NTASKS": "1",
                  "SLURM_NNODES": "1"}  # fmt: skip
        if placement.gpus:
            found["SLURM_JOB_GPUS"] = found["SLURM_STEP_GPUS"] = ",".join(placement.gpus)
    if "pbs" in compat:
        found |= {"NCPUS": cpus, "PBS_NCPUS": cpus, "PBS_NUM_PPN": cpus}
    if "lsf" in compat:
        found |= {"LSB_DJOB_NUMPROC": cpus, "LSB_MAX_NUM_PROCESSORS": cpus}
    return found


def job_umask(job: ClaimedJob) -> int | None:
    """The umask the job was submitted with, which it runs with and its -o/-e files are
    made with (as sbatch records it and slurmd applies it); None when it did not say."""
    said = job.env.get(UMASK_VARIABLE, "")
    octal = 0 < len(said) <= 4 and all(digit in "01234567" for digit in said)
    return int(said, 8) & 0o777 if octal else None


def output_files(
    job: ClaimedJob, cwd: Path, user: str = "", umask: int | None = None
) -> dict[LogKind, BinaryIO]:
    """Open the job's -o/-e files (Slurm's rule: without -e, stderr joins stdout), made
    as the job's `umask` says (the worker's own without one). The first attempt starts
    them afresh; later attempts append."""
    options = job.job_options()
    stdout, stderr = options.get("stdout"), options.get("stderr")
    if not job.definition_spec.get("enable_qlog", True) and not stdout:
        stdout = "hyper-%j.out"  # output is not sent to the host: keep it here
    if options.get("join") or (stdout and not stderr):
        stderr = None
        joined = True
    else:
        joined = False
    first = job.attempt <= 1
    names: dict[str, Any] = {
        "job_id": job.id,
        "array_id": job.array_id or job.id,
        "index": job.array_index,
        "name": job.name,
        "user": user or _worker_user(),  # the job's (%u), where it runs as another
    }
    paths = {
        kind: cwd / expand_output_pattern(pattern, **names)
        for kind, pattern in ((LogKind.STDOUT, stdout), (LogKind.STDERR, stderr))
        if pattern
    }
    if joined and LogKind.STDOUT in paths:
        paths[LogKind.STDERR] = paths[LogKind.STDOUT]
    files: dict[LogKind, BinaryIO] = {}
    opened: dict[Path, BinaryIO] = {}  # `-o f -e f` share one handle
    try:
        for kind, path in paths.items():
            if path not in opened:
                path.parent.mkdir(parents=True, exist_ok=True)
                mode = None if umask is None else 0o666 & ~umask
                opened[path] = open_output(path, first, mode)
            files[kind] = opened[path]
    except OSError:
        close_all(files)
        raise
    return files


@functools.cache
def _worker_user() -> str:
    """The worker's user name, looked up once (a job run as another user has its own)."""
    return getpass.getuser()


def open_output(path: Path, first: bool, mode: int | None = None) -> BinaryIO:
    """An -o/-e file, started afresh (`first`) or not, that appends (every writer to it
    appends: the job writes its stdout into it itself, hyper.worker.pump), and that the
    worker may read back (the kept part of what the job wrote there) where it may. One
    it makes has `mode` (the job's umask's), else what the worker's umask leaves."""
    owners = _shared_folder_owners(path)
    # another user's file is refused before anything of it is cut: there, the open never
    # truncates, its owner is looked at first
    truncate = first and owners is not None
    flags = os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | (os.O_TRUNC if first and not truncate else 0)
    if owners is not None:
        flags |= os.O_NOFOLLOW  # a link of its owners' is followed: see _shared_folder_owners
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        regular = True
    try:
        try:
            if not regular:  # /dev/null, a FIFO...
                raise PermissionError
            fd = _create(path, os.O_RDWR | flags, mode)
        except PermissionError:  # a file the worker may write and not read: it is written
            # without waiting for a FIFO's reader (ENXIO: none), then writes that wait for it
            fd = _create(path, os.O_WRONLY | os.O_NONBLOCK | flags, mode)
            os.set_blocking(fd, True)
    except OSError as error:
        if owners is not None and error.errno == errno.ELOOP:
            raise PermissionError(
                errno.EACCES,
                "another user's link in a folder all may write (not followed)",
                str(path),
            ) from None
        raise
    if owners is not None and os.fstat(fd).st_uid not in owners:
        os.close(fd)
        raise PermissionError(
            errno.EACCES, "another user's file in a folder all may write (not written)", str(path)
        )
    if truncate and stat.S_ISREG(os.fstat(fd).st_mode):
        os.ftruncate(fd, 0)
    try:
        return cast(BinaryIO, os.fdopen(fd, "ab"))
    except BaseException:
        os.close(fd)
        raise


def _shared_folder_owners(path: Path) -> tuple[int, int] | None:
    """Who may own an output file in a sticky folder that every user may write (/tmp),
    as the kernel's protected_symlinks and protected_regular would have it where a
    machine does not set them: the worker's user and the folder's owner. Another user's
    link there was followed (a root-run host overwrote /etc's files), and another user's
    file written into. None: not such a folder, or a link of those owners' there, which
    is followed as the kernel follows it (no other user may replace it in such a folder)."""
    try:
        folder = os.stat(path.parent)
    except OSError:
        return None
    if not (folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH):
        return None
    owners = (os.geteuid(), folder.st_uid)
    try:
        found = os.lstat(path)
    except OSError:
        return owners  # made here, never through a link planted meanwhile (O_NOFOLLOW)
    return None if stat.S_ISLNK(found.st_mode) and found.st_uid in owners else owners


def _create(path: Path, flags: int, mode: int | None) -> int:
    """os.open, an existing file as it is; one made here has exactly `mode` (the worker's
    own umask does not take from it), or 0o666 less the worker's umask without one."""
    if mode is None:
        return os.open(path, flags, 0o666)
    try:
        return os.open(path, flags & ~os.O_CREAT)
    except FileNotFoundError:
        try:
            fd = os.open(path, flags | os.O_EXCL, mode)
        except FileExistsError:  # a link to no file yet (O_EXCL never follows one)
            return os.open(path, flags, mode)
        os.fchmod(fd, mode)
        return fd


def command(
    job: ClaimedJob, cwd: Path, env: dict[str, str], workdir: Path, region: str
) -> tuple[list[str], Path]:
    """The command that runs the job's script: itself (its shebang), bash, or a
    container of the definition's image."""
    script = job.script or ""
    path = workdir / f"job-{job.id}.{job.attempt}.sh"
    path.write_text(script)
    path.chmod(0o755)
    if job.image:
        tool = container_tool()
        if tool is None:
            raise OSError("the definition runs jobs in a container: install docker or podman")
        job_variables = sorted(set(env) - set(os.environ) | set(job.env))
        command = container_command(tool, job, path, cwd, job_variables, region)
        return command, path
    if script.startswith("#!"):
        return [str(path)], path
    return ["/bin/bash", str(path)], path


def open_beneath(folder: Path, path: str) -> int:
    """A file descriptor of `path` (relative) in `folder`, opened read-only without
    following a link at any step of the way: a job may have made any of them a link to
    what its worker may read and it may not. OSError when there is no such file."""
    parts = [p for p in PurePosixPath(path).parts if p != "."]
    if not parts or path.startswith("/") or ".." in parts:
        raise OSError(errno.EINVAL, f"not a path within the job's folder: {path}")
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        # non-blocking: a FIFO the job left opens at once (and is then no regular file)
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    finally:
        os.close(directory)


def address_space(job: ClaimedJob) -> int | None:
    """The job's memory limit as address space (RLIMIT_AS) in bytes, if it has one and no
    image (containers get theirs from the container tool)."""
    mib = job.definition_spec.get("memory_limit_mib")
    return int(mib) * 2**20 if mib and not job.image else None


def limit_memory(pid: int, limit: int | None) -> None:
    """Set `limit` (address_space) on the job's first process right after it starts, so
    what that process starts later inherits it. Set from outside rather than in a
    preexec hook, which would cost a slower fork for every job; a script that forks
    within microseconds of starting could escape it. (A job run as another user sets it
    on itself, as root, before it drops root: hyper.worker.asuser.)"""
    if limit is not None:
        with contextlib.suppress(ProcessLookupError):
            resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
