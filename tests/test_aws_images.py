"""An AWS host's images are built and pushed from the user's machine: the deploy function
(in Lambda, without docker) only keeps the repositories and the URI it is given."""

from __future__ import annotations

import glob
import json
import shlex
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from hyper.config import HostConfig
from hyper.errors import DeployFailed
from hyper.models import ImageSpec, RegionSpec, ResourceKind
from hyper.providers.aws import images
from hyper.providers.aws.provider import AwsProvider
from hyper.providers.aws.worker_build import write_wheel
from hyper.store.sqlite import SQLiteStore
from tests.conftest import ROOT
from tests.helpers.aws import mocked_aws

MAIN, OTHER = "us-east-1", "eu-west-1"
FAKE_DOCKER = """#!/bin/sh
# a docker client and engine that note what they are asked
echo "$@" >> "{log}"
case "$1" in
  info) echo 27.0.0 ;;
  build) for context; do :; done; cp -r "$context" "{log}.context"; echo "Successfully built" ;;
  image) echo "${{FAKE_PLATFORM:-linux/amd64}}" ;;
esac
"""


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AwsProvider]:
    with mocked_aws(monkeypatch):
        store = SQLiteStore(tmp_path / "store.db")
        for region in (MAIN, OTHER):
            spec = RegionSpec(name=region, kind="aws", import_vpc=False, cidr="10.0.0.0/16")
            store.put_resource("regions", region, spec.model_dump(), "ACTIVE", [], time.time())
        yield AwsProvider(store, host_name="h1", secret_arn="arn:x")
        store.close()


def fake_docker(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = folder / "docker.log"
    docker = folder / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_DOCKER.format(log=log))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}:/usr/bin:/bin")
    return log


def test_the_deploy_function_never_builds_and_asks_for_a_push_from_here(
    provider: AwsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_docker(tmp_path, monkeypatch)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    built = ImageSpec(name="work", local_build_directory=str(tmp_path))
    with pytest.raises(DeployFailed, match="built and pushed from your machine"):
        provider.deploy(ResourceKind.IMAGE, built, lambda _: None)
    assert not log.exists()  # docker was never asked

    uri = "123456789012.dkr.ecr._REGION_.amazonaws.com/hyper-h1/work:latest"
    pushed = built.model_copy(update={"uri": uri})
    assert provider.deploy(ResourceKind.IMAGE, pushed, lambda _: None) == pushed
    assert not log.exists()
    for region in (MAIN, OTHER):
        found = boto3.client("ecr", region_name=region).describe_repositories()["repositories"]
        assert [r["repositoryName"] for r in found] == ["hyper-h1/work"]


def test_an_image_is_built_here_and_pushed_to_every_region(
    provider: AwsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_docker(tmp_path, monkeypatch)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=MAIN)
    lines: list[str] = []
    spec = images.push_from_here(host, {"name": "work", "local_build_directory": str(tmp_path)},
                                 [MAIN, OTHER], lines.append)  # fmt: skip
    assert spec["uri"] == "123456789012.dkr.ecr._REGION_.amazonaws.com/hyper-h1/work:latest"
    asked = log.read_text().splitlines()
    # for the instances workers run on, whatever this machine is (an arm64 Mac)
    assert asked[1].startswith("build --platform linux/amd64 -t hyper/work:latest")
    pushes = [line for line in asked if " push " in f" {line} "]
    assert [p.rsplit(" ", 1)[-1] for p in pushes] == [
        f"123456789012.dkr.ecr.{region}.amazonaws.com/hyper-h1/work:latest"
        for region in (MAIN, OTHER)
    ]
    assert all("--config" in p for p in pushes)  # the registry token is in a private file
    # the host is then given the URI, and the deploy function keeps it
    assert provider.deploy(ResourceKind.IMAGE, ImageSpec(**spec), lambda _: None).uri == spec["uri"]
    assert images.needs_push(spec) and not images.needs_push({"name": "x", "uri": "u"})
    assert json.dumps(spec)  # what the CLI sends
    # each push leaves the image it replaced untagged: such images expire a day after
    for region in (MAIN, OTHER):
        ecr = boto3.client("ecr", region_name=region)
        policy = json.loads(ecr.get_lifecycle_policy(repositoryName="hyper-h1/work")[
            "lifecyclePolicyText"])  # fmt: skip
        (rule,) = policy["rules"]
        assert rule["selection"]["tagStatus"] == "untagged" and rule["action"]["type"] == "expire"


def test_every_call_on_the_code_bucket_names_its_owner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The code bucket's name is predictable: a bucket of that name in another account
    must never receive the host's code or templates."""
    from hyper.providers.aws import host, stacks

    with mocked_aws(monkeypatch) as recorder:
        bucket = host._code_bucket("123456789012", MAIN, lambda _: None)
        code = tmp_path / "code.zip"
        code.write_bytes(b"PK")
        host._upload(bucket, "hyper/code.zip", code, MAIN, lambda _: None, owner="123456789012")
        big = {"Resources": {f"R{n}": {"Type": "AWS::SNS::Topic",
                                       "Properties": {"TopicName": "x" * 200}}
                             for n in range(300)}}  # fmt: skip
        stacks._template_source("hyper-h1", big, MAIN, bucket, "123456789012")
        calls = [c for c in recorder.take() if c.service == "s3"]
    assert {c.operation for c in calls} >= {"HeadBucket", "CreateBucket", "PutObject"}
    # CreateBucket takes no owner: it fails when another account holds the name
    owned = [c for c in calls if c.operation != "CreateBucket"]
    assert all(c.params.get("ExpectedBucketOwner") == "123456789012" for c in owned), owned


def copy_sources(dockerfile: Path) -> list[str]:
    """The sources of every COPY of a Dockerfile (continued lines joined)."""
    sources = []
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "COPY":
            sources += [s for s in shlex.split(rest)[:-1] if not s.startswith("--")]
    return sources


def test_the_default_image_folder_builds_every_copy_from_its_context(
    provider: AwsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walkthrough's default folder: docker gets a context in which every COPY source
    of its Dockerfile is (before, the Dockerfile copied from the repository root)."""
    log = fake_docker(tmp_path, monkeypatch)
    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=MAIN)
    folder = ROOT / "example-worker-image"
    images.push_from_here(host, {"name": "work", "local_build_directory": str(folder)},
                          [MAIN], lambda _: None)  # fmt: skip
    build = next(line for line in log.read_text().splitlines() if line.startswith("build "))
    assert build.split()[:5] == ["build", "--platform", "linux/amd64", "-t", "hyper/work:latest"]
    context = Path(f"{log}.context")  # what docker was given, as it was
    sources = copy_sources(context / "Dockerfile")
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert glob.glob(str(context / source)), f"COPY {source}: not in the build context"
    assert not (folder / "hyper_scheduler").exists() and not list(folder.glob("*.whl"))
    wheels = list(context.glob("hyper_scheduler-*-py3-none-any.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        record = wheel.read(f"{info}/RECORD").decode()
    assert {"hyper/worker/__main__.py", "qtools/qsub.py", f"{info}/WHEEL"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert 'extra == "aws"' in metadata and "boto3" in metadata  # `[aws]` brings boto3
    assert len(record.splitlines()) == len(names)


def test_a_wheel_of_this_hyper_is_the_same_bytes_each_time(tmp_path: Path) -> None:
    first = write_wheel(tmp_path / "a").read_bytes()
    assert write_wheel(tmp_path / "b").read_bytes() == first


def test_a_code_bucket_name_held_by_another_account_is_passed_over_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3 answers 403 for the predictable name when another account holds it: create-host
    makes a name with a random suffix instead (not a dead end), the host stack keeps it,
    and a redeploy uses it again."""
    from hyper.providers.aws import host

    squatted = f"hyper-code-123456789012-{MAIN}"

    def not_yours(params: dict, **_: object) -> tuple[AWSResponse, dict] | None:
        where = str(params.get("url_path", "")) + str(params.get("url", ""))
        if squatted in where and f"{squatted}-" not in where:
            error = {"Error": {"Code": "403", "Message": "Forbidden"}}
            return AWSResponse("https://s3", 403, {}, None), error
        return None

    with mocked_aws(monkeypatch):
        boto3.DEFAULT_SESSION.events.register("before-call.s3.HeadBucket", not_yours)
        lines: list[str] = []
        first = host._code_bucket("123456789012", MAIN, lines.append)
        assert first.startswith(squatted + "-") and len(first) <= 63
        assert any("not this account's" in line for line in lines)
        s3 = boto3.client("s3", region_name=MAIN)
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [first]
        assert host._code_bucket("123456789012", MAIN, lambda _: None, kept=first) == first
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [first]  # no other made


def test_a_bundle_already_in_the_bucket_is_replaced_by_this_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Anyone able to write the bucket could pre-place an object under the bundle's name:
    the upload never trusts one that is there."""
    from hyper.providers.aws import host

    with mocked_aws(monkeypatch):
        bucket = host._code_bucket("123456789012", MAIN, lambda _: None)
        s3 = boto3.client("s3", region_name=MAIN)
        s3.put_object(Bucket=bucket, Key="hyper/code.zip", Body=b"not the bundle")
        code = tmp_path / "code.zip"
        code.write_bytes(b"PK the bundle")
        host._upload(bucket, "hyper/code.zip", code, MAIN, lambda _: None, owner="123456789012")
        kept = s3.get_object(Bucket=bucket, Key="hyper/code.zip")["Body"].read()
        assert kept == b"PK the bundle"


def test_the_default_image_makes_the_jobs_user_and_leaves_its_worker_root() -> None:
    """The worker stays root (no USER line) and runs its jobs as the user the image makes,
    the one hyper.worker.identity names, with the uid and gid it falls back on."""
    from hyper.worker.identity import JOB_UID, JOB_USER

    text = (ROOT / "example-worker-image" / "Dockerfile").read_text().replace("\\\n", " ")
    words = [line.strip().partition(" ")[0] for line in text.splitlines()]
    assert "USER" not in words
    assert f"groupadd --gid {JOB_UID} {JOB_USER}" in text
    assert f"useradd --uid {JOB_UID} --gid {JOB_UID} --create-home" in text


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/arm/v7", "windows/amd64"])
def test_a_local_image_for_other_machines_than_the_workers_is_refused_before_any_push(
    provider: AwsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    """An image built on an arm64 Mac is linux/arm64; on the x86_64 instances of a cluster's
    default types every worker would end in "exec format error", and the host would go on
    starting them."""
    log = fake_docker(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_PLATFORM", platform)
    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=MAIN)
    spec = {"name": "work", "local_docker_image": "mine:1"}
    with pytest.raises(DeployFailed) as failed:
        images.push_from_here(host, spec, [MAIN, OTHER], lambda _: None)
    assert str(failed.value) == (
        f"image 'mine:1' is {platform}; workers run linux/amd64 (build it with docker build"
        " --platform linux/amd64, or give an image for other instance types by URI:"
        " --use-image-uri)"
    )
    assert not any(" push " in f" {line} " for line in log.read_text().splitlines())
    for region in (MAIN, OTHER):  # nothing was made
        assert not boto3.client("ecr", region).describe_repositories()["repositories"]
    monkeypatch.setenv("FAKE_PLATFORM", "linux/amd64")
    pushed = images.push_from_here(host, spec, [MAIN, OTHER], lambda _: None)
    assert pushed["uri"].endswith("/hyper-h1/work:latest")
