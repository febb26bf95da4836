"""The host keeps a bounded amount of each job attempt's output, whoever sends it, and
serves a log in pages of bounded size (the API in-process)."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from hyper.output import NOTE_ROOM_BYTES, host_cut_note
from hyper.resources import SAMPLE_QUEUE

MIB = 2**20
LIMIT_MIB = 4


def wait_until_active(api: TestClient, kind: str, name: str) -> None:
    deadline = time.monotonic() + 30
    while api.get(f"/resources/{kind}/{name}").json().get("status") != "ACTIVE":
        assert time.monotonic() < deadline, f"{kind} {name} did not become ACTIVE"
        time.sleep(0.05)


def _running_job(api: TestClient) -> dict[str, Any]:
    """A job of a definition that keeps 4 MiB per attempt, claimed by worker W."""
    spec = {"name": "small-log", "output_limit_mib": LIMIT_MIB}
    assert api.post("/resources/definitions", json=spec).status_code == 202
    wait_until_active(api, "definitions", "small-log")
    job = {"name": "chatty", "queue": SAMPLE_QUEUE, "definition": "small-log",
           "script": "true\n"}  # fmt: skip
    assert api.post("/jobs", json={"jobs": [job]}).status_code == 200, "submit"
    body = {"queue": SAMPLE_QUEUE, "definition": "small-log", "limit": 1, "wait": 0}
    (claimed,) = api.post("/workers/W/claim", json=body).json()["jobs"]
    return dict(claimed)


def _pages(api: TestClient, job_id: int) -> list[list[dict[str, Any]]]:
    pages, after = [], 0
    while True:
        page = api.get(f"/jobs/{job_id}/log", params={"after": after}).json()
        if not page["entries"]:
            return pages
        pages.append(page["entries"])
        after = page["next"]


def test_output_sent_past_the_limit_is_not_kept_and_the_log_says_so(api: TestClient) -> None:
    claimed = _running_job(api)
    assert claimed["lease_seconds"] == 30.0  # a worker fences itself by it
    job_id = claimed["id"]
    piece = ("x" * 1023 + "\n") * 1024  # 1 MiB
    for _ in range(LIMIT_MIB + 8):
        answer = api.post(
            f"/workers/W/jobs/{job_id}/progress",
            json={"attempt": 1, "output": [{"kind": "STDOUT", "text": piece}]},
        )
        assert answer.status_code == 200, answer.text
    ending = {"attempt": 1, "exit_code": 0, "output": [{"kind": "STDERR", "text": "y" * MIB}]}
    done = api.post("/workers/W/complete", json={"reports": [{"job_id": job_id, **ending}]})
    assert done.status_code == 200, done.text
    pages = _pages(api, job_id)
    entries = [e for page in pages for e in page]
    stdout = "".join(e["text"] for e in entries if e["kind"] == "STDOUT")
    limit = LIMIT_MIB * MIB
    assert stdout.endswith(host_cut_note(limit)) and stdout.count("[hyper:") == 1
    assert len(stdout) == limit + NOTE_ROOM_BYTES + len(host_cut_note(limit))
    stderr = "".join(e["text"] for e in entries if e["kind"] == "STDERR")
    assert stderr.startswith("y" * NOTE_ROOM_BYTES) and len(stderr) < NOTE_ROOM_BYTES + 200
    assert len(pages) >= 2  # pages of about 4 MiB, not one of all
    assert all(sum(len(e["text"]) for e in page) <= 5 * MIB + 1024 for page in pages)
