"""The generated CloudFormation: cfn-lint on every variant, least privilege read from the
policies themselves, the options' effects, and golden copies of two templates.

Set HYPER_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cfnlint.config import ConfigMixIn
from cfnlint.decode.decode import decode_str
from cfnlint.runner import run_template_by_data
from cfnlint.runner.cli import Runner

from hyper.errors import UsageError
from hyper.host.lambda_adapter import TICK_EVENT
from hyper.models import RegionSpec
from hyper.providers.aws import templates
from hyper.providers.aws.templates import (
    ExistingVpc,
    PeerVpc,
    host_template,
    peering_routes_template,
    physical_name,
    region_template,
    resource_prefix,
    table_prefix,
)
from hyper.store.dynamodb_tables import table_definitions

GOLDEN = Path(__file__).parent / "golden"
HOST = "h1"
# the regions cfn-lint checks against: one with two zones (us-west-1) among them
LINT_REGIONS = ["us-east-1", "us-west-1", "eu-west-1", "ap-southeast-2"]
# warnings we accept, each with its reason (none so far)
ACCEPTED_WARNINGS: dict[str, str] = {}


def sample_tables(prefix: str) -> list[dict[str, Any]]:
    """CreateTable requests using what the converter knows beyond tables.py's own."""
    return [
        {
            "TableName": f"{prefix}-jobs",
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "id", "AttributeType": "N"},
                {"AttributeName": "qs", "AttributeType": "S"},
            ],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "queue-status",
                    "KeySchema": [
                        {"AttributeName": "qs", "KeyType": "HASH"},
                        {"AttributeName": "id", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
            "SSESpecification": {"Enabled": True, "SSEType": "KMS"},
        },
        {
            "TableName": f"{prefix}-log",
            "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            "AttributeDefinitions": [
                {"AttributeName": "job_id", "AttributeType": "N"},
                {"AttributeName": "seq", "AttributeType": "N"},
            ],
            "KeySchema": [
                {"AttributeName": "job_id", "KeyType": "HASH"},
                {"AttributeName": "seq", "KeyType": "RANGE"},
            ],
            "StreamSpecification": {"StreamEnabled": False},
            "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
            "Tags": [{"Key": "purpose", "Value": "job output"}],
        },
    ]


TABLE_SOURCES = {"tables.py": table_definitions, "sample": sample_tables}


def host(enable_dashboard: bool = True, tables: str = "tables.py", **options: Any) -> Any:
    made = TABLE_SOURCES[tables](table_prefix(HOST))
    return host_template(
        HOST,
        made,
        enable_dashboard=enable_dashboard,
        code_bucket="hyper-code-bucket",
        code_key="hyper/lambda-0123456789abcdef.zip",
        **options,
    )


class Linter:
    """cfn-lint's rules, loaded once; each distinct template linted once."""

    def __init__(self) -> None:
        self.config = ConfigMixIn(regions=LINT_REGIONS, include_checks=["I"])
        self.rules = Runner(self.config).rules
        self.seen: dict[str, list[Any]] = {}

    def findings(self, template: dict[str, Any]) -> list[Any]:
        text = json.dumps(template, sort_keys=True)
        if text not in self.seen:
            decoded, errors = decode_str(text)
            self.seen[text] = list(errors) or list(
                run_template_by_data(decoded, self.config, self.rules)
            )
        return self.seen[text]

    def assert_clean(self, template: dict[str, Any]) -> None:
        """No error, and no warning we have not accepted (informational notes pass)."""
        bad = [
            m
            for m in self.findings(template)
            if m.rule.id[0] in "EW" and m.rule.id not in ACCEPTED_WARNINGS
        ]
        assert not bad, "\n".join(map(str, bad))


@pytest.fixture(scope="module")
def linter() -> Linter:
    return Linter()


def test_the_linter_finds_what_is_wrong(linter: Linter) -> None:
    broken = host(False, "sample")
    broken["Resources"]["HostFunction"]["Properties"]["Runtime"] = "python2.1"
    broken["Resources"]["Bucket"]["DependsOn"] = "NoSuchResource"
    found = {m.rule.id for m in linter.findings(broken)}
    assert {"E3005", "E3030"} <= found
    with pytest.raises(AssertionError, match=r"python2\.1"):
        linter.assert_clean(broken)


# the host stack --------------------------------------------------------------------------


@pytest.mark.parametrize("tables", sorted(TABLE_SOURCES))
@pytest.mark.parametrize("dashboard", [True, False], ids=["dashboard", "no-dashboard"])
def test_host_template_lints_clean(dashboard: bool, tables: str, linter: Linter) -> None:
    template = host(dashboard, tables)
    assert ("Dashboard" in template["Resources"]) is dashboard
    linter.assert_clean(template)


def test_host_template_with_a_batch_prefix_lints_clean(linter: Linter) -> None:
    template = host(batch_prefix="hyper-h1", throttle=(50, 100), worker_throttle=(80, 160))
    linter.assert_clean(template)


def policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    role = template["Resources"]["FunctionRole"]["Properties"]
    (policy,) = role["Policies"]
    return policy["PolicyDocument"]["Statement"]


def deploy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The deploy role's statements: its inline policy's and its managed policies'."""
    from hyper.providers.aws.permissions import role_documents

    documents = role_documents(template, "DeployRole").values()
    return [found for document in documents for found in document["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


ALLOWED_ACTIONS = {
    *templates.TABLE_ACTIONS,
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
    "logs:CreateLogStream", "logs:PutLogEvents",
    "batch:SubmitJob", "batch:DescribeJobs", "batch:CancelJob", "batch:TerminateJob",
    "batch:TagResource",
    "batch:ListJobs",
    "ec2:GetSpotPlacementScores",
    "secretsmanager:GetSecretValue",
    "lambda:InvokeFunction",
}  # fmt: skip
# the only actions AWS offers no narrower resource for
STAR_ACTIONS = {"batch:DescribeJobs", "batch:ListJobs", "ec2:GetSpotPlacementScores"}


@pytest.mark.parametrize("tables", sorted(TABLE_SOURCES))
def test_the_function_may_touch_only_its_own_host(tables: str) -> None:
    template = host(tables=tables)
    resources = template["Resources"]
    own_tables = {lid for lid, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert len(own_tables) == len(TABLE_SOURCES[tables]("x"))
    touched_tables: set[str] = set()
    for found in policy_statements(template):
        assert found["Effect"] == "Allow"
        actions = as_list(found["Action"])
        assert set(actions) <= ALLOWED_ACTIONS, actions
        assert not any("*" in action for action in actions)
        services = {a.split(":")[0] for a in actions}
        assert len(services) == 1, "one service per statement keeps the check honest"
        (service,) = services
        targets = as_list(found["Resource"])
        if "*" in targets:
            assert set(actions) <= STAR_ACTIONS, actions
            continue
        for target in targets:
            assert isinstance(target, dict), f"{service}: {target!r} is not this host's"
            if service == "dynamodb":
                if "Fn::GetAtt" in target:
                    lid, attribute = target["Fn::GetAtt"]
                    assert (lid in own_tables, attribute) == (True, "Arn")
                else:
                    text = target["Fn::Sub"]
                    lid = text.removeprefix("${").removesuffix(".Arn}/index/*")
                    assert text == "${" + lid + ".Arn}/index/*" and lid in own_tables
                touched_tables.add(lid)
            elif service == "s3":
                # the function's objects: its files (and their links) and big scripts
                own = ("*", "files/*", "scripts/*")
                objects = [{"Fn::Sub": "${Bucket.Arn}/" + where} for where in own]
                assert target in ({"Fn::GetAtt": ["Bucket", "Arn"]}, *objects)
            elif service == "secretsmanager":
                assert target in ({"Ref": "ApiKeySecretArn"}, {"Ref": "WorkerKeySecretArn"})
            elif service == "logs":
                assert target == {"Fn::GetAtt": ["FunctionLogs", "Arn"]}
            elif service == "batch":
                this_account = "arn:${AWS::Partition}:batch:*:${AWS::AccountId}:"
                assert target["Fn::Sub"].startswith(this_account)
            elif service == "lambda":  # itself (a tick after a submit) and its deployer
                functions = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:"
                assert target["Fn::Sub"] in (
                    f"{functions}function:{resources[lid]['Properties']['FunctionName']}"
                    for lid in ("HostFunction", "DeployFunction")
                )
            else:
                raise AssertionError(f"{service} has a resource: {target}")
    assert touched_tables == own_tables
    # indexes are reachable exactly for the tables that have some
    with_indexes = {
        lid
        for lid in own_tables
        if resources[lid]["Properties"].get("GlobalSecondaryIndexes")
        or resources[lid]["Properties"].get("LocalSecondaryIndexes")
    }
    dynamodb = next(s for s in policy_statements(template) if s["Action"][0].startswith("dynamodb"))
    index_arns = {
        r["Fn::Sub"].removeprefix("${").removesuffix(".Arn}/index/*")
        for r in dynamodb["Resource"]
        if "Fn::Sub" in r
    }
    assert index_arns == with_indexes


def test_changes_are_deployed_by_a_function_the_api_cannot_become() -> None:
    """Only the deploy function may make stacks, roles, repositories and compute
    environments, and only this host's; the API function may only invoke it."""
    template = host(batch_prefix="hyper-h1-")  # worker_names("h1").prefix
    resources = template["Resources"]
    deployer = resources["DeployFunction"]["Properties"]
    assert deployer["Timeout"] == 900 and deployer["Role"] == {"Fn::GetAtt": ["DeployRole", "Arn"]}
    api_env = resources["HostFunction"]["Properties"]["Environment"]["Variables"]
    assert api_env["HYPER_DEPLOY_FUNCTION"] == deployer["FunctionName"]
    for found in deploy_statements(template):
        if found["Resource"] == "*":
            continue
        if found["Sid"].startswith("AcceptPeerings"):  # any peering, into the host's VPCs
            assert found["Action"] == ["ec2:AcceptVpcPeeringConnection"]
            continue
        tags = {k: v for test in found.get("Condition", {}).values() for k, v in test.items()
                if k.endswith(("Tag/hyper:host", "Tag/hyper:use"))}  # fmt: skip
        if found["Sid"] == "HostNetworkTagsAfterCreate":  # untagged ones, as the host's
            assert found["Condition"]["Null"] == {
                "aws:ResourceTag/hyper:host": "true",
                "aws:ResourceTag/hyper:use": "true",
            }
            assert found["Condition"]["StringEquals"] == {"aws:RequestTag/hyper:host": "h1"}
            assert found["Action"] == ["ec2:CreateTags"]
            continue
        if found["Sid"].startswith(("HostNetworkCreates", "OwnerNetworkCreates")):
            # network creates: ARNs of ids AWS makes, narrowed by the network's tag (HOST)
            assert set(tags.values()) == {"h1"}, found
            continue
        if tags:  # launch templates: ARNs of ids AWS makes, narrowed by the host's tag
            assert set(tags.values()) == {"hyper-h1"}, found
            continue
        for target in found["Resource"]:
            text = target["Fn::Sub"] if "Fn::Sub" in target else str(target)
            own = (
                ":stack/hyper-h1--*", "/hyper-h1--*", ":repository/hyper-h1/*", "Table",
                "Bucket", "ApiKeySecretArn", "WorkerKeySecretArn", "DeployFunctionLogs",
            )  # fmt: skip
            assert any(mark in text for mark in own), target
    api_actions = {a for s in policy_statements(template) for a in as_list(s["Action"])}
    assert not {a for a in api_actions if a.split(":")[0] in ("cloudformation", "iam", "ecr")}


def test_no_ec2_create_or_tag_of_the_deploy_role_is_without_the_hosts_tag() -> None:
    """Every EC2 statement that makes or tags (networks and launch templates) holds a
    hyper:host tag condition, and tags only as a resource is made or on the host's own."""
    template = host(batch_prefix="hyper-h1-")
    creates = [
        found
        for found in deploy_statements(template)
        if any(a.startswith(("ec2:Create", "ec2:Allocate")) for a in as_list(found["Action"]))
    ]
    assert {c["Sid"] for c in creates} >= {"HostNetworkCreatesVpc", "HostNetworkCreatesOthers",
                                           "HostNetworkCreatesIn", "OwnerNetworkCreatesIn",
                                           "HostLaunchTemplates",
                                           "TagLaunchTemplatesAsMade"}  # fmt: skip
    for found in creates:  # no create's request tag on "*" (it would open existing VPCs)
        keys = {k for test in found.get("Condition", {}).values() for k in test}
        if "aws:RequestTag/hyper:host" in keys and "ec2:CreateTags" not in found["Action"]:
            assert found["Resource"] != "*", found
    for found in creates:
        keys = {k for test in found.get("Condition", {}).values() for k in test}
        assert keys & {"aws:RequestTag/hyper:host", "aws:ResourceTag/hyper:host",
                       "aws:ResourceTag/hyper:use"}, found  # fmt: skip
        if (
            "ec2:CreateTags" in as_list(found["Action"])
            and "aws:ResourceTag/hyper:host" not in keys
        ):
            assert "ec2:CreateAction" in keys, found


def test_a_batch_prefix_narrows_submitting() -> None:
    submit = next(
        s
        for s in policy_statements(host(batch_prefix="hyper-a.b"))
        if s["Action"] == ["batch:SubmitJob"]
    )
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in submit["Resource"]] == [
        "job-queue/hyper-a_b-*",
        "job-definition/hyper-a_b-*",
    ]


def test_the_host_stack_holds_what_it_should() -> None:
    template = host()
    resources = template["Resources"]

    def of_type(kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == kind}

    methods = of_type("AWS::ApiGateway::Method")
    assert len(methods) == 4
    # the API takes the key; the dashboard's pages, a session cookie the function checks
    keyed = {lid for lid, m in methods.items() if m["ApiKeyRequired"] is True}
    assert keyed == {"ApiRootMethod", "ApiProxyMethod"}
    assert all(m["Integration"]["Type"] == "AWS_PROXY" for m in methods.values())
    paths = of_type("AWS::ApiGateway::Resource")
    assert paths["ApiProxyResource"]["PathPart"] == "{proxy+}"
    assert paths["ApiDashboardResource"]["PathPart"] == "dashboard"
    assert paths["ApiDashboardProxyResource"]["ParentId"] == {"Ref": "ApiDashboardResource"}
    plans = of_type("AWS::ApiGateway::UsagePlan")
    stage = [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "ApiStage"}}]
    assert [plan["ApiStages"] for plan in plans.values()] == [stage, stage]
    # a plan for each key: the workers' is sized for 10,000 running jobs, and no holder
    # of the API key takes from it (each key from its own secret)
    assert plans["UsagePlan"]["Throttle"] == {"RateLimit": 500.0, "BurstLimit": 1000}
    assert plans["WorkerUsagePlan"]["Throttle"] == {"RateLimit": 1000.0, "BurstLimit": 2000}
    plan_keys = of_type("AWS::ApiGateway::UsagePlanKey").values()
    assert sorted((k["KeyId"]["Ref"], k["UsagePlanId"]["Ref"]) for k in plan_keys) == [
        ("ApiKey", "UsagePlan"),
        ("WorkerApiKey", "WorkerUsagePlan"),
    ]
    keys = of_type("AWS::ApiGateway::ApiKey")
    # the API Gateway keys' values are the keys' HMACs, given by create-host, never the
    # secrets themselves (apigateway:GET reads a key's value; hyper/key_headers.py)
    assert keys["ApiKey"]["Value"] == {"Ref": "ApiGatewayKey"}
    assert keys["WorkerApiKey"]["Value"] == {"Ref": "WorkerGatewayKey"}
    assert "resolve:secretsmanager" not in json.dumps(keys)

    function = of_type("AWS::Lambda::Function")["HostFunction"]
    assert function["Runtime"] in ("python3.12", "python3.13")  # Amazon Linux 2023
    assert function["Handler"] == "hyper.host.lambda_adapter.handler"
    assert function["Code"] == {
        "S3Bucket": "hyper-code-bucket",
        "S3Key": "hyper/lambda-0123456789abcdef.zip",
    }
    variables = function["Environment"]["Variables"]
    assert variables["HYPER_TABLE_PREFIX"] == table_prefix(HOST)
    assert variables["HYPER_BUCKET"] == {"Ref": "Bucket"}
    assert variables["HYPER_HOST_NAME"] == HOST
    assert variables["HYPER_REGION"] == {"Ref": "AWS::Region"}

    (rule,) = of_type("AWS::Events::Rule").values()
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert json.loads(rule["Targets"][0]["Input"]) == TICK_EVENT == {"hyper": "tick"}
    principals = sorted(p["Principal"] for p in of_type("AWS::Lambda::Permission").values())
    assert principals == ["apigateway.amazonaws.com", "events.amazonaws.com"]

    logs = of_type("AWS::Logs::LogGroup")
    assert logs["FunctionLogs"]["LogGroupName"] == f"/aws/lambda/{function['FunctionName']}"
    assert all(group["RetentionInDays"] == 30 for group in logs.values())

    bucket = of_type("AWS::S3::Bucket")["Bucket"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    rule_sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule_sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    assert set(template["Outputs"]) >= {
        "ApiUrl", "ApiKeyId", "BucketName", "TablePrefix", "SecretArn", "FunctionName",
    }  # fmt: skip
    tables = of_type("AWS::DynamoDB::Table")
    assert sorted(t["TableName"] for t in tables.values()) == sorted(
        t["TableName"] for t in table_definitions(table_prefix(HOST))
    )


def test_create_table_requests_become_cloudformation_tables() -> None:
    jobs, log = (templates.dynamodb_table(t, HOST) for t in sample_tables(table_prefix(HOST)))
    assert jobs["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert jobs["Properties"]["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert jobs["Properties"]["GlobalSecondaryIndexes"][0]["IndexName"] == "queue-status"
    assert "StreamSpecification" not in log["Properties"]
    assert log["Properties"]["TimeToLiveSpecification"]["AttributeName"] == "expires"
    assert log["Properties"]["Tags"] == [
        {"Key": "purpose", "Value": "job output"},
        {"Key": "hyper:host", "Value": HOST},
    ]
    with pytest.raises(ValueError, match="ResourcePolicy"):
        templates.dynamodb_table({"TableName": "t", "ResourcePolicy": "{}"}, HOST)


def test_only_this_hosts_tables() -> None:
    with pytest.raises(ValueError, match="hyper-other-jobs"):
        host_template(
            HOST,
            table_definitions(table_prefix("other"))[:1],
            enable_dashboard=False,
            code_bucket="b-b-b",
            code_key="k",
        )


def test_names_aws_takes(linter: Linter) -> None:
    long = "a." + "b" * 61
    name = templates.function_name(long)
    assert len(name) <= 64 and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    # hosts whose names differ only where AWS needs a change still get different names
    assert templates.function_name("a.b") != templates.function_name("a-b")
    assert templates.function_name("plain") == "hyper-plain-host"
    linter.assert_clean(
        host_template(
            long,
            table_definitions(table_prefix(long)),
            enable_dashboard=True,
            code_bucket="hyper-code",
            code_key="k.zip",
        )
    )


# the region stack ----------------------------------------------------------------------------

HOST_VPC = ExistingVpc(
    "vpc-0a1b2c3d4e5f60718",
    ["subnet-0a1b2c3d4e5f60718", "subnet-1a1b2c3d4e5f60718"],
    ["rtb-0a1b2c3d4e5f60718"],
    "10.0.0.0/16",
)
OTHER_VPC = ExistingVpc(
    "vpc-9a1b2c3d4e5f60718",
    ["subnet-9a1b2c3d4e5f60718", "subnet-8a1b2c3d4e5f60718", "subnet-7a1b2c3d4e5f60718"],
    ["rtb-9a1b2c3d4e5f60718", "rtb-8a1b2c3d4e5f60718"],
    "172.16.0.0/16",
)
MAIN = PeerVpc("vpc-0f0e0d0c0b0a09080", "10.200.0.0/16", "us-east-1")
VPC_CHOICES = ("host", "existing", "new")
SUBNETS = ("PUBLIC", "PRIVATE_ISOLATED", "PRIVATE_WITH_NAT")
ENDPOINTS = ("OFF", "DATA_OPTIMISED", "FOR_PRIVATE_VPC")
NATS = (0, 1, 2, 3)
PEERING = (False, True)
VARIANTS = list(itertools.product(VPC_CHOICES, SUBNETS, ENDPOINTS, NATS, PEERING))


def region_spec(vpc: str, subnets: str, endpoints: str, nats: int, peering: bool) -> RegionSpec:
    return RegionSpec(
        name="eu-west-1",
        kind="aws",
        import_vpc=vpc == "host",
        vpc_id=OTHER_VPC.vpc_id if vpc == "existing" else None,
        cidr="10.1.0.0/16" if vpc == "new" else None,
        subnet_config=subnets,
        deploy_vpc_endpoints=endpoints,
        nat_gateways=nats,
        peer_with_main_region=peering,
    )


def region_variant(vpc: str, subnets: str, endpoints: str, nats: int, peering: bool) -> Any:
    spec = region_spec(vpc, subnets, endpoints, nats, peering)
    described = {"host": HOST_VPC, "existing": OTHER_VPC, "new": None}[vpc]
    return region_template(spec, host_name=HOST, vpc=described, peer=MAIN if peering else None)


@pytest.mark.parametrize(
    ("vpc", "subnets", "endpoints", "nats", "peering"),
    VARIANTS,
    ids=["-".join(map(str, v)) for v in VARIANTS],
)
def test_every_region_variant_lints_clean(
    vpc: str,
    subnets: str,
    endpoints: str,
    nats: int,
    peering: bool,
    linter: Linter,
) -> None:
    if vpc == "new" and subnets == "PRIVATE_WITH_NAT" and nats == 0:
        with pytest.raises(UsageError, match="at least one NAT gateway"):
            region_variant(vpc, subnets, endpoints, nats, peering)
        return
    if vpc == "new" and subnets == "PRIVATE_ISOLATED":  # workers could not reach the API
        with pytest.raises(UsageError, match="no way to the host's API"):
            region_variant(vpc, subnets, endpoints, nats, peering)
        return
    template = region_variant(vpc, subnets, endpoints, nats, peering)
    linter.assert_clean(template)  # variants giving the same template are linted once

    resources = template["Resources"]
    kinds = [r["Type"] for r in resources.values()]
    assert set(template["Outputs"]) >= {"VpcId", "SubnetIds", "SecurityGroupId"}
    assert ("AWS::EC2::VPC" in kinds) is (vpc == "new")
    nat_count = kinds.count("AWS::EC2::NatGateway")
    assert nat_count == (nats if vpc == "new" and subnets == "PRIVATE_WITH_NAT" else 0)
    interface = [
        r for r in resources.values() if r["Properties"].get("VpcEndpointType") == "Interface"
    ]
    gateway = [r for r in resources.values() if r["Properties"].get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == (0 if endpoints == "OFF" else 2)
    assert len(interface) == (
        len(templates.INTERFACE_ENDPOINTS) if endpoints == "FOR_PRIVATE_VPC" else 0
    )
    assert ("AWS::EC2::VPCPeeringConnection" in kinds) is peering
    if peering:
        routes = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::Route"]
        to_main = [r for r in routes if r.get("DestinationCidrBlock") == MAIN.cidr]
        assert to_main and all(r["VpcPeeringConnectionId"] == {"Ref": "Peering"} for r in to_main)
        assert "PeeringConnectionId" in template["Outputs"]


def test_a_new_vpc_spreads_over_zones() -> None:
    three = region_variant("new", "PRIVATE_WITH_NAT", "OFF", 3, False)["Resources"]
    subnets = [r["Properties"] for r in three.values() if r["Type"] == "AWS::EC2::Subnet"]
    zones = {json.dumps(s["AvailabilityZone"]) for s in subnets}
    assert len(subnets) == 6 and len(zones) == 3
    # public subnets in the first three eighths, private ones from the fifth
    assert [s["CidrBlock"] for s in subnets] == [f"10.1.{n * 32}.0/19" for n in (0, 1, 2, 4, 5, 6)]
    one = region_variant("new", "PRIVATE_WITH_NAT", "OFF", 1, False)["Resources"]
    nat_routes = [r["Properties"].get("NatGatewayId") for r in one.values()]
    nat_routes = [route for route in nat_routes if route]
    assert nat_routes == [{"Ref": "NatGateway0"}] * 2
    public = region_variant("new", "PUBLIC", "OFF", 0, False)["Resources"]
    assert all(
        r["Properties"]["MapPublicIpOnLaunch"]
        for r in public.values()
        if r["Type"] == "AWS::EC2::Subnet"
    )


def test_region_choices_that_cannot_work() -> None:
    with pytest.raises(UsageError, match="host's VPC"):
        region_template(region_spec("host", "PUBLIC", "OFF", 0, False), host_name=HOST)
    with pytest.raises(UsageError, match="describe VPC"):
        region_template(region_spec("existing", "PUBLIC", "OFF", 0, False), host_name=HOST)
    with pytest.raises(UsageError, match="CIDR"):
        region_template(
            RegionSpec(name="r", kind="aws", import_vpc=False), host_name=HOST, vpc=HOST_VPC
        )
    with pytest.raises(UsageError, match="main region's VPC"):
        region_template(region_spec("new", "PUBLIC", "OFF", 0, True), host_name=HOST)
    overlapping = PeerVpc("vpc-0f0e0d0c0b0a09080", "10.1.128.0/17", "us-east-1")
    with pytest.raises(UsageError, match="overlaps"):
        region_template(
            region_spec("new", "PUBLIC", "OFF", 0, True), host_name=HOST, peer=overlapping
        )
    main = region_spec("host", "PUBLIC", "OFF", 0, True)
    main.main_region = True
    with pytest.raises(UsageError, match="cannot peer with itself"):
        region_template(main, host_name=HOST, vpc=HOST_VPC, peer=MAIN)
    tiny = region_spec("new", "PRIVATE_WITH_NAT", "OFF", 3, False)
    tiny.cidr = "10.1.0.0/26"
    with pytest.raises(UsageError, match="too small"):
        region_template(tiny, host_name=HOST)


def test_the_main_regions_side_of_a_peering_lints_clean(linter: Linter) -> None:
    template = peering_routes_template(
        HOST,
        "eu-west-1",
        peering_connection_id="pcx-0a1b2c3d4e5f60718",
        route_table_ids=HOST_VPC.route_table_ids,
        cidr="10.1.0.0/16",
    )
    linter.assert_clean(template)
    assert len(template["Resources"]) == 1


# golden copies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("aws-host.json", lambda: host(True, "sample")),
        (
            "aws-region-new-nat-endpoints-peering.json",
            lambda: region_variant("new", "PRIVATE_WITH_NAT", "FOR_PRIVATE_VPC", 2, True),
        ),
    ],
)
def test_golden_templates(name: str, make: Any) -> None:
    text = json.dumps(make(), indent=2, sort_keys=True) + "\n"
    path = GOLDEN / name
    if os.environ.get("HYPER_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{name} changed; HYPER_UPDATE_GOLDEN=1 rewrites it"


def test_a_region_update_keeps_every_subnet_on_its_range() -> None:
    """Whatever an update changes (PUBLIC to NAT'ed, one NAT gateway to three), a subnet
    keeps its range, and no subnet of one variant overlaps another subnet of the other:
    CloudFormation makes the new subnets before it deletes the old ones."""
    import ipaddress

    def ranges(subnets: str, nats: int) -> dict[str, str]:
        resources = region_variant("new", subnets, "OFF", nats, False)["Resources"]
        return {lid: r["Properties"]["CidrBlock"] for lid, r in resources.items()
                if r["Type"] == "AWS::EC2::Subnet"}  # fmt: skip

    variants = [ranges("PUBLIC", 0), *(ranges("PRIVATE_WITH_NAT", n) for n in (1, 2, 3))]
    for before in variants:
        for after in variants:
            for lid, cidr in before.items():
                for other, theirs in after.items():
                    if lid == other:
                        assert cidr == theirs, (lid, cidr, theirs)
                    else:
                        a, b = ipaddress.ip_network(cidr), ipaddress.ip_network(theirs)
                        assert not a.overlaps(b), (lid, cidr, other, theirs)


def test_no_name_of_one_host_falls_under_another_hosts_grants() -> None:
    """The grants of host B name `hyper-B--*` (stacks, roles, Batch resources); host A's
    stacks, its CloudFormation-named function roles and its resources must never match,
    for every pair of host names create-host accepts. Those it refuses are the ones that
    would (`prod--x`'s stack `hyper-prod--x` is under `prod`'s `hyper-prod--*`)."""
    import fnmatch

    from hyper import config
    from hyper.providers.aws.stacks import host_stack_name, region_stack_name

    candidates = ["prod", "prod-", "prod--x", "prod-eu", "prod.", "prod..x", "prod.-x",
                  "prod.x", "prod_", "prod-x", "prod-x-", "p.r.o.d"]  # fmt: skip
    accepted, refused = [], []
    for name in candidates:
        try:
            accepted.append(config.validate_new_host_name(name))
        except UsageError:
            refused.append(name)
    assert refused == ["prod-", "prod--x", "prod.", "prod..x", "prod.-x", "prod-x-"]

    def names_of(host: str) -> list[str]:
        stack = host_stack_name(host)
        return [stack, f"{stack}-DeployRole-ABC123", f"{stack}-FunctionRole-ABC123",
                region_stack_name(host, "eu-west-1"), f"{resource_prefix(host)}-c1-ce1",
                physical_name(host, "boundary", limit=128)]  # fmt: skip

    for a, b in itertools.permutations(accepted, 2):
        grant = f"{resource_prefix(b)}-*"
        crossing = [n for n in names_of(a) if fnmatch.fnmatchcase(n, grant)]
        assert not crossing, f"host {a!r}'s {crossing} fall under host {b!r}'s {grant}"
    # and the refused ones did cross
    assert fnmatch.fnmatchcase(host_stack_name("prod--x"), f"{resource_prefix('prod')}-*")


@pytest.mark.parametrize("vpc", ["new", "existing", "host"])
def test_interface_endpoints_name_the_services_only_in_a_vpc_the_host_made(vpc: str) -> None:
    """Private DNS makes the services' own names resolve to the endpoints for the whole
    VPC, whose security group admits only workers: in a VPC the host did not make, every
    other workload there would lose STS, Secrets Manager, ECR, logs and ECS."""
    template = region_variant(vpc, "PUBLIC", "FOR_PRIVATE_VPC", 0, False)
    interface = [r["Properties"] for r in template["Resources"].values()
                 if r["Type"] == "AWS::EC2::VPCEndpoint"
                 and r["Properties"]["VpcEndpointType"] == "Interface"]  # fmt: skip
    assert interface
    assert {p["PrivateDnsEnabled"] for p in interface} == {vpc == "new"}


def test_the_keyless_dashboard_routes_are_throttled_by_the_stage() -> None:
    """A usage plan throttles only requests with its keys: the dashboard's routes take
    none (a browser has a session cookie), so the stage throttles them itself, and only
    them (workers and the key's holder keep the usage plan's rate)."""
    resources = host()["Resources"]
    settings = resources["ApiStage"]["Properties"]["MethodSettings"]
    keyless = {
        found["Properties"]["ResourceId"]["Ref"]
        for found in resources.values()
        if found["Type"] == "AWS::ApiGateway::Method" and not found["Properties"]["ApiKeyRequired"]
    }
    assert keyless == {"ApiDashboardResource", "ApiDashboardProxyResource"}
    assert {(s["ResourcePath"], s["HttpMethod"]) for s in settings} == {
        ("/~1dashboard", "ANY"),
        ("/~1dashboard~1{proxy+}", "ANY"),
    }

    # each setting names a method the API has, by its path (a "/" in it as "~1") and its
    # HTTP method: AWS documents the method "*" only with the path "/*"
    def path(resource_id: str) -> str:
        found = resources[resource_id]["Properties"]
        parent = found["ParentId"]
        above = "" if "Fn::GetAtt" in parent else path(parent["Ref"])
        return above + "/" + found["PathPart"]

    methods = {
        (path(m["ResourceId"]["Ref"]).replace("/", "~1"), m["HttpMethod"])
        for found in resources.values()
        if found["Type"] == "AWS::ApiGateway::Method"
        and "Ref" in (m := found["Properties"])["ResourceId"]
    }
    for found in settings:
        assert found["ResourcePath"].startswith("/~1")
        assert (found["ResourcePath"][1:], found["HttpMethod"]) in methods, found
    for found in settings:
        assert 0 < found["ThrottlingRateLimit"] <= 10 and 0 < found["ThrottlingBurstLimit"] <= 20
