"""A new user's AWS host, from the shell: `hyper hosts create-host --provider aws` with
flags only against a moto server, then regions, a cluster, a queue and a definition
made through the host's API (each change run by the host's deploy function), then
`qsub`, `qstat`, `qlog` and `qdel` unchanged, with a worker started as Batch would start
the array the host submitted. API Gateway and Lambda are played on loopback by
tests/helpers/aws_gateway.py, since moto cannot run the functions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import boto3
import pytest

from hyper.client import HostClient
from hyper.worker_tokens import HEADER, WorkerTokens
from tests.conftest import BIN, ROOT
from tests.helpers.aws_gateway import STAGE, Gateway
from tests.helpers.aws_host import bundle
from tests.helpers.job_user import passable_folder
from tests.helpers.moto import batch_child_environment, moto_server

REGION = "eu-west-1"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
]


@pytest.fixture
def aws(hyper_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # Batch's service roles need AWS's managed policies
    with moto_server(monkeypatch, managed_policies=True, batch=True) as endpoint:
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
        yield {**os.environ, "HYPER_HOME": str(hyper_home)}


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
        # what anyone allowed apigateway:GET reads (AWS's ReadOnlyAccess): the API Gateway
        # keys' values (the template's: moto's CloudFormation makes no ApiKey), not the
        # keys; each passes the gateway and the function refuses it, the worker key's even
        # with a worker's token
        readable = list(gateway.plans)  # the values the stack gives its API Gateway keys
        assert len(readable) == 2 and not {gateway.key, gateway.worker_key} & set(readable)
        token = WorkerTokens(gateway.key).token("b-1a2b")
        for value, path in [(v, p) for v in readable
                            for p in ("/resources/queues", "/workers/b-1a2b-0/claim")]:  # fmt: skip
            request = urllib.request.Request(
                f"{gateway.url}/{STAGE}{path}", data=b"{}", method="POST" if "claim" in path
                else "GET", headers={"x-api-key": value, HEADER: token},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 401, (value, path)

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
        container = batch_child_environment(submitted, REGION)
        assert container["HYPER_URL"] == f"{gateway.url}/{STAGE}"
        worker_env = {
            **aws,
            **container,
            "AWS_BATCH_JOB_ID": submitted["jobId"],
            "AWS_REGION": REGION,
            "HYPER_IDLE_SECONDS": "2",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        if "HYPER_WORKER_ID_PREFIX" in container:
            worker_env["AWS_BATCH_JOB_ARRAY_INDEX"] = "0"
        start = str(ROOT / "example-worker-image" / "start.sh")
        # as root, as in Batch, it runs the jobs as another user, who may enter this folder
        with passable_folder() as workdir:
            worker_env["HYPER_WORKDIR"] = str(workdir)
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _get(url: str, cookie: str = "") -> tuple[int, dict[str, str], str]:
    """A browser's GET: no API key, the cookie it was given, redirects not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


VENDOR = ROOT / "hyper" / "host" / "dashboard" / "static" / "vendor"
DASHBOARD_PAGES = [
    "/dashboard/",
    "/dashboard/jobs",
    "/dashboard/resources/queues",
    "/dashboard/throughput.json",
    "/dashboard/static/vendor/htmx-2.0.4.min.js",
]


def test_the_dashboard_through_api_gateway_logs_in_with_a_token(
    aws: dict[str, str], tmp_path: Path
) -> None:
    code = bundle(tmp_path / "code.zip", "# h2\n")
    run(aws, "hyper", "hosts", "create-host", "--provider", "aws", "--name", "h2",
        "--region", REGION, "--code-bundle", str(code))  # fmt: skip
    saved_path = Path(aws["HYPER_HOME"]) / "config" / "hosts" / "h2.json"
    with Gateway("hyper-h2", REGION) as gateway:
        base = f"{gateway.url}/{STAGE}"
        saved_path.write_text(json.dumps({**json.loads(saved_path.read_text()), "url": base}))
        status, _, page = _get(f"{base}/dashboard/jobs")
        assert status == 401 and "hyper dashboard" in page  # the function's answer
        # the command prints the host's own address, with a token from its API
        printed = run(aws, "hyper", "dashboard", "--no-browser", "--host", "h2")
        assert f"dashboard of host 'h2': {base}/dashboard/" in printed
        token = printed.split("?token=")[1].split()[0]
        assert gateway.key not in printed
        status, headers, _ = _get(f"{base}/dashboard/login?token={token}")
        assert status == 303 and headers["location"] == "./"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        for path in DASHBOARD_PAGES:
            status, _, page = _get(base + path, cookie)
            assert status == 200, (path, page[:300])
        status, headers, overview = _get(f"{base}/dashboard/", cookie)
        assert "Overview" in overview and "script-src 'self'" in headers["content-security-policy"]
        # every link and script of the page resolves under the stage's prefix
        linked = set(re.findall(r'(?:href|src|data-src)="(\./[^"]*)"', overview))
        assert {"./static/vendor/htmx-2.0.4.min.js", "./throughput.json", "./jobs"} <= linked
        for link in linked:
            status, headers, text = _get(urljoin(f"{base}/dashboard/", link), cookie)
            assert status == 200, (link, text[:200])
        status, headers, script = _get(f"{base}/dashboard/static/vendor/htmx-2.0.4.min.js", cookie)
        assert headers["content-type"].startswith("text/javascript")
        assert script == (VENDOR / "htmx-2.0.4.min.js").read_text()
        # the token worked once; the API still wants its key
        assert _get(f"{base}/dashboard/login?token={token}")[0] == 401
        assert _get(f"{base}/jobs", cookie)[0] == 403
        assert not any(f.errors for f in gateway.functions.values())
