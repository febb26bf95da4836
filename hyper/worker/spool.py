"""A job's output on its way to the host, kept on disk, in bounded space.

The worker writes what the job prints here as it comes (cheap, in time linear in its
size) and a sender takes it from here in bounded pieces, so that neither the job's pipes
nor the worker's heartbeats ever wait for the other. Of an attempt's output the host keeps
the first half of its limit (sent while the job runs) and the last half (sent when it
ends); the middle is counted and said in the log, not kept, so the spool never holds
more than about twice the limit, whatever the job writes.

Records on disk: one byte for the stream (``o``/``e``), four for the length, then UTF-8.
Output the job wrote straight into its -o file (hyper.worker.pump) goes to the tail as a
reference instead: ``O``/``E``, then the offset and length of its bytes in that file,
read from it only at the end, and only the part that is kept.
"""

from __future__ import annotations

import codecs
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
REGION = struct.Struct(">QQ")  # a reference's offset and length in its file
KINDS = {LogKind.STDOUT: b"o", LogKind.STDERR: b"e"}
BY_CODE = {code: kind for kind, code in KINDS.items()}
REFERENCES = {LogKind.STDOUT: b"O", LogKind.STDERR: b"E"}
BY_REFERENCE = {code: kind for kind, code in REFERENCES.items()}
SEGMENTS = 3  # the tail's files kept: the last `tail` bytes are in the last three


class Spool:
    def __init__(self, folder: Path, limit: int, *, files: bool = True) -> None:
        self.folder = folder  # made with the first output: a silent job costs no files
        self.files = files  # the job's output goes to -o/-e files too (the cut note says)
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
        self._source: int | None = None  # the file that references point into (its own fd)
        self.total = 0  # every byte of output written

    @property
    def head_full(self) -> bool:
        """Whether what comes now goes to the tail (where a reference to it will do)."""
        return self._head_bytes >= self.head_limit

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
            if not data:
                return
            self._head_bytes = self.head_limit  # full: its next character did not fit
        if data:
            self._to_tail(kind, data)

    def refer(self, kind: LogKind, fd: int, offset: int, length: int) -> None:
        """Output already in a file (`length` bytes at `offset` of `fd`), once the head is
        full: the tail notes where it is, rather than a copy. Of a region longer than the
        tail only its end can be kept: the rest is counted as cut."""
        if length <= 0:
            return
        if self._source is None:
            self._source = os.dup(fd)  # the file may be closed by its owner before the end
        self.total += length
        kept = min(length, self.tail_limit)
        self._tail_bytes += length - kept
        self._to_tail(kind, REGION.pack(offset + length - kept, kept), kept)

    def _to_tail(self, kind: LogKind, data: bytes, reference: int = 0) -> None:
        """Append a record to the tail: `data`, or a `reference` of that many bytes."""
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
        code = REFERENCES[kind] if reference else KINDS[kind]
        os.write(self._tail_fd, HEADER.pack(code, len(data)) + data)
        size = reference or len(data)
        self._tail_file_bytes += size
        self._tail_bytes += size

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
        runs: list[tuple[LogKind, list[str]]] = []
        offset = 0
        taken = 0
        while offset + HEADER.size <= len(data) and taken < most:
            code, size = HEADER.unpack_from(data, offset)
            if offset + HEADER.size + size > len(data):
                if offset:
                    break  # the next record does not fit this read: next time
                data = os.pread(self._head, HEADER.size + size, start)  # one large record
            payload = data[offset + HEADER.size : offset + HEADER.size + size]
            _add(runs, BY_CODE[code], payload.decode(errors="replace"))  # whole characters
            offset += HEADER.size + size
            taken += size
        self._taken_from, self._head_sent = start, start + offset
        return _piece(runs)

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
        kept = sum(size for _, size, _ in records)
        # the tail is at most tail_limit bytes as the host stores it (UTF-8): bytes of a
        # file that are not UTF-8 grow as they are read (an invalid byte is U+FFFD, three
        # bytes), so what is cut from its front is counted in text, and said in bytes
        sizes = [(size, len(text.encode())) for _, size, text in self._decoded(records, most)]
        drop = max(0, sum(text for _, text in sizes) - self.tail_limit)
        skipped = self._tail_bytes - kept + _raw_share(sizes, drop)
        if skipped:
            kind = records[0][0] if records else LogKind.STDOUT
            note = cut_note(skipped, self.limit, files=self.files)
            yield [{"kind": kind.value, "text": note}]
        runs: list[tuple[LogKind, list[str]]] = []  # a piece: runs of one stream each
        size = 0
        for kind, _, text in self._decoded(records, most):
            data = text.encode()
            if drop:
                cut = min(drop, len(data))
                drop, data = drop - cut, data[cut:]
                text = data.decode(errors="ignore")
            if not text:
                continue
            _add(runs, kind, text)
            size += len(data)
            if size >= most:
                yield _piece(runs)
                runs, size = [], 0
        if runs:
            yield _piece(runs)

    def _tail_records(self) -> Iterator[tuple[LogKind, int, bytes | tuple[int, int]]]:
        """The tail's records: their stream, size, and bytes or (offset, length) in the
        file they refer to."""
        for path in self._tail[-SEGMENTS:]:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            offset = 0
            while offset + HEADER.size <= len(data):
                code, size = HEADER.unpack_from(data, offset)
                payload = data[offset + HEADER.size : offset + HEADER.size + size]
                offset += HEADER.size + size
                if code in BY_REFERENCE:
                    if len(payload) == REGION.size:
                        start, length = REGION.unpack(payload)
                        yield BY_REFERENCE[code], length, (start, length)
                else:
                    yield BY_CODE[code], len(payload), payload

    def _decoded(
        self, records: list[tuple[LogKind, int, bytes | tuple[int, int]]], most: int
    ) -> Iterator[tuple[LogKind, int, str]]:
        """The tail's records as text, with how many of their bytes each part is: those
        of a reference read from its file in parts of at most `most` bytes (what the job
        left of it), decoded across the parts' edges."""
        for kind, _, data in records:
            if isinstance(data, bytes):  # written as UTF-8
                yield kind, len(data), data.decode(errors="replace")
                continue
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            start, length = data
            while length > 0 and self._source is not None:
                try:
                    part = os.pread(self._source, min(length, most), start)
                except OSError:
                    break
                if not part:
                    break  # the job made its file shorter
                yield kind, len(part), decoder.decode(part)
                start, length = start + len(part), length - len(part)
            yield kind, 0, decoder.decode(b"", final=True)

    def close(self) -> None:
        if self._source is not None:
            with contextlib.suppress(OSError):
                os.close(self._source)
            self._source = None
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


def _add(runs: list[tuple[LogKind, list[str]]], kind: LogKind, data: str) -> None:
    """`data` of stream `kind` onto the last run, when it is of that stream, or a new one."""
    if runs and runs[-1][0] is kind:
        runs[-1][1].append(data)
    else:
        runs.append((kind, [data]))


def _piece(runs: list[tuple[LogKind, list[str]]]) -> list[OutputPiece]:
    return [{"kind": k.value, "text": "".join(parts)} for k, parts in runs]


def _raw_share(sizes: list[tuple[int, int]], drop: int) -> int:
    """Of parts of (bytes read, bytes as text), how many bytes read the first `drop` bytes
    of text came from (in proportion within the part where it ends)."""
    raw = 0
    for read, text in sizes:
        if drop <= 0:
            break
        if drop >= text:
            raw, drop = raw + read, drop - text
        else:
            raw, drop = raw + read * drop // text, 0
    return raw
