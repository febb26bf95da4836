"""A Slurm cluster as a region, against a real slurmctld and slurmd (.ci/start-slurm):
pilots submitted as arrays run hyper's workers, jobs end Successful, faults lose nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import LocalHost
from tests.helpers.slurm import needs_slurm, scancel_all, squeue

pytestmark = [pytest.mark.slurm, pytest.mark.e2e, pytest.mark.slow, needs_slurm]

REGION = "hpc"
PILOTS = f"hyper-{REGION}"


def counts(local: LocalHost, *args: str) -> dict[str, int]:
    out = json.loads(local.ok("qstat", "--json", *args))
    return out


@pytest.fixture
def slurm_region(local: LocalHost) -> Iterator[LocalHost]:
    """The local host with a Slurm region `hpc`, a cluster with room, and a queue `hq`
    whose workers all go to it."""
    scancel_all(PILOTS)
    local.ok(
        "hyper", "regions", "add-region", "--name", REGION, "--kind", "slurm", "--yes",
        "--partition", "hyper", "--max-pilots", "4", "--pilot-walltime-minutes", "30",
        "--pilot-idle-seconds", "3", timeout=120,
    )  # fmt: skip
    local.ok("hyper", "clusters", "add-cluster", "--name", "big", "--max-vcpus", "64", "--yes")
    local.ok(
        "hyper", "queues", "add-queue", "--name", "hq", "--compute-environment", "big",
        "--manual-region-weights", "-rw", f"{REGION}=1", "--yes",
    )  # fmt: skip
    try:
        yield local
    finally:
        scancel_all(PILOTS)


def statuses(local: LocalHost, job_id: str) -> dict[str, int]:
    job = local.job(job_id)
    return dict(job.get("counts") or job.get("tasks") or {})


def test_many_jobs_through_pilots(slurm_region: LocalHost) -> None:
    local = slurm_region
    script = local.script("short.sh", "#!/bin/bash\necho task $HYPER_ARRAY_INDEX\n")
    job_id = local.ok("qsub", "-q", "hq", "-d", "sample-def-1", "-a", "1-500", str(script)).strip()
    seen: list[tuple[str, str]] = []

    def pilots_seen() -> bool:
        seen.extend(squeue(PILOTS))
        return bool(seen)

    local.wait_for(pilots_seen, 120, "pilots in squeue")
    done = local.wait_finished(job_id, timeout=300)
    assert done["status"] == "Successful", done
    assert all(job.startswith(tuple("0123456789")) for job, _ in seen)
    local.wait_for(lambda: not squeue(PILOTS), 120, "no pilots left in squeue")
