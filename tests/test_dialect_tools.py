"""The tools that drive PBS, LSF and Slurm, run against a local host as their users
configure them: each tool's own class for the dialect with only the queue named, the
dialect's folder first on PATH (as `hyper dialect-path` tells users to do).

Where a tool needs more than the queue, the test says why next to it. No tool names a
job definition (none has a word for it): every test here relies on the queue's default
definition (sample-queue-1's is sample-def-1).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, ROOT, LocalHost
from tests.helpers.dialects import dialect_path, unfinished

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.tools,
    # the tools' own deprecation notices are theirs to fix, not failures of hyper
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

QUEUE = "sample-queue-1"


@pytest.fixture
def tool_host(local: LocalHost, monkeypatch: pytest.MonkeyPatch) -> LocalHost:
    """The local host, with the dialects' folders first on this process's PATH (the tools
    run their commands from it)."""
    monkeypatch.setenv("PATH", dialect_path(local))
    monkeypatch.chdir(local.cwd)
    return local


def all_jobs(local: LocalHost) -> list[dict[str, Any]]:
    return list(json.loads(local.ok("qstat", "--json", "--expand", "--limit", "0"))["jobs"])


def settled(local: LocalHost, timeout: float = 90) -> None:
    """No job of the host is left waiting or running."""
    local.wait_for(lambda: unfinished(local) == [], timeout, "every job to end")


# ---- dask-jobqueue --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pbs", "lsf", "slurm"])
def test_dask_jobqueue(tool_host: LocalHost, kind: str) -> None:
    """PBSCluster, LSFCluster and SLURMCluster scale to 2 workers, compute, and leave no
    job behind on close. (cores and memory: dask-jobqueue requires them.)"""
    import dask_jobqueue
    from distributed import Client

    cluster_class = {
        "pbs": dask_jobqueue.PBSCluster,
        "lsf": dask_jobqueue.LSFCluster,
        "slurm": dask_jobqueue.SLURMCluster,
    }[kind]
    # LSF's memory unit is the cluster's LSF_UNIT_FOR_LIMITS; hyper's is MB
    units = {"lsf_units": "mb"} if kind == "lsf" else {}
    with cluster_class(queue=QUEUE, cores=1, memory="1GB", **units) as cluster:
        cluster.scale(2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            squares = client.map(lambda x: x * x, range(20))
            assert client.submit(sum, squares).result(timeout=60) == sum(x * x for x in range(20))
    settled(tool_host)
    workers = [job for job in all_jobs(tool_host) if job["name"] == "dask-worker"]
    assert len(workers) == 2
    assert {job["status"] for job in workers} == {"Cancelled"}


# ---- Snakemake ------------------------------------------------------------------------

SNAKEFILE = """\
rule all:
    input: "combined.txt"

rule part:
    output: "part_{i}.txt"
    shell: "echo {wildcards.i} > {output}"

rule combine:
    input: expand("part_{i}.txt", i=range(8))
    output: "combined.txt"
    shell: "cat {input} > {output}"

rule broken:
    output: "broken.txt"
    shell: "exit 7"
"""

# what the cluster-generic executor asks of a status command: success, failed or running,
# written as users write them, with each dialect's own status command
STATUS = {
    "pbs": """#!/bin/sh
full=$(qstat -x -f "$1")
state=$(echo "$full" | awk '$1 == "job_state" {print $3}')
code=$(echo "$full" | awk '$1 == "Exit_status" {print $3}')
if [ "$state" = F ]; then
  if [ "$code" = 0 ]; then echo success; else echo failed; fi
else
  echo running
fi
""",
    "lsf": """#!/bin/sh
case "$(bjobs -noheader -o stat "$1")" in
  DONE) echo success ;;
  EXIT) echo failed ;;
  *) echo running ;;
esac
""",
    "slurm": """#!/bin/sh
case "$(sacct -j "$1" -X -n -P -o State | head -n 1)" in
  COMPLETED) echo success ;;
  FAILED*|CANCELLED*|TIMEOUT*|OUT_OF_MEMORY*|NODE_FAIL*|DEADLINE*) echo failed ;;
  *) echo running ;;
esac
""",
}
# bsub says "Job <12> is submitted to queue <q>."; the executor wants the id alone
LSF_SUBMIT = """#!/bin/sh
bsub -q sample-queue-1 < "$1" | sed -n 's/^Job <\\([0-9]*\\)>.*/\\1/p'
"""
SUBMIT = {"pbs": f"qsub -q {QUEUE}", "lsf": "./lsf-submit.sh",
          "slurm": f"sbatch --parsable -p {QUEUE}"}  # fmt: skip
CANCEL = {"pbs": "qdel", "lsf": "bkill", "slurm": "scancel"}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Snakemake 9 needs Python 3.11")
@pytest.mark.parametrize("kind", ["pbs", "lsf", "slurm"])
def test_snakemake_cluster_generic(tool_host: LocalHost, kind: str) -> None:
    """A workflow of 10 cluster jobs runs through the cluster-generic executor with the
    dialect's submit, status and cancel commands; its failing rule is reported failed."""
    work = tool_host.cwd / "workflow"
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    for name, text in (("status.sh", STATUS[kind]), ("lsf-submit.sh", LSF_SUBMIT)):
        (work / name).write_text(text)
        (work / name).chmod(0o755)
    command = [
        str(BIN / "snakemake"), "--executor", "cluster-generic",
        "--cluster-generic-submit-cmd", SUBMIT[kind],
        "--cluster-generic-status-cmd", "./status.sh",
        "--cluster-generic-cancel-cmd", CANCEL[kind],
        "--jobs", "10", "--keep-going", "--latency-wait", "5",
        # a round of status checks every 2 s, not Snakemake's 10: the jobs end in a second
        "--seconds-between-status-checks", "2",
        "all", "broken",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=work, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    log = done.stdout + done.stderr
    assert done.returncode == 1, log  # the broken rule failed; the rest went on
    assert "Error in rule broken" in log, log
    assert (work / "combined.txt").read_text().split() == [str(i) for i in range(8)]
    assert not (work / "broken.txt").exists()
    settled(tool_host)
    jobs = all_jobs(tool_host)
    assert len(jobs) == 10  # 8 parts, combine and broken: `all` runs locally
    assert sorted(job["status"] for job in jobs) == ["Failed"] + ["Successful"] * 9


# ---- Parsl ----------------------------------------------------------------------------


def parsl_provider(kind: str, **extra: Any) -> Any:
    """Each provider with only the queue (Slurm: partition) named, and two settings any
    user here needs: worker_init puts this Python's bin on PATH and the tasks' module on
    PYTHONPATH (as `module load` or `conda activate` would), and Torque and LSF, whose
    default launchers are aprun and jsrun (Cray's and Summit's), get the single-node
    launcher."""
    from parsl.launchers import SingleNodeLauncher
    from parsl.providers import LSFProvider, PBSProProvider, SlurmProvider, TorqueProvider

    setup = f"export PATH={Path(sys.executable).parent}:$PATH PYTHONPATH={ROOT}"
    settings: dict[str, Any] = {"worker_init": setup}
    settings.update(extra)
    if kind == "pbspro":
        return PBSProProvider(queue=QUEUE, **settings)
    if kind == "torque":
        return TorqueProvider(queue=QUEUE, launcher=SingleNodeLauncher(), **settings)
    if kind == "lsf":
        return LSFProvider(queue=QUEUE, launcher=SingleNodeLauncher(), **settings)
    return SlurmProvider(partition=QUEUE, **settings)


def close_log_files(folder: Path) -> None:
    """Parsl stops using its log file at cleanup but leaves it open: closed here."""
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        if isinstance(handler, logging.FileHandler) and handler.baseFilename.startswith(
            str(folder)
        ):
            handler.close()


@pytest.mark.parametrize("kind", ["pbspro", "torque", "lsf", "slurm"])
def test_parsl_providers(tool_host: LocalHost, tmp_path: Path, kind: str) -> None:
    """Parsl's providers run tasks, read a failed block's state, and cancel their blocks
    at cleanup, with no scale-out storm (one block for max_blocks=1)."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.jobs.states import JobState

    # a block whose job fails: LSF's EXIT and Slurm's FAILED read as FAILED; Parsl's own
    # tables read PBS's F (and Torque's C) as COMPLETED whatever the exit status
    failing = parsl_provider(kind, worker_init="exit 3")
    failing.script_dir = str(tmp_path)
    block = failing.submit("true", 1, job_name="failing")
    deadline = time.monotonic() + 60
    while not (status := failing.status([block])[0]).terminal:
        assert time.monotonic() < deadline, "the failing block never ended"
        time.sleep(0.5)
    expected = JobState.FAILED if kind in ("lsf", "slurm") else JobState.COMPLETED
    assert status.state == expected
    assert tool_host.job(block)["status"] == "Failed"

    @parsl.python_app
    def add(a: int, b: int) -> int:
        return a + b

    executor = HighThroughputExecutor(label=kind, provider=parsl_provider(kind))
    with parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "runinfo"))):
        assert [add(i, 1).result(timeout=120) for i in range(5)] == [1, 2, 3, 4, 5]
    close_log_files(tmp_path)
    settled(tool_host)
    blocks = [job for job in all_jobs(tool_host) if job["id"] != int(block)]
    assert len(blocks) == 1, blocks
    assert blocks[0]["status"] == "Cancelled"


# ---- PSI/J ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pbs", "lsf", "slurm"])
def test_psij_executors(tool_host: LocalHost, kind: str) -> None:
    """PSI/J's pbs, lsf and slurm executors run a job to COMPLETED and report a failing one
    as FAILED. (The polling interval is shortened from PSI/J's 30 s to keep this quick.)"""
    from psij import Job, JobAttributes, JobExecutor, JobSpec, JobState
    from psij.executors.batch.batch_scheduler_executor import BatchSchedulerExecutorConfig

    config = BatchSchedulerExecutorConfig(queue_polling_interval=1)
    executor = JobExecutor.get_instance(kind, config=config)
    jobs = []
    for command in ("echo hello", "exit 3"):
        spec = JobSpec(executable="/bin/sh", arguments=["-c", command],
                       attributes=JobAttributes(queue_name=QUEUE))  # fmt: skip
        job = Job(spec)
        executor.submit(job)
        jobs.append(job)
    good, bad = (job.wait(timeout=timedelta(seconds=120)) for job in jobs)
    assert good is not None and good.state == JobState.COMPLETED
    assert bad is not None and bad.state == JobState.FAILED and bad.exit_code == 3
    settled(tool_host)


# ---- submitit -------------------------------------------------------------------------


def test_submitit(tool_host: LocalHost) -> None:
    """submitit's Slurm executor (as its users write it, with a partition): a job's
    result, an array's results in order, a job's exception, and a cancel. Its jobs
    start their work with `srun`, hyper's inside a job; it polls them with sacct."""
    import math

    import submitit

    executor = submitit.AutoExecutor(folder=tool_host.cwd / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition=QUEUE, timeout_min=5, cpus_per_task=1,
                               mem_gb=1)  # fmt: skip
    one = executor.submit(sum, [1, 2, 3])
    many = executor.map_array(math.sqrt, [4, 9, 16])  # (by reference: a module jobs import)
    failing = executor.submit(math.sqrt, -1)
    assert one.result() == 6
    assert [job.result() for job in many] == [2, 3, 4]
    assert "math domain error" in str(failing.exception())
    slow = executor.submit(time.sleep, 300)
    tool_host.wait_for(lambda: slow.state == "RUNNING", 60, "the sleeping job to run")
    slow.cancel()
    tool_host.wait_for(lambda: slow.state.startswith("CANCELLED"), 60, "the cancel")
    settled(tool_host)
