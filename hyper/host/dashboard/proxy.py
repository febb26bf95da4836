"""The dashboard on loopback, for a host the browser cannot reach (a local host behind
its private socket): ``hyper dashboard`` serves it on 127.0.0.1 for as long as it runs.

It stands between the browser and the host and adds no power of its own:

- ``/dashboard/login?token=...`` trades the token with the host (an API call, with the
  key) for a session, which it sets as its cookie (HttpOnly, SameSite=Strict);
- every other ``/dashboard/...`` request goes to the host as it came, with the browser's
  session cookie and without the key: the host checks the session as it does for a
  browser of its own. The routes that need the key (tokens, sessions) are never passed on;
- requests naming another host (``Host:`` not this address) are refused, so a page of
  another site cannot reach it by rebinding a name to 127.0.0.1.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hyper.client import HostClient
from hyper.errors import AuthError, HyperError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PASSED = re.compile(r"/dashboard(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?")
KEY_ONLY = ("/dashboard/tokens", "/dashboard/session")
MAX_BODY = 64 * 1024
TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".txt": b"text/plain; charset=utf-8",
}
PAGE_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
     b" img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]  # fmt: skip
PASSED_HEADERS = ("content-type", "hx-request", "hx-current-url", "hx-target", "hx-trigger")


class LoopbackDashboard:
    """An ASGI app passing dashboard requests to the host `client` talks to."""

    def __init__(self, client: HostClient) -> None:
        self.client = client
        self.lock = threading.Lock()  # one connection to the host: one request at a time
        self.address = ""  # host:port the browser uses, once bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if self.address and headers.get("host") != self.address:
            await _answer(send, 421, b"this server answers for its own address only\n")
        elif path in ("", "/"):
            await _answer(send, 303, b"", [(b"location", b"/dashboard/")])
        elif path == "/dashboard/login":
            await self._log_in(scope, send)
        elif not PASSED.fullmatch(path) or path.rstrip("/") in KEY_ONLY:
            await _answer(send, 404, b"not found\n")
        elif scope["method"] not in ("GET", "POST"):
            await _answer(send, 405, b"method not allowed\n")
        else:
            body = await _body(receive)
            if body is None:
                await _answer(send, 413, b"too large\n")
                return
            await self._pass(scope, headers, body, send)

    async def _log_in(self, scope: Scope, send: Send) -> None:
        from urllib.parse import parse_qs

        token = parse_qs(scope["query_string"].decode("latin-1")).get("token", [""])[0]
        try:
            session = await _in_thread(self._locked(lambda: self.client.dashboard_session(token)))
        except AuthError:
            page = (
                b"<!doctype html><title>hyper: log in</title><h1>Log in first</h1><p>This"
                b" login link has expired or was used. Run <code>hyper dashboard</code>"
                b" again for a new one.</p>"
            )
            await _answer(send, 401, page, [(b"content-type", b"text/html; charset=utf-8")])
            return
        except HyperError as error:
            await _answer(send, 502, f"{error}\n".encode())
            return
        cookie = (
            f"{session['cookie']}={session['value']}; Max-Age={int(session['max_age'])};"
            " Path=/; HttpOnly; SameSite=Strict"
        )
        await _answer(send, 303, b"", [(b"location", b"./"), (b"set-cookie", cookie.encode())])

    async def _pass(self, scope: Scope, headers: dict[str, str], body: bytes, send: Send) -> None:
        path = scope["path"]
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        sent = {k: headers[k] for k in PASSED_HEADERS if k in headers}
        # only the sessions of hyper hosts travel on, not other cookies of 127.0.0.1
        cookies = [c.strip() for c in headers.get("cookie", "").split(";")]
        ours = "; ".join(c for c in cookies if c.startswith("hyper_"))
        if ours:
            sent["Cookie"] = ours
        if scope["method"] == "POST" and "content-type" not in sent:
            sent["content-type"] = "application/x-www-form-urlencoded"
        call = self._locked(lambda: self.client.relay(scope["method"], path, body or None, sent))
        try:
            status, answer = await _in_thread(call)
        except HyperError as error:
            await _answer(send, 502, f"{error}\n".encode())
            return
        kind = _type(scope["path"], status, answer)
        await _answer(send, status, answer, [(b"content-type", kind)])

    def _locked(self, call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with self.lock:
                return call()

        return run


def _type(path: str, status: int, body: bytes) -> bytes:
    """The answer's type: the file's own for a static file or the chart's data, else
    what the body is (a page, or an error's JSON)."""
    if status == 200:
        for suffix, kind in TYPES.items():
            if path.endswith(suffix):
                return kind
    if body.startswith(b"{"):
        return b"application/json"
    if body.lstrip().startswith(b"<"):
        return b"text/html; charset=utf-8"
    return b"text/plain; charset=utf-8"


async def _in_thread(call: Callable[[], Any]) -> Any:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(call)


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    sent = [*PAGE_HEADERS, *(headers or [])]
    if not any(name == b"content-type" for name, _ in sent):
        sent.append((b"content-type", b"text/plain; charset=utf-8"))
    sent.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class LoopbackServer:
    """The loopback dashboard served by uvicorn on 127.0.0.1 (an ephemeral port unless
    `port`), in a thread of its own: `start()`, then `url`, then `stop()`."""

    def __init__(self, client: HostClient, port: int = 0) -> None:
        import socket

        import uvicorn

        self.app = LoopbackDashboard(client)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.port = self.socket.getsockname()[1]
        self.app.address = f"127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.app.address}"

    def start(self, timeout: float = 30.0) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise HyperError("the dashboard's loopback server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
