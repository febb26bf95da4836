"""Making AWS calls: clients, and their errors in a user's words."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from hyper.aws_buckets import expect_bucket_owner
from hyper.aws_errors import error_code, error_message
from hyper.errors import DeployFailed, one_line

__all__ = ["aws_client", "aws_errors", "error_code", "error_message", "expect_bucket_owner"]

_CLIENTS = threading.Lock()  # boto3's default session makes clients one at a time


def aws_client(service: str, region: str, **options: Any) -> Any:
    """A plain boto3 client for `service` in `region` (boto3 imported only now), from
    boto3's default session, which loads each service's model once."""
    import boto3

    with _CLIENTS:
        return boto3.client(service, region_name=region, **options)


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """AWS errors (and not reaching AWS) as DeployFailed naming what was being done."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise DeployFailed(one_line(f"{what}: {error_message(error)}")) from None
