"""The host app in AWS Lambda, behind an API Gateway REST API (proxy integration).

``handler`` is the function's entry point (``hyper.host.lambda_adapter.handler``).
Each invocation is either:

- an API Gateway (REST, payload 1.0) proxy event: it becomes an ASGI HTTP request
  (method, path, query string with repeated parameters, headers, a base64 body),
  the host app answers it, and the answer becomes the proxy response (statusCode,
  headers, multiValueHeaders, body, isBase64Encoded);
- ``{"hyper": "tick"}`` from the schedule: one scheduler tick, through the hook the
  app factory gave;
- ``{"hyper": "deploy", "kind": KIND, "name": NAME}``, which the function sends itself
  (asynchronously) for each resource change: that change's work, which may take
  minutes, through the factory's deploy hook.

The app is built once per container by an app factory, and its lifespan startup runs
once, on the first invocation; one event loop per container runs every invocation
(what the app left running continues only while an invocation runs, as Lambda freezes
the container between them). ``make_handler(factory)`` makes a handler around any
factory; ``handler`` uses the factory named by ``HYPER_APP_FACTORY``
(``module:function``), and says what is missing when there is none.

Only the standard library is imported here: the factory imports the app.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import importlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

from hyper.errors import HyperError

log = logging.getLogger(__name__)

TICK_EVENT = {"hyper": "tick"}
DEPLOY = "deploy"
FACTORY_VARIABLE = "HYPER_APP_FACTORY"
DEFAULT_FACTORY = "hyper.providers.aws.lambda_app:make_app"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# answers whose body is text go back as text; anything else as base64
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")


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


def is_tick(event: Any) -> bool:
    return isinstance(event, dict) and event.get("hyper") == TICK_EVENT["hyper"]


def deploy_event(kind: str, name: str) -> dict[str, str]:
    return {"hyper": DEPLOY, "kind": kind, "name": name}


def is_deploy(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get("hyper") == DEPLOY
        and isinstance(event.get("kind"), str)
        and isinstance(event.get("name"), str)
    )


# API Gateway events <-> ASGI ------------------------------------------------------------


def http_scope(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The ASGI HTTP scope of an API Gateway REST (v1) proxy event."""
    headers = _headers(event)
    first = {name: value for name, value in reversed(headers)}
    host = first.get("host", "localhost")
    scheme = first.get("x-forwarded-proto", "https")
    port = int(first.get("x-forwarded-port", "443" if scheme == "https" else "80"))
    source = (event.get("requestContext") or {}).get("identity") or {}
    path = event.get("path") or "/"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": str(event.get("httpMethod", "GET")).upper(),
        "scheme": scheme,
        "path": unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": _query_string(event).encode(),
        "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        "server": (host.split(":")[0], port),
        "client": (source.get("sourceIp") or "0.0.0.0", 0),
        "aws.event": event,
        "aws.context": context,
    }


def request_body(event: dict[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise HyperError("the request's body is not valid base64") from None
    return str(body).encode()


def proxy_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    """An API Gateway proxy response; a header given several times goes in multiValueHeaders."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        multi.setdefault(name, []).append(value)
        single[name] = value
    text = _is_text(single.get("content-type", ""))
    if text:
        try:
            shown, encoded = body.decode(), False
        except UnicodeDecodeError:
            text = False
    if not text:
        shown, encoded = base64.b64encode(body).decode(), True
    return {
        "statusCode": status,
        "headers": single,
        "multiValueHeaders": multi,
        "body": shown,
        "isBase64Encoded": encoded,
    }


def _headers(event: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    many = event.get("multiValueHeaders") or {}
    if many:
        for name, values in many.items():
            found.extend((name.lower(), str(v)) for v in values or [])
    else:
        single = event.get("headers") or {}
        found.extend((name.lower(), str(v)) for name, v in single.items() if v is not None)
    return found


def _query_string(event: dict[str, Any]) -> str:
    many = event.get("multiValueQueryStringParameters") or {}
    if many:
        pairs = [(name, v) for name, values in many.items() for v in values or []]
    else:
        pairs = list((event.get("queryStringParameters") or {}).items())
    return urlencode(pairs)


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith(_TEXT_TYPES) or kind.endswith(_TEXT_SUFFIXES)


# one container ------------------------------------------------------------------------


class _Container:
    """The app, its event loop and its lifespan, for as long as the container lives."""

    def __init__(self, built: LambdaApp) -> None:
        self.app = built.app
        self.tick_hook = built.tick
        self.deploy_hook = built.deploy
        self.loop = asyncio.new_event_loop()
        self.lifespan = _Lifespan(self.app)

    def startup(self) -> None:
        self.loop.run_until_complete(self.lifespan.startup())

    def close(self, *, shutdown: bool = True) -> None:
        try:
            if shutdown:
                self.loop.run_until_complete(self.lifespan.shutdown())
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            pending = asyncio.all_tasks(self.loop)
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            scope, body = http_scope(event, context), request_body(event)
        except (HyperError, UnicodeEncodeError, ValueError) as error:
            return _error(400, str(error))
        scope["state"] = dict(self.lifespan.state)
        return self.loop.run_until_complete(self._http(scope, body))

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

    async def _http(self, scope: Scope, body: bytes) -> dict[str, Any]:
        answered = asyncio.Event()
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        body_sent = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()  # the client is there until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    answered.set()

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("the host app failed on %s %s", scope["method"], scope["path"])
            if status is None:
                return _error(500, "the host failed; its log says why")
        finally:
            answered.set()
        if status is None:
            return _error(500, "the host app gave no answer")
        return proxy_response(status, headers, b"".join(chunks))


def _error(status: int, detail: str) -> dict[str, Any]:
    body = json.dumps({"detail": detail}).encode()
    return proxy_response(status, [(b"content-type", b"application/json")], body)


class _Lifespan:
    """The ASGI lifespan protocol: startup once, the app's lifespan task left waiting for
    shutdown. An app that does not speak it (raises at once) is run without."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None
        self.inbox: asyncio.Queue[Message] | None = None
        self.outbox: asyncio.Queue[Message] | None = None
        self.supported = True
        self.state: dict[str, Any] = {}  # what the app keeps from startup for its requests

    async def startup(self) -> None:
        self.inbox, self.outbox = asyncio.Queue(), asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self._answer()
        if answer["type"] == "lifespan.startup.failed":
            raise HyperError(f"the host app did not start: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        assert self.inbox is not None
        await self.inbox.put({"type": "lifespan.shutdown"})
        answer = await self._answer()
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("the host app's shutdown failed: %s", answer.get("message", ""))
        with contextlib.suppress(Exception):
            await self.task

    async def _answer(self) -> Message:
        """The app's next lifespan message, or a stand-in when it returned without one."""
        assert self.outbox is not None and self.task is not None
        getting = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([getting, self.task], return_when=asyncio.FIRST_COMPLETED)
        if getting.done():
            return getting.result()
        getting.cancel()
        if not self.outbox.empty():
            return self.outbox.get_nowait()
        return {"type": "lifespan.ended"}

    async def _run(self) -> None:
        assert self.inbox is not None and self.outbox is not None
        inbox, outbox = self.inbox, self.outbox
        spoke = False

        async def receive() -> Message:
            return await inbox.get()

        async def send(message: Message) -> None:
            nonlocal spoke
            spoke = True
            await outbox.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self.app(scope, receive, send)
        except Exception as error:
            if spoke:
                log.exception("the host app's lifespan failed")
                await outbox.put({"type": "lifespan.startup.failed", "message": str(error)})
            else:
                log.info("the host app does not speak ASGI lifespan; running without it")
                self.supported = False
                await outbox.put({"type": "lifespan.startup.complete"})
