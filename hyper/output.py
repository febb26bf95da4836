"""How much of a job's output the host keeps, and what is said where it is cut.

A job may write any amount. Its ``-o``/``-e`` files get all of it; the host keeps, for
each attempt, at most the definition's ``output_limit_mib`` of its stdout and stderr
together: the first half as it comes, and the last half when the attempt ends. The worker
says in the log, at the place of the cut, how many bytes were left out. The host enforces
the same limit on whatever reaches it (a worker is only one of its clients): output of an
attempt beyond the limit, plus a little room for the notes, is dropped with one note.

Sizes are counted in bytes of UTF-8 text, as the worker sends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyper.jobs import LogKind

DEFAULT_OUTPUT_LIMIT_MIB = 32  # per attempt; the first half and the last half are kept
NOTE_ROOM_BYTES = 64 * 1024  # beyond the limit, for the notes that say where output was cut
OUTPUT_KINDS = frozenset({LogKind.STDOUT, LogKind.STDERR})


def limit_bytes(spec: dict[str, object] | None) -> int:
    """The output an attempt may keep on the host, from its definition's spec."""
    mib = (spec or {}).get("output_limit_mib")
    return int(mib if isinstance(mib, int) and mib > 0 else DEFAULT_OUTPUT_LIMIT_MIB) * 2**20


NOTE_START = "\n[hyper: "  # what a note that output was cut begins with


def is_cut_note(text: str) -> bool:
    """Whether a log entry is a note that output was cut (cut_note, host_cut_note): it
    belongs to both streams, so a log of one stream shows it too."""
    return text.startswith(NOTE_START)


def cut_note(skipped: int, limit: int, *, files: bool = True) -> str:
    """What the log says where the worker left out the middle of an attempt's output
    (`files`: the job's output went to -o/-e files too, which have all of it)."""
    where = "-o files get all of it" if files else "-o FILE keeps all of it"
    return (
        f"{NOTE_START}{skipped} bytes of output cut here; the host keeps the first and the"
        f" last {_amount(limit // 2)} of each attempt (the definition's output_limit_mib);"
        f" {where}]\n"
    )


def _amount(size: int) -> str:
    return f"{size // 2**20} MiB" if size % 2**20 == 0 else f"{size // 1024} KiB"


def host_cut_note(limit: int) -> str:
    """What the log says where the host stopped keeping an attempt's output."""
    if limit <= 0:  # a final report: its notes only
        return f"{NOTE_START}a final report keeps {NOTE_ROOM_BYTES // 1024} KiB of output]\n"
    return (
        f"{NOTE_START}the host keeps at most {_amount(limit)} of output per attempt;"
        " what came after this was not kept]\n"
    )


def size_of(entries: Sequence[tuple[LogKind, str]]) -> int:
    return sum(len(text.encode()) for kind, text in entries if kind in OUTPUT_KINDS)


def within(
    entries: Sequence[tuple[LogKind, str]], kept: int, limit: int
) -> tuple[list[tuple[LogKind, str]], int]:
    """The entries to keep when `kept` bytes of the attempt's output are kept already,
    and the count after them: output up to the limit (plus the room for notes), then one
    note where it was cut (the count then stays above the ceiling); other kinds (events,
    metrics) always."""
    ceiling = limit + NOTE_ROOM_BYTES
    out: list[tuple[LogKind, str]] = []
    noted = kept > ceiling
    for kind, text in entries:
        if kind not in OUTPUT_KINDS:
            out.append((kind, text))
            continue
        size = len(text.encode())
        if kept + size <= ceiling:
            out.append((kind, text))
            kept += size
            continue
        room = max(0, ceiling - kept)
        if room:
            out.append((kind, text.encode()[:room].decode(errors="ignore")))
        kept = ceiling + 1
        if not noted:
            out.append((kind, host_cut_note(limit)))
            noted = True
    return out, kept
