"""The worker agent: the only code that runs users' scripts, the same on every provider.

It claims jobs of one (queue, definition), runs each in its own process group
(respecting the script's shebang, bash otherwise), streams stdout and stderr
to the host while the job runs, heartbeats, stops the job when the host says
it was cancelled, reports the exit code, and exits after an idle timeout.

A worker has the shape of its definition (vCPUs, memory, GPUs: hyper.capacity) and
runs as many jobs at once as fit in what it has left, each in a thread of its own:
it claims only jobs that fit (the host passes over the others), pins each to CPUs of
its own (affinity, and cgroup v2 cpu.max where writable), hands it GPUs no running job
holds, and holds it to its memory (cgroup v2 memory.max where the machine has it, else
the worker watches the job's resident memory): a job over it ends "out of memory"
with exit code 125 (EXIT_OUT_OF_MEMORY).

A job with a package runs in a fresh folder of the worker's, where the package (a
gzip'd tar archive kept by the host) is unpacked first; the files a job collects are
sent to the host when it ends, before its end is reported.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import fcntl
import getpass
import io
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from hyper import capacity, machine, output, tarballs
from hyper.client import HostClient
from hyper.commands import run as run_command
from hyper.errors import (
    EXIT_OUT_OF_MEMORY,
    EXIT_TIME_LIMIT,
    CommandFailed,
    Conflict,
    HostFailure,
    HostUnreachable,
    HyperError,
)
from hyper.jobs import MAX_FILE_BYTES, SECRET_VARIABLES, LogKind
from hyper.jobspec import expand_output_pattern
from hyper.worker.container import container_command, container_name, container_tool
from hyper.worker.lease import LeaseKeeper, clock
from hyper.worker.reaper import JobCgroup, become_subreaper, kill_descendants
from hyper.worker.spool import Spool

# a job's stdout and stderr pipes, and the most read from one at once: larger pipes count
# against the user's pipe-user-pages-soft (64 MiB), past which new pipes get one page
PIPE_BYTES = 256 * 1024
COALESCE_BYTES = 64 * 1024  # a read shorter than this waits COALESCE_SECONDS for more
COALESCE_SECONDS = 0.002
KILL_GRACE_SECONDS = 0.5  # SIGTERM, then SIGKILL: qdel must end a job within 2 s
METRICS_SECONDS = 5.0
SHORT_JOB_SECONDS = 0.05  # jobs shorter than this are claimed and reported in batches
PREFETCH_MAX = 16
# output left at a job's end that goes with its final report rather than a call of its own
# (well within the 64 KiB a final report may carry)
CARRY_BYTES = 16 * 1024
LOOP_SECONDS = 0.25  # how often the worker looks at a running job's limits and lease
DEFAULT_LEASE_SECONDS = 30.0  # when the host does not say
# a worker that fences itself stops its job when the host has not renewed its lease for
# this share of the lease: the job is gone (SIGTERM, SIGKILL) before the host may retry it
FENCE_SHARE = 2 / 3
# while a self-fencing worker runs a job: touched at each renewal, holding the seconds
# after which its node ends it (and the job) if it has not been touched (hyper.worker.node)
LEASE_MARK = "lease"
# under a walltime (a pilot), a job with no time limit is taken to need this long
DEFAULT_TIME_LIMIT_SECONDS = 600
# a claimed job waiting for room on its worker goes back to the host after this share of
# its lease (its lease is not renewed while it waits)
HOLD_SHARE = 1 / 3
STOP_WAIT_SECONDS = 5.0  # on SIGTERM: how long the jobs that had ended get to be reported
MEMORY_CHECK_SECONDS = 0.25  # how often the worker looks at a job's memory (no cgroup)
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                 "ZE_AFFINITY_MASK")  # fmt: skip


@dataclass
class Placement:
    """Where a running job is on its worker: what it asked, the CPUs and GPUs it has."""

    request: capacity.Request
    cpus: tuple[int, ...]
    gpus: tuple[str, ...]
    group: int | None = None  # its first process (and process group)
    cgroup: JobCgroup | None = None
    report: dict[str, Any] | None = None
    done: bool = False
    short: bool = False
    exited: bool = False  # its script ended (before any SIGTERM of the worker)
    killed: bool = False  # ended by the worker's SIGTERM: not reported, its lease runs out


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    queue: str
    definition: str
    workdir: Path
    idle_seconds: float = 10.0
    heartbeat_seconds: float = 0.5
    lifetime_seconds: float | None = None
    region: str = ""  # where it runs: fills in `_REGION_` in image URIs
    patience_seconds: float = 120.0  # how long a running job's reports wait for a host that is down
    in_image: bool = False  # it runs in the definition's image already (a Batch container)
    # stop a running job itself when its lease cannot be renewed (False where the host
    # ends its workers' jobs itself: the local launcher, on the same machine)
    self_fence: bool = True
    # a pilot's: it starts only jobs whose time limit fits in what is left of this, and
    # hands the rest back and leaves when one does not
    walltime_seconds: float | None = None
    # what it has, when its machine said so on joining (else its definition's shape)
    machine_shape: capacity.Shape | None = None


class OutputPump:
    """Reads a child's stdout and stderr as they come, in the order they come, with no
    threads: the worker waits on the pipes and the process together (`wait`). What it
    reads goes to the job's -o/-e files (all of it) and to the spool (bounded), never to
    memory beyond one read."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        files: dict[LogKind, BinaryIO] | None = None,
        spool: Spool | None = None,
    ) -> None:
        self._process = process
        self._files = files or {}
        self._spool = spool
        self._selector = selectors.DefaultSelector()
        for stream, kind in ((process.stdout, LogKind.STDOUT), (process.stderr, LogKind.STDERR)):
            if stream is not None:
                # a larger pipe: a job writing fast waits less, and is read in fewer calls
                with contextlib.suppress(OSError, AttributeError):
                    fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                self._selector.register(stream.fileno(), selectors.EVENT_READ, (kind, decoder))

    def wait(self, timeout: float) -> bool:
        """Take output for up to `timeout` seconds; True as soon as the process has ended."""
        deadline = time.monotonic() + timeout
        while self._process.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._selector.get_map():
                self._read(left)
                continue
            try:
                self._process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                return False
        return True

    def _read(self, timeout: float) -> None:
        ready = self._selector.select(timeout)
        short = bool(ready)
        for key, _ in ready:
            kind, decoder = key.data
            data = os.read(key.fd, PIPE_BYTES)
            short = short and 0 < len(data) < COALESCE_BYTES
            sink = self._files.get(kind)
            if data and sink is not None:
                sink.write(data)
                sink.flush()
            if self._spool is not None:
                if data.isascii() and not decoder.getstate()[0]:
                    if data:  # ASCII is UTF-8 as it is: no decoding and encoding again
                        self._spool.write_bytes(kind, data)
                else:
                    text = decoder.decode(data, final=not data)
                    if text:
                        self._spool.write(kind, text)
            if not data:
                self._selector.unregister(key.fd)
        if short:
            # a job writing fast in small pieces (stdio's 4 KiB) is read a pipeful at a
            # time rather than a piece per wake-up: its output waits at most this long
            time.sleep(COALESCE_SECONDS)

    def finish(self, timeout: float) -> None:
        """Read what is left until both pipes close (or `timeout`), then let them go."""
        deadline = time.monotonic() + timeout
        while self._selector.get_map() and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        self._selector.close()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()


class PackageError(Exception):
    """A job's package could not be fetched or unpacked: the attempt ends with exit 1."""


def unpack_package(data: bytes, folder: Path) -> None:
    """Unpack a gzip'd tar archive into `folder` (made here), nothing outside it."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        try:
            tarballs.extract(archive, folder)
        except tarballs.UnsafeArchive as error:
            raise PackageError(str(error)) from None


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _ending(
    job_id: int, attempt: int, exit_code: int, reason: str | None, output: list[Any]
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "attempt": attempt,
        "exit_code": exit_code,
        "reason": reason,
        "output": output,
    }


def compat_variables(scheduler: str, env: dict[str, str]) -> dict[str, str]:
    """What a script written for another scheduler reads about its job."""
    job_id, name = env["HYPER_JOB_ID"], env["HYPER_JOB_NAME"]
    array_id, index = env.get("HYPER_ARRAY_JOB_ID"), env.get("HYPER_ARRAY_INDEX")
    submit_dir, attempt = env["HYPER_SUBMIT_DIR"], int(env["HYPER_ATTEMPT"])
    if scheduler == "slurm":
        found = {
            "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id, "SLURM_JOB_NAME": name,
            "SLURM_SUBMIT_DIR": submit_dir, "SLURM_RESTART_COUNT": str(attempt - 1),
            "SLURM_JOB_PARTITION": env["HYPER_QUEUE"],
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


def _close_all(files: dict[LogKind, BinaryIO]) -> None:
    for handle in set(files.values()):
        handle.close()


def _stamped(jobs: list[dict[str, Any]], sent: float) -> list[dict[str, Any]]:
    """Claimed jobs, marked with when their claim was asked for (their leases count from
    no earlier than that)."""
    for job in jobs:
        job["_claimed_at"] = sent
    return jobs


def _metrics_every(pid: int, seconds: float) -> Callable[[], dict[str, float] | None]:
    """The job's metrics, at most once every `seconds` (None in between)."""
    last = [time.monotonic()]

    def sample() -> dict[str, float] | None:
        if time.monotonic() - last[0] < seconds:
            return None
        last[0] = time.monotonic()
        return _metrics(pid)

    return sample


def _metrics(pid: int, *, host: bool = True) -> dict[str, float] | None:
    try:
        import psutil

        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        rss = 0
        cpu = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
        if not host:
            return {"cpu_seconds": round(cpu, 3), "rss_mib": round(rss / 2**20, 2)}
        memory = psutil.virtual_memory()
        return {
            "cpu_seconds": round(cpu, 3),
            "rss_mib": round(rss / 2**20, 2),
            "processes": float(len(processes)),
            "host_cpu_count": float(psutil.cpu_count() or 0),
            "host_cpu_percent": psutil.cpu_percent(interval=None),
            "host_memory_total_mib": round(memory.total / 2**20, 1),
            "host_memory_used_mib": round(memory.used / 2**20, 1),
            "host_memory_percent": memory.percent,
        }
    except Exception:  # a process that just ended has no metrics; that is fine
        return None


def _pin(cpus: tuple[int, ...]) -> bool:
    """Run this thread (and so the job it starts) on these CPUs only."""
    try:
        os.sched_setaffinity(0, cpus)
        return True
    except (OSError, ValueError):
        return False


class _MemoryWatch:
    """A job's memory and CPU time while it runs. Where its cgroup holds its memory
    (memory.max) the kernel ends it and this only tells why; elsewhere this ends it when
    its resident memory (all its processes) goes above what it asked for, looked at every
    MEMORY_CHECK_SECONDS (a job may go above it for that long)."""

    def __init__(self, pid: int, limit_mib: int, cgroup: JobCgroup | None, held: bool) -> None:
        self.pid, self.limit_mib, self.cgroup, self.held = pid, limit_mib, cgroup, held
        self.peak_mib = 0.0
        self.cpu_seconds = 0.0
        self._last = time.monotonic()

    def over(self) -> str | None:
        """Why the job must end now (None while it is within its memory)."""
        if time.monotonic() - self._last < MEMORY_CHECK_SECONDS:
            return None
        self._last = time.monotonic()
        sample = _metrics(self.pid, host=False)
        if sample is None:
            return None
        self.peak_mib = max(self.peak_mib, sample["rss_mib"])
        self.cpu_seconds = max(self.cpu_seconds, sample["cpu_seconds"])
        if not self.held and sample["rss_mib"] > self.limit_mib:
            return (
                f"out of memory: it used {sample['rss_mib']:.0f} MiB, above the"
                f" {self.limit_mib} MiB it asked for"
            )
        return None

    def killed_by_kernel(self) -> bool:
        return self.held and self.cgroup is not None and self.cgroup.oom_kills() > 0

    def reason(self) -> str:
        return f"out of memory: it reached the {self.limit_mib} MiB it asked for"

    def usage(self) -> dict[str, float] | None:
        """What it used, as sampled while it ran (None when it ended before a sample)."""
        if not (self.peak_mib or self.cpu_seconds):
            return None
        return {"peak_rss_mib": round(self.peak_mib, 1), "cpu_seconds": round(self.cpu_seconds, 2)}


class WorkerAgent:
    def __init__(self, client: HostClient, options: WorkerOptions) -> None:
        self.client = client
        self.options = options
        self.options.workdir.mkdir(parents=True, exist_ok=True)
        self._held_jobs: collections.deque[dict[str, Any]] = collections.deque()
        self._pending: list[dict[str, Any]] = []  # reports of ended jobs, not sent yet
        self._started_any = False
        # its machine's share when it said one, else known from the first job's definition
        self._shape: capacity.Shape | None = options.machine_shape
        self._running: dict[tuple[int, int], Placement] = {}  # (job id, attempt)
        self._lock = threading.Lock()  # guards the placements' state and the spawn
        self._spawn = threading.Lock()  # one job starts at a time (its cgroup, its CPUs)
        self._ended = threading.Event()  # a job thread finished
        self._machine_cpus = sorted(os.sched_getaffinity(0))
        self._sweep = False  # a job ended while others ran: its orphans wait for a quiet time
        self._stopping = False  # SIGTERM: running jobs were ended, their leases run out
        self._interruptible = False  # SIGTERM may leave the run loop (not its last steps)

    def stop_on_signal(self) -> None:
        """On SIGTERM, stop the running jobs' process groups too, then exit: their leases
        run out and the host retries them by policy."""

        def handler(signum: int, frame: Any) -> None:
            self._stopping = True  # before the groups are read: a job starting now sees it
            for placement in list(self._running.values()):
                if not placement.exited:
                    placement.killed = True  # its lease runs out: no report
                if placement.group is not None:
                    self._end_everything(placement.group, placement.cgroup, alone=True)
                if placement.cgroup is not None:
                    placement.cgroup.remove()
            if self._interruptible:  # never inside the final report and goodbye
                raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, handler)

    def _patiently(self, call: Any, *args: Any) -> Any:
        """Repeat a call while the host is down or failing, up to the patience limit."""
        deadline = time.monotonic() + self.options.patience_seconds
        while True:
            try:
                return call(*args)
            except (HostUnreachable, HostFailure):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    # what the worker has ------------------------------------------------------------

    def _learn_shape(self, job: dict[str, Any]) -> None:
        """The definition's shape; GPUs found on the machine when it declares none."""
        if self._shape is None:
            shape = capacity.shape_of(job.get("definition_spec") or {})
            if not shape.gpu_ids:
                shape = shape._replace(gpu_ids=machine.gpu_ids())
            self._shape = shape

    def _request(self, job: dict[str, Any]) -> capacity.Request:
        shape = self._shape or capacity.shape_of(job.get("definition_spec") or {})
        return capacity.effective((job.get("options") or {}).get("request"), shape)

    def _room(self) -> capacity.Request | None:
        """What is left for more jobs (None before the first job: the worker does not
        know its shape yet, and an empty worker has room for any job of its definition)."""
        if self._shape is None:
            return None
        room = self._shape.whole
        for placement in self._running.values():
            room = room.minus(placement.request)
        return room

    def _room_body(self, room: capacity.Request | None) -> dict[str, int] | None:
        """`room` as a claim says it, with the worker's whole when that is not its
        definition's shape (a machine's share, a worker of a job's own size)."""
        if room is None:
            return None
        body = room.as_dict()
        given = self.options.machine_shape
        if given is not None:
            body.update(of_cpus=given.cpus, of_mem_mib=given.mem_mib, of_gpus=len(given.gpu_ids))
        return body

    def _place(self, request: capacity.Request) -> Placement:
        """CPUs for the job: the machine's least used ones (a job never shares a CPU with
        another while the worker has CPUs to spare); GPUs no running job holds."""
        use = {cpu: 0 for cpu in self._machine_cpus}
        taken: set[str] = set()
        for placement in self._running.values():
            for cpu in placement.cpus:
                use[cpu] = use.get(cpu, 0) + 1
            taken.update(placement.gpus)
        order = sorted(use, key=lambda cpu: (use[cpu], cpu))
        cpus = tuple(sorted(order[: max(1, request.cpus)]))
        free = [g for g in (self._shape.gpu_ids if self._shape else ()) if g not in taken]
        return Placement(request, cpus, tuple(free[: request.gpus]))

    # the run loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Claim and run jobs until idle (or past its lifetime), as many at once as fit.
        Short jobs are taken and reported in batches, growing while jobs stay short: each
        report brings the next jobs back in the same round trip."""
        options = self.options
        born = time.monotonic()
        idle_since = born
        prefetch = 1
        become_subreaper()  # what a job leaves behind stays the worker's to end
        self._interruptible = True
        try:
            while True:
                ended = self._collect()
                if ended:
                    short = all(p.short for p in ended)
                    prefetch = min(prefetch * 2, PREFETCH_MAX) if short else 1
                if self._running or ended:
                    idle_since = time.monotonic()
                if not self._start_held(born):
                    break  # a pilot's walltime: what is held goes back as it leaves
                young = not options.lifetime_seconds or (
                    time.monotonic() - born < options.lifetime_seconds
                )
                room = self._room()
                has_room = room is None or (room.cpus > 0 and room.mem_mib > 0)
                if self._pending and (not self._held_jobs or len(self._pending) >= prefetch):
                    wanted = 0
                    if young and has_room and not self._held_jobs:
                        wanted = 1 if self._running else prefetch
                    self._held_jobs.extend(self._report(wanted, room))
                    continue
                if self._held_jobs:
                    self._hand_back_stale()
                    self._ended.wait(LOOP_SECONDS)
                    continue
                now = time.monotonic()
                if not self._running:
                    if options.lifetime_seconds and now - born > options.lifetime_seconds:
                        break
                    if options.idle_seconds - (now - idle_since) <= 0:
                        break
                if not young or not has_room:
                    self._ended.wait(LOOP_SECONDS)
                    continue
                # an idle worker holds nothing: when the host is gone it just leaves,
                # and the scheduler starts new workers once the host is back
                idle_left = options.idle_seconds - (now - idle_since)
                wait = 0.0 if self._running else round(max(0.0, min(idle_left, 10.0)), 3)
                sent = clock()
                try:
                    claimed = self.client.claim(
                        options.worker_id,
                        queue=options.queue,
                        definition=options.definition,
                        limit=1,
                        wait=wait,
                        room=self._room_body(room),
                    )
                except (HostUnreachable, HostFailure):
                    if not self._running:
                        raise
                    claimed = []  # the running jobs' keepers deal with the host
                self._held_jobs.extend(_stamped(claimed, sent))
                if not claimed and self._running:
                    self._ended.wait(LOOP_SECONDS * 4)
        except HyperError as error:
            print(f"worker {options.worker_id}: {error}", file=sys.stderr, flush=True)
            return 1
        finally:  # on SIGTERM too: what ended is reported, what was not started goes back
            self._interruptible = False
            with contextlib.suppress(HyperError):
                self._return_held()
            if self._stopping:  # the threads of the jobs it ended stop soon
                self._drain(until=time.monotonic() + STOP_WAIT_SECONDS)
            else:
                self._drain()  # jobs still running end as they end, and are reported
            with contextlib.suppress(HyperError):
                self._report(0, None)
            with contextlib.suppress(HyperError):
                self.client.worker_exit(options.worker_id)
        return 0

    def _start_held(self, born: float) -> bool:
        """Start the held jobs that fit, in order; False when a pilot's walltime has no
        room for the next one (the worker then leaves)."""
        while self._held_jobs:
            job = self._held_jobs[0]
            self._learn_shape(job)
            request = self._request(job)
            room = self._room()
            if room is not None and self._running and not request.fits(room):
                return True  # it waits for a running job to end
            if not self._fits(job, born):
                return False
            self._held_jobs.popleft()
            if not self._launch(job, request):
                return True  # it waits (and goes back once it waited too long)
        return True

    def _launch(self, job: dict[str, Any], request: capacity.Request) -> bool:
        """Start the job in a thread of its own; False (the job held again) when no
        thread could be started."""
        with self._lock:
            placement = self._place(request)
            self._running[(int(job["id"]), int(job["attempt"]))] = placement

        def body() -> None:
            started = time.monotonic()
            try:
                placement.report = self.run_job(job, placement)
            except Exception as error:  # a job thread never takes the worker down
                reason = f"the worker could not run it: {error}"
                placement.report = _ending(int(job["id"]), int(job["attempt"]), 1, reason, [])
            finally:
                placement.short = time.monotonic() - started < SHORT_JOB_SECONDS
                placement.done = True
                self._ended.set()

        thread = threading.Thread(
            target=body, name=f"job-{job['id']}.{job['attempt']}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had (a limit): the job waits, held
            with self._lock:
                self._running.pop((int(job["id"]), int(job["attempt"])), None)
            self._held_jobs.appendleft(job)
            return False
        return True

    def _collect(self) -> list[Placement]:
        """The placements of jobs that ended, their reports queued; their room is free."""
        self._ended.clear()
        with self._lock:
            ended = [key for key, p in self._running.items() if p.done]
            placements = [self._running.pop(key) for key in ended]
        for placement in placements:
            if placement.report is not None and not placement.killed:
                self._pending.append(placement.report)
        if placements and not self._running:  # the mark is the running jobs': none left
            (self.options.workdir / LEASE_MARK).unlink(missing_ok=True)
        if placements and self._running:
            self._sweep = True
        if self._sweep and not self._running:
            self._sweep = False
            kill_descendants()  # what jobs left while their neighbours ran
        return placements

    def _drain(self, until: float | None = None) -> None:
        """Wait for running jobs to end (they were told to stop, or the worker leaves),
        at most `until` (a monotonic time)."""
        while self._running and (until is None or time.monotonic() < until):
            self._ended.wait(LOOP_SECONDS)
            self._collect()
            with contextlib.suppress(HyperError):
                self._report(0, None)  # at once: an ended job's lease is no longer renewed

    def _hand_back_stale(self) -> None:
        """Held jobs that waited too long for room go back, so that other workers run
        them (their leases are not renewed while they wait): each aged from its own claim."""
        now = clock()
        stale = [
            job
            for job in self._held_jobs
            if now - float(job.get("_claimed_at") or now)
            > float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS) * HOLD_SHARE
        ]
        if stale:
            with contextlib.suppress(HyperError):
                self._return_held(stale)

    def _fits(self, job: dict[str, Any], born: float) -> bool:
        """Under a walltime: the job's time limit (or the default) fits in what is left.
        A pilot's first job always fits, so that a job longer than any walltime still runs
        (and meets its lease rules) instead of being handed from pilot to pilot."""
        walltime = self.options.walltime_seconds
        if walltime is None or not self._started_any:
            self._started_any = True
            return True
        needs = job.get("time_limit") or DEFAULT_TIME_LIMIT_SECONDS
        return bool(needs <= walltime - (time.monotonic() - born))

    def _return_held(self, jobs: list[dict[str, Any]] | None = None) -> None:
        """Give back claimed jobs this worker will not start now (by default all it holds),
        so others can run them."""
        jobs = list(self._held_jobs) if jobs is None else jobs
        if not jobs:
            return
        refs = [{"job_id": j["id"], "attempt": j["attempt"]} for j in jobs]
        path = f"/workers/{quote(self.options.worker_id)}/return"
        self.client.call("POST", path, {"jobs": refs})
        for job in jobs:  # only once the host has them back
            self._held_jobs.remove(job)

    def _report(self, claim_next: int, room: capacity.Request | None) -> list[dict[str, Any]]:
        """Send the reports of ended jobs (if any), and claim `claim_next` more that fit
        in `room`."""
        if not self._pending:
            return []
        body: dict[str, Any] = {"reports": self._pending, "claim_next": claim_next}
        if claim_next and room is not None:
            body["room"] = self._room_body(room)
        self._pending = []
        path = f"/workers/{quote(self.options.worker_id)}/complete"
        sent = clock()
        try:
            answer = self._patiently(self.client.call, "POST", path, body)
        except (Conflict, HostUnreachable, HostFailure):
            return []
        return _stamped(list(answer.get("jobs", [])), sent)

    def _environment(self, job: dict[str, Any], workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        env.update(job.get("env") or {})
        env.update(
            {
                "HYPER_JOB_ID": str(job["id"]),
                "HYPER_JOB_NAME": job["name"],
                "HYPER_QUEUE": job["queue"],
                "HYPER_DEFINITION": job["definition"],
                "HYPER_ATTEMPT": str(job["attempt"]),
                "HYPER_SUBMIT_DIR": job.get("submit_dir") or "",
                "HYPER_WORKER_ID": self.options.worker_id,
                "HYPER_WORKDIR": str(workdir),
            }
        )
        if not job.get("image"):  # in a container, hyper is whatever its image holds
            # hyper's own commands and Python, for jobs that call them (a workflow's
            # handler, a work item's pipeline, the Python API); the job's PATH first
            commands = str(Path(sys.executable).parent)
            path = env.get("PATH", "")
            if commands not in path.split(os.pathsep):
                env["PATH"] = f"{path}{os.pathsep}{commands}" if path else commands
            env["HYPER_WORKER_PYTHON"] = sys.executable
        if job.get("array_id") is not None:
            env["HYPER_ARRAY_JOB_ID"] = str(job["array_id"])
            env["HYPER_ARRAY_INDEX"] = str(job["array_index"])
            env["HYPER_ARRAY_SIZE"] = str(job["array_size"])
        for scheduler in (job.get("options") or {}).get("compat", []):
            env.update(compat_variables(scheduler, env))
        return env

    def _output_files(self, job: dict[str, Any], cwd: Path) -> dict[LogKind, BinaryIO]:
        """Open the job's -o/-e files (Slurm's rule: without -e, stderr joins stdout).
        The first attempt starts them afresh; later attempts append."""
        options = job.get("options") or {}
        stdout, stderr = options.get("stdout"), options.get("stderr")
        if not (job.get("definition_spec") or {}).get("enable_qlog", True) and not stdout:
            stdout = "hyper-%j.out"  # output is not sent to the host: keep it here
        if options.get("join") or (stdout and not stderr):
            stderr = None
            joined = True
        else:
            joined = False
        mode = "wb" if int(job["attempt"]) <= 1 else "ab"
        names = {
            "job_id": int(job["id"]),
            "array_id": int(job.get("array_id") or job["id"]),
            "index": job.get("array_index"),
            "name": job["name"],
            "user": getpass.getuser(),
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
                    opened[path] = cast(BinaryIO, open(path, mode))  # noqa: SIM115 - closed later
                files[kind] = opened[path]
        except OSError:
            _close_all(files)
            raise
        return files

    def _command(
        self, job: dict[str, Any], cwd: Path, env: dict[str, str]
    ) -> tuple[list[str], Path]:
        """The command that runs the job's script: itself (its shebang), bash, or a
        container of the definition's image."""
        path = self.options.workdir / f"job-{job['id']}.{job['attempt']}.sh"
        path.write_text(job["script"])
        path.chmod(0o755)
        if job.get("image"):
            tool = container_tool()
            if tool is None:
                raise OSError("the definition runs jobs in a container: install docker or podman")
            job_variables = sorted(set(env) - set(os.environ) | set(job.get("env") or {}))
            command = container_command(tool, job, path, cwd, job_variables, self.options.region)
            return command, path
        if job["script"].startswith("#!"):
            return [str(path)], path
        return ["/bin/bash", str(path)], path

    @staticmethod
    def _limit_memory(job: dict[str, Any], pid: int) -> None:
        """The job's memory limit, as address space (RLIMIT_AS), set on its first process
        right after it starts, so what that process starts later inherits it. Set from
        outside rather than in a preexec hook, which would cost a slower fork for every job;
        a script that forks within microseconds of starting could escape it. Containers get
        their limit from the container tool."""
        mib = (job.get("definition_spec") or {}).get("memory_limit_mib")
        if mib and not job.get("image"):
            limit = int(mib) * 2**20
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))

    def run_job(
        self, job: dict[str, Any], placement: Placement | None = None
    ) -> dict[str, Any] | None:
        """Run one job to its end; return its report (None when its lease was lost).
        A job with a package runs in a folder of its own, made for this attempt and
        removed after it; what it collects is sent to the host before its end is."""
        if placement is None:  # on its own: the whole worker
            self._learn_shape(job)
            placement = self._place(self._request(job))
        job_id, attempt = int(job["id"]), int(job["attempt"])
        options = job.get("options") or {}
        package = options.get("package")
        if not package:
            submit_dir = job.get("submit_dir")
            cwd = self.options.workdir
            if submit_dir and Path(submit_dir).is_dir():
                cwd = Path(submit_dir)  # where it was submitted (as Slurm does), if on this machine
            report = self._run(job, cwd, self.options.workdir, placement)
            return self._collected(job, report, cwd)
        folder = self.options.workdir / f"job-{job_id}.{attempt}"
        shutil.rmtree(folder, ignore_errors=True)  # what a killed worker left: start afresh
        try:
            try:
                self._unpack(package, job_id, folder)
            except PackageError as error:
                return _ending(job_id, attempt, 1, str(error), [])
            return self._collected(job, self._run(job, folder, folder, placement), folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _unpack(self, key: str, job_id: int, folder: Path) -> None:
        try:
            data = self._patiently(self.client.get_job_package, self.options.worker_id, job_id)
        except HyperError as error:
            raise PackageError(f"package {key!r} could not be fetched: {error}") from None
        try:
            unpack_package(data, folder)
        except (tarfile.TarError, OSError, PackageError) as error:
            raise PackageError(f"package {key!r} could not be unpacked: {error}") from None

    def _collected(
        self, job: dict[str, Any], report: dict[str, Any] | None, cwd: Path
    ) -> dict[str, Any] | None:
        """The report, once the files the job collects (those it made, as regular files)
        are kept on the host as jobs/<id>/<path>; a file that could not be sent gets a
        line in the job's stderr log."""
        paths = (job.get("options") or {}).get("collect") or []
        if report is None or not paths:
            return report
        notes = []
        for path in paths:
            try:
                info = (cwd / path).lstat()
            except OSError:
                continue  # the job did not make it
            if not stat.S_ISREG(info.st_mode):
                continue
            if info.st_size > MAX_FILE_BYTES:
                notes.append(f"{path}: {info.st_size} bytes, above {MAX_FILE_BYTES} bytes")
                continue
            try:
                data = (cwd / path).read_bytes()
                self._patiently(
                    self.client.put_job_file, self.options.worker_id, int(job["id"]), path, data
                )
            except (HyperError, OSError) as error:
                notes.append(f"{path}: {error}")
        text = "".join(f"hyper: not collected: {note}\n" for note in notes)
        if text:
            report["output"] = [*report["output"], {"kind": LogKind.STDERR.value, "text": text}]
        return report

    def _run(
        self, job: dict[str, Any], cwd: Path, workdir: Path, placement: Placement
    ) -> dict[str, Any] | None:
        job_id, attempt = int(job["id"]), int(job["attempt"])
        if self.options.in_image:
            job = {**job, "image": None}  # no container inside the container
        env = self._environment(job, workdir)
        env.update(self._resource_variables(job, env, placement))
        reason: str | None = None
        try:
            command, script_path = self._command(job, cwd, env)
        except OSError as exc:
            return _ending(job_id, attempt, 1, f"cannot start: {exc}", [])
        try:
            files = self._output_files(job, cwd)
        except OSError as exc:
            script_path.unlink(missing_ok=True)
            return _ending(job_id, attempt, 1, f"cannot open its output file: {exc}", [])
        cgroup = JobCgroup.make(self.options.worker_id, job_id, attempt)
        memory_enforced = cgroup is not None and cgroup.limit(
            placement.request.cpus, placement.request.mem_mib
        )
        # one job starts at a time: the worker steps into its cgroup to start it, and
        # this thread takes its CPUs, which the job's first process inherits
        with self._spawn:
            if self._stopping:  # SIGTERM: nothing starts any more
                _close_all(files)
                script_path.unlink(missing_ok=True)
                if cgroup is not None:
                    cgroup.remove()
                return None
            entered = cgroup is not None and cgroup.enter()  # the first process starts there
            pinned = _pin(placement.cpus)
            try:
                process = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
                placement.group, placement.cgroup = process.pid, cgroup
            except OSError as exc:
                _close_all(files)
                script_path.unlink(missing_ok=True)
                return _ending(job_id, attempt, 127, f"could not start the script: {exc}", [])
            finally:
                if pinned:
                    _pin(tuple(self._machine_cpus))
                if entered and cgroup is not None:
                    cgroup.leave()
        if self._stopping:  # SIGTERM came as it started (the handler saw no group)
            placement.killed = True
            self._end_everything(process.pid, cgroup, alone=True)
        spool: Spool | None = None
        pump: OutputPump | None = None
        keeper: LeaseKeeper | None = None
        torn_down = False
        try:
            self._limit_memory(job, process.pid)
            watch = _MemoryWatch(process.pid, placement.request.mem_mib, cgroup, memory_enforced)
            streaming = (job.get("definition_spec") or {}).get("enable_qlog", True)
            limit = output.limit_bytes(job.get("definition_spec"))
            spool = Spool(workdir / f"spool-{job_id}.{attempt}", limit) if streaming else None
            pump = OutputPump(process, files, spool)
            keeper = LeaseKeeper(
                self.client,
                self.options.worker_id,
                job_id,
                attempt,
                process.pid,
                spool,
                self.options.heartbeat_seconds,
                _metrics_every(process.pid, METRICS_SECONDS),
                chores=lambda client: None,  # the run loop reports what ended meanwhile
                mark=self.options.workdir / LEASE_MARK if self.options.self_fence else None,
            )
            keeper.renewed = float(job.get("_claimed_at") or keeper.renewed)
            lease = float(job.get("lease_seconds") or DEFAULT_LEASE_SECONDS)
            fence_after = lease * FENCE_SHARE if self.options.self_fence else None
            if fence_after is not None:  # what the machine's node watches, in case this stalls
                with contextlib.suppress(OSError):
                    (self.options.workdir / LEASE_MARK).write_text(f"{fence_after}\n")
            keeper.start()
            time_limit = job.get("time_limit")
            deadline = time.monotonic() + time_limit if time_limit else None
            kill_at: float | None = None
            exit_code: int | None = None  # set when the worker decided how it ended
            lost = False
            while True:
                wait = min(self.options.heartbeat_seconds, LOOP_SECONDS)
                if deadline is not None and kill_at is None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                if pump.wait(wait):
                    placement.exited = True
                    break
                if kill_at is not None:
                    if time.monotonic() >= kill_at:
                        self._end_everything(process.pid, cgroup)
                    continue
                over = watch.over()
                if over is not None:
                    reason, exit_code = over, EXIT_OUT_OF_MEMORY
                    self._end_everything(process.pid, cgroup)  # at once: memory is short
                    kill_at = time.monotonic()
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    reason, exit_code = f"time limit of {time_limit} s reached", EXIT_TIME_LIMIT
                elif keeper.lost.is_set():
                    reason, lost = "its lease was lost", True  # the job is someone else's now
                elif keeper.cancel.is_set():
                    reason = "cancelled"
                elif fence_after is not None and clock() - keeper.renewed > fence_after:
                    silent = round(clock() - keeper.renewed)
                    reason = (
                        f"stopped by its worker: the host did not renew its lease for {silent} s"
                    )
                else:
                    continue
                _kill_group(process.pid, signal.SIGTERM)
                self._stop_container(job)
                kill_at = time.monotonic() + KILL_GRACE_SECONDS
            # the script has ended: stop what it left behind (its pipes close then), whatever
            # session, process group or environment it has
            self._end_everything(process.pid, cgroup)
            if exit_code is None and watch.killed_by_kernel():
                reason, exit_code = watch.reason(), EXIT_OUT_OF_MEMORY
            pump.finish(timeout=2.0)
            if cgroup is not None:
                cgroup.remove()
            _close_all(files)
            script_path.unlink(missing_ok=True)
            keeper.stop()
            keeper.join()
            torn_down = True
            try:
                carried = None if lost else keeper.flush(self.options.patience_seconds, CARRY_BYTES)
            finally:
                if spool is not None:
                    spool.close()
            if carried is None:
                return None
            if exit_code is None:
                code = process.returncode
                exit_code = code if code >= 0 else 128 - code
            ending = _ending(job_id, attempt, exit_code, reason, carried)
            ending["usage"] = watch.usage()
            return ending
        except BaseException:
            if not torn_down:  # whatever failed in its thread, nothing of the job goes on
                self._abandon(process, cgroup, files, script_path, pump, keeper, spool)
            raise

    def _abandon(
        self,
        process: subprocess.Popen[bytes],
        cgroup: JobCgroup | None,
        files: dict[LogKind, BinaryIO],
        script_path: Path,
        pump: OutputPump | None,
        keeper: LeaseKeeper | None,
        spool: Spool | None,
    ) -> None:
        """End a job whose thread failed: its processes, its lease keeper, its files."""
        with contextlib.suppress(Exception):
            self._end_everything(process.pid, cgroup)
            process.wait(timeout=KILL_GRACE_SECONDS * 4)
        if keeper is not None and keeper.is_alive():
            keeper.stop()
            keeper.join()
        with contextlib.suppress(Exception):
            if pump is not None:
                pump.finish(timeout=2.0)
        if cgroup is not None:
            cgroup.remove()
        _close_all(files)
        script_path.unlink(missing_ok=True)
        if spool is not None:
            spool.close()

    def _end_everything(
        self, group: int, cgroup: JobCgroup | None, *, alone: bool | None = None
    ) -> None:
        """SIGKILL the job's process group, its cgroup and, when it is the worker's only
        job (`alone`; by default: whether it runs no other), every descendant of this
        worker (a subreaper: orphans of the job were re-parented here; beside other jobs
        they are swept once the worker is quiet)."""
        if alone is None:
            # no job starts while this one decides and sweeps: a job placed meanwhile
            # counts, and one placed after waits for the spawn lock
            with self._spawn:
                with self._lock:
                    alone = len(self._running) <= 1
                self._end_everything(group, cgroup, alone=alone)
            return
        _kill_group(group, signal.SIGKILL)
        if cgroup is not None:
            cgroup.kill(spare=group)
        if alone:
            kill_descendants(spare=group)  # the job's first process is reaped by subprocess

    def _resource_variables(
        self, job: dict[str, Any], env: dict[str, str], placement: Placement
    ) -> dict[str, str]:
        """What the job reads about what it got: HYPER_CPUS, HYPER_MEM (MiB), HYPER_GPUS,
        OMP_NUM_THREADS (unless the job sets it), the GPU variables of every vendor, and
        its dialect's own (SLURM_CPUS_PER_TASK, NCPUS, LSB_DJOB_NUMPROC...)."""
        request = placement.request
        cpus, mem = str(request.cpus), str(request.mem_mib)
        found = {"HYPER_CPUS": cpus, "HYPER_MEM": mem, "HYPER_GPUS": ",".join(placement.gpus)}
        if "OMP_NUM_THREADS" not in (job.get("env") or {}):
            found["OMP_NUM_THREADS"] = cpus
        if placement.gpus or (self._shape and self._shape.gpu_ids):
            found |= {name: ",".join(placement.gpus) for name in GPU_VARIABLES}
        compat = (job.get("options") or {}).get("compat", [])
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

    def _stop_container(self, job: dict[str, Any]) -> None:
        tool = container_tool() if job.get("image") else None
        if tool:
            # not while another job starts: the worker then sits in that job's cgroup,
            # and what it starts would too
            with self._spawn, contextlib.suppress(CommandFailed):  # it may have ended already
                run_command([tool, "kill", container_name(job)], timeout=10)
