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

This module is the run loop: claims, reports, held jobs handed back, the drain and
SIGTERM. The rest is in parts: hyper.worker.placement (packing jobs on the worker),
hyper.worker.runner (a job's thread: start, watch, end), hyper.worker.prepare (what a
job starts with), hyper.worker.pump and .usage (its output, its memory and CPU time),
hyper.worker.lease (its heartbeats), hyper.worker.reaper and .jobreaper (every process
of a job ends with it); what host and worker say to each other is hyper.messages.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hyper import capacity
from hyper.client import HostClient, on_this_machine
from hyper.errors import Conflict, HostFailure, HostUnreachable, HyperError
from hyper.messages import TIMINGS, ClaimedJob, ClaimRef, Completion, Ending, ending
from hyper.worker.devices import DeviceLocks
from hyper.worker.lease import clock
from hyper.worker.options import LEASE_MARK, WorkerOptions
from hyper.worker.placement import Packing, Placement
from hyper.worker.reaper import become_subreaper, kill_descendants
from hyper.worker.runner import LOOP_SECONDS, JobRunner

__all__ = ["DEFAULT_TIME_LIMIT_SECONDS", "LEASE_MARK", "Placement", "WorkerAgent", "WorkerOptions"]

SHORT_JOB_SECONDS = 0.05  # jobs shorter than this are claimed and reported in batches
# short jobs claimed per round trip, at most: each round trip costs the host more than
# the jobs it brings. A host on the worker's own machine takes more; from any other (an
# AWS host, whose answers API Gateway keeps within 6 MB, or one behind a proxy) fewer
NEARBY_PREFETCH_MAX = 64
PREFETCH_MAX = 16
# under a walltime (a pilot), a job with no time limit is taken to need this long
DEFAULT_TIME_LIMIT_SECONDS = 600
# a claimed job waiting for room on its worker goes back to the host after this share of
# its lease (its lease is not renewed while it waits)
HOLD_SHARE = 1 / 3
# ... and all of them at once when every running job has run this long: they were claimed
# as short jobs' successors, and the jobs they wait behind were not short after all
BEHIND_LONG_SECONDS = 1.0
STOP_WAIT_SECONDS = 5.0  # on SIGTERM: how long the jobs that had ended get to be reported


class Lanes:
    """The threads jobs run in, kept between jobs: a job starts in one that is idle
    (a new thread costs a short job more than the job itself), in a new one otherwise.
    A lane is named for the job it runs. They are daemon threads: a worker leaving on
    SIGTERM waits for none of them."""

    IDLE = "idle job lane"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = 0
        self._work: queue.SimpleQueue[tuple[Callable[[], None], str]] = queue.SimpleQueue()

    def run(self, body: Callable[[], None], name: str) -> None:
        """Run `body` in a lane named `name`; RuntimeError when no thread could start."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put((body, name))
                return
        threading.Thread(target=self._serve, args=(body,), name=name, daemon=True).start()

    def _serve(self, body: Callable[[], None]) -> None:
        lane = threading.current_thread()
        while True:
            body()
            del body  # an idle lane holds nothing of its last job
            lane.name = self.IDLE
            with self._lock:
                self._idle += 1
            body, lane.name = self._work.get()


class WorkerAgent:
    def __init__(self, client: HostClient, options: WorkerOptions) -> None:
        self.client = client
        self.options = options
        self.options.workdir.mkdir(parents=True, exist_ok=True)
        self._held_jobs: collections.deque[ClaimedJob] = collections.deque()
        # when each held or running attempt's claim was asked for: its lease counts from then
        self._claimed_at: dict[tuple[int, int], float] = {}
        self._pending: list[Ending] = []  # reports of ended jobs, not sent yet
        self._started_any = False
        # a Batch container's folders are its own: no other worker of the instance would
        # see its locks (hyper.worker.placement: it then pins where it runs alone only)
        devices = DeviceLocks(None) if options.in_image else DeviceLocks.here()
        self._packing = Packing(options.machine_shape, devices)
        self._running = self._packing.running  # (job id, attempt): its placement
        self._lock = threading.Lock()  # guards the placements' state
        self._ended = threading.Event()  # a job thread finished
        self._lanes = Lanes()
        self._runner = JobRunner(client, options, self._packing.machine_cpus, self._count)
        self._sweep = False  # a job ended while others ran: its orphans wait for a quiet time
        self._interruptible = False  # SIGTERM may leave the run loop (not its last steps)

    @property
    def _stopping(self) -> bool:
        """SIGTERM: running jobs were ended, their leases run out; nothing starts."""
        return self._runner.stopping

    @_stopping.setter
    def _stopping(self, value: bool) -> None:
        self._runner.stopping = value

    def _count(self) -> int:
        with self._lock:
            return len(self._running)

    def stop_on_signal(self) -> None:
        """On SIGTERM, stop the running jobs' process groups too, then exit: their leases
        run out and the host retries them by policy."""

        def handler(signum: int, frame: Any) -> None:
            self._stopping = True  # before the groups are read: a job starting now sees it
            for placement in list(self._running.values()):
                if not placement.exited:
                    placement.killed = True  # its lease runs out: no report
                if placement.group is not None:
                    self._runner.end_everything(placement.group, placement.cgroup, alone=True)
                if placement.cgroup is not None:
                    placement.cgroup.remove()
            if self._interruptible:  # never inside the final report and goodbye
                raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, handler)

    def _stamp(self, jobs: list[ClaimedJob], sent: float) -> list[ClaimedJob]:
        """Claimed jobs, noted with when their claim was asked for (their leases count
        from no earlier than that)."""
        for job in jobs:
            self._claimed_at[job.key] = sent
        return jobs

    def run_job(
        self, job: ClaimedJob, placement: Placement | None = None, *, beside: bool = False
    ) -> Ending | None:
        """Run one job to its end (hyper.worker.runner); its report, None when its lease
        was lost. Without a placement, on its own: the whole worker. `beside`: other
        jobs may run beside it."""
        alone = placement is None
        if placement is None:
            self._packing.learn_shape(job)
            placement = self._packing.place(self._packing.request(job))
        try:
            return self._runner.run_job(
                job,
                placement,
                claimed_at=self._claimed_at.pop(job.key, None),
                gpus_here=self._packing.has_gpus(),
                beside=beside,
            )
        finally:
            if alone:  # never in the run loop's placements, which release their own
                self._packing.release(placement)

    # the run loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Claim and run jobs until idle (or past its lifetime), as many at once as fit.
        Short jobs are taken and reported in batches, growing while jobs stay short: each
        report brings the next jobs back in the same round trip."""
        options = self.options
        born = time.monotonic()
        idle_since = born
        prefetch = 1
        prefetch_max = NEARBY_PREFETCH_MAX if on_this_machine(self.client.url) else PREFETCH_MAX
        become_subreaper()  # what a job leaves behind stays the worker's to end
        self._interruptible = True
        try:
            while True:
                ended = self._collect()
                if ended:
                    short = all(p.short for p in ended)
                    prefetch = min(prefetch * 2, prefetch_max) if short else 1
                if self._running or ended:
                    idle_since = time.monotonic()
                if not self._start_held(born):
                    break  # a pilot's walltime: what is held goes back as it leaves
                young = not options.lifetime_seconds or (
                    time.monotonic() - born < options.lifetime_seconds
                )
                room = self._packing.room()
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
                longest = TIMINGS.claim_wait_seconds
                wait = 0.0 if self._running else round(max(0.0, min(idle_left, longest)), 3)
                sent = clock()
                try:
                    claimed = self.client.claim(
                        options.worker_id,
                        queue=options.queue,
                        definition=options.definition,
                        limit=1,
                        wait=wait,
                        room=self._packing.room_body(room),
                    )
                except (HostUnreachable, HostFailure):
                    if not self._running:
                        raise
                    claimed = []  # the running jobs' keepers deal with the host
                self._held_jobs.extend(self._stamp(claimed, sent))
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
            self._packing.learn_shape(job)
            request = self._packing.request(job)
            room = self._packing.room()
            if room is not None and self._running and not request.fits(room):
                return True  # it waits for a running job to end
            if not self._fits(job, born):
                return False
            self._held_jobs.popleft()
            if not self._launch(job, request):
                return True  # it waits (and goes back once it waited too long)
        return True

    def _launch(self, job: ClaimedJob, request: capacity.Request) -> bool:
        """Start the job in a thread of its own; False (the job held again) when no
        thread could be started."""
        with self._lock:
            placement = self._packing.place(request)
            placement.started = time.monotonic()
            self._running[job.key] = placement
            room = self._packing.room()
            # others may run beside it: they do, or there is room for more
            beside = len(self._running) > 1 or room is None or (room.cpus > 0 and room.mem_mib > 0)

        def body() -> None:
            started = time.monotonic()
            try:
                placement.report = self.run_job(job, placement, beside=beside)
            except Exception as error:  # a job thread never takes the worker down
                reason = f"the worker could not run it: {error}"
                placement.report = ending(job.id, job.attempt, 1, reason, [])
            finally:
                placement.short = time.monotonic() - started < SHORT_JOB_SECONDS
                placement.done = True
                self._ended.set()

        try:
            self._lanes.run(body, f"job-{job.id}.{job.attempt}")
        except RuntimeError:  # no thread to be had (a limit): the job waits, held
            with self._lock:
                self._running.pop(job.key, None)
            self._packing.release(placement)
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
            self._packing.release(placement)
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
        them (their leases are not renewed while they wait): each aged from its own claim,
        or all of them once the jobs they wait behind turned out long."""
        now = clock()
        running = list(self._running.values())
        behind_long = bool(running) and all(
            time.monotonic() - p.started > BEHIND_LONG_SECONDS for p in running
        )
        stale = [
            job
            for job in self._held_jobs
            if behind_long
            or now - self._claimed_at.get(job.key, now) > job.lease_seconds * HOLD_SHARE
        ]
        if stale:
            with contextlib.suppress(HyperError):
                self._return_held(stale)

    def _fits(self, job: ClaimedJob, born: float) -> bool:
        """Under a walltime: the job's time limit (or the default) fits in what is left.
        A pilot's first job always fits, so that a job longer than any walltime still runs
        (and meets its lease rules) instead of being handed from pilot to pilot."""
        walltime = self.options.walltime_seconds
        if walltime is None or not self._started_any:
            self._started_any = True
            return True
        needs = job.time_limit or DEFAULT_TIME_LIMIT_SECONDS
        return bool(needs <= walltime - (time.monotonic() - born))

    def _return_held(self, jobs: list[ClaimedJob] | None = None) -> None:
        """Give back claimed jobs this worker will not start now (by default all it holds),
        so others can run them."""
        jobs = list(self._held_jobs) if jobs is None else jobs
        if not jobs:
            return
        refs = [ClaimRef(job_id=j.id, attempt=j.attempt) for j in jobs]
        self.client.return_claims(self.options.worker_id, refs)
        for job in jobs:  # only once the host has them back
            self._held_jobs.remove(job)
            self._claimed_at.pop(job.key, None)

    def _report(self, claim_next: int, room: capacity.Request | None) -> list[ClaimedJob]:
        """Send the reports of ended jobs (if any), and claim `claim_next` more that fit
        in `room`."""
        if not self._pending:
            return []
        body: Completion = {"reports": self._pending, "claim_next": claim_next}
        if claim_next and room is not None:
            body["room"] = self._packing.room_body(room)
        self._pending = []
        sent = clock()
        try:
            jobs = self._runner.patiently(self.client.complete, self.options.worker_id, body)
        except (Conflict, HostUnreachable, HostFailure):
            return []
        return self._stamp(jobs, sent)
