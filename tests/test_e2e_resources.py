"""End to end: the resource commands against a real local host, from flags with no
terminal, and what the resources mean for the jobs that run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, LocalHost

pytestmark = pytest.mark.e2e


def items(local: LocalHost, kind: str) -> dict[str, dict]:
    listing = json.loads(local.ok("hyper", kind, f"list-{kind}", "--json"))
    assert listing["version"] == 1
    return {item["name"]: item for item in listing["items"]}


def test_flags_only_cluster_queue_definition_run_a_job(local: LocalHost) -> None:
    local.ok("hyper", "clusters", "add-cluster", "--name", "c1", "--max-vcpus", "4", "--yes")
    local.ok("hyper", "queues", "add-queue", "--name", "q1", "--compute-environment", "c1", "--yes")
    local.ok(
        "hyper",
        "definitions",
        "add-definition",
        "--name",
        "d1",
        "--environment",
        '{"GREETING": "hello"}',
        "--yes",
    )
    cluster = items(local, "clusters")["c1"]
    assert cluster["status"] == "ACTIVE" and cluster["spec"]["max_vcpus"] == 4
    assert cluster["spec"]["type"] == "SPOT" and cluster["spec"]["compute_envs"] == 3
    assert items(local, "queues")["q1"]["spec"]["automate_region_weights"] is True
    job_id = local.ok("qsub", "--wait", "-q", "q1", "-d", "d1", "-c", "echo $GREETING").strip()
    assert local.ok("qlog", job_id) == "hello\n"


def test_missing_flags_without_a_terminal(local: LocalHost) -> None:
    result = local.sh("hyper", "clusters", "add-cluster", "--name", "c1")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "missing --instance-list, --max-vcpus" in result.err and "--yes" in result.err
    result = local.sh("hyper", "queues", "add-queue", "--yes")
    assert result.code == 2 and "missing --name, --compute-environment" in result.err
    assert "c1" not in items(local, "clusters")


def test_references_are_checked(local: LocalHost) -> None:
    result = local.sh(
        "hyper",
        "queues",
        "add-queue",
        "--name",
        "q1",
        "--compute-environment",
        "local-clustr",
        "--yes",
    )
    assert result.code == 2 and result.err.count("\n") == 1
    assert "unknown cluster 'local-clustr'; did you mean 'local-cluster'?" in result.err
    assert "q1" not in items(local, "queues")
    weighted = ["hyper", "queues", "add-queue", "--name", "q1", "--compute-environment",
                "local-cluster", "--manual-region-weights", "--yes", "-rw"]  # fmt: skip
    result = local.sh(*weighted, "nowhere", "2")
    assert result.code == 2 and "unknown region 'nowhere'" in result.err
    result = local.sh(*weighted, "local", "0")
    assert result.code == 2 and "at least one region a weight above 0" in result.err
    result = local.sh(
        "hyper",
        "definitions",
        "add-definition",
        "--name",
        "d1",
        "--cyclone-image-name",
        "ghost",
        "--yes",
    )
    assert result.code == 2 and "unknown image 'ghost'" in result.err
    result = local.sh(
        "hyper", "clusters", "add-cluster", "--name", "c9", "--max-vcpus", "lots", "--yes"
    )
    assert result.code == 2 and "--max-vcpus: not a whole number" in result.err


def test_update_changes_only_what_is_given(local: LocalHost) -> None:
    local.ok("hyper", "clusters", "add-cluster", "--name", "c1", "--type", "ONDEMAND", "--yes")
    local.ok("hyper", "clusters", "update-cluster", "c1", "--max-vcpus", "16")
    cluster = items(local, "clusters")["c1"]
    assert (cluster["spec"]["max_vcpus"], cluster["spec"]["type"]) == (16, "ONDEMAND")
    assert cluster["status"] == "ACTIVE"
    assert any("updating" in line for line in cluster["log"])
    result = local.sh("hyper", "clusters", "update-cluster", "c1")
    assert result.code == 2 and "nothing to change" in result.err
    # as it is, again (what check-host asks of an AWS resource deployed with older grants)
    local.ok("hyper", "clusters", "update-cluster", "c1", "--redeploy")
    cluster = items(local, "clusters")["c1"]
    assert cluster["status"] == "ACTIVE" and cluster["spec"]["max_vcpus"] == 16
    assert any("updating []" in line for line in cluster["log"]), cluster["log"]
    result = local.sh("hyper", "clusters", "update-cluster", "nosuch", "--max-vcpus", "2")
    assert result.code == 2 and "unknown cluster 'nosuch'" in result.err


def test_delete_refuses_while_in_use_unless_forced(local: LocalHost) -> None:
    result = local.sh("hyper", "clusters", "delete-cluster", "local-cluster")
    assert result.code == 2 and "in use by queue 'sample-queue-1'" in result.err
    local.script("wait.sh", "sleep 60\n")
    held = local.ok("qsub", "-h", "-q", "sample-queue-1", "-d", "sample-def-1", "wait.sh").strip()
    result = local.sh("hyper", "queues", "delete-queue", "sample-queue-1")
    assert result.code == 2 and "1 unfinished job" in result.err
    result = local.sh("hyper", "images", "delete-image", "native")
    assert result.code == 2 and "definition 'sample-def-1'" in result.err
    local.ok("hyper", "queues", "delete-queue", "sample-queue-1", "--force")
    assert "sample-queue-1" not in items(local, "queues")
    assert local.job(held)["status"] == "Cancelled"
    local.ok("hyper", "clusters", "delete-cluster", "local-cluster")
    assert "local-cluster" not in items(local, "clusters")


def test_an_image_that_cannot_be_built_ends_failed(local: LocalHost, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    result = local.sh(
        "hyper",
        "images",
        "add-image",
        "--name",
        "img1",
        "--local-build-directory",
        str(context),
        "--yes",
    )
    assert result.code == 1
    image = items(local, "images")["img1"]
    assert image["status"] == "FAILED"
    # which tool is missing, or why the one there could not build
    assert "docker" in image["log"][-1] or "podman" in image["log"][-1]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = local.sh(
        "hyper",
        "images",
        "add-image",
        "--name",
        "img2",
        "--local-build-directory",
        str(empty),
        "--yes",
    )
    assert result.code == 1 and "has no Dockerfile" in items(local, "images")["img2"]["log"][-1]
    local.ok("hyper", "images", "delete-image", "img2")
    assert "img2" not in items(local, "images")


def test_an_aws_region_on_a_local_host_ends_failed(local: LocalHost) -> None:
    result = local.sh(
        "hyper", "regions", "add-region", "--name", "us-east-1", "--kind", "aws", "--yes"
    )
    assert result.code == 1
    region = items(local, "regions")["us-east-1"]
    assert region["status"] == "FAILED" and "need a host of that provider" in region["log"][-1]


def test_memory_limit_stops_a_job_that_exceeds_it(local: LocalHost) -> None:
    local.ok(
        "hyper",
        "definitions",
        "add-definition",
        "--name",
        "small",
        "--memory-limit-mib",
        "200",
        "--yes",
    )
    local.script("big.sh", "#!/usr/bin/env python3\nx = bytearray(400 * 2**20)\nprint('ok')\n")
    local.script("fits.sh", "#!/usr/bin/env python3\nx = bytearray(20 * 2**20)\nprint('ok')\n")
    big = local.sh("qsub", "--wait", "-q", "sample-queue-1", "-d", "small", "big.sh")
    assert big.code != 0 and local.job(big.out.strip())["status"] == "Failed"
    assert "MemoryError" in local.ok("qlog", "-t", "STDERR", big.out.strip())
    fits = local.ok("qsub", "--wait", "-q", "sample-queue-1", "-d", "small", "fits.sh").strip()
    assert local.ok("qlog", fits) == "ok\n"


def test_qlog_can_be_switched_off_for_a_definition(local: LocalHost) -> None:
    local.ok("hyper", "definitions", "add-definition", "--name", "quiet", "--disable-qlog", "--yes")
    job_id = local.ok(
        "qsub", "--wait", "-q", "sample-queue-1", "-d", "quiet", "-c", "echo kept here"
    ).strip()
    assert local.ok("qlog", job_id) == ""
    assert (local.cwd / f"hyper-{job_id}.out").read_text() == "kept here\n"


@contextlib.contextmanager
def joined_machine(local: LocalHost, region: str, definition: str, slots: int) -> Iterator[None]:
    """`hyper worker join` as an operator starts it on a machine of the pool."""
    with subprocess.Popen(
        [
            str(BIN / "hyper"),
            "worker",
            "join",
            "--region",
            region,
            "--definition",
            definition,
            "--slots",
            str(slots),
            "--node-id",
            f"{region}-1",
        ],
        env=local.env,
        cwd=local.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as node:
        try:
            yield
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=20)


def workers_by_region(local: LocalHost, queue: str) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        rows = db.execute(
            "SELECT region, count(*) FROM workers WHERE queue = ? GROUP BY region", (queue,)
        )
        return dict(rows.fetchall())


def test_weights_split_workers_between_this_machine_and_a_pool(local: LocalHost) -> None:
    local.ok("hyper", "regions", "add-region", "--name", "pool", "--kind", "static", "--yes")
    local.ok("hyper", "clusters", "add-cluster", "--name", "wide", "--max-vcpus", "8", "--yes")
    local.ok(
        "hyper",
        "definitions",
        "add-definition",
        "--name",
        "per50",
        "--jobs-to-workers-ratio",
        "50",
        "--yes",
    )
    local.ok(
        "hyper",
        "queues",
        "add-queue",
        "--name",
        "spread",
        "--compute-environment",
        "wide",
        "--manual-region-weights",
        "-rw",
        "local",
        "1",
        "-rw",
        "pool",
        "3",
        "--yes",
    )
    local.script("brief.sh", "sleep 0.3\necho $HYPER_WORKER_ID\n")
    with joined_machine(local, "pool", "per50", slots=6):
        local.wait_for(
            lambda: "1 machine (6 slots)" in local.ok("hyper", "regions", "list-regions"),
            what="the machine to join",
        )
        array_id = local.ok(
            "qsub", "-h", "-a", "1-400", "-q", "spread", "-d", "per50", "brief.sh"
        ).strip()
        local.ok("qrls", array_id)
        local.wait_for(
            lambda: sum(workers_by_region(local, "spread").values()) >= 8,
            timeout=30,
            what="8 workers",
        )
        assert workers_by_region(local, "spread") == {"local": 2, "pool": 6}
        local.ok("qdel", array_id)


def test_two_workers_of_a_pool_run_jobs(local: LocalHost) -> None:
    local.ok("hyper", "regions", "add-region", "--name", "pool", "--kind", "static", "--yes")
    local.ok(
        "hyper",
        "queues",
        "add-queue",
        "--name",
        "poolq",
        "--compute-environment",
        "local-cluster",
        "--manual-region-weights",
        "-rw",
        "pool",
        "1",
        "--yes",
    )
    # a worker a slot: one vCPU each (the sample definition's worker is the whole machine)
    local.ok("hyper", "definitions", "add-definition", "--name", "one", "--vcpus", "1", "--yes")
    local.script("where.sh", "echo $HYPER_WORKER_ID $PPID\nsleep 0.5\n")
    with joined_machine(local, "pool", "one", slots=2):
        array_id = local.ok(
            "qsub", "--wait", "-a", "1-6", "-q", "poolq", "-d", "one", "where.sh"
        ).strip()
        assert (
            json.loads(local.ok("qstat", "-i", array_id, "--json"))["job"]["counts"]["Successful"]
            == 6
        )
        assert workers_by_region(local, "poolq") == {"pool": 2}
        result = local.sh("hyper", "regions", "delete-region", "pool")
        assert result.code == 2 and "queue 'poolq'" in result.err


def test_a_machine_cannot_join_a_local_region(local: LocalHost) -> None:
    result = local.sh(
        "hyper",
        "worker",
        "join",
        "--region",
        "local",
        "--definition",
        "sample-def-1",
        "--slots",
        "1",
    )
    assert result.code == 2 and "machines join static regions" in result.err


def test_list_watch_returns_once_settled(local: LocalHost) -> None:
    local.ok("hyper", "clusters", "add-cluster", "--name", "c1", "--yes", "--no-wait")
    out = local.ok("hyper", "clusters", "list-clusters", "--watch")
    last = [line for line in out.splitlines() if line.split()[:1] == ["c1"]][-1]
    assert "ACTIVE" in last


def test_no_terminal_no_prompt_for_delete_host(local: LocalHost) -> None:
    result = local.sh("hyper", "hosts", "delete-host")
    assert result.code == 2 and "--yes" in result.err
    assert os.path.isdir(local.data_dir)


def walk_through(local: LocalHost, *command: str, name: str) -> str:
    """Run a walkthrough in a real terminal: type the name, then Enter on every default."""
    import pexpect

    child = pexpect.spawn(
        str(BIN / "hyper"), list(command), env=local.env, cwd=str(local.cwd),
        encoding="utf-8", timeout=30, dimensions=(40, 120),
    )  # fmt: skip
    child.expect("name")
    child.send(name + "\r")
    # a question's mark, not the "?" of the terminal's escape sequences (ESC [ ? 25 h):
    # each question shows it when asked and again with its answer, an Enter each time
    # (one too many answers the next question's default early, as a user typing ahead)
    while child.expect([r"(?<!\[)\?", pexpect.EOF]) == 0:
        child.send("\r")
    child.close()
    assert child.exitstatus == 0, child.before
    return str(child.before)


def test_walkthroughs_with_enter_on_every_default_make_working_resources(
    local: LocalHost,
) -> None:
    walk_through(local, "clusters", "add-cluster", name="tty-cluster")
    cluster = items(local, "clusters")["tty-cluster"]
    assert cluster["status"] == "ACTIVE" and cluster["spec"]["max_vcpus"] == 1000
    walk_through(local, "queues", "add-queue", name="tty-queue")
    assert items(local, "queues")["tty-queue"]["status"] == "ACTIVE"
    walk_through(local, "definitions", "add-definition", name="tty-def")
    definition = items(local, "definitions")["tty-def"]
    assert definition["spec"]["vcpus"] == 1 and definition["spec"]["memory_limit_mib"] == 1024
    job_id = local.ok("qsub", "--wait", "-q", "tty-queue", "-d", "tty-def", "-c", "echo walked")
    assert local.ok("qlog", job_id.strip()) == "walked\n"


def test_the_remaining_commands(local: LocalHost) -> None:
    result = local.sh("hyper", "regions", "init-main-region", "--name", "second", "--yes")
    assert result.code == 2 and "already the main region" in result.err
    local.ok("hyper", "regions", "add-region", "--name", "pool", "--kind", "static", "--yes")
    local.ok("hyper", "regions", "update-region", "pool", "--nat-gateways", "1")
    assert items(local, "regions")["pool"]["spec"]["nat_gateways"] == 1
    local.ok("hyper", "regions", "delete-region", "pool")
    assert "pool" not in items(local, "regions")
    local.ok("hyper", "definitions", "add-definition", "--name", "d1", "--yes")
    local.ok("hyper", "definitions", "update-definition", "d1", "--vcpus", "2", "--environment",
             '{"A": "1"}')  # fmt: skip
    spec = items(local, "definitions")["d1"]["spec"]
    assert (spec["vcpus"], spec["environment"], spec["memory_limit_mib"]) == (2, {"A": "1"}, 1024)
    local.ok("hyper", "definitions", "delete-definition", "d1")
    assert "d1" not in items(local, "definitions")
    assert "native" in local.ok("hyper", "images", "list-images")
    result = local.sh("hyper", "images", "replace-with-local-image", "--name", "native",
                      "--local-docker-image", "no/such:image")  # fmt: skip
    assert result.code == 2 and "nothing to build" in result.err
    (local.cwd / "ctx").mkdir()
    (local.cwd / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    local.sh("hyper", "images", "add-image", "--name", "img", "--local-build-directory", "ctx",
             "--yes")  # fmt: skip
    result = local.sh("hyper", "images", "replace-with-local-image", "--name", "img",
                      "--local-docker-image", "no/such:image")  # fmt: skip
    image = items(local, "images")["img"]
    assert result.code == 1 and image["status"] == "FAILED"
    assert image["spec"]["local_docker_image"] == "no/such:image"
    result = local.sh("hyper", "regions", "add-region", "--name", "r2", "--kind", "aws",
                      "--new-vpc", "--vpc", "not-a-cidr", "--yes")  # fmt: skip
    assert result.code == 2 and "neither a vpc-id nor a CIDR" in result.err
