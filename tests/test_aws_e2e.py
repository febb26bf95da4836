"""An AWS host end to end, on loopback: the host app as its Lambda function builds it
(DynamoDB store, AWS provider, Batch launcher) served over HTTP, every AWS call going to
a moto server. Resources are deployed through the API, `qsub` submits 1,000 jobs, a tick
submits one Batch array job per weighted region, and a real worker started by the
image's start.sh, with the environment Batch gives that array's first child, runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from hyper.client import HostClient
from hyper.host.lambda_adapter import LambdaApp
from hyper.providers.aws import tables
from tests.conftest import BIN, ROOT
from tests.helpers.moto import moto_server

# slow: moto's DynamoDB copies every table on each transaction, so 1,000 jobs take minutes
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
]

MAIN, OTHER = "eu-west-1", "us-east-1"
Q = ["-q", "q1", "-d", "d1"]


class AwsHost:
    def __init__(self, url: str, key: str, secret_arn: str, env: dict[str, str]) -> None:
        self.url, self.key, self.secret_arn, self.env = url, key, secret_arn, env
        self.built: LambdaApp | None = None

    def client(self) -> HostClient:
        return HostClient(self.url, self.key, retries=0)

    def tick(self) -> Any:
        assert self.built is not None and self.built.tick is not None
        return self.built.tick()


@pytest.fixture
def aws_host(
    tmp_path: Path, hyper_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsHost]:
    # Batch's service roles need AWS's managed policies
    moto = moto_server(monkeypatch, managed_policies=True, batch=True)
    endpoint = moto.__enter__()
    aws_env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": MAIN,
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    secret = boto3.client("secretsmanager", region_name=MAIN).create_secret(
        Name="hyper/e2e/api-key", SecretString="the-e2e-key"
    )
    tables.create_tables(boto3.client("dynamodb", region_name=MAIN), "hyper-e2e")
    boto3.client("s3", region_name=MAIN).create_bucket(
        Bucket="hyper-e2e-bucket", CreateBucketConfiguration={"LocationConstraint": MAIN}
    )
    with socket.socket() as probe:  # the host's URL is known before the app is built
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    function_env = {
        "HYPER_REGION": MAIN,
        "HYPER_SECRET_ARN": secret["ARN"],
        "HYPER_HOST_NAME": "e2e",
        "HYPER_API_URL": url,
        "HYPER_TABLE_PREFIX": "hyper-e2e",
        "HYPER_BUCKET": "hyper-e2e-bucket",
    }
    for name, value in function_env.items():
        monkeypatch.setenv(name, value)
    import uvicorn

    from hyper.providers.aws.lambda_app import make_app

    host = AwsHost(url, "the-e2e-key", secret["ARN"], {**os.environ, **aws_env})
    host.built = make_app()
    server = uvicorn.Server(
        uvicorn.Config(host.built.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the host did not start"
        time.sleep(0.05)
    try:
        yield host
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        moto.__exit__(None, None, None)


def deploy(host: AwsHost, kind: str, spec: dict[str, Any]) -> None:
    """Through the API, as `hyper regions add-region` and its siblings do; until ACTIVE."""
    with host.client() as client:
        client.call("POST", f"/resources/{kind}", spec)
        deadline = time.monotonic() + 120
        while True:
            record = client.call("GET", f"/resources/{kind}/{spec['name']}")
            if record["status"] in ("ACTIVE", "FAILED"):
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.2)
    assert record["status"] == "ACTIVE", record["log"]


def test_qsub_to_batch_arrays_to_a_worker(aws_host: AwsHost, tmp_path: Path) -> None:
    for name, cidr in ((MAIN, "10.0.0.0/16"), (OTHER, "10.1.0.0/16")):
        deploy(aws_host, "regions", {"name": name, "kind": "aws", "main_region": name == MAIN,
                                     "import_vpc": False, "cidr": cidr,
                                     "subnet_config": "PUBLIC"})  # fmt: skip
    deploy(aws_host, "clusters", {"name": "c1", "compute_envs": 1, "max_vcpus": 256,
                                  "type": "ONDEMAND"})  # fmt: skip
    deploy(aws_host, "queues", {"name": "q1", "compute_environment": "c1",
                                "automate_region_weights": False,
                                "region_distribution_weights": {MAIN: 3, OTHER: 2}})  # fmt: skip
    deploy(aws_host, "definitions", {"name": "d1", "use_cyclone_image": False,
                                     "image_uri": "123456789012.dkr.ecr._REGION_.amazonaws.com/w:1",
                                     "jobs_to_workers_ratio": 10})  # fmt: skip

    # the shell tools, unchanged, against the AWS host
    env = {**aws_host.env, "HYPER_HOME": os.environ["HYPER_HOME"]}
    subprocess.run(
        [str(BIN / "hyper"), "hosts", "import-deployment", "--name", "aws", "--url",
         aws_host.url, "--api-key-file", "-"],
        input=aws_host.key, env=env, text=True, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run([str(BIN / "hyper"), "hosts", "select-host", "aws"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    (tmp_path / "job.sh").write_text("echo hello from task $HYPER_ARRAY_INDEX\n")
    array_id = subprocess.run(
        [str(BIN / "qsub"), "-a", "1-1000", *Q, "job.sh"],
        cwd=tmp_path, env=env, text=True, check=True, capture_output=True,
    ).stdout.strip()  # fmt: skip

    # one tick: ceil(1,000 / 10) = 100 workers, 3:2 over the regions, one array each
    aws_host.tick()
    sizes = {}
    submitted = {}
    for region in (MAIN, OTHER):
        batch = boto3.client("batch", region_name=region)
        (queue,) = batch.describe_job_queues()["jobQueues"]
        jobs = [
            job
            for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED")
            for job in batch.list_jobs(jobQueue=queue["jobQueueName"], jobStatus=status)[
                "jobSummaryList"
            ]
        ]
        (parent,) = {job["jobId"] for job in jobs if ":" not in job["jobId"]}  # no children
        (described,) = batch.describe_jobs(jobs=[parent])["jobs"]
        sizes[region] = described["arrayProperties"]["size"]
        submitted[region] = described
    assert sizes == {MAIN: 60, OTHER: 40}

    # the first child of the main region's array, as Batch would start it
    job = submitted[MAIN]
    container = {e["name"]: e["value"] for e in job["container"]["environment"]}
    worker_env = {
        **aws_host.env,
        **container,
        "AWS_BATCH_JOB_ID": f"{job['jobId']}:0",
        "AWS_BATCH_JOB_ARRAY_INDEX": "0",
        "AWS_REGION": MAIN,
        "HYPER_WORKDIR": str(tmp_path / "worker"),
        "HYPER_IDLE_SECONDS": "3",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    assert container["HYPER_API_KEY"] == aws_host.secret_arn  # the key itself is not there
    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as errors:
        worker = subprocess.Popen(
            [str(ROOT / "example-worker-image" / "start.sh")],
            env=worker_env, stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while True:
            counts = json.loads(
                subprocess.run(
                    [str(BIN / "qstat"), "-i", array_id, "--json"],
                    env=env,
                    text=True,
                    check=True,
                    capture_output=True,
                ).stdout
            )["job"]["counts"]
            if counts["Successful"] + counts["Failed"] == 1000:
                break
            assert worker.poll() is None, worker_log.read_text()
            assert time.monotonic() < deadline, counts
            time.sleep(1)
        assert counts["Successful"] == 1000, counts
        log = subprocess.run(
            [str(BIN / "qlog"), f"{array_id}_7"], env=env, text=True, check=True,
            capture_output=True,
        ).stdout  # fmt: skip
        assert log == "hello from task 7\n"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
