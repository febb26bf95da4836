"""Deploying the generated stacks with moto's CloudFormation (`mock_aws`): outputs,
updates with and without changes, deletion, and the reasons a failing stack gives.

What moto's CloudFormation cannot do, and so these tests do not ask of it: it has no
AWS::ApiGateway::Stage/ApiKey/UsagePlan(Key), AWS::SecretsManager::Secret or
AWS::S3::BucketPolicy (it warns and skips them, so ApiKeyId and SecretArn are not among
its outputs); it cannot delete route tables, so stacks with a new VPC are not deleted
here; it peers only within one region; and it creates stacks synchronously, failing the
CreateStack call itself rather than leaving a stack in ROLLBACK_COMPLETE with events.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from hyper.errors import DeployFailed, NotFound
from hyper.key_headers import gateway_key
from hyper.models import RegionSpec
from hyper.providers.aws.stacks import (
    MAX_TEMPLATE_BODY,
    delete_stack,
    deploy_stack,
    describe_stack,
    failure_reasons,
    host_stack_name,
    lookup_vpc,
    region_stack_name,
    stack_outputs,
)
from hyper.providers.aws.templates import (
    GATEWAY_KEY_PARAMETER,
    KEY_OWNERS_PARAMETER,
    KEY_READERS_PARAMETER,
    SECRET_PARAMETER,
    WORKER_GATEWAY_KEY_PARAMETER,
    WORKER_SECRET_PARAMETER,
    PeerVpc,
    host_template,
    peering_routes_template,
    region_template,
    table_prefix,
)
from hyper.store.dynamodb_tables import table_definitions

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

REGION = "eu-west-1"
HOST = "h1"
CODE_BUCKET = "hyper-code"
CODE_KEY = "hyper/lambda-0123456789abcdef.zip"
SECRET_NAME = "hyper/h1/api-key"
WORKER_SECRET_NAME = "hyper/h1/worker-key"


@pytest.fixture
def aws(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(
            Bucket=CODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as bundle:
            bundle.writestr("hyper/__init__.py", "")
        s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=code.getvalue())
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(Name=SECRET_NAME, SecretString="the-key")
        secrets.create_secret(Name=WORKER_SECRET_NAME, SecretString="the-worker-key")
        yield


def host_parameters(**extra: str) -> dict[str, str]:
    """The host stack's parameters (the secrets made before it), and any given."""
    secrets = boto3.client("secretsmanager", region_name=REGION)
    return {
        SECRET_PARAMETER: secrets.describe_secret(SecretId=SECRET_NAME)["ARN"],
        WORKER_SECRET_PARAMETER: secrets.describe_secret(SecretId=WORKER_SECRET_NAME)["ARN"],
        GATEWAY_KEY_PARAMETER: gateway_key("the-key"),
        WORKER_GATEWAY_KEY_PARAMETER: gateway_key("the-worker-key"),
        KEY_OWNERS_PARAMETER: "|arn:aws:iam::123456789012:user/owner",
        KEY_READERS_PARAMETER: "",
        **extra,
    }


def the_host_template(**extra: Any) -> dict[str, Any]:
    return host_template(
        HOST,
        table_definitions(table_prefix(HOST)),
        enable_dashboard=True,
        code_bucket=CODE_BUCKET,
        code_key=CODE_KEY,
        **extra,
    )


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def test_the_host_stack_deploys_with_its_outputs(aws: None) -> None:
    lines: list[str] = []
    name = host_stack_name(HOST)
    outputs = deploy_stack(name, the_host_template(), REGION, host_parameters(), log=lines.append)

    assert f"creating stack {name} in {REGION}" in lines
    assert f"stack {name}: CREATE_COMPLETE" in lines
    # all but what moto's CloudFormation lacks (the API key)
    assert set(outputs) >= {"ApiUrl", "BucketName", "TablePrefix", "FunctionName", "SecretArn"}
    assert outputs["SecretArn"] == host_parameters()[SECRET_PARAMETER]
    assert outputs == stack_outputs(name, REGION)

    api_url = rf"https://(\w+)\.execute-api\.{REGION}\.amazonaws\.com/v1"
    url = re.fullmatch(api_url, outputs["ApiUrl"])
    assert url, outputs["ApiUrl"]
    api = client("apigateway").get_rest_api(restApiId=url.group(1))
    assert api["name"] == "hyper-h1"
    paths = {r["path"] for r in client("apigateway").get_resources(restApiId=api["id"])["items"]}
    assert paths == {"/", "/{proxy+}", "/dashboard", "/dashboard/{proxy+}"}

    client("s3").head_bucket(Bucket=outputs["BucketName"])
    assert outputs["TablePrefix"] == table_prefix(HOST)
    tables = set(client("dynamodb").list_tables()["TableNames"])
    assert tables == {t["TableName"] for t in table_definitions(table_prefix(HOST))}
    jobs = client("dynamodb").describe_table(TableName=f"{table_prefix(HOST)}-jobs")["Table"]
    assert len(jobs["GlobalSecondaryIndexes"]) == len(
        table_definitions("x")[0]["GlobalSecondaryIndexes"]
    )

    function = client("lambda").get_function(FunctionName=outputs["FunctionName"])
    config = function["Configuration"]
    assert config["Handler"] == "hyper.host.lambda_adapter.handler"
    assert config["Runtime"].startswith("python3.1")
    variables = config["Environment"]["Variables"]
    assert variables["HYPER_TABLE_PREFIX"] == table_prefix(HOST)
    assert variables["HYPER_BUCKET"] == outputs["BucketName"]
    assert variables["HYPER_REGION"] == REGION

    events = client("events")
    (rule,) = events.list_rules()["Rules"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Input"] == '{"hyper": "tick"}'
    assert target["Arn"] == config["FunctionArn"]


def test_an_update_without_changes_is_no_error(aws: None) -> None:
    name = host_stack_name(HOST)
    template = the_host_template()
    # a parameter, for moto says "No updates are to be performed" only when given some
    template["Parameters"]["Note"] = {"Type": "String", "Description": "a note"}
    first = deploy_stack(name, template, REGION, host_parameters(Note="one"), log=lambda _: None)

    lines: list[str] = []
    again = deploy_stack(name, template, REGION, host_parameters(Note="one"), log=lines.append)
    assert again == first
    assert lines == [f"stack {name}: no changes"]

    lines.clear()
    changed = deploy_stack(name, template, REGION, host_parameters(Note="two"), log=lines.append)
    assert changed == first
    assert f"updating stack {name} in {REGION}" in lines
    assert f"stack {name}: UPDATE_COMPLETE" in lines
    assert describe_stack(name, REGION)["StackStatus"] == "UPDATE_COMPLETE"  # type: ignore[index]


def test_deleting_the_host_stack(aws: None) -> None:
    name = host_stack_name(HOST)
    outputs = deploy_stack(name, the_host_template(), REGION, host_parameters(), log=lambda _: None)
    client("s3").put_object(Bucket=outputs["BucketName"], Key="scripts/1", Body=b"echo hi\n")

    lines: list[str] = []
    delete_stack(name, REGION, log=lines.append, empty_buckets=True)
    assert f"emptied bucket {outputs['BucketName']} (1 objects)" in lines
    assert f"stack {name}: deleted" in lines
    assert describe_stack(name, REGION) is None
    assert client("dynamodb").list_tables()["TableNames"] == []
    with pytest.raises(NotFound):
        stack_outputs(name, REGION)

    lines.clear()
    delete_stack(name, REGION, log=lines.append)
    assert lines == [f"stack {name}: not there"]


def test_a_region_stack_with_a_new_vpc(aws: None) -> None:
    ec2 = client("ec2")
    main_vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto peers only within one region, so the "main region" is this one here
    peer = PeerVpc(main_vpc, "10.0.0.0/16", REGION)
    spec = RegionSpec(
        name=REGION,
        kind="aws",
        import_vpc=False,
        cidr="10.1.0.0/16",
        subnet_config="PRIVATE_WITH_NAT",
        nat_gateways=2,
        deploy_vpc_endpoints="FOR_PRIVATE_VPC",
        peer_with_main_region=True,
    )
    name = region_stack_name(HOST, REGION)
    outputs = deploy_stack(
        name, region_template(spec, host_name=HOST, peer=peer), REGION, log=lambda _: None
    )

    vpc_id = outputs["VpcId"]
    (vpc,) = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert vpc["CidrBlock"] == outputs["VpcCidr"] == "10.1.0.0/16"
    where = [{"Name": "vpc-id", "Values": [vpc_id]}]
    subnets = ec2.describe_subnets(Filters=where)["Subnets"]
    assert len(subnets) == 4
    workers = outputs["SubnetIds"].split(",")
    assert len(workers) == 2
    assert all(not s["MapPublicIpOnLaunch"] for s in subnets if s["SubnetId"] in workers)
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    groups = ec2.describe_security_groups(GroupIds=[outputs["SecurityGroupId"]])
    (group,) = groups["SecurityGroups"]
    assert group["VpcId"] == vpc_id
    assert len(ec2.describe_nat_gateways(Filters=where)["NatGateways"]) == 2
    endpoints = ec2.describe_vpc_endpoints(Filters=where)["VpcEndpoints"]
    kinds = sorted(e["VpcEndpointType"] for e in endpoints)
    assert kinds == ["Gateway"] * 2 + ["Interface"] * 8

    (peering,) = ec2.describe_vpc_peering_connections(
        VpcPeeringConnectionIds=[outputs["PeeringConnectionId"]]
    )["VpcPeeringConnections"]
    assert peering["AccepterVpcInfo"]["VpcId"] == main_vpc
    routes = [
        r
        for table in ec2.describe_route_tables(Filters=where)["RouteTables"]
        for r in table["Routes"]
        if r.get("DestinationCidrBlock") == "10.0.0.0/16"
    ]
    assert routes
    assert {r["VpcPeeringConnectionId"] for r in routes} == {peering["VpcPeeringConnectionId"]}

    # the main region's way back
    main_tables = [
        t["RouteTableId"]
        for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [main_vpc]}])[
            "RouteTables"
        ]
    ]
    back = peering_routes_template(
        HOST,
        REGION,
        peering_connection_id=outputs["PeeringConnectionId"],
        route_table_ids=main_tables,
        cidr=outputs["VpcCidr"],
    )
    deploy_stack(f"{name}-back", back, REGION, log=lambda _: None)
    (table,) = ec2.describe_route_tables(RouteTableIds=main_tables)["RouteTables"]
    assert any(r.get("DestinationCidrBlock") == "10.1.0.0/16" for r in table["Routes"])


def test_a_region_stack_in_an_existing_vpc(aws: None) -> None:
    ec2 = client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.9.0.0/24", AvailabilityZone=f"{REGION}a")
    b = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.9.1.0/24", AvailabilityZone=f"{REGION}b")
    public = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.9.2.0/24", AvailabilityZone=f"{REGION}b"
    )["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=public, MapPublicIpOnLaunch={"Value": True})

    found = lookup_vpc(vpc_id, REGION)
    assert found.subnet_ids == [a["Subnet"]["SubnetId"], b["Subnet"]["SubnetId"]]
    assert found.cidr == "10.9.0.0/16" and len(found.route_table_ids) == 1

    spec = RegionSpec(name=REGION, kind="aws", vpc_id=vpc_id, deploy_vpc_endpoints="DATA_OPTIMISED")
    name = region_stack_name(HOST, REGION)
    outputs = deploy_stack(name, region_template(spec, host_name=HOST, vpc=found), REGION)
    assert outputs["VpcId"] == vpc_id
    assert outputs["SubnetIds"] == ",".join(found.subnet_ids)
    where = [{"Name": "vpc-id", "Values": [vpc_id]}]
    endpoints = ec2.describe_vpc_endpoints(Filters=where)["VpcEndpoints"]
    assert sorted(e["ServiceName"] for e in endpoints) == [
        f"com.amazonaws.{REGION}.dynamodb",
        f"com.amazonaws.{REGION}.s3",
    ]
    assert all(e["RouteTableIds"] == found.route_table_ids for e in endpoints)

    delete_stack(name, REGION, log=lambda _: None)
    groups = ec2.describe_security_groups(Filters=where)["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["default"]
    with pytest.raises(NotFound):
        lookup_vpc("vpc-0123456789abcdef0", REGION)


# moto warns that the EC2 error it passes through CloudFormation has no CloudFormation shape
@pytest.mark.filterwarnings(r"ignore:Exception\(InvalidVPCIdError\)")
def test_a_failing_stack_says_why(aws: None) -> None:
    ec2 = client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.9.0.0/24", AvailabilityZone=f"{REGION}a")
    gone = PeerVpc("vpc-0123456789abcdef0", "10.0.0.0/16", REGION)  # deleted since
    spec = RegionSpec(name=REGION, kind="aws", vpc_id=vpc_id, peer_with_main_region=True)
    template = region_template(spec, host_name=HOST, vpc=lookup_vpc(vpc_id, REGION), peer=gone)
    name = region_stack_name(HOST, REGION)
    reason = rf"stack {name}: .*vpc-0123456789abcdef0 does not exist"
    with pytest.raises(DeployFailed, match=reason):
        deploy_stack(name, template, REGION, log=lambda _: None)


def test_the_reasons_of_a_failed_stack_come_from_its_events() -> None:
    # oldest first, as deploy_stack collects them from DescribeStackEvents
    def event(lid: str, kind: str, status: str, reason: str = "") -> dict[str, str]:
        return {
            "LogicalResourceId": lid,
            "ResourceType": kind,
            "ResourceStatus": status,
            "ResourceStatusReason": reason,
        }

    stack = "AWS::CloudFormation::Stack"
    events = [
        event("hyper-h1", stack, "CREATE_IN_PROGRESS", "User Initiated"),
        event("Bucket", "AWS::S3::Bucket", "CREATE_IN_PROGRESS"),
        event(
            "JobsTable",
            "AWS::DynamoDB::Table",
            "CREATE_FAILED",
            "Table already exists: hyper-h1-jobs",
        ),
        event("Bucket", "AWS::S3::Bucket", "CREATE_FAILED", "Resource creation cancelled"),
        event(
            "hyper-h1",
            stack,
            "ROLLBACK_IN_PROGRESS",
            "The following resource(s) failed to create: [JobsTable].",
        ),
        event("JobsTable", "AWS::DynamoDB::Table", "DELETE_COMPLETE"),
        event("hyper-h1", stack, "ROLLBACK_COMPLETE"),
    ]
    assert failure_reasons(events) == [
        "JobsTable (AWS::DynamoDB::Table): Table already exists: hyper-h1-jobs"
    ]
    only_the_stack = [
        event("hyper-h1", stack, "UPDATE_ROLLBACK_IN_PROGRESS", "x"),
        event("hyper-h1", stack, "UPDATE_FAILED", "Role is not authorized"),
    ]
    assert failure_reasons(only_the_stack) == [
        "hyper-h1 (AWS::CloudFormation::Stack): Role is not authorized"
    ]
    assert failure_reasons(events[:2]) == []


def test_a_big_template_goes_through_s3(aws: None) -> None:
    template = the_host_template()
    template["Metadata"] = {"Padding": "x" * MAX_TEMPLATE_BODY}
    name = host_stack_name(HOST)
    with pytest.raises(DeployFailed, match="needs a bucket"):
        deploy_stack(name, template, REGION, log=lambda _: None)
    assert describe_stack(name, REGION) is None

    outputs = deploy_stack(
        name, template, REGION, host_parameters(), template_bucket=CODE_BUCKET, log=lambda _: None
    )
    assert outputs["TablePrefix"] == table_prefix(HOST)
    keys = [o["Key"] for o in client("s3").list_objects_v2(Bucket=CODE_BUCKET)["Contents"]]
    assert [k for k in keys if k.startswith(f"hyper/templates/{name}-")]


def test_stack_names() -> None:
    assert host_stack_name("h1") == "hyper-h1"
    assert region_stack_name("h1", "eu-west-1") == "hyper-h1--region-eu-west-1"
    odd = host_stack_name("a.b_c")
    assert re.fullmatch(r"[A-Za-z][-A-Za-z0-9_]*", odd) and odd != host_stack_name("a-b_c")
