"""Limits on every door (issue 17, finding 7, but the time limit): a request's body and
its number of jobs are bounded (the clients split bigger submits), uploads go to disk a
few at a time, a connection must send its head in time, each door holds a bounded number
of connections, and a flood of silent connections never keeps the owner out."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hyper import config, hosts, local_host
from hyper.client import (
    LAMBDA_FILE_BYTES,
    LAMBDA_SUBMIT_BYTES,
    SUBMIT_BATCH_BYTES,
    SUBMIT_BATCH_JOBS,
    HostClient,
    _batches,
    on_lambda,
    on_this_machine,
)
from hyper.errors import UsageError
from hyper.host.app import create_app
from hyper.host.serving import MAX_HEAD_BYTES
from hyper.host_settings import HostSettings
from hyper.jobs import MAX_FILE_BYTES
from hyper.store.sqlite import SQLiteStore
from tests.conftest import LocalHost
from tests.helpers.flood import silent_tcp_connections

Q, D = "sample-queue-1", "sample-def-1"


def job(n: int = 0, script: str = "echo hi\n") -> dict[str, object]:
    return {"name": f"j{n}", "queue": Q, "definition": D, "script": script, "hold": True}


@pytest.fixture
def strict_api(tmp_path: Path) -> Iterator[TestClient]:
    settings = HostSettings(
        data_dir=tmp_path, api_key="k", max_body_bytes=20_000, max_jobs_per_request=5
    )
    store = SQLiteStore(tmp_path / "hyper.db")
    with TestClient(create_app(settings, store), headers={"x-api-key": "k"}) as client:
        yield client
    store.close()


def test_a_body_beyond_the_limit_is_refused(strict_api: TestClient) -> None:
    big = {"jobs": [job(0, "#" + "x" * 30_000 + "\n")]}
    answer = strict_api.post("/jobs", json=big)
    assert answer.status_code == 413 and "at most" in answer.json()["detail"]


def test_a_streamed_body_beyond_the_limit_is_refused(strict_api: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"jobs": [{"name": "a", "script": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    answer = strict_api.post(
        "/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413


def test_the_key_is_checked_before_the_size(strict_api: TestClient) -> None:
    answer = strict_api.post(
        "/jobs", content=b"x" * 50_000, headers={"x-api-key": "wrong", "content-length": "50000"}
    )
    assert answer.status_code == 401


def test_too_many_jobs_in_one_request(strict_api: TestClient) -> None:
    answer = strict_api.post("/jobs", json={"jobs": [job(n) for n in range(6)]})
    assert answer.status_code == 413 and "at most 5 jobs" in answer.json()["detail"]
    assert strict_api.get("/jobs/counts").json().get("Held", 0) == 0  # nothing kept
    assert strict_api.post("/jobs", json={"jobs": [job(n) for n in range(5)]}).status_code == 200


def test_the_client_splits_by_count_and_by_size() -> None:
    many = [job(n) for n in range(2 * SUBMIT_BATCH_JOBS + 1)]
    assert [len(b) for b in _batches(many)] == [SUBMIT_BATCH_JOBS, SUBMIT_BATCH_JOBS, 1]
    heavy = [job(n, "#" + "y" * 3_000_000 + "\n") for n in range(12)]
    batches = list(_batches(heavy))
    assert sum(len(b) for b in batches) == 12 and len(batches) > 1
    assert [j for b in batches for j in b] == heavy  # in order
    assert all(sum(len(str(j["script"])) for j in b) <= SUBMIT_BATCH_BYTES for b in batches)


def test_which_urls_are_this_machine_and_which_api_gateway() -> None:
    """Loopback addresses and the Unix socket are this machine (a worker asks more of
    them at once); a name merely starting like one is not. China's API Gateway is AWS's."""
    for url in ("unix:/h/hyper.sock", "http://127.0.0.1:8", "https://[::1]:9/", "http://localhost"):
        assert on_this_machine(url), url
    for url in ("http://127.example.com", "http://10.0.0.1:8", "https://hyper.example.org"):
        assert not on_this_machine(url), url
    assert on_lambda("https://abc.execute-api.cn-north-1.amazonaws.com.cn/v1")


def test_an_aws_hosts_client_keeps_within_lambdas_6_mb() -> None:
    """API Gateway and Lambda carry at most 6 MB each way, bodies base64-encoded: a client
    of an AWS host (its URL says so) sends submits and files that fit, and refuses a
    bigger job in one line before sending anything."""
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
    assert on_lambda(url) and not on_lambda("http://127.0.0.1:8080")
    assert not on_lambda("https://example.com/execute-api.amazonaws.com")
    lambda_limit = 6_000_000
    envelope = 20_000  # the event's headers, path and context
    heavy = [job(n, "#" + "y" * 700_000 + "\n") for n in range(12)]
    batches = list(_batches(heavy, LAMBDA_SUBMIT_BYTES))
    assert [j for b in batches for j in b] == heavy and len(batches) > 2
    for batch in batches:
        body = json.dumps({"jobs": batch}).encode()
        assert len(base64.b64encode(body)) + envelope < lambda_limit
    assert len(base64.b64encode(b"x" * LAMBDA_FILE_BYTES)) + envelope < lambda_limit
    client = HostClient(url, "k")  # nothing is sent below: the size is refused first
    try:
        # a bigger file goes by a presigned URL (tests/test_aws_file_links.py)
        assert client.max_file_bytes == LAMBDA_FILE_BYTES
        with pytest.raises(UsageError) as refused:  # one job too big: none is sent
            client.submit([job(1), job(2, "#" + "y" * LAMBDA_SUBMIT_BYTES + "\n")])
        assert "job 2 of the submit" in str(refused.value)
    finally:
        client.close()
    assert HostClient("http://127.0.0.1:1", "k").max_file_bytes == MAX_FILE_BYTES


def test_limits_are_settings_with_their_numbers() -> None:
    settings = HostSettings(data_dir=Path("."), api_key="k")
    assert settings.max_body_bytes == 32 * 2**20
    assert settings.max_jobs_per_request == SUBMIT_BATCH_JOBS == 10_000
    assert settings.max_body_bytes == SUBMIT_BATCH_BYTES * 2
    assert (settings.max_uploads, settings.max_connections, settings.max_tcp_connections) == (
        4,
        1000,
        256,
    )
    assert (settings.header_timeout_seconds, settings.idle_timeout_seconds) == (10.0, 30.0)
    assert settings.tls_handshake_seconds == 10.0 and MAX_HEAD_BYTES == 64 * 1024


# a real daemon ---------------------------------------------------------------------------


def tune(local: LocalHost, **values: object) -> None:
    """Restart the host with these settings."""
    host = config.load_host("local")
    local_host.stop(host)
    settings = HostSettings.load(local.data_dir)
    for name, value in values.items():
        setattr(settings, name, value)
    settings.save()
    local_host.start(config.load_host("local"))


def unix_connection(local: LocalHost) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    folder = os.open(local.data_dir, os.O_PATH)
    try:
        sock.connect(f"/proc/self/fd/{folder}/hyper.sock")
    finally:
        os.close(folder)
    return sock


def closed_within(sock: socket.socket, seconds: float, since: float | None = None) -> float:
    """How long from `since` (default: now) until the server closes `sock` (fails past
    `seconds`)."""
    start = time.monotonic() if since is None else since
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


@pytest.mark.e2e
def test_a_huge_submit_is_split_by_the_client_and_loses_nothing(local: LocalHost) -> None:
    with hosts.connect() as client:
        ids = client.submit([job(n) for n in range(SUBMIT_BATCH_JOBS + 7)])
        assert len(ids) == len(set(ids)) == SUBMIT_BATCH_JOBS + 7 and ids == sorted(ids)
        assert client.count_jobs()["Held"] == SUBMIT_BATCH_JOBS + 7


@pytest.mark.e2e
def test_one_request_beyond_the_limits_is_refused_with_one_line(local: LocalHost) -> None:
    """The issue's probe, smaller: one POST /jobs with more jobs than allowed, past the
    client that would have split it."""
    from hyper.errors import HostRejected

    with hosts.connect() as client:
        with pytest.raises(HostRejected, match="at most 10000 jobs per request"):
            client.call("POST", "/jobs", {"jobs": [job(n) for n in range(10_001)]})
        with pytest.raises(HostRejected, match="at most 32 MiB"):
            client.call(
                "POST", "/jobs", {"jobs": [job(n, "#" + "z" * 3_000_000) for n in range(12)]}
            )
        assert client.count_jobs().get("Held", 0) == 0
    assert "Total: 0 " in local.ok("qstat")


@pytest.mark.e2e
def test_a_silent_or_slow_head_is_cut_off(local: LocalHost) -> None:
    tune(local, header_timeout_seconds=1.5, idle_timeout_seconds=3.0)
    since = time.monotonic()
    silent = unix_connection(local)
    half = unix_connection(local)
    half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nx-api-")
    huge = unix_connection(local)
    with contextlib.suppress(OSError):
        huge.sendall(b"GET /health HTTP/1.1\r\nx-pad: " + b"p" * (MAX_HEAD_BYTES + 10))
    assert closed_within(huge, 10, since) < 1.0
    for sock in (silent, half):
        assert 1.0 < closed_within(sock, 10, since) < 6
    # a kept-alive connection with nothing to say goes after the idle timeout
    idle = unix_connection(local)
    key = config.load_host("local").api_key
    idle.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n".encode())
    assert idle.recv(100).startswith(b"HTTP/1.1 200")
    assert 2.0 < closed_within(idle, 10) < 8
    for sock in (silent, half, huge, idle):
        sock.close()
    assert "Total: 0 " in local.ok("qstat")


@pytest.mark.e2e
def test_a_flood_of_silent_connections_on_the_socket_leaves_the_owner_in(local: LocalHost) -> None:
    tune(local, max_connections=50, header_timeout_seconds=60.0)
    flood = [unix_connection(local) for _ in range(500)]
    try:
        started = time.monotonic()
        for _ in range(5):
            assert "Total: 0 " in local.ok("qstat")
        assert time.monotonic() - started < 30
    finally:
        for sock in flood:
            sock.close()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.beside  # its own daemon's limits, whatever the machine's load
def test_19980_half_open_tcp_connections_leave_the_owner_in(local: LocalHost) -> None:
    """The issue's probe: 19,980 connections without a key on the TCP door, all open at
    once. The owner's commands (the socket) answer meanwhile, the daemon holds a bounded
    number of files, and the door takes clients again once the flood is gone."""
    local.ok("hyper", "hosts", "update-host", "--bind", "127.0.0.1")
    tls_url = config.load_host("local").tls_url
    assert tls_url
    port = int(tls_url.split("#")[0].rsplit(":", 1)[1])
    local.ok(
        "hyper", "hosts", "import-deployment", "--name", "remote", "--url", tls_url,
        "--api-key-file", "-", input=config.load_host("local").api_key + "\n",
    )  # fmt: skip
    answers: list[float] = []
    with silent_tcp_connections(port, 19_980):
        for _ in range(3):
            started = time.monotonic()
            assert "Total: 0 " in local.ok("qstat")
            answers.append(time.monotonic() - started)
        daemon_files = len(os.listdir(f"/proc/{local.daemon_pid()}/fd"))
    assert max(answers) < 15, answers
    assert daemon_files < 1000, daemon_files
    assert "Total: 0 " in local.ok("qstat", "--host", "remote", timeout=60)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.beside  # its own daemon's limits, whatever the machine's load
def test_concurrent_uploads_are_streamed_to_disk(local: LocalHost) -> None:
    """The issue's probe, smaller: 8 uploads of 40 MB at once. The daemon's peak memory
    stays far below their sum, and every file arrives whole."""
    size, count = 40 * 2**20, 8
    payloads = [bytes([n]) * size for n in range(count)]
    errors: list[BaseException] = []

    def upload(n: int) -> None:
        try:
            with hosts.connect(timeout=300) as client:
                client.put_file(f"big/{n}", payloads[n])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    peak_kib = _peak_kib(local.daemon_pid())
    assert peak_kib < 250 * 1024, f"daemon peak {peak_kib // 1024} MiB"
    with hosts.connect(timeout=300) as client:
        for n in (0, count - 1):
            assert client.get_file(f"big/{n}") == payloads[n]


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")
