"""The store keeps what it acknowledged, or says it did not (issue 17, finding 6): a clean
stop leaves one checkpointed file; start-up refuses a damaged or rolled-back store in one
line that names restore-host; ids are never used twice, even after a lost write-ahead
log; finished jobs are purged after the retention and the space goes back to the disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from hyper import local_host
from hyper.errors import NotFound, StoreDamaged
from hyper.jobs import JobStatus, LogKind
from hyper.store.base import ArrayTasks, NewJob
from hyper.store.sqlite import SQLiteStore
from tests.conftest import LocalHost

Q, D = "sample-queue-1", "sample-def-1"
HEADER = f"#!/bin/bash\n#HYPER -q {Q} -d {D}\n"


def new_job(name: str = "job", **kwargs: object) -> NewJob:
    return NewJob(name=name, queue=Q, definition=D, script="echo hi\n", **kwargs)  # type: ignore[arg-type]


def finish(store: SQLiteStore, now: float, *, count: int = 1, exit_code: int = 0) -> list[int]:
    """Claim `count` jobs as worker w and complete them at `now`."""
    claimed = store.claim("w", Q, D, count, 30.0, now)
    for job in claimed:
        store.append_log(job.id, job.attempt, [(LogKind.STDOUT, "x" * 1000 + "\n")], now)
        store.complete("w", job.id, job.attempt, exit_code, None, now)
    return [job.id for job in claimed]


# the store alone -------------------------------------------------------------------


def test_open_refuses_a_store_with_garbage_inside(tmp_path: Path) -> None:
    path = tmp_path / "hyper.db"
    store = SQLiteStore(path)
    store.submit([new_job(f"j{n}", env={"PAD": "p" * 2000}) for n in range(200)], time.time())
    store.close()
    assert path.stat().st_size > 64 * 1024
    with open(path, "r+b") as damaged:
        damaged.seek(8 * 4096)
        damaged.write(os.urandom(8192))
    with pytest.raises(StoreDamaged) as refused:
        SQLiteStore.open(path)
    message = str(refused.value)
    assert "damaged" in message and "restore-host" in message and "\n" not in message


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(os.urandom(4096)), id="not-a-database"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:6000]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b"\0" * 16 + p.read_bytes()[16:]), id="header"),
    ],
)
def test_open_refuses_other_damage(tmp_path: Path, damage: object) -> None:
    path = tmp_path / "hyper.db"
    store = SQLiteStore(path)
    store.submit([new_job(f"j{n}", env={"PAD": "p" * 500}) for n in range(50)], time.time())
    store.close()
    damage(path)  # type: ignore[operator]
    with pytest.raises(StoreDamaged, match="restore-host"):
        SQLiteStore.open(path)


def test_a_lost_write_ahead_log_is_refused_and_ids_never_come_back(tmp_path: Path) -> None:
    """The issue's case: the WAL of a host is lost. The store alone cannot know; the
    high-water mark beside it does."""
    path = tmp_path / "hyper.db"
    store = SQLiteStore.open(path)
    first = store.submit([new_job("a"), new_job("b")], time.time())
    store.close()  # checkpointed: these are in the main file
    store = SQLiteStore.open(path)
    later = store.submit(
        [new_job("c"), new_job("d", array=ArrayTasks([1, 2, 3, 4, 5]))], time.time()
    )
    # the process dies with the WAL unmerged, and the WAL is lost
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(path, copy / "hyper.db")
    shutil.copy(str(path) + ".ids", copy / "hyper.db.ids")
    store.close()
    with pytest.raises(StoreDamaged) as refused:
        SQLiteStore.open(copy / "hyper.db")
    assert "lost acknowledged jobs" in str(refused.value)
    assert "restore-host" in str(refused.value) and "--accept-store" in str(refused.value)
    next_id = SQLiteStore.accept_rollback(copy / "hyper.db")
    assert next_id > max(later) + 5  # the array's tasks took ids too
    store = SQLiteStore.open(copy / "hyper.db")
    try:
        (new,) = store.submit([new_job("e")], time.time())
        assert new >= next_id and new not in first + later
        assert store.get_job(first[0]) is not None and store.get_job(later[0]) is None
    finally:
        store.close()


def test_a_refused_submit_does_not_raise_the_mark(tmp_path: Path) -> None:
    """Ids reserved by a submit that was rolled back were never given: no false alarm."""
    from hyper.errors import UsageError
    from hyper.jobspec import Dependency

    path = tmp_path / "hyper.db"
    store = SQLiteStore.open(path)
    store.submit([new_job("a")], time.time())
    with pytest.raises(UsageError):
        store.submit([new_job("b"), new_job("c", depends=(Dependency("afterok", 999),))], 0.0)
    store.close()
    SQLiteStore.open(path).close()


def test_close_checkpoints_and_empties_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "hyper.db"
    store = SQLiteStore(path)
    reader = sqlite3.connect(path)  # another handle keeps the WAL file from being deleted
    try:
        store.submit([new_job(f"j{n}") for n in range(100)], time.time())
        assert Path(str(path) + "-wal").stat().st_size > 0
        reader.execute("SELECT count(*) FROM jobs").fetchone()
        store.close()
        assert Path(str(path) + "-wal").stat().st_size == 0
        (count,) = reader.execute("SELECT count(*) FROM jobs").fetchone()
        assert count == 100
    finally:
        reader.close()


def test_purge_deletes_what_finished_before_and_gives_space_back(tmp_path: Path) -> None:
    path = tmp_path / "hyper.db"
    store = SQLiteStore(path)
    old, recent = time.time() - 40 * 86400, time.time()
    store.submit([new_job(f"old{n}", env={"PAD": "p" * 4000}) for n in range(300)], old)
    done_old = finish(store, old, count=300)
    store.put_file("jobs/1/out.txt", b"o" * 500_000, old)
    store.put_file("pkg-kept", b"k" * 1000, old)
    (array,) = store.submit([new_job("arr", array=ArrayTasks([1, 2, 3, 4]))], old)
    finish(store, old, count=2)  # half an array finished long ago: the array stays
    (fresh,) = store.submit([new_job("fresh")], recent)
    finish(store, recent)
    (waiting,) = store.submit([new_job("waiting")], old)
    size_before = path.stat().st_size
    report = store.purge(time.time() - 30 * 86400)
    assert report["jobs"] == 300 and report["files"] == 1 and report["log_lines"] >= 300
    assert store.get_job(done_old[0]) is None and store.get_file("jobs/1/out.txt") is None
    assert store.get_file("pkg-kept") is not None  # not a purged job's
    for kept in (array + 1, fresh, waiting):
        assert store.get_job(kept) is not None
    counts = store.count_jobs(_all())
    assert counts[JobStatus.SUCCESSFUL] == 3 and counts[JobStatus.WAITING] == 3
    store.close()
    assert path.stat().st_size < size_before / 2
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    # ids go on from where they were
    store = SQLiteStore(path)
    try:
        (new,) = store.submit([new_job("after")], time.time())
        assert new > waiting
    finally:
        store.close()


def _all():  # type: ignore[no-untyped-def]
    from hyper.store.base import JobFilter

    return JobFilter()


# a real daemon --------------------------------------------------------------------------


def _submit(local: LocalHost, n: int) -> list[int]:
    script = local.script("quick.sh", HEADER + "echo done\n")
    return [int(local.ok("qsub", "-h", str(script)).strip()) for _ in range(n)]


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["stop-host", "SIGTERM", "SIGINT"])
def test_a_clean_stop_runs_the_cleanup(local: LocalHost, how: str) -> None:
    _submit(local, 3)
    data_dir = local.data_dir
    pid = local.daemon_pid()
    assert (data_dir / "daemon.json").exists()
    if how == "stop-host":
        assert "stopped" in local.sh("hyper", "hosts", "stop-host").err
    else:
        os.kill(pid, getattr(signal, how))
        local.wait_for(lambda: not local_host.status(local.config).running, 30, "the stop")
    assert not (data_dir / "daemon.json").exists()
    assert not (data_dir / "hyper.sock").exists()
    wal = data_dir / "hyper.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert (data_dir / "host.log").read_text().rstrip().endswith("host local stopped")
    # everything is in the one file: losing the (empty) WAL now loses nothing
    wal.unlink(missing_ok=True)
    assert "Total: 3 " in local.ok("qstat")


@pytest.mark.e2e
def test_a_lost_wal_after_a_crash_is_refused_then_ids_stay_unique(local: LocalHost) -> None:
    ids = _submit(local, 4)
    data_dir = local.data_dir
    # a crash: the last jobs live only in the write-ahead log, which is then lost
    os.kill(local.daemon_pid(), signal.SIGKILL)
    local.wait_for(lambda: not local_host.status(local.config).running, 30, "the crash")
    for leftover in ("hyper.db-wal", "hyper.db-shm"):
        (data_dir / leftover).unlink(missing_ok=True)
    for argv in (("qstat",), ("qsub", "-h", str(local.cwd / "quick.sh"))):
        result = local.sh(*argv)
        assert result.code == 1, (argv, result)
        assert result.err.count("\n") == 1 and "restore-host" in result.err, result.err
        assert "Traceback" not in result.err and "unreachable" not in result.err
    local.ok("hyper", "hosts", "start-host", "--accept-store")
    new = int(local.ok("qsub", "-h", str(local.cwd / "quick.sh")).strip())
    assert new > max(ids)


@pytest.mark.e2e
def test_a_damaged_store_at_start_is_one_line_and_restore_host_mends_it(
    local: LocalHost, tmp_path: Path
) -> None:
    ids = _submit(local, 2)
    local.ok("hyper", "hosts", "backup-host", "--to", str(tmp_path / "backup"))
    more = _submit(local, 2)
    pad = local.script("pad.sh", HEADER + "#" + "x" * 200_000 + "\necho\n")
    for _ in range(3):
        local.ok("qsub", "-h", str(pad))
    local.ok("hyper", "hosts", "stop-host")
    database = local.data_dir / "hyper.db"
    with open(database, "r+b") as damaged:
        damaged.seek(database.stat().st_size // 2)
        damaged.write(os.urandom(8192))
    result = local.sh("qstat")
    assert result.code == 1, result
    assert result.err.count("\n") == 1 and "restore-host" in result.err
    assert "Traceback" not in result.err and "unreachable" not in result.err
    assert "damaged" in local.sh("hyper", "hosts", "start-host").err
    local.ok("hyper", "hosts", "restore-host", "--from", str(tmp_path / "backup"), "--yes")
    assert "Total: 2 " in local.ok("qstat")
    # the ids given after the backup are not given again
    new = int(local.ok("qsub", "-h", str(local.cwd / "quick.sh")).strip())
    assert new > max(ids + more)


@pytest.mark.e2e
def test_hyper_hosts_purge_now(local: LocalHost) -> None:
    from hyper import hosts

    script = local.script("big.sh", HEADER + "head -c 300000 /dev/urandom | base64\n")
    done = [int(local.ok("qsub", "--wait", str(script)).strip()) for _ in range(2)]
    with hosts.connect() as client:
        client.put_file(f"jobs/{done[0]}/out.bin", os.urandom(3_000_000))
    local.ok("qsub", "-h", str(local.script("held.sh", HEADER + "echo later\n")))

    def on_disk() -> int:  # the store and its write-ahead log (checkpointed in the background)
        files = (local.data_dir / "hyper.db", local.data_dir / "hyper.db-wal")
        return sum(f.stat().st_size for f in files if f.exists())

    size = on_disk()
    # the folders of workers that ended (a killed one's spool with them) go as their jobs
    # do: one that ended 40 days ago with the default retention, one of now with 0 days
    workers = local.data_dir / "workers"
    for name, age in (("w-ended-long-ago", 40 * 86400), ("w-ended-now", 0)):
        (workers / name).mkdir(parents=True)
        (workers / name / "worker.log").write_text("its last words\n")
        (workers / name / "spool-7.1").write_text("output never sent\n")
        for path in (workers / name / "worker.log", workers / name / "spool-7.1", workers / name):
            os.utime(path, (time.time() - age, time.time() - age))
    kept = json.loads(local.ok("hyper", "hosts", "purge", "--json"))
    assert kept["jobs"] == 0 and kept["older_than_days"] == 30  # the default retention
    assert kept["worker_folders"] == 1 and not (workers / "w-ended-long-ago").exists()
    assert (workers / "w-ended-now").is_dir()
    result = local.sh("hyper", "hosts", "purge", "--older-than", "0")
    assert result.code == 0 and "purged 2 jobs" in result.err, result
    assert "ended workers' folders" in result.err and not (workers / "w-ended-now").exists()
    assert "Total: 1 " in local.ok("qstat")
    gone = local.sh("qstat", "-i", str(done[0]))
    assert gone.code != 0
    assert on_disk() < size - 3_000_000
    with hosts.connect() as client, pytest.raises(NotFound):
        client.get_file(f"jobs/{done[0]}/out.bin")
    assert int(local.ok("qsub", "-h", str(local.cwd / "held.sh")).strip()) > max(done) + 1


def test_retention_is_a_setting(tmp_path: Path) -> None:
    from hyper.host_settings import HostSettings

    settings = HostSettings(data_dir=tmp_path, api_key="k", retention_days=2.5)
    settings.save()
    assert HostSettings.load(tmp_path).retention_days == 2.5


def test_the_high_water_mark_is_private(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "hyper.db")
    store.submit([new_job()], time.time())
    store.close()
    assert (tmp_path / "hyper.db.ids").stat().st_mode & 0o077 == 0
    assert int((tmp_path / "hyper.db.ids").read_text()) == 2
