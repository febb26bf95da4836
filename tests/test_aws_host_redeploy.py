"""Redeploying a host made by an older hyper: its stack's changes must be ones AWS takes,
in the order it takes them (moto's CloudFormation makes no usage plan key, so
tests/helpers/usage_plans.py plays API Gateway's rule of one plan per key and stage)."""

from __future__ import annotations

import copy
from pathlib import Path

import boto3
import pytest

from hyper.errors import DeployFailed
from hyper.providers.aws import stacks, templates
from hyper.providers.aws.host import AwsHostRequest, deploy_host
from hyper.store import dynamodb_tables
from tests.helpers.aws import mocked_aws
from tests.helpers.aws_host import bundle
from tests.helpers.usage_plans import (
    keys_in_two_plans_of_a_stage,
    let_moto_remove_what_it_cannot_make,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
    pytest.mark.filterwarnings("ignore:Unable to delete"),  # moto made no usage plan
]

REGION = "eu-west-1"
STACK = "hyper-h1"


def before_the_workers_plan(template: dict) -> dict:
    """The host template as hyper made it before the workers had a usage plan of their own
    (commit 7aa97c4): the worker key in `UsagePlan`, with the API key."""
    old = copy.deepcopy(template)
    resources = old["Resources"]
    del resources["WorkerUsagePlan"]
    resources["WorkerUsagePlanKey"]["Properties"]["UsagePlanId"] = {"Ref": "UsagePlan"}
    return old


def test_the_rule_finds_a_key_in_two_plans_of_a_stage_only_while_both_are_held() -> None:
    tables = dynamodb_tables.table_definitions(templates.table_prefix("h1"))
    new = templates.host_template("h1", tables, code_bucket="b",
                                  code_key="k", enable_dashboard=False)  # fmt: skip
    old = before_the_workers_plan(new)
    assert keys_in_two_plans_of_a_stage(None, new) == []
    assert keys_in_two_plans_of_a_stage(None, old) == []
    assert keys_in_two_plans_of_a_stage(new, new) == []
    (found,) = keys_in_two_plans_of_a_stage(old, new)
    assert "WorkerApiKey" in found and "UsagePlan and WorkerUsagePlan" in found


def test_a_host_made_before_the_workers_plan_is_redeployed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines: list[str] = []
    request = AwsHostRequest(name="h1", region=REGION)
    let_moto_remove_what_it_cannot_make(monkeypatch)
    with mocked_aws(monkeypatch):
        deploy_host(request, lines.append, code=bundle(tmp_path / "bundle-1.zip", "# 1\n"))
        # the host as the older hyper left it: its stack made from the older template
        made = stacks.describe_stack(STACK, REGION)
        assert made is not None
        new = stacks.deployed_template(STACK, REGION) or {}
        old = before_the_workers_plan(new)
        bucket = stacks.outputs_of(made)["CodeBucket"]
        parameters = stacks.parameters_of(made)
        # (through a session without API Gateway's rule: AWS would refuse this step too,
        # as moto cannot make the stack again under the same names)
        guarded = boto3.DEFAULT_SESSION
        boto3.setup_default_session()
        try:
            stacks.deploy_stack(STACK, old, REGION, parameters, lines.append,
                                template_bucket=bucket)  # fmt: skip
        finally:
            boto3.DEFAULT_SESSION = guarded
        assert stacks.deployed_template(STACK, REGION) == old
        # updated at once to the new template, the stack fails as on AWS
        with pytest.raises(DeployFailed, match="one usage plan for each stage"):
            stacks.deploy_stack(STACK, new, REGION, parameters, lines.append,
                                template_bucket=bucket)  # fmt: skip

        lines.clear()
        deploy_host(request, lines.append, code=bundle(tmp_path / "bundle-2.zip", "# 2\n"))
        assert any("the worker key leaves the API key's usage plan first" in x for x in lines)
        now = stacks.deployed_template(STACK, REGION) or {}
        plan = now["Resources"]["WorkerUsagePlanKey"]["Properties"]["UsagePlanId"]
        assert plan == {"Ref": "WorkerUsagePlan"}
        assert stacks.describe_stack(STACK, REGION)["StackStatus"] == "UPDATE_COMPLETE"

        # once moved, a redeploy is one update
        lines.clear()
        deploy_host(request, lines.append, code=bundle(tmp_path / "bundle-3.zip", "# 3\n"))
        assert not any("leaves the API key's usage plan" in x for x in lines)
