"""The host's file store: its HTTP routes (in-process), the client (against a real local
daemon), and jobs that carry a package in and collect files out, run by real workers."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hyper import hosts
from hyper.client import HostClient
from hyper.errors import HostRejected, NotFound, UsageError
from hyper.host_settings import HostSettings
from hyper.jobs import MAX_FILE_BYTES
from hyper.transport import SocketTransport
from tests.conftest import LocalHost
from tests.helpers.api import InProcessTransport, submission, submit

# the routes -------------------------------------------------------------------------------


def test_put_get_and_delete_a_file(api: TestClient) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB of every byte value
    response = api.put("/files/pkg/one.tar.gz", content=data)
    assert response.status_code == 204, response.text
    answer = api.get("/files/pkg/one.tar.gz")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.content == data
    api.put("/files/pkg/two", content=b"2")
    api.put("/files/pkg2", content=b"neighbour")
    deleted = api.delete("/files/pkg")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 2}
    assert api.get("/files/pkg/one.tar.gz").status_code == 404
    assert api.get("/files/pkg2").content == b"neighbour"


def test_a_missing_file_is_404_with_its_key(api: TestClient) -> None:
    response = api.get("/files/not/there")
    assert response.status_code == 404
    assert response.json() == {"detail": "no file 'not/there' on this host"}


@pytest.mark.parametrize(
    "key",
    ["a/%2E%2E/b", "%2E%2E", "a/%2E/b", "a//b", "/a", "a/", "a%20b", "a%00b", "é", "k" * 513],
)
def test_bad_keys_are_refused_with_422(api: TestClient, key: str) -> None:
    for method in ("PUT", "GET", "DELETE"):
        response = api.request(method, f"/files/{key}", content=b"x")
        assert response.status_code == 422, (method, key, response.text)
    assert api.get("/files/a/b").status_code == 404  # nothing was stored meanwhile


def test_the_longest_key_is_taken(api: TestClient) -> None:
    key = "/".join(["k" * 255, "k" * 256])
    assert len(key) == 512
    assert api.put(f"/files/{key}", content=b"x").status_code == 204
    assert api.get(f"/files/{key}").content == b"x"


def _chunks(total: int, size: int = 2**20) -> Iterator[bytes]:
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_file_above_64_mib_is_refused_with_413(api: TestClient, declared: bool) -> None:
    over = MAX_FILE_BYTES + 1
    body: Any = b"x" * over if declared else _chunks(over)
    response = api.put("/files/big", content=body)
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "a file is at most 64 MiB"}
    assert api.get("/files/big").status_code == 404
    assert api.put("/files/big", content=_chunks(MAX_FILE_BYTES)).status_code == 204


def test_a_host_on_disk_gives_no_links_and_takes_big_files_itself(
    api: TestClient, settings: HostSettings
) -> None:
    """Links (presigned URLs) are an AWS host's: a host whose store is on disk answers the
    ask for one with null, takes the file itself, and answers a GET with its bytes."""
    body = {"size": 5_000_000, "md5": "0" * 32}
    assert api.post("/links/upload/big.bin", json=body).json() == {"link": None}
    refused = api.post("/links/uploaded/big.bin", json=body)
    assert refused.status_code == 400 and "send the file itself" in refused.text
    assert api.post("/links/upload/big.bin", json={**body, "md5": "x"}).status_code == 422
    client = HostClient("http://127.0.0.1:1", settings.api_key, transport=InProcessTransport(api))
    data = bytes(range(256)) * 20_000  # 5 MB: over an AWS host's 4 MB, asked for a link
    client.put_file("big.bin", data)
    assert client.get_file("big.bin") == data
    assert api.get("/files/big.bin").status_code == 200


def test_a_link_is_followed_with_the_host_it_was_signed_for() -> None:
    """S3 checks a presigned URL's signature against the Host header: a default port is
    not named in it, as in the URL."""
    named = {
        "https://b.s3.eu-west-1.amazonaws.com": "b.s3.eu-west-1.amazonaws.com",
        "http://127.0.0.1": "127.0.0.1",
        "http://127.0.0.1:5000": "127.0.0.1:5000",
        "https://h.example:8443": "h.example:8443",
    }
    for url, host in named.items():
        assert SocketTransport(url, 1).host_header == host, url


def test_a_submission_keeps_its_package_and_collect_paths(api: TestClient) -> None:
    (job_id,) = submit(api, submission(package="pkg/a.tar.gz", collect=["out/r.txt", "log"]))
    options = api.get(f"/jobs/{job_id}").json()["options"]
    assert (options["package"], options["collect"]) == ("pkg/a.tar.gz", ["out/r.txt", "log"])


@pytest.mark.parametrize(
    "fields",
    [
        {"package": "../a"},
        {"package": ""},
        {"collect": ["/etc/passwd"]},
        {"collect": ["out/../../x"]},
        {"collect": ["./x"]},
        {"collect": [f"f{n}" for n in range(101)]},
    ],
)
def test_bad_package_or_collect_fields_are_refused(api: TestClient, fields: dict[str, Any]) -> None:
    response = api.post("/jobs", json={"jobs": [submission(**fields)]})
    assert response.status_code == 422, response.text
    assert api.get("/jobs/counts").json()["Total"] == 0


# the client, against a real daemon ------------------------------------------------------


@pytest.fixture
def client(local: LocalHost) -> Iterator[HostClient]:
    with hosts.connect("local") as connected:
        yield connected


@pytest.mark.e2e
def test_the_client_puts_gets_and_deletes_files(client: HostClient) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB, every byte value
    client.put_file("results/run-1.bin", data)
    assert client.get_file("results/run-1.bin") == data
    client.delete_files("results")
    with pytest.raises(NotFound, match=r"no file 'results/run-1\.bin'"):
        client.get_file("results/run-1.bin")
    with pytest.raises(HostRejected, match="key"):
        client.get_file("a/../b")
    with pytest.raises(UsageError, match="at most 64 MiB"):
        client.put_file("too-big", bytes(MAX_FILE_BYTES + 1))
    with pytest.raises(NotFound):
        client.get_file("too-big")


# packages and collected files, run by real workers ---------------------------------------


def archive(files: dict[str, bytes], *, modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def link_archive(name: str, target: str, *, hard: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
        tar.addfile(info)
    return buffer.getvalue()


def job_with(script: str, **fields: Any) -> dict[str, Any]:
    return {"name": "packaged", "queue": "sample-queue-1", "definition": "sample-def-1",
            "script": script, **fields}  # fmt: skip


RUN = """#!/bin/bash
echo "cwd=$PWD"
echo "workdir=$HYPER_WORKDIR"
cat data/input.txt
bin/tool.sh
mkdir -p out
echo "result of $HYPER_JOB_ID" > out/result.txt
truncate -s 67108865 big.bin
ln -s /etc/hostname link.txt
exit 3
"""


@pytest.mark.e2e
def test_a_job_runs_in_its_unpacked_package_and_collects_what_it_made(
    local: LocalHost, client: HostClient
) -> None:
    package = archive(
        {"data/input.txt": b"input data\n", "bin/tool.sh": b"#!/bin/sh\necho tool ran\n"},
        modes={"bin/tool.sh": 0o755},
    )
    client.put_file("packages/p1.tar.gz", package)
    collect = ["out/result.txt", "big.bin", "link.txt", "never-made.txt", "out"]
    (job_id,) = client.submit([job_with(RUN, package="packages/p1.tar.gz", collect=collect)])
    record = local.wait_finished(job_id)
    # the job failed, and what it made was collected all the same
    assert (record["status"], record["exit_code"]) == ("Failed", 3)
    out = local.ok("qlog", "-t", "STDOUT", str(job_id)).splitlines()
    cwd, workdir = out[0].removeprefix("cwd="), out[1].removeprefix("workdir=")
    assert cwd == workdir and Path(cwd).name == f"job-{job_id}.1"
    assert Path(cwd).is_relative_to(local.data_dir / "workers")
    assert out[2:] == ["input data", "tool ran"]
    assert not Path(cwd).exists()  # removed after the attempt
    assert client.get_file(f"jobs/{job_id}/out/result.txt") == f"result of {job_id}\n".encode()
    for skipped in ("big.bin", "link.txt", "never-made.txt", "out"):
        with pytest.raises(NotFound):
            client.get_file(f"jobs/{job_id}/{skipped}")
    stderr = local.ok("qlog", "-t", "STDERR", str(job_id))
    assert stderr == "hyper: not collected: big.bin: 67108865 bytes, above 67108864 bytes\n"


@pytest.mark.e2e
def test_every_task_of_an_array_gets_the_package_and_collects_its_own(
    local: LocalHost, client: HostClient
) -> None:
    client.put_file("packages/greet.tar.gz", archive({"greeting": b"hello"}))
    script = 'echo "$(cat greeting) from task $HYPER_ARRAY_INDEX" > out.txt\n'
    fields = {"package": "packages/greet.tar.gz", "collect": ["out.txt"]}
    (array_id,) = client.submit([job_with(script, array={"spec": "1-3"}, **fields)])
    assert local.wait_finished(array_id)["status"] == "Successful"
    for index in (1, 2, 3):
        data = client.get_file(f"jobs/{array_id + index}/out.txt")
        assert data == f"hello from task {index}\n".encode()


BAD_PACKAGES = {
    "not gzip": (b"plain text, not an archive", "could not be unpacked"),
    "parent": (archive({"../escaped.txt": b"x"}), "'../escaped.txt' would be unpacked outside"),
    "absolute": (archive({"/tmp/escaped.txt": b"x"}), "would be unpacked outside"),
    "symlink out": (link_archive("evil", "../../.."), "link 'evil' points outside"),
    "absolute symlink": (link_archive("evil", "/etc"), "link 'evil' points outside"),
    "hard link out": (link_archive("evil", "../x", hard=True), "'evil' is a hard link"),
}


@pytest.mark.e2e
def test_a_package_that_cannot_be_fetched_or_unpacked_ends_the_attempt_with_exit_1(
    local: LocalHost, client: HostClient
) -> None:
    expected = {"missing": "package 'packages/missing' could not be fetched: no file"}
    jobs = [job_with("echo never ran\n", package="packages/missing")]
    for name, (data, why) in BAD_PACKAGES.items():
        key = f"packages/{name.replace(' ', '-')}"
        client.put_file(key, data)
        jobs.append(job_with("echo never ran\n", package=key))
        expected[name] = why
    ids = client.submit(jobs)
    for job_id, (name, why) in zip(ids, expected.items(), strict=True):
        record = local.wait_finished(job_id)
        assert (record["status"], record["exit_code"]) == ("Failed", 1), name
        assert why in record["reason"], (name, record["reason"])
        assert local.ok("qlog", str(job_id)) == ""
    workers = local.data_dir / "workers"
    assert not list(workers.rglob("escaped.txt")) and not Path("/tmp/escaped.txt").exists()
    assert not list(workers.rglob("job-*.1"))  # no folder left behind
