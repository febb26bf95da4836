"""hyper.WorkerPool against a real local host: one array job of workers that connect back
over TCP, prove themselves with the pool's secret, and run the program's calls."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import hyper
from hyper.errors import UsageError
from hyper.python_api import payload, wire
from tests.conftest import LocalHost
from tests.helpers.executor import DEFINITION, QUEUE, fail, files_left

pytestmark = pytest.mark.e2e


def where_and_square(x: int) -> tuple[str, int]:
    return os.environ["HYPER_JOB_ID"], x * x


def tasks(local: LocalHost, array_id: int) -> dict[int, str]:
    """The pool's tasks' states, by index."""
    found = json.loads(local.ok("qstat", "-a", str(array_id), "--json"))["jobs"]
    return {job["array_index"]: job["status"] for job in found}


def command_lines() -> Iterator[bytes]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield (entry / "cmdline").read_bytes()


def test_the_originals_argument_errors(hyper_home: Path) -> None:
    for sizes, message in [
        ((-1, 2), "min workers must be non-negative"),
        ((3, 2), "min workers exceeds max workers"),
        ((0, 0), "max workers must be at least 1"),
    ]:
        with pytest.raises(UsageError, match=f"^{message}$"):
            hyper.WorkerPool(*sizes, queue=QUEUE, definition=DEFINITION)
    with pytest.raises(UsageError, match=r"^timeout must be positive$"):
        hyper.WorkerPool(1, queue=QUEUE, definition=DEFINITION, timeout=0)
    assert not hyper_home.exists()  # refused before any host was made or asked


def test_a_pool_of_four_maps_a_thousand_calls(local: LocalHost) -> None:
    local.ok("hyper", "clusters", "update-cluster", "local-cluster", "--max-vcpus", "4")
    with hyper.WorkerPool(4, queue=QUEUE, definition=DEFINITION, timeout=60) as pool:
        assert pool.wait_for_workers() == 4  # and no warning: they are errors here
        assert pool.workers == 4
        secret = pool._secret.hex().encode()
        assert not any(secret in line for line in command_lines())
        assert not list(local.data_dir.glob(f"workers/*/*/{payload.POOL_SECRET}"))
        results = list(pool.map(where_and_square, range(1000)))
        assert [square for _, square in results] == [x * x for x in range(1000)]
        ran_on = {int(job) for job, _ in results}
        assert ran_on <= set(range(pool.array_id + 1, pool.array_id + 5))
        assert len(ran_on) > 1
        error = pool.submit(fail, 3).exception(timeout=60)
        assert isinstance(error, ValueError) and str(error) == "bad input 3"
        assert 'raise ValueError(f"bad input {n}")' in str(error.__cause__)
    # leaving the pool released every worker: their jobs ended as they should
    assert tasks(local, pool.array_id) == dict.fromkeys(range(4), "Successful")
    assert pool.workers == 0
    assert files_left(local) == 0
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(pow, 2, 3)


@pytest.fixture
def two_free_slots(local: LocalHost) -> Iterator[LocalHost]:
    """A cluster of 3 vCPUs, one of them held by a running job: 2 workers can start
    (of a definition whose workers have one vCPU each, as the original's were)."""
    local.ok("hyper", "clusters", "add-cluster", "--name", "small", "--max-vcpus", "3",
             "--type", "ONDEMAND", "--yes")  # fmt: skip
    local.ok("hyper", "definitions", "add-definition", "--name", ONE_CPU, "--vcpus", "1", "--yes")
    local.ok("hyper", "queues", "add-queue", "--name", "small-q",
             "--compute-environment", "small", "--yes")  # fmt: skip
    blocker = local.ok("qsub", "-q", "small-q", "-d", ONE_CPU, "-c", "sleep 300").strip()
    local.wait_for(lambda: local.job(blocker)["status"] == "Running", 30, "the blocker to run")
    yield local
    local.ok("qdel", blocker)


ONE_CPU = "one-cpu"
BUSY = (
    "1 vCPUs of cluster 'small' are held by running jobs: 2 of the 3 workers can start"
    " before they end"
)


def test_a_pool_short_of_its_maximum_warns_and_cancels_the_straggler(
    two_free_slots: LocalHost,
) -> None:
    local = two_free_slots
    with pytest.warns(UserWarning, match=f"^{BUSY}$"):
        pool = hyper.WorkerPool(2, 3, queue="small-q", definition=ONE_CPU, timeout=10)
    with pool:
        with pytest.warns(UserWarning, match="^Only managed to launch 2/3 workers$"):
            assert pool.wait_for_workers() == 2
        # the straggler is cancelled at once, not left to take a slot later
        assert sorted(tasks(local, pool.array_id).values()) == ["Cancelled", "Running", "Running"]
        assert sum(pool.map(pow, range(10), [2] * 10)) == 285
    ended = ["Cancelled", "Successful", "Successful"]
    local.wait_for(  # released workers end on their own, moments later
        lambda: sorted(tasks(local, pool.array_id).values()) == ended, 30, "the workers to end"
    )


def test_a_pool_below_its_minimum_raises_and_cancels_the_straggler(
    two_free_slots: LocalHost,
) -> None:
    local = two_free_slots
    with pytest.raises(UsageError, match=r"^min workers \(4\) cannot fit: cluster 'small' runs at"
                       r" most 3 workers of 1 vCPUs$"):  # fmt: skip
        hyper.WorkerPool(4, queue="small-q", definition=ONE_CPU)
    assert len(json.loads(local.ok("qstat", "--json"))["jobs"]) == 1  # the blocker alone
    with pytest.warns(UserWarning, match=f"^{BUSY}$"):
        pool = hyper.WorkerPool(3, queue="small-q", definition=ONE_CPU, timeout=10)
    with pool:
        local.wait_for(lambda: pool.workers == 2, 30, "two workers to connect")
        # a stranger without the secret is turned away, and learns nothing
        with (
            socket.create_connection(pool.address, timeout=10) as sock,
            pytest.raises(ConnectionError),
        ):
            wire.join_pool(sock, b"not the secret", {"index": 2, "job_id": 1})
        assert pool.workers == 2
        with pytest.raises(
            hyper.PoolError,
            match=r"^Unable to launch the minimum number of workers: 2 of 3 connected"
            r" \(1 not started within 10 s, cancelled\)$",
        ):
            pool.wait_for_workers()
        assert pool.workers == 0  # the pool closed: its workers were released
    ended = ["Cancelled", "Successful", "Successful"]
    local.wait_for(  # released workers end on their own, moments later
        lambda: sorted(tasks(local, pool.array_id).values()) == ended, 30, "the workers to end"
    )
    assert files_left(local) == 0


def test_a_pool_whose_workers_cannot_start_says_why_without_waiting_out_its_timeout(
    local: LocalHost,
) -> None:
    pool = hyper.WorkerPool(
        1, 2, queue=QUEUE, definition=DEFINITION, timeout=120, python="/nowhere/python"
    )
    with pool, pytest.raises(hyper.PoolError) as raised:
        pool.wait_for_workers()
    task_ids = f"({pool.array_id + 1}|{pool.array_id + 2})"
    assert re.fullmatch(
        r"Unable to launch the minimum number of workers: 0 of 1 connected \(2 ended without"
        rf" connecting, as job {task_ids} ended Failed \(exit code 127\): .*/nowhere/python:"
        r" not found\)",
        str(raised.value),
    )
    assert tasks(local, pool.array_id) == {0: "Failed", 1: "Failed"}
