"""An AWS host's control plane, deployed from this machine with the user's credentials:
the API key's secret, the Lambda bundle in a code bucket, then the host stack.

The keys are made here and kept in Secrets Manager before the stack exists, so the stack
reads them from there (its function gives workers the worker key and their launch's
token; no job role reads a secret); they are read back from AWS, never printed.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import string
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import boto3
from botocore.exceptions import ClientError

from hyper.config import HostConfig
from hyper.errors import DeployFailed, UsageError, one_line
from hyper.key_headers import gateway_key
from hyper.providers.aws import batch, bundle, check, stacks, templates
from hyper.providers.aws.calls import aws_errors, error_message
from hyper.providers.aws.policies import KEY_OWNERS_SID, check_allowed_policies
from hyper.store import dynamodb_tables as tables

Log = Callable[[str], None]


class AwsHostRequest(NamedTuple):
    """The create-host walkthrough's answers, or the flags, for an AWS host."""

    name: str
    region: str
    account: str | None = None  # checked against the credentials' account when given
    vpc: str | None = None  # a CIDR or a vpc-id, for the main region to use
    subnets: str | None = None  # with a vpc-id: the subnets workers use there (a,b)
    enable_dashboard: bool = False
    # the IAM policies clusters and definitions may attach (a,b); None: as deployed before
    allowed_policies: str | None = None
    # the existing VPCs (vpc-a,vpc-b) regions may use; None: as deployed before
    allowed_vpcs: str | None = None
    # what definitions may ask beyond their container (a,b); None: as deployed before
    allowed_container_options: str | None = None
    # IAM users and roles (ARNs, a,b) who may read the keys besides the caller; None: as before
    key_readers: str | None = None


def caller_account(region: str) -> str:
    """The account of the AWS credentials in use (STS)."""
    with aws_errors("reading the account of your AWS credentials"):
        return str(boto3.client("sts", region_name=region).get_caller_identity()["Account"])


def deploy_host(request: AwsHostRequest, log: Log, *, code: Path | None = None) -> HostConfig:
    """Deploy (or redeploy) the control plane of `request.name`; its credentials.
    `code` is a bundle already built (tests); otherwise one is built from this install."""
    account = caller_account(request.region)
    if request.account and request.account != account:
        raise UsageError(
            f"--account {request.account} is not the account of your AWS credentials ({account})"
        )
    allowed_vpcs = request.allowed_vpcs
    if allowed_vpcs is not None:
        allowed_vpcs = ",".join(templates.check_vpc_ids(allowed_vpcs))
    if request.allowed_policies is not None:
        check_allowed_policies(request.allowed_policies)
    options = request.allowed_container_options
    if options is not None:
        options = ",".join(batch.check_container_options(options))
    readers = (
        None if request.key_readers is None else check_key_readers(request.key_readers, account)
    )
    # the host stack as deployed (None for a new host): nothing below changes it before
    # the deploy
    host_stack = stacks.describe_stack(stacks.host_stack_name(request.name), request.region)
    owners, readers = key_people(host_stack, caller_arn(request.region), readers)
    if request.subnets and request.vpc:  # they must be the VPC's, before anything is made
        stacks.lookup_vpc(request.vpc, request.region, subnets=request.subnets.split(","))
    _check_lambda_concurrency(request, log)  # the last check: nothing is made before it
    secret_arn = _api_key_secret(request.name, request.region, log)
    worker_secret_arn = _api_key_secret(request.name, request.region, log, worker=True)
    kept = stacks.outputs_of(host_stack).get("CodeBucket") if host_stack else None
    bucket = _code_bucket(account, request.region, log, kept=kept)
    with tempfile.TemporaryDirectory(prefix="hyper-bundle-") as work:
        if code is None:
            log("building the host's code bundle from this install")
            code = bundle.build_bundle(Path(work))
        key = f"hyper/{code.name}"
        version = _upload(bucket, key, code, request.region, log, owner=account)
    # what an update does not name, it keeps as deployed before
    allowed = _kept(request.allowed_policies, host_stack, "AllowedPolicies")
    allowed_vpcs = _kept(allowed_vpcs, host_stack, "AllowedVpcs")
    options = _kept(options, host_stack, "AllowedContainerOptions")
    if host_stack is not None:
        _worker_key_out_of_the_keys_plan(request.name, request.region, host_stack, log,
                                         bucket=bucket, owner=account)  # fmt: skip
    prefix = templates.table_prefix(request.name)
    template = templates.host_template(
        request.name,
        tables.table_definitions(prefix),
        enable_dashboard=request.enable_dashboard,
        code_bucket=bucket,
        code_key=key,
        code_version=version or None,
        host_vpc=request.vpc,
        host_subnets=request.subnets,
        batch_prefix=worker_names(request.name).prefix,
        allowed_policies=tuple(p.strip() for p in allowed.split(",") if p.strip()),
        allowed_vpcs=tuple(v for v in allowed_vpcs.split(",") if v),
        allowed_container_options=tuple(o for o in options.split(",") if o),
    )
    outputs = stacks.deploy_stack(
        stacks.host_stack_name(request.name),
        template,
        request.region,
        {
            templates.SECRET_PARAMETER: secret_arn,
            templates.WORKER_SECRET_PARAMETER: worker_secret_arn,
            # the API Gateway keys: values derived from the keys, never the keys
            templates.GATEWAY_KEY_PARAMETER: gateway_key(_secret_value(secret_arn, request.region)),
            templates.WORKER_GATEWAY_KEY_PARAMETER: gateway_key(
                _secret_value(worker_secret_arn, request.region)
            ),
            # who may change the keys' secrets besides the root (you), and read them
            templates.KEY_OWNERS_PARAMETER: _patterns_value(owners),
            templates.KEY_READERS_PARAMETER: _patterns_value(readers),
        },
        log,
        template_bucket=bucket,
        bucket_owner=account,
        tags={templates.HOST_TAG: request.name},
    )
    host = credentials(request.name, request.region, outputs, account, request.vpc)
    return host._replace(subnets=request.subnets)


def _worker_key_out_of_the_keys_plan(
    name: str, region: str, stack: dict[str, Any], log: Log, *, bucket: str, owner: str
) -> None:
    """A host made before the workers' own usage plan has its worker key in `UsagePlan`,
    with the API key. The template now puts it in `WorkerUsagePlan`: a change of
    UsagePlanKey's UsagePlanId replaces it, and CloudFormation makes the replacement before
    it removes the old one, but API Gateway takes a key in only one usage plan of a stage
    ("Usage plans and API keys for REST APIs"), so that update would fail and roll back.
    So the worker key first leaves `UsagePlan`: the stack is updated with the template it
    has, without `WorkerUsagePlanKey` (its parameters as they are); the full update then
    adds the new association. Workers are refused (403) in between, for the seconds the
    first update takes."""
    if stack["StackStatus"] not in (*stacks.DEPLOYED, "UPDATE_ROLLBACK_COMPLETE"):
        return  # deploy_stack waits for, remakes or refuses a stack in any other state
    stack_name = stacks.host_stack_name(name)
    deployed = stacks.deployed_template(stack_name, region)
    resources = (deployed or {}).get("Resources", {})
    association = resources.get(OLD_WORKER_PLAN_KEY, {}).get("Properties", {})
    if association.get("UsagePlanId") != {"Ref": "UsagePlan"}:
        return
    assert deployed is not None
    log(f"stack {stack_name}: the worker key leaves the API key's usage plan first "
        "(a key may be in one usage plan of a stage only)")  # fmt: skip
    interim = without_resource(deployed, OLD_WORKER_PLAN_KEY)
    stacks.deploy_stack(stack_name, interim, region, stacks.parameters_of(stack), log,
                        template_bucket=bucket, bucket_owner=owner,
                        tags={templates.HOST_TAG: name})  # fmt: skip


OLD_WORKER_PLAN_KEY = "WorkerUsagePlanKey"
# an IAM user or role, whatever its path, for --key-readers
KEY_READER = re.compile(r"arn:aws[a-z-]*:iam::(?P<account>\d{12}):(?:user|role)/[\w+=,.@/-]+")


def without_resource(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """`template` without resource `logical_id` (and the other resources' DependsOn on
    it); it must be named nowhere else."""
    resources = {k: dict(v) for k, v in template["Resources"].items() if k != logical_id}
    for body in resources.values():
        after = body.get("DependsOn")
        if after == logical_id:
            del body["DependsOn"]
        elif isinstance(after, list) and logical_id in after:
            body["DependsOn"] = [d for d in after if d != logical_id]
    result = {**template, "Resources": resources}
    text = json.dumps(result)
    if f'"{logical_id}"' in text:
        raise DeployFailed(f"{logical_id} is still named in the stack's template: cannot "
                           "take it out on its own")  # fmt: skip
    return result


def _check_lambda_concurrency(request: AwsHostRequest, log: Log) -> None:
    """Refuse, before anything is made, an account whose Lambda concurrency cannot take
    the host's reservations (the stack would roll back after the secrets and bundle)."""
    try:
        settings = boto3.client("lambda", region_name=request.region).get_account_settings()
    except Exception as error:  # not readable here: the stack says so if it cannot
        log(f"could not read the account's Lambda concurrency: {one_line(error_message(error))}")
        return
    before = stacks.describe_stack(stacks.host_stack_name(request.name), request.region)
    deployed = before is not None and before.get("StackStatus") in stacks.DEPLOYED
    lacking = check.lambda_concurrency_lacking(settings, check.HOST_RESERVES if deployed else 0)
    if lacking:
        raise UsageError(f"{request.region}: {lacking}, then run create-host again")


def worker_names(host_name: str) -> batch.Names:
    """The names of a host's Batch resources: each starts with this host's prefix."""
    return batch.Names(prefix=templates.resource_prefix(host_name))


def import_host(name: str, region: str) -> HostConfig:
    """The credentials of a host deployed before, read from its stack and its secret."""
    outputs = stacks.stack_outputs(stacks.host_stack_name(name), region)
    return credentials(name, region, outputs, caller_account(region), None)


def credentials(
    name: str, region: str, outputs: dict[str, str], account: str, vpc: str | None
) -> HostConfig:
    missing = [k for k in ("ApiUrl", "SecretArn") if not outputs.get(k)]
    if missing:
        raise DeployFailed(f"the stack of host {name!r} has no output {', '.join(missing)}")
    with aws_errors("reading the host's API key"):
        secret = boto3.client("secretsmanager", region_name=region).get_secret_value(
            SecretId=outputs["SecretArn"]
        )
    return HostConfig(
        name=name,
        provider="aws",
        url=outputs["ApiUrl"],
        api_key=secret["SecretString"],
        region=region,
        account=account,
        vpc=vpc,
    )


def delete_host(host: HostConfig, log: Log, *, backup: bool = True) -> list[str]:
    """Delete everything the host made, in every region it knows, with the user's
    credentials: definitions (job definitions and job roles), images (repositories),
    clusters (job queues, compute environments, instance roles and profiles), the shared
    Batch roles, each region's network stack (VPC, NAT gateways, endpoints, peering and
    the main region's routes to it), then, after an on-demand backup of each table when
    `backup`, the host stack (tables, bucket, functions, API, logs) and the key's secret.
    Each step finds what is left, so a delete cut short can be run again. Returns the
    ARNs of the backups made (they outlive the tables, and are billed, until deleted)."""
    region = _region_of(host)
    check_key_owner(host, region)
    stack = stacks.describe_stack(stacks.host_stack_name(host.name), region)
    outputs = stacks.outputs_of(stack) if stack else {}
    made: list[str] = []
    if outputs:
        _delete_resources(host, region, outputs, log)
        if backup:
            made = backup_tables(host, region, log)
    stacks.delete_stack(stacks.host_stack_name(host.name), region, log, empty_buckets=True)
    for worker in (False, True):
        name = _secret_name(host.name, worker=worker)
        with aws_errors("deleting the host's API key"):
            client = boto3.client("secretsmanager", region_name=region)
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        log(f"deleted the secret {name}")
    return made


def _delete_resources(host: HostConfig, region: str, outputs: dict[str, str], log: Log) -> None:
    """What the host's deploy function made, as its resource records tell (whatever
    their status: a FAILED change may have left something behind)."""
    from hyper.models import SPECS, ClusterSpec, DefinitionSpec, ImageSpec, ResourceKind
    from hyper.store.dynamodb import DynamoDBStore

    store = DynamoDBStore(outputs.get("TablePrefix") or templates.table_prefix(host.name),
                          region, outputs.get("BucketName"),
                          bucket_owner=host.account or None)  # fmt: skip
    records = {
        kind: [SPECS[kind].model_validate(r.spec) for r in store.list_resources(kind.value)]
        for kind in (ResourceKind.REGION, ResourceKind.CLUSTER, ResourceKind.IMAGE,
                     ResourceKind.DEFINITION)
    }  # fmt: skip
    regions = [r.name for r in records[ResourceKind.REGION] if getattr(r, "kind", "") == "aws"]
    names = worker_names(host.name)
    bounded = outputs.get("BoundaryArn") or None  # given first to a role made before it
    with aws_errors("deleting the host's resources"):
        for definition in records[ResourceKind.DEFINITION]:
            assert isinstance(definition, DefinitionSpec)
            for where in regions:
                batch.delete_definition(where, definition, names, log)
            batch.delete_job_role(definition, names, log, boundary=bounded)
        for image in records[ResourceKind.IMAGE]:
            assert isinstance(image, ImageSpec)
            for where in regions:
                batch.delete_repository(where, image, names, log)
        for cluster in records[ResourceKind.CLUSTER]:
            assert isinstance(cluster, ClusterSpec)
            for where in regions:
                batch.delete_cluster(where, cluster, names, log)
            batch.delete_cluster_roles(cluster, names, log, boundary=bounded)
        batch.delete_shared_roles(names, log, boundary=bounded)
        main = next((r.name for r in records[ResourceKind.REGION]
                     if getattr(r, "main_region", False)), region)  # fmt: skip
        for where in regions:
            name = stacks.region_stack_name(host.name, where)
            stacks.delete_stack(f"{name}-routes", main, log)  # the main region's side
        for where in regions:
            stacks.delete_stack(stacks.region_stack_name(host.name, where), where, log)
    store.close()


def backup_tables(host: HostConfig, region: str, log: Log) -> list[str]:
    """An on-demand backup of each of the host's tables (kept after the tables go)."""
    prefix = templates.table_prefix(host.name)
    client = boto3.client("dynamodb", region_name=region)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    made = []
    with aws_errors("backing up the host's tables"):
        for definition in tables.table_definitions(prefix):
            name = definition["TableName"]
            try:
                client.describe_table(TableName=name)
            except client.exceptions.ResourceNotFoundException:
                continue
            backup = client.create_backup(TableName=name, BackupName=f"{name}-{stamp}"[:255])
            made.append(str(backup["BackupDetails"]["BackupArn"]))
            log(f"backed up table {name} ({backup['BackupDetails']['BackupArn']})")
    return made


def _region_of(host: HostConfig) -> str:
    if not host.region:
        raise UsageError(f"host {host.name!r} has no AWS region saved; import it again")
    return host.region


def caller_arn(region: str) -> str:
    with aws_errors("finding who you are in AWS"):
        return str(boto3.client("sts", region_name=region).get_caller_identity()["Arn"])


def _kept(given: str | None, stack: dict[str, Any] | None, output: str) -> str:
    """`given`, or for an update that does not name it, the owner's list as deployed (its
    stack's `output`, where "-" stands for an empty list: an output cannot be empty)."""
    if given is not None:
        return given
    deployed = stacks.outputs_of(stack).get(output, "") if stack else ""
    return "" if deployed == "-" else deployed


def _deployed_key_people(stack: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """The key secrets' owners and readers (aws:PrincipalArn patterns) the host stack was
    deployed with; a stack deployed before KeyReaders has its owners and readers together
    in KeyOwners, comma-separated: all owners."""
    deployed = stacks.parameters_of(stack) if stack else {}
    owners = deployed.get(templates.KEY_OWNERS_PARAMETER, "")
    if templates.KEY_READERS_PARAMETER not in deployed:
        return [p for p in owners.split(",") if p], []
    readers = deployed[templates.KEY_READERS_PARAMETER]
    separator = templates.KEY_PATTERNS_SEPARATOR
    return [p for p in owners.split(separator) if p], [p for p in readers.split(separator) if p]


def _patterns_value(patterns: list[str]) -> str:
    """A KeyOwners or KeyReaders value: each pattern preceded by the separator."""
    return "".join(templates.KEY_PATTERNS_SEPARATOR + p for p in dict.fromkeys(patterns))


def key_people(
    stack: dict[str, Any] | None, caller: str, readers: list[str] | None
) -> tuple[list[str], list[str]]:
    """Who owns the keys' secrets (may change or delete them) and who else reads them,
    as aws:PrincipalArn patterns, for a deploy by `caller` naming `readers` (ARNs; None:
    as before). The owners are who created the host (the caller, on a first deploy),
    kept as they are by every update: a reader who deploys again neither becomes an owner
    nor changes the secrets' policy (which their policy would deny them). An owner named
    among the readers (a host deployed before, when readers were owners) becomes a
    reader only, unless it is the caller. UsageError when the caller, neither an owner nor
    the root, would change either list."""
    deployed_owners, deployed_readers = _deployed_key_people(stack)
    mine = owner_patterns(caller)
    owners = deployed_owners or mine
    if readers is not None:
        named = [pattern for reader in readers for pattern in owner_patterns(reader)]
        owners = [p for p in owners if p not in named or p in mine]
        readers = list(dict.fromkeys(named))
    else:
        readers = deployed_readers
    is_owner = bool(set(mine) & set(deployed_owners)) or mine[0].endswith(":root")
    if (
        deployed_owners
        and not is_owner
        and (owners, readers) != (deployed_owners, deployed_readers)
    ):
        raise UsageError(
            f"--key-readers: only an owner of the host's keys ({', '.join(deployed_owners)})"
            f" or the account's root may change who reads them, not {caller}"
        )
    return owners, readers


def check_key_readers(text: str, account: str) -> list[str]:
    """The IAM users and roles of `--key-readers` (ARNs, a,b: a comma inside a name, which
    IAM allows, stays in it), each of this account (a resource policy that only denies
    lets no other account in anyway); UsageError for anything else."""
    readers = [r.strip() for r in re.split(r",(?=\s*arn:)", text) if r.strip(" ,")]
    for reader in readers:
        found = KEY_READER.fullmatch(reader)
        if not found:
            raise UsageError(
                f"--key-readers: {reader!r} is not the ARN of an IAM user or role"
                " (arn:aws:iam::ACCOUNT:role/NAME)"
            )
        if found["account"] != account:
            raise UsageError(f"--key-readers: {reader!r} is not of this account ({account})")
    return readers


def check_key_owner(host: HostConfig, region: str) -> None:
    """UsageError, before anything is deleted, when the caller is neither an owner of the
    host's keys nor the root: the API key secret's policy denies them DeleteResourcePolicy
    and DeleteSecret, so CloudFormation would fail to delete the host stack half-way. Read
    from that policy (GetResourcePolicy is open to the account); none read: no check."""
    client = boto3.client("secretsmanager", region_name=region)
    try:
        text = client.get_resource_policy(SecretId=_secret_name(host.name)).get("ResourcePolicy")
    except ClientError:  # no secret, or not readable: the delete says what it meets
        return
    statements = json.loads(text)["Statement"] if text else []
    owners = [
        pattern
        for statement in statements
        if str(statement.get("Sid", "")).endswith((KEY_OWNERS_SID, "SecretToItsReadersOnly"))
        for pattern in _listed(statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"])
    ]
    caller = caller_arn(region)
    if owners and not set(owner_patterns(caller)) & set(owners):
        listed = ", ".join(p for p in dict.fromkeys(owners) if not p.endswith(":root"))
        raise UsageError(
            f"host {host.name!r}: only an owner of its keys ({listed}) or the account's"
            f" root may delete it (the keys' policy denies {caller} their deletion);"
            " nothing was deleted"
        )


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def owner_patterns(arn: str) -> list[str]:
    """The aws:PrincipalArn patterns of the caller `arn`: its IAM user or role by name,
    whatever its path (names are unique in an account, paths aside); a role's session
    (``sts::...:assumed-role/NAME/SESSION``) is its role's; the root is the root."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return [arn]
    partition, account, what = parts[1], parts[4], parts[5]
    kind, _, path = what.partition("/")
    if kind == "assumed-role":
        kind, name = "role", path.split("/")[0]
    else:
        name = path.rsplit("/", 1)[-1]
    if kind not in ("user", "role") or not name:
        return [f"arn:{partition}:iam::{account}:root"] if what == "root" else [arn]
    base = f"arn:{partition}:iam::{account}:{kind}/"
    return [base + name, base + "*/" + name]


def _secret_value(arn: str, region: str) -> str:
    with aws_errors("reading the host's key to derive its API Gateway key"):
        found = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)
    return str(found["SecretString"])


def _secret_name(host_name: str, *, worker: bool = False) -> str:
    return f"hyper/{host_name}/{'worker-key' if worker else 'api-key'}"


def _api_key_secret(host_name: str, region: str, log: Log, *, worker: bool = False) -> str:
    """The ARN of the secret holding the host's API key (or, `worker`, its worker key:
    the API Gateway key workers are given, which opens a worker's own routes only with
    its token), made with a new key if absent."""
    client = boto3.client("secretsmanager", region_name=region)
    name = _secret_name(host_name, worker=worker)
    what = "worker key" if worker else "API key"
    with aws_errors(f"keeping the host's {what} in Secrets Manager"):
        try:
            return str(client.describe_secret(SecretId=name)["ARN"])
        except client.exceptions.ResourceNotFoundException:
            pass
        made = client.create_secret(
            Name=name,
            Description=f"the {what} of hyper host {host_name}",
            SecretString=new_api_key(),
            Tags=[{"Key": templates.HOST_TAG, "Value": host_name}],
        )
    log(f"made the secret {name} holding the host's {what}")
    return str(made["ARN"])


API_KEY_ALPHABET = string.ascii_letters + string.digits
API_KEY_LENGTH = 40  # API Gateway takes 20 to 128 alphanumeric characters; ~238 bits


def new_api_key() -> str:
    """A new API key: only letters and digits, as API Gateway documents a key's value."""
    return "".join(secrets.choice(API_KEY_ALPHABET) for _ in range(API_KEY_LENGTH))


def _code_bucket(account: str, region: str, log: Log, *, kept: str | None = None) -> str:
    """The bucket holding hosts' code bundles and big templates, one per account and region.
    Its name is predictable, so every call on it names the owner it must have
    (ExpectedBucketOwner): a bucket of that name in another account is never used. When
    another account holds the name (S3 answers 403), a name with a random suffix is made
    instead, and the host stack keeps it (its CodeBucket output, `kept`) for redeploys."""
    name = f"hyper-code-{account}-{region}"
    s3 = boto3.client("s3", region_name=region)
    with aws_errors(f"making the code bucket {name}"):
        if kept:  # the one this host was deployed with, while still this account's
            with contextlib.suppress(ClientError):
                s3.head_bucket(Bucket=kept, ExpectedBucketOwner=account)
                return kept
        try:
            s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
            return name
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("403", "AccessDenied", "Forbidden"):  # not ours: another name
                log(f"the bucket {name} is not this account's: using another name")
                name = f"{name}-{secrets.token_hex(4)}"
            elif code not in ("404", "NoSuchBucket"):
                raise
        where: dict[str, Any] = {}
        if region != "us-east-1":  # the one region that refuses to be named here
            where = {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **where)
        s3.put_public_access_block(
            Bucket=name,
            ExpectedBucketOwner=account,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    log(f"made the code bucket {name}")
    return name


# the roles the hosts' deploy functions make (jobs', instances', Batch's: every host's
# `resource_prefix` then one more "-"); never the functions' own, nor a user
WORKLOAD_ROLES = "arn:*:iam::*:role/hyper-*--*"


def code_bucket_policy(bucket: str, region: str) -> dict[str, Any]:
    """The code bucket's policy: no role a host's deploy function made (a job's, whatever
    policy its owner allowed) writes, deletes or reconfigures anything in it, for any
    host of the account that keeps its code there."""
    partition = boto3.session.Session().get_partition_for_region(region)
    arn = f"arn:{partition}:s3:::{bucket}"
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "NoJobWritesTheCode", "Effect": "Deny", "Principal": "*",
        "Action": ["s3:Put*", "s3:Delete*", "s3:Replicate*", "s3:RestoreObject"],
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"ArnLike": {"aws:PrincipalArn": WORKLOAD_ROLES}}}]}  # fmt: skip


def _upload(bucket: str, key: str, code: Path, region: str, log: Log, *, owner: str) -> str:
    """Upload the bundle, always (an object of that name, the bundle's hash, may have been
    put there by anyone able to write the bucket), into the bucket made versioned; the
    version this upload made, which the host's functions are deployed from: a write of
    the same key later (before CloudFormation reads it, or after) changes nothing they
    run. "" when S3 gives no version."""
    s3 = boto3.client("s3", region_name=region)
    with aws_errors(f"uploading the code bundle to s3://{bucket}/{key}"):
        s3.put_bucket_versioning(Bucket=bucket, ExpectedBucketOwner=owner,
                                 VersioningConfiguration={"Status": "Enabled"})  # fmt: skip
        s3.put_bucket_policy(Bucket=bucket, ExpectedBucketOwner=owner,
                             Policy=json.dumps(code_bucket_policy(bucket, region)))  # fmt: skip
        with code.open("rb") as body:
            made = s3.put_object(Bucket=bucket, Key=key, Body=body, ExpectedBucketOwner=owner)
    log(f"uploaded {code.name} ({code.stat().st_size // 1024} KiB)")
    return str(made.get("VersionId") or "")
