"""The worker key: what a host's workers (and so the jobs beside them) hold on AWS opens
only what a worker does; the host's key still opens everything, and a host without a
worker key (every local host) behaves as before. In-process app, temp SQLite store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hyper.host.app import create_app
from hyper.host.auth import worker_route
from hyper.host_settings import HostSettings
from hyper.store.sqlite import SQLiteStore

HOST_KEY, WORKER_KEY = "host-key", "worker-key"
VALUES = {"job_id": "1", "worker_id": "b-1-0", "kind": "queues", "name": "q1",
          "node_id": "n1", "key": "jobs/1/out.txt", "workflow_id": "1"}  # fmt: skip
WORKER_ROUTES = {
    ("POST", "/workers/{worker_id}/claim"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/progress"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/output"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/complete"),
    ("POST", "/workers/{worker_id}/complete"),
    ("POST", "/workers/{worker_id}/return"),
    ("POST", "/workers/{worker_id}/exit"),
    ("GET", "/files/{key:path}"),
    ("PUT", "/files/{key:path}"),
}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[object]:
    settings = HostSettings(data_dir=tmp_path, api_key=HOST_KEY, worker_key=WORKER_KEY)
    store = SQLiteStore(tmp_path / "store.db")
    try:
        yield create_app(settings, store)
    finally:
        store.close()


def routes(app: object) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and not route.path.startswith("/dashboard"):
            found += [(method, route.path) for method in sorted(route.methods or ())]
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: VALUES[m.group(1)], path)


def test_the_worker_key_opens_worker_routes_and_nothing_else(app: object) -> None:
    every = routes(app)
    assert set(every) >= WORKER_ROUTES
    with TestClient(app, headers={"x-api-key": WORKER_KEY}) as client:  # type: ignore[arg-type]
        for method, path in every:
            answer = client.request(method, concrete(path), json={})
            if (method, path) in WORKER_ROUTES:
                assert answer.status_code != 401, (method, path, answer.text)
            else:
                assert answer.status_code == 401, (method, path, answer.text)
        # files: any may be read (a job's package), only jobs/<id>/... written
        assert client.put("/files/packages/p.tgz", content=b"x").status_code == 401
        assert client.put("/files/jobs/1/out.txt", content=b"x").status_code == 204
    with TestClient(app, headers={"x-api-key": HOST_KEY}) as client:  # type: ignore[arg-type]
        assert client.get("/jobs").status_code == 200
        assert client.get("/files/jobs/1/out.txt").content == b"x"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/workers/w/claim", True),
        ("GET", "/workers/w/claim", False),
        ("POST", "/workers/w/jobs/7/progress", True),
        ("POST", "/workers/w/jobs/7/output", True),
        ("POST", "/workers/w/jobs/x/progress", False),
        ("POST", "/workers/w/jobs/7/progress/more", False),
        ("POST", "/workers/w/x/claim", False),
        ("PUT", "/files/jobs/7/a/b.txt", True),
        ("PUT", "/files/jobs/x/a.txt", False),
        ("DELETE", "/files/jobs/7/a.txt", False),
        ("POST", "/nodes/n1/join", False),
        ("POST", "/jobs", False),
    ],
)
def test_worker_routes(method: str, path: str, allowed: bool) -> None:
    assert worker_route(method, path) is allowed


def test_a_host_without_a_worker_key_takes_no_empty_one(tmp_path: Path) -> None:
    settings = HostSettings(data_dir=tmp_path, api_key=HOST_KEY)
    store = SQLiteStore(tmp_path / "store.db")
    try:
        app = create_app(settings, store)
        with TestClient(app, headers={"x-api-key": ""}) as client:
            assert client.post("/workers/w/exit", json={}).status_code == 401
        settings.save()
        assert "worker_key" not in (tmp_path / "host.json").read_text()
    finally:
        store.close()
