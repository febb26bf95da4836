"""What every request of the host's API passes before its route: the key is checked
first (outermost), then the size of the body; and JSON bodies are read strictly (only
what an answer can show and SQLite can store)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from hyper.errors import is_utf8
from hyper.host.auth import Keys
from hyper.host.dashboard import router as dashboard
from hyper.key_headers import GATEWAY_HEADER as GATEWAY
from hyper.key_headers import KEY_HEADER as KEY
from hyper.key_headers import given_key
from hyper.worker_tokens import HEADER

TOKEN_HEADER = HEADER.encode()
GATEWAY_HEADER, KEY_HEADER = GATEWAY.encode(), KEY.encode()


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"a request body is at most {limit // 2**20} MiB; send it in parts")


class BodyLimitMiddleware:
    """Refuses (413) a request body beyond `limit` bytes: at once when its declared length
    says so, else as soon as that much has come. File uploads have their own limit
    (MAX_FILE_BYTES), checked as they are spooled to disk."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/files/"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse({"detail": BodyTooLarge(self.limit).detail}, status_code=413)
        await response(scope, receive, send)


class ApiKeyMiddleware:
    """Refuses any request without the right key before anything reads its body; the
    dashboard's pages check their own login (a session cookie) instead."""

    def __init__(self, app: Any, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not _dashboard_path(scope["path"]):
            headers = dict(scope["headers"])
            given = given_key(headers.get(KEY_HEADER), headers.get(GATEWAY_HEADER)) or b""
            token = headers.get(TOKEN_HEADER, b"")
            if not self.keys.allows(scope["method"], scope["path"], given, token):
                response = JSONResponse({"detail": "missing or wrong x-api-key"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _dashboard_path(path: str) -> bool:
    return path == dashboard.PREFIX or path.startswith(dashboard.PREFIX + "/")


class JsonRequest(Request):
    """A request whose JSON body holds only what an answer can show and SQLite can store."""

    async def json(self) -> Any:
        body = json.loads(await self.body(), parse_constant=_not_json)
        where = _not_text(body)
        if where is not None:
            # an escaped half of a UTF-16 pair ("\udcff") decodes to a str UTF-8 cannot encode
            raise _invalid_body(where, "not Unicode text: it holds a lone surrogate")
        return body


class JsonRoute(APIRoute):
    """Routes that read their JSON bodies with JsonRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return checked


def _not_json(constant: str) -> NoReturn:
    """Python reads NaN and Infinity, which are not JSON, and no answer could show them."""
    raise _invalid_body((), f"{constant} is not a JSON number")


def _not_text(value: Any, where: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where in a decoded JSON value a string cannot be encoded as UTF-8, if anywhere."""
    if isinstance(value, str):
        return None if value.isascii() or is_utf8(value) else where
    if isinstance(value, dict):
        for key, item in value.items():
            if not is_utf8(key):
                return where  # the key itself could not be shown
            found = _not_text(item, (*where, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for n, item in enumerate(value):
            found = _not_text(item, (*where, n))
            if found is not None:
                return found
    return None


def _invalid_body(where: tuple[str | int, ...], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    error = {"type": "value_error", "loc": ["body", *where], "msg": message}
    return HTTPException(status_code=422, detail=[error])
