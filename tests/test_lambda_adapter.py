"""The Lambda adapter: API Gateway REST proxy events through the real host app (a real
SQLite store in a temp dir), the schedule's tick, and what the adapter does alone."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hyper.errors import HyperError
from hyper.host.app import create_app
from hyper.host.lambda_adapter import (
    TICK_EVENT,
    LambdaApp,
    LambdaHandler,
    app_from_environment,
    handler,
    make_handler,
)
from hyper.host_settings import HostSettings
from hyper.resources import SAMPLE_DEFINITION, SAMPLE_QUEUE
from hyper.scheduler import Scheduler
from hyper.store.sqlite import SQLiteStore
from tests.helpers.lambda_events import KEY, proxy_event


def answer(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response["isBase64Encoded"]:
        body = base64.b64decode(body).decode()
    return json.loads(body)


def job(name: str = "lambda-job") -> dict[str, Any]:
    return {
        "name": name,
        "queue": SAMPLE_QUEUE,
        "definition": SAMPLE_DEFINITION,
        "script": "echo hi\n",
    }


class HostFactory:
    """Builds the real host app around the test's store, and counts how often."""

    def __init__(self, settings: HostSettings, store: SQLiteStore) -> None:
        self.settings, self.store, self.calls = settings, store, 0

    def __call__(self) -> LambdaApp:
        self.calls += 1
        scheduler = Scheduler(self.store, {}, silence_seconds=60)
        return LambdaApp(
            create_app(self.settings, self.store), tick=lambda: scheduler.tick(time.time())
        )


@pytest.fixture
def factory(settings: HostSettings, store: SQLiteStore) -> HostFactory:
    return HostFactory(settings, store)


@pytest.fixture
def lam(factory: HostFactory) -> Iterator[LambdaHandler]:
    built = make_handler(factory)
    try:
        yield built
    finally:
        built.close()


def test_submit_through_a_proxy_event_and_read_it_back(
    lam: LambdaHandler, factory: HostFactory
) -> None:
    response = lam(proxy_event("POST", "/jobs", body=json.dumps({"jobs": [job()]})), None)
    assert response["statusCode"] == 200, response
    assert response["isBase64Encoded"] is False
    assert response["headers"]["content-type"] == "application/json"
    (job_id,) = answer(response)["ids"]

    found = lam(proxy_event("GET", f"/jobs/{job_id}"), None)
    assert found["statusCode"] == 200, found
    record = answer(found)
    assert (record["id"], record["name"], record["queue"]) == (job_id, "lambda-job", SAMPLE_QUEUE)
    assert record["status"] == "Waiting"

    script = answer(lam(proxy_event("GET", f"/jobs/{job_id}/script"), None))
    assert script["script"] == "echo hi\n"
    # the app (and its lifespan: the sample queue the job went to) was built once
    assert factory.calls == 1


def test_refused_without_the_key(lam: LambdaHandler) -> None:
    for key in (None, "wrong-key"):
        response = lam(proxy_event("POST", "/jobs", body=json.dumps({"jobs": [job()]}), key=key))
        assert response["statusCode"] == 401, response
        assert "x-api-key" in answer(response)["detail"]
    listing = answer(lam(proxy_event("GET", "/jobs")))
    assert listing["jobs"] == []  # nothing was submitted


def test_a_base64_body(lam: LambdaHandler) -> None:
    # with BinaryMediaTypes */* API Gateway sends every body base64-encoded
    body = json.dumps({"jobs": [job("größe-ünïcode")]})
    response = lam(proxy_event("POST", "/jobs", body=body, base64_body=True))
    assert response["statusCode"] == 200, response
    (job_id,) = answer(response)["ids"]
    assert answer(lam(proxy_event("GET", f"/jobs/{job_id}")))["name"] == "größe-ünïcode"

    broken = proxy_event("POST", "/jobs", body=body, base64_body=True)
    broken["body"] = "not base64!"
    response = lam(broken)
    assert response["statusCode"] == 400
    assert "base64" in answer(response)["detail"]


def test_repeated_query_parameters(lam: LambdaHandler) -> None:
    submitted = answer(
        lam(proxy_event("POST", "/jobs", body=json.dumps({"jobs": [job("a"), job("b")]})))
    )["ids"]
    held = lam(proxy_event("POST", "/jobs/hold", body=json.dumps({"ids": [str(submitted[0])]})))
    assert held["statusCode"] == 200, held

    def listed(query: dict[str, list[str]]) -> list[int]:
        response = lam(proxy_event("GET", "/jobs", query=query))
        assert response["statusCode"] == 200, response
        return [j["id"] for j in answer(response)["jobs"]]

    assert listed({"status": ["Held"]}) == [submitted[0]]
    assert listed({"status": ["Waiting"]}) == [submitted[1]]
    assert listed({"status": ["Held", "Waiting"]}) == submitted
    assert listed({"name": ["b"], "queue": [SAMPLE_QUEUE]}) == [submitted[1]]


def test_a_tick_event_runs_the_scheduler_hook(lam: LambdaHandler, factory: HostFactory) -> None:
    result = lam(dict(TICK_EVENT), None)
    assert result == {"hyper": "tick", "result": {"expired": [], "started": 0, "gone": 0}}
    lam(proxy_event("GET", "/health"), None)
    assert factory.calls == 1


def test_a_factory_that_is_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPER_APP_FACTORY", "tests.test_lambda_adapter:not_there")
    with pytest.raises(HyperError, match="not_there"):
        handler(proxy_event("GET", "/health"), None)


def bare_factory() -> LambdaApp:
    return LambdaApp(bare_app)


def test_the_factory_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPER_APP_FACTORY", "tests.test_lambda_adapter:bare_factory")
    assert app_from_environment().app is bare_app
    fresh = make_handler(app_from_environment)
    try:
        assert fresh(proxy_event("GET", "/bytes"))["statusCode"] == 200
    finally:
        fresh.close()


# the adapter alone, around a bare ASGI app ------------------------------------------------


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    """No framework: no lifespan support, a binary answer, a header twice, a failure."""
    if scope["type"] != "http":
        raise RuntimeError("only http")
    if scope["path"] == "/fail":
        raise RuntimeError("boom")
    message = await receive()
    echo = {
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "body": message["body"].decode(errors="replace"),
        "client": list(scope["client"]),
        "server": list(scope["server"]),
        "scheme": scope["scheme"],
        "method": scope["method"],
        "key": dict((bytes(n), bytes(v)) for n, v in scope["headers"])
        .get(b"x-api-key", b"")
        .decode(),
    }
    if scope["path"] == "/bytes":
        headers = [(b"content-type", b"application/octet-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"\x00\xff\xfe", "more_body": True})
        await send({"type": "http.response.body", "body": b"tail"})
        return
    headers = [
        (b"content-type", b"application/json"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(echo).encode()})


@pytest.fixture
def bare() -> Iterator[LambdaHandler]:
    built = make_handler(lambda: LambdaApp(bare_app))
    try:
        yield built
    finally:
        built.close()


def test_binary_answers_go_back_base64(bare: LambdaHandler) -> None:
    response = bare(proxy_event("GET", "/bytes"))
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"]) == b"\x00\xff\xfetail"


def test_a_header_given_twice_and_what_the_app_sees(bare: LambdaHandler) -> None:
    response = bare(
        proxy_event("POST", "/a%20b/c", body="plain", query={"x": ["1", "2"], "y": ["a b&c"]})
    )
    assert response["statusCode"] == 201
    assert response["multiValueHeaders"]["set-cookie"] == ["a=1", "b=2"]
    seen = answer(response)
    assert seen["path"] == "/a b/c"
    assert seen["query"] == "x=1&x=2&y=a+b%26c"
    assert seen["body"] == "plain"
    assert seen["client"] == ["203.0.113.7", 0]
    assert seen["server"] == ["abc123.execute-api.eu-west-1.amazonaws.com", 443]
    assert seen["scheme"] == "https"


def test_an_app_that_fails_answers_500(
    bare: LambdaHandler, caplog: pytest.LogCaptureFixture
) -> None:
    response = bare(proxy_event("GET", "/fail"))
    assert response["statusCode"] == 500
    assert "log" in answer(response)["detail"]
    assert "boom" in caplog.text


def test_an_app_without_a_tick(bare: LambdaHandler) -> None:
    with pytest.raises(HyperError, match="no tick hook"):
        bare(dict(TICK_EVENT))


def test_other_events_are_refused(bare: LambdaHandler) -> None:
    http_api = {"version": "2.0", "rawPath": "/health", "requestContext": {"http": {}}}
    events: list[Any] = [http_api, {"hyper": "other"}, []]
    for event in events:
        with pytest.raises(HyperError, match="not an event this function takes"):
            bare(event)


def test_single_value_headers_and_no_query(bare: LambdaHandler) -> None:
    event = proxy_event("GET", "/health")
    event["multiValueHeaders"] = None
    event["multiValueQueryStringParameters"] = None
    event["queryStringParameters"] = {"a": "1"}
    seen = answer(bare(event))
    assert seen["key"] == KEY
    assert seen["query"] == "a=1"
    assert seen["method"] == "GET"


def test_importing_the_adapter_imports_no_framework() -> None:
    code = (
        "import sys, hyper.host.lambda_adapter; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'pydantic', 'boto3', 'uvicorn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
