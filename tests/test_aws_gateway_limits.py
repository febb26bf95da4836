"""The loopback API Gateway and Lambda (tests/helpers/aws_gateway.py) keep AWS's limits and
answer as AWS does: the usage plan's rate and burst (429), Lambda's 6 MB request (413)
and response (502), API Gateway's 29 s (504) and the function's concurrency (500).
A small app stands in for the host here; the host itself runs behind these limits in
test_aws_gateway.py and test_aws_e2e.py."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI, Request, Response

from hyper.host.lambda_adapter import LambdaApp
from hyper.key_headers import key_headers
from tests.helpers.aws_gateway import STAGE, Gateway, Limits

KEY = "Key0123456789abcdefghijKLMNOP"
WORKER_KEY = "WorkerKey0123456789abcdefghij"


def small_app() -> LambdaApp:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/big")
    async def big(n: int) -> Response:
        return Response(b"x" * n, media_type="application/octet-stream")

    @app.get("/sleep")
    async def sleep(s: float) -> dict[str, float]:
        await asyncio.sleep(s)
        return {"slept": s}

    return LambdaApp(app=app)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    limits = Limits(rate=5, burst=5, worker_rate=3, worker_burst=3, timeout_seconds=1.5,
                    concurrency=2)  # fmt: skip
    with Gateway.of(KEY, {"fn": {}}, "fn", limits, factories={"fn": small_app}) as running:
        running.add_worker_key(WORKER_KEY)
        yield running


def call(
    gateway: Gateway, method: str, path: str, body: bytes | None = None, key: str = KEY
) -> int:
    request = urllib.request.Request(f"{gateway.url}/{STAGE}{path}", data=body, method=method,
                                     headers=key_headers(key))  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as error:
        assert error.headers.get("x-amzn-ErrorType"), error.code  # API Gateway's own answer
        return int(error.code)


def test_rate_and_burst_give_429(gateway: Gateway) -> None:
    statuses = [call(gateway, "POST", "/echo", b"{}") for _ in range(8)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]


def test_the_key_holders_burst_does_not_throttle_a_worker(gateway: Gateway) -> None:
    """Each key has its own usage plan (the host stack's UsagePlan and WorkerUsagePlan;
    API Gateway throttles each key on its own): the API key's holder, past its rate,
    gets 429s while the workers' key still goes through, up to its own burst."""
    holder = [call(gateway, "POST", "/echo", b"{}") for _ in range(12)]
    assert holder.count(429) >= 5, holder
    workers = [call(gateway, "POST", "/echo", b"{}", key=WORKER_KEY) for _ in range(3)]
    assert workers == [200] * 3
    assert call(gateway, "POST", "/echo", b"{}", key=WORKER_KEY) == 429  # its own burst, 3
    assert call(gateway, "POST", "/echo", b"{}", key="NotAKey0123456789abcdef") == 403


def test_payloads_over_6_mb_give_413_and_502(gateway: Gateway) -> None:
    assert call(gateway, "POST", "/echo", b"x" * 1024) == 200
    assert call(gateway, "POST", "/echo", b"x" * (5 * 1024 * 1024)) == 413  # base64: 6.7 MB
    assert call(gateway, "GET", "/big?n=1000") == 200
    assert call(gateway, "GET", f"/big?n={7 * 1024 * 1024}") == 502


@pytest.mark.slow  # it holds the gateway's functions for 8 s: not the fast tier
def test_an_answer_after_29_s_gives_504_and_a_busy_function_500(gateway: Gateway) -> None:
    assert call(gateway, "GET", "/sleep?s=0.1") == 200
    assert call(gateway, "GET", "/sleep?s=3") == 504  # the limit here is 1.5 s
    assert gateway.api.timed_out == 1

    # two containers at most: two long calls hold both (running on past the gateway's
    # answer, as Lambda does), a third is throttled
    def waited_for(condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 60  # generous: a busy machine starts threads late
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        return condition()

    api = gateway.api
    assert waited_for(lambda: len(api._idle) == api.containers)  # the 3 s call has ended
    held = [threading.Thread(target=call, args=(gateway, "GET", "/sleep?s=8")) for _ in range(2)]
    for thread in held:
        thread.start()
    assert waited_for(lambda: api.containers == 2 and not api._idle)  # both taken
    assert call(gateway, "GET", "/sleep?s=0") == 500
    for thread in held:
        thread.join()
    assert gateway.api.throttled >= 1 and gateway.api.containers == 2


class Scripted:
    """A transport answering each request with the next status of a script."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[str] = []

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]
                ) -> tuple[int, bytes]:  # fmt: skip
        self.sent.append(method)
        status = self.statuses.pop(0)
        return status, b'{"message": "Too Many Requests"}' if status != 200 else b"{}"

    def close(self) -> None:
        pass


def test_what_the_host_client_and_the_worker_ask_again() -> None:
    """Any client asks again after a 429 (the usage plan refused it before the host saw
    it), and a GET after a gateway's 500/502/504; the worker's client (its one retry
    policy) asks its POSTs again too, as its calls are safe to repeat."""
    from hyper.client import HostClient
    from hyper.errors import HostFailure
    from hyper.worker.__main__ import RETRIES, RETRY_STATUSES

    plain = Scripted(429, 500, 504, 200)
    assert HostClient("http://x", "k", transport=plain).call("GET", "/jobs") == {}
    # a Lambda out of concurrency (500) for longer than the five quick tries is waited out
    busy = Scripted(500, 500, 500, 500, 500, 500, 200)
    assert HostClient("http://x", "k", transport=busy).call("GET", "/jobs") == {}
    assert len(busy.sent) == 7
    posted = Scripted(500)
    with pytest.raises(HostFailure):
        HostClient("http://x", "k", transport=posted).call("POST", "/jobs", {})
    assert posted.sent == ["POST"]  # not asked again: it may have been applied
    worker = Scripted(429, 500, 502, 503, 504, 200)
    client = HostClient("http://x", "k", transport=worker, retries=RETRIES,
                        retry_statuses=RETRY_STATUSES)  # fmt: skip
    assert client.call("POST", "/workers/w/claim", {}) == {}
    assert len(worker.sent) == 6
