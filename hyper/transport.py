"""How the client reaches a host, and how the host proves who it is before the key is sent:
Where a host is, and how it proves who it is before the key is sent:

    unix:/path/to/hyper.sock      a local host: a Unix socket in its owner's private data
                                  folder; the client checks that the folder is not open to
                                  other users and that the process listening runs as this
                                  user (SO_PEERCRED)
    https://addr:port#sha256=HEX  a host serving other machines: TLS with the certificate
                                  the host made itself, pinned by its SHA-256 fingerprint
    https://name                  a host with a certificate of a public authority (aws)
    http://addr:port              plain HTTP: only for hosts you reach through your own
                                  tunnel or proxy

The key never leaves before the check passes (``HostUntrusted`` otherwise).

Speaks HTTP/1.1 over a plain socket (TLS for https URLs) instead of using
http.client or httpx: a submit is one process start plus one request, and
those libraries cost more to import than the request takes. Retries and what
an answer means are the client's (hyper/client.py).
"""

from __future__ import annotations

# a local host is reached through _socket: the socket module's own import (its enums,
# selectors) costs a submit about as much as its request; TCP hosts import it to connect
import _socket
import _thread  # threading.Lock and threading.local themselves: threading costs 1 ms
import contextlib
import os
import stat
import struct
import time
import weakref
from collections.abc import Iterator

from hyper.errors import HostUntrusted

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a submit's start 3 ms
if TYPE_CHECKING:
    from typing import Any

IDLE_RECONNECT_SECONDS = 20.0  # below the server's keep-alive timeout (30 s)
SMALL_BODY_BYTES = 65536  # a body up to this size goes in one send with its request's head
UNIX_SCHEME = "unix"
PIN_PREFIX = "sha256="
MAX_SUN_PATH = 100  # AF_UNIX paths are at most 107 bytes; longer ones go through /proc


class RequestNotSent(OSError):
    """The connection failed before any byte of the request left: safe to retry any method."""


# what a URL's path and query carry as they are (RFC 3986's unreserved characters)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """urllib.parse.quote; names and ids (most requests) need no escapes, and no
    urllib.parse (a few milliseconds of a command's start)."""
    if _plain(text.translate({ord(c): "_" for c in safe})):
        return text
    from urllib.parse import quote as escaped

    return escaped(text, safe=safe)


def urlencode(query: dict[str, Any]) -> str:
    """urllib.parse.urlencode(query, doseq=True); without urllib.parse when every name
    and value is plain text or a number, or a list of them, that needs no escapes."""
    pairs = [
        (key, item)
        for key, value in query.items()
        for item in (value if type(value) in (list, tuple) else (value,))
    ]
    if all(type(item) in _SCALARS and _plain(f"{key}{item}") for key, item in pairs):
        return "&".join(f"{key}={item}" for key, item in pairs)
    from urllib.parse import urlencode as encoded

    return encoded(query, doseq=True)


_SCALARS = (str, int, float, bool)  # what urlencode writes as str(value)


def _plain(text: str) -> bool:
    return _UNRESERVED.issuperset(text)


def unix_socket_path(url: str) -> str | None:
    """The socket's path of a plain `unix:/path` URL (the shell tools' local host), read
    without urllib.parse; None for any other URL."""
    path = url[len(UNIX_SCHEME) + 1 :]
    plain = path.isprintable() and "#" not in path and "?" not in path
    if url.startswith(f"{UNIX_SCHEME}:/") and not path.startswith("//") and plain:
        return path
    return None


def unix_url(path: os.PathLike[str] | str) -> str:
    """The URL of a host listening on the Unix socket at `path`."""
    return f"{UNIX_SCHEME}:{os.fspath(path)}"


def is_local_url(url: str) -> bool:
    """Whether a URL names a host on this machine only (a Unix socket)."""
    return url.startswith(f"{UNIX_SCHEME}:")


def pinned_url(url: str, fingerprint: str) -> str:
    """`url` with the SHA-256 fingerprint of the certificate its server must show."""
    return f"{url.split('#', 1)[0]}#{PIN_PREFIX}{fingerprint}"


def fingerprint(der: bytes) -> str:
    import hashlib  # only for TLS hosts: loading OpenSSL's hashes costs a local submit 2 ms

    return hashlib.sha256(der).hexdigest()


@contextlib.contextmanager
def unix_address(path: str) -> Iterator[str]:
    """An address for `path` that fits in sun_path: itself, or its name under
    /proc/self/fd/N for a folder held open meanwhile (Linux)."""
    if len(os.fsencode(path)) <= MAX_SUN_PATH:
        yield path
        return
    folder, name = os.path.split(path)
    fd = os.open(folder or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def private_folder_problem(folder: int | str, shown: str) -> str | None:
    """Why another user could put a socket in `folder` (a path or an open descriptor,
    named `shown`), or None when only we can."""
    try:
        info = os.stat(folder)
    except OSError as error:
        return f"{shown}: {error.strerror}"
    if info.st_uid != os.getuid():
        return f"{shown} belongs to user {info.st_uid}, not to you"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{shown} is writable by other users; run: chmod 700 {shown}"
    return None


class _Connection:
    """One thread's keep-alive connection, closed when the thread is gone."""

    def __init__(self) -> None:
        self.sock: _socket.socket | None = None
        self.buffer = b""
        self.last_used = 0.0

    def close(self) -> None:
        sock, self.sock, self.buffer = self.sock, None, b""
        if sock is not None:
            sock.close()

    def __del__(self) -> None:
        self.close()


class SocketTransport:
    """A keep-alive HTTP/1.1 connection to one server."""

    def __init__(self, url: str, timeout: float) -> None:
        self.socket_path: str | None = None
        self.pin: str | None = None
        self.tls, self.hostname, self.port, self.base = False, "localhost", 0, ""
        local = unix_socket_path(url)
        if local is not None:
            self.socket_path = local
        else:
            self._read_url(url)
        self.timeout = timeout
        self._folder: int | None = None  # the socket's folder, once connected (unix:)
        self._folder_lock = _thread.allocate_lock()  # threads connecting at once open it once
        # a connection per thread: a worker's threads (its claims, its jobs' leases and
        # files) share one client, and none waits for another's request
        self._local = _thread._local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._connections_lock = _thread.allocate_lock()

    def _read_url(self, url: str) -> None:
        """Where any other URL than a plain unix:/path points (see the module's docstring)."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme == UNIX_SCHEME:
            if not parts.path.startswith("/"):
                raise ValueError(f"not a unix:/absolute/path URL: {url!r}")
            self.socket_path = parts.path
        else:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            self.tls = parts.scheme == "https"
            self.hostname = parts.hostname
            self.port = parts.port or (443 if self.tls else 80)
            self.base = parts.path.rstrip("/")
            if parts.fragment.startswith(PIN_PREFIX):
                self.pin = parts.fragment[len(PIN_PREFIX) :].lower()

    @property
    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = _Connection()
            with self._connections_lock:
                self._connections.add(connection)
        return connection

    @property
    def _sock(self) -> _socket.socket | None:
        return self._connection.sock

    @_sock.setter
    def _sock(self, sock: _socket.socket | None) -> None:
        self._connection.sock = sock

    @property
    def _buffer(self) -> bytes:
        return self._connection.buffer

    @_buffer.setter
    def _buffer(self, data: bytes) -> None:
        self._connection.buffer = data

    @property
    def _last_used(self) -> float:
        return self._connection.last_used

    @_last_used.setter
    def _last_used(self, when: float) -> None:
        self._connection.last_used = when

    def _connect(self) -> _socket.socket:
        if self.socket_path is not None:
            return self._connect_unix(self.socket_path)
        import socket

        try:
            sock = socket.create_connection((self.hostname, self.port), timeout=self.timeout)
        except OSError as exc:
            raise RequestNotSent(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            import ssl

            try:
                if self.pin is None:
                    context = ssl.create_default_context()
                    return context.wrap_socket(sock, server_hostname=self.hostname)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False  # the pin names the one certificate to accept
                context.verify_mode = ssl.CERT_NONE
                tls = context.wrap_socket(sock, server_hostname=self.hostname)
            except ssl.SSLError as exc:
                sock.close()
                raise HostUntrusted(
                    f"{self.hostname}:{self.port} did not complete a TLS handshake ({exc.reason});"
                    " the API key was not sent"
                ) from None
            except OSError as exc:
                sock.close()
                raise RequestNotSent(str(exc)) from exc
            import hmac

            shown = fingerprint(tls.getpeercert(binary_form=True) or b"")
            if not hmac.compare_digest(shown, self.pin):
                tls.close()
                raise HostUntrusted(
                    f"{self.hostname}:{self.port} showed a certificate that is not the host's"
                    f" (sha256 {shown[:16]}..., pinned {self.pin[:16]}...); the API key was not"
                    " sent"
                )
            return tls
        return sock

    def _connect_unix(self, path: str) -> _socket.socket:
        """Connect to a local host's socket, and make sure it is ours before anything is
        sent. The socket is reached through its folder, held open from the first connection
        on: a host whose data folder is moved meanwhile is still found."""
        with self._folder_lock:
            return self._connect_unix_folder(path)

    def _connect_unix_folder(self, path: str) -> _socket.socket:
        folder, name = os.path.split(path)
        if self._folder is None:
            try:
                self._folder = os.open(folder, os.O_PATH | os.O_DIRECTORY)
            except OSError as exc:
                raise RequestNotSent(f"{folder}: {exc.strerror}") from exc
        problem = private_folder_problem(self._folder, folder)
        if problem is not None:
            raise HostUntrusted(f"the host's socket folder is not private: {problem}")
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(f"/proc/self/fd/{self._folder}/{name}")
        except OSError as exc:
            sock.close()
            if os.stat(self._folder).st_nlink == 0:  # deleted (and made again, maybe)
                os.close(self._folder)
                self._folder = None
            raise RequestNotSent(str(exc)) from exc
        _pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
        )
        if uid != os.getuid():
            sock.close()
            raise HostUntrusted(
                f"the process listening on {path} runs as user {uid}, not as you; the API key"
                " was not sent"
            )
        return sock

    def __del__(self) -> None:
        if getattr(self, "_folder", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._folder)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

    def _drop(self) -> None:
        """Close this thread's connection."""
        self._connection.close()

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        try:
            return self._request(method, path, body, headers)
        except BaseException:
            # interrupted (a signal) or failed mid-request: its answer may still come,
            # and would be read as the next request's
            self._drop()
            raise

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        head = [f"{method} {self.base}{path} HTTP/1.1", f"Host: {self.host_header}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body) if body else 0}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode()
        if body and len(body) <= SMALL_BODY_BYTES:
            payload, body = payload + body, None  # one send: one packet for most requests
        if self._sock is not None and time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS:
            self._drop()  # the server may be closing it now: never send on it
        reused = self._sock is not None
        if self._sock is None:
            self._sock = self._connect()
        sent = False
        try:
            try:
                self._send(payload, body)
            except (BrokenPipeError, ConnectionResetError):
                # the host may have refused the request before reading it all (413): its
                # answer is there to read
                answer = self._answer_sent_early()
                if answer is None:
                    raise
                return answer
            sent = True
            return self._read_response()
        except OSError as exc:
            self._drop()
            # a kept-alive connection the server had closed: once more on a fresh one, unless
            # the request may have been acted on (a POST that was sent is never repeated)
            if reused and not isinstance(exc, TimeoutError) and (method == "GET" or not sent):
                self._sock = self._connect()
                try:
                    self._send(payload, body)
                    return self._read_response()
                except OSError:
                    self._drop()
                    raise
            raise
        finally:
            self._last_used = time.monotonic()

    def _send(self, head: bytes, body: bytes | None) -> None:
        """A request's head, and a big body after it as it is (never copied: a file sent
        by link may be gigabytes)."""
        assert self._sock is not None
        self._sock.sendall(head)
        if body:
            self._sock.sendall(body)

    @property
    def host_header(self) -> str:
        """The Host a request names: a default port is left out, as every client does (a
        presigned URL's signature covers the Host it was made for)."""
        default = 443 if self.tls else 80
        return f"{self.hostname}:{self.port}" if self.port not in (0, default) else self.hostname

    def _answer_sent_early(self) -> tuple[int, bytes] | None:
        """An answer the server wrote before it closed a request it would not read."""
        try:
            status, body = self._read_response()
        except (OSError, ValueError, IndexError):
            return None
        self._drop()
        return (status, body) if status >= 400 else None

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
            self._drop()
        return status, body
