"""Requests to the host's HTTP API through a TestClient: bodies, paths and the usual calls."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from hyper.resources import SAMPLE_DEFINITION, SAMPLE_QUEUE

Q = SAMPLE_QUEUE
D = SAMPLE_DEFINITION


class InProcessTransport:
    """The client's transport (hyper.client) over a TestClient: the app in-process, as a
    host reached over TCP would answer."""

    def __init__(self, api: TestClient) -> None:
        self.api = api

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        answer = self.api.request(method, path, content=body, headers=headers)
        return answer.status_code, answer.content

    def close(self) -> None:
        pass


def submission(name: str = "job", **extra: Any) -> dict[str, Any]:
    return {"name": name, "queue": Q, "definition": D, "script": "echo hi\n", **extra}


def submit(api: TestClient, *jobs: dict[str, Any]) -> list[int]:
    response = api.post("/jobs", json={"jobs": list(jobs) or [submission()]})
    assert response.status_code == 200, response.text
    ids = response.json()["ids"]
    assert len(ids) == (len(jobs) or 1)
    return ids


def claim(api: TestClient, worker: str, limit: int = 1, wait: float = 0) -> list[dict[str, Any]]:
    response = api.post(
        f"/workers/{worker}/claim",
        json={"queue": Q, "definition": D, "limit": limit, "wait": wait},
    )
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


PATH_VALUES = {
    "job_id": "1", "worker_id": "w-anon", "kind": "queues", "name": Q, "node_id": "n-anon",
    "key": "anon/file.txt", "workflow_id": "1",
}  # fmt: skip


BODIES = {
    "/jobs": {"jobs": [submission()]},
    "/jobs/cancel": {"queue": Q},
    "/jobs/hold": {"queue": Q},
    "/jobs/release": {"queue": Q},
    "/workers/{worker_id}/claim": {"queue": Q, "definition": D, "wait": 0},
    "/workers/{worker_id}/jobs/{job_id}/progress": {"attempt": 1},
    "/workers/{worker_id}/jobs/{job_id}/complete": {"attempt": 1, "exit_code": 0},
    "/resources/{kind}": {"name": "anon-queue", "compute_environment": "local-cluster"},
    "/resources/{kind}/{name}": {"automate_region_weights": True},
    "/nodes/{node_id}/join": {"region": "local", "definition": D, "slots": 1},
    "/nodes/{node_id}/poll": {"wait": 0},
}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES[m.group(1)], path)


def schema_path(path: str) -> str:
    """A route's path as the schema shows it: `{key:path}` is `{key}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def complete(api: TestClient, worker: str, job_id: int, exit_code: int, attempt: int = 1) -> str:
    response = api.post(
        f"/workers/{worker}/jobs/{job_id}/complete",
        json={"attempt": attempt, "exit_code": exit_code},
    )
    assert response.status_code == 200, response.text
    return response.json()["status"]
