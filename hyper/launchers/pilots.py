"""Workers as pilot jobs of a batch system (Slurm, PBS, LSF): one array job of N pilots per
launch, each pilot running hyper's worker, which connects back to the host and claims jobs
until it is idle or its walltime runs short.

The batch system stays the owner of the machines: hyper only submits, polls and cancels its
own pilots. What differs between batch systems is small and lives in a `BatchSystem`: the
submit command and how to read its answer, the status command (every pilot in one call) and
how to read it, the cancel command, and the variables that name an array element.

A pilot's worker id carries its batch job id (`REGION-JOBID_INDEX-TOKEN`), so every listing
of workers shows which batch job runs it, and a pilot is found again after a host restart.
A pilot counts as a live worker from the moment it is submitted, PENDING included, so the
scheduler does not submit more while the batch system is still placing them. A pilot the
batch system no longer lists is gone: the scheduler ends it and its jobs return to the queue
under the usual lease rules. A pilot PENDING longer than its region allows is cancelled and
said in the region's log. A submit that fails puts the region in FAILED with the batch
system's own words.
"""

from __future__ import annotations

import getpass
import logging
import re
import secrets
import shlex
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hyper.commands import run
from hyper.config import write_private
from hyper.errors import CommandFailed
from hyper.host_settings import HostSettings
from hyper.launchers.base import Launcher, LaunchRequest
from hyper.models import DeployStatus, RegionSpec, ResourceKind
from hyper.resources import find_spec
from hyper.store.base import Store, WorkerRecord

log = logging.getLogger(__name__)

# a pilot leaves this long before its walltime (at most), so the batch system never kills it
LEAVE_MARGIN_SECONDS = 120.0
STATUS_SECONDS = 2.0  # one status poll serves every question asked within this long
COMMAND_SECONDS = 60.0  # the longest a submit, status or cancel command may take
# a PENDING pilot no waiting job needs is cancelled once it is this old (not one the
# scheduler just submitted for jobs that a claim or a cancel took meanwhile)
UNNEEDED_GRACE_SECONDS = 10.0
# how long the host waits for a status poll's answer: the poll runs in a thread of its
# own, and a batch system slower than this is asked again later, without holding the host
STATUS_PATIENCE_SECONDS = 1.0
KEY_FILE = "pilot-key"  # beside the host's data, mode 0600: the pilots read the API key here

# REGION-JOBID-TOKEN: a batch job id starts with a digit (Slurm 12_3, PBS 12[3].server,
# LSF 12[3]); the token (6 hex digits) tells apart pilots of a batch system that restarted
PILOT_ID = re.compile(r"^(?P<region>.+)-(?P<job>[0-9][^\s/]*?)-[0-9a-f]{6}$")


class PilotState:
    """The states a batch system's status command may give, as hyper reads them."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    OTHER = "OTHER"  # suspended, completing, held...


@dataclass(frozen=True)
class PilotJob:
    """What a submit needs: the region's settings, the definition's shape, the script."""

    name: str
    count: int
    script: Path
    output: Path
    walltime_minutes: int
    vcpus: int
    memory_mib: int
    gpus: int
    region: RegionSpec


def walltime_limits(region: RegionSpec) -> tuple[float, float]:
    """(walltime, when the worker leaves) in seconds: it leaves a margin before the end
    (the smaller of LEAVE_MARGIN_SECONDS and a tenth of the walltime)."""
    walltime = region.pilot_walltime_minutes * 60.0
    return walltime, walltime - min(LEAVE_MARGIN_SECONDS, walltime / 10)


class BatchSystem(ABC):
    """The commands of one batch system. Each hook builds a command or reads an answer;
    `PilotLauncher` runs them."""

    name: str = ""
    # the shell expression of one pilot's batch job id inside its script
    job_id_expression: str = ""

    @abstractmethod
    def submit_command(self, job: PilotJob) -> list[str]:
        """The command that submits `job.count` pilots as one array."""

    @abstractmethod
    def submitted_id(self, stdout: str) -> str:
        """The array's job id, from the submit command's output."""

    @abstractmethod
    def element_id(self, array_id: str, index: int) -> str:
        """The job id of element `index` (1-based) of an array."""

    @abstractmethod
    def status_command(self, user: str) -> list[str]:
        """One command that lists every pilot of `user`, one element per line."""

    @abstractmethod
    def parse_status(self, stdout: str) -> dict[str, str]:
        """Element job id -> PilotState, from the status command's output."""

    @abstractmethod
    def cancel_command(self, job_ids: list[str]) -> list[str]:
        """The command that cancels these pilots."""

    def cancel_by_name_command(self, name: str, user: str) -> list[str] | None:
        """A command that cancels every pilot of that job name (None: not offered)."""
        return None


def pilot_name(region: str) -> str:
    return f"hyper-{region}"


class StatusPoll:
    """A batch system's status command, run in a thread of its own: the host's loop waits
    for its answer STATUS_PATIENCE_SECONDS at most, and never while one poll is late. A
    Slurm controller that stopped answering held every tick 60 s (squeue's time limit):
    requests to the host waited, and healthy jobs, their leases not renewed, were ended
    by their own workers. Without a fresh answer the host judges pilots by the last one
    read since they last changed (None: none), and submits none."""

    def __init__(self, command: Callable[[], list[str]], system: BatchSystem) -> None:
        self._command, self._system = command, system
        self._lock = threading.Lock()
        self._states: dict[str, str] | None = None
        self._at = 0.0  # when those states were read (monotonic)
        self._since = 0.0  # a poll asked before this (pilots changed since) counts for none
        self._asking: threading.Thread | None = None
        self._asked_at = 0.0

    def states(self) -> dict[str, str] | None:
        """The pilots' states: a fresh answer, else the last one read since the pilots
        last changed (a pilot that ended since shows as it was: it is judged at the next
        answer, never judged gone for being missing from an older one), else None."""
        self._wait()
        with self._lock:
            return self._states if self._at > self._since else None

    def answers(self) -> bool:
        """Whether the batch system answers now: a fresh answer, asked for here if need
        be (a launch asks before it submits, whether or not any pilot is watched)."""
        self._wait()
        with self._lock:
            return self._fresh()

    def _wait(self) -> None:
        """Start a poll unless an answer is fresh or one is under way, and wait for it what
        is left of STATUS_PATIENCE_SECONDS since it started."""
        with self._lock:
            if self._fresh():
                return
            if self._asking is None or not self._asking.is_alive():
                self._asking = threading.Thread(
                    target=self._ask, name=f"{self._system.name} status", daemon=True
                )
                self._asked_at = time.monotonic()
                self._asking.start()
            asking, waited = self._asking, time.monotonic() - self._asked_at
        asking.join(max(0.0, STATUS_PATIENCE_SECONDS - waited))

    def forget(self) -> None:
        """The next question asks again (pilots were submitted or cancelled)."""
        with self._lock:
            self._at, self._since = 0.0, time.monotonic()

    def _fresh(self) -> bool:
        return self._states is not None and time.monotonic() - self._at <= STATUS_SECONDS

    def _ask(self) -> None:
        asked = time.monotonic()
        try:
            states = self._system.parse_status(run(self._command(), timeout=COMMAND_SECONDS))
        except CommandFailed as error:
            log.warning("%s status: %s", self._system.name, error)
            return
        with self._lock:
            if asked >= self._since:  # read after the last change of pilots: it holds
                self._states, self._at = states, time.monotonic()


def parse_pilot_id(worker_id: str) -> tuple[str, str] | None:
    """(region, batch job id) of a pilot's worker id."""
    found = PILOT_ID.match(worker_id)
    return (found["region"], found["job"]) if found else None


class PilotLauncher(Launcher):
    system: BatchSystem

    def __init__(self, settings: HostSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.user = getpass.getuser()
        self._poll = StatusPoll(lambda: self.system.status_command(self.user), self.system)

    @property
    def startup_seconds(self) -> float | None:  # type: ignore[override]
        # a pilot may stay PENDING this long before silence counts; `alive` decides sooner
        longest = max((r.pilot_pending_minutes for r in self._regions()), default=30.0)
        return longest * 60 + 120

    # launching --------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> list[WorkerRecord]:
        region = find_spec(self.store, ResourceKind.REGION, request.region, RegionSpec)
        if region is None:
            return []
        if not self._poll.answers():  # its submit would wait as long on the host's loop
            return []
        count = min(request.count, self.capacity(request.region, request.definition.name) or 0)
        if count <= 0:
            return []
        token = secrets.token_hex(3)
        folder = self.settings.data_dir / self.system.name / region.name
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / f"pilot-{request.queue}-{request.definition.name}-{token}.sh"
        prefix = f"{region.name}-"
        script.write_text(self.script(region, request, prefix, token))
        definition = request.definition
        job = PilotJob(
            name=pilot_name(region.name),
            count=count,
            script=script,
            output=folder,
            walltime_minutes=region.pilot_walltime_minutes,
            vcpus=definition.vcpus,
            memory_mib=definition.memory_limit_mib,
            gpus=definition.gpu_count or 0,
            region=region,
        )
        try:
            stdout = run(self.system.submit_command(job), timeout=COMMAND_SECONDS)
            array_id = self.system.submitted_id(stdout)
        except CommandFailed as error:
            said = "; ".join(line.strip() for line in error.stderr.splitlines() if line.strip())
            self._fail(region, said or str(error))
            return []
        self._poll.forget()  # the next question polls again
        records = []
        for index in range(1, count + 1):
            element = self.system.element_id(array_id, index)
            records.append(self._record(f"{prefix}{element}-{token}", request))
        log.info("region %s: submitted %s pilots as %s job %s", region.name, count,
                 self.system.name, array_id)  # fmt: skip
        return records

    def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
        raise NotImplementedError("pilots are submitted as one array by launch()")

    def script(self, region: RegionSpec, request: LaunchRequest, prefix: str, token: str) -> str:
        """The pilot's batch script: read the key, run hyper's worker with this pilot's id."""
        _, leave = walltime_limits(region)
        key = self.key_file()
        python = region.worker_python or sys.executable
        workers = self.settings.data_dir / "workers"
        worker_id = f"{prefix}{self.system.job_id_expression}-{token}"
        command = [
            python, "-m", "hyper.worker",
            "--url", self.settings.url,
            "--queue", request.queue,
            "--definition", request.definition.name,
            "--idle-seconds", str(region.pilot_idle_seconds),
            "--heartbeat-seconds", str(self.settings.heartbeat_seconds),
            "--patience-seconds", str(self.settings.worker_patience_seconds),
            "--lifetime-seconds", str(leave),
            "--walltime-seconds", str(leave),
            "--region", region.name,
        ]  # fmt: skip
        quoted = " ".join(shlex.quote(word) for word in command)
        return (
            "#!/bin/bash\n"
            f"# a hyper pilot: a worker of region {region.name} for queue {request.queue}\n"
            "unset HYPER_WORKER_ID HYPER_JOB_ID HYPER_ATTEMPT\n"
            f"HYPER_API_KEY=$(cat {shlex.quote(str(key))}) || exit 1\n"
            "export HYPER_API_KEY\n"
            f'worker_id="{worker_id}"\n'
            f'workdir={shlex.quote(str(workers))}/"$worker_id"\n'
            'mkdir -p "$workdir" && cd "$workdir" || exit 1\n'
            f'exec {quoted} --worker-id "$worker_id" --workdir "$workdir"\n'
        )

    def key_file(self) -> Path:
        """The API key in a file only the user can read, on the host's data directory (a
        shared file system when pilots run on other nodes): never in the batch system's
        records of the job."""
        path = self.settings.data_dir / self.system.name / KEY_FILE
        if not path.exists() or path.read_text() != self.settings.api_key:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, self.settings.api_key)
        return path

    def capacity(self, region: str, definition: str) -> int | None:
        spec = find_spec(self.store, ResourceKind.REGION, region, RegionSpec)
        if spec is None:
            return 0
        live = sum(1 for w in self.store.live_workers() if w.region == region)
        return max(spec.max_pilots - live, 0)

    # watching ---------------------------------------------------------------------------

    def status(self) -> dict[str, str] | None:
        """Every pilot's state, from one status command at most every STATUS_SECONDS;
        None when the batch system does not answer (or not yet: StatusPoll)."""
        return self._poll.states()

    def alive(self, worker: WorkerRecord) -> bool | None:
        found = parse_pilot_id(worker.id)
        states = self.status()
        if found is None or states is None:
            return None
        region_name, job_id = found
        state = states.get(job_id)
        if state is None:
            # not listed: ended (or never started); a pilot that just ended may still be
            # reporting its last jobs, and its own exit ends its record
            return False
        if state == PilotState.PENDING:
            region = find_spec(self.store, ResourceKind.REGION, region_name, RegionSpec)
            limit = (region.pilot_pending_minutes if region else 30.0) * 60
            pending = time.time() - worker.started
            if pending > limit:
                self._cancel([job_id])
                self._note(
                    region_name,
                    f"pilot {job_id} PENDING longer than {limit / 60:g} min: cancelled",
                )
                return False
            if pending > UNNEEDED_GRACE_SECONDS and not self._waiting(worker):
                # its jobs were cancelled (or run elsewhere): it would hold an allocation
                # for nothing once it starts, or sit in the batch system's queue for good
                self._cancel([job_id])
                self._note(region_name, f"pilot {job_id}: no job waits for it: cancelled")
                return False
        return True

    def _waiting(self, worker: WorkerRecord) -> bool:
        """Whether any job of its queue and definition waits to start."""
        return any(
            waiting
            for queue, definition, waiting, _ in self.store.demand()
            if (queue, definition) == (worker.queue, worker.definition)
        )

    def stop(self, worker: WorkerRecord) -> None:
        found = parse_pilot_id(worker.id)
        if found is not None:
            self._cancel([found[1]])

    def cancel_region(self, region: str) -> None:
        """Cancel every pilot of a region (the region is being deleted)."""
        by_name = self.system.cancel_by_name_command(pilot_name(region), self.user)
        ids = [
            job
            for w in self.store.live_workers()
            if (found := parse_pilot_id(w.id)) and found[0] == region
            for job in [found[1]]
        ]
        if by_name is not None:
            self._run_quietly(by_name)
        elif ids:
            self._cancel(ids)

    def _cancel(self, job_ids: list[str]) -> None:
        self._run_quietly(self.system.cancel_command(job_ids))
        self._poll.forget()

    def _run_quietly(self, command: list[str]) -> None:
        try:
            run(command, timeout=COMMAND_SECONDS)
        except CommandFailed as error:
            log.warning("%s", error)

    # the region's record ----------------------------------------------------------------

    def _regions(self) -> list[RegionSpec]:
        return [
            RegionSpec.model_validate(r.spec)
            for r in self.store.list_resources(ResourceKind.REGION.value)
            if r.spec.get("kind") == self.kind
        ]

    def _fail(self, region: RegionSpec, message: str) -> None:
        """A submit failed: the region is FAILED with the batch system's words, and gets no
        more workers until it is updated."""
        log.warning("region %s: %s", region.name, message)
        self.store.put_resource(
            ResourceKind.REGION.value,
            region.name,
            region.model_dump(),
            DeployStatus.FAILED.value,
            [f"failed: {message}"],
            time.time(),
        )

    def _note(self, region: str, line: str) -> None:
        record = self.store.get_resource(ResourceKind.REGION.value, region)
        log.warning("region %s: %s", region, line)
        if record is not None:
            self.store.put_resource(
                record.kind, record.name, record.spec, record.status, [line], time.time()
            )
