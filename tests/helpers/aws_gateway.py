"""API Gateway and Lambda on loopback, for an AWS host deployed into a moto server.

moto keeps a host stack's functions, REST API and key, but cannot run the functions
(that needs docker) nor answer at the API's execute-api address. This stands in for
both, the way AWS would run the stack:

- ``/v1/...`` is the API's stage: a request whose ``x-api-key`` is not one of the
  stack's API Gateway key values (read from API Gateway, as the template set them) is
  refused with 403 (API Gateway's answer), one with it becomes a REST proxy event for
  the API function, every header passed on (the function checks ``x-hyper-key``);
  ``/v1/dashboard/...`` needs no key (the function checks a session cookie);
- ``POST /2015-03-31/functions/NAME/invocations`` is Lambda's Invoke: an ``Event``
  invocation is queued and run on a thread of its own (as another container would),
  ``RequestResponse`` runs at once. Point boto3 here with ``AWS_ENDPOINT_URL_LAMBDA``.

Each function runs the installed hyper through the real handler
(``hyper.host.lambda_adapter``) with the environment moto holds for that function, in
containers that each run one invocation at a time, in this process. Only the address
differs from AWS: ``url`` stands where the stack's execute-api URL would.

AWS's limits hold here as there (`Limits`), with AWS's answers: each key's usage plan's
rate and burst, the API key's and the worker key's each on its own (429 Too Many
Requests), Lambda's 6 MB request (413) and response (502),
API Gateway's 29 s (504 Endpoint request timed out, the invocation running on), and the
function's concurrency (a throttled invocation reaches the client as 500 Internal
server error; an asynchronous one waits, as Lambda queues it).

Against AWS's documentation: Lambda's Invoke takes at most 6 MB synchronously, request
and response (https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html, where a
bigger request is RequestTooLargeException, HTTP 413, and throttling is
TooManyRequestsException, 429); API Gateway's REST payload quota is 10 MB
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), so a body
past Lambda's 6 MB (the event, base64 and all) and under 10 MB reaches Lambda and is
refused there, and one past 10 MB is refused by API Gateway itself with 413 Request Too
Long; both are 413 here. AWS's knowledge center says a Lambda throttled behind API
Gateway "might return an Internal server error"
(https://repost.aws/knowledge-center/api-gateway-internal-server-error): the 500 here,
never the 429 Lambda itself answers (a client cannot tell it from its own usage plan's).
What API Gateway answers when Lambda refuses a 6-10 MB request is not in AWS's own
pages; reports of it say 413, as here.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3

from hyper.host.lambda_adapter import LambdaApp, LambdaHandler, make_handler
from hyper.key_headers import gateway_key
from hyper.providers.aws.template_parts import KEY_THROTTLE, WORKER_THROTTLE
from tests.helpers.lambda_events import proxy_event

STAGE = "v1"
INVOKE_PREFIX = "/2015-03-31/functions/"


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Limits:
    """AWS's limits the gateway enforces, answering as AWS does (the defaults are AWS's
    and the host stack's own: its usage plan, Lambda's payload and API Gateway's
    integration timeout; the account's concurrency, less on new accounts)."""

    rate: float = KEY_THROTTLE[0]  # the API key's usage plan: requests per second ...
    burst: int = KEY_THROTTLE[1]  # ... and its burst: beyond them, 429 Too Many Requests
    # the worker key's usage plan, of its own (API Gateway throttles each key on its own)
    worker_rate: float = WORKER_THROTTLE[0]
    worker_burst: int = WORKER_THROTTLE[1]
    payload_bytes: int = 6 * 1024 * 1024  # Lambda's synchronous request and response
    timeout_seconds: float = 29.0  # API Gateway's integration timeout: 504
    concurrency: int = 1000  # containers of one function at once; beyond, throttled


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


_BUILDING = threading.Lock()  # a function's app reads its environment once, when built


class Function:
    """One Lambda function: containers of its handler, each built with the function's
    environment and running one invocation at a time, at most `limits.concurrency` of
    them at once (as Lambda scales a function out, up to its concurrency)."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        limits: Limits | None = None,
        *,
        factory: Callable[[], LambdaApp] | None = None,
    ) -> None:
        self.name = name
        self.env = {**env, "AWS_LAMBDA_FUNCTION_NAME": name}
        self.limits = limits or Limits()
        self._factory = factory
        self.calls: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.throttled = 0
        self.timed_out = 0
        self._pool = threading.Condition()
        self._idle: list[LambdaHandler] = []
        self._all: list[LambdaHandler] = []
        self._release(self._build())  # the first container, so a bad environment shows now
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._runner = threading.Thread(target=self._run_events, daemon=True)
        self._runner.start()

    def _build(self) -> LambdaHandler:
        if self._factory is not None:
            handler = make_handler(self._factory)
        else:
            from hyper.host.lambda_app import make_app

            with _BUILDING, environment(self.env):
                built = make_app()
            handler = make_handler(lambda: built)
        with self._pool:
            self._all.append(handler)
        return handler

    def _acquire(self, *, wait: bool) -> LambdaHandler | None:
        with self._pool:
            while True:
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.limits.concurrency:
                    break
                if not wait:
                    return None
                self._pool.wait(timeout=1)
        return self._build()

    def _release(self, handler: LambdaHandler) -> None:
        with self._pool:
            self._idle.append(handler)
            self._pool.notify()

    @property
    def containers(self) -> int:
        return len(self._all)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        """An invocation that waits for a container (Invoke RequestResponse, events)."""
        handler = self._acquire(wait=True)
        assert handler is not None
        self.calls.append(event)
        try:
            return handler(event, None)
        finally:
            self._release(handler)

    def invoke(self, event: dict[str, Any], timeout: float) -> tuple[str, Any]:
        """As API Gateway invokes it: ("ok", answer), or "throttled" (no container to
        spare), "timeout" (the invocation runs on, its answer lost) or "error"."""
        handler = self._acquire(wait=False)
        if handler is None:
            self.throttled += 1
            return "throttled", None
        self.calls.append(event)
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["answer"] = handler(event, None)
            except BaseException as error:  # noted for the test; API Gateway says 502
                box["error"] = error
                self.errors.append(error)
            finally:
                self._release(handler)
                done.set()

        threading.Thread(target=run, daemon=True).start()
        if not done.wait(timeout):
            self.timed_out += 1
            return "timeout", None
        return ("error", None) if "error" in box else ("ok", box["answer"])

    def _run_events(self) -> None:
        while (event := self.events.get()) is not None:
            try:
                self(event)  # Lambda queues an asynchronous invocation while throttled
            except BaseException as error:  # noted for the test; Lambda would retry
                self.errors.append(error)
            finally:
                self.events.task_done()

    def close(self) -> None:
        self.events.put(None)
        self._runner.join(timeout=60)
        deadline = time.monotonic() + 60
        with self._pool:
            while len(self._idle) < len(self._all) and time.monotonic() < deadline:
                self._pool.wait(timeout=1)
            for handler in self._all:
                handler.close()


class Gateway:
    """The host stack's API and functions, served on 127.0.0.1."""

    def __init__(self, stack: str, region: str, limits: Limits | None = None) -> None:
        cloudformation = boto3.client("cloudformation", region_name=region)
        (found,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found["Outputs"]}
        lambda_client = boto3.client("lambda", region_name=region)
        secrets = boto3.client("secretsmanager", region_name=region)
        key = secrets.get_secret_value(SecretId=outputs["SecretArn"])["SecretString"]
        workers = secrets.get_secret_value(SecretId=outputs["WorkerSecretArn"])["SecretString"]
        api = outputs["FunctionName"]
        variables = lambda_client.get_function_configuration(FunctionName=api)["Environment"][
            "Variables"
        ]
        envs = {
            name: lambda_client.get_function_configuration(FunctionName=name)["Environment"][
                "Variables"
            ]
            for name in (api, variables["HYPER_DEPLOY_FUNCTION"])
        }
        self._start(key, envs, api, limits or Limits())
        # the usage plans' keys, by the values the stack gives its API Gateway keys (what
        # a client's x-api-key must equal; moto's CloudFormation makes no ApiKey)
        template = cloudformation.get_template(StackName=stack)["TemplateBody"]
        template = json.loads(template) if isinstance(template, str) else template
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in found["Parameters"]}
        self.plans = {}
        for name, rate, burst in [
            ("ApiKey", self.limits.rate, self.limits.burst),
            ("WorkerApiKey", self.limits.worker_rate, self.limits.worker_burst),
        ]:
            value = template["Resources"][name]["Properties"]["Value"]
            self._add_plan(_resolved(value, parameters, secrets), rate, burst)
        self.worker_key = workers

    @classmethod
    def of(
        cls,
        key: str,
        envs: dict[str, dict[str, str]],
        api: str,
        limits: Limits | None = None,
        *,
        factories: dict[str, Callable[[], LambdaApp]] | None = None,
    ) -> Gateway:
        """A gateway for functions given by their environments (or app factories)."""
        gateway = cls.__new__(cls)
        gateway._start(key, envs, api, limits or Limits(), factories or {})
        return gateway

    def _start(
        self,
        key: str,
        envs: dict[str, dict[str, str]],
        api: str,
        limits: Limits,
        factories: dict[str, Callable[[], LambdaApp]] | None = None,
    ) -> None:
        self.key = key
        self.limits = limits
        # each key's usage plan, which throttles it alone, by its API Gateway key value
        # (hyper/key_headers.py): a request whose x-api-key is not one of them gets 403
        self.plans: dict[str, TokenBucket] = {}
        self._add_plan(gateway_key(key), limits.rate, limits.burst)
        self.answers: Counter[int] = Counter()  # what API Gateway answered, by status
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.functions: dict[str, Function] = {}
        for name, env in envs.items():
            # where the stack's execute-api URL would answer
            self.functions[name] = Function(
                name,
                {**env, "HYPER_API_URL": f"{self.url}/{STAGE}"},
                limits,
                factory=(factories or {}).get(name),
            )
        self.api = self.functions[api]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_worker_key(self, key: str) -> None:
        """The worker key, in its usage plan (the stack's WorkerUsagePlan)."""
        self._add_plan(gateway_key(key), self.limits.worker_rate, self.limits.worker_burst)

    def _add_plan(self, value: str, rate: float, burst: int) -> None:
        # as API Gateway documents a key's value: 20 to 128 letters and digits
        assert value.isascii() and value.isalnum() and 20 <= len(value) <= 128, value
        self.plans[value] = TokenBucket(rate, burst)

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)
        for function in self.functions.values():
            function.close()

    def settle(self) -> None:
        """Wait until every queued invocation has run."""
        for function in self.functions.values():
            function.events.join()

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(
                self, status: int, body: bytes, headers: list[tuple[str, str]] | dict[str, str]
            ) -> None:
                self.send_response(status)
                pairs = headers.items() if isinstance(headers, dict) else headers
                for name, value in pairs:
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _any(self) -> None:
                body = self._body()
                parts = urlsplit(self.path)
                if parts.path.startswith(INVOKE_PREFIX):
                    self._invoke(parts.path, body)
                elif parts.path.startswith(f"/{STAGE}/"):
                    self._proxy(parts.path.removeprefix(f"/{STAGE}"), parts.query, body)
                else:
                    self._answer(404, b'{"message":"Not Found"}', {})

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def _invoke(self, path: str, body: bytes) -> None:
                name = path.removeprefix(INVOKE_PREFIX).split("/")[0]
                function = gateway.functions.get(name)
                if function is None:
                    self._answer(404, b'{"Type":"User","Message":"no such function"}', {})
                    return
                event = json.loads(body or b"{}")
                if self.headers.get("X-Amz-Invocation-Type") == "Event":
                    function.events.put(event)
                    self._answer(202, b"", {})
                else:
                    self._answer(200, json.dumps(function(event)).encode(), {})

            def _refuse(self, status: int, message: str, kind: str) -> None:
                gateway.answers[status] += 1
                body = json.dumps({"message": message}).encode()
                self._answer(status, body, {"Content-Type": "application/json",
                                            "x-amzn-ErrorType": kind})  # fmt: skip

            def _proxy(self, path: str, query: str, body: bytes) -> None:
                dashboard = path == "/dashboard" or path.startswith("/dashboard/")
                plan = gateway.plans.get(self.headers.get("x-api-key") or "")
                if not dashboard and plan is None:
                    self._refuse(403, "Forbidden", "ForbiddenException")
                    return
                if plan is not None and not plan.take():  # its usage plan's rate and burst
                    self._refuse(429, "Too Many Requests", "TooManyRequestsException")
                    return
                event = proxy_event(
                    self.command,
                    path,
                    body=body or None,
                    base64_body=True,
                    key=self.headers.get("x-api-key"),
                    query=parse_qs(query, keep_blank_values=True),
                    headers=dict(self.headers.items()),
                )
                limits = gateway.limits
                if len(json.dumps(event)) > limits.payload_bytes:  # Lambda's request limit
                    self._refuse(413, "Request Too Long", "RequestTooLongException")
                    return
                outcome, answer = gateway.api.invoke(event, limits.timeout_seconds)
                if outcome == "throttled":  # Lambda's 429 reaches the client as a 500
                    self._refuse(500, "Internal server error", "InternalServerErrorException")
                    return
                if outcome == "timeout":
                    self._refuse(504, "Endpoint request timed out", "IntegrationTimeout")
                    return
                if outcome == "error" or len(json.dumps(answer)) > limits.payload_bytes:
                    self._refuse(502, "Internal server error", "InternalServerErrorException")
                    return
                raw = answer.get("body") or ""
                data = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
                gateway.answers[int(answer["statusCode"])] += 1
                self._answer(int(answer["statusCode"]), data, proxy_headers(answer))

        return Handler


def proxy_headers(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """A proxy response's headers as API Gateway sends them: `headers` and
    `multiValueHeaders` merged into one list."""
    merged = {name: [value] for name, value in (answer.get("headers") or {}).items()}
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        known = merged.setdefault(name, [])
        known.extend(v for v in values if v not in known)
    return [(name, value) for name, values in merged.items() for value in values]


def _resolved(value: Any, parameters: dict[str, str], secrets: Any) -> str:
    """A template's value as CloudFormation gives it: a parameter's (Ref), or a secret's
    (a dynamic reference to the whole secret)."""
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, given in parameters.items():
        text = text.replace("${" + name + "}", given)
    found = re.fullmatch(r"\{\{resolve:secretsmanager:([^}]+)\}\}", text)
    if found:
        return str(secrets.get_secret_value(SecretId=found.group(1))["SecretString"])
    return str(text)
