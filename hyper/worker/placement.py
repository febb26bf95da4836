"""Packing jobs on a worker: what it has (its shape), what is left, and where each running
job sits (its CPUs and GPUs). A worker runs as many jobs at once as fit in what it has
left; it pins each to CPUs of its own and hands it GPUs no running job holds, choosing
first those no job of another worker on the machine holds (hyper.worker.devices)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hyper import capacity, machine
from hyper.messages import ClaimedJob, Ending, Room
from hyper.worker.devices import DeviceLocks
from hyper.worker.reaper import JobCgroup


@dataclass
class Placement:
    """Where a running job is on its worker: what it asked, the CPUs and GPUs it has."""

    request: capacity.Request
    cpus: tuple[int, ...]
    gpus: tuple[str, ...]
    group: int | None = None  # its first process (and process group)
    cgroup: JobCgroup | None = None
    report: Ending | None = None
    done: bool = False
    short: bool = False
    exited: bool = False  # its script ended (before any SIGTERM of the worker)
    killed: bool = False  # ended by the worker's SIGTERM: not reported, its lease runs out
    tree: bool = False  # it runs under a keeper of its own processes (hyper.worker.jobreaper)
    started: float = 0.0  # when the worker started it (monotonic)
    locks: list[int] = field(default_factory=list)  # its devices' locks (hyper.worker.devices)


class Packing:
    """A worker's shape and its running jobs' placements (keyed by job id and attempt).
    The worker's main thread changes `running`, under its lock."""

    def __init__(
        self, machine_shape: capacity.Shape | None = None, devices: DeviceLocks | None = None
    ) -> None:
        # its machine's share when it said one, else known from the first job's definition
        self.shape: capacity.Shape | None = machine_shape
        self.given = machine_shape
        self.machine_cpus = sorted(os.sched_getaffinity(0))
        self.running: dict[tuple[int, int], Placement] = {}
        self.devices = devices or DeviceLocks(None)

    def learn_shape(self, job: ClaimedJob) -> None:
        """The definition's shape; GPUs found on the machine when it declares none."""
        if self.shape is None:
            shape = capacity.shape_of(job.definition_spec)
            if not shape.gpu_ids:
                shape = shape._replace(gpu_ids=machine.gpu_ids())
            self.shape = shape

    def request(self, job: ClaimedJob) -> capacity.Request:
        shape = self.shape or capacity.shape_of(job.definition_spec)
        return capacity.effective(job.job_options().get("request"), shape)

    def room(self) -> capacity.Request | None:
        """What is left for more jobs (None before the first job: the worker does not
        know its shape yet, and an empty worker has room for any job of its definition)."""
        if self.shape is None:
            return None
        room = self.shape.whole
        for placement in self.running.values():
            room = room.minus(placement.request)
        return room

    def room_body(self, room: capacity.Request | None) -> Room | None:
        """`room` as a claim says it, with the worker's whole when that is not its
        definition's shape (a machine's share, a worker of a job's own size)."""
        if room is None:
            return None
        body = Room(**room.as_dict())  # type: ignore[typeddict-item]
        if self.given is not None:
            given = self.given
            body.update(of_cpus=given.cpus, of_mem_mib=given.mem_mib, of_gpus=len(given.gpu_ids))
        return body

    def pins(self) -> bool:
        """Whether the worker pins its jobs to CPUs of their own: where it runs on the
        machine alone (it may use no more CPUs than it has), or where it sees which CPUs
        the machine's other workers' jobs hold. A worker that sees neither (in a container
        of its own, beside others on one instance) would choose as each of them does
        (CPU 0 first): its jobs run where the kernel puts them, as the container's do."""
        alone = self.shape is not None and self.shape.cpus >= len(self.machine_cpus)
        return alone or self.devices.usable

    def place(self, request: capacity.Request) -> Placement:
        """CPUs for the job (none where the worker does not pin): the least used ones (a
        job never shares a CPU with another while the worker has CPUs to spare), first
        those no other worker's job holds; GPUs no running job holds. Its devices' locks
        go with it (`release`)."""
        use = {cpu: 0 for cpu in self.machine_cpus}
        taken: set[str] = set()
        for placement in self.running.values():
            for cpu in placement.cpus:
                use[cpu] = use.get(cpu, 0) + 1
            taken.update(placement.gpus)
        cpus: list[int] = []
        locks: list[int] = []
        if self.pins():
            order = sorted(use, key=lambda cpu: (use[cpu], cpu))
            unused = {cpu for cpu, count in use.items() if not count}
            cpus, locks = self.devices.choose("cpu", order, unused, max(1, request.cpus))
        spare = [g for g in (self.shape.gpu_ids if self.shape else ()) if g not in taken]
        gpus, gpu_locks = self.devices.choose(
            "gpu", spare, set(spare), min(request.gpus, len(spare))
        )
        return Placement(request, tuple(sorted(cpus)), tuple(gpus), locks=locks + gpu_locks)

    def release(self, placement: Placement) -> None:
        """The job ended (or never started): its devices are free for other workers' jobs."""
        self.devices.free(placement.locks)
        placement.locks = []

    def has_gpus(self) -> bool:
        return bool(self.shape and self.shape.gpu_ids)


def pin(cpus: tuple[int, ...] | list[int]) -> bool:
    """Run this thread (and so the processes it starts) on these CPUs only."""
    try:
        os.sched_setaffinity(0, cpus)
        return True
    except (OSError, ValueError):
        return False
