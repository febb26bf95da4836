"""API Gateway and Lambda on loopback, for an AWS host deployed into a moto server.

moto keeps a host stack's functions, REST API and key, but cannot run the functions
(that needs docker) nor answer at the API's execute-api address. This stands in for
both, the way AWS would run the stack:

- ``/v1/...`` is the API's stage: a request without the host's API key is refused
  with 403 (API Gateway's answer), one with it becomes a REST proxy event for the API
  function; ``/v1/dashboard/...`` needs no key (the function checks a session cookie);
- ``POST /2015-03-31/functions/NAME/invocations`` is Lambda's Invoke: an ``Event``
  invocation is queued and run on a thread of its own (as another container would),
  ``RequestResponse`` runs at once. Point boto3 here with ``AWS_ENDPOINT_URL_LAMBDA``.

Each function runs the installed hyper through the real handler
(``hyper.host.lambda_adapter``) with the environment moto holds for that function,
one invocation at a time per function, in this process. Only the address differs from
AWS: ``url`` stands where the stack's execute-api URL would.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3

from hyper.host.lambda_adapter import LambdaHandler, make_handler
from tests.test_lambda_adapter import proxy_event

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


class Function:
    """One Lambda function: its handler, built with its environment, one call at a time."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        from hyper.providers.aws.lambda_app import make_app

        self.name = name
        self.env = {**env, "AWS_LAMBDA_FUNCTION_NAME": name}
        with environment(self.env):
            built = make_app()
        self.handler: LambdaHandler = make_handler(lambda: built)
        self.lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.calls: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._runner = threading.Thread(target=self._run_events, daemon=True)
        self._runner.start()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(event)
            return self.handler(event, None)

    def _run_events(self) -> None:
        while (event := self.events.get()) is not None:
            try:
                self(event)
            except BaseException as error:  # noted for the test; Lambda would retry
                self.errors.append(error)
            finally:
                self.events.task_done()

    def close(self) -> None:
        self.events.put(None)
        self._runner.join(timeout=60)
        with self.lock:
            self.handler.close()


class Gateway:
    """The host stack's API and functions, served on 127.0.0.1."""

    def __init__(self, stack: str, region: str) -> None:
        cloudformation = boto3.client("cloudformation", region_name=region)
        (found,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found["Outputs"]}
        lambda_client = boto3.client("lambda", region_name=region)
        secrets = boto3.client("secretsmanager", region_name=region)
        self.key = secrets.get_secret_value(SecretId=outputs["SecretArn"])["SecretString"]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.functions: dict[str, Function] = {}
        api = outputs["FunctionName"]
        variables = lambda_client.get_function_configuration(FunctionName=api)["Environment"][
            "Variables"
        ]
        deployer = variables["HYPER_DEPLOY_FUNCTION"]
        for name in (api, deployer):
            env = lambda_client.get_function_configuration(FunctionName=name)["Environment"]
            # where the stack's execute-api URL would answer
            self.functions[name] = Function(
                name, {**env["Variables"], "HYPER_API_URL": f"{self.url}/{STAGE}"}
            )
        self.api = self.functions[api]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
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

            def _proxy(self, path: str, query: str, body: bytes) -> None:
                dashboard = path == "/dashboard" or path.startswith("/dashboard/")
                if not dashboard and self.headers.get("x-api-key") != gateway.key:
                    self._answer(403, b'{"message":"Forbidden"}', {})
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
                answer = gateway.api(event)
                raw = answer.get("body") or ""
                data = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
                self._answer(int(answer["statusCode"]), data, dict(answer.get("headers") or {}))

        return Handler
