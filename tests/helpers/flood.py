"""Many connections that never say a word, held open by helper processes (each process
may hold fewer files than the flood needs)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

FLOODER = r"""
import errno, resource, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(count):
    sock = socket.socket()
    sock.setblocking(False)
    code = sock.connect_ex(("127.0.0.1", port))
    if code not in (0, errno.EINPROGRESS):
        sys.exit(f"connect: {code}")
    held.append(sock)
print("ready", len(held), flush=True)
sys.stdin.read()  # until the test lets go
"""


@contextlib.contextmanager
def silent_tcp_connections(port: int, count: int, per_process: int = 9990) -> Iterator[None]:
    """`count` connections to 127.0.0.1:`port` that send nothing, open for the block."""
    children = []
    try:
        left = count
        while left > 0:
            n = min(per_process, left)
            left -= n
            child = subprocess.Popen(
                [sys.executable, "-c", FLOODER, str(port), str(n)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            children.append(child)
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().split()
            assert line[:1] == ["ready"], line
        yield
    finally:
        for child in children:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.close()
            child.wait(60)
            child.stdout.close()
