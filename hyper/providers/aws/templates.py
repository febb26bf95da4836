"""CloudFormation templates, generated in Python as plain dicts.

Two stacks make an AWS host:

- ``host_template``: the control plane in the host's region. The DynamoDB tables the
  store asks for, an S3 bucket, a REST API (API key on every method, a usage plan
  that throttles it) in front of one Lambda function that runs the host app, a
  one-minute schedule that makes the same function run a scheduler tick, the function's
  role (this host's tables, bucket, log group and secret, and nothing else of the
  kind), log groups with retention, the secret holding the API key, and optionally
  a CloudWatch dashboard.
- ``region_template``: the network a region's workers run in: the host's VPC or an
  existing one (their subnets and route tables looked up beforehand, see
  ``stacks.lookup_vpc``), or a new VPC with public or NAT'ed private
  subnets; VPC endpoints; peering with the main region; a security group for workers.
  ``peering_routes_template`` adds the main region's side of a peering.

Nothing here calls AWS: a template is a function of its arguments, so the same
arguments give the same template (and CloudFormation sees no change).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hyper.errors import UsageError
from hyper.lambda_events import TICK_EVENT
from hyper.models import RegionSpec

Template = dict[str, Any]
Json = dict[str, Any]

LAMBDA_PYTHON = "3.11"  # the bundle's wheels are built for this version (bundle.py)
LAMBDA_RUNTIME = f"python{LAMBDA_PYTHON}"
LAMBDA_HANDLER = "hyper.host.lambda_adapter.handler"
FUNCTION_TIMEOUT_SECONDS = 300  # API Gateway ends a request at 29 s; a tick may take longer
DEPLOY_TIMEOUT_SECONDS = 900  # Lambda's most: a region's stack can take minutes
API_STAGE = "v1"
TEMPLATE_VERSION = "2010-09-09"
HOST_TAG = "hyper:host"
SECRET_PARAMETER = "ApiKeySecretArn"  # the host stack's parameters: the host's key's secret
WORKER_SECRET_PARAMETER = "WorkerKeySecretArn"  # and the worker key's (hyper/host/auth.py)
# Lambda concurrency reserved for each function: the API always has its share of the
# account's (1,000 by default; at least 100 must stay unreserved) and cannot take it all
# from the account's other functions; changes always have room. docs/aws.md.
API_CONCURRENCY = 400
DEPLOY_CONCURRENCY = 10

# what the host function may do to the host's own tables (transactions are authorised
# through these same actions)
TABLE_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
]
# interface endpoints a VPC without a way out needs for Batch workers: ECR (images),
# CloudWatch Logs, the ECS agent that Batch runs on its instances, Secrets Manager (the
# host's API key) and STS (role credentials); images' layers come through the S3 gateway
INTERFACE_ENDPOINTS = [
    "ecr.api", "ecr.dkr", "logs", "ecs", "ecs-agent", "ecs-telemetry", "secretsmanager", "sts",
]  # fmt: skip
GATEWAY_ENDPOINTS = ["s3", "dynamodb"]
# what the deploy function does to the roles and instance profiles it makes (batch.py);
# tests/test_aws_permissions.py checks each call it makes against these
ROLE_ACTIONS = [
    "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:TagRole",
    "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:ListRolePolicies",
    "iam:DetachRolePolicy", "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole", "iam:PutRolePermissionsBoundary",
]  # fmt: skip
# the deploy role may do these only with the host's permissions boundary on the role (and
# attach only the allowed policies: a statement of its own)
BOUNDED_ROLE_ACTIONS = ["iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy"]
# EC2 for the deploy role: what CloudFormation does with its credentials to make and
# change a region's network (AWS's resource type reference, the handlers' "required
# permissions"); no instance, key pair, volume or image action. These take "*": a new
# resource has no tag to check yet, and routes, endpoints and groups may go into a VPC
# the owner made (untagged).
EC2_NETWORK_ACTIONS = [
    "ec2:Describe*", "ec2:Get*", "ec2:CreateTags",
    "ec2:CreateVpc", "ec2:ModifyVpcAttribute", "ec2:CreateSubnet", "ec2:ModifySubnetAttribute",
    "ec2:CreateInternetGateway", "ec2:AttachInternetGateway", "ec2:DetachInternetGateway",
    "ec2:CreateRouteTable",
    "ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:AssociateRouteTable",
    "ec2:DisassociateRouteTable", "ec2:AllocateAddress", "ec2:CreateNatGateway",
    "ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateVpcEndpoint", "ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints",
    "ec2:CreateVpcPeeringConnection", "ec2:AcceptVpcPeeringConnection",
]  # fmt: skip
# and these only on resources tagged as this host's (every one hyper makes is): another
# host's network, or anything else in the account, cannot be deleted with them
EC2_HOST_DELETES = [
    "ec2:DeleteVpc", "ec2:DeleteSubnet", "ec2:DeleteInternetGateway",
    "ec2:DeleteRouteTable", "ec2:ReleaseAddress",
    "ec2:DeleteNatGateway", "ec2:DeleteSecurityGroup", "ec2:DeleteVpcPeeringConnection",
]  # fmt: skip
PROFILE_ACTIONS = [
    "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile",
    "iam:TagInstanceProfile", "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
]  # fmt: skip


# small helpers that keep the templates readable ------------------------------------------


def ref(name: str) -> Json:
    return {"Ref": name}


def get_att(name: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [name, attribute]}


def sub(text: str) -> Json:
    return {"Fn::Sub": text}


def resource(kind: str, properties: Json, **attributes: Any) -> Json:
    """One resource: its type, properties and attributes (DependsOn, DeletionPolicy...)."""
    return {"Type": kind, "Properties": properties, **attributes}


def output(value: Any, description: str) -> Json:
    return {"Description": description, "Value": value}


def tags(host_name: str, name: str | None = None) -> list[Json]:
    found = [{"Key": HOST_TAG, "Value": host_name}]
    if name:
        found.insert(0, {"Key": "Name", "Value": name})
    return found


def statement(actions: list[str], resources: list[Any] | str, sid: str = "", **more: Any) -> Json:
    """An Allow statement; `sid` names it (docs/aws.md says which one grants each call)."""
    found: Json = {"Sid": sid} if sid else {}
    return {**found, "Effect": "Allow", "Action": actions, "Resource": resources, **more}


def logical_id(text: str) -> str:
    """`hyper-h-job-logs` -> `HyperHJobLogs`: what CloudFormation accepts as a logical id."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text))


def physical_name(host_name: str, suffix: str = "", *, limit: int = 64) -> str:
    """`hyper-HOST[-SUFFIX]` in letters, digits, '-' and '_' (what Lambda, dashboards and
    stacks accept), at most `limit` long. A name that had to change ends with a hash of
    the original, so two hosts never share one."""
    wanted = f"hyper-{host_name}" + (f"-{suffix}" if suffix else "")
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", wanted)
    if safe == wanted and len(safe) <= limit:
        return safe
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:8]
    return f"{safe[: limit - len(digest) - 1]}-{digest}"


def resource_prefix(host_name: str) -> str:
    """The start of the name of each Batch resource, role, instance profile and region
    stack of a host: ``hyper-HOST-``, and then one more ``-`` before the resource's own
    name (``hyper-prod--c1-ce1``). HOST is the host's name in letters, digits and single
    dashes, never ending with one (a name that had to change ends with a hash of it), so
    that ``hyper-prod--*`` in a policy matches nothing of host ``prod-eu``
    (``hyper-prod-eu--...``) nor of any other host."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", host_name).strip("-")
    if cleaned != host_name or len(cleaned) > 32:
        digest = hashlib.sha256(host_name.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[:23].strip('-')}-{digest}".lstrip("-")
    return f"hyper-{cleaned}-"


def worker_log_group(host_name: str) -> str:
    """Where the host's workers' container logs go (its `WorkerLogs`)."""
    return f"/hyper/{host_name}/workers"


def table_prefix(host_name: str) -> str:
    """The prefix of a host's DynamoDB tables, named `PREFIX-TABLE` (what
    `tables.table_definitions` takes)."""
    return f"hyper-{host_name}"


def function_name(host_name: str) -> str:
    return physical_name(host_name, "host")


def template_hash(template: Template) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()


# DynamoDB tables ---------------------------------------------------------------------

# CreateTable keys that a CloudFormation table takes as they are
_SAME_KEYS = (
    "TableName", "AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput",
    "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "Tags", "TableClass",
    "DeletionProtectionEnabled", "OnDemandThroughput", "WarmThroughput",
    # not CreateTable's, but UpdateTimeToLive's, in the same shape CloudFormation wants
    "TimeToLiveSpecification",
)  # fmt: skip


def dynamodb_table(definition: Json, host_name: str) -> Json:
    """A boto3 `create_table` request as an AWS::DynamoDB::Table resource."""
    unknown = set(definition) - {*_SAME_KEYS, "StreamSpecification", "SSESpecification"}
    if unknown:
        raise ValueError(f"table {definition.get('TableName')}: cannot convert {sorted(unknown)}")
    properties = {k: definition[k] for k in _SAME_KEYS if k in definition}
    stream = definition.get("StreamSpecification")
    if stream and stream.get("StreamEnabled"):
        properties["StreamSpecification"] = {"StreamViewType": stream["StreamViewType"]}
    sse = definition.get("SSESpecification")
    if sse:
        converted = {"SSEEnabled": sse.get("Enabled", False)}
        converted.update({k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse})
        properties["SSESpecification"] = converted
    properties["Tags"] = [*properties.get("Tags", []), *tags(host_name)]
    # any moment of the last 35 days can be restored (delete-host also offers a backup)
    properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    # deleting a host deletes its jobs (the command asks first); a table replaced by an
    # update would lose them, so replacement keeps the old one
    return resource(
        "AWS::DynamoDB::Table", properties, DeletionPolicy="Delete", UpdateReplacePolicy="Retain"
    )


def _has_indexes(definition: Json) -> bool:
    return bool(definition.get("GlobalSecondaryIndexes") or definition.get("LocalSecondaryIndexes"))


# the host stack ------------------------------------------------------------------------


def host_template(
    host_name: str,
    tables: list[Json],
    *,
    enable_dashboard: bool,
    code_bucket: str,
    code_key: str,
    rate_limit: float = 500.0,
    burst_limit: int = 1000,
    log_retention_days: int = 30,
    memory_mib: int = 1024,
    batch_prefix: str | None = None,
    host_vpc: str | None = None,
    host_subnets: str | None = None,
    allowed_policies: tuple[str, ...] = (),
    allowed_vpcs: tuple[str, ...] = (),
    allowed_container_options: tuple[str, ...] = (),
    api_concurrency: int = API_CONCURRENCY,
    deploy_concurrency: int = DEPLOY_CONCURRENCY,
) -> Template:
    """The control plane of host `host_name`. `tables` are CreateTable requests whose
    names start with `table_prefix(host_name)`; the function's code is the zip at
    `code_bucket`/`code_key` (name the key after the bundle's hash: the function is
    updated only when the key changes). `rate_limit`/`burst_limit` throttle the API key
    (requests per second). With `batch_prefix` (the prefix of `batch.Names`), the function
    may submit only to the job queues and definitions whose names start with it.

    Every role the host makes (its functions' here, Batch's and jobs' by the deploy
    function) has the permissions boundary `Boundary`: whatever is attached to it, no
    such role can change IAM beyond the host's own roles, nor reach accounts or
    organizations. The deploy function may attach to them only the AWS managed
    policies Batch needs and `allowed_policies` (the host owner's list, from
    create-host), and may create roles only with that boundary. A region may put
    workers in an existing VPC only when it is the host's own (`host_vpc`) or one of
    `allowed_vpcs` (the owner's list, from create-host), and a definition may ask only
    the container options of `allowed_container_options` (`batch.CONTAINER_OPTIONS`)."""
    prefix = table_prefix(host_name)
    names = [str(t.get("TableName", "")) for t in tables]
    strangers = [n or "(no name)" for n in names if not n.startswith(f"{prefix}-")]
    if strangers:
        raise ValueError(f"tables not named {prefix}-*: {', '.join(strangers)}")
    if not tables:
        raise ValueError("a host needs its tables")

    function = function_name(host_name)
    api_name = physical_name(host_name, limit=128)
    resources: dict[str, Json] = {}
    by_id: dict[str, Json] = {}  # the table definitions by logical id
    for definition in tables:
        lid = logical_id(definition["TableName"][len(prefix) + 1 :]) + "Table"
        if lid in by_id:
            raise ValueError(f"two tables make the same logical id {lid}")
        by_id[lid] = definition
        resources[lid] = dynamodb_table(definition, host_name)

    resources.update(_bucket(host_name))
    resources["FunctionLogs"] = resource(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": f"/aws/lambda/{function}",
            "RetentionInDays": log_retention_days,
            "Tags": tags(host_name),
        },
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
    )
    resources["WorkerLogs"] = resource(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": worker_log_group(host_name),
            "RetentionInDays": log_retention_days,
            "Tags": tags(host_name),
        },
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
    )
    deployer = physical_name(host_name, "deploy")
    resources["DeployFunctionLogs"] = resource(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": f"/aws/lambda/{deployer}",
            "RetentionInDays": log_retention_days,
            "Tags": tags(host_name),
        },
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
    )
    environment = {
        "HYPER_HOST_NAME": host_name,
        "HYPER_TABLE_PREFIX": prefix,
        "HYPER_BUCKET": ref("Bucket"),
        "HYPER_BUCKET_OWNER": ref("AWS::AccountId"),  # named on every call to the bucket
        "HYPER_REGION": ref("AWS::Region"),
        "HYPER_SECRET_ARN": ref(SECRET_PARAMETER),
        "HYPER_WORKER_SECRET_ARN": ref(WORKER_SECRET_PARAMETER),
        "HYPER_API_URL": _api_url(),
        "HYPER_WORKER_LOG_GROUP": ref("WorkerLogs"),
        "HYPER_HOST_VPC": host_vpc or "",  # what regions that reuse it get
        "HYPER_HOST_SUBNETS": host_subnets or "",  # and, in a vpc-id, where workers go
        "HYPER_PERMISSIONS_BOUNDARY": ref("Boundary"),
        "HYPER_ALLOWED_POLICIES": ",".join(allowed_policies),
        "HYPER_ALLOWED_VPCS": ",".join(allowed_vpcs),
        "HYPER_ALLOWED_CONTAINER_OPTIONS": ",".join(allowed_container_options),
    }
    resources["Boundary"] = _boundary(host_name, batch_prefix)
    code = {"S3Bucket": code_bucket, "S3Key": code_key}
    resources["FunctionRole"] = _function_role(host_name, by_id, batch_prefix, deployer)
    resources["HostFunction"] = _function(
        function,
        f"hyper host {host_name}: the API and the scheduler",
        "FunctionRole",
        "FunctionLogs",
        code,
        memory_mib,
        timeout=FUNCTION_TIMEOUT_SECONDS,
        # resource changes go to the deploy function; ticks it asks of itself
        environment={**environment, "HYPER_DEPLOY_FUNCTION": deployer},
        host_name=host_name,
        concurrency=api_concurrency,
    )
    resources["DeployRole"] = _deploy_role(host_name, by_id, batch_prefix, allowed_policies)
    resources["DeployFunction"] = _function(
        deployer,
        f"hyper host {host_name}: region, cluster, image and definition changes",
        "DeployRole",
        "DeployFunctionLogs",
        code,
        memory_mib,
        timeout=DEPLOY_TIMEOUT_SECONDS,
        environment=environment,
        host_name=host_name,
        concurrency=deploy_concurrency,
    )
    resources.update(_api(host_name, api_name, rate_limit, burst_limit))
    resources["TickRule"] = resource(
        "AWS::Events::Rule",
        {
            "Description": f"a scheduler tick of hyper host {host_name}",
            "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED",
            "Targets": [
                {
                    "Id": "tick",
                    "Arn": get_att("HostFunction", "Arn"),
                    "Input": json.dumps(TICK_EVENT),
                }
            ],
        },
    )
    resources["TickPermission"] = resource(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": get_att("HostFunction", "Arn"),
            "Principal": "events.amazonaws.com",
            "SourceArn": get_att("TickRule", "Arn"),
        },
    )
    if enable_dashboard:
        resources["Dashboard"] = _dashboard(host_name, api_name, [t["TableName"] for t in tables])

    outputs = {
        "ApiUrl": output(_api_url(), "where the host's API answers"),
        "ApiKeyId": output(ref("ApiKey"), "the API key's id (its value is in the secret)"),
        "BucketName": output(ref("Bucket"), "scripts and archived logs"),
        "TablePrefix": output(prefix, "the prefix of the host's DynamoDB tables"),
        "SecretArn": output(ref(SECRET_PARAMETER), "the secret holding the API key"),
        "WorkerSecretArn": output(
            ref(WORKER_SECRET_PARAMETER), "the secret holding the worker key (workers read it)"
        ),
        "FunctionName": output(ref("HostFunction"), "the function running the host"),
        "WorkerLogGroup": output(ref("WorkerLogs"), "where workers' container logs go"),
        "BoundaryArn": output(ref("Boundary"), "the permissions boundary of the host's roles"),
        "AllowedPolicies": output(
            ",".join(allowed_policies) or "-", "IAM policies clusters and definitions may attach"
        ),
        "AllowedVpcs": output(",".join(allowed_vpcs) or "-", "existing VPCs regions may use"),
        "AllowedContainerOptions": output(
            ",".join(allowed_container_options) or "-",
            "what definitions may ask beyond their container (privileged, host-volumes...)",
        ),
    }
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"hyper host {host_name}",
        "Parameters": {
            SECRET_PARAMETER: {
                "Type": "String",
                "Description": "the ARN of the secret holding the API key (made before the"
                " stack, so that the key is known to whoever deploys it, and never echoed)",
            },
            WORKER_SECRET_PARAMETER: {
                "Type": "String",
                "Description": "the ARN of the secret holding the worker key: the one"
                " secret workers (and so jobs) may read; it opens only worker routes",
            },
        },
        "Resources": resources,
        "Outputs": outputs,
    }


def _api_url() -> Json:
    return sub("https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + API_STAGE)


def _bucket(host_name: str) -> dict[str, Json]:
    bucket = resource(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "abort-incomplete-uploads",
                        "Status": "Enabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                    }
                ]
            },
            "Tags": tags(host_name),
        },
        # CloudFormation deletes only an empty bucket: stacks.delete_stack(empty_buckets=True)
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Retain",
    )
    only_tls = {
        "Sid": "OnlyTls",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [get_att("Bucket", "Arn"), sub("${Bucket.Arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = resource(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": ref("Bucket"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [only_tls]},
        },
    )
    return {"Bucket": bucket, "BucketPolicy": policy}


def _function(
    name: str,
    description: str,
    role: str,
    logs: str,
    code: Json,
    memory_mib: int,
    *,
    timeout: int,
    environment: dict[str, Any],
    host_name: str,
    concurrency: int,
) -> Json:
    return resource(
        "AWS::Lambda::Function",
        {
            "FunctionName": name,
            "Description": description,
            "Runtime": LAMBDA_RUNTIME,
            "Handler": LAMBDA_HANDLER,
            "Architectures": ["x86_64"],
            "Code": code,
            "Role": get_att(role, "Arn"),
            "MemorySize": memory_mib,
            "Timeout": timeout,
            "Environment": {"Variables": environment},
            "ReservedConcurrentExecutions": concurrency,
            "Tags": tags(host_name),
        },
        DependsOn=[logs],  # a function must not create its log group itself
    )


def _store_statements(tables: dict[str, Json], logs: str) -> list[Json]:
    """What the host's code needs wherever it runs: this host's tables (and their
    indexes), bucket, a log group and the secret."""
    table_arns: list[Any] = []
    for lid, definition in tables.items():
        table_arns.append(get_att(lid, "Arn"))
        if _has_indexes(definition):
            table_arns.append(sub("${" + lid + ".Arn}/index/*"))
    return [
        statement(TABLE_ACTIONS, table_arns, "HostTables"),
        statement(
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            [sub("${Bucket.Arn}/*")],
            "HostBucketObjects",
        ),
        statement(["s3:ListBucket"], [get_att("Bucket", "Arn")], "HostBucket"),
        statement(["logs:CreateLogStream", "logs:PutLogEvents"], [get_att(logs, "Arn")], "OwnLogs"),
        statement(
            ["secretsmanager:GetSecretValue"],
            [ref(SECRET_PARAMETER), ref(WORKER_SECRET_PARAMETER)],
            "ApiKeySecret",
        ),
    ]


def _batch_named(batch_prefix: str | None) -> str:
    """The start of this host's Batch and IAM names (cleaned as batch.Names cleans them):
    with `resource_prefix`'s, ``hyper-HOST--``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", batch_prefix) + "-" if batch_prefix else ""


def _function_role(
    host_name: str, tables: dict[str, Json], batch_prefix: str | None, deployer: str
) -> Json:
    """The API function's role: the store; Batch jobs in this account (queues and
    definitions named with `batch_prefix` when given); invoking itself (a tick after a
    submit) and the deploy function; and what takes no narrower resource than "*"."""
    batch = "arn:${AWS::Partition}:batch:*:${AWS::AccountId}:"
    named = _batch_named(batch_prefix)
    host_tag = (batch_prefix or "hyper").rstrip("-")  # batch.Names.tags' hyper:host
    functions = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
    statements = [
        *_store_statements(tables, "FunctionLogs"),
        statement(
            ["batch:SubmitJob"],
            [sub(f"{batch}job-queue/{named}*"), sub(f"{batch}job-definition/{named}*")],
            "SubmitWorkers",
        ),
        # the host's jobs carry its tag (submitted with it), and only its jobs may be stopped
        statement(
            ["batch:TagResource"],
            [sub(batch + "job/*")],
            "TagWorkers",
            Condition={
                "StringEquals": {f"aws:RequestTag/{HOST_TAG}": host_tag},
                "ForAllValues:StringEquals": {"aws:TagKeys": [HOST_TAG]},
            },
        ),
        statement(
            ["batch:CancelJob", "batch:TerminateJob"],
            [sub(batch + "job/*")],
            "StopWorkers",
            Condition={"StringEquals": {f"aws:ResourceTag/{HOST_TAG}": host_tag}},
        ),
        statement(
            ["lambda:InvokeFunction"],
            [sub(functions + function_name(host_name)), sub(functions + deployer)],
            "InvokeHostFunctions",
        ),
        # these take no resource narrower than "*"
        statement(["batch:DescribeJobs", "batch:ListJobs"], "*", "ReadWorkers"),
        statement(["ec2:GetSpotPlacementScores"], "*", "SpotPlacementScores"),
    ]
    return _lambda_role(f"the API function of hyper host {host_name}", statements, host_name)


# the AWS managed policies hyper attaches to the roles it makes (batch.py)
BATCH_MANAGED_POLICIES = (
    "service-role/AWSBatchServiceRole",
    "service-role/AmazonEC2SpotFleetTaggingRole",
)


def managed_policy_arn(policy: str) -> Any:
    """An AWS managed policy's ARN in the stack's partition; an ARN as it is."""
    return (
        policy
        if policy.startswith("arn:")
        else sub("arn:${AWS::Partition}:iam::aws:policy/" + policy)
    )


def _boundary(host_name: str, batch_prefix: str | None) -> Json:
    """The permissions boundary of every role of the host: anything but IAM, STS,
    Organizations and account changes, and of IAM only what the host's own roles and
    instance profiles need (the Batch service role reads and passes them; the deploy
    function makes them, each with this boundary)."""
    named = _batch_named(batch_prefix)
    iam = "arn:${AWS::Partition}:iam::${AWS::AccountId}:"
    own = [sub(f"{iam}role/{named}*"), sub(f"{iam}instance-profile/{named}*")]
    boundary_name = physical_name(host_name, "boundary", limit=128)  # its own ARN, by name
    statements = [
        {"Sid": "AnythingButIdentity", "Effect": "Allow",
         "NotAction": ["iam:*", "sts:*", "organizations:*", "account:*"], "Resource": "*"},
        statement([*ROLE_ACTIONS, *PROFILE_ACTIONS, "iam:AttachRolePolicy", "iam:PassRole"], own,
                  "HostRolesOnly"),
        statement(["iam:GetInstanceProfile", "iam:GetRole", "iam:ListInstanceProfiles",
                   "iam:ListRoles", "sts:GetCallerIdentity"],
                  "*", "ReadIdentity"),
        _service_linked_roles(),
        {"Sid": "KeepTheBoundary", "Effect": "Deny",
         "Action": ["iam:DeleteRolePermissionsBoundary", "iam:CreatePolicyVersion",
                    "iam:DeletePolicy", "iam:SetDefaultPolicyVersion"], "Resource": "*"},
        # an inline policy goes only on a role this boundary holds (which it then caps)
        {"Sid": "InlinePoliciesOnBoundedRolesOnly", "Effect": "Deny",
         "Action": ["iam:PutRolePolicy"], "Resource": "*",
         "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": sub(
             f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{boundary_name}")}}},
    ]  # fmt: skip
    return resource(
        "AWS::IAM::ManagedPolicy",
        {
            "ManagedPolicyName": boundary_name,
            "Description": f"the permissions boundary of hyper host {host_name}'s roles",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    )


def _deploy_role(
    host_name: str,
    tables: dict[str, Json],
    batch_prefix: str | None,
    allowed_policies: tuple[str, ...] = (),
) -> Json:
    """The deploy function's role: the store, and what a region, cluster, image or
    definition is made of: this host's stacks, Batch resources, repositories and roles,
    and EC2 networking (which CloudFormation makes with these credentials, and which
    has no names to narrow it by). The API function cannot do any of this."""

    def arn(service: str, rest: str, region: str = "*") -> Json:
        return sub(f"arn:${{AWS::Partition}}:{service}:{region}:${{AWS::AccountId}}:{rest}")

    named = _batch_named(batch_prefix)
    stacks = arn("cloudformation", f"stack/{resource_prefix(host_name)}-*")
    repositories = arn("ecr", f"repository/{(batch_prefix or 'hyper').rstrip('-')}/*")
    statements = [
        *_store_statements(tables, "DeployFunctionLogs"),
        statement(["cloudformation:*"], [stacks], "HostStacks"),
        statement(
            ["batch:*"],
            [
                arn("batch", f"{kind}/{named}*")
                for kind in ("compute-environment", "job-queue", "job-definition")
            ],
            "HostBatch",
        ),
        statement(["ecr:*"], [repositories], "HostRepositories"),
        statement(
            [a for a in ROLE_ACTIONS if a not in BOUNDED_ROLE_ACTIONS],
            [arn("iam", f"role/{named}*", "")],
            "HostRoles",
        ),
        statement(
            BOUNDED_ROLE_ACTIONS,
            [arn("iam", f"role/{named}*", "")],
            "HostRolesWithTheBoundary",
            Condition={"StringEquals": {"iam:PermissionsBoundary": ref("Boundary")}},
        ),
        statement(
            ["iam:AttachRolePolicy"],
            [arn("iam", f"role/{named}*", "")],
            "AllowedPoliciesOnly",
            Condition={
                "ArnEquals": {
                    "iam:PolicyARN": [
                        managed_policy_arn(p) for p in (*BATCH_MANAGED_POLICIES, *allowed_policies)
                    ]
                }
            },
        ),
        statement(
            PROFILE_ACTIONS, [arn("iam", f"instance-profile/{named}*", "")], "HostInstanceProfiles"
        ),
        statement(["iam:PassRole"], [arn("iam", f"role/{named}*", "")], "PassHostRoles"),
        statement(EC2_NETWORK_ACTIONS, "*", "HostNetwork"),
        *_launch_template_statements(batch_prefix),
        statement(
            EC2_HOST_DELETES,
            "*",
            "HostNetworkDeletes",
            Condition={"StringEquals": {f"aws:ResourceTag/{HOST_TAG}": host_name}},
        ),
        # these take no resource narrower than "*"
        statement(
            [
                "batch:Describe*",
                "ecr:GetAuthorizationToken",
                "cloudformation:Describe*",
                "cloudformation:ValidateTemplate",
            ],
            "*",
            "NoNarrowerResource",
        ),
        _service_linked_roles(),
    ]
    return _lambda_role(f"the deploy function of hyper host {host_name}", statements, host_name)


# the services whose service-linked roles Batch may make on a first compute environment
SERVICE_LINKED_ROLES = ("batch.amazonaws.com", "ecs.amazonaws.com", "spot.amazonaws.com",
                        "spotfleet.amazonaws.com", "autoscaling.amazonaws.com")  # fmt: skip


def _service_linked_roles() -> Json:
    """iam:CreateServiceLinkedRole for Batch's services only (IAM's iam:AWSServiceName)."""
    return statement(
        ["iam:CreateServiceLinkedRole"],
        "*",
        "BatchServiceLinkedRoles",
        Condition={"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLES)}},
    )


def _launch_template_statements(batch_prefix: str | None) -> list[Json]:
    """The launch templates of the host's clusters (`batch.ensure_launch_template`): made
    only with the host's tag, tagged only as they are made, deleted only when they carry
    it. Their ARNs hold an id AWS makes, so the tag is what names them as the host's."""
    host = (batch_prefix or "hyper").rstrip("-")  # batch.Names.tags' hyper:host
    templates = "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:launch-template/*"
    return [
        statement(["ec2:CreateLaunchTemplate"], [sub(templates)], "HostLaunchTemplates",
                  Condition={"StringEquals": {f"aws:RequestTag/{HOST_TAG}": host}}),
        statement(["ec2:CreateTags"], [sub(templates)], "TagLaunchTemplatesAsMade",
                  Condition={"StringEquals": {"ec2:CreateAction": "CreateLaunchTemplate",
                                              f"aws:RequestTag/{HOST_TAG}": host}}),
        statement(["ec2:DeleteLaunchTemplate"], [sub(templates)], "DeleteHostLaunchTemplates",
                  Condition={"StringEquals": {f"aws:ResourceTag/{HOST_TAG}": host}}),
    ]  # fmt: skip


def _lambda_role(description: str, statements: list[Json], host_name: str) -> Json:
    return resource(
        "AWS::IAM::Role",
        {
            "Description": description,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "host",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
            "PermissionsBoundary": ref("Boundary"),
            "Tags": tags(host_name),
        },
    )


def _api(host_name: str, api_name: str, rate_limit: float, burst_limit: int) -> dict[str, Json]:
    """A REST API passing every path and method to the host function, with an API key
    required on each method but the dashboard's (whose pages check a session cookie), and
    a usage plan that throttles that key on the stage."""
    integration = {
        "Type": "AWS_PROXY",
        "IntegrationHttpMethod": "POST",
        "Uri": sub(
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31"
            "/functions/${HostFunction.Arn}/invocations"
        ),
    }

    def method(resource_id: Any, key: bool = True) -> Json:
        return resource(
            "AWS::ApiGateway::Method",
            {
                "RestApiId": ref("Api"),
                "ResourceId": resource_id,
                "HttpMethod": "ANY",
                "AuthorizationType": "NONE",
                "ApiKeyRequired": key,
                "Integration": integration,
            },
        )

    methods = {
        "ApiRootMethod": method(get_att("Api", "RootResourceId")),
        "ApiProxyMethod": method(ref("ApiProxyResource")),
        # the dashboard's pages come to a browser, which has a session cookie and no key:
        # the function checks the cookie (hyper.host.dashboard.login)
        "ApiDashboardMethod": method(ref("ApiDashboardResource"), key=False),
        "ApiDashboardProxyMethod": method(ref("ApiDashboardProxyResource"), key=False),
    }
    # a deployment is a snapshot: a new logical id whenever the methods change deploys them
    deployment = "ApiDeployment" + template_hash(methods)[:10]
    found: dict[str, Json] = {
        "Api": resource(
            "AWS::ApiGateway::RestApi",
            {
                "Name": api_name,
                "Description": f"hyper host {host_name}",
                "ApiKeySourceType": "HEADER",
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                # every body reaches the function base64-encoded, byte for byte
                "BinaryMediaTypes": ["*/*"],
                "Tags": tags(host_name),
            },
        ),
        "ApiProxyResource": resource(
            "AWS::ApiGateway::Resource",
            {
                "RestApiId": ref("Api"),
                "ParentId": get_att("Api", "RootResourceId"),
                "PathPart": "{proxy+}",
            },
        ),
        "ApiDashboardResource": resource(
            "AWS::ApiGateway::Resource",
            {
                "RestApiId": ref("Api"),
                "ParentId": get_att("Api", "RootResourceId"),
                "PathPart": "dashboard",
            },
        ),
        "ApiDashboardProxyResource": resource(
            "AWS::ApiGateway::Resource",
            {
                "RestApiId": ref("Api"),
                "ParentId": ref("ApiDashboardResource"),
                "PathPart": "{proxy+}",
            },
        ),
        **methods,
        deployment: resource(
            "AWS::ApiGateway::Deployment",
            {"RestApiId": ref("Api"), "Description": "the host's routes"},
            DependsOn=sorted(methods),
        ),
        "ApiStage": resource(
            "AWS::ApiGateway::Stage",
            {
                "RestApiId": ref("Api"),
                "StageName": API_STAGE,
                "DeploymentId": ref(deployment),
                "Tags": tags(host_name),
            },
        ),
        "ApiPermission": resource(
            "AWS::Lambda::Permission",
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": get_att("HostFunction", "Arn"),
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": sub(
                    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}"
                    f":${{Api}}/{API_STAGE}/*"
                ),
            },
        ),
        "ApiKey": resource(
            "AWS::ApiGateway::ApiKey",
            {
                "Name": api_name,
                "Description": f"the key of hyper host {host_name}",
                "Enabled": True,
                # the secret made it; workers and the function read it from there
                "Value": sub(f"{{{{resolve:secretsmanager:${{{SECRET_PARAMETER}}}}}}}"),
                "Tags": tags(host_name),
            },
        ),
        "UsagePlan": resource(
            "AWS::ApiGateway::UsagePlan",
            {
                "UsagePlanName": api_name,
                "Description": f"the throttle on hyper host {host_name}'s key",
                "ApiStages": [{"ApiId": ref("Api"), "Stage": ref("ApiStage")}],
                "Throttle": {"RateLimit": rate_limit, "BurstLimit": burst_limit},
                "Tags": tags(host_name),
            },
        ),
        "UsagePlanKey": resource(
            "AWS::ApiGateway::UsagePlanKey",
            {"KeyId": ref("ApiKey"), "KeyType": "API_KEY", "UsagePlanId": ref("UsagePlan")},
        ),
        # the workers' key: in the same plan (its throttle applies to each key on its own)
        "WorkerApiKey": resource(
            "AWS::ApiGateway::ApiKey",
            {
                "Name": f"{api_name}-workers",
                "Description": f"the worker key of hyper host {host_name}: worker routes only",
                "Enabled": True,
                "Value": sub(f"{{{{resolve:secretsmanager:${{{WORKER_SECRET_PARAMETER}}}}}}}"),
                "Tags": tags(host_name),
            },
        ),
        "WorkerUsagePlanKey": resource(
            "AWS::ApiGateway::UsagePlanKey",
            {"KeyId": ref("WorkerApiKey"), "KeyType": "API_KEY", "UsagePlanId": ref("UsagePlan")},
        ),
    }
    return found


def _dashboard(host_name: str, api_name: str, table_names: list[str]) -> Json:
    def widget(title: str, metrics: list[list[Any]], x: int, y: int, stat: str = "Sum") -> Json:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": "${AWS::Region}",
                "stat": stat,
                "period": 60,
                "view": "timeSeries",
                "metrics": metrics,
            },
        }

    fn = ["AWS/Lambda", "FunctionName", "${HostFunction}"]
    api = ["AWS/ApiGateway", "ApiName", api_name, "Stage", API_STAGE]

    def lambda_metric(name: str, **options: str) -> list[Any]:
        return [fn[0], name, *fn[1:], *([options] if options else [])]

    def api_metric(name: str, **options: str) -> list[Any]:
        return [api[0], name, *api[1:], *([options] if options else [])]

    table_metrics: list[list[Any]] = []
    throttles: list[list[Any]] = []
    for name in table_names:
        for metric in ("ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits"):
            table_metrics.append(["AWS/DynamoDB", metric, "TableName", name])
        for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
            throttles.append(["AWS/DynamoDB", metric, "TableName", name])
    body = {
        "widgets": [
            widget(
                "API requests",
                [api_metric("Count"), api_metric("4XXError"), api_metric("5XXError")],
                0,
                0,
            ),
            widget(
                "API latency (ms)",
                [api_metric("Latency", stat="Average"), api_metric("Latency", stat="p99")],
                12,
                0,
            ),
            widget(
                "Host function",
                [lambda_metric("Invocations"), lambda_metric("Errors"), lambda_metric("Throttles")],
                0,
                6,
            ),
            widget(
                "Host function duration (ms)",
                [lambda_metric("Duration", stat="Average"), lambda_metric("Duration", stat="p99")],
                12,
                6,
            ),
            widget("Table capacity used", table_metrics, 0, 12),
            widget("Table throttling", throttles, 12, 12),
        ]
    }
    return resource(
        "AWS::CloudWatch::Dashboard",
        {
            "DashboardName": physical_name(host_name, limit=255),
            "DashboardBody": sub(json.dumps(body, separators=(",", ":"))),
        },
    )


# the region stack --------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC the region stack uses but does not own: the host's or one named by id.
    `subnet_ids` are where workers go (and interface endpoints: at most one per
    availability zone); `route_table_ids` get the gateway endpoints and peering routes."""

    vpc_id: str
    subnet_ids: list[str]
    route_table_ids: list[str] = field(default_factory=list)
    cidr: str | None = None


@dataclass(frozen=True)
class PeerVpc:
    """The main region's VPC, for a region that peers with it."""

    vpc_id: str
    cidr: str
    region: str


def region_template(
    spec: RegionSpec,
    *,
    host_name: str,
    vpc: ExistingVpc | None = None,
    peer: PeerVpc | None = None,
) -> Template:
    """The network of one region's workers, as `spec` asks:

    - the VPC: `spec.vpc_id` (an existing VPC, described by `vpc`), else `spec.cidr` (a
      new VPC), else with `spec.import_vpc` the host's VPC (described by `vpc`);
    - a new VPC's subnets: PUBLIC (workers get public addresses) or PRIVATE_WITH_NAT
      (`spec.nat_gateways`, 1 to 3, NAT gateways in public subnets; 3 spreads over three
      availability zones, otherwise two). NAT gateways count only there. Each subnet's
      range depends only on its role and zone (`subnet_range`). PRIVATE_ISOLATED is
      refused: workers must reach the host's public API, and endpoints do not lead there;
    - an existing VPC's subnets must reach the API too (a NAT or an internet gateway):
      that is the owner's to arrange;
    - endpoints: DATA_OPTIMISED adds S3 and DynamoDB gateway endpoints, FOR_PRIVATE_VPC
      also the interface endpoints Batch workers need without a way out (with private
      DNS only in a new VPC: in an existing one it would reroute every workload's calls);
    - `spec.peer_with_main_region`: a peering connection with `peer` and routes to it.
    """
    if spec.vpc_id:
        if vpc is None or vpc.vpc_id != spec.vpc_id:
            raise UsageError(f"region {spec.name}: describe VPC {spec.vpc_id} first")
        network: _Network = _existing_network(vpc)
    elif spec.cidr:
        network = _new_network(spec, host_name)
    elif spec.import_vpc:
        if vpc is None:
            raise UsageError(f"region {spec.name}: the host's VPC is not known here")
        network = _existing_network(vpc)
    else:
        raise UsageError(f"region {spec.name}: give a CIDR for a new VPC or an existing vpc-id")

    resources = network.resources
    resources["WorkerSecurityGroup"] = resource(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": f"hyper host {host_name}: workers in {spec.name}",
            "VpcId": network.vpc_id,
            "SecurityGroupEgress": [
                {"IpProtocol": "-1", "CidrIp": "0.0.0.0/0", "Description": "anywhere"}
            ],
            "Tags": tags(host_name, physical_name(host_name, f"{spec.name}-workers", limit=255)),
        },
    )
    if spec.deploy_vpc_endpoints != "OFF":
        resources.update(_gateway_endpoints(network))
    if spec.deploy_vpc_endpoints == "FOR_PRIVATE_VPC":
        # private DNS names an endpoint for the whole VPC: only in one the host made
        ours = bool(spec.cidr) and not spec.vpc_id
        resources.update(_interface_endpoints(network, host_name, private_dns=ours))

    outputs = {
        "VpcId": output(network.vpc_id, "the workers' VPC"),
        "SubnetIds": output(network.subnet_ids, "the workers' subnets, comma-separated"),
        "SecurityGroupId": output(ref("WorkerSecurityGroup"), "the workers' security group"),
    }
    if network.cidr is not None:
        outputs["VpcCidr"] = output(network.cidr, "the VPC's address range")
    if spec.peer_with_main_region:
        if spec.main_region:
            raise UsageError(f"region {spec.name} is the main region: it cannot peer with itself")
        if peer is None:
            raise UsageError(f"region {spec.name}: the main region's VPC is not known here")
        if not network.route_tables:
            raise UsageError(f"region {spec.name}: VPC {network.vpc_id} has no route tables")
        mine = network.cidr_literal
        if mine and ipaddress.ip_network(mine).overlaps(ipaddress.ip_network(peer.cidr)):
            raise UsageError(
                f"region {spec.name}: {mine} overlaps the main region's {peer.cidr}; "
                "peered VPCs need separate ranges"
            )
        resources.update(_peering(network, peer, host_name, spec.name))
        outputs["PeeringConnectionId"] = output(ref("Peering"), "the peering with the main region")
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"hyper host {host_name}: region {spec.name}",
        "Resources": resources,
        "Outputs": outputs,
    }


def peering_routes_template(
    host_name: str,
    region_name: str,
    *,
    peering_connection_id: str,
    route_table_ids: list[str],
    cidr: str,
) -> Template:
    """The main region's side of a peering: routes to region `region_name`'s `cidr`."""
    resources = {
        f"PeerRoute{n}": resource(
            "AWS::EC2::Route",
            {
                "RouteTableId": table,
                "DestinationCidrBlock": cidr,
                "VpcPeeringConnectionId": peering_connection_id,
            },
        )
        for n, table in enumerate(route_table_ids)
    }
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"hyper host {host_name}: routes from the main region to {region_name}",
        "Resources": resources,
    }


@dataclass
class _Network:
    vpc_id: Any  # a literal id or a Ref
    subnet_ids: Any  # a comma-separated list, literal or Fn::Join
    endpoint_subnets: list[Any]  # at most one per availability zone
    route_tables: list[Any]
    cidr: Any  # literal, GetAtt, or None when unknown
    cidr_literal: str | None
    resources: dict[str, Json] = field(default_factory=dict)


def _existing_network(vpc: ExistingVpc) -> _Network:
    if not vpc.subnet_ids:
        raise UsageError(f"VPC {vpc.vpc_id} has no subnets for workers")
    return _Network(
        vpc_id=vpc.vpc_id,
        subnet_ids=",".join(vpc.subnet_ids),
        endpoint_subnets=list(vpc.subnet_ids),
        route_tables=list(vpc.route_table_ids),
        cidr=vpc.cidr,
        cidr_literal=vpc.cidr,
    )


SUBNET_SLOTS = 8  # a new VPC is cut in eighths: public subnets first, private from the 5th
PRIVATE_SLOT = 4


def subnet_range(cidr: str, *, public: bool, zone: int) -> str:
    """The range of a new VPC's subnet: the same for the same role and zone whatever
    else the region asks (PUBLIC, NAT gateways, zones), so that an update never moves a
    subnet onto addresses another one holds (CloudFormation makes the new one first)."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.version != 4:
        raise UsageError(f"{cidr}: give an IPv4 range")
    if not 16 <= network.prefixlen <= 28:
        raise UsageError(f"{cidr}: a VPC's range is between /16 and /28")
    prefix = network.prefixlen + int(math.log2(SUBNET_SLOTS))
    if prefix > 28:
        raise UsageError(
            f"{cidr} is too small for hyper's {SUBNET_SLOTS} subnet slots (each at least /28): "
            f"give a /{28 - int(math.log2(SUBNET_SLOTS))} or larger"
        )
    slots = list(network.subnets(new_prefix=prefix))
    return str(slots[zone + (0 if public else PRIVATE_SLOT)])


def check_new_network(spec: RegionSpec) -> None:
    """UsageError unless a new VPC as `spec` asks lets workers reach the host's API."""
    if spec.cidr and not spec.vpc_id and spec.subnet_config == "PRIVATE_ISOLATED":
        raise UsageError(
            f"region {spec.name}: PRIVATE_ISOLATED subnets have no way to the host's API (a "
            "public HTTPS endpoint), so its workers could take no job: choose "
            "PRIVATE_WITH_NAT or PUBLIC"
        )
    if spec.cidr and not spec.vpc_id:
        subnet_range(spec.cidr, public=True, zone=0)


VPC_ID = re.compile(r"vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?")


def check_vpc_ids(text: str) -> list[str]:
    """The vpc-ids of a list `a,b` (the owner's --allowed-vpcs); UsageError for one that
    is not a vpc-id."""
    ids = [v.strip() for v in text.split(",") if v.strip()]
    wrong = [v for v in ids if not VPC_ID.fullmatch(v)]
    if wrong:
        raise UsageError(f"--allowed-vpcs: {wrong[0]!r} is not a vpc-id (vpc-...)")
    return ids


def _new_network(spec: RegionSpec, host_name: str) -> _Network:
    assert spec.cidr
    config = spec.subnet_config
    nats = spec.nat_gateways if config == "PRIVATE_WITH_NAT" else 0
    if config == "PRIVATE_WITH_NAT" and nats < 1:
        raise UsageError(
            f"region {spec.name}: PRIVATE_WITH_NAT needs at least one NAT gateway "
            "(or choose PUBLIC)"
        )
    check_new_network(spec)
    zones = 3 if nats == 3 else 2
    public = config in ("PUBLIC", "PRIVATE_WITH_NAT")
    private = config != "PUBLIC"
    subnet_range(spec.cidr, public=True, zone=0)  # the range is checked before anything
    cidr = str(ipaddress.ip_network(spec.cidr, strict=False))

    def name(suffix: str) -> list[Json]:
        return tags(host_name, physical_name(host_name, f"{spec.name}-{suffix}", limit=255))

    res: dict[str, Json] = {
        "Vpc": resource(
            "AWS::EC2::VPC",
            {
                "CidrBlock": cidr,
                "EnableDnsSupport": True,  # interface endpoints need both
                "EnableDnsHostnames": True,
                "Tags": name("vpc"),
            },
        )
    }

    def subnet(lid: str, zone: int, is_public: bool) -> None:
        res[lid] = resource(
            "AWS::EC2::Subnet",
            {
                "VpcId": ref("Vpc"),
                "CidrBlock": subnet_range(cidr, public=is_public, zone=zone),
                "AvailabilityZone": {"Fn::Select": [zone, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": is_public,
                "Tags": name(lid.lower()),
            },
        )

    route_tables: list[Any] = []
    public_subnets = [f"PublicSubnet{z}" for z in range(zones)] if public else []
    private_subnets = [f"PrivateSubnet{z}" for z in range(zones)] if private else []
    if public:
        res["InternetGateway"] = resource("AWS::EC2::InternetGateway", {"Tags": name("igw")})
        res["InternetGatewayAttachment"] = resource(
            "AWS::EC2::VPCGatewayAttachment",
            {"VpcId": ref("Vpc"), "InternetGatewayId": ref("InternetGateway")},
        )
        res["PublicRouteTable"] = resource(
            "AWS::EC2::RouteTable", {"VpcId": ref("Vpc"), "Tags": name("public")}
        )
        res["PublicDefaultRoute"] = resource(
            "AWS::EC2::Route",
            {
                "RouteTableId": ref("PublicRouteTable"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "GatewayId": ref("InternetGateway"),
            },
            DependsOn="InternetGatewayAttachment",
        )
        route_tables.append(ref("PublicRouteTable"))
        for zone, lid in enumerate(public_subnets):
            subnet(lid, zone, True)
            res[f"{lid}Routes"] = resource(
                "AWS::EC2::SubnetRouteTableAssociation",
                {"SubnetId": ref(lid), "RouteTableId": ref("PublicRouteTable")},
            )
    for n in range(nats):
        res[f"NatAddress{n}"] = resource(
            "AWS::EC2::EIP",
            {"Domain": "vpc", "Tags": name(f"nat{n}")},
            DependsOn="InternetGatewayAttachment",
        )
        res[f"NatGateway{n}"] = resource(
            "AWS::EC2::NatGateway",
            {
                "AllocationId": get_att(f"NatAddress{n}", "AllocationId"),
                "SubnetId": ref(public_subnets[n]),
                "Tags": name(f"nat{n}"),
            },
        )
    if private:
        for zone, lid in enumerate(private_subnets):
            subnet(lid, zone, False)
            table = f"PrivateRouteTable{zone}"
            res[table] = resource(
                "AWS::EC2::RouteTable", {"VpcId": ref("Vpc"), "Tags": name(table.lower())}
            )
            res[f"{table}Nat"] = resource(
                "AWS::EC2::Route",
                {
                    "RouteTableId": ref(table),
                    "DestinationCidrBlock": "0.0.0.0/0",
                    "NatGatewayId": ref(f"NatGateway{zone % nats}"),
                },
            )
            res[f"{lid}Routes"] = resource(
                "AWS::EC2::SubnetRouteTableAssociation",
                {"SubnetId": ref(lid), "RouteTableId": ref(table)},
            )
            route_tables.append(ref(table))
    workers = private_subnets or public_subnets
    return _Network(
        vpc_id=ref("Vpc"),
        subnet_ids={"Fn::Join": [",", [ref(s) for s in workers]]},
        endpoint_subnets=[ref(s) for s in workers],
        route_tables=route_tables,
        cidr=get_att("Vpc", "CidrBlock"),
        cidr_literal=cidr,
        resources=res,
    )


def _gateway_endpoints(network: _Network) -> dict[str, Json]:
    return {
        f"{logical_id(service)}Endpoint": resource(
            "AWS::EC2::VPCEndpoint",
            {
                "VpcId": network.vpc_id,
                "ServiceName": sub("com.amazonaws.${AWS::Region}." + service),
                "VpcEndpointType": "Gateway",
                "RouteTableIds": network.route_tables,
            },
        )
        for service in GATEWAY_ENDPOINTS
    }


def _interface_endpoints(
    network: _Network, host_name: str, *, private_dns: bool = True
) -> dict[str, Json]:
    """Interface endpoints for the services workers use. With `private_dns` (only in a
    VPC the host made) the services' own names resolve to them in the whole VPC; in an
    existing VPC that would take those services from every other workload there (the
    endpoints' security group admits only workers), so they keep their own names."""
    found: dict[str, Json] = {
        "EndpointSecurityGroup": resource(
            "AWS::EC2::SecurityGroup",
            {
                "GroupDescription": f"hyper host {host_name}: HTTPS from workers to endpoints",
                "VpcId": network.vpc_id,
                "SecurityGroupIngress": [
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "SourceSecurityGroupId": ref("WorkerSecurityGroup"),
                        "Description": "workers",
                    }
                ],
                "Tags": tags(host_name),
            },
        )
    }
    for service in INTERFACE_ENDPOINTS:
        found[f"{logical_id(service)}Endpoint"] = resource(
            "AWS::EC2::VPCEndpoint",
            {
                "VpcId": network.vpc_id,
                "ServiceName": sub("com.amazonaws.${AWS::Region}." + service),
                "VpcEndpointType": "Interface",
                "PrivateDnsEnabled": private_dns,
                "SubnetIds": network.endpoint_subnets,
                "SecurityGroupIds": [ref("EndpointSecurityGroup")],
            },
        )
    return found


def _peering(network: _Network, peer: PeerVpc, host_name: str, region: str) -> dict[str, Json]:
    found: dict[str, Json] = {
        "Peering": resource(
            "AWS::EC2::VPCPeeringConnection",
            {
                "VpcId": network.vpc_id,
                "PeerVpcId": peer.vpc_id,
                "PeerRegion": peer.region,
                "Tags": tags(host_name, physical_name(host_name, f"{region}-main", limit=255)),
            },
        )
    }
    for n, table in enumerate(network.route_tables):
        found[f"PeeringRoute{n}"] = resource(
            "AWS::EC2::Route",
            {
                "RouteTableId": table,
                "DestinationCidrBlock": peer.cidr,
                "VpcPeeringConnectionId": ref("Peering"),
            },
        )
    return found
