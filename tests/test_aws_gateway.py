"""A new user's AWS host, from the shell: `hyper hosts create-host --provider aws` with
flags only against a moto server, then regions, a cluster, a queue and a definition
made through the host's API (each change run by the host's deploy function), then
`qsub`, `qstat`, `qlog` and `qdel` unchanged, with a worker started as Batch would start
the array the host submitted. API Gateway and Lambda are played on loopback by
tests/aws_gateway.py, since moto cannot run the functions."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from hyper.client import HostClient
from tests.aws_gateway import STAGE, Gateway
from tests.conftest import BIN, ROOT
from tests.test_aws_host import bundle

REGION = "eu-west-1"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
]


@pytest.fixture
def aws(hyper_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # Batch's service roles
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    for path, body in (("reset", None), ("config", {"batch": {"use_docker": False}})):
        request = urllib.request.Request(
            f"{endpoint}/moto-api/{path}",
            data=json.dumps(body).encode() if body else None,
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
    aws_env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_LAMBDA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    try:
        yield {**os.environ, "HYPER_HOME": str(hyper_home)}
    finally:
        server.stop()


def run(env: dict[str, str], *argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout


def test_a_new_aws_host_runs_jobs_from_the_shell(
    aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = bundle(tmp_path / "code.zip", "# h1\n")
    run(aws, "hyper", "hosts", "create-host", "--provider", "aws", "--name", "h1",
        "--region", REGION, "--code-bundle", str(code))  # fmt: skip
    saved_path = Path(aws["HYPER_HOME"]) / "config" / "hosts" / "h1.json"
    saved = json.loads(saved_path.read_text())

    with Gateway("hyper-h1", REGION) as gateway:
        # the one difference from AWS: the API answers here, not at execute-api
        assert saved["url"].endswith(f"/{STAGE}") and saved["api_key"] == gateway.key
        saved_path.write_text(json.dumps({**saved, "url": f"{gateway.url}/{STAGE}"}))
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", gateway.url)  # the functions' Invoke

        with pytest.raises(urllib.error.HTTPError) as denied:  # API Gateway wants the key
            urllib.request.urlopen(f"{gateway.url}/{STAGE}/health", timeout=10)
        assert denied.value.code == 403

        run(aws, "hyper", "regions", "init-main-region", "--name", REGION, "--kind", "aws",
            "--new-vpc", "--vpc", "10.0.0.0/16", "--subnet-config", "PUBLIC",
            "--deploy-vpc-endpoints", "OFF", "--yes", "--no-wait")  # fmt: skip
        gateway.settle()
        run(aws, "hyper", "clusters", "add-cluster", "--name", "c1", "--max-vcpus", "64",
            "--compute-envs", "1", "--type", "ONDEMAND", "--yes", "--no-wait")  # fmt: skip
        gateway.settle()
        run(aws, "hyper", "queues", "add-queue", "--name", "q1", "--compute-environment", "c1",
            "--yes", "--no-wait")  # fmt: skip
        image = "123456789012.dkr.ecr._REGION_.amazonaws.com/w:1"
        run(aws, "hyper", "definitions", "add-definition", "--name", "d1", "--use-image-uri",
            "--image-uri", image, "--yes", "--no-wait")  # fmt: skip
        gateway.settle()
        for kind in ("regions", "clusters", "queues", "definitions"):
            listed = json.loads(run(aws, "hyper", kind, f"list-{kind}", "--json"))
            assert {r["status"] for r in listed["items"]} == {"ACTIVE"}, listed
        deploys = gateway.functions["hyper-h1-deploy"].calls
        assert [c["kind"] for c in deploys] == ["regions", "clusters", "queues", "definitions"]
        assert gateway.api.calls and not any(c.get("hyper") == "deploy" for c in gateway.api.calls)

        # qsub, qstat, qlog and qdel, as on any host
        (tmp_path / "job.sh").write_text(
            "#HYPER -q q1\n#HYPER -d d1\necho hello from $HYPER_ARRAY_INDEX\n"
        )
        array = run(aws, "qsub", "-a", "1-3", "job.sh", cwd=tmp_path).strip()
        held = run(aws, "qsub", "-h", "-j", "never", "job.sh", cwd=tmp_path).strip()
        run(aws, "qdel", held)
        gateway.settle()  # the tick each submit asked for
        ticks = [c for c in gateway.api.calls if c.get("hyper") == "tick"]
        assert ticks, "a submit asks for a tick"

        batch = boto3.client("batch", region_name=REGION)
        jobs = [j for status in ("SUBMITTED", "PENDING", "RUNNABLE", "RUNNING", "SUCCEEDED")
                for j in batch.list_jobs(jobQueue="hyper-h1--c1",
                                         jobStatus=status)["jobSummaryList"]
                if ":" not in j["jobId"]]  # fmt: skip
        assert jobs, "the tick submitted workers to Batch"
        (submitted,) = batch.describe_jobs(jobs=[jobs[0]["jobId"]])["jobs"]
        container = {e["name"]: e["value"] for e in submitted["container"]["environment"]}
        assert container["HYPER_URL"] == f"{gateway.url}/{STAGE}"
        worker_env = {
            **aws,
            **container,
            "AWS_BATCH_JOB_ID": submitted["jobId"],
            "AWS_REGION": REGION,
            "HYPER_WORKDIR": str(tmp_path / "worker"),
            "HYPER_IDLE_SECONDS": "2",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        if "HYPER_WORKER_ID_PREFIX" in container:
            worker_env["AWS_BATCH_JOB_ARRAY_INDEX"] = "0"
        start = str(ROOT / "example-worker-image" / "start.sh")
        worker = subprocess.run([start], env=worker_env, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert worker.returncode == 0, worker.stderr

        shown = json.loads(run(aws, "qstat", "-i", array, "--json"))["job"]["counts"]
        assert shown["Successful"] == 3, shown
        assert run(aws, "qlog", f"{array}_2") == "hello from 2\n"
        assert json.loads(run(aws, "qstat", "-i", held, "--json"))["job"]["status"] == "Cancelled"
        # binary files through API Gateway and the function (S3 behind them)
        blob = bytes(range(256)) * 64
        with HostClient(f"{gateway.url}/{STAGE}", gateway.key, retries=0) as client:
            client.put_file("probe/blob.bin", blob)
            assert client.get_file("probe/blob.bin") == blob
        assert not any(f.errors for f in gateway.functions.values())
