"""A worker agent's options (what `python -m hyper.worker` is told), and the lease mark
it leaves for its machine's node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hyper import capacity
from hyper.messages import TIMINGS

# while a self-fencing worker runs a job: touched at each renewal, holding the seconds
# after which its node ends it (and the job) if it has not been touched (hyper.worker.node)
LEASE_MARK = "lease"


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    queue: str
    definition: str
    workdir: Path
    idle_seconds: float = TIMINGS.idle_seconds
    heartbeat_seconds: float = TIMINGS.heartbeat_seconds
    lifetime_seconds: float | None = None
    region: str = ""  # where it runs: fills in `_REGION_` in image URIs
    # how long a running job's reports wait for a host that is down
    patience_seconds: float = TIMINGS.patience_seconds
    in_image: bool = False  # it runs in the definition's image already (a Batch container)
    # stop a running job itself when its lease cannot be renewed (False where the host
    # ends its workers' jobs itself: the local launcher, on the same machine)
    self_fence: bool = True
    # a pilot's: it starts only jobs whose time limit fits in what is left of this, and
    # hands the rest back and leaves when one does not
    walltime_seconds: float | None = None
    # what it has, when its machine said so on joining (else its definition's shape)
    machine_shape: capacity.Shape | None = None
    # each job in a cgroup v2 of its own where the machine lets the worker make one
    # (False: never; what jobs leave behind is then ended by subreapers alone)
    cgroups: bool = True
