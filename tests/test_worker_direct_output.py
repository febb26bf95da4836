"""A job's stdout written straight into its -o file (hyper.worker.pump's `Direct`): the
file gets all of it, stderr joined in order; the spool copies the head as it comes and
keeps only references for the tail, read from the file at the end; qlog keeps the
streams apart and follows the job while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyper import output
from hyper.client import HostClient
from hyper.jobs import LogKind
from hyper.worker.lease import SEND_BYTES, LeaseKeeper
from hyper.worker.prepare import open_output
from hyper.worker.pump import OutputPump, direct_stdout
from hyper.worker.spool import Spool
from tests.conftest import LocalHost, wait_until

KIB = 1024
MIB = 1024 * KIB
Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def _text(pieces: list[list[dict[str, str]]]) -> str:
    return "".join(chunk["text"] for piece in pieces for chunk in piece)


def _streams(pieces: list[list[dict[str, str]]], kind: LogKind) -> str:
    return "".join(c["text"] for piece in pieces for c in piece if c["kind"] == kind.value)


# the spool's references -------------------------------------------------------------


def test_a_spool_reads_its_tail_from_the_file_it_refers_to(tmp_path: Path) -> None:
    data = b"".join(b"line %06d\n" % n for n in range(30_000))  # 12 bytes each
    source = tmp_path / "job.out"
    source.write_bytes(data)
    spool = Spool(tmp_path / "s", limit=64 * KIB)
    fd = os.open(source, os.O_RDONLY)
    try:
        spool.write_bytes(LogKind.STDOUT, data[: 40 * KIB])  # the head fills, then the tail
        assert spool.head_full
        spool.refer(LogKind.STDOUT, fd, 40 * KIB, 100 * KIB)
        spool.write_bytes(LogKind.STDERR, b"an error\n")
        spool.refer(LogKind.STDOUT, fd, 140 * KIB, len(data) - 140 * KIB)
    finally:
        os.close(fd)  # the spool holds a descriptor of its own
    assert spool.total == len(data) + len(b"an error\n")
    live = []
    while piece := spool.take(8 * KIB):
        live.append(piece)
    rest = list(spool.rest(16 * KIB))
    text = _text(live) + _text(rest)
    whole = data.decode()
    whole = whole[: 140 * KIB] + "an error\n" + whole[140 * KIB :]
    note = output.cut_note(len(whole) - 64 * KIB, 64 * KIB)
    head, _, tail = text.partition(note)
    assert (head, tail) == (whole[: 32 * KIB], whole[-32 * KIB :])
    assert all(len(c["text"]) <= 16 * KIB + 12 for piece in rest for c in piece)
    spool.close()
    assert not (tmp_path / "s").exists()


def test_a_reference_longer_than_the_tail_keeps_its_end_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    source = tmp_path / "job.out"
    source.write_bytes(b"a" * (200 * KIB) + b"b" * (16 * KIB))
    spool = Spool(tmp_path / "s", limit=32 * KIB)
    spool.write_bytes(LogKind.STDOUT, b"h" * (16 * KIB))
    with open(source, "rb") as file:
        spool.refer(LogKind.STDOUT, file.fileno(), 0, 216 * KIB)
    source.write_bytes(b"a" * (200 * KIB) + b"b" * (10 * KIB))  # the job cut its own file
    text = _text([*iter(lambda: spool.take(64 * KIB), []), *spool.rest(64 * KIB)])
    assert text.startswith("h" * (16 * KIB) + output.cut_note(200 * KIB, 32 * KIB))
    assert text.endswith("b" * (10 * KIB))  # what is left of it, no error
    spool.close()


# the pump, with a real process -------------------------------------------------------

SCRIPT = """\
import os, sys, time
def until(seen):
    for _ in range(6000):
        if seen():
            return
        time.sleep(0.01)
sys.stdout.write("first\\n"); sys.stdout.flush()
until(lambda: os.path.exists(sys.argv[1]))
sys.stderr.write("oops\\n"); sys.stderr.flush()
until(lambda: b"oops" in open(sys.argv[2], "rb").read())  # the worker appended it
for n in range(200_000):
    sys.stdout.write("row %06d\\n" % n)
sys.stdout.flush()
sys.stderr.write("done\\n")
"""


def test_stdout_goes_straight_to_its_file_with_stderr_joined_in_order(tmp_path: Path) -> None:
    path = tmp_path / "job.out"
    path.write_bytes(b"earlier attempt\n")
    handle = open_output(path, first=False)
    files = {LogKind.STDOUT: handle, LogKind.STDERR: handle}  # -o alone: stderr joins it
    direct = direct_stdout(files)
    assert direct is not None and direct.start == len(b"earlier attempt\n")
    go = tmp_path / "go"
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(go), str(path)],
            stdout=direct.child,
            stderr=subprocess.PIPE,
        )
    finally:
        direct.close_child()
    spool = Spool(tmp_path / "s", limit=256 * KIB)
    pump = OutputPump(process, files, spool, direct)
    live: list[list[dict[str, str]]] = []

    def first_line_taken() -> bool:
        pump.wait(0.1)
        live.extend(iter(lambda: spool.take(64 * KIB), []))
        return _text(live) == "first\n"

    wait_until(first_line_taken, timeout=60, what="the first line, while the job runs")
    assert process.poll() is None  # it waits for `go`
    go.touch()
    while not pump.wait(1.0):
        pass
    pump.finish(timeout=10)
    handle.close()
    rows = "".join(f"row {n:06d}\n" for n in range(200_000))
    written = path.read_text()
    assert written == "earlier attempt\nfirst\noops\n" + rows + "done\n"
    live.extend(iter(lambda: spool.take(64 * KIB), []))
    rest = list(spool.rest(64 * KIB))
    everything = live + rest
    assert _streams(everything, LogKind.STDERR) == "oops\ndone\n"
    text = _text(everything)
    note = output.cut_note(len(written) - len("earlier attempt\n") - 256 * KIB, 256 * KIB)
    head, _, tail = text.partition(note)
    ours = written[len("earlier attempt\n") :]
    assert (head, tail) == (ours[: 128 * KIB], ours[-128 * KIB :])
    spool.close()


def test_an_output_file_that_is_no_regular_file_is_written_by_the_worker(
    tmp_path: Path,
) -> None:
    handle = open_output(Path(os.devnull), first=True)
    try:
        assert direct_stdout({LogKind.STDOUT: handle}) is None
    finally:
        handle.close()
    assert direct_stdout({}) is None


# through a real host -----------------------------------------------------------------


@pytest.mark.e2e
def test_qlog_keeps_the_streams_of_a_job_whose_stdout_went_straight_to_its_file(
    local: LocalHost,
) -> None:
    local.script(
        "mixed.sh",
        "echo out 1\necho err 1 >&2\n"
        "for i in $(seq 1200); do [ -e go ] && break; sleep 0.05; done\n"
        "echo out 2\necho err 2 >&2\n",
    )
    job_id = local.ok("qsub", "-o", "mixed.out", *Q, "mixed.sh").strip()
    with local.follow(job_id) as follower:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "out 1\n"
        assert follower.stdout.readline() == "err 1\n"
        assert local.job(job_id)["status"] == "Running"  # it came while the job ran
        (local.cwd / "go").touch()
        rest = follower.stdout.read()
        assert follower.wait(timeout=30) == 0
    assert rest == "out 2\nerr 2\n"
    assert local.wait_finished(job_id)["status"] == "Successful"
    assert (local.cwd / "mixed.out").read_text() == "out 1\nerr 1\nout 2\nerr 2\n"
    assert local.ok("qlog", "-t", "STDOUT", job_id) == "out 1\nout 2\n"
    assert local.ok("qlog", "-t", "STDERR", job_id) == "err 1\nerr 2\n"


@pytest.mark.e2e
def test_output_to_dev_null_is_still_kept_for_qlog(local: LocalHost) -> None:
    local.script("quiet.sh", "echo kept\necho also >&2\n")
    job_id = local.ok("qsub", "--wait", "-o", "/dev/null", *Q, "quiet.sh").strip()
    assert local.ok("qlog", job_id) == "kept\nalso\n"


class Recording:
    """A transport that answers every request with 200 and keeps the bodies sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]
                ) -> tuple[int, bytes]:  # fmt: skip
        self.bodies.append(body or b"")
        return 200, b'{"lease_expires_in": 30}'

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("url", "largest"),
    [("https://a1b2.execute-api.us-east-1.amazonaws.com/prod", 4_000_000),  # Lambda's 6 MB
     ("http://127.0.0.1:1", 10 * MIB)],
)  # fmt: skip
def test_an_ended_jobs_tail_goes_in_pieces_its_host_takes(
    tmp_path: Path, url: str, largest: int
) -> None:
    """A job that ended with 24 MiB of tail unsent: an AWS host gets it in calls within
    what API Gateway and Lambda carry; a local host in fewer, larger ones."""
    spool = Spool(tmp_path / "s", limit=48 * MIB)
    chunk = (b"x" * 99 + b"\n") * 655  # what the pump reads at a time, about 64 KiB
    for _ in range(2 * 24 * MIB // len(chunk)):  # the head's half, then the tail's
        spool.write_bytes(LogKind.STDOUT, chunk)
    while spool.take(SEND_BYTES):  # the head went while the job ran
        pass
    transport = Recording()
    client = HostClient(url, "key", transport=transport)
    keeper = LeaseKeeper(client, "w-1", 1, 1, 1, spool, 30.0, lambda: None)
    assert keeper.flush(patience=5.0) == []
    assert transport.bodies and max(map(len, transport.bodies)) <= largest
    assert sum(map(len, transport.bodies)) >= 24 * MIB - len(chunk)  # all of the tail went
    spool.close()


def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_pidfd(), reason="no pidfd here (Linux before 5.3)")
def test_a_job_that_ends_after_a_short_line_is_not_held_for_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short read waits a little for more output (the pump's coalescing), but never past
    the job's end: with that wait made 30 s, a job printing a line and ending is taken at
    once, its whole output read."""
    monkeypatch.setattr("hyper.worker.pump.COALESCE_SECONDS", 30.0)
    process = subprocess.Popen(
        ["/bin/bash", "-c", "echo hello; echo oops >&2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    spool = Spool(tmp_path / "s", limit=KIB)
    pump = OutputPump(process, {}, spool)
    started = time.monotonic()
    while not pump.wait(1.0):
        pass
    pump.finish(timeout=10)
    assert time.monotonic() - started < 20  # not one 30 s wait
    taken = list(iter(lambda: spool.take(KIB), []))
    assert (_streams(taken, LogKind.STDOUT), _streams(taken, LogKind.STDERR)) == (
        "hello\n",
        "oops\n",
    )
    spool.close()
