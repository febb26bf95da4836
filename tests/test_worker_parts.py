"""The worker's parts on their own: the output spool, the output limit's rule, and the
reaper that ends every process of a job."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hyper import output
from hyper.jobs import LogKind
from hyper.worker.spool import Spool

KIB = 1024


def _text(pieces: list[list[dict[str, str]]]) -> str:
    return "".join(chunk["text"] for piece in pieces for chunk in piece)


def test_a_spool_keeps_head_and_tail_and_says_what_it_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", limit=64 * KIB)
    lines = [f"line {n:06d}\n" for n in range(20_000)]  # 12 bytes each, 240,000 in all
    for n, line in enumerate(lines):
        spool.write(LogKind.STDERR if n % 1000 == 999 else LogKind.STDOUT, line)
    live = []
    while piece := spool.take(10 * KIB):
        assert sum(len(c["text"]) for c in piece) <= 10 * KIB + 12
        live.append(piece)
    assert len(_text(live)) == 32 * KIB  # the head, sent while the job runs
    rest = list(spool.rest(8 * KIB))
    text = _text(live) + _text(rest)
    skipped = 240_000 - 64 * KIB
    assert output.cut_note(skipped, 64 * KIB) in text
    head, _, tail = text.partition(output.cut_note(skipped, 64 * KIB))
    assert head == "".join(lines)[: 32 * KIB]
    assert tail == "".join(lines)[-32 * KIB :]
    kinds = {c["kind"] for piece in live + rest for c in piece}
    assert kinds == {"STDOUT", "STDERR"}
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert len(files) <= 4  # the head and at most three pieces of the tail
    spool.close()
    assert not (tmp_path / "s").exists()


def test_a_spool_of_short_output_cuts_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", limit=64 * KIB)
    for n in range(3000):  # 30 KiB + 10 KiB of a 64 KiB limit: the head and a bit more
        spool.write(LogKind.STDOUT, f"{n:09d}\n" if n < 3000 else "")
    spool.write(LogKind.STDOUT, "é" * (5 * KIB))  # characters of two bytes across the edge
    first = spool.take(KIB)
    spool.unsend()  # the host did not answer: the same piece again
    assert spool.take(KIB) == first
    text = _text([first, *spool.rest(4 * KIB)])
    assert "[hyper:" not in text
    assert text == "".join(f"{n:09d}\n" for n in range(3000)) + "é" * (5 * KIB)
    spool.close()


@pytest.mark.parametrize("character", ["€", "😀"])
def test_a_character_across_the_heads_edge_starts_the_tail(tmp_path: Path, character: str) -> None:
    """Output of characters of three or four bytes whose one straddles the head's edge:
    the head ends before it, and it and all that follows go to the tail (it was all
    dropped: the head, a byte or two short of full, never counted as full)."""
    spool = Spool(tmp_path / "s", limit=64 * KIB)
    text = character * (40 * KIB // len(character.encode()))  # 40 KiB: more than the head
    for start in range(0, len(text), 1000):
        spool.write(LogKind.STDOUT, text[start : start + 1000])
    spool.write(LogKind.STDOUT, "the end\n")
    assert _text([*spool.rest(8 * KIB)]) == text + "the end\n"
    spool.close()


def _referred(tmp_path: Path, data: bytes, most: int) -> str:
    """What a spool of 64 KiB sends at the end for a job that filled its head, then wrote
    `data` straight into its -o file."""
    spool = Spool(tmp_path / "s", limit=64 * KIB)
    spool.write(LogKind.STDOUT, "h" * (32 * KIB))
    (tmp_path / "out").write_bytes(data)
    with open(tmp_path / "out", "rb") as file:
        spool.refer(LogKind.STDOUT, file.fileno(), 0, len(data))
    while spool.take(most):  # the head, sent while the job ran
        pass
    text = _text(list(spool.rest(most)))
    spool.close()
    return text


def test_a_direct_files_tail_that_is_not_utf8_is_kept_to_its_end(tmp_path: Path) -> None:
    """200 KiB of bytes that are not UTF-8 (each kept as U+FFFD, three bytes), then a
    last line, written straight into the -o file: the tail sent is within the limit as
    the host counts it (UTF-8), ends with that line, and the note counts what was cut."""
    data = bytes(range(128, 256)) * 1600 + b"the end\n"
    text = _referred(tmp_path, data, 8 * KIB)
    tail = text.split("]\n", 1)[1]  # after the note
    assert tail.endswith("\ufffd" * 128 + "the end\n")
    assert 32 * KIB - 3 <= len(tail.encode()) <= 32 * KIB
    kept = len(tail)  # one character a byte
    assert text == output.cut_note(len(data) - kept, 64 * KIB) + tail


def test_a_direct_files_characters_across_read_edges_are_whole(tmp_path: Path) -> None:
    """Characters of three bytes read in parts whose edges fall inside them, and a last
    one cut short by the job: each whole character is itself, the short one U+FFFD."""
    data = "€".encode() * 5000 + "€".encode()[:2]
    assert _referred(tmp_path, data, 1000) == "€" * 5000 + "\ufffd"


def test_the_cut_note_says_where_all_of_it_is_only_when_a_file_has_it(tmp_path: Path) -> None:
    """A job with -o: "-o files get all of it"; without: how to keep all of it."""
    for files, said in ((True, "-o files get all of it"), (False, "-o FILE keeps all of it")):
        spool = Spool(tmp_path / f"s{files}", limit=64 * KIB, files=files)
        for n in range(20_000):
            spool.write(LogKind.STDOUT, f"line {n:06d}\n")
        while spool.take(16 * KIB):
            pass
        text = _text(list(spool.rest(16 * KIB)))
        assert output.cut_note(240_000 - 64 * KIB, 64 * KIB, files=files) in text
        assert said in text
        spool.close()


def test_the_host_keeps_output_up_to_the_limit_then_one_note() -> None:
    limit = 2**20
    almost = limit + output.NOTE_ROOM_BYTES - 1000  # kept already: room for 1000 bytes
    entries = [(LogKind.STDOUT, "a" * 600), (LogKind.METRICS, "{}"), (LogKind.STDERR, "b" * 600)]
    kept, count = output.within(entries, almost, limit)
    assert [k for k, _ in kept] == [LogKind.STDOUT, LogKind.METRICS, LogKind.STDERR, LogKind.STDERR]
    assert kept[2][1] == "b" * 400 and kept[3][1] == output.host_cut_note(limit)
    assert "at most 1 MiB of output per attempt" in kept[3][1]
    again, _ = output.within([(LogKind.STDOUT, "c"), (LogKind.METRICS, "{}")], count, limit)
    assert again == [(LogKind.METRICS, "{}")]  # once cut, no more output and no second note
    wide = output.within([(LogKind.STDOUT, "é" * 10)], limit + output.NOTE_ROOM_BYTES - 5, limit)
    assert wide[0][0][1] == "éé"  # never half a character


REAPER = """
import os, subprocess, sys, time
from hyper.worker.reaper import become_subreaper, descendants, kill_descendants
assert become_subreaper()
subprocess.run(["bash", "-c", "( setsid sleep {a} & ); env -i setsid -f sleep {b};"
                " bash -c '(sleep {c} &) &'"], check=True)
def commands():
    found = []
    for pid in descendants(os.getpid()):
        try:
            found.append(open(f"/proc/{{pid}}/cmdline", "rb").read().replace(b"\\0", b" ").strip())
        except OSError:
            pass
    return sorted(found)
deadline = time.monotonic() + 30
# the three sleeps and nothing else: a shell may not have forked its sleep yet, or not
# have exited after it did (three processes then, but not these three)
sleeps = sorted(f"sleep {{n}}".encode() for n in ({a}, {b}, {c}))
while commands() != sleeps and time.monotonic() < deadline:
    time.sleep(0.05)
print(len(descendants(os.getpid())), flush=True)
kill_descendants()
print(len(descendants(os.getpid(), zombies=True)), flush=True)
"""


def test_a_subreaper_finds_and_ends_what_left_its_session() -> None:
    marks = (30_511, 30_512, 30_513)
    script = textwrap.dedent(REAPER.format(a=marks[0], b=marks[1], c=marks[2]))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["3", "0"], done
    time.sleep(0.1)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not any(f"sleep {mark}" in ps for mark in marks)


TREE = """
import os, signal, subprocess, sys, threading, time
from hyper.worker.reaper import _descendants_by_scan, become_subreaper, descendants
assert become_subreaper()
# a child started from a thread (it is in that thread's list), a grandchild that outlived
# its parent (re-parented here), a zombie, and a child whose branch is kept
kept = subprocess.Popen(["bash", "-c", "sleep 30 & wait"])
started = []
thread = threading.Thread(target=lambda: started.append(subprocess.Popen(["sleep", "30"])))
thread.start(); thread.join()
subprocess.run(["bash", "-c", "sleep 30 &"], check=True)
zombie = subprocess.Popen(["true"])
deadline = time.monotonic() + 10
while time.monotonic() < deadline and (
    len(_descendants_by_scan(os.getpid(), zombies=True)) < 5
    or len(_descendants_by_scan(os.getpid())) != 4
):
    time.sleep(0.05)
for zombies in (False, True):
    for keep in ((), (kept.pid,)):
        fast = sorted(descendants(os.getpid(), zombies=zombies, keep=keep))
        scan = sorted(_descendants_by_scan(os.getpid(), zombies=zombies, keep=keep))
        print(len(fast), fast == scan, flush=True)
for pid in _descendants_by_scan(os.getpid()):
    os.kill(pid, signal.SIGKILL)
"""


def test_descendants_from_children_lists_are_those_a_full_scan_finds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TREE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # without zombies: kept's bash and sleep, the thread's sleep, the orphaned sleep
    assert done.stdout.split() == ["4", "True", "2", "True", "5", "True", "3", "True"], done
