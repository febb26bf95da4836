"""A job's output on its way to the host, kept on disk, in bounded space.

The worker writes what the job prints here as it comes (cheap, in time linear in its
size) and a sender takes it from here in bounded pieces, so that neither the job's pipes
nor the worker's heartbeats ever wait for the other. Of an attempt's output the host keeps
the first half of its limit (sent while the job runs) and the last half (sent when it
ends); the middle is counted and said in the log, not kept, so the spool never holds
more than about twice the limit, whatever the job writes.

Records on disk: one byte for the stream (``o``/``e``), four for the length, then UTF-8.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from hyper.jobs import LogKind
from hyper.messages import OutputPiece
from hyper.output import cut_note

HEADER = struct.Struct(">cI")
KINDS = {LogKind.STDOUT: b"o", LogKind.STDERR: b"e"}
BY_CODE = {code: kind for kind, code in KINDS.items()}
SEGMENTS = 3  # the tail's files kept: the last `tail` bytes are in the last three


class Spool:
    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder  # made with the first output: a silent job costs no files
        self.limit = limit
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self._segment_bytes = max(1, self.tail_limit // (SEGMENTS - 1))
        self._head: int | None = None
        self._head_bytes = 0  # payload in the head
        self._head_end = 0  # file offset written (and readable)
        self._head_sent = 0  # file offset sent
        self._taken_from = 0  # where the last piece taken started
        self._tail: list[Path] = []
        self._tail_fd: int | None = None
        self._tail_file_bytes = 0
        self._tail_bytes = 0  # payload that went to the tail, all told
        self._lock = threading.Lock()
        self.total = 0  # every byte of output written

    # writing (the worker's main thread) --------------------------------------------------

    def write(self, kind: LogKind, text: str) -> None:
        self.write_bytes(kind, text.encode())

    def write_bytes(self, kind: LogKind, data: bytes) -> None:
        """Write output that is valid UTF-8 already."""
        self.total += len(data)
        room = self.head_limit - self._head_bytes
        if room > 0:
            part = data[:room]
            if len(part) < len(data):  # not in the middle of a character
                part = part.decode(errors="ignore").encode()
            record = HEADER.pack(KINDS[kind], len(part)) + part
            if self._head is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
                self._head = os.open(self.folder / "head", flags, 0o600)
            os.pwrite(self._head, record, self._head_end)
            self._head_bytes += len(part)
            with self._lock:
                self._head_end += len(record)
            data = data[len(part) :]
            if self._head_bytes < self.head_limit:
                return
        if data:
            self._to_tail(kind, data)

    def _to_tail(self, kind: LogKind, data: bytes) -> None:
        if self._tail_fd is None or self._tail_file_bytes >= self._segment_bytes:
            if self._tail_fd is not None:
                os.close(self._tail_fd)
            if not self._tail:
                self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"tail.{len(self._tail)}"
            self._tail.append(path)
            self._tail_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._tail_file_bytes = 0
            for old in self._tail[:-SEGMENTS]:
                old.unlink(missing_ok=True)
        os.write(self._tail_fd, HEADER.pack(KINDS[kind], len(data)) + data)
        self._tail_file_bytes += len(data)
        self._tail_bytes += len(data)

    # sending (the sender's thread) -------------------------------------------------------

    def take(self, most: int) -> list[OutputPiece]:
        """Output of the head not sent yet, about `most` bytes at most, neighbouring
        pieces of one stream joined."""
        with self._lock:
            end = self._head_end
        start = self._head_sent
        if start >= end or self._head is None:
            return []
        data = os.pread(self._head, min(end - start, most + HEADER.size * 64), start)
        runs: list[tuple[LogKind, list[bytes]]] = []
        offset = 0
        taken = 0
        while offset + HEADER.size <= len(data) and taken < most:
            code, size = HEADER.unpack_from(data, offset)
            if offset + HEADER.size + size > len(data):
                if offset:
                    break  # the next record does not fit this read: next time
                data = os.pread(self._head, HEADER.size + size, start)  # one large record
            payload = data[offset + HEADER.size : offset + HEADER.size + size]
            kind = BY_CODE[code]
            if runs and runs[-1][0] is kind:
                runs[-1][1].append(payload)
            else:
                runs.append((kind, [payload]))
            offset += HEADER.size + size
            taken += size
        self._taken_from, self._head_sent = start, start + offset
        return [{"kind": k.value, "text": b"".join(p).decode(errors="replace")} for k, p in runs]

    def unsend(self) -> None:
        """The last piece taken did not reach the host: it is taken again next time."""
        self._head_sent = self._taken_from

    def pending(self) -> bool:
        with self._lock:
            return self._head_sent < self._head_end

    def rest(self, most: int) -> Iterator[list[OutputPiece]]:
        """Once the job has ended: what is left of the head, the note where output was cut
        (if it was), and the last part, in pieces of about `most` bytes."""
        while True:
            taken = self.take(most)
            if not taken:
                break
            yield taken
        if self._tail_fd is not None:
            os.close(self._tail_fd)
            self._tail_fd = None
        records = list(self._tail_records())
        kept = sum(len(data) for _, data in records)
        skip = max(0, kept - self.tail_limit)
        skipped = self._tail_bytes - kept + skip
        if skipped:
            kind = records[0][0] if records else LogKind.STDOUT
            yield [{"kind": kind.value, "text": cut_note(skipped, self.limit)}]
        piece: list[OutputPiece] = []
        size = 0
        for kind, data in records:
            if skip:
                cut = min(skip, len(data))
                data, skip = data[cut:], skip - cut
                if not data:
                    continue
            text = data.decode(errors="replace")
            if piece and piece[-1]["kind"] == kind.value:
                piece[-1]["text"] += text  # pieces of at most `most` bytes: cheap enough
            else:
                piece.append({"kind": kind.value, "text": text})
            size += len(data)
            if size >= most:
                yield piece
                piece, size = [], 0
        if piece:
            yield piece

    def _tail_records(self) -> Iterator[tuple[LogKind, bytes]]:
        for path in self._tail[-SEGMENTS:]:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            offset = 0
            while offset + HEADER.size <= len(data):
                code, size = HEADER.unpack_from(data, offset)
                yield BY_CODE[code], data[offset + HEADER.size : offset + HEADER.size + size]
                offset += HEADER.size + size

    def close(self) -> None:
        if self._head is None and not self._tail:
            return  # nothing was written: nothing was made
        if self._head is not None:
            with contextlib.suppress(OSError):
                os.close(self._head)
            self._head = None
        if self._tail_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._tail_fd)
            self._tail_fd = None
        for path in [self.folder / "head", *self._tail]:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()
