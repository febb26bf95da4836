"""Reading a running job's stdout and stderr as they come, into its -o/-e files and its
spool (hyper.worker.spool), with no threads of its own."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import selectors
import subprocess
import time
from typing import BinaryIO

from hyper.jobs import LogKind
from hyper.worker.spool import Spool

# a job's stdout and stderr pipes, and the most read from one at once: larger pipes count
# against the user's pipe-user-pages-soft (64 MiB), past which new pipes get one page
PIPE_BYTES = 256 * 1024
COALESCE_BYTES = 64 * 1024  # a read shorter than this waits COALESCE_SECONDS for more
COALESCE_SECONDS = 0.002


class OutputPump:
    """Reads a child's stdout and stderr as they come, in the order they come, with no
    threads: the worker waits on the pipes and the process together (`wait`). What it
    reads goes to the job's -o/-e files (all of it) and to the spool (bounded), never to
    memory beyond one read."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        files: dict[LogKind, BinaryIO] | None = None,
        spool: Spool | None = None,
    ) -> None:
        self._process = process
        self._files = files or {}
        self._spool = spool
        self._selector = selectors.DefaultSelector()
        for stream, kind in ((process.stdout, LogKind.STDOUT), (process.stderr, LogKind.STDERR)):
            if stream is not None:
                # a larger pipe: a job writing fast waits less, and is read in fewer calls
                with contextlib.suppress(OSError, AttributeError):
                    fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                self._selector.register(stream.fileno(), selectors.EVENT_READ, (kind, decoder))

    def wait(self, timeout: float) -> bool:
        """Take output for up to `timeout` seconds; True as soon as the process has ended."""
        deadline = time.monotonic() + timeout
        while self._process.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._selector.get_map():
                self._read(left)
                continue
            try:
                self._process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                return False
        return True

    def _read(self, timeout: float) -> None:
        ready = self._selector.select(timeout)
        short = bool(ready)
        for key, _ in ready:
            kind, decoder = key.data
            data = os.read(key.fd, PIPE_BYTES)
            short = short and 0 < len(data) < COALESCE_BYTES
            sink = self._files.get(kind)
            if data and sink is not None:
                sink.write(data)
                sink.flush()
            if self._spool is not None:
                if data.isascii() and not decoder.getstate()[0]:
                    if data:  # ASCII is UTF-8 as it is: no decoding and encoding again
                        self._spool.write_bytes(kind, data)
                else:
                    text = decoder.decode(data, final=not data)
                    if text:
                        self._spool.write(kind, text)
            if not data:
                self._selector.unregister(key.fd)
        if short:
            # a job writing fast in small pieces (stdio's 4 KiB) is read a pipeful at a
            # time rather than a piece per wake-up: its output waits at most this long
            time.sleep(COALESCE_SECONDS)

    def finish(self, timeout: float) -> None:
        """Read what is left until both pipes close (or `timeout`), then let them go."""
        deadline = time.monotonic() + timeout
        while self._selector.get_map() and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        self._selector.close()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
