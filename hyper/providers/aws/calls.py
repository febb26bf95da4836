"""Making AWS calls: clients, and their errors in a user's words."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from hyper.errors import DeployFailed, one_line

_CLIENTS = threading.Lock()  # boto3's default session makes clients one at a time


def aws_client(service: str, region: str, **options: Any) -> Any:
    """A plain boto3 client for `service` in `region` (boto3 imported only now), from
    boto3's default session, which loads each service's model once."""
    import boto3

    with _CLIENTS:
        return boto3.client(service, region_name=region, **options)


def error_code(error: BaseException) -> str:
    """The code AWS answered with (`ThrottlingException`...), or '' for other errors."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_message(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    return str(detail.get("Message") or detail.get("Code") or error)


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """AWS errors (and not reaching AWS) as DeployFailed naming what was being done."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise DeployFailed(one_line(f"{what}: {error_message(error)}")) from None


def expect_bucket_owner(s3: Any, owner: str) -> Any:
    """`s3` (a boto3 S3 client), set to name `owner` as ExpectedBucketOwner on every call
    that takes it (all of a bucket's and its objects' operations): a bucket of the same
    name in another account (names are global, and a deleted one may be taken) is
    refused by S3 rather than written to or read. Returns the client."""

    def own(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ExpectedBucketOwner" in model.input_shape.members:
            params.setdefault("ExpectedBucketOwner", owner)

    s3.meta.events.register("before-parameter-build.s3", own, unique_id="hyper-bucket-owner")
    return s3
