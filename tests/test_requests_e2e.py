"""End to end: what a job asks for (CPUs, memory, GPUs) is what it gets, on a real local
host with real processes. Workers here have two vCPUs (the machine's two CPUs), so that
two one-CPU jobs share a worker and a two-CPU job has it to itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, LocalHost, running_local_host

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# a job that notes when it ran, where, and on which CPUs and GPUs
PROBE = """#!/bin/bash
start=$(date +%s.%N)
sleep {sleep}
{meet}
end=$(date +%s.%N)
printf '{{"start": %s, "end": %s, "worker": "%s", "cpus": "%s", "nproc": %s,'\\
' "slurm_cpus": "%s", "hyper_cpus": "%s", "gpus": "%s", "omp": "%s"}}\\n' \\
  "$start" "$end" "$HYPER_WORKER_ID" \\
  "$(grep Cpus_allowed_list /proc/self/status | cut -f2)" "$(nproc)" \\
  "${{SLURM_CPUS_PER_TASK:-}}" "$HYPER_CPUS" "${{CUDA_VISIBLE_DEVICES:-}}" "$OMP_NUM_THREADS"
"""


def _definition(local: LocalHost, name: str, *flags: str) -> None:
    local.ok("hyper", "definitions", "add-definition", "--name", name, *flags, "--yes")


def _meet(here: Path, mine: str, other: str) -> str:
    """A line that marks this job as running and waits (up to 120 s) until the other one is
    too: two jobs that run at once overlap however late a loaded machine starts either."""
    return (
        f"touch {here / mine}; for _ in $(seq 1200); do"
        f" [ -e {here / other} ] && break; sleep 0.1; done"
    )


def _submit(
    local: LocalHost, *flags: str, directives: str = "", sleep: float = 2, meet: str = ""
) -> str:
    text = PROBE.format(sleep=sleep, meet=meet).replace(
        "#!/bin/bash\n", "#!/bin/bash\n" + directives, 1
    )
    path = local.script(f"probe-{len(list(local.cwd.iterdir()))}.sh", text)
    return local.ok("qsub", *flags, str(path)).strip()


def _ran(local: LocalHost, job_id: str) -> dict:
    job = local.wait_finished(job_id, timeout=120)
    assert job["status"] == "Successful", (job["reason"], job["exit_code"])
    return dict(json.loads(local.ok("qlog", job_id)))


def _cpus(listing: str) -> set[int]:
    found: set[int] = set()
    for part in listing.split(","):
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_two_one_cpu_jobs_share_a_worker_and_a_two_cpu_job_waits(local: LocalHost) -> None:
    _definition(local, "two", "--vcpus", "2", "--memory-limit-mib", "2048")
    flags = ("-q", "sample-queue-1", "-d", "two")
    first = _submit(local, *flags, "--cpus", "1", sleep=1, meet=_meet(local.cwd, "a", "b"))
    second = _submit(local, *flags, "--cpus", "1", sleep=1, meet=_meet(local.cwd, "b", "a"))
    whole = _submit(local, *flags, "--cpus", "2", sleep=0.1)
    a, b, c = _ran(local, first), _ran(local, second), _ran(local, whole)
    assert a["worker"] == b["worker"] == c["worker"]  # one worker ran all three
    assert _overlap(a, b)  # at once
    assert _cpus(a["cpus"]).isdisjoint(_cpus(b["cpus"]))  # each on a CPU of its own
    assert (a["nproc"], a["hyper_cpus"], a["omp"]) == (1, "1", "1")
    assert c["start"] >= max(a["end"], b["end"])  # the two-CPU job waited for both
    assert (c["nproc"], c["hyper_cpus"]) == (2, "2")
    shown = local.job(whole)
    assert shown["options"]["request"] == {"cpus": 2}


@pytest.fixture
def own_locks_host(
    hyper_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalHost]:
    """A local host whose workers keep their device locks apart from other tests' hosts."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with running_local_host(hyper_home, tmp_path / "work") as handle:
        yield handle


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nowhere else to go")
def test_two_workers_jobs_at_once_run_on_cpus_of_their_own(own_locks_host: LocalHost) -> None:
    local = own_locks_host
    _definition(local, "one", "--vcpus", "1", "--memory-limit-mib", "512")
    flags = ("-q", "sample-queue-1", "-d", "one")
    first = _submit(local, *flags, sleep=0.1, meet=_meet(local.cwd, "e", "f"))
    second = _submit(local, *flags, sleep=0.1, meet=_meet(local.cwd, "f", "e"))
    a, b = _ran(local, first), _ran(local, second)
    assert a["worker"] != b["worker"] and _overlap(a, b), (a, b)  # two workers, at once
    assert len(_cpus(a["cpus"])) == len(_cpus(b["cpus"])) == 1
    assert _cpus(a["cpus"]).isdisjoint(_cpus(b["cpus"])), (a["cpus"], b["cpus"])


def test_slurm_cpus_per_task_is_what_the_job_gets(local: LocalHost) -> None:
    _definition(local, "two", "--vcpus", "2", "--memory-limit-mib", "2048")
    lines = "#SBATCH --cpus-per-task=2\n#SBATCH --mem=500M\n"
    path = local.script("slurm.sh", PROBE.format(sleep=2, meet="").replace("\n", "\n" + lines, 1))
    submitted = local.sh("qsub", "-q", "sample-queue-1", "-d", "two", str(path))
    assert submitted.code == 0 and "ignored" not in submitted.err  # honoured, not warned
    again = local.ok("qsub", "-q", "sample-queue-1", "-d", "two", str(path)).strip()
    one, two = _ran(local, submitted.out.strip()), _ran(local, again)
    for ran in (one, two):
        assert (ran["nproc"], ran["slurm_cpus"], ran["hyper_cpus"]) == (2, "2", "2")
    assert not _overlap(one, two)  # two CPUs each, on two CPUs: one after the other


def test_a_job_over_its_memory_ends_out_of_memory_beside_a_neighbour(local: LocalHost) -> None:
    _definition(local, "two", "--vcpus", "2", "--memory-limit-mib", "2048")
    hungry = local.script(
        "hungry.sh",
        "#!/bin/bash\n#SBATCH --mem=100M\n#SBATCH -c 1\n"
        "python3 -c 'import time; block = b\"x\" * (300 * 2**20); time.sleep(30)'\n",
    )
    neighbour = local.script(
        "neighbour.sh", "#!/bin/bash\n#SBATCH --mem=100M -c 1\nsleep 3\necho fine\n"
    )
    flags = ("-q", "sample-queue-1", "-d", "two")
    hungry_id = local.ok("qsub", *flags, str(hungry)).strip()
    neighbour_id = local.ok("qsub", *flags, str(neighbour)).strip()
    ended = local.wait_finished(hungry_id, timeout=120)
    assert ended["status"] == "Failed"
    assert ended["exit_code"] == 125
    assert ended["reason"].startswith("out of memory"), ended["reason"]
    assert "100 MiB" in ended["reason"]
    assert ended["resources"] == {"cpus": 1, "mem_mib": 100, "gpus": 0}  # qstat -i
    assert ended["used"]["peak_rss_mib"] > 100  # what the worker saw it reach
    done = local.wait_finished(neighbour_id, timeout=120)
    assert done["status"] == "Successful" and local.ok("qlog", neighbour_id) == "fine\n"
    assert done["worker_id"] == ended["worker_id"]  # they ran side by side


def test_gpus_are_handed_out_by_id_and_never_shared(local: LocalHost) -> None:
    _definition(
        local, "gpus", "--vcpus", "2", "--gpu-count", "2", "--gpu-ids", "3,5",
        "--memory-limit-mib", "1024",
    )  # fmt: skip
    flags = ("-q", "sample-queue-1", "-d", "gpus", "--gpus", "1", "--cpus", "1")
    ids = [_submit(local, *flags, sleep=3) for _ in range(3)]
    runs = [_ran(local, job_id) for job_id in ids]
    assert {run["gpus"] for run in runs} <= {"3", "5"}
    for one in runs:
        for other in runs:
            if one is not other and _overlap(one, other):
                assert one["gpus"] != other["gpus"]
    # two GPUs: never three at once (three intervals that overlap pairwise share a moment;
    # one job may overlap both others in turn when they ran one after the other)
    first, second, third = runs
    assert not (_overlap(first, second) and _overlap(first, third) and _overlap(second, third))


def test_a_request_larger_than_the_definitions_workers_is_refused(local: LocalHost) -> None:
    cores = os.cpu_count() or 1  # more than any worker of the sample definition has
    script = local.script("big.sh", f"#!/bin/bash\n#SBATCH --cpus-per-task={cores + 1}\necho\n")
    refused = local.sh("qsub", str(script))
    assert refused.code == 2
    assert refused.err.count("\n") == 1
    assert f"{cores + 1} CPUs" in refused.err and "1 CPU, 1G" in refused.err
    nodes = local.script("nodes.sh", "#!/bin/bash\n#PBS -l select=2:ncpus=1\necho\n")
    refused = local.sh("qsub", str(nodes))
    assert refused.code == 2 and "2 nodes" in refused.err and refused.err.count("\n") == 1
    listed = json.loads(local.ok("qstat", "--json"))
    assert not listed.get("jobs")


def test_python_api_jobs_carry_their_request(local: LocalHost, tmp_path: Path) -> None:
    _definition(local, "two", "--vcpus", "2", "--memory-limit-mib", "2048")
    code = (
        "import os\n"
        "from hyper import Executor\n"
        "def probe():\n"
        "    env = os.environ\n"
        "    return env['HYPER_CPUS'], env['HYPER_MEM'], len(os.sched_getaffinity(0))\n"
        "if __name__ == '__main__':\n"
        "    with Executor(queue='sample-queue-1', definition='two', cpus=2, mem='1G') as run:\n"
        "        print(run.submit(probe).result(timeout=120))\n"
    )
    path = tmp_path / "api.py"
    path.write_text(code)
    printed = local.ok("python", str(path), timeout=150)
    assert printed.strip() == "('2', '1024', 2)"


def test_a_joined_machine_says_its_capacity_and_its_worker_packs_within_it(
    local: LocalHost,
) -> None:
    local.ok("hyper", "regions", "add-region", "--name", "pool", "--kind", "static", "--yes")
    local.ok(
        "hyper", "queues", "add-queue", "--name", "poolq", "--compute-environment",
        "local-cluster", "--manual-region-weights", "-rw", "pool", "1", "--yes",
    )  # fmt: skip
    join = [
        str(BIN / "hyper"), "worker", "join", "--region", "pool", "--definition",
        "sample-def-1", "--slots", "1", "--node-id", "pool-1", "--cpus", "2", "--mem", "2G",
        "--gpus", "3,5",
    ]  # fmt: skip
    with subprocess.Popen(
        join, env=local.env, cwd=local.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as node:
        try:
            flags = ("-q", "poolq", "-d", "sample-def-1", "--cpus", "1", "--mem", "100M")
            first = _submit(local, *flags, sleep=0.1, meet=_meet(local.cwd, "c", "d"))
            second = _submit(local, *flags, sleep=0.1, meet=_meet(local.cwd, "d", "c"))
            a, b = _ran(local, first), _ran(local, second)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=20)
        said = node.stderr.read().decode() if node.stderr else ""
    # the definition's workers have 1 CPU: two 1-CPU jobs at once only in the machine's 2
    assert a["worker"] == b["worker"] and _overlap(a, b), (a, b)
    assert _cpus(a["cpus"]).isdisjoint(_cpus(b["cpus"]))
    assert "with 1 slots sharing 2 CPUs, 2G, 2 GPUs" in said, said
    assert (a["gpus"], b["gpus"]) == ("", "")  # asked for none: none visible
