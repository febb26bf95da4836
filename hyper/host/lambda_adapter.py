"""The host app in AWS Lambda, behind an API Gateway REST API (proxy integration).

``handler`` is the function's entry point (``hyper.host.lambda_adapter.handler``).
Each invocation is either:

- an API Gateway (REST, payload 1.0) proxy event: Mangum's API Gateway handler makes
  it an ASGI HTTP request (method, path, query string with repeated parameters,
  headers, a base64 body), the host app answers it, and Mangum makes the answer the
  proxy response (statusCode, headers, multiValueHeaders, body, isBase64Encoded);
- ``{"hyper": "tick"}`` from the schedule: one scheduler tick, through the hook the
  app factory gave;
- ``{"hyper": "deploy", "kind": KIND, "name": NAME}``, which the function sends itself
  (asynchronously) for each resource change: that change's work, which may take
  minutes, through the factory's deploy hook.

The app is built once per container by an app factory, and its lifespan startup runs
once, on the first invocation (Mangum's lifespan cycle, held open for the container's
life rather than one invocation's); one event loop per container runs every invocation
(what the app left running continues only while an invocation runs, as Lambda freezes
the container between them). ``make_handler(factory)`` makes a handler around any
factory; ``handler`` uses the factory named by ``HYPER_APP_FACTORY``
(``module:function``), and says what is missing when there is none.

Only the standard library and Mangum are imported here: the factory imports the app.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import importlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from mangum.exceptions import LifespanFailure
from mangum.handlers import APIGateway
from mangum.protocols import HTTPCycle, LifespanCycle
from mangum.types import LambdaConfig

from hyper.errors import HyperError
from hyper.lambda_events import DEPLOY, TICK_EVENT, is_deploy, is_tick

log = logging.getLogger(__name__)

FACTORY_VARIABLE = "HYPER_APP_FACTORY"
DEFAULT_FACTORY = "hyper.host.lambda_app:make_app"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class LambdaApp:
    """What an app factory gives: the ASGI app, the scheduler tick hook and the hook that
    does one resource change's work (sync or async; what they return goes back to the
    caller when it is JSON, or a dataclass)."""

    app: ASGIApp
    tick: Callable[[], Any] | None = None
    deploy: Callable[[str, str], Any] | None = None


AppFactory = Callable[[], LambdaApp]


class LambdaHandler:
    """A Lambda handler around an app factory; the app is built on the first call."""

    def __init__(self, app_factory: AppFactory) -> None:
        self.app_factory = app_factory
        self._container: _Container | None = None

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        self._check(event)
        container = self._start()
        if is_tick(event):
            return container.run_hook("tick", container.tick_hook)
        if is_deploy(event):
            kind, name = event["kind"], event["name"]
            return container.run_hook(DEPLOY, container.deploy_hook, kind, name)
        return container.http(event, context)

    def _check(self, event: Any) -> None:
        if not (is_tick(event) or is_deploy(event)) and not (
            isinstance(event, dict) and "httpMethod" in event
        ):
            raise HyperError(
                "not an event this function takes: an API Gateway REST proxy event "
                f'(payload 1.0), {json.dumps(TICK_EVENT)} or {{"hyper": "deploy", "kind": '
                '"...", "name": "..."}'
            )

    def close(self) -> None:
        """Run the app's lifespan shutdown and close the event loop (Lambda never does:
        its containers are frozen, then dropped; tests and local runs do)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def _start(self) -> _Container:
        if self._container is None:
            container = _Container(self.app_factory())
            try:
                container.startup()
            except BaseException:
                container.close(shutdown=False)
                raise
            self._container = container
        return self._container


def make_handler(app_factory: AppFactory) -> LambdaHandler:
    return LambdaHandler(app_factory)


def app_from_environment() -> LambdaApp:
    """The factory named by HYPER_APP_FACTORY (`module:function`), called; by default the
    AWS host's."""
    name = os.environ.get(FACTORY_VARIABLE) or DEFAULT_FACTORY
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise HyperError(f"{FACTORY_VARIABLE}={name}: {error}") from None
    built = factory()
    if not isinstance(built, LambdaApp):
        kind = type(built).__name__
        raise HyperError(f"{FACTORY_VARIABLE}={name} returned {kind}, not a LambdaApp")
    return built


handler = make_handler(app_from_environment)


# one container ------------------------------------------------------------------------

# answers whose body is text go back as text; anything else as base64 (Mangum matches
# each of these within the content type)
TEXT_TYPES = ["text/", "application/json", "application/xml", "application/javascript",
              "+json", "+xml"]  # fmt: skip


class _Container:
    """The app, its event loop and its lifespan, for as long as the container lives."""

    def __init__(self, built: LambdaApp) -> None:
        self.app = _answering(built.app)
        self.tick_hook = built.tick
        self.deploy_hook = built.deploy
        self.loop = asyncio.new_event_loop()
        self.config = LambdaConfig(
            api_gateway_base_path="/", text_mime_types=TEXT_TYPES, exclude_headers=[]
        )
        self.lifespan: LifespanCycle | None = None

    def startup(self) -> None:
        asyncio.set_event_loop(self.loop)  # where Mangum's lifespan cycle runs
        try:
            self.lifespan = LifespanCycle(cast(Any, self.app), "auto")
        finally:
            asyncio.set_event_loop(None)
        try:
            self.lifespan.__enter__()
        except LifespanFailure as error:
            raise HyperError(f"the host app did not start: {error}") from None

    def close(self, *, shutdown: bool = True) -> None:
        try:
            if shutdown and self.lifespan is not None:
                try:
                    self.lifespan.__exit__(None, None, None)
                except LifespanFailure as error:
                    log.error("the host app's shutdown failed: %s", error)
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            pending = asyncio.all_tasks(self.loop)
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        # what API Gateway always sends, for an event made by hand (a test, a console)
        event = {"resource": "/{proxy+}", "path": "/", "requestContext": {}, **event}
        gateway = APIGateway(event, context, self.config)
        try:
            _check_body(event)
            scope, body = gateway.scope, gateway.body
        except HyperError as error:
            return _error(gateway, 400, str(error))
        except (ValueError, KeyError, AttributeError) as error:  # a part API Gateway sends
            return _error(gateway, 400, f"not a proxy event as API Gateway sends: {error!r}")
        if self.lifespan is not None:
            scope["state"] = self.lifespan.lifespan_state.copy()
        cycle = HTTPCycle(scope, body)
        self.loop.run_until_complete(cycle.run(cast(Any, self.app)))
        return gateway({"status": cycle.status, "headers": cycle.headers, "body": cycle.body})

    def run_hook(self, name: str, hook: Callable[..., Any] | None, *args: Any) -> dict[str, Any]:
        if hook is None:
            raise HyperError(f"this app has no {name} hook")
        result = hook(*args)
        if asyncio.iscoroutine(result):
            result = self.loop.run_until_complete(result)
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            result = dataclasses.asdict(result)
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            result = None
        return {"hyper": name, "result": result}


def _check_body(event: dict[str, Any]) -> None:
    """A base64 body must be base64 (Mangum would decode what it could of it)."""
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True)
        except binascii.Error:
            raise HyperError("the request's body is not valid base64") from None


def _answering(app: ASGIApp) -> ASGIApp:
    """`app`, answering a failure before its answer began with a 500 of our own (the
    log says why), and an app that gave no answer with one too."""

    async def answering(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, watched)
        except Exception:
            log.exception("the host app failed on %s %s", scope["method"], scope["path"])
            if started:
                raise
            await _send_error(send, 500, "the host failed; its log says why")
            return
        if not started:
            await _send_error(send, 500, "the host app gave no answer")

    return answering


async def _send_error(send: Send, status: int, detail: str) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})


def _error(gateway: APIGateway, status: int, detail: str) -> dict[str, Any]:
    body = json.dumps({"detail": detail}).encode()
    return gateway({"status": status, "headers": [[b"content-type", b"application/json"]],
                    "body": body})  # fmt: skip
