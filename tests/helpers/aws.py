"""Moto for the AWS tests: one mock with the few AWS managed IAM policies hyper attaches
(moto's whole catalogue costs half a second per region and test), and the calls made
inside it recorded with the IAM permission each needs."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from hyper.providers.aws.permissions import CallRecorder
from tests.helpers.usage_plans import refuse_two_plans_per_stage

ACCOUNT = "123456789012"  # moto's
MANAGED_POLICIES = (
    "AWSBatchServiceRole",
    "AmazonEC2ContainerServiceforEC2Role",
    "AmazonEC2SpotFleetTaggingRole",
    "AmazonS3ReadOnlyAccess",
    "CloudWatchAgentServerPolicy",
)


@functools.cache
def managed_policies() -> str:
    import moto.iam.models

    catalogue = json.loads(moto.iam.models.aws_managed_policies_data)
    return json.dumps({name: catalogue[name] for name in MANAGED_POLICIES})


@contextlib.contextmanager
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallRecorder]:
    """moto in-process, fake credentials, and a recorder of every call made with boto3's
    default session from now on; stack changes that would put an API key in two usage
    plans of one stage are refused, as API Gateway does (tests/helpers/usage_plans.py)."""
    import moto.iam.models
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(moto.iam.models, "aws_managed_policies_data", managed_policies())
    from tests.helpers.moto import bucket_policy_conditions  # moto's server: when used

    bucket_policy_conditions(monkeypatch)
    recorder = CallRecorder()
    with mock_aws(
        config={"batch": {"use_docker": False}, "iam": {"load_aws_managed_policies": True}}
    ):
        boto3.setup_default_session()
        recorder.attach(boto3.DEFAULT_SESSION.events)
        refuse_two_plans_per_stage(boto3.DEFAULT_SESSION.events)
        try:
            yield recorder
        finally:
            boto3.DEFAULT_SESSION = None


def batch_takes_its_service_linked_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's Batch asks every compute environment for a serviceRole; AWS's does not: one
    made without takes Batch's service-linked role, AWSServiceRoleForBatch, made on first
    use (Batch API reference, CreateComputeEnvironment). So does moto's here."""
    from moto.batch import models

    create = models.BatchBackend.create_compute_environment

    def made(self: Any, *arguments: Any, **options: Any) -> Any:
        given = list(arguments)
        role = given[4] if len(given) > 4 else options.get("service_role")
        if not role:
            iam = self.iam_backend
            path = "/aws-service-role/batch.amazonaws.com/"
            found = [r.arn for r in iam.roles.values() if r.path == path]
            role = (
                found[0]
                if found
                else iam.create_service_linked_role("batch.amazonaws.com", "", "").arn
            )
            if len(given) > 4:
                given[4] = role
            else:
                options["service_role"] = role
        return create(self, *given, **options)

    monkeypatch.setattr(models.BatchBackend, "create_compute_environment", made)
