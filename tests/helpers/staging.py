"""A moto S3 server on loopback for staging tests, and the hyper command run as a user runs it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, Result, fake_aws_credentials
from tests.helpers.moto import moto_server

BUCKET = "dams"


@dataclass
class S3:
    """A moto S3 server on loopback that this process and its children use."""

    client: Any
    endpoint: str

    def stored(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A moto server with the bucket `dams`; AWS_ENDPOINT_URL points every process at it
    (the `s3` fixture of each test module that needs S3)."""
    import boto3

    with moto_server(monkeypatch) as endpoint:
        fake_aws_credentials(monkeypatch)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.delenv("AWS_REGION", raising=False)
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield S3(client, endpoint)


def hyper(*argv: str, cwd: Path) -> Result:
    """The hyper command as a user runs it, in its own process."""
    done = subprocess.run(
        [str(BIN / "hyper"), *argv], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    return Result(done.returncode, done.stdout, done.stderr)
