"""The worker key: what a host's workers (and so the jobs beside them) hold on AWS opens,
with the token the host gave their launch, only what those workers do, as themselves:
never another launch's worker, nor files of jobs they do not hold. The host's key still
opens everything, and a host without a worker key (every local host) behaves as before.
In-process app, temp SQLite store."""

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
from hyper.key_headers import gateway_key, key_headers
from hyper.store.sqlite import SQLiteStore
from hyper.worker_tokens import HEADER, WorkerTokens, worker_group
from tests.helpers.api import claim, submission, submit

HOST_KEY, WORKER_KEY = "host-key", "worker-key"
ME = "b-1a2b-0"  # a worker of launch b-1a2b
VALUES = {"job_id": "1", "worker_id": ME, "kind": "queues", "name": "q1",
          "node_id": "n1", "key": "jobs/1/out.txt", "workflow_id": "1"}  # fmt: skip
WORKER_ROUTES = {
    ("POST", "/workers/{worker_id}/claim"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/progress"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/output"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/complete"),
    ("POST", "/workers/{worker_id}/complete"),
    ("POST", "/workers/{worker_id}/return"),
    ("POST", "/workers/{worker_id}/exit"),
    ("GET", "/workers/{worker_id}/jobs/{job_id}/package"),
    ("PUT", "/workers/{worker_id}/jobs/{job_id}/files/{key:path}"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/links/upload/{key:path}"),
    ("POST", "/workers/{worker_id}/jobs/{job_id}/links/uploaded/{key:path}"),
}


def token(group: str) -> str:
    return WorkerTokens(HOST_KEY).token(group)


def as_worker(group: str) -> dict[str, str]:
    return {**key_headers(WORKER_KEY), HEADER: token(group)}


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


def test_a_workers_key_and_token_open_its_own_routes_and_nothing_else(app: object) -> None:
    every = routes(app)
    assert set(every) >= WORKER_ROUTES
    with TestClient(app, headers=as_worker("b-1a2b")) as client:  # type: ignore[arg-type]
        for method, path in every:
            answer = client.request(method, concrete(path), json={})
            if (method, path) in WORKER_ROUTES:
                assert answer.status_code != 401, (method, path, answer.text)
            else:
                assert answer.status_code == 401, (method, path, answer.text)
        # the host's files are closed to it, even those of a job
        assert client.get("/files/jobs/1/out.txt").status_code == 401
        assert client.put("/files/jobs/1/out.txt", content=b"x").status_code == 401


@pytest.mark.parametrize(
    ("headers", "worker"),
    [
        (as_worker("b-1a2b"), "b-9f9f-0"),  # another launch's worker
        (as_worker("b-1a2b"), "b-1a2b"),  # the launch's own name is no worker of it
        (as_worker("b"), "b-1a2b"),  # nor is it a worker of a shorter group
        (as_worker("b-1a2b-0"), "b-1a2b-1"),  # a token for one worker: not for its sibling
        ({"x-api-key": WORKER_KEY}, ME),  # no token
        ({"x-api-key": WORKER_KEY, HEADER: token("b-1a2b")[:-1] + "0"}, ME),  # a wrong one
        ({"x-api-key": "wrong", HEADER: token("b-1a2b")}, ME),  # a token without the key
        # the worker key's API Gateway value, which anyone allowed apigateway:GET reads,
        # passes the gateway and opens nothing, with the token or without
        ({"x-api-key": gateway_key(WORKER_KEY), HEADER: token("b-1a2b")}, ME),
        ({**key_headers(WORKER_KEY), "x-hyper-key": "wrong", HEADER: token("b-1a2b")}, ME),
        ({"x-api-key": WORKER_KEY, "x-hyper-key": "", HEADER: token("b-1a2b")}, "b-9f9f-0"),
    ],
)
def test_no_worker_acts_as_another(app: object, headers: dict[str, str], worker: str) -> None:
    with TestClient(app, headers=headers) as client:  # type: ignore[arg-type]
        for method, path in WORKER_ROUTES:
            answer = client.request(method, concrete(path).replace(ME, worker), json={})
            assert answer.status_code == 401, (method, path, answer.text)


def test_a_worker_reaches_the_files_of_the_jobs_it_holds_only(app: object) -> None:
    with TestClient(app, headers={"x-api-key": HOST_KEY}) as host:  # type: ignore[arg-type]
        host.put("/files/packages/p.tgz", content=b"package bytes")
        mine, theirs = submit(host, submission("mine", package="packages/p.tgz"),
                              submission("theirs", package="packages/p.tgz"))  # fmt: skip
        assert [j["id"] for j in claim(host, ME)] == [mine]
        other = "b-9f9f-0"
        assert [j["id"] for j in claim(host, other)] == [theirs]
    with TestClient(app, headers=as_worker("b-1a2b")) as worker:  # type: ignore[arg-type]
        answer = worker.get(f"/workers/{ME}/jobs/{mine}/package")
        assert answer.status_code == 200 and answer.content == b"package bytes"
        put = worker.put(f"/workers/{ME}/jobs/{mine}/files/out/r.txt", content=b"result")
        assert put.status_code == 204, put.text
        # a job another worker holds: its id named under this worker's own path
        assert worker.get(f"/workers/{ME}/jobs/{theirs}/package").status_code == 409
        answer = worker.put(f"/workers/{ME}/jobs/{theirs}/files/out/r.txt", content=b"x")
        assert answer.status_code == 409
        # and under the other worker's path: not its token
        assert worker.get(f"/workers/{other}/jobs/{theirs}/package").status_code == 401
    with TestClient(app, headers={"x-api-key": HOST_KEY}) as host:  # type: ignore[arg-type]
        assert host.get(f"/files/jobs/{mine}/out/r.txt").content == b"result"
        assert host.get(f"/files/jobs/{theirs}/out/r.txt").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "worker"),
    [
        ("POST", "/workers/w/claim", "w"),
        ("GET", "/workers/w/claim", None),
        ("POST", "/workers/w/jobs/7/progress", "w"),
        ("POST", "/workers/w/jobs/7/output", "w"),
        ("POST", "/workers/w/jobs/x/progress", None),
        ("POST", "/workers/w/jobs/7/progress/more", None),
        ("POST", "/workers/w/x/claim", None),
        ("GET", "/workers/w/jobs/7/package", "w"),
        ("PUT", "/workers/w/jobs/7/files/a/b.txt", "w"),
        ("PUT", "/workers/w/jobs/x/files/a.txt", None),
        ("GET", "/files/packages/p.tgz", None),
        ("PUT", "/files/jobs/7/a/b.txt", None),
        ("DELETE", "/workers/w/jobs/7/files/a.txt", None),
        ("POST", "/nodes/n1/join", None),
        ("POST", "/jobs", None),
    ],
)
def test_worker_routes(method: str, path: str, worker: str | None) -> None:
    assert worker_route(method, path) == worker


def test_worker_groups() -> None:
    assert worker_group("b-1a2b-17") == "b-1a2b"
    assert worker_group("b-123456789012-0") == "b-123456789012"
    assert worker_group("w") == "w" and worker_group("b-x") == "b-x"
    tokens = WorkerTokens(HOST_KEY)
    assert tokens.valid("b-1a2b-17", tokens.token("b-1a2b"))
    assert not tokens.valid("b-1a2b-17", WorkerTokens("another host").token("b-1a2b"))
    assert not tokens.valid("b-1a2b-17", "")
    assert not tokens.valid("b-1a2b", tokens.token("b-1a2b"))  # an id without its index


def test_a_host_without_a_worker_key_takes_no_empty_one(tmp_path: Path) -> None:
    settings = HostSettings(data_dir=tmp_path, api_key=HOST_KEY)
    store = SQLiteStore(tmp_path / "store.db")
    try:
        app = create_app(settings, store)
        headers = {"x-api-key": "", HEADER: WorkerTokens(HOST_KEY).token("w")}
        with TestClient(app, headers=headers) as client:
            assert client.post("/workers/w/exit", json={}).status_code == 401
        settings.save()
        assert "worker_key" not in (tmp_path / "host.json").read_text()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (key_headers(HOST_KEY), 200),  # what a client sends, on any host
        ({"x-api-key": HOST_KEY}, 200),  # a client that sent only the key (local hosts)
        ({"x-hyper-key": HOST_KEY}, 200),
        # the API key's API Gateway value (apigateway:GET reads it): never the key
        ({"x-api-key": gateway_key(HOST_KEY)}, 401),
        ({"x-api-key": gateway_key(HOST_KEY), "x-hyper-key": gateway_key(HOST_KEY)}, 401),
        ({"x-api-key": HOST_KEY, "x-hyper-key": "wrong"}, 401),  # x-hyper-key is the one read
    ],
)
def test_the_host_key_is_checked_in_x_hyper_key_and_its_gateway_value_opens_nothing(
    app: object, headers: dict[str, str], status: int
) -> None:
    with TestClient(app, headers=headers) as client:  # type: ignore[arg-type]
        assert client.get("/resources/queues").status_code == status


def test_a_gateway_key_is_an_alphanumeric_value_that_is_not_the_key() -> None:
    """API Gateway takes 20 to 128 letters and digits; the value derives from the key."""
    for key in (HOST_KEY, WORKER_KEY, "k" * 40):
        value = gateway_key(key)
        assert value.isascii() and value.isalnum() and 20 <= len(value) <= 128
        assert key not in value and value == gateway_key(key) != gateway_key(key + "x")
