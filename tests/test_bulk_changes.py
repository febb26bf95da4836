"""Changing a very large number of jobs at once, on a real local host: a `qdel` (or
`qhold`, `qrls`) of hundreds of thousands of jobs is made in short steps, so the host
answers everyone else meanwhile (a running job's worker renews its lease, `qstat`
answers) and the command's answer comes long before any timeout. A host from before
steps is asked all at once, as it always was."""

from __future__ import annotations

import json
import threading
import time

import pytest

from hyper.client import CHANGE_STEP, HostClient
from tests.conftest import LocalHost, Result

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]
ARRAYS, TASKS = 3, 100_000  # one request for all of them would hold the host for seconds


@pytest.mark.e2e
@pytest.mark.slow
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


class HostBeforeSteps:
    """A host of the version before steps: its models refuse a field they do not know."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]
                ) -> tuple[int, bytes]:  # fmt: skip
        sent = json.loads(body or b"{}")
        self.bodies.append(sent)
        if "limit" in sent:
            refusal = {"loc": ["body", "limit"], "msg": "Extra inputs are not permitted"}
            return 422, json.dumps({"detail": [refusal]}).encode()
        return 200, b'{"cancelled": 300000, "stopping": 0, "finished": []}'

    def close(self) -> None:
        pass


def test_a_host_from_before_steps_is_asked_all_at_once() -> None:
    old = HostBeforeSteps()
    answer = HostClient("http://x", "k", transport=old).change("cancel", {"queue": "q"})
    assert answer == {"cancelled": 300000, "stopping": 0, "finished": []}
    assert old.bodies == [{"queue": "q", "limit": CHANGE_STEP}, {"queue": "q"}]
