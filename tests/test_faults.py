"""Promises kept when processes die or stall: nothing acknowledged is lost, no job runs
twice at once, a silent worker's late report is refused."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hyper import config, hosts
from hyper.host_settings import HostSettings
from hyper.local_host import start, status, stop
from tests.conftest import BIN, LocalHost, running_local_host

# alone (each test but the locked store's, which only waits on its clients): they kill,
# stop and starve processes, or count on the machine's pace
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def running_daemon(local: LocalHost) -> int | None:
    return status(config.load_host(local.config.name)).pid


def database(local: LocalHost) -> sqlite3.Connection:
    return sqlite3.connect(local.data_dir / "hyper.db")


SUBMITTER = """
import sys
from hyper import hosts
job = {"name": "x", "queue": "sample-queue-1", "definition": "sample-def-1",
       "script": "true\\n", "hold": True}
with hosts.connect() as client:
    for _ in range(int(sys.argv[1])):
        print(client.submit([job])[0], flush=True)
"""


@pytest.mark.alone
def test_concurrent_submitters_get_unique_ids(local: LocalHost) -> None:
    """16 processes each send 1,000 single-job submissions at once."""
    submitters = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, "1000"],
            cwd=local.cwd,
            env=local.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    ids: list[str] = []
    for submitter in submitters:
        out, _ = submitter.communicate(timeout=600)
        assert submitter.returncode == 0
        ids += out.split()
    assert len(ids) == 16_000 and len(set(ids)) == 16_000
    with contextlib.closing(database(local)) as db:
        assert db.execute("SELECT count(*), count(DISTINCT id) FROM jobs").fetchone() == (
            16_000,
            16_000,
        )


@pytest.mark.alone
def test_daemon_killed_during_submit_loops_loses_no_printed_id(local: LocalHost) -> None:
    """8 shell loops of qsub while the daemon is killed three times: every id printed is
    stored with its script, and every qsub that printed no id exited non-zero."""
    local.script("x.sh", "echo keep-me\n")
    loop = (
        f"for i in $(seq 50); do id=$({BIN}/qsub -h -q sample-queue-1 -d sample-def-1 x.sh"
        ' 2>/dev/null); echo "$? $id"; done'
    )
    submitters = [
        subprocess.Popen(
            ["bash", "-c", loop], cwd=local.cwd, env=local.env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    for _ in range(3):
        time.sleep(1.5)
        # the loops' next qsub starts it again (on a busy machine, maybe not yet)
        local.wait_for(lambda: running_daemon(local) is not None, what="a daemon to kill")
        os.kill(local.daemon_pid(), signal.SIGKILL)
    outcomes: list[tuple[int, str]] = []
    for submitter in submitters:
        out, _ = submitter.communicate(timeout=300)
        for line in out.splitlines():
            code, _, printed = line.partition(" ")
            outcomes.append((int(code), printed))
    assert len(outcomes) == 400
    with contextlib.closing(database(local)) as db:
        rows = dict(db.execute("SELECT id, script FROM jobs").fetchall())
    for code, printed in outcomes:
        if code == 0:
            assert rows.get(int(printed)) == "echo keep-me\n", printed
        else:
            assert printed == "", (code, printed)  # a failed qsub prints no id
    printed = sum(code == 0 for code, _ in outcomes)
    assert len(rows) >= printed
    print(f"\n3 daemon kills during 400 qsubs: {printed} ids printed and stored, all intact;")
    print(f"{400 - printed} qsubs exited non-zero and printed no id")


@pytest.mark.alone
@pytest.mark.beside  # its own tmpfs, filled and emptied
def test_a_full_disk_refuses_writes_with_one_line_and_recovers(
    hyper_home: Path, tmp_path: Path
) -> None:
    """The host's data on a small tmpfs: filled up, a submit fails with one line and
    leaves nothing behind; reads still work; once space returns the same daemon accepts."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    try:
        with running_local_host(disk / "home", tmp_path / "work") as handle:
            _fill_and_recover(handle, disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill_and_recover(local: LocalHost, disk: Path) -> None:
    # the refused submit must grow the WAL: larger than all the WAL held before (a
    # checkpoint lets the WAL's file be written again from its start, without growing)
    local.script("big.sh", "#" + "x" * 900_000 + "\ntrue\n")
    local.script("small.sh", "true\n")
    for _ in range(3):
        local.ok("qsub", "-h", *Q, "small.sh")
    daemon = local.daemon_pid()
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
    refused = local.sh("qsub", "-h", *Q, "big.sh", timeout=120)
    assert refused.code == 1 and refused.out == ""
    assert refused.err.count("\n") == 1 and "is full" in refused.err, refused.err
    assert "Held: 3" in local.ok("qstat")  # reads still work; nothing half-written
    filler.unlink()
    accepted = local.ok("qsub", "-h", *Q, "big.sh").strip()
    assert local.daemon_pid() == daemon  # the same daemon: it never went down
    with contextlib.closing(database(local)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (4,)
        (script,) = db.execute("SELECT script FROM jobs WHERE id = ?", (int(accepted),)).fetchone()
    assert script == (local.cwd / "big.sh").read_text()


@pytest.mark.beside  # its own tmpfs, filled and emptied
def test_a_purge_on_a_full_disk_deletes_and_says_so(tmp_path: Path) -> None:
    """A store of 24 MB of finished jobs' files on a disk with 1 MiB left. SQLite as Debian
    builds it overwrote each deleted byte (secure_delete), so the purge's deletes alone
    filled the disk and were refused; when they did fit, giving the pages back failed
    after they were made, and the purge said "nothing was changed" (its retry: 0 jobs)."""
    from hyper.store.sqlite import SQLiteStore
    from tests.test_store_integrity import finish, new_job

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], check=True)
    try:
        store = SQLiteStore(disk / "hyper.db")
        old = time.time() - 40 * 86400
        ids = store.submit([new_job(f"j{n}") for n in range(20)], old)
        finish(store, old, count=20)
        for job_id in ids:
            store.put_file(f"jobs/{job_id}/out.bin", os.urandom(1_200_000), old)
        store.close()  # which empties its write-ahead log
        store = SQLiteStore(disk / "hyper.db")
        room = os.statvfs(disk)
        with (disk / "filler").open("wb") as filler:
            filler.write(b"\0" * (room.f_bavail * room.f_frsize - 2**20))
        report = store.purge(time.time() - 30 * 86400)
        assert (report["jobs"], report["files"]) == (20, 20)
        assert report["space_kept"] == 1  # the disk had no room to take the pages back
        assert all(store.get_job(job_id) is None for job_id in ids)
        (disk / "filler").unlink()
        assert store.purge(time.time())["jobs"] == 0
        (after,) = store.submit([new_job("after")], time.time())
        assert store.get_job(after) is not None
        store.close()
        with contextlib.closing(sqlite3.connect(disk / "hyper.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_locked_store_refuses_writes_with_one_line_and_recovers(local: LocalHost) -> None:
    local.script("x.sh", "true\n")
    held = local.ok("qsub", "-h", *Q, "x.sh").strip()
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as locker:
        locker.execute("BEGIN IMMEDIATE")  # what a user's sqlite3 shell writing would do
        # both at once: each is refused, retried by its client for about 20 s, then gives up
        with ThreadPoolExecutor(2) as pool:
            submit = pool.submit(local.sh, "qsub", "-h", *Q, "x.sh", timeout=120)
            cancel_ = pool.submit(local.sh, "qdel", held, timeout=120)
            refused, cancel = submit.result(), cancel_.result()
        locker.execute("ROLLBACK")
    for result in (refused, cancel):
        assert result.code == 1 and result.out == "", result
        assert result.err.count("\n") == 1 and "locked by another process" in result.err
    assert "Held: 1 " in local.ok("qstat")
    local.ok("qsub", "-h", *Q, "x.sh")
    assert "Held: 2 " in local.ok("qstat")


@pytest.mark.alone  # one at a time: its 3 s leases do not hold on a loaded machine
def test_stalled_workers_are_ended_without_holding_the_host(
    hyper_home: Path, tmp_path: Path
) -> None:
    """The host ended each stalled worker by waiting up to 5 s for it, in its own loop:
    with two stopped past their leases, every request waited 5 s at a time (a qstat
    took 9.9 s), and the host then took its own freeze for a stall."""
    with running_local_host(hyper_home, tmp_path / "w", lease_seconds=3.0) as local:
        local.script("long.sh", "sleep 60\n")
        ids = [local.ok("qsub", *Q, "long.sh").strip() for _ in range(2)]  # one a CPU
        local.wait_for(
            lambda: all(local.job(i)["status"] == "Running" for i in ids), 60, "2 running"
        )
        with contextlib.closing(database(local)) as db:
            stalled = [pid for (pid,) in db.execute(
                "SELECT pid FROM workers WHERE state != 'EXITED' AND pid IS NOT NULL")]  # fmt: skip
        for pid in stalled:
            os.kill(pid, signal.SIGSTOP)
        try:
            slowest = 0.0
            deadline = time.monotonic() + 30
            while any(alive_process(pid) for pid in stalled):
                assert time.monotonic() < deadline, "the stalled workers were not ended"
                began = time.monotonic()
                local.ok("qstat")
                slowest = max(slowest, time.monotonic() - began)
                time.sleep(0.1)
        finally:
            for pid in stalled:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert slowest < 2.0, f"a qstat took {slowest:.1f} s while stalled workers were ended"
        log = (local.data_dir / "host.log").read_text()
        assert "did not run for" not in log  # no freeze of its own taken for a stall
        for job_id in ids:  # lost, with no retry left
            assert local.wait_finished(job_id)["status"] == "Failed"


def alive_process(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.alone  # one at a time: its 2-3 s leases do not hold on a loaded machine
def test_a_stalled_worker_loses_its_job_and_its_late_report_is_refused(
    hyper_home: Path, tmp_path: Path
) -> None:
    host = config.load_host("local") if "local" in config.list_host_names() else None
    assert host is None
    created = hosts.create_host(hosts.HostRequest(), start=False)
    settings = HostSettings.load(Path(created.data_dir or ""))
    settings.lease_seconds = 2.0
    settings.worker_idle_seconds = 3.0
    settings.save()
    start(created)
    env = {**os.environ, "HYPER_HOME": str(hyper_home)}
    work = tmp_path / "w"
    work.mkdir()
    (work / "slow.sh").write_text("echo attempt $HYPER_ATTEMPT >> attempts.txt\nsleep 3\n")
    try:
        job_id = subprocess.run(
            [str(BIN / "qsub"), "-r", "1", *Q, "slow.sh"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        deadline = time.monotonic() + 20
        while not (work / "attempts.txt").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with contextlib.closing(sqlite3.connect(Path(created.data_dir or "") / "hyper.db")) as db:
            (first_worker,) = db.execute(
                "SELECT pid FROM workers WHERE state != 'EXITED'"
            ).fetchone()
        os.kill(first_worker, signal.SIGSTOP)  # silent past its 2 s lease
        try:
            deadline = time.monotonic() + 30
            while (work / "attempts.txt").read_text().count("attempt") < 2:
                assert time.monotonic() < deadline, "the job was not run again"
                time.sleep(0.1)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the host may have ended it already
                os.kill(first_worker, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while True:
            job = json.loads(
                subprocess.run(
                    [str(BIN / "qstat"), "-i", job_id, "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                ).stdout
            )["job"]
            if job["status"] in ("Successful", "Failed"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "Successful" and job["attempt"] == 2
        system = subprocess.run(
            [str(BIN / "qlog"), "-t", "SYSTEM", job_id], env=env, capture_output=True, text=True
        ).stdout
        assert "fell silent past its lease" in system
        # the stuck worker was ended with its job; attempt 1 counts as lost, not as done
        time.sleep(1)
        with contextlib.closing(sqlite3.connect(Path(created.data_dir or "") / "hyper.db")) as db:
            outcomes = db.execute(
                "SELECT attempt, outcome FROM attempts WHERE job_id = ? ORDER BY attempt",
                (int(job_id),),
            ).fetchall()
        assert outcomes == [(1, "Waiting"), (2, "Successful")]
    finally:
        stop(config.load_host("local"))


# it kills only its own host's workers, by pid, on a schedule of its own, and settles
# within its bounds on a busy machine (80 s at load 8-9, 66 s alone)
@pytest.mark.alone
@pytest.mark.beside
def test_killed_workers_lose_no_job(local: LocalHost) -> None:
    """1,000 jobs with retries while random workers are SIGKILLed 20 times: each ends
    Successful or Failed with a reason, and no two attempts of one job ever overlap, by
    the host's records and by a lock each attempt holds while it runs."""
    (local.cwd / "locks").mkdir()
    local.script(
        "short.sh",
        "flock -n locks/$HYPER_JOB_ID sleep 0.1 || echo $HYPER_JOB_ID >> overlaps\n",
    )
    array_id = local.ok("qsub", "-r", "5", "-a", "1-1000", *Q, "short.sh").strip()
    chooser = random.Random(6)
    killed = 0
    deadline = time.monotonic() + 240
    while killed < 20 and time.monotonic() < deadline:
        with contextlib.closing(database(local)) as db:
            pids = [p for (p,) in db.execute("SELECT pid FROM workers WHERE state != 'EXITED'")]
        if pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(chooser.choice(pids), signal.SIGKILL)
                killed += 1
        time.sleep(chooser.uniform(0.5, 1.5))
    assert killed == 20

    def settled() -> bool:
        counts = json.loads(local.ok("qstat", "-i", array_id, "--json"))["job"]["counts"]
        return counts["Successful"] + counts["Failed"] == 1000

    local.wait_for(settled, timeout=300, what="every job to end")
    assert not (local.cwd / "overlaps").exists()
    with contextlib.closing(database(local)) as db:
        unexplained = db.execute(
            "SELECT count(*) FROM jobs WHERE array_id = ? AND status = 'Failed'"
            " AND coalesce(reason, '') = '' AND exit_code IS NULL",
            (int(array_id),),
        ).fetchone()
        spans = db.execute(
            "SELECT a.job_id, a.started, coalesce(a.ended, 1e18) FROM attempts a"
            " JOIN jobs j ON j.id = a.job_id WHERE j.array_id = ?",
            (int(array_id),),
        ).fetchall()
    assert unexplained == (0,)
    retried = len(spans) - 1000
    print(f"\n20 workers killed under 1,000 jobs: {retried} attempts cut short and retried")
    by_job: dict[int, list[tuple[float, float]]] = {}
    for job_id, began, ended in spans:
        by_job.setdefault(job_id, []).append((began, ended))
    assert len(by_job) == 1000
    for job_id, attempts in by_job.items():  # never two attempts of one job at once
        attempts.sort()
        for (_, end), (begin, _) in itertools.pairwise(attempts):
            assert end <= begin, (job_id, attempts)


@pytest.mark.alone
@pytest.mark.beside  # paced by its leases and stops
def test_a_killed_workers_job_does_not_run_on_beside_its_retry(local: LocalHost) -> None:
    local.script("long.sh", "echo $$ > leader.$HYPER_ATTEMPT\nsleep 600\n")
    job_id = local.ok("qsub", "-r", "1", *Q, "long.sh").strip()
    local.wait_for(lambda: (local.cwd / "leader.1").exists(), what="the first attempt")
    time.sleep(1.5)  # it has told the host where it runs
    leader = int((local.cwd / "leader.1").read_text())
    with contextlib.closing(database(local)) as db:
        (worker_pid,) = db.execute(
            "SELECT w.pid FROM workers w JOIN jobs j ON j.worker_id = w.id WHERE j.id = ?",
            (int(job_id),),
        ).fetchone()
    os.kill(worker_pid, signal.SIGKILL)
    local.wait_for(lambda: not Path(f"/proc/{leader}").exists(), timeout=10,
                   what="the orphaned attempt to be ended")  # fmt: skip
    # the host knows the worker died: the retry does not wait for the lease (30 s)
    local.wait_for(lambda: (local.cwd / "leader.2").exists(), timeout=15, what="the retry")
    local.ok("qdel", job_id)


@pytest.mark.alone
@pytest.mark.beside  # paced by its leases and stops
def test_qdel_wins_over_a_dying_worker(local: LocalHost) -> None:
    """A job with retries left is cancelled and its worker killed at the same moment: it
    ends Cancelled and never starts again."""
    local.script("long.sh", "echo $HYPER_ATTEMPT >> attempts\nsleep 600\n")
    job_id = local.ok("qsub", "-r", "3", *Q, "long.sh").strip()
    local.wait_for(lambda: (local.cwd / "attempts").exists(), what="the first attempt")
    with contextlib.closing(database(local)) as db:
        (worker_pid,) = db.execute(
            "SELECT w.pid FROM workers w JOIN jobs j ON j.worker_id = w.id WHERE j.id = ?",
            (int(job_id),),
        ).fetchone()
    local.ok("qdel", job_id)
    os.kill(worker_pid, signal.SIGKILL)
    local.wait_for(lambda: local.job(job_id)["status"] == "Cancelled", what="the cancel")
    time.sleep(3)  # long enough for a wrongful retry to start
    assert local.job(job_id)["status"] == "Cancelled"
    assert (local.cwd / "attempts").read_text() == "1\n"
