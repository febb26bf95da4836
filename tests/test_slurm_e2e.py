"""A Slurm cluster as a region, against a real slurmctld and slurmd (.ci/start-slurm):
pilots submitted as arrays run hyper's workers, jobs end Successful, faults lose nothing."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LocalHost, running_local_host
from tests.helpers.slurm import needs_slurm, scancel_all, slurm_to_itself, squeue

pytestmark = [pytest.mark.slurm, pytest.mark.e2e, pytest.mark.slow, needs_slurm]

REGION = "hpc"
PILOTS = f"hyper-{REGION}"


@pytest.fixture
def slurm_region(local: LocalHost) -> Iterator[LocalHost]:
    """The local host with a Slurm region `hpc`, a cluster with room, and a queue `hq`
    whose workers all go to it."""
    with region_of_slurm(local):
        yield local


@pytest.fixture
def short_lease_slurm_region(hyper_home: Path, tmp_path: Path) -> Iterator[LocalHost]:
    """The same on a host whose jobs' leases are 12 s, not 30 (24 heartbeats of 0.5 s):
    a job whose pilot Slurm cancelled is run again once its lease runs out."""
    with (
        running_local_host(hyper_home, tmp_path / "work", lease_seconds=12.0) as local,
        region_of_slurm(local),
    ):
        yield local


@contextlib.contextmanager
def region_of_slurm(local: LocalHost) -> Iterator[None]:
    with slurm_to_itself():
        yield from _region_of_slurm(local)


def _region_of_slurm(local: LocalHost) -> Iterator[None]:
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
        yield
    finally:
        scancel_all(PILOTS)


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


def workers(local: LocalHost) -> list[tuple[str, str, str]]:
    """(id, region, state) of every worker the host has recorded."""
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        return list(db.execute("SELECT id, region, state FROM workers ORDER BY started"))


def region_record(local: LocalHost, name: str = REGION) -> dict:
    items = json.loads(local.ok("hyper", "regions", "list-regions", "--json"))["items"]
    return next(item for item in items if item["name"] == name)


def test_a_cancelled_pilot_loses_nothing(short_lease_slurm_region: LocalHost) -> None:
    local = short_lease_slurm_region
    script = local.script("slow.sh", "#!/bin/bash\nsleep 6\necho finished\n")
    job_id = local.ok("qsub", "-q", "hq", "-d", "sample-def-1", "-r", "2", "-a", "1-2",
                      str(script)).strip()  # fmt: skip
    running: list[str] = []

    def a_pilot_runs() -> bool:
        running[:] = [job for job, state in squeue(PILOTS) if state == "RUNNING"]
        return bool(running) and local.job(job_id)["status"] == "Running"

    local.wait_for(a_pilot_runs, 120, "a running pilot with a running job")
    subprocess.run(["scancel", running[0]], check=True, timeout=60)
    done = local.wait_finished(job_id, timeout=300)
    assert done["status"] == "Successful", done
    local.wait_for(lambda: not squeue(PILOTS), 120, "no pilots left in squeue")


def test_a_pilot_near_its_walltime_hands_jobs_back(slurm_region: LocalHost) -> None:
    """A pilot of 2 minutes leaves 12 s early; a job limited to 2 minutes never fits after
    its first job, so each pilot runs one job, hands the rest back and leaves; none is
    killed by Slurm at its walltime."""
    local = slurm_region
    local.ok("hyper", "regions", "update-region", REGION, "--pilot-walltime-minutes", "2",
             "--max-pilots", "1", "--pilot-idle-seconds", "30", timeout=120)  # fmt: skip
    script = local.script("quick.sh", "#!/bin/bash\necho ok\n")
    job_id = local.ok("qsub", "-q", "hq", "-d", "sample-def-1", "-t", "2", "-a", "1-3",
                      str(script)).strip()  # fmt: skip
    done = local.wait_finished(job_id, timeout=300)
    assert done["status"] == "Successful", done
    pilots = [w for w in workers(local) if w[1] == REGION]
    assert len(pilots) == 3, pilots  # one job each: the others were handed back


def test_a_bad_partition_fails_the_region_in_slurms_words(local: LocalHost) -> None:
    result = local.sh(
        "hyper", "regions", "add-region", "--name", "badpart", "--kind", "slurm", "--yes",
        "--partition", "no-such-partition", timeout=120,
    )  # fmt: skip
    assert result.code == 1
    record = region_record(local, "badpart")
    assert record["status"] == "FAILED"
    assert "invalid partition" in record["log"][-1].lower(), record["log"]


def test_a_failed_submit_fails_the_region(slurm_region: LocalHost) -> None:
    """sbatch refuses a pilot that asks for GPUs no node has: the region is FAILED with
    its words."""
    local = slurm_region
    local.ok("hyper", "definitions", "add-definition", "--name", "gpu", "--gpu-count", "1",
             "--yes")  # fmt: skip
    local.ok("qsub", "-q", "hq", "-d", "gpu", str(local.script("x.sh", "echo x\n")))
    local.wait_for(lambda: region_record(local)["status"] == "FAILED", 120, "region FAILED")
    line = region_record(local)["log"][-1]
    assert line.startswith("failed: sbatch: error:"), line
    assert not squeue(PILOTS)


def test_pilots_pending_too_long_are_cancelled(slurm_region: LocalHost) -> None:
    local = slurm_region
    local.ok("hyper", "regions", "update-region", REGION, "--pilot-pending-minutes", "0.1",
             "--sbatch-args", "--begin=now+1hour", timeout=120)  # fmt: skip
    local.ok("qsub", "-q", "hq", "-d", "sample-def-1", str(local.script("x.sh", "echo x\n")))
    local.wait_for(
        lambda: any("PENDING longer than" in line for line in region_record(local)["log"]),
        120,
        "a pending pilot cancelled",
    )
    line = next(line for line in region_record(local)["log"] if "PENDING longer" in line)
    assert "cancelled" in line
    cancelled = line.split()[1]
    assert cancelled not in {job for job, _ in squeue(PILOTS)}


def test_weights_one_to_three_between_local_and_slurm(slurm_region: LocalHost) -> None:
    local = slurm_region
    local.ok("hyper", "regions", "update-region", REGION, "--max-pilots", "10", timeout=120)
    local.ok(
        "hyper", "queues", "add-queue", "--name", "mixed", "--compute-environment", "big",
        "--manual-region-weights", "-rw", "local=1", "-rw", f"{REGION}=3", "--yes",
    )  # fmt: skip
    # one worker a job: workers of one vCPU (the sample definition's hold a CPU per job)
    local.ok("hyper", "definitions", "add-definition", "--name", "one", "--vcpus", "1", "--yes")
    script = local.script("wait.sh", "#!/bin/bash\nsleep 20\n")
    job_id = local.ok("qsub", "-q", "mixed", "-d", "one", "-a", "1-8", str(script)).strip()

    def started() -> Counter[str]:
        return Counter(region for _, region, _ in workers(local))

    local.wait_for(lambda: sum(started().values()) >= 8, 60, "8 workers started")
    assert started() == {"local": 2, REGION: 6}
    assert len(squeue(PILOTS)) == 6
    local.ok("qdel", job_id)


def test_deleting_the_region_cancels_its_pilots(slurm_region: LocalHost) -> None:
    local = slurm_region
    local.ok("hyper", "regions", "update-region", REGION, "--sbatch-args", "--begin=now+1hour",
             timeout=120)  # fmt: skip
    local.ok("qsub", "-q", "hq", "-d", "sample-def-1", str(local.script("x.sh", "echo x\n")))
    local.wait_for(lambda: bool(squeue(PILOTS)), 120, "a pending pilot")
    listed = json.loads(local.ok("hyper", "regions", "list-pilots", REGION, "--json"))
    assert [p["state"] for p in listed["items"]] == ["PENDING"]
    local.ok("hyper", "regions", "delete-region", REGION, "--force", timeout=120)
    assert not squeue(PILOTS)


def test_a_host_started_with_the_slurm_dialect_on_path_runs_slurms_own_commands(
    hyper_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/dialects.md suggests the dialect's folder first on a shell's PATH; a host
    started from that shell ran its own squeue and sbatch for its Slurm region's, which
    asked the host itself: its ticks waited 60 s each, and jobs failed without running."""
    from qtools.dialect_path import folder

    dialect = folder("slurm", hyper_home / "data" / "dialects")
    monkeypatch.setenv("PATH", f"{dialect}:{os.environ['PATH']}")
    with running_local_host(hyper_home, tmp_path / "work") as local, region_of_slurm(local):
        script = local.script("one.sh", "#!/bin/bash\necho ran\n")
        job_id = local.ok("qsub", "-q", "hq", "-d", "sample-def-1", str(script)).strip()
        done = local.wait_finished(job_id, timeout=180)
        assert done["status"] == "Successful", done
        assert local.ok("qlog", job_id) == "ran\n"
        assert any(region == REGION for _, region, _ in workers(local))  # a Slurm pilot ran it
