"""Running one job on a worker, in a thread of its own: its start (in its cgroup, on its
CPUs), its watch (output, lease, time limit, memory, cancel, fencing), its end (every
process of it, its files) and its report. Several run at once; one starts at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hyper import output
from hyper.client import HostClient
from hyper.commands import run as run_command
from hyper.errors import (
    EXIT_OUT_OF_MEMORY,
    EXIT_TIME_LIMIT,
    CommandFailed,
    HostFailure,
    HostUnreachable,
    HyperError,
)
from hyper.jobs import MAX_FILE_BYTES, LogKind
from hyper.messages import ClaimedJob, Ending, ending
from hyper.worker import identity, prepare
from hyper.worker.container import container_name, container_tool
from hyper.worker.lease import LeaseKeeper, clock
from hyper.worker.options import LEASE_MARK, WorkerOptions
from hyper.worker.placement import Placement, pin
from hyper.worker.pump import Direct, OutputPump, direct_stdout
from hyper.worker.reaper import (
    ENTER_BY_BASH_ENV,
    EXIT_NOT_ENTERED,
    OUTSIDE_ITS_CGROUP,
    JobCgroup,
    cgroup_parent,
    kill_descendants,
    kill_tree,
    read_whole,
    reaper_command,
)
from hyper.worker.spool import Spool
from hyper.worker.usage import METRICS_SECONDS, MemoryWatch, metrics_every

KILL_GRACE_SECONDS = 0.5  # SIGTERM, then SIGKILL: qdel must end a job within 2 s
# output left at a job's end that goes with its final report rather than a call of its own
# (well within the 64 KiB a final report may carry)
CARRY_BYTES = 16 * 1024
LOOP_SECONDS = 0.25  # how often the worker looks at a running job's limits and lease
# a worker that fences itself stops its job when the host has not renewed its lease for
# this share of the lease: the job is gone (SIGTERM, SIGKILL) before the host may retry it
FENCE_SHARE = 2 / 3
# a job's first process not in its cgroup this long after its start is stopped: it never
# entered (the way in was taken from it). Before that it may still be entering: the
# kernel takes a while to move a process into a cgroup on a busy or idle machine
ENTER_SECONDS = 5.0


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Attempt:
    """A running attempt of a job: what the worker holds of it until its end."""

    job: ClaimedJob
    process: subprocess.Popen[bytes]
    cgroup: JobCgroup | None
    files: dict[LogKind, BinaryIO]
    script: Path
    watch: MemoryWatch
    tree: bool = False  # it runs under a keeper of its own processes (hyper.worker.jobreaper)
    direct: Direct | None = None  # its stdout goes straight to its -o file
    spool: Spool | None = None
    pump: OutputPump | None = None
    keeper: LeaseKeeper | None = None
    torn_down: bool = False


@dataclass(frozen=True)
class Start:
    """How a job is to start: where it sits, since when its lease counts, whether the
    worker has GPUs, and whether other jobs may run beside it."""

    placement: Placement
    claimed_at: float | None = None
    gpus_here: bool = False
    beside: bool = False
    user: identity.JobUser | None = None  # another user than the worker's (identity.job_user)


@dataclass
class Verdict:
    """How the worker ended a job (None: the job ended by itself)."""

    reason: str | None = None
    exit_code: int | None = None
    lost: bool = False  # its lease is someone else's: nothing is reported


class JobRunner:
    """Runs the jobs of one worker, each called from a thread of its own. `running` tells
    how many jobs the worker runs (under its lock): a job that ends alone sweeps every
    process the worker has left (its orphans)."""

    def __init__(
        self,
        client: HostClient,
        options: WorkerOptions,
        machine_cpus: list[int],
        running: Callable[[], int],
    ) -> None:
        self.client = client
        self.options = options
        self.machine_cpus = machine_cpus
        self.running = running
        self.spawn = threading.Lock()  # one job starts at a time (its CPUs)
        self.stopping = False  # SIGTERM: nothing starts any more
        self.cgroups = options.cgroups  # a cgroup v2 of its own for each job, where writable
        # read once: the worker's own environment does not change once it runs jobs, and
        # decoding os.environ again costs a short job more than copying a dict
        self.environment = prepare.worker_environment()

    def patiently(self, call: Callable[..., Any], *args: Any) -> Any:
        """Repeat a call while the host is down or failing, up to the patience limit."""
        deadline = time.monotonic() + self.options.patience_seconds
        while True:
            try:
                return call(*args)
            except (HostUnreachable, HostFailure):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def run_job(
        self,
        job: ClaimedJob,
        placement: Placement,
        *,
        claimed_at: float | None = None,
        gpus_here: bool = False,
        beside: bool = False,
    ) -> Ending | None:
        """Run one job to its end; return its report (None when its lease was lost).
        A job with a package runs in a folder of its own, made for this attempt and
        removed after it; what it collects is sent to the host before its end is.
        A job that may run `beside` others, with no cgroup, starts under a keeper of its
        own processes: what it leaves behind ends with it, while the others run on."""
        job_id, attempt = job.key
        try:
            user = identity.job_user(
                str(job.definition_spec.get("user") or ""), in_image=self.options.in_image
            )
        except identity.UnknownUser as error:
            return ending(job_id, attempt, 1, f"cannot start: {error}", [])
        start = Start(placement, claimed_at, gpus_here, beside, user)
        package = job.job_options().get("package")
        if not package and user is None:
            submit_dir = job.submit_dir
            cwd = self.options.workdir
            if submit_dir and Path(submit_dir).is_dir():
                cwd = Path(submit_dir)  # where it was submitted (as Slurm does), if on this machine
            report = self._run(job, cwd, self.options.workdir, start)
            return self._collected(job, report, cwd)
        # a folder of its own: its package's, or, for a job of another user, one it may write
        folder = self.options.workdir / f"job-{job_id}.{attempt}"
        shutil.rmtree(folder, ignore_errors=True)  # what a killed worker left: start afresh
        try:
            try:
                if package:
                    self._unpack(package, job_id, folder)
                else:
                    folder.mkdir(parents=True)
            except prepare.PackageError as error:
                return ending(job_id, attempt, 1, str(error), [])
            report = self._run(job, folder, folder, start)
            return self._collected(job, report, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _unpack(self, key: str, job_id: int, folder: Path) -> None:
        try:
            data = self.patiently(self.client.get_job_package, self.options.worker_id, job_id)
        except HyperError as error:
            raise prepare.PackageError(f"package {key!r} could not be fetched: {error}") from None
        try:
            prepare.unpack_package(data, folder)
        except (tarfile.TarError, OSError, prepare.PackageError) as error:
            raise prepare.PackageError(f"package {key!r} could not be unpacked: {error}") from None

    def _collected(self, job: ClaimedJob, report: Ending | None, cwd: Path) -> Ending | None:
        """The report, once the files the job collects (those it made, as regular files)
        are kept on the host as jobs/<id>/<path>; a file that could not be sent gets a
        line in the job's stderr log. Each is opened without following any link on its
        way: whatever the job left there, the worker reads only the job's own files."""
        paths = job.job_options().get("collect") or []
        if report is None or not paths:
            return report
        notes = []
        for path in paths:
            try:
                file = os.fdopen(prepare.open_beneath(cwd, path), "rb")
            except OSError:
                continue  # the job did not make it (or made it a link)
            with file:
                info = os.fstat(file.fileno())
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > MAX_FILE_BYTES:
                    notes.append(f"{path}: {info.st_size} bytes, above {MAX_FILE_BYTES} bytes")
                    continue
                try:
                    data = file.read()
                except OSError as error:
                    notes.append(f"{path}: {error}")
                    continue
            try:
                self.patiently(self.client.put_job_file, self.options.worker_id, job.id, path, data)
            except (HyperError, OSError) as error:
                notes.append(f"{path}: {error}")
        text = "".join(f"hyper: not collected: {note}\n" for note in notes)
        if text:
            report["output"] = [
                *report.get("output", []),
                {"kind": LogKind.STDERR.value, "text": text},
            ]
        return report

    # one attempt, from its start to its report -------------------------------------------

    def _run(self, job: ClaimedJob, cwd: Path, workdir: Path, start: Start) -> Ending | None:
        if self.options.in_image:
            job = dataclasses.replace(job, image=None)  # no container inside the container
        started = self._start(job, cwd, workdir, start)
        if not isinstance(started, Attempt):
            return started
        run = started
        try:  # a spool the job cannot reach, where it runs as another user
            folder = self.options.workdir if start.user else workdir
            run.spool = self._spool(job, folder, files=bool(run.files))
            run.pump = OutputPump(run.process, run.files, run.spool, run.direct)
            run.keeper = self._keeper(job, run, start.claimed_at)
            verdict = self._watch(run, start.placement)
            return self._finish(run, verdict)
        except BaseException:
            if not run.torn_down:  # whatever failed in its thread, nothing of the job goes on
                self._abandon(run)
            raise

    def _start(
        self, job: ClaimedJob, cwd: Path, workdir: Path, start: Start
    ) -> Attempt | Ending | None:
        """Start the job's first process, on its CPUs and in its cgroup (where there is
        one); its report when it could not start, None when the worker is stopping."""
        job_id, attempt = job.key
        placement = start.placement
        address_space = prepare.address_space(job)  # set by the user switch, or from here
        env = prepare.environment(job, workdir, self.options.worker_id, self.environment)
        env.update(prepare.resource_variables(job, placement, start.gpus_here))
        if start.user is not None:
            env.update(start.user.variables(cwd))
        try:
            options = self.options
            command, script = prepare.command(job, cwd, env, options.workdir, options.region)
        except OSError as exc:
            return ending(job_id, attempt, 1, f"cannot start: {exc}", [])
        umask = prepare.job_umask(job)
        try:
            user = start.user.variables(cwd)["USER"] if start.user else ""
            files = prepare.output_files(job, cwd, user, umask)
        except OSError as exc:
            script.unlink(missing_ok=True)
            return ending(job_id, attempt, 1, f"cannot open its output file: {exc}", [])
        if start.user is not None:  # its folder and files, once the worker made them
            try:
                start.user.hand_over(cwd)
            except OSError as exc:
                prepare.close_all(files)
                script.unlink(missing_ok=True)
                return ending(job_id, attempt, 1, f"cannot give its folder to its user: {exc}", [])
            # the last step before the job, as root: it takes the memory limit on itself
            command = start.user.command(command, address_space)
        cgroup = self._cgroup(job_id, attempt)
        request = placement.request
        held = cgroup is not None and cgroup.limit(request.cpus, request.mem_mib)
        if cgroup is not None:  # its first process steps into it (the worker never does)
            command = cgroup.wrap(command, env, self._enter_file())
        tree = start.beside and cgroup is None and not job.image
        if tree:
            command = reaper_command(command)
        # one job starts at a time (a job ending alone sweeps the worker's orphans meanwhile);
        # this thread takes its CPUs, which the job's first process inherits
        with self.spawn:
            if self.stopping:  # SIGTERM: nothing starts any more
                prepare.close_all(files)
                script.unlink(missing_ok=True)
                if cgroup is not None:
                    cgroup.remove()
                return None
            direct = direct_stdout(files)  # no pipe and no copy: the job writes its -o file
            pinned = bool(placement.cpus) and pin(placement.cpus)
            try:
                process = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=direct.child if direct is not None else subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    umask=-1 if umask is None else umask,
                )
                placement.group, placement.cgroup = process.pid, cgroup
            except OSError as exc:
                prepare.close_all(files)
                script.unlink(missing_ok=True)
                if cgroup is not None:
                    cgroup.remove()
                return ending(job_id, attempt, 127, f"could not start the script: {exc}", [])
            finally:
                if pinned:
                    pin(self.machine_cpus)
                if direct is not None:
                    direct.close_child()  # the job has its own copy
        placement.tree = tree
        if self.stopping:  # SIGTERM came as it started (the handler saw no group)
            placement.killed = True
            self.end_everything(process.pid, cgroup, alone=True)
        if start.user is None:
            prepare.limit_memory(process.pid, address_space)
        watch = MemoryWatch(process.pid, request.mem_mib, cgroup, held, below=tree)
        return Attempt(job, process, cgroup, files, script, watch, tree, direct)

    def _cgroup(self, job_id: int, attempt: int) -> JobCgroup | None:
        """The attempt's own cgroup, under the worker's (looked for at its first job)."""
        home = self._cgroup_home if self.cgroups else None
        return JobCgroup.make(self.options.worker_id, job_id, attempt, home) if home else None

    @functools.cached_property
    def _cgroup_home(self) -> Path | None:
        """The worker's own cgroup, where its jobs' go (None without cgroup v2)."""
        return cgroup_parent()

    def _enter_file(self) -> Path | None:
        """The file a bash script's shell reads to enter its cgroup (ENTER_BY_BASH_ENV),
        hidden in the worker's folder (a job cleaning its folder with `rm *` leaves it);
        written again, whole at once, if anything changed it. None when it cannot be
        written (jobs then enter through a shell of their own)."""
        path = self.options.workdir / ".enter-cgroup.sh"
        with contextlib.suppress(OSError):
            if read_whole(str(path)) == ENTER_BY_BASH_ENV.encode():
                return path
        draft = path.with_name(f"{path.name}.{threading.get_ident()}")
        try:
            draft.write_text(ENTER_BY_BASH_ENV)
            os.replace(draft, path)  # a bash starting meanwhile reads the old file or this
        except OSError:
            draft.unlink(missing_ok=True)
            return None
        return path

    def _spool(self, job: ClaimedJob, workdir: Path, files: bool) -> Spool | None:
        if not job.definition_spec.get("enable_qlog", True):
            return None
        limit = output.limit_bytes(job.definition_spec)
        return Spool(workdir / f"spool-{job.id}.{job.attempt}", limit, files=files)

    def _keeper(self, job: ClaimedJob, run: Attempt, claimed_at: float | None) -> LeaseKeeper:
        """The job's lease keeper, started; with the worker's lease mark written where it
        fences itself (what the machine's node watches, in case the worker stalls)."""
        options = self.options
        keeper = LeaseKeeper(
            self.client,
            options.worker_id,
            job.id,
            job.attempt,
            run.process.pid,
            run.spool,
            options.heartbeat_seconds,
            metrics_every(run.process.pid, METRICS_SECONDS, below=run.tree),
            chores=lambda client: None,  # the run loop reports what ended meanwhile
            mark=options.workdir / LEASE_MARK if options.self_fence else None,
        )
        if claimed_at is not None:
            keeper.renewed = claimed_at
        if options.self_fence:
            with contextlib.suppress(OSError):
                (options.workdir / LEASE_MARK).write_text(f"{self._fence_after(job)}\n")
        return keeper  # its thread starts once the job outlives its first look (_watch)

    def _fence_after(self, job: ClaimedJob) -> float | None:
        return job.lease_seconds * FENCE_SHARE if self.options.self_fence else None

    def _watch(self, run: Attempt, placement: Placement) -> Verdict:
        """Take the job's output until it ends; end it when its time is up, its memory
        is over, it was cancelled, or its lease was lost or could not be renewed."""
        assert run.pump is not None and run.keeper is not None
        pump, keeper, process, job = run.pump, run.keeper, run.process, run.job
        fence_after = self._fence_after(job)
        time_limit = job.time_limit
        deadline = time.monotonic() + time_limit if time_limit else None
        kill_at: float | None = None
        verdict = Verdict()
        started = time.monotonic()
        entering = run.cgroup is not None  # until its first process is seen in its cgroup
        while True:
            wait = min(self.options.heartbeat_seconds, LOOP_SECONDS)
            if deadline is not None and kill_at is None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            if pump.wait(wait):
                placement.exited = True
                return verdict
            if keeper.ident is None:  # the first look at a job still running
                keeper.start_after(time.monotonic() - started)
            if entering and run.cgroup is not None:
                entering = run.cgroup.holds(process.pid) is False
                if entering and time.monotonic() - started > ENTER_SECONDS:
                    # it never entered its cgroup (the way in was taken from it): it
                    # runs no further than a job that could not enter
                    verdict.reason, verdict.exit_code = OUTSIDE_ITS_CGROUP, EXIT_NOT_ENTERED
                    self.end_everything(process.pid, run.cgroup, tree=run.tree)
                    kill_at, entering = time.monotonic(), False
                    continue
            if kill_at is not None:
                if time.monotonic() >= kill_at:
                    self.end_everything(process.pid, run.cgroup, tree=run.tree)
                continue
            over = run.watch.over()
            if over is not None:
                verdict.reason, verdict.exit_code = over, EXIT_OUT_OF_MEMORY
                self.end_everything(process.pid, run.cgroup, tree=run.tree)  # memory is short
                kill_at = time.monotonic()
                continue
            if deadline is not None and time.monotonic() >= deadline:
                verdict.reason = f"time limit of {time_limit} s reached"
                verdict.exit_code = EXIT_TIME_LIMIT
            elif keeper.lost.is_set():
                verdict.reason, verdict.lost = "its lease was lost", True  # someone else's now
            elif keeper.cancel.is_set():
                verdict.reason = "cancelled"
            elif fence_after is not None and clock() - keeper.renewed > fence_after:
                silent = round(clock() - keeper.renewed)
                verdict.reason = (
                    f"stopped by its worker: the host did not renew its lease for {silent} s"
                )
            else:
                continue
            kill_group(process.pid, signal.SIGTERM)
            self.stop_container(job)
            kill_at = time.monotonic() + KILL_GRACE_SECONDS

    def _finish(self, run: Attempt, verdict: Verdict) -> Ending | None:
        """The script has ended: stop what it left behind (its pipes close then), whatever
        session, process group or environment it has; then its report."""
        assert run.pump is not None and run.keeper is not None
        keeper = run.keeper
        self.end_everything(run.process.pid, run.cgroup, tree=run.tree)
        if verdict.exit_code is None and run.watch.killed_by_kernel():
            verdict.reason, verdict.exit_code = run.watch.reason(), EXIT_OUT_OF_MEMORY
        run.pump.finish(timeout=2.0)
        if verdict.exit_code == EXIT_TIME_LIMIT:
            self._say_in_stderr(run, prepare.time_limit_notice(run.job, time.time()))
        if run.cgroup is not None:
            run.cgroup.remove()
        prepare.close_all(run.files)
        run.script.unlink(missing_ok=True)
        keeper.stop()
        keeper.join()
        run.torn_down = True
        try:
            patience = self.options.patience_seconds
            carried = None if verdict.lost else keeper.flush(patience, CARRY_BYTES)
        finally:
            if run.spool is not None:
                run.spool.close()
        if carried is None:
            return None
        exit_code = verdict.exit_code
        if exit_code is None:
            code = run.process.returncode
            exit_code = code if code >= 0 else 128 - code
        job_id, attempt = run.job.key
        report = ending(job_id, attempt, exit_code, verdict.reason, carried)
        report["usage"] = run.watch.usage()
        return report

    @staticmethod
    def _say_in_stderr(run: Attempt, line: str | None) -> None:
        """A line at the end of the job's stderr, in its -e (or joined -o) file and its log:
        what its scheduler would have written there (a Slurm job's TIME LIMIT line)."""
        if not line:
            return
        handle = run.files.get(LogKind.STDERR)
        if handle is not None:
            with contextlib.suppress(OSError):  # a full disk: the log still says it
                handle.write(line.encode())
                handle.flush()
        if run.spool is not None:
            run.spool.write(LogKind.STDERR, line)

    def _abandon(self, run: Attempt) -> None:
        """End a job whose thread failed: its processes, its lease keeper, its files."""
        with contextlib.suppress(Exception):
            self.end_everything(run.process.pid, run.cgroup, tree=run.tree)
            run.process.wait(timeout=KILL_GRACE_SECONDS * 4)
        if run.keeper is not None:
            run.keeper.stop()
            run.keeper.join()
        with contextlib.suppress(Exception):
            if run.pump is not None:
                run.pump.finish(timeout=2.0)
        if run.cgroup is not None:
            run.cgroup.remove()
        prepare.close_all(run.files)
        run.script.unlink(missing_ok=True)
        if run.spool is not None:
            run.spool.close()

    def end_everything(
        self,
        group: int,
        cgroup: JobCgroup | None,
        *,
        alone: bool | None = None,
        tree: bool = False,
    ) -> None:
        """SIGKILL the job's processes: those below its keeper (`tree`), its process
        group, its cgroup and, when it is the worker's only job (`alone`; by default:
        whether it runs no other), every descendant of this worker (a subreaper: orphans
        of the job were re-parented here; beside other jobs, with neither a cgroup nor a
        keeper, they are swept once the worker is quiet)."""
        if alone is None:
            # no job starts while this one decides and sweeps: a job placed meanwhile
            # counts, and one placed after waits for the spawn lock
            with self.spawn:
                self.end_everything(group, cgroup, alone=self.running() <= 1, tree=tree)
            return
        if tree:
            kill_tree(group)  # while its keeper lives, every process of the job is below it
        kill_group(group, signal.SIGKILL)
        if cgroup is not None:
            cgroup.kill(spare=group)
        if alone:
            kill_descendants(spare=group)  # the job's first process is reaped by subprocess

    def stop_container(self, job: ClaimedJob) -> None:
        tool = container_tool() if job.image else None
        if tool:
            with contextlib.suppress(CommandFailed):  # it may have ended already
                run_command([tool, "kill", container_name(job)], timeout=10)
