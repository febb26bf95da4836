"""Servers that squat where a client would connect, and record what they are sent."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path


class Recorder:
    """Accepts connections on `sock` in a thread and keeps every byte it is sent."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext | None = None) -> None:
        self.sock = sock
        self.context = context
        self.received = b""
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(3)
            try:
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
                while data := conn.recv(65536):
                    self.received += data
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@contextlib.contextmanager
def tcp_squatter(port: int, *, tls: bool) -> Iterator[Recorder]:
    """A server on 127.0.0.1:`port`: plain, or TLS with a certificate of its own."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = _self_signed(Path(os.environ.get("TMPDIR", "/tmp")) / f"squat-{port}")
        context.load_cert_chain(cert, key)
    recorder = Recorder(sock, context)
    try:
        yield recorder
    finally:
        recorder.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyper host")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


# Run as root: binds the socket, becomes `nobody`, then listens (the credentials a client
# reads with SO_PEERCRED are the listener's at listen()), and records what comes.
OTHER_USER_SQUATTER = r"""
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
sink = open(out, "wb", buffering=0)
sock = socket.socket(socket.AF_UNIX)
os.chdir(os.path.dirname(path))
sock.bind(os.path.basename(path))
os.setgid(65534); os.setuid(65534)
sock.listen(16)
print("ready", flush=True)
sock.settimeout(20)
while True:
    try:
        conn, _ = sock.accept()
    except OSError:
        break
    conn.settimeout(3)
    try:
        while data := conn.recv(65536):
            sink.write(data)
    except OSError:
        pass
    conn.close()
"""


@contextlib.contextmanager
def unix_squatter_as_other_user(path: Path, record: Path) -> Iterator[subprocess.Popen[str]]:
    """A process of user `nobody` listening on the Unix socket `path` (needs root)."""
    child = subprocess.Popen(
        [sys.executable, "-c", OTHER_USER_SQUATTER, str(path), str(record)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
