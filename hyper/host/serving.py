"""How the daemon serves its app: the doors of a local host and the limits on them.

    a Unix socket   ``hyper.sock`` in the host's data folder (mode 0700, the socket
                    0600): the owner's commands and local workers come in here
    TCP + TLS       only when the host is created with --bind: for other machines,
                    with a certificate the host made itself (``tls/``), pinned by clients

Every connection gets ``header_timeout_seconds`` to send a request's head (of at
most MAX_HEAD_BYTES) and is closed after ``idle_timeout_seconds`` without one;
each door holds at most its cap of connections (beyond it, a new one is closed at
once), and a TCP connection must finish its TLS handshake in
``tls_handshake_seconds``. The file-descriptor limit is raised so that a full TCP
door never keeps the owner out of the Unix one. Threat: other users of this machine
and anyone on the network; neither can learn the key nor hold the doors shut.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import resource
import signal
import socket
import ssl
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hyper.transport import fingerprint, unix_address

log = logging.getLogger(__name__)

SOCKET_FILE = "hyper.sock"
TLS_DIR = "tls"
MAX_HEAD_BYTES = 64 * 1024  # a request line and headers beyond this close the connection
WANTED_FILES = 65536  # the daemon's open-file limit is raised toward this


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a connection cap, a deadline for each request's
    head and a bound on its size. Configure a subclass with `limits`."""

    cap = 1000
    head_seconds = 10.0
    silent: dict[GuardedProtocol, None]  # connections yet to send a byte, oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes: int | None = 0  # None once the current request's head is in

    @classmethod
    def limits(cls, cap: int, head_seconds: float) -> type[GuardedProtocol]:
        attributes = {"cap": cap, "head_seconds": head_seconds, "silent": {}}
        return type("Guarded", (cls,), attributes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.cap:
            # full: the oldest connection that never said a word makes room, else this one
            oldest = next(iter(self.silent), None)
            if oldest is None:
                transport.abort()
                return
            oldest.transport.abort()
            self.silent.pop(oldest, None)
        self.silent[self] = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.silent.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.silent.pop(self, None)
        if self._head_bytes is not None:
            self._arm()
        super().data_received(data)
        if self._head_bytes is not None:  # the head is not complete yet
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.transport.abort()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._head_bytes = 0  # the next head may come; the keep-alive timer runs meanwhile
        super().on_response_complete()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._head_bytes is not None and not self.transport.is_closing():
            self.transport.abort()  # no head at all since the connection came, or half of one


class Server(uvicorn.Server):
    """uvicorn's server, stopped by SIGTERM/SIGINT through the event loop, so that the
    daemon's own clean-up runs afterwards (uvicorn would raise the signal again and die
    of it). `on_stop` runs as the signal comes, before the server waits for the requests
    in flight."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        yield

    def _stop(self) -> None:
        self.should_exit = True
        self._on_stop()


def raise_file_limit() -> int:
    """Raise this process's open-file limit as far as allowed; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_FILES)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
    return soft


def bind_unix(data_dir: Path) -> socket.socket:
    """Listen on the socket in the data folder, which is made private first. The caller
    holds the daemon's lock, so a socket file found there is a dead daemon's."""
    os.chmod(data_dir, 0o700)
    path = data_dir / SOCKET_FILE
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        with unix_address(str(path)) as address:
            sock.bind(address)
    finally:
        os.umask(old_mask)
    os.chmod(path, 0o600)
    sock.listen(1024)
    return sock


def bind_tcp(address: str, port: int) -> socket.socket:
    """Listen on `port` when it is free (saved URLs stay valid), else on any free port."""
    for candidate in (port, 0) if port else (0,):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(1024)
        return sock
    raise OSError(f"cannot listen on {address}")


def certificate(data_dir: Path, address: str) -> tuple[Path, Path, str]:
    """The host's own TLS certificate and key (made once, kept in ``tls/``, 0600) and the
    certificate's SHA-256 fingerprint, which clients pin."""
    folder = data_dir / TLS_DIR
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not (cert.is_file() and key.is_file()):
        _make_certificate(folder, cert, key, address)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, fingerprint(der)


def _make_certificate(folder: Path, cert: Path, key: Path, address: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from hyper.config import write_private

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyper host")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    with contextlib.suppress(ValueError):
        names.append(x509.IPAddress(ipaddress.ip_address(address)))
    now = datetime.datetime.now(datetime.timezone.utc)
    made = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(private, hashes.SHA256())
    )
    folder.mkdir(mode=0o700, exist_ok=True)
    write_private(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    write_private(cert, made.public_bytes(serialization.Encoding.PEM).decode())


class TlsDoor:
    """The TCP door: accepts connections itself, so that it can close the ones beyond its
    cap before they cost a TLS handshake, and hands the rest to uvicorn's protocol."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        protocol: Any,
        connections: set[Any],
        *,
        cap: int,
        handshake_seconds: float,
    ) -> None:
        self.sock = sock
        self.context = context
        self.protocol = protocol  # a factory of connected protocols
        self.cap = cap
        self.handshake_seconds = handshake_seconds
        self.handshaking = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = connections  # the protocols connected (they add themselves)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as error:  # out of descriptors, say: the Unix door still works
                log.warning("TCP door: cannot accept: %s", error)
                await asyncio.sleep(0.1)
                continue
            if self.handshaking + len(self.connections) >= self.cap:
                conn.close()
                continue
            self.handshaking += 1
            task = loop.create_task(self._handshake(conn))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)

    async def _handshake(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                self.protocol,
                conn,
                ssl=self.context,
                ssl_handshake_timeout=self.handshake_seconds,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            conn.close()
            return
        finally:
            self.handshaking -= 1


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
