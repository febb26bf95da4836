"""A local host's data survives: copied while it runs, restored from the copy, moved to
another folder, with jobs that were running finishing or retried and their logs whole."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from hyper.host_settings import HostSettings
from tests.conftest import LocalHost

pytestmark = pytest.mark.e2e

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def ids_in(local: LocalHost) -> set[str]:
    return set(local.ok("qstat", "-o").split())


def quick_leases(local: LocalHost) -> None:
    """Leases of 2 s, so a job whose worker is gone after a restore is retried soon."""
    settings = HostSettings.load(local.data_dir)
    settings.lease_seconds = 2.0
    settings.save()
    local.ok("hyper", "hosts", "stop-host")
    local.ok("hyper", "hosts", "start-host")


def test_restore_brings_back_what_the_backup_held(local: LocalHost, tmp_path: Path) -> None:
    quick_leases(local)
    local.script("done.sh", "echo finished output\n")
    local.script("mid.sh", "echo start\nsleep 2\necho end\n")
    finished = local.ok("qsub", *Q, "done.sh").strip()
    assert local.wait_finished(finished)["status"] == "Successful"
    held = [local.ok("qsub", "-h", *Q, "done.sh").strip() for _ in range(3)]
    running = local.ok("qsub", "-r", "1", *Q, "mid.sh").strip()
    local.wait_for(lambda: local.job(running)["status"] == "Running", what="a running job")
    backup = tmp_path / "backup"
    local.ok("hyper", "hosts", "backup-host", "--to", str(backup))  # while the job runs
    assert local.wait_finished(running)["status"] == "Successful"
    before = ids_in(local)
    assert before == {finished, running, *held}

    later = local.ok("qsub", "-h", *Q, "done.sh").strip()
    local.ok("qdel", held[0])
    local.ok("hyper", "hosts", "restore-host", "--from", str(backup), "--yes")
    assert ids_in(local) == before and later not in ids_in(local)
    assert local.job(held[0])["status"] == "Held"
    assert local.ok("qlog", finished) == "finished output\n"
    # the job running when the copy was made has no worker now: it is retried, whole
    record = local.wait_finished(running)
    assert record["status"] == "Successful", record
    assert local.ok("qlog", running).endswith("start\nend\n")
    with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # new ids never repeat the backup's
    assert int(local.ok("qsub", "-h", *Q, "done.sh")) > int(running)


def test_bad_backups_and_restores_change_nothing(local: LocalHost, tmp_path: Path) -> None:
    local.script("x.sh", "true\n")
    job_id = local.ok("qsub", "-h", *Q, "x.sh").strip()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("mine\n")
    (tmp_path / "notabackup").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "hyper.db").write_text("not a database\n")
    good = tmp_path / "good"
    local.ok("hyper", "hosts", "backup-host", "--to", str(good))
    cases = [
        (["backup-host", "--to", str(tmp_path / "full")], "not an empty folder"),
        (["restore-host", "--from", str(tmp_path / "notabackup"), "--yes"], "holds no backup"),
        (["restore-host", "--from", str(tmp_path / "garbage"), "--yes"], "not a hyper backup"),
        (["restore-host", "--from", str(good)], "--yes"),
    ]
    for argv, message in cases:
        result = local.sh("hyper", "hosts", *argv)
        assert result.code == 2, (argv, result)
        assert result.err.count("\n") == 1 and message in result.err, (argv, result.err)
    assert (tmp_path / "full" / "something").read_text() == "mine\n"
    assert ids_in(local) == {job_id}


def test_a_backup_is_kept_and_taken_only_where_no_other_user_can_reach(
    local: LocalHost, tmp_path: Path
) -> None:
    """A backup folder another user made (empty, world-writable) let them read the store
    as it was copied (secrets of -V jobs), swap in a store whose jobs then ran as the
    owner, and have the manifest's write follow their link over the owner's file."""
    local.script("x.sh", "true\n")
    job_id = local.ok("qsub", "-h", *Q, "x.sh").strip()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)
    os.chown(theirs, 65534, 65534)  # nobody's
    refused = local.sh("hyper", "hosts", "backup-host", "--to", str(theirs))
    assert refused.code == 2 and refused.err.count("\n") == 1, refused
    assert "is not a folder of yours that only you may use (owner uid 65534" in refused.err
    assert list(theirs.iterdir()) == []
    # a folder of the user's own, made open by their umask: made private, files 0600
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o777)
    local.ok("hyper", "hosts", "backup-host", "--to", str(mine))
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in mine.iterdir()} == {
        "hyper.db": 0o600,
        "backup.json": 0o600,
    }
    # restored only from what no other user could have written
    for making_it_theirs in (
        lambda: mine.chmod(0o777),
        lambda: os.chown(mine / "hyper.db", 65534, 65534),
        lambda: (mine / "hyper.db").chmod(0o666),
    ):
        making_it_theirs()
        result = local.sh("hyper", "hosts", "restore-host", "--from", str(mine), "--yes")
        assert result.code == 2 and result.err.count("\n") == 1, result
        assert "that only you may write" in result.err and "run as you" in result.err
        mine.chmod(0o700)
        os.chown(mine / "hyper.db", os.getuid(), os.getgid())
        (mine / "hyper.db").chmod(0o600)
    later = local.ok("qsub", "-h", *Q, "x.sh").strip()
    local.ok("hyper", "hosts", "restore-host", "--from", str(mine), "--yes")
    assert ids_in(local) == {job_id} and later not in ids_in(local)


def test_data_folder_moved_with_a_job_running(local: LocalHost, tmp_path: Path) -> None:
    local.script("mid.sh", "echo start\nsleep 3\necho end\n")
    running = local.ok("qsub", *Q, "mid.sh").strip()
    local.wait_for(lambda: local.job(running)["status"] == "Running", what="a running job")
    old = local.data_dir
    new = tmp_path / "elsewhere" / "local"
    local.ok("hyper", "hosts", "update-host", "--data-dir", str(new))
    assert not old.exists() and (new / "hyper.db").is_file()
    record = local.wait_finished(running)
    assert record["status"] == "Successful", record
    assert local.ok("qlog", running) == "start\nend\n"

    # moved by hand while stopped: the host is told where it is now
    local.ok("hyper", "hosts", "stop-host")
    by_hand = tmp_path / "by-hand"
    new.rename(by_hand)
    local.ok("hyper", "hosts", "update-host", "--data-dir", str(by_hand))
    assert ids_in(local) == {running}
    taken = tmp_path / "taken"
    taken.mkdir()
    refused = local.sh("hyper", "hosts", "update-host", "--data-dir", str(taken))
    assert refused.code == 2 and "exists already" in refused.err and refused.err.count("\n") == 1
