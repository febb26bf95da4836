"""The AWS host's app as its Lambda function builds it (DynamoDB store, AWS provider,
Batch launcher, key from Secrets Manager), driven through the Lambda adapter under moto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from hyper.host.lambda_adapter import TICK_EVENT, LambdaHandler, make_handler
from hyper.host.lambda_app import make_app
from hyper.store import dynamodb_tables as tables
from hyper.store.dynamodb import DynamoDBStore
from hyper.worker_tokens import WorkerTokens
from tests.helpers.lambda_events import proxy_event

REGION = "eu-west-1"


@pytest.fixture
def function_env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """What the host stack gives its function, with the resources behind it; the key."""
    with mock_aws(config={"batch": {"use_docker": False}}):
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secret = secrets.create_secret(Name="hyper/h1/api-key", SecretString="the-function-key")
        worker = secrets.create_secret(Name="hyper/h1/worker-key", SecretString="the-worker-key")
        tables.create_tables(boto3.client("dynamodb", region_name=REGION), "hyper-h1")
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket="hyper-h1-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        for name, value in {
            "HYPER_REGION": REGION,
            "HYPER_SECRET_ARN": secret["ARN"],
            "HYPER_WORKER_SECRET_ARN": worker["ARN"],
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


def test_workers_get_the_worker_key_and_a_token_that_open_their_own_routes_only(
    function_env: str,
) -> None:
    """The function reads both keys; job roles read no secret (the provider names none
    for them), and its Batch launcher gives workers the worker key and their launch's
    token, never the host's key: with them a worker can claim and report as itself, not
    as another launch's worker, nor submit, list, cancel, read logs, files or resources."""
    app = make_app()
    handler = make_handler(lambda: app)
    try:
        assert app.app.state.service.deployer.provider.secret_arn is None  # type: ignore[attr-defined]
        worker = "the-worker-key"
        handler(proxy_event("GET", "/health", key=function_env), None)  # the app has started
        launcher = app.app.state.tick.scheduler.launchers["aws"]  # type: ignore[attr-defined]
        assert launcher.worker_key == worker
        token = launcher.tokens.token("b-1")
        assert token == WorkerTokens(function_env).token("b-1")
        mine = {"x-hyper-worker-token": token}
        for method, path in [("GET", "/jobs"), ("GET", "/health"), ("GET", "/resources/queues"),
                             ("POST", "/jobs/cancel"), ("GET", "/jobs/1/log"),
                             ("GET", "/files/jobs/1/out.txt"),
                             ("DELETE", "/files/jobs/1/out.txt")]:  # fmt: skip
            event = proxy_event(method, path, key=worker, body="{}", headers=mine)
            assert handler(event, None)["statusCode"] == 401, (method, path)
        claim = json.dumps({"queue": "q1", "definition": "d1", "limit": 1, "wait": 0})
        for path, headers in [
            ("/workers/b-1-0/claim", {}),  # no token
            ("/workers/b-2-0/claim", mine),
        ]:  # another launch's worker
            event = proxy_event("POST", path, key=worker, body=claim, headers=headers)
            assert handler(event, None)["statusCode"] == 401, path
        event = proxy_event("POST", "/workers/b-1-0/claim", key=worker, body=claim, headers=mine)
        answer = handler(event, None)
        # past the key: the host itself answers (this host has no definition d1 yet)
        assert answer["statusCode"] == 400 and "d1" in json.loads(answer["body"])["detail"]
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


# ---- in Lambda: changes go to the deploy function, a submit asks for a tick -------------

API_FUNCTION, DEPLOY_FUNCTION = "hyper-h1-host", "hyper-h1-deploy"


def invoked(function: str, event: dict[str, str]) -> dict[str, object]:
    return {
        "FunctionName": function,
        "InvocationType": "Event",
        "Payload": json.dumps(event).encode(),
    }


@pytest.fixture
def in_lambda(function_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """What Lambda and the stack add: the function's own name and the deploy function's;
    asynchronous Invoke answered by botocore's Stubber (moto cannot run a function
    without docker)."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", API_FUNCTION)
    monkeypatch.setenv("HYPER_DEPLOY_FUNCTION", DEPLOY_FUNCTION)
    client = boto3.client("lambda", region_name=REGION)
    with Stubber(client) as stub:
        yield stub


def test_changes_are_handed_to_the_deploy_function(
    in_lambda: Stubber, function_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    stub = in_lambda
    client = stub.client
    api = make_handler(lambda: make_app(lambda_client=client))
    deployer = make_handler(lambda: make_app(lambda_client=client))
    key = function_env
    try:
        stub.add_response("invoke", {"StatusCode": 202}, invoked(DEPLOY_FUNCTION, {
            "hyper": "deploy", "kind": "images", "name": "native"}))  # fmt: skip
        made = api(proxy_event("POST", "/resources/images", key=key,
                               body=json.dumps({"name": "native"})), None)  # fmt: skip
        assert made["statusCode"] == 202, made  # accepted: it settles later
        stub.assert_no_pending_responses()
        record = json.loads(api(proxy_event("GET", "/resources/images/native", key=key))["body"])
        assert record["status"] == "CREATING"  # nothing was deployed in the request

        # the deploy function's invocation does the work, and a second one finds it done
        done = deployer({"hyper": "deploy", "kind": "images", "name": "native"}, None)
        settled = {"kind": "images", "name": "native", "status": "ACTIVE"}
        assert done == {"hyper": "deploy", "result": settled}
        again = deployer({"hyper": "deploy", "kind": "images", "name": "native"}, None)
        assert again["result"]["status"] is None
        record = json.loads(api(proxy_event("GET", "/resources/images/native", key=key))["body"])
        assert record["status"] == "ACTIVE" and "working on it" in record["log"]
        assert not [r for r in caplog.records if "failed" in r.getMessage()]
    finally:
        api.close()
        deployer.close()


def test_a_lost_change_is_handed_off_again_by_a_tick(in_lambda: Stubber, function_env: str) -> None:
    stub = in_lambda
    api = make_handler(lambda: make_app(lambda_client=stub.client))
    try:
        assert api(dict(TICK_EVENT), None)["result"]["deploys_taken_up"] == []
        store = DynamoDBStore("hyper-h1", REGION, "hyper-h1-bucket")
        long_ago = time.time() - 2 * 3600
        store.put_resource("images", "native", {"name": "native"}, "CREATING", ["creating"],
                           long_ago)  # fmt: skip
        store.put_resource("images", "fresh", {"name": "fresh"}, "CREATING", ["creating"],
                           time.time())  # fmt: skip
        stub.add_response("invoke", {"StatusCode": 202}, invoked(DEPLOY_FUNCTION, {
            "hyper": "deploy", "kind": "images", "name": "native"}))  # fmt: skip
        ticked = api(dict(TICK_EVENT), None)["result"]
        assert ticked["deploys_taken_up"] == ["image native"]  # not the one under way
        stub.assert_no_pending_responses()
        # taken up just now: the next tick leaves it to the invocation it was given
        assert api(dict(TICK_EVENT), None)["result"]["deploys_taken_up"] == []
    finally:
        api.close()


def test_a_submit_asks_for_one_tick_a_second(
    in_lambda: Stubber, function_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    stub = in_lambda
    api = make_handler(lambda: make_app(lambda_client=stub.client))
    key = function_env
    try:
        store = DynamoDBStore("hyper-h1", REGION, "hyper-h1-bucket")
        for kind, spec in (("clusters", {"name": "c1"}),
                           ("queues", {"name": "q1", "compute_environment": "c1"}),
                           ("definitions", {"name": "d1"})):  # fmt: skip
            store.put_resource(kind, spec["name"], spec, "ACTIVE", ["ready"], time.time())
        job = {"name": "j", "queue": "q1", "definition": "d1", "script": "true\n"}
        body = json.dumps({"jobs": [job]})
        stub.add_response("invoke", {"StatusCode": 202}, invoked(API_FUNCTION, TICK_EVENT))
        for _ in range(3):  # a burst: one tick asked for
            answer = api(proxy_event("POST", "/jobs", body=body, key=key), None)
            assert answer["statusCode"] == 200, answer
        stub.assert_no_pending_responses()
        assert not [r for r in caplog.records if "invoking" in r.getMessage()]
        refused = api(proxy_event("POST", "/jobs", body=json.dumps({"jobs": [
            {**job, "queue": "nope"}]}), key=key), None)  # fmt: skip
        assert refused["statusCode"] == 400  # and no tick asked (none is stubbed)
        assert not [r for r in caplog.records if "invoking" in r.getMessage()]
    finally:
        api.close()


def test_a_tick_while_another_runs_does_nothing(function_env: str) -> None:
    api = make_handler(make_app)
    try:
        other = DynamoDBStore("hyper-h1", REGION, "hyper-h1-bucket")  # another container
        assert other.claim_tick("elsewhere", time.time(), 300)
        assert api(dict(TICK_EVENT), None)["result"] == {"skipped": "another tick is under way"}
        other.release_tick("elsewhere")
        assert api(dict(TICK_EVENT), None)["result"]["started"] == 0
        assert other.claim_tick("again", time.time(), 300)  # the tick let go of it
    finally:
        api.close()
