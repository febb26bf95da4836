"""hyper items start / stop: the original start_jobs and stop_jobs habits (single-dash
flags, environment defaults, a preview before --apply) against a real local host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, LocalHost

ECHO = {
    "programName": "dams",
    "tasks": [
        {
            "name": "say",
            "command": "echo item=$WORK_ITEM mode=$MODE_STR bucket=$BUCKET_NAME series=$SERIES",
        }
    ],
}
SLEEP = {"tasks": [{"name": "nap", "command": "sleep 60"}]}


def defaults(local: LocalHost) -> dict[str, str]:
    """The original's environment defaults for bucket, queue and definition."""
    return {
        **local.env,
        "BUCKET_NAME": "b1",
        "BATCH_QUEUE": "sample-queue-1",
        "BATCH_JOBDEF": "sample-def-1",
    }


@pytest.mark.e2e
def test_a_preview_submits_nothing_and_apply_submits_one_array(local: LocalHost) -> None:
    local.script("tasks.json", json.dumps(ECHO))
    env = defaults(local)
    start = (
        "hyper",
        "items",
        "start",
        "-workitemfile",
        "-",
        "-prefix",
        "Dam001/",
        "-mode",
        "full",
        "-name-value",
        "SERIES=21=a",
    )
    preview = local.ok(*start, input="Period01\n\nPeriod02\n", env=env)
    assert preview.splitlines() == [
        "preview: 2 work items as one array job 'dams' on queue sample-queue-1,"
        " definition sample-def-1, retries 0",
        "  pipeline: tasks.json (valid)",
        "  environment: BUCKET_NAME=b1 MODE_STR=full SERIES=21=a",
        "  0001  Dam001_Period01  WORK_ITEM=Dam001/Period01",
        "  0002  Dam001_Period02  WORK_ITEM=Dam001/Period02",
        "run this command again with --apply to submit them",
    ]
    planned = json.loads(local.ok(*start, "--json", input="Period01\nPeriod02\n", env=env))
    assert planned["items"] == ["Dam001/Period01", "Dam001/Period02"]
    assert "tasks run" in planned["job"]["script"]
    assert json.loads(local.ok("qstat", "--json"))["counts"]["Total"] == 0

    result = local.sh(*start, "-apply", input="Period01\nPeriod02\n", env=env)
    assert result.code == 0, result.err
    array_id = result.out.strip()
    assert result.err == f"hyper: started 2 work items as array {array_id} (qstat -a {array_id})\n"
    array = local.wait_finished(array_id)
    assert array["kind"] == "array" and array["counts"]["Successful"] == 2
    tasks = json.loads(local.ok("qstat", "-a", array_id, "--json"))["jobs"]
    assert [t["name"] for t in tasks] == ["Dam001_Period01", "Dam001_Period02"]
    out = local.ok("qlog", "-t", "STDOUT", f"{array_id}_2").splitlines()
    assert "item=Dam001/Period02 mode=full bucket=b1 series=21=a" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-queue", "q", "-workitems", "1"], "must specify --jobdef or set $BATCH_JOBDEF"),
        (["-jobdef", "d", "-workitems", "1"], "must specify --queue or set $BATCH_QUEUE"),
        (["-queue", "q", "-jobdef", "d"], "must provide --workitems or --workitem-file"),
        (["-queue", "q", "-jobdef", "d", "-workitems", "05-01"], "'05-01' is an empty range"),
        (
            ["-queue", "q", "-jobdef", "d", "-workitems", "1", "-name-value", "SERIES"],
            "-name-value must be given in the form KEY=VALUE",
        ),
        (
            ["-queue", "q", "-jobdef", "d", "-workitems", "1", "--tasks", "bad.json"],
            "bad.json: $.tasks[0]: 'command' is a required property",
        ),
        (
            ["-queue", "q", "-jobdef", "d", "-workitems", "1", "--tasks", "none.json"],
            "no tasks file 'none.json'",
        ),
        (["-queue", "q", "-jobdef", "d", "-workitems", "..", "-apply"], "work item '..'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    hyper_home: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps(ECHO))
    (tmp_path / "bad.json").write_text('{"tasks": [{"name": "t"}]}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCH_", "BUCKET_"))}
    done = subprocess.run(
        [str(BIN / "hyper"), "items", "start", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.splitlines()) == 1
    assert done.stdout == "" and not hyper_home.exists()  # no host was even made


def states(local: LocalHost) -> dict[str, str]:
    jobs = json.loads(local.ok("qstat", "--expand", "--json"))["jobs"]
    return {job["name"]: job["status"] for job in jobs if job.get("kind") != "array"}


@pytest.mark.e2e
def test_stop_by_name_prefix_file_or_all_covers_every_unfinished_state(local: LocalHost) -> None:
    local.script("tasks.json", json.dumps(SLEEP))
    env = defaults(local)
    array_id = local.ok(
        "hyper",
        "items",
        "start",
        "-workitems",
        "Dam001/Period01,Dam001/Period02,Dam001/Period03,Dam001/Period04,Dam002/Period01",
        "-apply",
        env=env,
    ).strip()
    local.wait_for(lambda: list(states(local).values()).count("Running") == 2, 30, "two running")
    running = json.loads(local.ok("qstat", "-a", array_id, "-f", "Running", "--json"))["jobs"]
    local.ok("qhold", f"{array_id}_4")
    local.script("after.sh", "#!/bin/bash\nsleep 60\n")
    local.ok(
        "qsub",
        "-q",
        "sample-queue-1",
        "-d",
        "sample-def-1",
        "-j",
        "after",
        "-W",
        f"depend=afterok:{running[0]['id']}",
        "after.sh",
    )
    before = states(local)
    assert set(before.values()) == {"Running", "Waiting", "Held", "Blocked"}

    stop = ("hyper", "items", "stop", "-queue", "sample-queue-1")
    by_prefix = local.ok(*stop, "-jobprefix", "Dam001/")
    assert [line.split()[1] for line in by_prefix.splitlines()[1:-1]] == [
        "Dam001_Period01",
        "Dam001_Period02",
        "Dam001_Period03",
        "Dam001_Period04",
    ]
    by_names = local.ok(*stop, "-jobnames", "Dam001/Period04,nope")
    assert "Dam001_Period04  Held" in by_names and "already finished: nope" in by_names
    assert states(local) == before  # a preview changes nothing

    local.ok(*stop, "-jobnamefile", "-", "-apply", input="Dam002/Period01\n")
    assert states(local)["Dam002_Period01"] == "Cancelled"
    everything = json.loads(local.ok(*stop, "--all", "--json", env=env))
    assert sorted(job["name"] for job in everything["jobs"]) == sorted(
        name for name, state in before.items() if name != "Dam002_Period01"
    )
    result = local.sh(*stop, "-all", "-apply")
    assert result.code == 0 and "cancelled 5 jobs (2 were running and are stopping)" in result.err
    local.wait_for(lambda: set(states(local).values()) == {"Cancelled"}, 30, "all cancelled")
    assert "preview: 0 unfinished jobs" in local.ok(*stop, "-all")


@pytest.mark.e2e
def test_stop_needs_to_be_told_what(local: LocalHost) -> None:
    result = local.sh("hyper", "items", "stop", "-queue", "sample-queue-1")
    assert result.code == 2
    assert result.err == (
        "hyper: say which work items to stop: --all, --names, --name-file or --prefix\n"
    )
    both = local.sh("hyper", "items", "stop", "-queue", "sample-queue-1", "-all", "-jobprefix", "x")
    assert both.code == 2 and "give it alone" in both.err
