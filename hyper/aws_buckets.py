"""S3 buckets called safely: a bucket's name is global, so every call says whose it must be."""

from __future__ import annotations

from typing import Any


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
