"""The worker agent running several jobs at once, each in its own thread: SIGTERM, reports
during the drain, the jobs' connections, failures in a job's thread. Real processes and a
real agent; the host is a stub that records what the agent sent (tests/helpers/stub_host)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from hyper.client import HostClient
from hyper.errors import HostUnreachable
from hyper.messages import ClaimedJob, Completion
from hyper.worker import agent as agent_module
from hyper.worker.agent import LEASE_MARK, WorkerAgent, WorkerOptions
from hyper.worker.devices import DeviceLocks
from hyper.worker.lease import clock
from tests.conftest import wait_until
from tests.helpers.stub_host import StubHost, job

# a worker id of this test process's own: a job's cgroup is named by its worker and job,
# and the tests of other processes run jobs 1, 2 and 3 too
WORKER = f"w{os.getpid()}"


@contextlib.contextmanager
def sigterm_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _pids_running(pattern: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if pattern in " ".join(proc.info["cmdline"] or []):
                found.append(proc.pid)
    return found


@pytest.mark.e2e
def test_sigterm_during_the_drain_reports_what_ended_and_says_goodbye(tmp_path: Path) -> None:
    """A pilot leaving at its walltime drains its jobs; SIGTERM then ends the running one
    (its lease runs out), and still the ended job is reported, the held one handed back and
    the worker's exit said."""
    done = tmp_path / "j1.done"
    tag = f"sleep 3{os.getpid() % 1000:03d}"  # a sleep this test can find
    too_long = job(3, "true", time_limit=600)  # past the walltime: the pilot leaves
    first, second = job(1, f"touch {done}", time_limit=60), job(2, f"exec {tag}", time_limit=60)
    host = StubHost([first, second, too_long])
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=30, walltime_seconds=100)
    agent = WorkerAgent(host, options)  # type: ignore[arg-type]

    def terminate_once_job_1_ended() -> None:
        wait_until(lambda: done.exists() and bool(_pids_running(tag)), what="jobs running")
        wait_until(
            lambda: (
                any(r["job_id"] == 1 for r in agent._pending)
                or 1 in host.reported()
                or any(p.exited for (j, _), p in list(agent._running.items()) if j == 1)
            ),
            what="job 1 ended",
        )
        os.kill(os.getpid(), signal.SIGTERM)

    with sigterm_restored():
        agent.stop_on_signal()
        killer = threading.Thread(target=terminate_once_job_1_ended, daemon=True)
        killer.start()
        started = time.monotonic()
        rc = agent.run()
        killer.join(timeout=30)
    assert rc == 0
    assert time.monotonic() - started < 20
    assert host.reported().keys() == {1}  # job 2 was ended by the SIGTERM: not reported
    assert host.reported()[1][1] == 0
    returns = [body for _, path, body in host.calls if path.endswith("/return")]
    assert returns == [{"jobs": [{"job_id": 3, "attempt": 1}]}]
    assert host.paths()[-1] == "exit"
    wait_until(lambda: not _pids_running(tag), timeout=10, what="job 2's process ended")


@pytest.mark.e2e
def test_no_job_starts_after_sigterm(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    agent = WorkerAgent(StubHost([]), WorkerOptions(WORKER, "q", "d", tmp_path / "w"))  # type: ignore[arg-type]
    agent._stopping = True  # what the SIGTERM handler sets
    assert agent.run_job(job(1, f"touch {ran}")) is None  # not reported: its lease runs out
    assert not ran.exists()
    assert not list((tmp_path / "w").glob("job-*.sh"))


class _SlowClaims(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/claim"):
            time.sleep(1.5)  # a long-poll, answered after the caller gave up
            answer: dict[str, Any] = {"jobs": [{"id": 7, "attempt": 1}]}
        else:
            answer = {"path": self.path}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def stub_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_cut_by_a_signal_does_not_answer_the_next_one() -> None:
    class Interrupted(BaseException):
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    with stub_server(_SlowClaims) as url, HostClient(url, "k", timeout=10) as client:
        before = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Interrupted):
                client.claim("w", queue="q", definition="d", limit=1, wait=10)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, before)
        assert client.call("POST", "/workers/w/return", {"jobs": []}) == {
            "path": "/workers/w/return"
        }


@pytest.mark.e2e
def test_a_job_ending_during_the_drain_is_reported_at_once(tmp_path: Path) -> None:
    """A pilot leaving at its walltime: the short job beside a long one is reported when
    it ends, not when the long one does (its lease is no longer renewed)."""
    long_done = tmp_path / "long.done"
    jobs = [
        job(1, "sleep 0.2", time_limit=60),
        job(2, f"sleep 4; touch {long_done}", time_limit=60),
        job(3, "true", time_limit=600),  # past the walltime: the pilot leaves
    ]
    host = StubHost(jobs)
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=30, walltime_seconds=100)
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    reported = host.reported()
    assert reported.keys() == {1, 2}
    assert reported[1][0] < reported[2][0] - 1.0, reported


def test_a_thread_s_request_does_not_wait_for_another_thread_s() -> None:
    """A job's heartbeat (which carries qdel) is not held behind another job's upload:
    each thread of a worker has its own connection to the host."""
    release, arrived = threading.Event(), threading.Event()

    class SlowUploads(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if "/files/" in self.path:
                arrived.set()
                release.wait(30)  # an upload that lasts until the test lets it end
            body = json.dumps({"cancel": True} if "progress" in self.path else {}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    with stub_server(SlowUploads) as url, HostClient(url, "k", timeout=60) as client:
        upload = threading.Thread(target=client.put_file, args=("jobs/1/out.dat", b"x" * 1000))
        upload.start()
        try:
            assert arrived.wait(30)  # the upload is under way
            answer = client.progress("w", 2, {"attempt": 1, "output": [], "metrics": None})
            assert answer.get("cancel") is True
            assert not release.is_set() and upload.is_alive()  # answered during the upload
        finally:
            release.set()
            upload.join(timeout=30)
        assert client.call("POST", "/workers/w/exit", {}) == {}  # connections still good


@pytest.mark.e2e
def test_a_job_whose_thread_fails_leaves_nothing_running(tmp_path: Path) -> None:
    """Its output spool cannot be made (a file is where its folder goes): the job is
    reported as not run, and its process and lease keeper end with its thread."""
    pid_file = tmp_path / "pid"
    work = tmp_path / "w"
    work.mkdir()
    (work / "spool-1.1").write_text("in the way\n")
    script = f"echo $$ > {pid_file}; while true; do echo x; sleep 0.1; done"
    host = StubHost([job(1, script)])
    options = WorkerOptions(WORKER, "q", "d", work, idle_seconds=1, heartbeat_seconds=0.5)
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    reports = [r for _, p, b in host.calls if p.endswith("/complete") for r in b["reports"]]
    assert [r["exit_code"] for r in reports] == [1]
    assert "could not run it" in reports[0]["reason"]
    pid = int(pid_file.read_text())
    wait_until(lambda: not psutil.pid_exists(pid), timeout=10, what="the job's process ended")
    assert not [t.name for t in threading.enumerate() if t.name.startswith("job-")]
    assert not [t for t in threading.enumerate() if t.__class__.__name__ == "LeaseKeeper"]


@pytest.mark.e2e
def test_two_jobs_ending_together_take_the_lease_mark_away(tmp_path: Path) -> None:
    """The lease mark (which the node watches to fence a stalled worker) is gone once
    no job runs, even when the last two end at the same moment."""
    at = time.time() + 1.0
    script = f"#!{sys.executable}\nimport time; time.sleep(max(0, {at} - time.time()))\n"
    host = StubHost([job(1, script), job(2, script)])
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=0.5)
    assert options.self_fence
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    assert host.reported().keys() == {1, 2}
    assert not (tmp_path / "w" / LEASE_MARK).exists()


@pytest.mark.e2e
def test_a_job_started_beside_one_that_ends_keeps_its_processes(tmp_path: Path) -> None:
    """Job 2 is claimed while job 1 runs and ends (and ends what it left behind): job 2
    runs to its own end and its own exit code is reported. (The race itself needs a slow
    teardown to show: job 1 sweeps only while no job can start.)"""
    host = StubHost([job(1, "sleep 0.5 & sleep 0.3")])
    claims = []

    def second_claim_brings_job_2(path: str, body: Any) -> None:
        if path == "claim":
            claims.append(body)
            if len(claims) == 2:
                host.jobs.append(job(2, "sleep 1; exit 3"))

    host.on_call = second_claim_brings_job_2
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=1)
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    reported = host.reported()
    assert reported.keys() == {1, 2}
    assert reported[2][1] == 3


def test_held_jobs_stay_held_when_handing_them_back_fails(tmp_path: Path) -> None:
    host = StubHost([])
    agent = WorkerAgent(host, WorkerOptions(WORKER, "q", "d", tmp_path / "w"))  # type: ignore[arg-type]
    agent._held_jobs.extend([job(1, "true"), job(2, "true")])

    def host_down(path: str, body: Any) -> None:
        raise HostUnreachable("host 'h' is unreachable")

    host.on_call = host_down
    with pytest.raises(HostUnreachable):
        agent._return_held()
    assert [j.id for j in agent._held_jobs] == [1, 2]  # not lost: tried again later
    host.on_call = None
    agent._return_held()
    assert not agent._held_jobs
    assert [b for _, p, b in host.calls if p.endswith("/return")][-1] == {
        "jobs": [{"job_id": 1, "attempt": 1}, {"job_id": 2, "attempt": 1}]
    }


def test_each_held_job_goes_back_when_its_own_claim_is_old(tmp_path: Path) -> None:
    """A job held for room goes back once a third of its lease has passed since its own
    claim, whatever the other held jobs did meanwhile; a young one stays."""
    host = StubHost([])
    agent = WorkerAgent(host, WorkerOptions(WORKER, "q", "d", tmp_path / "w"))  # type: ignore[arg-type]
    old, young = job(1, "true"), job(2, "true")  # leases of 30 s
    agent._held_jobs.extend([*agent._stamp([old], clock() - 11), *agent._stamp([young], clock())])
    agent._hand_back_stale()
    returns = [b for _, p, b in host.calls if p.endswith("/return")]
    assert returns == [{"jobs": [{"job_id": 1, "attempt": 1}]}]
    assert [j.id for j in agent._held_jobs] == [2]


@pytest.mark.e2e
def test_a_job_whose_thread_cannot_start_waits_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread to be had (a process limit): the job is held again and started once a
    thread can be had, instead of the worker waiting for it forever; the CPUs it was
    placed on were let go meanwhile (hyper.worker.devices)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    real_start = threading.Thread.start
    refused: list[str] = []

    def start(thread: threading.Thread) -> None:
        if thread.name == "job-1.1" and not refused:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    host = StubHost([job(1, "exit 4")])
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=1)
    agent = WorkerAgent(host, options)  # type: ignore[arg-type]
    runner = threading.Thread(target=agent.run, daemon=True)
    real_start(runner)
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert refused == ["job-1.1"]
    assert host.reported() == {1: (host.reported()[1][0], 4)}
    locks = DeviceLocks.here()
    held = [locks.take("cpu", cpu) for cpu in sorted(os.sched_getaffinity(0))]
    assert None not in held  # no CPU still held by the worker
    DeviceLocks.free(fd for fd in held if fd is not None)


class FeedingHost(StubHost):
    """Hands out its jobs as a host does: `limit` of them on a claim, `claim_next` with
    a report."""

    def claim(self, worker_id: str, **kwargs: Any) -> list[ClaimedJob]:
        self._record("claim", kwargs)
        return self._take(kwargs.get("limit", 1))

    def complete(self, worker_id: str, body: Completion) -> list[ClaimedJob]:
        self.call("POST", f"/workers/{worker_id}/complete", body)
        return self._take(body["claim_next"])

    def _take(self, count: int) -> list[ClaimedJob]:
        with self.lock:
            taken, self.jobs = self.jobs[:count], self.jobs[count:]
        return taken


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("url", "most"),
    [
        ("http://127.0.0.1:1", 64),
        ("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod", 16),
        ("https://hyper.example.org", 16),  # behind a proxy, say: its limits are not known
    ],
)
def test_short_jobs_are_claimed_in_batches_growing_to_what_the_host_carries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, most: int
) -> None:
    """Reports of short jobs bring back more and more of them, up to 64 from a host on
    the worker's machine (fewer round trips, each costing the host more than a short job)
    and 16 from any other (an AWS host's answers API Gateway keeps within 6 MB); all of
    them run."""
    monkeypatch.setattr(agent_module, "SHORT_JOB_SECONDS", 30.0)  # short, on a busy machine too
    host = FeedingHost([job(n, "true", vcpus=1) for n in range(1, 201)])
    host.url = url  # type: ignore[misc]
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=0.5)
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    asked = [b["claim_next"] for _, p, b in host.calls if p.endswith("/complete")]
    assert max(asked) == most
    claims = [n for n in asked if n]  # a report may also claim nothing (its batch not run)
    assert claims == sorted(claims) and claims[0] < most  # growing while jobs stay short
    assert not [p for _, p, _ in host.calls if p.endswith("/return")]
    assert sorted(host.reported()) == list(range(1, 201))


@pytest.mark.e2e
def test_jobs_held_behind_a_job_that_turned_out_long_go_back_within_a_second(
    tmp_path: Path,
) -> None:
    """Jobs claimed to follow a job that then runs long go back to the host after about a
    second, for other workers, not after a third of their lease (10 s here)."""
    host = StubHost([job(1, "sleep 3", vcpus=1), job(2, "true", vcpus=1), job(3, "true", vcpus=1)])
    options = WorkerOptions(WORKER, "q", "d", tmp_path / "w", idle_seconds=0.5)
    assert WorkerAgent(host, options).run() == 0  # type: ignore[arg-type]
    returns = [(at, b) for at, p, b in host.calls if p.endswith("/return")]
    assert [b for _, b in returns] == [
        {"jobs": [{"job_id": 2, "attempt": 1}, {"job_id": 3, "attempt": 1}]}
    ]
    assert 0.9 < returns[0][0] < 2.5
    assert list(host.reported()) == [1]
