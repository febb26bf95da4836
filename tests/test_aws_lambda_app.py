"""The AWS host's app as its Lambda function builds it (DynamoDB store, AWS provider,
Batch launcher, key from Secrets Manager), driven through the Lambda adapter under moto."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from hyper.host.lambda_adapter import TICK_EVENT, LambdaHandler, make_handler
from hyper.providers.aws import tables
from hyper.providers.aws.lambda_app import make_app
from tests.test_lambda_adapter import proxy_event

REGION = "eu-west-1"


@pytest.fixture
def function_env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """What the host stack gives its function, with the resources behind it; the key."""
    with mock_aws(config={"batch": {"use_docker": False}}):
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="hyper/h1/api-key", SecretString="the-function-key"
        )
        tables.create_tables(boto3.client("dynamodb", region_name=REGION), "hyper-h1")
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket="hyper-h1-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        for name, value in {
            "HYPER_REGION": REGION,
            "HYPER_SECRET_ARN": secret["ARN"],
            "HYPER_HOST_NAME": "h1",
            "HYPER_API_URL": f"https://abc123.execute-api.{REGION}.amazonaws.com/v1",
            "HYPER_TABLE_PREFIX": "hyper-h1",
            "HYPER_BUCKET": "hyper-h1-bucket",
        }.items():
            monkeypatch.setenv(name, value)
        yield "the-function-key"


def test_the_function_serves_the_host_api(function_env: str) -> None:
    handler = make_handler(make_app)
    try:
        serve(handler, function_env)
    finally:
        handler.close()


def serve(handler: LambdaHandler, key: str) -> None:
    assert handler(proxy_event("GET", "/health", key="wrong"), None)["statusCode"] == 401
    health = handler(proxy_event("GET", "/health", key=key), None)
    assert health["statusCode"] == 200, health
    # a new AWS host has no resources until its operator adds them
    listed = handler(proxy_event("GET", "/resources/queues", key=key), None)
    assert json.loads(listed["body"])["items"] == []
    job = {"name": "j", "queue": "q1", "definition": "d1", "script": "true\n"}
    refused = handler(proxy_event("POST", "/jobs", body=json.dumps({"jobs": [job]}), key=key), None)
    assert refused["statusCode"] == 400 and "q1" in json.loads(refused["body"])["detail"]
    ticked = handler(dict(TICK_EVENT), None)
    assert ticked["hyper"] == "tick" and ticked["result"]["started"] == 0
