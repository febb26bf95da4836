"""An AWS host end to end, on loopback: the host app as its Lambda function builds it
(DynamoDB store, AWS provider, Batch launcher) behind the loopback API Gateway and Lambda
(tests/helpers/aws_gateway.py) with AWS's limits tightened (usage plans of 4 requests/s, 12
containers at once), every AWS call going to a moto server. Resources are deployed
through the API, `qsub` submits 1,000 jobs of a second each, a tick submits one
Batch array job per weighted region, and real workers started by the image's start.sh,
with the environment Batch gives that array's first children, run them all: the 429s
and 500s the limits give are ridden out and nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from hyper.client import HostClient
from hyper.host.lambda_adapter import TICK_EVENT
from hyper.store import dynamodb_tables as tables
from tests.conftest import BIN, ROOT
from tests.helpers.aws_gateway import STAGE, Gateway, Limits
from tests.helpers.job_user import passable_folder
from tests.helpers.moto import batch_child_environment, moto_server

# slow: 1,000 jobs through a usage plan of 4 requests/s take about five minutes, most of
# it waiting on that rate;
# alone: its workers leave after 60 s without a job and the gateway's limits answer 429s
# and 500s, so a starved run fails where a fair one would not; beside: paced by that
# limit more than by the machine (a third of a core), it runs in a process of its own beside
# the parallel tier, never in its pool nor beside the other `alone` tests
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.alone,
    pytest.mark.beside,
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
]

MAIN, OTHER = "eu-west-1", "us-east-1"
Q = ["-q", "q1", "-d", "d1"]
WORKERS = 8


FUNCTION = "hyper-e2e-host"
WORKER_KEY = "the-e2e-worker-key"


def one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request atomically; moto's server, called by several Lambda
    containers at once, does not (a reader may see an item half updated): here it
    answers one request at a time, as the service would appear to."""
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lock = threading.RLock()
    dispatch = DomainDispatcherApplication.__call__

    def one_at_a_time(self: Any, environ: Any, start_response: Any) -> Any:
        with lock:
            return list(dispatch(self, environ, start_response))

    monkeypatch.setattr(DomainDispatcherApplication, "__call__", one_at_a_time)


# each key's plan 4 requests/s (the workers' together); 8 workers long-polling, and room
LIMITS = Limits(rate=4, burst=8, worker_rate=4, worker_burst=8, concurrency=12)


class AwsHost:
    def __init__(self, gateway: Gateway, secret_arn: str, env: dict[str, str]) -> None:
        self.gateway = gateway
        self.url, self.key = f"{gateway.url}/{STAGE}", gateway.key
        self.secret_arn, self.env = secret_arn, env

    def client(self) -> HostClient:
        return HostClient(self.url, self.key)

    def tick(self) -> Any:
        return self.gateway.api(dict(TICK_EVENT))


@pytest.fixture
def aws_host(
    tmp_path: Path, hyper_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsHost]:
    one_request_at_a_time(monkeypatch)
    # Batch's service roles need AWS's managed policies
    with moto_server(monkeypatch, managed_policies=True, batch=True) as endpoint:
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
        secrets = boto3.client("secretsmanager", region_name=MAIN)
        secret = secrets.create_secret(Name="hyper/e2e/api-key", SecretString="the-e2e-key")
        worker_secret = secrets.create_secret(Name="hyper/e2e/worker-key", SecretString=WORKER_KEY)
        tables.create_tables(boto3.client("dynamodb", region_name=MAIN), "hyper-e2e")
        boto3.client("s3", region_name=MAIN).create_bucket(
            Bucket="hyper-e2e-bucket", CreateBucketConfiguration={"LocationConstraint": MAIN}
        )
        function_env = {
            "HYPER_REGION": MAIN,
            "HYPER_SECRET_ARN": secret["ARN"],
            "HYPER_WORKER_SECRET_ARN": worker_secret["ARN"],
            "HYPER_HOST_NAME": "e2e",
            "HYPER_TABLE_PREFIX": "hyper-e2e",
            "HYPER_BUCKET": "hyper-e2e-bucket",
        }
        with Gateway.of("the-e2e-key", {FUNCTION: function_env}, FUNCTION, LIMITS) as gateway:
            gateway.add_worker_key(WORKER_KEY)  # in its usage plan: the workers'
            monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", gateway.url)  # the functions' Invoke
            try:
                yield AwsHost(gateway, secret["ARN"], {**os.environ, **aws_env})
            finally:
                gateway.settle()


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
    # workers started as root, as in Batch, run their jobs as another user: their folders
    # are where that user may enter
    with passable_folder() as workdirs:
        run_the_arrays(aws_host, tmp_path, workdirs)


def run_the_arrays(aws_host: AwsHost, tmp_path: Path, workdirs: Path) -> None:
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
    (tmp_path / "job.sh").write_text("sleep 1\necho hello from task $HYPER_ARRAY_INDEX\n")
    array_id = subprocess.run(
        [str(BIN / "qsub"), "-a", "1-1000", *Q, "job.sh"],
        cwd=tmp_path, env=env, text=True, check=True, capture_output=True,
    ).stdout.strip()  # fmt: skip

    # a tick: ceil(1,000 / 10) = 100 workers, 3:2 over the regions, one array each (the
    # submit asked for a tick too; moto ends Batch jobs at once, so a later tick finds
    # those workers gone and starts others, each time the same arrays)
    aws_host.gateway.settle()  # the tick the submit asked for (an Event invocation)
    assert aws_host.tick()["result"]["started"] == 100
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
        parents = {job["jobId"] for job in jobs if ":" not in job["jobId"]}  # no children
        described = batch.describe_jobs(jobs=sorted(parents))["jobs"]
        assert len({d["arrayProperties"]["size"] for d in described}) == 1, described
        sizes[region] = described[0]["arrayProperties"]["size"]
        submitted[region] = described[0]
    assert sizes == {MAIN: 60, OTHER: 40}

    # the first children of the main region's array, as Batch would start them
    job = submitted[MAIN]
    submitted_env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    # the array's token: no key, nor the host's secret (DescribeJobs shows this to
    # whoever may read the account's jobs)
    assert submitted_env["HYPER_WORKER_TOKEN"] and "HYPER_API_KEY" not in submitted_env
    assert not any("the-e2e-key" in v or v == aws_host.secret_arn for v in submitted_env.values())
    assert WORKER_KEY not in json.dumps(job, default=str)
    # the worker key from the job definition's secrets, read as the ECS agent does
    container = batch_child_environment(job, MAIN)
    assert container["HYPER_API_KEY"] == WORKER_KEY
    workers = []
    logs = []
    for index in range(WORKERS):
        worker_env = {
            **aws_host.env,
            **container,
            "AWS_BATCH_JOB_ID": f"{job['jobId']}:{index}",
            "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
            "AWS_REGION": MAIN,
            "HYPER_WORKDIR": str(workdirs / f"worker{index}"),
            "HYPER_IDLE_SECONDS": "60",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        errors = (tmp_path / f"worker{index}.log").open("w")
        logs.append(errors)
        workers.append(subprocess.Popen(
            [str(ROOT / "example-worker-image" / "start.sh")],
            env=worker_env, stdout=subprocess.DEVNULL, stderr=errors,
        ))  # fmt: skip
    try:
        deadline = time.monotonic() + 1500
        while True:
            shown = subprocess.run(
                [str(BIN / "qstat"), "-i", array_id, "--json"],
                env=env,
                text=True,
                capture_output=True,
            )
            if shown.returncode != 0:
                # the usage plan is shared with the workers: a qstat may be throttled out
                # (it waits about 18 s first, then says so), and that is not a lost job
                assert "is busy (too many requests)" in shown.stderr, shown.stderr
                assert time.monotonic() < deadline
                continue
            counts = json.loads(shown.stdout)["job"]["counts"]
            if counts["Successful"] + counts["Failed"] == 1000:
                break
            ended = [w.poll() for w in workers]
            assert any(code is None for code in ended), [
                counts,
                ended,
                *((tmp_path / f"worker{n}.log").read_text() for n in range(WORKERS)),
            ]
            assert time.monotonic() < deadline, counts
            time.sleep(2)
        if counts["Successful"] != 1000:  # which failed, and what each said of it
            with aws_host.client() as client:
                failed = list(client.iter_jobs(status=["Failed"], array=int(array_id)))
                said = [(j["id"], j.get("exit_code"), j.get("reason"),
                         client.read_log(j["id"], kinds=["SYSTEM", "STDERR"]))
                        for j in failed]  # fmt: skip
            raise AssertionError(f"{counts}: {said}")
        log = subprocess.run(
            [str(BIN / "qlog"), f"{array_id}_7"], env=env, text=True, check=True,
            capture_output=True,
        ).stdout  # fmt: skip
        assert log == "hello from task 7\n"
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        for errors in logs:
            errors.close()
    for n in range(WORKERS):  # none gave up on the limits
        said = (tmp_path / f"worker{n}.log").read_text()
        assert "Too Many Requests" not in said and "Internal server error" not in said, said
    answers = aws_host.gateway.answers
    print(
        f"API Gateway answered {dict(answers)}; Lambda throttled "
        f"{aws_host.gateway.api.throttled}, containers {aws_host.gateway.api.containers}"
    )
