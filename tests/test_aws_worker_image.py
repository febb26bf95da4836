"""The example worker image as AWS Batch runs it, without docker: its Dockerfile's steps
replayed in a clean virtual environment (COPY into a private root, each RUN as written,
paths under that root), then its ENTRYPOINT run with nothing but the environment a
Batch array child gets (the job definition's, the launcher's overrides, Batch's own).

The worker must read the host's API key from Secrets Manager by the ARN it is given and
present it to the host: before the image installed boto3, every child stopped at once
with "cannot read the API key"."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from hyper.key_headers import gateway_key
from hyper.launchers.base import LaunchRequest
from hyper.launchers.batch import BatchLauncher
from hyper.models import DefinitionSpec
from hyper.providers.aws.batch import Names, job_definition
from hyper.providers.aws.worker_build import build_context
from hyper.store.sqlite import SQLiteStore
from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOCKERFILE = ROOT / "example-worker-image" / "Dockerfile"
REGION = "eu-west-1"
# what the base image (python:3.11-slim) does that a venv does not: the OS packages
# installed with apt-get (bash and procps are on this machine already) and the job's
# user, made in the image's /etc/passwd (not this machine's; tests/test_aws_images.py
# checks it is the one hyper.worker.identity names)
OS_PACKAGES = re.compile(r"^\s*(apt-get|groupadd)\b")


class Image:
    """A Dockerfile's filesystem steps replayed under `root`, with `python` a clean venv."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root, self.python = root, python
        root.mkdir(parents=True, exist_ok=True)
        self.workdir = "/"
        self.entrypoint: list[str] = []

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def rooted(self, command: str) -> str:
        """A RUN command with its absolute paths under the root."""
        return re.sub(r"(?<![\w.:])(/[A-Za-z0-9_.*/-]+)", lambda m: str(self.root) + m[1], command)

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.python.parent}:/usr/bin:/bin", "HOME": str(self.root / "root")}

    def build_env(self) -> dict[str, str]:
        """A build reaches the package index; here that is this machine's pip settings."""
        pip = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
        return {**self.env(), **pip, "HOME": os.environ.get("HOME", "/root")}

    def build(self, dockerfile: Path, context: Path) -> None:
        lines = re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines()
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            word, _, rest = line.strip().partition(" ")
            if word == "WORKDIR":
                self.workdir = rest.strip()
                self.path(self.workdir).mkdir(parents=True, exist_ok=True)
            elif word == "COPY":
                *sources, target = shlex.split(rest)
                where = self.path(target if target.startswith("/") else f"{self.workdir}/{target}")
                for pattern in sources:
                    matches = sorted(context.glob(pattern))
                    assert matches, f"COPY {pattern}: not in the build context"
                    found = matches[0]
                    if found.is_dir():
                        shutil.copytree(found, where, dirs_exist_ok=True)
                    else:
                        dest = where / found.name if target.endswith("/") else where
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(found, dest)
            elif word == "RUN":
                if OS_PACKAGES.match(rest):  # the base image's OS packages: not here
                    continue
                command = self.rooted(rest)
                done = subprocess.run(
                    ["bash", "-c", command],
                    cwd=self.path(self.workdir),
                    env=self.build_env(),
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                assert done.returncode == 0, f"RUN {rest}\n{done.stdout}\n{done.stderr}"
            elif word == "ENTRYPOINT":
                self.entrypoint = json.loads(rest)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    base = tmp_path_factory.mktemp("image")
    venv.EnvBuilder(with_pip=True, clear=True).create(base / "venv")  # no site-packages
    python = base / "venv" / "bin" / "python"
    built = Image(base / "root", python)
    with build_context(DOCKERFILE.parent) as context:  # what add-image gives docker
        built.build(context / "Dockerfile", context)
    return built


class Host(http.server.BaseHTTPRequestHandler):
    """A host that notes who asked with which key, and refuses it (the worker stops)."""

    seen: list[tuple[str, str | None]] = []
    tokens: list[str | None] = []
    gateway: list[str | None] = []  # x-api-key: the key's API Gateway value

    def do_POST(self) -> None:
        self.seen.append((self.path, self.headers.get("x-hyper-key")))
        self.gateway.append(self.headers.get("x-api-key"))
        self.tokens.append(self.headers.get("x-hyper-worker-token"))
        body = b'{"detail": "bad key"}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_ENDPOINT_URL", endpoint)):  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield endpoint
    finally:
        server.stop()


def test_the_image_installs_what_start_sh_needs_and_a_batch_child_reads_its_key(
    image: Image, moto_server: str, tmp_path: Path
) -> None:
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="hyper/img/api-key", SecretString="Key0fTheHost0123456789abcdefXYZ"
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Host.seen, Host.gateway = [], []
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    definition = DefinitionSpec(name="d1", use_cyclone_image=False, image_uri="w:1")
    names = Names("hyper-img")
    registered = job_definition(REGION, definition, names, image="w:1",
                                job_role_arn="arn:aws:iam::123456789012:role/r",
                                secret_arn=secret["ARN"])  # fmt: skip
    store = SQLiteStore(tmp_path / "store.db")
    launcher = BatchLauncher(store, url=url, names=names)
    submitted = launcher.submit_request(
        LaunchRequest("q1", definition, REGION, 3), ("queue", "definition"), "b-0123456789ab", 3
    )
    store.close()
    container = registered["containerProperties"]
    assert container["command"] == image.entrypoint
    batch_child = {
        **image.env(),
        **{e["name"]: e["value"] for e in container["environment"]},
        **{e["name"]: e["value"] for e in submitted["containerOverrides"]["environment"]},
        # what Batch and ECS set in every array child
        "AWS_BATCH_JOB_ID": "0123-abcd:2",
        "AWS_BATCH_JOB_ARRAY_INDEX": "2",
        "AWS_BATCH_JQ_NAME": "queue",
        "AWS_BATCH_CE_NAME": "hyper-img-c1-ce1",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "HOSTNAME": "ip-10-0-0-1",
        "HYPER_WORKDIR": str(image.path("/work")),  # the image's /work, under its root
        # the job role's credentials (ECS serves them; moto takes any) and moto's address
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_server,
    }
    assert batch_child["HYPER_API_KEY"] == secret["ARN"]
    entrypoint = image.path(container["command"][0])
    try:
        done = subprocess.run(
            [str(entrypoint)],
            cwd=image.path("/work"),
            env=batch_child,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "cannot read the API key" not in done.stderr, done.stderr
    assert Host.seen, done.stderr
    path, key = Host.seen[0]
    assert path == "/v1/workers/b-0123456789ab-2/claim"
    assert key == "Key0fTheHost0123456789abcdefXYZ"  # read from the secret by its ARN
    assert done.returncode == 1 and "refused the API key" in done.stderr


def test_a_launch_with_a_token_reaches_its_worker_through_the_re_exec(
    image: Image, tmp_path: Path
) -> None:
    """start.sh in the image, with a worker key and token as the host gives them: the
    worker starts itself again without them in its environment (/proc), and still asks
    the host with both."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Host.seen, Host.tokens, Host.gateway = [], [], []
    child = {
        **image.env(),
        "HYPER_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
        "HYPER_QUEUE": "q1", "HYPER_DEFINITION": "d1", "HYPER_WORKER_ID": "b-1",
        "HYPER_API_KEY": "Worker0Key0123456789", "HYPER_WORKER_TOKEN": "Token0123456789",
        "HYPER_WORKDIR": str(image.path("/work")), "AWS_BATCH_JOB_ID": "0123-abcd",
    }  # fmt: skip
    try:
        done = subprocess.run([str(image.path("/usr/local/bin/start.sh"))],
                              cwd=image.path("/work"), env=child, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert Host.seen == [("/v1/workers/b-1/claim", "Worker0Key0123456789")], done.stderr
    assert Host.gateway == [gateway_key("Worker0Key0123456789")]  # the gateway's, never the key
    assert Host.tokens == ["Token0123456789"]
    assert done.returncode == 1 and "refused the API key" in done.stderr


def test_the_image_has_no_test_or_cli_only_extras(image: Image) -> None:
    """What the worker imports is there; the test tools are not (a lean image)."""
    done = subprocess.run(
        [str(image.python), "-c", "import boto3, hyper.worker.agent; import pytest"],
        env=image.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "No module named 'pytest'" in done.stderr, done.stderr
    assert sys.version_info >= (3, 10)
