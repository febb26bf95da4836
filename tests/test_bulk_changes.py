"""Changing a very large number of jobs at once, on a real local host: a `qdel` (or
`qhold`, `qrls`) of hundreds of thousands of jobs is made in short steps, so the host
answers everyone else meanwhile (a running job's worker renews its lease, `qstat`
answers) and the command's answer comes long before any timeout."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import LocalHost, Result

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]
ARRAYS, TASKS = 3, 100_000  # one request for all of them would hold the host for seconds


def test_a_cancel_of_300000_waiting_jobs_never_holds_the_host(local: LocalHost) -> None:
    local.script("long.sh", "sleep 300\n")
    local.script("true.sh", "true\n")
    running = local.ok("qsub", *Q, "long.sh").strip()
    local.wait_for(lambda: local.job(running)["status"] == "Running", 60, "the long job to run")
    arrays = [
        local.ok("qsub", "-h", "-a", f"1-{TASKS}", *Q, "true.sh", timeout=120).strip()
        for _ in range(ARRAYS)
    ]

    answer: list[Result] = []
    qdel = threading.Thread(
        target=lambda: answer.append(local.sh("qdel", "-f", "Held", *Q[:2], timeout=300))
    )
    qdel.start()
    slowest = 0.0
    while qdel.is_alive():
        started = time.monotonic()
        assert local.job(running)["status"] == "Running"
        slowest = max(slowest, time.monotonic() - started)
    qdel.join()
    assert answer[0].code == 0, answer[0].err
    for array in arrays:
        assert local.job(array)["counts"]["Cancelled"] == TASKS
    job = local.job(running)
    assert (job["status"], job["attempt"]) == ("Running", 1)  # its lease held throughout
    # a qstat of one job takes a fraction of a second; a host busy with one change of
    # 300,000 jobs would keep it waiting for many
    assert slowest < 5.0, f"a qstat waited {slowest:.1f} s for the host"
    local.ok("qdel", running)
