"""The host stack (`host_template`): the control plane in the host's region, its
tables, bucket, functions, REST API and dashboard. See templates.py."""

from __future__ import annotations

import json
from typing import Any

from hyper.lambda_events import TICK_EVENT
from hyper.providers.aws.policies import (
    _boundary,
    _function_role,
    deploy_role,
    deploy_role_name,
    function_role_name,
    key_readers,
    key_secret_denies,
)
from hyper.providers.aws.template_parts import (
    API_CONCURRENCY,
    API_STAGE,
    DEPLOY_CONCURRENCY,
    DEPLOY_TIMEOUT_SECONDS,
    FUNCTION_TIMEOUT_SECONDS,
    GATEWAY_KEY_PARAMETER,
    KEY_OWNERS_PARAMETER,
    KEY_PATTERNS_FORMAT,
    KEY_READERS_PARAMETER,
    KEY_THROTTLE,
    LAMBDA_HANDLER,
    LAMBDA_RUNTIME,
    SECRET_PARAMETER,
    TEMPLATE_VERSION,
    WORKER_GATEWAY_KEY_PARAMETER,
    WORKER_SECRET_PARAMETER,
    WORKER_THROTTLE,
    Json,
    Template,
    function_name,
    get_att,
    logical_id,
    output,
    physical_name,
    ref,
    resource,
    sub,
    table_prefix,
    tags,
    template_hash,
    worker_log_group,
)

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


# the host stack ------------------------------------------------------------------------


def host_template(
    host_name: str,
    tables: list[Json],
    *,
    enable_dashboard: bool,
    code_bucket: str,
    code_key: str,
    code_version: str | None = None,
    throttle: tuple[float, int] = KEY_THROTTLE,
    worker_throttle: tuple[float, int] = WORKER_THROTTLE,
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
    updated only when the key changes), at `code_version` when given (the version the
    upload made, in the versioned code bucket). `throttle` is the API key's usage plan, and
    `worker_throttle` the worker key's (each a rate in requests per second and a burst).
    With `batch_prefix` (the prefix of `batch.Names`), the function may submit only to
    the job queues and definitions whose names start with it.

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
    function = function_name(host_name)
    api_name = physical_name(host_name, limit=128)
    by_id = _tables_by_id(host_name, tables)  # the table definitions by logical id
    resources = {lid: dynamodb_table(definition, host_name) for lid, definition in by_id.items()}
    resources.update(_bucket(host_name))
    deployer = physical_name(host_name, "deploy")
    resources.update(_log_groups(host_name, function, deployer, log_retention_days))
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
    resources["Boundary"] = _boundary(host_name, batch_prefix, allowed_policies)
    resources.update(_key_secret_policies(host_name, batch_prefix))
    code = {"S3Bucket": code_bucket, "S3Key": code_key}
    if code_version:  # the version uploaded: a later write of the key changes nothing here
        code["S3ObjectVersion"] = code_version
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
    resources.update(deploy_role(host_name, by_id, batch_prefix, allowed_policies))
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
    resources.update(_api(host_name, api_name, throttle, worker_throttle))
    resources.update(_tick(host_name))
    if enable_dashboard:
        resources["Dashboard"] = _dashboard(host_name, api_name, [t["TableName"] for t in tables])
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"hyper host {host_name}",
        "Parameters": _host_parameters(),
        "Resources": resources,
        "Outputs": _host_outputs(
            prefix, allowed_policies, allowed_vpcs, allowed_container_options, code_bucket
        ),
    }


def _tables_by_id(host_name: str, tables: list[Json]) -> dict[str, Json]:
    """The host's table definitions by logical id, each named under its prefix."""
    prefix = table_prefix(host_name)
    names = [str(t.get("TableName", "")) for t in tables]
    strangers = [n or "(no name)" for n in names if not n.startswith(f"{prefix}-")]
    if strangers:
        raise ValueError(f"tables not named {prefix}-*: {', '.join(strangers)}")
    if not tables:
        raise ValueError("a host needs its tables")
    by_id: dict[str, Json] = {}
    for definition in tables:
        lid = logical_id(definition["TableName"][len(prefix) + 1 :]) + "Table"
        if lid in by_id:
            raise ValueError(f"two tables make the same logical id {lid}")
        by_id[lid] = definition
    return by_id


def _log_groups(host_name: str, function: str, deployer: str, days: int) -> dict[str, Json]:
    """The two functions' log groups and the workers', kept `days` days."""
    groups = {
        "FunctionLogs": f"/aws/lambda/{function}",
        "WorkerLogs": worker_log_group(host_name),
        "DeployFunctionLogs": f"/aws/lambda/{deployer}",
    }
    return {
        lid: resource(
            "AWS::Logs::LogGroup",
            {"LogGroupName": name, "RetentionInDays": days, "Tags": tags(host_name)},
            DeletionPolicy="Delete",
            UpdateReplacePolicy="Delete",
        )
        for lid, name in groups.items()
    }


def _tick(host_name: str) -> dict[str, Json]:
    """The one-minute schedule that makes the host function run a scheduler tick."""
    return {
        "TickRule": resource(
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
        ),
        "TickPermission": resource(
            "AWS::Lambda::Permission",
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": get_att("HostFunction", "Arn"),
                "Principal": "events.amazonaws.com",
                "SourceArn": get_att("TickRule", "Arn"),
            },
        ),
    }


def _host_outputs(
    prefix: str,
    allowed_policies: tuple[str, ...],
    allowed_vpcs: tuple[str, ...],
    allowed_container_options: tuple[str, ...],
    code_bucket: str,
) -> dict[str, Json]:
    return {
        "ApiUrl": output(_api_url(), "where the host's API answers"),
        "ApiKeyId": output(ref("ApiKey"), "the API key's id (its value is the key's HMAC)"),
        "BucketName": output(ref("Bucket"), "scripts and archived logs"),
        "TablePrefix": output(prefix, "the prefix of the host's DynamoDB tables"),
        "SecretArn": output(ref(SECRET_PARAMETER), "the secret holding the API key"),
        "WorkerSecretArn": output(
            ref(WORKER_SECRET_PARAMETER), "the secret holding the worker key"
        ),
        "FunctionName": output(ref("HostFunction"), "the function running the host"),
        "WorkerLogGroup": output(ref("WorkerLogs"), "where workers' container logs go"),
        "BoundaryArn": output(ref("Boundary"), "the permissions boundary of the host's roles"),
        "CodeBucket": output(code_bucket, "where the host's code bundle is kept"),
        "AllowedPolicies": output(
            ",".join(allowed_policies) or "-", "IAM policies clusters and definitions may attach"
        ),
        "AllowedVpcs": output(",".join(allowed_vpcs) or "-", "existing VPCs regions may use"),
        "AllowedContainerOptions": output(
            ",".join(allowed_container_options) or "-",
            "what definitions may ask beyond their container (privileged, host-volumes...)",
        ),
    }


def _host_parameters() -> dict[str, Json]:
    return {
        SECRET_PARAMETER: {
            "Type": "String",
            "Description": "the ARN of the secret holding the API key (made before the"
            " stack, so that the key is known to whoever deploys it, and never echoed)",
        },
        WORKER_SECRET_PARAMETER: {
            "Type": "String",
            "Description": "the ARN of the secret holding the worker key: the function"
            " gives it to workers with their token; it opens only a worker's own routes",
        },
        # The API Gateway keys' values. Anyone allowed apigateway:GET reads them, so they
        # are not the keys but an HMAC of each (hyper/key_headers.py), which only picks
        # the usage plan; the key itself travels in x-hyper-key and the function checks
        # it. CloudFormation cannot compute an HMAC (a dynamic reference only copies a
        # secret), so create-host computes them and passes them here. Not NoEcho: they
        # are no secret (apigateway:GET reads them) and they open nothing.
        GATEWAY_KEY_PARAMETER: _gateway_key_parameter("the API key"),
        WORKER_GATEWAY_KEY_PARAMETER: _gateway_key_parameter("the worker key"),
        # the key secrets' owners and readers, as aws:PrincipalArn patterns each preceded
        # by KEY_PATTERNS_SEPARATOR: a character no IAM user or role name holds (unlike
        # `,`), and the patterns name their user or role by name, whatever its path
        KEY_OWNERS_PARAMETER: {
            "Type": "String",
            "AllowedPattern": KEY_PATTERNS_FORMAT.format(at_least=1),
            "Description": "who besides the account's root may read, change and delete the"
            " keys' secrets and their policies: IAM ARN patterns, each preceded by '|'"
            " (create-host gives its caller's user or role)",
        },
        KEY_READERS_PARAMETER: {
            "Type": "String",
            "AllowedPattern": KEY_PATTERNS_FORMAT.format(at_least=0),
            "Description": "who besides the host's roles and the owners may read the keys'"
            " secrets (and change nothing): IAM ARN patterns, each preceded by '|'"
            " (create-host's --key-readers)",
        },
    }


def _with_people(patterns: list[Json], *parameters: Json) -> Json:
    """`patterns`, then those of the `parameters` (KeyOwners, KeyReaders: each pattern
    after a "|", which no IAM name holds), as one list of ARN patterns."""
    first = {"Fn::Join": ["|", patterns]}
    return {"Fn::Split": ["|", {"Fn::Join": ["", [first, *parameters]]}]}


def _key_secret_policies(host_name: str, batch_prefix: str | None) -> dict[str, Json]:
    """A resource policy on each key's secret: no one reads it but the roles that need it,
    the account's root, the owners (create-host's caller) and the readers it names; no one
    changes, deletes, replicates or tags it (or its policy) but the root and the owners;
    whatever their identity policies allow (secretsmanager:* on "*", say)."""
    readers = key_readers(host_name, batch_prefix)
    root = sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
    # the parameters' patterns each follow a "|", so the lists join with "" after a first
    people = [ref(KEY_OWNERS_PARAMETER), ref(KEY_READERS_PARAMETER)]
    found = {}
    for lid, parameter, (read, changed) in zip(
        ("ApiKeySecretPolicy", "WorkerKeySecretPolicy"),
        (SECRET_PARAMETER, WORKER_SECRET_PARAMETER),
        key_secret_denies(readers, [root]),
        strict=True,
    ):
        for statement, more in ((read, people), (changed, people[:1])):
            condition = statement["Condition"]["ArnNotLike"]
            condition["aws:PrincipalArn"] = _with_people(condition["aws:PrincipalArn"], *more)
        found[lid] = resource(
            "AWS::SecretsManager::ResourcePolicy",
            {
                "SecretId": ref(parameter),
                "BlockPublicPolicy": True,
                "ResourcePolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {**statement, "Principal": "*", "Resource": "*"}
                        for statement in (read, changed)
                    ],
                },
            },
        )
    return found


def _gateway_key_parameter(what: str) -> Json:
    return {
        "Type": "String",
        "AllowedPattern": "[0-9a-f]{64}",
        "Description": f"the API Gateway key value of {what}: HMAC-SHA256(key, 'apigw') in hex",
    }


def _api_url() -> Json:
    return sub("https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + API_STAGE)


# what writes, replaces or deletes an object (S3's actions on objects)
BUCKET_OBJECT_WRITES = ["s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject", "s3:Replicate*"]


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
    # the host's files (a Python-API job's result, which its user's client unpickles) and
    # scripts: written by the functions (a presigned link acts as the API function's
    # role) or the deploy function only, and emptied by the root or the host's owners
    # (delete-host), whatever any other principal's policy allows
    iam = "arn:${AWS::Partition}:iam::${AWS::AccountId}:"
    writers = [sub(f"{iam}role/{function_role_name(host_name)}"),
               sub(f"{iam}role/{deploy_role_name(host_name)}"), sub(f"{iam}root")]  # fmt: skip
    files = {
        "Sid": "ObjectsWrittenByTheHostOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": BUCKET_OBJECT_WRITES,
        "Resource": sub("${Bucket.Arn}/*"),
        "Condition": {
            "ArnNotLike": {"aws:PrincipalArn": _with_people(writers, ref(KEY_OWNERS_PARAMETER))}
        },
    }
    policy = resource(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": ref("Bucket"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [only_tls, files]},
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


# requests a second (and burst) the stage allows the keyless dashboard routes, together
DASHBOARD_RATE_LIMIT = 10
DASHBOARD_BURST_LIMIT = 20


def _api(
    host_name: str, api_name: str, throttle: tuple[float, int], worker_throttle: tuple[float, int]
) -> dict[str, Json]:
    """A REST API passing every path and method to the host function, with an API key
    required on each method but the dashboard's (whose pages check a session cookie), and
    a usage plan that throttles that key on the stage."""
    return {
        **_api_routes(host_name, api_name),
        **_api_keys(host_name, api_name, throttle, worker_throttle),
    }


def _api_routes(host_name: str, api_name: str) -> dict[str, Json]:
    """The REST API, its resources and methods, their deployment and stage."""
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
        "ApiStage": _stage(host_name, deployment),
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
    }
    return found


def _stage(host_name: str, deployment: str) -> Json:
    return resource(
        "AWS::ApiGateway::Stage",
        {
            "RestApiId": ref("Api"),
            "StageName": API_STAGE,
            "DeploymentId": ref(deployment),
            # the keyless dashboard routes: no usage plan throttles a request without a
            # key, so the stage does (a flood must not fill the function's executions).
            # Each setting names a method that exists: ANY on its path (AWS documents the
            # method "*" only together with the path "/*").
            "MethodSettings": [
                {
                    "ResourcePath": path,
                    "HttpMethod": "ANY",
                    "ThrottlingRateLimit": DASHBOARD_RATE_LIMIT,
                    "ThrottlingBurstLimit": DASHBOARD_BURST_LIMIT,
                }
                for path in ("/~1dashboard", "/~1dashboard~1{proxy+}")
            ],
            "Tags": tags(host_name),
        },
    )


def _plan(host_name: str, name: str, what: str, throttle: tuple[float, int]) -> Json:
    rate, burst = throttle
    return resource(
        "AWS::ApiGateway::UsagePlan",
        {
            "UsagePlanName": name,
            "Description": f"the throttle on hyper host {host_name}'s {what}",
            "ApiStages": [{"ApiId": ref("Api"), "Stage": ref("ApiStage")}],
            "Throttle": {"RateLimit": rate, "BurstLimit": burst},
            "Tags": tags(host_name),
        },
    )


def _api_keys(
    host_name: str, api_name: str, throttle: tuple[float, int], worker_throttle: tuple[float, int]
) -> dict[str, Json]:
    """The host's key and its workers', each in a usage plan of its own: no holder of
    the API key, however busy, takes from the workers' rate (KEY_THROTTLE,
    WORKER_THROTTLE)."""
    return {
        "ApiKey": resource(
            "AWS::ApiGateway::ApiKey",
            {
                "Name": api_name,
                "Description": f"the key of hyper host {host_name}",
                "Enabled": True,
                # derived from the key in the secret, which the function checks itself
                "Value": ref(GATEWAY_KEY_PARAMETER),
                "Tags": tags(host_name),
            },
        ),
        "UsagePlan": _plan(host_name, api_name, "key", throttle),
        "UsagePlanKey": resource(
            "AWS::ApiGateway::UsagePlanKey",
            {"KeyId": ref("ApiKey"), "KeyType": "API_KEY", "UsagePlanId": ref("UsagePlan")},
        ),
        # the workers' key, in a plan of its own
        "WorkerApiKey": resource(
            "AWS::ApiGateway::ApiKey",
            {
                "Name": f"{api_name}-workers",
                "Description": f"the worker key of hyper host {host_name}: with a token only",
                "Enabled": True,
                "Value": ref(WORKER_GATEWAY_KEY_PARAMETER),
                "Tags": tags(host_name),
            },
        ),
        "WorkerUsagePlanKey": resource(
            "AWS::ApiGateway::UsagePlanKey",
            {
                "KeyId": ref("WorkerApiKey"),
                "KeyType": "API_KEY",
                "UsagePlanId": ref("WorkerUsagePlan"),
            },
        ),
        "WorkerUsagePlan": _plan(host_name, f"{api_name}-workers", "workers", worker_throttle),
    }


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
