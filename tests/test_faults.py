"""Promises kept when processes die or stall: nothing acknowledged is lost, no job runs
twice at once, a silent worker's late report is refused."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from hyper import config
from hyper.host.settings import HostSettings
from hyper.local_host import start, stop
from tests.conftest import BIN, LocalHost

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def database(local: LocalHost) -> sqlite3.Connection:
    return sqlite3.connect(local.data_dir / "hyper.db")


def test_concurrent_submitters_get_unique_ids(local: LocalHost) -> None:
    local.script("x.sh", "true\n")
    qsub = f"{BIN}/qsub -h -q sample-queue-1 -d sample-def-1 x.sh"
    loop = f"for i in $(seq 100); do {qsub} || exit 1; done"
    submitters = [
        subprocess.Popen(
            ["bash", "-c", loop], cwd=local.cwd, env=local.env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    ids: list[str] = []
    for submitter in submitters:
        out, _ = submitter.communicate(timeout=300)
        assert submitter.returncode == 0
        ids += out.split()
    assert len(ids) == 800 and len(set(ids)) == 800
    counts = json.loads(local.ok("qstat", "--json", "--limit", "1"))["counts"]
    assert counts["Held"] == 800


def test_daemon_killed_during_submit_loops_loses_no_printed_id(local: LocalHost) -> None:
    local.script("x.sh", "echo keep-me\n")
    loop = (
        f"for i in $(seq 60); do id=$({BIN}/qsub -h -q sample-queue-1 -d sample-def-1 x.sh)"
        " && echo $id || echo FAILED; done"
    )
    submitters = [
        subprocess.Popen(
            ["bash", "-c", loop],
            cwd=local.cwd,
            env=local.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(1.0)
    os.kill(local.daemon_pid(), signal.SIGKILL)  # the loops' next qsub starts it again
    printed: list[str] = []
    for submitter in submitters:
        out, _ = submitter.communicate(timeout=300)
        printed += [word for word in out.split() if word != "FAILED"]
    assert printed
    with contextlib.closing(database(local)) as db:
        rows = dict(db.execute("SELECT id, script FROM jobs").fetchall())
    for job_id in printed:
        assert rows.get(int(job_id)) == "echo keep-me\n", job_id


def test_a_stalled_worker_loses_its_job_and_its_late_report_is_refused(
    hyper_home: Path, tmp_path: Path
) -> None:
    host = config.load_host("local") if "local" in config.list_host_names() else None
    assert host is None
    from hyper import hosts

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


def test_killed_workers_lose_no_job(local: LocalHost) -> None:
    local.script("short.sh", "sleep 0.2\n")
    array_id = local.ok("qsub", "-r", "5", "-a", "1-200", *Q, "short.sh").strip()
    killed = 0
    deadline = time.monotonic() + 120
    while killed < 8 and time.monotonic() < deadline:
        with contextlib.closing(database(local)) as db:
            pids = [p for (p,) in db.execute("SELECT pid FROM workers WHERE state != 'EXITED'")]
        for pid in pids[:1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(1.0)

    def settled() -> bool:
        counts = json.loads(local.ok("qstat", "-i", array_id, "--json"))["job"]["counts"]
        return counts["Successful"] + counts["Failed"] == 200

    local.wait_for(settled, timeout=240, what="every task to end")
    counts = json.loads(local.ok("qstat", "-i", array_id, "--json"))["job"]["counts"]
    assert counts["Successful"] == 200, counts
    with contextlib.closing(database(local)) as db:
        spans = db.execute(
            "SELECT a.job_id, a.started, coalesce(a.ended, 1e18) FROM attempts a"
            " JOIN jobs j ON j.id = a.job_id WHERE j.array_id = ?",
            (int(array_id),),
        ).fetchall()
    by_job: dict[int, list[tuple[float, float]]] = {}
    for job_id, began, ended in spans:
        by_job.setdefault(job_id, []).append((began, ended))
    for job_id, attempts in by_job.items():  # never two attempts of one job at once
        attempts.sort()
        for (_, end), (begin, _) in itertools.pairwise(attempts):
            assert end <= begin, (job_id, attempts)


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
