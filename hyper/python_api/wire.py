"""How a pool and its workers talk over TCP: frames of an 8-byte length and the bytes.

Before anything else each side proves that it holds the pool's secret without sending
it (HMAC-SHA256 over both sides' fresh challenges), so the pool runs no stranger's
worker and a worker takes calls from no stranger. After that the pool sends calls
(an empty frame releases the worker) and the worker answers each with its outcome.
Frames are not encrypted: keep a pool on a network you trust.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
from typing import Any

HEADER = struct.Struct("!Q")
CHALLENGE_BYTES = 32
PROOF_BYTES = hashlib.sha256().digest_size
HELLO_LIMIT = 64 * 1024  # what a peer may send before it proved itself
RELEASE = b""  # the pool's last frame to a worker


class HandshakeFailed(ConnectionError):
    """The peer does not hold the pool's secret (or does not speak this protocol)."""


def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(HEADER.pack(len(data)) + data)


def _exactly(sock: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionResetError("the other side closed the connection")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def receive_frame(sock: socket.socket, limit: int | None = None) -> bytes:
    (size,) = HEADER.unpack(_exactly(sock, HEADER.size))
    if limit is not None and size > limit:
        raise HandshakeFailed(f"a frame of {size} bytes where at most {limit} were expected")
    return _exactly(sock, size)


def _proof(secret: bytes, role: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, role + b"".join(parts), hashlib.sha256).digest()


def accept_worker(sock: socket.socket, secret: bytes) -> dict[str, Any]:
    """The pool's side: the worker's hello once it has proved itself, then our proof."""
    ours = os.urandom(CHALLENGE_BYTES)
    send_frame(sock, ours)
    answer = receive_frame(sock, HELLO_LIMIT)
    theirs = answer[:CHALLENGE_BYTES]
    proof = answer[CHALLENGE_BYTES : CHALLENGE_BYTES + PROOF_BYTES]
    hello = answer[CHALLENGE_BYTES + PROOF_BYTES :]
    if len(theirs) != CHALLENGE_BYTES or not hmac.compare_digest(
        proof, _proof(secret, b"worker", ours, theirs, hello)
    ):
        raise HandshakeFailed("the worker did not prove it holds the pool's secret")
    send_frame(sock, _proof(secret, b"pool", theirs, ours))
    found = json.loads(hello)
    if not isinstance(found, dict):
        raise HandshakeFailed("the worker's hello is not a JSON object")
    return found


def join_pool(sock: socket.socket, secret: bytes, hello: dict[str, Any]) -> None:
    """The worker's side: say who we are, with proof, and check the pool's proof."""
    theirs = receive_frame(sock, CHALLENGE_BYTES)
    if len(theirs) != CHALLENGE_BYTES:
        raise HandshakeFailed("the pool's challenge has the wrong size")
    ours = os.urandom(CHALLENGE_BYTES)
    text = json.dumps(hello).encode()
    send_frame(sock, ours + _proof(secret, b"worker", theirs, ours, text) + text)
    proof = receive_frame(sock, PROOF_BYTES)
    if not hmac.compare_digest(proof, _proof(secret, b"pool", ours, theirs)):
        raise HandshakeFailed("the pool did not prove it holds the secret")


def keep_alive(sock: socket.socket, *, idle: int = 30, interval: int = 10, probes: int = 3) -> None:
    """A connection with no timeout that still ends when its peer's machine vanishes
    without a word: TCP keepalive probes after `idle` s of silence (where the system
    lets us tune them), so a call waiting on it fails rather than waits forever."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                          ("TCP_KEEPCNT", probes)):  # fmt: skip
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
