"""Reading a running job's stdout and stderr as they come, into its -o/-e files and its
spool (hyper.worker.spool), with no threads of its own.

A job whose stdout goes to a regular file (-o) writes into it straight (`Direct`), with
no pipe and no copy by the worker on the way: the worker follows the file for the spool,
copying the head (what `qlog -f` shows while the job runs) and only noting where the rest
is, which the spool reads from the file at the end for the tail. Its stderr still comes
through a pipe; where it joins stdout in one file, the worker appends it there (both
append, so neither overwrites the other) and knows each piece it wrote for stderr."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import select
import selectors
import stat
import subprocess
import time
from dataclasses import dataclass
from typing import BinaryIO

from hyper.jobs import LogKind
from hyper.worker.spool import Spool

# a job's stdout and stderr pipes, and the most read from one at once: larger pipes count
# against the user's pipe-user-pages-soft (64 MiB), past which new pipes get one page
PIPE_BYTES = 256 * 1024
COALESCE_BYTES = 64 * 1024  # a read shorter than this waits COALESCE_SECONDS for more
COALESCE_SECONDS = 0.002
FOLLOW_SECONDS = 0.05  # how often the worker looks at a direct -o file while it copies its head
FOLLOW_BYTES = 1024 * 1024  # the most read from a direct -o file at once


@dataclass
class Direct:
    """A job's stdout written straight into its -o file: the worker's handle of it (read
    and append), the descriptor the job gets as its stdout (a description of its own,
    appending), and the file's size before the job started."""

    file: BinaryIO
    child: int
    start: int

    def close_child(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.child)


def direct_stdout(files: dict[LogKind, BinaryIO]) -> Direct | None:
    """The job's stdout file, for the job to write into itself, when it is a regular file
    the worker may read and that appends (prepare.output_files); None otherwise (no -o,
    or -o /dev/null, a FIFO...: the job's stdout is a pipe the worker reads)."""
    handle = files.get(LogKind.STDOUT)
    if handle is None:
        return None
    fd = handle.fileno()
    try:
        info = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or flags & os.O_ACCMODE != os.O_RDWR:
        return None
    try:  # a description of its own: the job's writes move no offset of the worker's
        child = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return None
    return Direct(handle, child, info.st_size)


def _exit_descriptor(pid: int) -> int | None:
    """A descriptor that becomes readable when the process ends (a pidfd, Linux 5.3 on);
    None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


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
        direct: Direct | None = None,
    ) -> None:
        self._process = process
        self._files = files or {}
        self._spool = spool
        self._direct = direct
        self._followed = direct.start if direct is not None else 0  # the file read up to here
        self._appended = 0
        self._follow_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._selector = selectors.DefaultSelector()
        self._exit_fd = _exit_descriptor(process.pid)
        self._exit: select.poll | None = None  # readable once the process has ended
        if self._exit_fd is not None:
            self._exit = select.poll()
            self._exit.register(self._exit_fd, select.POLLIN)
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
            if self._following():
                left = min(left, FOLLOW_SECONDS)
            if self._selector.get_map():
                self._read(left)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=left)
            self._follow()
        return True

    def _following(self) -> bool:
        """Whether the head of a direct -o file is still to be copied as it grows."""
        return self._direct is not None and self._spool is not None and not self._spool.head_full

    def _follow(self, upto: int | None = None) -> None:
        """What the job wrote into its direct -o file since the last look (up to `upto`,
        by default all of it), into the spool as stdout: copied while the head has room,
        as a reference after."""
        if self._direct is None or self._spool is None:
            return
        fd = self._direct.file.fileno()
        end = os.fstat(fd).st_size if upto is None else upto
        while self._followed < end:
            if self._spool.head_full:
                self._spool.refer(LogKind.STDOUT, fd, self._followed, end - self._followed)
                self._followed = end
                return
            data = os.pread(fd, min(end - self._followed, FOLLOW_BYTES), self._followed)
            if not data:
                return  # the job made its file shorter
            self._to_spool(LogKind.STDOUT, self._follow_decoder, data)
            self._followed += len(data)

    def _to_spool(self, kind: LogKind, decoder: codecs.IncrementalDecoder, data: bytes) -> None:
        assert self._spool is not None
        if data.isascii() and not decoder.getstate()[0]:
            if data:  # ASCII is UTF-8 as it is: no decoding and encoding again
                self._spool.write_bytes(kind, data)
        else:
            text = decoder.decode(data, final=not data)
            if text:
                self._spool.write(kind, text)

    def _lost(self, sink: BinaryIO, error: OSError) -> None:
        """An -o/-e file that could not be written (a full disk, a FIFO whose reader left):
        the job runs on, its output from here on kept by the host only, and its log says
        so once."""
        for kind in [k for k, handle in self._files.items() if handle is sink]:
            del self._files[kind]
        if self._spool is not None:
            try:
                name = os.readlink(f"/proc/self/fd/{sink.fileno()}")
            except (OSError, ValueError):
                name = "its output file"
            note = f"hyper: cannot write {name}: {error.strerror or error}; its output from"
            self._spool.write(LogKind.STDERR, f"{note} here on is kept only here\n")

    def _append(self, kind: LogKind, decoder: codecs.IncrementalDecoder, data: bytes) -> None:
        """Output of a pipe into the direct -o file it joins: appended, and each piece
        (where it landed, the job's stdout before it) in the spool in the file's order
        (`_appended`: how much of it was, should a write fail)."""
        assert self._direct is not None
        fd = self._direct.file.fileno()
        view = memoryview(data)
        self._appended = 0
        while view:
            written = os.write(fd, view)
            if not written:
                raise OSError(f"could not append to {self._direct.file.name}")
            end = os.lseek(fd, 0, os.SEEK_CUR)  # appending: the end of what was written
            self._follow(upto=end - written)
            if self._spool is not None:
                self._to_spool(kind, decoder, bytes(view[:written]))
            self._followed = max(self._followed, end)
            view = view[written:]
            self._appended += written

    def _read(self, timeout: float) -> None:
        ready = self._selector.select(timeout)
        short = bool(ready)
        for key, _ in ready:
            kind, decoder = key.data
            data = os.read(key.fd, PIPE_BYTES)
            ended = not data
            short = short and 0 < len(data) < COALESCE_BYTES
            sink = self._files.get(kind)
            failed: OSError | None = None
            if data and self._direct is not None and sink is self._direct.file:
                try:
                    self._append(kind, decoder, data)
                    continue
                except OSError as error:  # what it could not append goes to the spool
                    failed, data = error, data[self._appended :]
            elif data and sink is not None:
                try:
                    sink.write(data)
                    sink.flush()
                except OSError as error:
                    failed = error
            if self._spool is not None and (data or ended):
                self._to_spool(kind, decoder, data)
            if failed is not None and sink is not None:
                self._lost(sink, failed)
            if ended:
                self._selector.unregister(key.fd)
        if short:
            # a job writing fast in small pieces (stdio's 4 KiB) is read a pipeful at a
            # time rather than a piece per wake-up: its output waits at most this long,
            # and not at all once its process has ended
            if self._exit is None:
                time.sleep(COALESCE_SECONDS)
            else:
                self._exit.poll(COALESCE_SECONDS * 1000)

    def finish(self, timeout: float) -> None:
        """Read what is left until both pipes close (or `timeout`), then let them go."""
        deadline = time.monotonic() + timeout
        while self._selector.get_map() and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        self._follow()
        self._selector.close()
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd, self._exit = None, None
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
