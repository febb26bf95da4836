"""Workflows end to end, as a user runs them: `hyper workflows ...` in its own process
against a real local host daemon, real workers running the jobs, a cluster and queue
made for each run and deleted after it whatever happens, the client killed or
interrupted mid-run."""

from __future__ import annotations

import itertools
import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from hyper import hosts
from hyper.client import HostClient
from tests.conftest import BIN, LocalHost, Result
from tests.helpers.moto import moto_server

pytestmark = pytest.mark.e2e

SHELL_JOB = '#!/bin/bash\necho "{name} ran as job $HYPER_JOB_ID of run $HYPER_WORKFLOW_ID"\n'


@pytest.fixture
def client(local: LocalHost) -> Iterator[HostClient]:
    with hosts.connect("local") as connected:
        yield connected


def files(root: Path, tree: dict[str, str]) -> None:
    for name, text in tree.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def clusters_and_queues(client: HostClient) -> tuple[list[str], list[str]]:
    return (
        [r["name"] for r in client.list_resources("clusters")],
        [r["name"] for r in client.list_resources("queues")],
    )


def workflow(local: LocalHost, run_id: int | str) -> dict[str, Any]:
    return json.loads(local.ok("hyper", "workflows", "status", str(run_id), "--json"))


def wait_run(local: LocalHost, run_id: int | str, timeout: float = 90) -> dict[str, Any]:
    local.wait_for(
        lambda: workflow(local, run_id)["workflow"]["state"] in ("Successful", "Failed",
                                                                 "Cancelled"),
        timeout,
        f"run {run_id} to end",
    )  # fmt: skip
    return workflow(local, run_id)


def run(local: LocalHost, jobs: str, *flags: str) -> tuple[Result, dict[str, Any]]:
    """`hyper workflows run JOBS` to its end; what it said, and the run as the host has it."""
    result = local.sh("hyper", "workflows", "run", jobs, *flags, timeout=120)
    run_id = result.out.strip()
    assert run_id.isdigit(), result
    assert result.out == f"{run_id}\n"  # stdout carries the run's id only
    return result, workflow(local, run_id)


def steps(shown: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's jobs, by step name, as they are now."""
    jobs = {job["id"]: job for job in shown["jobs"]}
    return {step["name"]: jobs[step["job_id"]] for step in shown["workflow"]["steps"]}


# the reference's two example jobs files, their sources made local ------------------------

README_EXAMPLE = """[order]
sequential = job1, job2

[job job1]
name = thejobtouse.sh
local_path = thejobtouse.sh

[job job2]
handler = a_real_job.sh
local_path = path/where/job/lives
wait_time = 30
"""

DOCS_EXAMPLE = """[order]
sequential = job1, banana, job2

[job job1]
handler = src/script.sh
local_path = folder/path/to/project

[job job2]
handler = is-this-even-a-job
local_path = path/to/the/job/is-this-even-a-job

[job banana]
handler = long-running-script.sh
local_path = folder/path/to/project
wait_time = 240
"""


def test_the_readme_example_runs_to_completion_and_its_cluster_is_deleted(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {
        "jobs.ini": README_EXAMPLE,
        "thejobtouse.sh": SHELL_JOB.format(name="thejobtouse"),
        "path/where/job/lives/a_real_job.sh": "echo a real job in $(basename $PWD)\n",
    })  # fmt: skip
    result, shown = run(local, "jobs.ini", "--cluster", "readme")
    assert result.code == 0, result.err
    assert "warning: jobs.ini: [job job1]: 'name' read as 'handler'" in result.err
    run_id = shown["workflow"]["id"]
    assert shown["workflow"]["state"] == "Successful"
    assert shown["workflow"]["teardown"] == "cluster readme and queue readme deleted"
    jobs = steps(shown)
    assert [j["status"] for j in jobs.values()] == ["Successful", "Successful"]
    assert {j["queue"] for j in jobs.values()} == {"readme"}
    # their output is still there, the cluster and queue they ran on gone
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])
    first, second = (str(j["id"]) for j in jobs.values())
    assert local.ok("qlog", first) == f"thejobtouse ran as job {first} of run {run_id}\n"
    assert local.ok("qlog", second) == f"a real job in job-{second}.1\n"
    assert local.job(second)["status"] == "Successful"


def test_the_docs_example_runs_to_completion_in_its_order(
    local: LocalHost, client: HostClient
) -> None:
    project = "folder/path/to/project"
    files(local.cwd, {
        "jobs.ini": DOCS_EXAMPLE,
        f"{project}/src/script.sh": SHELL_JOB.format(name="job1"),
        f"{project}/long-running-script.sh": "sleep 1; date +%s.%N\n",
        "path/to/the/job/is-this-even-a-job": "date +%s.%N\n",
    })  # fmt: skip
    result, shown = run(local, "jobs.ini", "--cluster", "docs")
    assert result.code == 0, result.err
    jobs = steps(shown)
    assert list(jobs) == ["job1", "banana", "job2"]
    assert [j["status"] for j in jobs.values()] == ["Successful"] * 3
    # each started after the one before it ended (a chain on the host)
    for before, after in itertools.pairwise(jobs.values()):
        assert after["started"] >= before["ended"]
    assert float(local.ok("qlog", str(jobs["job2"]["id"]))) > float(
        local.ok("qlog", str(jobs["banana"]["id"]))
    )
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


# failures ------------------------------------------------------------------------------------

SEQUENCE = """[order]
sequential = a, b, c
[job a]
handler = a.sh
local_path = a.sh
wait_time = 1
[job b]
handler = b.sh
local_path = b.sh
wait_time = 1
[job c]
handler = c.sh
local_path = c.sh
wait_time = 1
"""


def test_a_failed_job_stops_a_sequential_run_and_its_cluster_is_deleted(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {
        "jobs.ini": SEQUENCE, "a.sh": "echo a\n", "b.sh": "echo b; exit 1\n", "c.sh": "echo c\n",
    })  # fmt: skip
    result, shown = run(local, "jobs.ini", "--cluster", "seq")
    assert result.code == 1
    jobs = steps(shown)
    cause = f"Exit code not 0: job b ({jobs['b']['id']}) exited with 1"
    assert shown["workflow"]["cause"] == cause
    assert f"hyper: run {shown['workflow']['id']}: Failed: {cause}" in result.err
    assert (jobs["a"]["status"], jobs["b"]["status"]) == ("Successful", "Failed")
    # c never ran
    assert (jobs["c"]["status"], jobs["c"]["attempt"]) == ("Failed", 0)
    assert "can never be met" in jobs["c"]["reason"]
    assert local.ok("qlog", str(jobs["c"]["id"])) == ""
    assert shown["workflow"]["teardown"] == "cluster seq and queue seq deleted"
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])
    assert local.ok("qlog", str(jobs["b"]["id"])) == "b\n"


PARALLEL = """[order]
parallel = slow, bad
[job slow]
handler = slow.sh
local_path = slow.sh
wait_time = 1
[job bad]
handler = bad.sh
local_path = bad.sh
wait_time = 1
"""


def test_a_failed_job_stops_its_running_siblings_in_a_parallel_run(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {
        "jobs.ini": PARALLEL, "slow.sh": "echo started; sleep 60\n",
        "bad.sh": "sleep 1; exit 2\n",
    })  # fmt: skip
    result, shown = run(local, "jobs.ini", "--cluster", "par")
    assert result.code == 1
    jobs = steps(shown)
    assert (
        shown["workflow"]["cause"]
        == f"Exit code not 0: job bad ({jobs['bad']['id']}) exited with 2"
    )
    assert jobs["slow"]["status"] == "Cancelled"
    assert local.ok("qlog", str(jobs["slow"]["id"])) == "started\n"
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


def test_keep_going_lets_the_siblings_of_a_failed_job_end_first(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {
        "jobs.ini": PARALLEL, "slow.sh": "sleep 2; echo finished\n", "bad.sh": "exit 2\n",
    })  # fmt: skip
    result, shown = run(local, "jobs.ini", "--cluster", "par", "--keep-going")
    assert result.code == 1
    jobs = steps(shown)
    assert (jobs["slow"]["status"], jobs["bad"]["status"]) == ("Successful", "Failed")
    assert shown["workflow"]["cause"].startswith("Exit code not 0: job bad")
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


def test_keep_cluster_leaves_the_cluster_for_the_next_run(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {"jobs.ini": SEQUENCE, "a.sh": "", "b.sh": "", "c.sh": ""})
    result, shown = run(local, "jobs.ini", "--cluster", "kept", "--keep-cluster")
    assert result.code == 0, result.err
    assert shown["workflow"]["teardown"] == "cluster kept and queue kept kept (--keep-cluster)"
    assert clusters_and_queues(client) == (["kept", "local-cluster"], ["kept", "sample-queue-1"])
    # on its queue, without a cluster of its own
    result, shown = run(local, "jobs.ini", "--queue", "kept")
    assert result.code == 0, result.err
    assert shown["workflow"]["teardown"] == "nothing to tear down: ran on queue kept"


# the client goes away; the run does not -------------------------------------------------

LONG = """[order]
sequential = long, after
[job long]
handler = long.sh
local_path = long.sh
wait_time = 1
[job after]
handler = after.sh
local_path = after.sh
wait_time = 1
"""


def start(local: LocalHost, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """`hyper workflows run` in the background, once its first job is running."""
    process = subprocess.Popen(
        [str(BIN / "hyper"), "workflows", "run", "jobs.ini", *flags],
        cwd=local.cwd, env=local.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C reaches it as at a terminal, even when these tests run in the background
        # (where a shell leaves SIGINT ignored, and Python then never raises KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout is not None
    run_id = process.stdout.readline().strip()
    assert run_id.isdigit()
    local.wait_for(
        lambda: steps(workflow(local, run_id))["long"]["status"] == "Running", 60, "long to run"
    )
    return process, run_id


def test_a_killed_client_does_not_stop_the_run_nor_its_tear_down(
    local: LocalHost, client: HostClient
) -> None:
    files(
        local.cwd, {"jobs.ini": LONG, "long.sh": "sleep 2; echo long\n", "after.sh": "echo after\n"}
    )
    process, run_id = start(local, "--cluster", "orphan")
    process.kill()
    process.communicate(timeout=30)
    shown = wait_run(local, run_id)
    assert shown["workflow"]["state"] == "Successful"
    assert [j["status"] for j in steps(shown).values()] == ["Successful", "Successful"]
    assert shown["workflow"]["teardown"] == "cluster orphan and queue orphan deleted"
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


def test_ctrl_c_cancels_the_run_and_its_cluster_is_still_deleted(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {"jobs.ini": LONG, "long.sh": "echo long; sleep 60\n", "after.sh": ""})
    process, run_id = start(local, "--cluster", "interrupted")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"hyper: interrupted: run {run_id} is cancelled" in err
    shown = wait_run(local, run_id)
    assert (shown["workflow"]["state"], shown["workflow"]["cause"]) == (
        "Cancelled",
        "the client was interrupted (Ctrl-C)",
    )
    jobs = steps(shown)
    assert (jobs["long"]["status"], jobs["after"]["status"]) == ("Cancelled", "Cancelled")
    assert local.ok("qlog", str(jobs["long"]["id"])) == "long\n"
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


def test_cancel_ends_a_detached_run_and_tears_it_down(local: LocalHost, client: HostClient) -> None:
    files(local.cwd, {"jobs.ini": LONG, "long.sh": "sleep 60\n", "after.sh": ""})
    run_id = local.ok("hyper", "workflows", "run", "jobs.ini", "--cluster", "bye", "--detach")
    run_id = run_id.strip()
    local.wait_for(lambda: steps(workflow(local, run_id))["long"]["status"] == "Running", 60)
    cancelled = local.sh("hyper", "workflows", "cancel", run_id)
    assert cancelled.code == 0, cancelled.err
    assert (
        cancelled.err == f"hyper: run {run_id}: Cancelled: cancelled with hyper workflows cancel\n"
    )
    shown = wait_run(local, run_id)
    assert shown["workflow"]["state"] == "Cancelled"
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])
    again = local.sh("hyper", "workflows", "cancel", run_id)
    assert again.err == f"hyper: run {run_id}: already Cancelled\n"


def test_a_job_cancelled_with_qdel_cancels_its_run(local: LocalHost, client: HostClient) -> None:
    files(local.cwd, {"jobs.ini": LONG, "long.sh": "sleep 60\n", "after.sh": ""})
    run_id = local.ok("hyper", "workflows", "run", "jobs.ini", "--cluster", "q", "--detach")
    run_id = run_id.strip()
    local.wait_for(lambda: steps(workflow(local, run_id))["long"]["status"] == "Running", 60)
    long_id = steps(workflow(local, run_id))["long"]["id"]
    local.ok("qdel", str(long_id))
    shown = wait_run(local, run_id)
    assert (shown["workflow"]["state"], shown["workflow"]["cause"]) == (
        "Cancelled",
        f"job long ({long_id}) was cancelled",
    )
    assert steps(shown)["after"]["attempt"] == 0  # it never ran
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


# refusals, and how a run is shown ----------------------------------------------------------


JOB_A = "[job a]\nhandler=a.sh\nlocal_path=a.sh\n"


def host_holds_nothing(local: LocalHost) -> None:
    with sqlite3.connect(local.data_dir / "hyper.db") as db:
        for table in ("workflows", "jobs", "files"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_bad_jobs_files_and_runs_the_host_refuses_change_nothing(
    local: LocalHost, client: HostClient
) -> None:
    files(local.cwd, {
        "both.ini": "[order]\nsequential = a\nparallel = a\n" + JOB_A,
        "good.ini": "[order]\nsequential = a\n" + JOB_A,
        "a.sh": "echo a\n",
    })  # fmt: skip
    cases = [
        (["both.ini"], "hyper: Must specify sequential or parallel in [order], not both\n"),
        (
            ["good.ini", "--cluster", "local-cluster"],
            "hyper: cluster 'local-cluster' already exists",
        ),
        (["good.ini", "--queue", "nope"], "hyper: unknown queue 'nope'"),
        (["good.ini", "--queue", "q", "--cluster", "c"], "hyper: give --queue or --cluster, not"),
        (["missing.ini"], "hyper: Must specify a real file for the jobs config"),
    ]
    for argv, said in cases:
        result = local.sh("hyper", "workflows", "run", *argv)
        assert (result.code, result.out) == (2, ""), (argv, result)
        assert result.err.startswith(said) and result.err.count("\n") == 1, (argv, result.err)
    host_holds_nothing(local)
    assert clusters_and_queues(client) == (["local-cluster"], ["sample-queue-1"])


def test_validate_status_and_list_show_a_run(local: LocalHost) -> None:
    files(local.cwd, {"jobs.ini": SEQUENCE, "a.sh": "", "b.sh": "exit 4\n", "c.sh": ""})
    assert local.ok("hyper", "workflows", "validate", "jobs.ini") == (
        "jobs.ini: valid, 3 jobs, sequential\n"
        f"  a: a.sh from {local.cwd / 'a.sh'}, checked every 1 s\n"
        f"  b: b.sh from {local.cwd / 'b.sh'}, checked every 1 s\n"
        f"  c: c.sh from {local.cwd / 'c.sh'}, checked every 1 s\n"
    )
    host_holds_nothing(local)  # validating submits nothing
    _, shown = run(local, "jobs.ini", "--cluster", "shown")
    run_id = shown["workflow"]["id"]
    jobs = steps(shown)
    tree = local.ok("hyper", "workflows", "status", str(run_id))
    cause = f"Exit code not 0: job b ({jobs['b']['id']}) exited with 4"
    assert tree.splitlines() == [
        f"run {run_id} jobs.ini (sequential) Failed  {cause}",
        "├── cluster shown: cluster shown and queue shown deleted",
        f"└── a  Successful  job {jobs['a']['id']}, exit 0",
        f"    └── b  Failed  job {jobs['b']['id']}, exit 4",
        f"        └── c  Failed  job {jobs['c']['id']}, {jobs['c']['reason']}",
    ]
    listed = json.loads(local.ok("hyper", "workflows", "list", "--json"))
    assert listed["version"] == 1
    assert [(w["id"], w["state"], w["cause"]) for w in listed["workflows"]] == [
        (run_id, "Failed", cause)
    ]
    assert f"{run_id}    jobs.ini  Failed  3/3   shown" in local.ok("hyper", "workflows", "list")


# a job from S3, fetched by the client with boto3 (a moto server on loopback) -------------


@pytest.fixture
def s3_env(local: LocalHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with moto_server(monkeypatch) as url:
        aws = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        s3.create_bucket(Bucket="bucket-to-use")
        for key, body in {"folder/project/src/script.sh": "cat data.txt\n",
                          "folder/project/data.txt": "from s3\n"}.items():  # fmt: skip
            s3.put_object(Bucket="bucket-to-use", Key=key, Body=body.encode())
        yield {**{k: v for k, v in local.env.items() if not k.startswith("AWS_")}, **aws}


def test_a_job_from_an_s3_prefix_runs_with_its_files(
    local: LocalHost, s3_env: dict[str, str]
) -> None:
    jobs = "[order]\nparallel = job1\n[job job1]\nhandler = src/script.sh\n"
    files(local.cwd, {"jobs.ini": jobs + "s3_uri = s3://bucket-to-use/folder/project\n"})
    result = local.sh("hyper", "workflows", "run", "jobs.ini", "--cluster", "s3", env=s3_env)
    assert result.code == 0, result.err
    shown = workflow(local, result.out.strip())
    assert local.ok("qlog", str(steps(shown)["job1"]["id"])) == "from s3\n"


def test_a_run_is_watched_as_a_live_tree_on_a_terminal(local: LocalHost) -> None:
    import pexpect

    files(local.cwd, {"jobs.ini": LONG, "long.sh": "sleep 2\n", "after.sh": ""})
    child = pexpect.spawn(
        str(BIN / "hyper"), ["workflows", "run", "jobs.ini", "--cluster", "live"],
        cwd=str(local.cwd), env=local.env, encoding="utf-8", timeout=60,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    # the tree was drawn again and again in place: its pictures, without their colours
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before).replace("\r", "")
    run_id, *frames = re.split(r"run \d+ ", screen)
    jobs = steps(workflow(local, run_id.strip()))
    assert any("long  Running" in frame for frame in frames[:-1])
    assert frames[-1].splitlines() == [
        "jobs.ini (sequential) Successful",
        "├── cluster live: cluster live and queue live deleted",
        f"└── long  Successful  job {jobs['long']['id']}, exit 0",
        f"    └── after  Successful  job {jobs['after']['id']}, exit 0",
    ]
