"""The host client: the one way every command and worker talks to a host.

Speaks HTTP/1.1 over a plain socket (TLS for https URLs) instead of using
http.client or httpx: a submit is one process start plus one request, and
those libraries cost more to import than the request takes. Retries with
back-off and jitter on connection errors, 429 and 503; every failure becomes
one exception from ``hyper.errors`` whose message tells the user what to do.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from hyper.errors import (
    AuthError,
    Conflict,
    HostFailure,
    HostRejected,
    HostUnreachable,
    HyperError,
    NotFound,
    UsageError,
)
from hyper.jobs import MAX_FILE_BYTES

RETRY_STATUSES = frozenset({429, 503})
# what API Gateway answers when Lambda is throttled (500), fails (502) or is too slow
# (504): a request that is safe to repeat (a GET) is asked again
GATEWAY_ERRORS = frozenset({500, 502, 504})
IDLE_RECONNECT_SECONDS = 20.0  # below the server's keep-alive timeout (30 s)


class Transport(Protocol):
    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class RequestNotSent(OSError):
    """The connection failed before any byte of the request left: safe to retry any method."""


class SocketTransport:
    """A keep-alive HTTP/1.1 connection to one server."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.hostname = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._last_used = 0.0

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.hostname, self.port), timeout=self.timeout)
        except OSError as exc:
            raise RequestNotSent(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.hostname)
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer = b""

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        head = [f"{method} {self.base}{path} HTTP/1.1", f"Host: {self.hostname}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body) if body else 0}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        if self._sock is not None and time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS:
            self.close()  # the server may be closing it now: never send on it
        reused = self._sock is not None
        if self._sock is None:
            self._sock = self._connect()
        sent = False
        try:
            self._sock.sendall(payload)
            sent = True
            return self._read_response()
        except OSError as exc:
            self.close()
            # a kept-alive connection the server had closed: once more on a fresh one, unless
            # the request may have been acted on (a POST that was sent is never repeated)
            if reused and not isinstance(exc, TimeoutError) and (method == "GET" or not sent):
                self._sock = self._connect()
                try:
                    self._sock.sendall(payload)
                    return self._read_response()
                except OSError:
                    self.close()
                    raise
            raise
        finally:
            self._last_used = time.monotonic()

    def _read_until(self, marker: bytes) -> bytes:
        assert self._sock is not None
        while marker not in self._buffer:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionResetError("the host closed the connection")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(marker)
        return line

    def _read_exactly(self, size: int) -> bytes:
        assert self._sock is not None
        while len(self._buffer) < size:
            data = self._sock.recv(max(65536, size - len(self._buffer)))
            if not data:
                raise ConnectionResetError("the host closed the connection")
            self._buffer += data
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _read_response(self) -> tuple[int, bytes]:
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                body += self._read_exactly(size)
                self._read_until(b"\r\n")
                if size == 0:
                    break
        else:
            body = self._read_exactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body


def _file_path(key: str) -> str:
    return f"/files/{quote(key)}"  # slashes stay: they are part of the key


def _detail(status: int, body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail", "")
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:300] or f"HTTP {status}"
    if isinstance(detail, list) and detail:  # request validation errors
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return str(detail) or f"HTTP {status}"


class HostClient:
    """Calls one host's API. `reconnect` is asked for a fresh URL when the host is down
    (for a local host it starts the daemon); it returns None when it cannot help."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        host_name: str = "",
        timeout: float = 30.0,
        retries: int = 5,
        transport: Transport | None = None,
        reconnect: Callable[[], str | None] | None = None,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
    ) -> None:
        self.url = url
        self.host_name = host_name or url
        self._key = api_key
        self._timeout = timeout
        self._retries = retries
        self._retry_statuses = retry_statuses
        self._transport = transport or SocketTransport(url, timeout)
        self._reconnect = reconnect

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        if query:
            items = {k: v for k, v in query.items() if v is not None}
            if items:
                path = f"{path}?{urlencode(items, doseq=True)}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        payload = self._exchange(method, path, data, headers, repeatable=method == "GET")
        return json.loads(payload) if payload else None

    def _exchange(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        repeatable: bool,
    ) -> bytes:
        """Send a request (with retries) and return the body of its 2xx answer; any other
        answer raises. A `repeatable` request may be sent again even after it may have
        reached the host."""
        headers = {"x-api-key": self._key, **headers}
        attempt = 0
        while True:
            try:
                status, payload = self._transport.request(method, path, data, headers)
            except OSError as exc:
                not_sent = isinstance(exc, RequestNotSent)
                if not_sent and attempt == 0 and self._reconnect is not None:
                    new_url = self._reconnect()
                    if new_url:
                        self._switch(new_url)
                        attempt += 1
                        continue
                # a request that may have reached the host is repeated only when it is safe
                if (not_sent or repeatable) and attempt < self._retries:
                    self._pause(attempt)
                    attempt += 1
                    continue
                raise HostUnreachable(
                    f"host {self.host_name!r} is unreachable at {self.url} ({exc}); "
                    "check it with 'hyper hosts host-status'"
                ) from exc
            again = status in self._retry_statuses or (repeatable and status in GATEWAY_ERRORS)
            if again and attempt < self._retries:
                self._pause(attempt)
                attempt += 1
                continue
            if 200 <= status < 300:
                return payload
            raise self._error(status, payload)

    def _switch(self, url: str) -> None:
        self._transport.close()
        self.url = url
        self._transport = SocketTransport(url, self._timeout)

    @staticmethod
    def _pause(attempt: int) -> None:
        jitter = (time.perf_counter_ns() % 1000) / 1000  # enough randomness to spread clients
        time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + jitter))

    def _error(self, status: int, payload: bytes) -> HyperError:
        message = _detail(status, payload)
        if status in (401, 403):
            return AuthError(f"host {self.host_name!r} refused the API key ({message})")
        if status == 404:
            return NotFound(message)
        if status == 409:
            return Conflict(message)
        if 400 <= status < 500:
            return HostRejected(message)
        if status == 503:
            return HostFailure(f"host {self.host_name!r} is unavailable: {message}")
        return HostFailure(f"host {self.host_name!r} failed: {message}")

    # jobs -----------------------------------------------------------------

    def submit(self, jobs: list[dict[str, Any]]) -> list[int]:
        return list(self.call("POST", "/jobs", {"jobs": jobs})["ids"])

    def get_job(self, job_id: int, *, wait: float | None = None) -> dict[str, Any]:
        return dict(self.call("GET", f"/jobs/{int(job_id)}", query={"wait": wait}))

    def list_jobs(self, **filters: Any) -> dict[str, Any]:
        return dict(self.call("GET", "/jobs", query=filters))

    def iter_jobs(
        self, *, limit: int | None = None, after: int | None = None, **filters: Any
    ) -> Iterable[dict[str, Any]]:
        """Every matching job after id `after`, page by page, up to `limit` (None: all)."""
        seen = 0
        while True:
            page_size = 1000 if limit is None else min(1000, limit - seen)
            if page_size <= 0:
                return
            page = self.list_jobs(after=after, limit=page_size, **filters)
            for job in page["jobs"]:
                yield job
                seen += 1
            after = page.get("next")
            if not after:
                return

    def count_jobs(self, **filters: Any) -> dict[str, int]:
        return dict(self.call("GET", "/jobs/counts", query=filters))

    def change(self, action: str, selection: dict[str, Any]) -> dict[str, Any]:
        """Cancel, hold or release the selected jobs, in one request however many."""
        if action not in ("cancel", "hold", "release"):
            raise ValueError(f"unknown action {action!r}")
        return dict(self.call("POST", f"/jobs/{action}", selection))

    def read_log(
        self, job_id: int, *, kinds: list[str], after: int = 0, wait: float | None = None
    ) -> dict[str, Any]:
        query = {"kind": kinds, "after": after, "wait": wait}
        return dict(self.call("GET", f"/jobs/{int(job_id)}/log", query=query))

    # files ----------------------------------------------------------------
    # (putting and deleting a key twice does what doing it once does: they may be repeated)

    def put_file(self, key: str, data: bytes) -> None:
        if len(data) > MAX_FILE_BYTES:
            raise UsageError(
                f"file {key!r} is {len(data)} bytes; the host keeps files of at most"
                f" {MAX_FILE_BYTES // 2**20} MiB"
            )
        headers = {"Content-Type": "application/octet-stream"}
        self._exchange("PUT", _file_path(key), data, headers, repeatable=True)

    def get_file(self, key: str) -> bytes:
        """The file's bytes; NotFound when the host has no such file."""
        headers = {"Accept": "application/octet-stream"}
        return self._exchange("GET", _file_path(key), None, headers, repeatable=True)

    def delete_files(self, key: str) -> None:
        """Delete the file `key` and every file under `key/`."""
        self._exchange("DELETE", _file_path(key), None, {}, repeatable=True)

    # resources ------------------------------------------------------------

    def list_resources(self, kind: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/resources/{quote(kind)}")["items"])

    # workers --------------------------------------------------------------

    def claim(
        self, worker_id: str, *, queue: str, definition: str, limit: int, wait: float
    ) -> list[dict[str, Any]]:
        body = {"queue": queue, "definition": definition, "limit": limit, "wait": wait}
        return list(self.call("POST", f"/workers/{quote(worker_id)}/claim", body)["jobs"])

    def progress(self, worker_id: str, job_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("POST", f"/workers/{quote(worker_id)}/jobs/{job_id}/progress", body))

    def worker_exit(self, worker_id: str) -> None:
        self.call("POST", f"/workers/{quote(worker_id)}/exit", {})
