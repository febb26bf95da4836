"""`hyper hosts check-host` on AWS: each check says what it found and what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from hyper.config import HostConfig
from hyper.providers.aws import check
from tests.helpers.aws import ACCOUNT, mocked_aws

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with mocked_aws(monkeypatch):
        yield


def test_what_an_account_lacks_is_said_check_by_check(aws: None) -> None:
    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=REGION,
                      account=ACCOUNT)  # fmt: skip
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="work")
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "0" * 64},
                           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "layers": []})  # fmt: skip
    ecr.put_image(repositoryName="work", imageManifest=manifest, imageTag="1")
    uri = f"{ACCOUNT}.dkr.ecr._REGION_.amazonaws.com/work:"
    resources = {
        "regions": [{"name": REGION, "status": "ACTIVE", "spec": {"kind": "aws"}}],
        "clusters": [{"name": "c1", "spec": {"type": "SPOT", "max_vcpus": 256}}],
        "definitions": [
            {"name": "pushed", "spec": {"image_uri": uri + "1"}},
            {"name": "missing", "spec": {"image_uri": uri + "2"}},
            {"name": "public", "spec": {"image_uri": "python:3.11"}},
        ],
    }
    trip = check.Check("trip", True, "")
    found = {c.what: c for c in check.check_host(host, resources, round_trip=lambda: trip)}
    assert found["AWS credentials"].ok and ACCOUNT in found["AWS credentials"].detail
    assert found["host stack"].ok is False and "create-host" in found["host stack"].detail
    assert found[f"image of pushed in {REGION}"].ok is True
    assert found[f"image of missing in {REGION}"].ok is False
    assert found[f"image of public in {REGION}"].ok is None  # not in ECR: not checked
    assert "Lambda concurrent executions" in found
    assert f"EC2 spot vCPUs in {REGION}" in found
    assert found["trip"].ok
    assert all(c.detail for c in found.values() if c.what != "trip")

    other = host._replace(account="999999999999")
    (credentials, *_) = check.check_host(other, {})
    assert credentials.ok is False and "999999999999" in credentials.detail


def test_the_round_trip_waits_for_the_job_to_end() -> None:
    statuses = iter(["Waiting", "Running", "Successful"])
    ok = check.wait_for_job(lambda: 7, lambda _: next(statuses), timeout=60, sleep=lambda _: None)
    assert ok.ok and ok.detail == "job 7 Successful"
