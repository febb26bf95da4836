"""End to end, what HPC users rely on: arrays, work items, dependencies, hold and
release, time limits, priorities, output files, environment, and scripts written
for Slurm, PBS and LSF, on a real local host."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time

import pytest

from tests.conftest import LocalHost

pytestmark = pytest.mark.e2e

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]
CORES = os.cpu_count() or 1


def attempts(local: LocalHost, array_id: int | None = None) -> list[tuple[int, float, float]]:
    """(job id, started, ended) of every finished attempt, from the host's database."""
    query = "SELECT a.job_id, a.started, a.ended FROM attempts a JOIN jobs j ON j.id = a.job_id"
    args: tuple = ()
    if array_id is not None:
        query += " WHERE j.array_id = ?"
        args = (array_id,)
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        return list(db.execute(query + " AND a.ended IS NOT NULL" if args else query, args))


def most_at_once(intervals: list[tuple[int, float, float]]) -> int:
    events = sorted([(s, 1) for _, s, _ in intervals] + [(e, -1) for _, _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_array_of_a_thousand_with_a_cap(local: LocalHost) -> None:
    local.script("task.sh", "echo $HYPER_ARRAY_INDEX $HYPER_ARRAY_SIZE $HYPER_ARRAY_JOB_ID\n")
    array_id = local.ok("qsub", "--wait", "-a", "1-1000%4", "-o", "out/%a.txt", *Q, "task.sh")
    array_id = array_id.strip()
    job = local.job(array_id)
    assert job["kind"] == "array" and job["counts"]["Successful"] == 1000
    for index in (1, 500, 1000):
        assert (local.cwd / "out" / f"{index}.txt").read_text() == f"{index} 1000 {array_id}\n"
    assert len(list((local.cwd / "out").iterdir())) == 1000
    assert most_at_once(attempts(local, int(array_id))) <= 4


def test_cap_of_one_runs_tasks_one_at_a_time(local: LocalHost) -> None:
    local.script("nap.sh", "sleep 0.3\n")
    array_id = int(local.ok("qsub", "--wait", "-a", "1-6%1", *Q, "nap.sh"))
    spans = attempts(local, array_id)
    assert len(spans) == 6 and most_at_once(spans) == 1


def test_small_arrays_and_their_ids(local: LocalHost) -> None:
    local.script("id.sh", "echo $HYPER_JOB_ID/$HYPER_ARRAY_JOB_ID/$HYPER_ARRAY_INDEX\n")
    one = int(local.ok("qsub", "--wait", "-a", "7", *Q, "id.sh"))
    assert local.ok("qlog", str(one + 1)) == f"{one + 1}/{one}/7\n"
    two = int(local.ok("qsub", "--wait", "-a", "0-2:2", *Q, "id.sh"))
    assert local.ok("qlog", str(two + 2)) == f"{two + 2}/{two}/2\n"
    listing = local.ok("qstat").splitlines()
    assert any(line.startswith(f"{one}[7]") for line in listing)
    assert any(line.startswith(f"{two}[0-2:2]") for line in listing)
    expanded = local.ok("qstat", "--expand", "--noheader").split()
    assert f"{two}_0" in expanded and f"{two}_2" in expanded


def test_work_items_from_stdin(local: LocalHost) -> None:
    local.script("item.sh", 'echo "$WORK_ITEM $HYPER_WORK_ITEM"\n')
    items = "".join(f"{n:02d}\n" for n in range(1, 17))
    array_id = local.ok(
        "qsub", "--wait", "--workitem-file", "-", "--prefix", "Dam001/Period",
        "-o", "items/%a.out", *Q, "item.sh", input=items,
    ).strip()  # fmt: skip
    outputs = sorted((local.cwd / "items").iterdir())
    assert len(outputs) == 16
    assert (local.cwd / "items" / "16.out").read_text() == "Dam001/Period16 Dam001/Period16\n"
    names = local.ok("qstat", "-a", array_id, "--noheader").splitlines()
    assert [line.split()[1] for line in names][:2] == ["Dam001_Period01", "Dam001_Period02"]


def test_work_items_from_a_range(local: LocalHost) -> None:
    out = local.ok("qsub", "--dry-run", "--workitems", "01-16", "--prefix", "Dam001/Period",
                   "--padding", "2", *Q, "-c", "echo $WORK_ITEM")  # fmt: skip
    assert "tasks: 16" in out and "Dam001_Period16" in out
    assert "Total: 0" in local.ok("qstat")  # a dry run submits nothing


def test_afterok_runs_b_after_a(local: LocalHost) -> None:
    local.script("a.sh", "sleep 1; echo a\n")
    local.script("b.sh", "echo b\n")
    a = local.ok("qsub", *Q, "a.sh").strip()
    b = local.ok("qsub", "-W", f"depend=afterok:{a}", *Q, "b.sh").strip()
    assert local.job(b)["status"] == "Blocked"
    assert local.wait_finished(b)["status"] == "Successful"
    assert local.job(a)["ended"] <= local.job(b)["started"]


def test_failed_dependency_fails_the_dependent_with_a_reason(local: LocalHost) -> None:
    local.script("bad.sh", "exit 5\n")
    local.script("b.sh", "echo never\n")
    a = local.ok("qsub", *Q, "bad.sh").strip()
    b = local.ok("qsub", "-W", f"depend=afterok:{a}", *Q, "b.sh").strip()
    c = local.ok("qsub", "-W", f"depend=afterok:{b}", *Q, "b.sh").strip()
    job = local.wait_finished(c)
    assert job["status"] == "Failed" and "can never be met" in job["reason"]
    assert local.job(b)["attempt"] == 0 and local.ok("qlog", b) == ""


def test_afternotok_afterany_and_submit_time_judgement(local: LocalHost) -> None:
    local.script("bad.sh", "exit 5\n")
    local.script("ok.sh", "echo ok\n")
    bad = local.sh("qsub", "--wait", *Q, "bad.sh").out.strip()
    notok = local.ok("qsub", "-W", f"depend=afternotok:{bad}", *Q, "ok.sh").strip()
    anyway = local.ok("qsub", "-W", f"depend=afterany:{bad}", *Q, "ok.sh").strip()
    never = local.ok("qsub", "-W", f"depend=afterok:{bad}", *Q, "ok.sh").strip()
    assert local.wait_finished(notok)["status"] == "Successful"
    assert local.wait_finished(anyway)["status"] == "Successful"
    assert local.job(never)["status"] == "Failed"  # judged at once: bad had already failed


def test_aftercorr_pairs_tasks(local: LocalHost) -> None:
    local.script("first.sh", "[ $HYPER_ARRAY_INDEX -ne 2 ]\n")  # task 2 fails
    local.script("second.sh", "echo second $HYPER_ARRAY_INDEX\n")
    first = local.ok("qsub", "-a", "1-3", *Q, "first.sh").strip()
    second = local.ok("qsub", "-a", "1-3", "-W", f"depend=aftercorr:{first}", *Q,
                      "second.sh").strip()  # fmt: skip
    job = local.wait_finished(second)
    assert job["counts"]["Successful"] == 2 and job["counts"]["Failed"] == 1
    failed = json.loads(local.ok("qstat", "-a", second, "--json"))["jobs"]
    by_index = {task["array_index"]: task for task in failed}
    assert by_index[2]["status"] == "Failed" and "can never be met" in by_index[2]["reason"]
    assert local.ok("qlog", str(by_index[3]["id"])) == "second 3\n"


def test_dependency_on_an_unknown_job_changes_nothing(local: LocalHost) -> None:
    local.script("x.sh", "true\n")
    result = local.sh("qsub", "-W", "depend=afterok:99999", *Q, "x.sh")
    assert result.code == 2 and "unknown job id 99999" in result.err
    assert "Total: 0" in local.ok("qstat")


def test_hold_and_release(local: LocalHost) -> None:
    local.script("x.sh", "echo released\n")
    held = local.ok("qsub", "-h", *Q, "x.sh").strip()
    time.sleep(1.5)
    assert local.job(held)["status"] == "Held"
    local.ok("qrls", held)
    assert local.wait_finished(held)["status"] == "Successful"
    # hold a waiting job behind a full cluster, then release it
    local.script("block.sh", "sleep 600\n")
    blockers = [local.ok("qsub", *Q, "block.sh").strip() for _ in range(CORES)]
    local.wait_for(lambda: all(local.job(b)["status"] == "Running" for b in blockers))
    waiting = local.ok("qsub", *Q, "x.sh").strip()
    local.ok("qhold", waiting)
    local.ok("qdel", *blockers)
    time.sleep(1.5)
    assert local.job(waiting)["status"] == "Held"
    result = local.sh("qhold", blockers[0])
    assert result.code == 1 and "cannot be held" in result.err
    local.ok("qrls", waiting)
    assert local.wait_finished(waiting)["status"] == "Successful"


def test_time_limit_stops_the_job(local: LocalHost) -> None:
    local.script("long.sh", "echo start\nsleep 60\n")
    started = time.monotonic()
    result = local.sh("qsub", "--wait", "-t", "0:02", *Q, "long.sh")
    assert time.monotonic() - started < 10
    assert result.code == 124  # the time limit's own code (cancellation's is 143)
    job = local.job(result.out.strip())
    assert job["status"] == "Failed" and "time limit" in job["reason"]


def test_priority_orders_waiting_jobs(local: LocalHost) -> None:
    local.script("block.sh", "sleep 600\n")
    local.script("x.sh", "true\n")
    blockers = [local.ok("qsub", *Q, "block.sh").strip() for _ in range(CORES)]
    local.wait_for(lambda: all(local.job(b)["status"] == "Running" for b in blockers))
    low = local.ok("qsub", "--priority", "-5", *Q, "x.sh").strip()
    high = local.ok("qsub", "--priority", "10", *Q, "x.sh").strip()
    local.ok("qdel", blockers[0])
    local.wait_finished(high)
    local.wait_finished(low)
    assert local.job(high)["started"] <= local.job(low)["started"]
    if blockers[1:]:  # blockers[0] has ended: naming it again would exit 1
        local.ok("qdel", *blockers[1:])


def test_environment_flags(local: LocalHost) -> None:
    local.script("env.sh", 'echo "$ALPHA|$BETA|$FROM_SHELL|${HYPER_API_KEY:-none}"\n')
    env = {**local.env, "FROM_SHELL": "yes", "HYPER_API_KEY": "secret"}
    job = local.ok("qsub", "--wait", "-v", "ALPHA=a=b", "--name-value", "BETA=2", "-V", *Q,
                   "env.sh", env=env).strip()  # fmt: skip
    assert local.ok("qlog", job) == "a=b|2|yes|none\n"
    plain = local.ok("qsub", "--wait", *Q, "env.sh", env=env).strip()
    assert local.ok("qlog", plain) == "|||none\n"  # nothing exported without -V
    bad = local.sh("qsub", "-v", "1BAD=x", *Q, "env.sh")
    assert bad.code == 2 and "not a valid environment variable" in bad.err


def test_qdel_on_arrays(local: LocalHost) -> None:
    local.script("x.sh", "true\n")
    array_id = local.ok("qsub", "-h", "-a", "1-6", *Q, "x.sh").strip()
    local.ok("qdel", f"{array_id}[2-3]", f"{array_id}_5")
    tasks = json.loads(local.ok("qstat", "-a", array_id, "--json"))["jobs"]
    cancelled = sorted(t["array_index"] for t in tasks if t["status"] == "Cancelled")
    assert cancelled == [2, 3, 5]
    local.ok("qdel", "-f", "Held", "-q", "sample-queue-1")
    assert local.job(array_id)["counts"]["Cancelled"] == 6
    bad = local.sh("qdel", "1x[")
    assert bad.code == 2 and "not a job id" in bad.err


def test_wait_on_an_array_exits_with_the_failing_code(local: LocalHost) -> None:
    local.script("t.sh", "[ $HYPER_ARRAY_INDEX -eq 3 ] && exit 6\nexit 0\n")
    result = local.sh("qsub", "--wait", "-a", "1-4", *Q, "t.sh")
    assert result.code == 6
    assert local.job(result.out.strip())["status"] == "Failed"


SLURM_SCRIPT = """#!/bin/bash
#SBATCH -J slurm-job
#SBATCH -p sample-queue-1
#SBATCH -t 10
#SBATCH -a 1-3
#SBATCH -o slurm-%A_%a.out
#SBATCH --mem=1G
#HYPER -d sample-def-1

echo "task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID in $SLURM_JOB_PARTITION"
echo "to stderr" >&2
"""

PBS_SCRIPT = """#!/bin/bash
#PBS -N pbs-job
#PBS -q sample-queue-1
#PBS -l walltime=00:10:00
#PBS -J 1-2
#PBS -o pbs.out
#PBS -j oe
#PBS -V
#HYPER -d sample-def-1
cd $PBS_O_WORKDIR
echo "pbs $PBS_ARRAY_INDEX $MARK"
"""

LSF_SCRIPT = """#!/bin/bash
#BSUB -J "lsf-job[1-2]"
#BSUB -q sample-queue-1
#BSUB -W 0:10
#BSUB -o lsf.%J.%I.out
#BSUB -n 1 -R "rusage[mem=512]"
#HYPER -d sample-def-1
echo "lsf $LSB_JOBINDEX of $LSB_JOBID"
"""


def test_slurm_script_runs_unchanged(local: LocalHost) -> None:
    local.script("slurm.sh", SLURM_SCRIPT)
    result = local.sh("qsub", "--wait", "slurm.sh")
    assert result.code == 0, result.err
    assert "ignored" not in result.err  # --mem=1G is honoured
    array_id = result.out.strip()
    job = local.job(array_id)
    assert job["options"]["request"] == {"mem_mib": 1024}
    assert (job["name"], job["time_limit"], job["size"]) == ("slurm-job", 600, 3)
    out = (local.cwd / f"slurm-{array_id}_2.out").read_text()
    assert out == f"task 2 of job {array_id} in sample-queue-1\nto stderr\n"


def test_pbs_script_runs_unchanged(local: LocalHost) -> None:
    local.script("pbs.sh", PBS_SCRIPT)
    env = {**local.env, "MARK": "exported"}
    array_id = local.ok("qsub", "--wait", "pbs.sh", env=env).strip()
    job = local.job(array_id)
    assert (job["name"], job["time_limit"], job["size"]) == ("pbs-job", 600, 2)
    # both tasks name one -o file: each starts it afresh (a first attempt truncates) and
    # appends to it, so it holds what the task that started last wrote, and the other's
    # line too if that one wrote after it
    lines = (local.cwd / "pbs.out").read_text().splitlines()
    assert lines and set(lines) <= {"pbs 1 exported", "pbs 2 exported"}, lines
    assert len(lines) == len(set(lines)), lines


def test_lsf_script_runs_unchanged(local: LocalHost) -> None:
    local.script("lsf.sh", LSF_SCRIPT)
    result = local.sh("qsub", "--wait", "lsf.sh")
    assert result.code == 0 and "ignored" not in result.err, result.err
    array_id = result.out.strip()
    job = local.job(array_id)
    assert job["options"]["request"] == {"cpus": 1, "mem_mib": 512}
    assert (job["name"], job["time_limit"], job["size"]) == ("lsf-job", 600, 2)
    # bsub: "%J is replaced by the job ID"; "All jobs in the array share the same job ID"
    out = local.cwd / f"lsf.{array_id}.1.out"
    assert out.read_text() == f"lsf 1 of {array_id}\n"


def test_directives_none_ignores_the_script(local: LocalHost) -> None:
    local.script("slurm.sh", SLURM_SCRIPT)
    result = local.sh("qsub", "--directives", "none", "slurm.sh")
    assert result.code == 0, result.err  # the host's default queue and definition
    assert local.job(result.out.strip())["name"] == "slurm.sh"


def test_hundred_thousand_tasks_in_one_request(local: LocalHost) -> None:
    local.script("x.sh", "true\n")
    started = time.monotonic()
    array_id = local.ok("qsub", "-h", "-a", "1-100000", *Q, "x.sh").strip()
    took = time.monotonic() - started
    counts = json.loads(local.ok("qstat", "-a", array_id, "--json", "--limit", "5"))
    assert counts["counts"]["Held"] == 100000 and len(counts["jobs"]) == 5
    assert counts["next"] == counts["jobs"][-1]["id"]
    local.ok("qdel", array_id)
    assert local.job(array_id)["counts"]["Cancelled"] == 100000
    assert took < 30  # the figure itself is measured by the benchmarks


@pytest.mark.slow
def test_array_of_ten_thousand_runs_to_the_end(local: LocalHost) -> None:
    local.script("x.sh", "true\n")
    array_id = local.ok("qsub", "--wait", "-a", "1-10000", *Q, "x.sh", timeout=600).strip()
    assert local.job(array_id)["counts"]["Successful"] == 10000


def test_one_task_by_its_selector_in_qlog_and_qstat(local: LocalHost) -> None:
    local.script("each.sh", "echo task $HYPER_ARRAY_INDEX\n")
    array_id = local.ok("qsub", "-a", "0-20:5", *Q, "each.sh").strip()
    for selector in (f"{array_id}_10", f"{array_id}[10]"):
        record = json.loads(local.ok("qstat", "-i", selector, "--json"))["job"]
        assert record["array_index"] == 10
        assert local.wait_finished(record["id"])["status"] == "Successful"
        assert local.ok("qlog", selector) == "task 10\n"
    for argv, message in (
        (["qlog", f"{array_id}_3"], "has no task 3"),
        (["qstat", "-i", f"{array_id}_3"], "has no task 3"),
        (["qlog", f"{array_id}[5-10]"], "several tasks"),
    ):
        result = local.sh(*argv)
        assert result.code == 2 and result.err.count("\n") == 1 and message in result.err, result
