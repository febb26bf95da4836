"""Files over 4 MB on an AWS host: past API Gateway and Lambda (6 MB a request), by a
presigned URL of exactly that object in the host's bucket (hyper/host/routes/files.py).

The host app runs on the DynamoDB store behind the loopback API Gateway and Lambda
(tests/helpers/aws_gateway.py, AWS's 6 MB and 29 s), its tables and bucket in a moto
server that the presigned URLs point at, as they would point at S3."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from hyper.client import HostClient
from hyper.errors import Conflict, HostFailure, NotFound
from hyper.host.app import create_app
from hyper.host.lambda_adapter import LambdaApp
from hyper.host_settings import HostSettings
from hyper.jobs import INLINE_FILE_BYTES, LINK_SECONDS
from hyper.key_headers import key_headers
from hyper.resources import SAMPLE_DEFINITION, SAMPLE_QUEUE
from hyper.store import dynamodb_tables as tables
from hyper.store.dynamodb import DynamoDBStore
from hyper.worker_tokens import ENVIRONMENT as TOKEN_ENVIRONMENT
from hyper.worker_tokens import WorkerTokens, worker_group
from tests.conftest import wait_until
from tests.helpers.api import submission
from tests.helpers.aws_gateway import STAGE, Gateway
from tests.helpers.moto import moto_server
from tests.helpers.presigned import checking_s3

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
BUCKET = "hyper-h1-bucket"
KEY = "Key0123456789abcdefghijKLMNOP"
WORKER_KEY = "Worker0123456789abcdefghijKL"
MB = 1_000_000

# a moto server and the loopback gateway: about 3 s a test
pytestmark = pytest.mark.e2e


@dataclass
class AwsHost:
    gateway: Gateway
    url: str
    s3: Any  # S3's check of presigned URLs in front of moto: its `.refused`

    def client(self) -> HostClient:
        return HostClient(self.url, KEY, retries=1)

    def worker(self, worker_id: str) -> HostClient:
        token = WorkerTokens(KEY).token(worker_group(worker_id))
        return HostClient(self.url, WORKER_KEY, retries=1, worker_token=token)


@pytest.fixture
def aws_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsHost]:
    with moto_server(monkeypatch) as endpoint, checking_s3(endpoint, "testing") as s3:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": s3.url,  # every S3 call, and so every link, goes there
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        tables.create_tables(boto3.client("dynamodb", region_name=REGION), "hyper-h1")
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )

        def factory() -> LambdaApp:
            settings = HostSettings(data_dir=tmp_path, api_key=KEY, worker_key=WORKER_KEY,
                                    name="h1", url="https://h1.example")  # fmt: skip
            store = DynamoDBStore("hyper-h1", REGION, BUCKET, bucket_owner=ACCOUNT)
            return LambdaApp(app=create_app(settings, store))

        with Gateway.of(KEY, {"api": {}}, "api", factories={"api": factory}) as gateway:
            gateway.add_worker_key(WORKER_KEY)  # the workers' usage plan
            yield AwsHost(gateway, f"{gateway.url}/{STAGE}", s3)
            assert not gateway.api.errors


SIGNATURE_REFUSED = (
    "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated"
    " does not match</Message></Error>"
)


def md5_header(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def payload(size: int) -> bytes:
    return os.urandom(size)


def raw(host: AwsHost, method: str, path: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(f"{host.url}{path}", data=body, method=method,
                                     headers=key_headers(KEY))  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


def test_a_20_mb_file_goes_up_and_down_by_presigned_url(aws_host: AwsHost) -> None:
    data = payload(20 * MB)
    with aws_host.client() as client:
        client.put_file("inputs/big.bin", data)
        assert client.get_file("inputs/big.bin") == data
        small = payload(1000)  # small files keep the API's own path: one request each way
        client.put_file("inputs/small.bin", small)
        assert client.get_file("inputs/small.bin") == small
    s3 = boto3.client("s3", region_name=REGION)
    head = s3.head_object(Bucket=BUCKET, Key="files/inputs/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    # both went by link, as S3 takes one (tests/helpers/presigned.py)
    assert aws_host.s3.checked == 2 and not aws_host.s3.refused
    # none of the big file's bytes went through the function
    paths = [c["path"] for c in aws_host.gateway.api.calls]
    assert "/links/upload/inputs/big.bin" in paths and "/links/uploaded/inputs/big.bin" in paths
    assert all(len(json.dumps(c)) < 100_000 for c in aws_host.gateway.api.calls
               if "big.bin" in c["path"])  # fmt: skip


def test_a_link_names_one_object_for_a_short_time_and_the_bucket_owner(aws_host: AwsHost) -> None:
    with aws_host.client() as client:
        md5 = hashlib.md5(b"x" * (5 * MB)).hexdigest()
        link = client.call("POST", "/links/upload/a/b.bin", {"size": 5 * MB, "md5": md5})["link"]
        assert link["method"] == "PUT" and link["size"] == 5 * MB
        assert link["headers"]["x-amz-expected-bucket-owner"] == ACCOUNT
        url = urlsplit(link["url"])
        assert url.path == f"/{BUCKET}/files/a/b.bin"
        query = parse_qs(url.query)
        assert query["X-Amz-Expires"] == [str(LINK_SECONDS)]
        signed = query["X-Amz-SignedHeaders"][0].split(";")
        assert {"content-md5", "content-length", "x-amz-expected-bucket-owner"} <= set(signed)
        # a file small enough for the API itself is answered with its bytes
        client.put_file("a/small.bin", b"s" * INLINE_FILE_BYTES)
        assert client.get_file("a/small.bin") == b"s" * INLINE_FILE_BYTES
        with pytest.raises(NotFound):
            client.get_file("a/none.bin")


def put(link: dict[str, Any], data: bytes, url: str = "", **headers: str) -> tuple[int, str]:
    """A PUT to a link as any HTTP client would do it: its status and body."""
    where = urlsplit(url or link["url"])
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        connection.request("PUT", f"{where.path}?{where.query}", body=data,
                           headers={**link["headers"], **headers})  # fmt: skip
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_s3_refuses_a_link_used_for_another_key_other_bytes_or_too_late(
    aws_host: AwsHost,
) -> None:
    data = payload(5 * MB)
    body = {"size": len(data), "md5": hashlib.md5(data).hexdigest()}
    with aws_host.client() as client:
        link = client.call("POST", "/links/upload/jobs/1/a.bin", body)["link"]
    other_key = link["url"].replace("/files/jobs/1/a.bin", "/files/jobs/2/a.bin")
    assert put(link, data, other_key) == (403, SIGNATURE_REFUSED)
    other = payload(5 * MB)
    assert put(link, other, **{"Content-MD5": md5_header(other)})[0] == 403
    assert put(link, data + b"x")[0] == 403  # another length
    assert put(link, data)[0] == 200
    assert len(aws_host.s3.refused) == 3
    # a link of one second, used two seconds later
    store = DynamoDBStore("hyper-h1", REGION, BUCKET, bucket_owner=ACCOUNT)
    short = store.upload_link("jobs/1/b.bin", 1, hashlib.md5(b"b").hexdigest(), 1)
    store.close()
    wait_until(lambda: time.time() > short["expires"] + 1.5, timeout=10, what="the link to expire")
    status, answer = put(short, b"b")
    assert status == 403 and "expired" in answer


def test_an_upload_cut_off_midway_is_not_acknowledged(aws_host: AwsHost) -> None:
    data = payload(10 * MB)
    md5 = hashlib.md5(data).hexdigest()
    with aws_host.client() as client:
        body = {"size": len(data), "md5": md5}
        link = client.call("POST", "/links/upload/cut/off.bin", body)["link"]
        # the connection drops after half the bytes
        url = urlsplit(link["url"])
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            head = [f"PUT {url.path}?{url.query} HTTP/1.1", f"Host: {url.netloc}",
                    f"Content-Length: {len(data)}"]  # fmt: skip
            head += [f"{name}: {value}" for name, value in link["headers"].items()]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data[: len(data) // 2])
        with pytest.raises(Conflict, match=r"did not arrive whole|has not arrived"):
            client.call("POST", "/links/uploaded/cut/off.bin", body)
        # the client's own upload of it then goes through
        client.put_file("cut/off.bin", data)
        client.call("POST", "/links/uploaded/cut/off.bin", body)
        assert client.get_file("cut/off.bin") == data
        # other bytes under that key are not taken for the file either
        with pytest.raises(Conflict, match="did not arrive whole"):
            client.call("POST", "/links/uploaded/cut/off.bin", {**body, "md5": "0" * 32})


def test_a_worker_moves_its_own_jobs_files_by_link_and_no_others(aws_host: AwsHost) -> None:
    package = payload(6 * MB)
    with aws_host.client() as client:
        client.put_file("packages/p1.tar.gz", package)
        ids = client.submit([submission("a", package="packages/p1.tar.gz"), submission("b")])
    with aws_host.worker("w-1-0") as worker, aws_host.worker("w-2-0") as other:
        (claimed,) = worker.claim("w-1-0", queue=SAMPLE_QUEUE, definition=SAMPLE_DEFINITION,
                                  limit=1, wait=0)  # fmt: skip
        held = claimed.id
        assert held == ids[0]
        assert worker.get_job_package("w-1-0", held) == package
        collected = payload(5 * MB)
        worker.put_job_file("w-1-0", held, "out/result.bin", collected)
        # another worker holds nothing: it gets no link, for this job's files or any
        with pytest.raises(Conflict, match="does not hold job"):
            other.get_job_package("w-2-0", held)
        with pytest.raises(Conflict, match="does not hold job"):
            other.put_job_file("w-2-0", held, "out/result.bin", payload(5 * MB))
        with pytest.raises(Conflict, match="does not hold job"):
            worker.put_job_file("w-1-0", ids[1], "out/result.bin", payload(5 * MB))
        # nor outside its own routes: the files' routes and links are the host key's
        token = WorkerTokens(KEY).token(worker_group("w-1-0"))
        request = urllib.request.Request(
            f"{aws_host.url}/links/upload/jobs/{held}/x.bin",
            data=json.dumps({"size": 5 * MB, "md5": "0" * 32}).encode(), method="POST",
            headers={**key_headers(WORKER_KEY), "x-hyper-worker-token": token,
                     "Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code in (401, 403)
        refused.value.close()
    with aws_host.client() as client:
        assert client.get_file(f"jobs/{held}/out/result.bin") == collected


def test_a_real_worker_unpacks_a_big_package_and_collects_a_big_file(
    aws_host: AwsHost, tmp_path: Path
) -> None:
    """The worker agent as Batch starts it (the worker key and its launch's token),
    against the gateway: a 6 MB package in, a 12 MB file collected out, both by link."""
    data = payload(6 * MB)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:  # stays 6 MB
        info = tarfile.TarInfo("data.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert len(buffer.getvalue()) > INLINE_FILE_BYTES
    with aws_host.client() as client:
        client.put_file("packages/big.tar", buffer.getvalue())
        script = "cat data.bin data.bin > out.bin\n"
        big = submission("big", package="packages/big.tar", collect=["out.bin"], script=script)
        (job_id,) = client.submit([big])
    worker_id = "b-1a2b-0"
    env = {**os.environ, "HYPER_API_KEY": WORKER_KEY,
           TOKEN_ENVIRONMENT: WorkerTokens(KEY).token(worker_group(worker_id))}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "hyper.worker", "--url", aws_host.url, "--worker-id", worker_id,
         "--queue", SAMPLE_QUEUE, "--definition", SAMPLE_DEFINITION,
         "--workdir", str(tmp_path / "work"), "--idle-seconds", "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with aws_host.client() as client:
        job = client.get_job(job_id)
        log = client.read_log(job_id, kinds=["STDERR", "SYSTEM"])
        texts = [e.get("text") for e in log["entries"]]
        assert job["status"] == "Successful", (texts, done.stderr)
        assert client.get_file(f"jobs/{job_id}/out.bin") == data + data
    paths = [c["path"] for c in aws_host.gateway.api.calls]
    assert f"/workers/{worker_id}/jobs/{job_id}/links/uploaded/out.bin" in paths
    assert aws_host.gateway.answers[307] == 2  # the package, and the test's own GET


def test_the_6_mb_limit_still_holds_for_everything_else(aws_host: AwsHost) -> None:
    # a file sent to the API itself, as an older client would
    assert raw(aws_host, "PUT", "/files/inline.bin", b"x" * (5 * MB)) == 413
    assert raw(aws_host, "PUT", "/files/inline.bin", b"x" * MB) == 204
    # a submit of 7 MB
    body = json.dumps({"jobs": [submission(script="#" + "y" * (7 * MB))]}).encode()
    assert raw(aws_host, "POST", "/jobs", body) == 413
    assert aws_host.gateway.answers[413] == 2


@pytest.mark.parametrize("code", ["ExpiredToken", "AccessDenied"])
def test_a_link_dead_with_its_signers_session_is_asked_for_again_once(
    aws_host: AwsHost, code: str
) -> None:
    """S3 ends a link signed with temporary credentials (the function's) when they expire,
    before its X-Amz-Expires: the client asks the host for a fresh link once, up and
    down, and then gives up with one line."""
    data = payload(7 * MB)
    s3 = aws_host.s3
    s3.expired_code = code
    with aws_host.client() as client:
        s3.expire = 1  # the first link dies
        client.put_file("inputs/late.bin", data)
        assert s3.expire == 0 and len(s3.refused) == 1
        s3.expire = 1
        assert client.get_file("inputs/late.bin") == data
        assert s3.expire == 0 and len(s3.refused) == 2
        paths = [c["path"] for c in aws_host.gateway.api.calls]
        assert paths.count("/links/upload/inputs/late.bin") == 2
        assert paths.count("/files/inputs/late.bin") == 2  # a link asked for twice

        s3.expire = 2  # the fresh link too: one line, nothing taken for sent
        with pytest.raises(HostFailure) as failed:
            client.put_file("inputs/never.bin", data)
        assert "\n" not in str(failed.value) and "a fresh link too" in str(failed.value)
        assert code in str(failed.value)
        s3.expire = 2
        with pytest.raises(HostFailure) as failed:
            client.get_file("inputs/late.bin")
        assert "\n" not in str(failed.value) and "a fresh link too" in str(failed.value)
        with pytest.raises(NotFound):
            client.get_file("inputs/never.bin")
