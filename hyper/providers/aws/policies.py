"""The IAM of a host stack: its functions' roles (the API function's and the deploy
function's, with the deploy role's EC2 narrowed by tags) and the permissions boundary
of every role the host makes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hyper.errors import UsageError
from hyper.providers.aws.names import Names
from hyper.providers.aws.template_parts import (
    HOST_TAG,
    SECRET_PARAMETER,
    WORKER_SECRET_PARAMETER,
    Json,
    function_name,
    get_att,
    physical_name,
    ref,
    resource,
    resource_prefix,
    statement,
    sub,
    table_prefix,
    tags,
)

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
# permissions"); no instance, key pair, volume or image action. Every network resource
# hyper makes carries the tag hyper:host=HOST from its creation (each of these types tags
# on create), so:
# - reading takes "*" (EC2 reads name no resource);
EC2_READS = ["ec2:Describe*", "ec2:Get*"]
# - a create only when the request tags the new resource as this host's: the request-tag
#   condition goes on the ARN of what each create makes (EC2_CREATED), never on "*": IAM
#   also authorizes a create against the existing resources it is made in (the VPC of a
#   subnet, group or route table; the subnet and address of a NAT gateway; the VPC,
#   subnets, route tables and groups of an endpoint; the requester VPC of a peering),
#   for which AWS documents no aws:RequestTag (service authorization reference, EC2);
EC2_HOST_CREATES = [
    "ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateInternetGateway", "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup", "ec2:AllocateAddress", "ec2:CreateNatGateway",
    "ec2:CreateVpcEndpoint", "ec2:CreateVpcPeeringConnection",
]  # fmt: skip
# the resource type each create makes; a type that is also one a create is made *in*
# (vpc, subnet, route table, group, address) is granted to its own create alone, so the
# request tag of one create never opens an existing resource to another
EC2_CREATED = {
    "ec2:CreateVpc": "vpc", "ec2:CreateSubnet": "subnet", "ec2:CreateRouteTable": "route-table",
    "ec2:CreateSecurityGroup": "security-group", "ec2:AllocateAddress": "elastic-ip",
    "ec2:CreateInternetGateway": "internet-gateway", "ec2:CreateNatGateway": "natgateway",
    "ec2:CreateVpcEndpoint": "vpc-endpoint",
    "ec2:CreateVpcPeeringConnection": "vpc-peering-connection",
}  # fmt: skip
# - the existing resources a create is made in: this host's (aws:ResourceTag hyper:host),
#   or the owner's VPC, subnets and route tables tagged hyper:use=HOST (below)
EC2_CREATES_IN = [
    "ec2:CreateSubnet", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup",
    "ec2:CreateNatGateway", "ec2:CreateVpcEndpoint", "ec2:CreateVpcPeeringConnection",
]  # fmt: skip
EC2_CREATED_IN = ("vpc", "subnet", "route-table", "security-group", "elastic-ip")
EC2_OWNER_CREATED_IN = ("vpc", "subnet", "route-table")
# - the tags of such a create (ec2:CreateAction), and changes of an existing resource
#   only on one tagged as this host's (a route: its route table; an attachment: the
#   gateway and the VPC), never retagging it as another host's; an update of a region's
#   stack needs the update handlers' actions too (tags removed, ingress rules revoked,
#   a subnet's route table replaced, an address disassociated before it is released);
EC2_HOST_CHANGES = [
    "ec2:CreateTags", "ec2:DeleteTags", "ec2:ModifyVpcAttribute", "ec2:ModifySubnetAttribute",
    "ec2:AttachInternetGateway", "ec2:DetachInternetGateway",
    "ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute",
    "ec2:AssociateRouteTable", "ec2:ReplaceRouteTableAssociation", "ec2:DisassociateRouteTable",
    "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
    "ec2:ModifyVpcEndpoint", "ec2:DisassociateAddress",
]  # fmt: skip
# - in a VPC the owner made, what hyper must change of the owner's resources (routes to a
#   peering in their route tables, gateway endpoints in them, accepting a peering to their
#   VPC) only where the owner tagged them hyper:use=HOST (docs/aws.md);
OWNER_TAG = "hyper:use"
EC2_OWNER_CHANGES = [
    "ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:ModifyVpcEndpoint",
]  # fmt: skip
# - accepting a peering (CloudFormation does, in the main region) only into a VPC that is
#   this host's or that its owner tagged hyper:use=HOST: the accepter's side of a peering
#   made from another region need not carry the requester's tags, so the peering itself
#   is not asked for any;
# - and deletes only of resources tagged as this host's: another host's network, or
#   anything else in the account, cannot be deleted with them.
EC2_HOST_DELETES = [
    "ec2:DeleteVpc", "ec2:DeleteSubnet", "ec2:DeleteInternetGateway",
    "ec2:DeleteRouteTable", "ec2:ReleaseAddress", "ec2:DeleteNatGateway",
    "ec2:DeleteSecurityGroup", "ec2:DeleteVpcEndpoints", "ec2:DeleteVpcPeeringConnection",
]  # fmt: skip
# the services the deploy role passes the host's roles to (iam:PassedToService): Batch
# its service role (CreateComputeEnvironment), Spot Fleet its fleet role, EC2 an
# instance role (through the instance profile), ECS tasks a definition's job role
# (RegisterJobDefinition). No Lambda, CloudFormation or other service gets one. The test
# is ...IfExists: IAM asks iam:PassRole of iam:AddRoleToInstanceProfile too, where no
# service is named (the profile passes the role on to EC2 later, under this same list)
PASSED_TO = ("batch.amazonaws.com", "spotfleet.amazonaws.com", "ec2.amazonaws.com",
             "ecs-tasks.amazonaws.com")  # fmt: skip
# what a role within the boundary may pass them to: the same, and the services Batch
# launches its instances through with its service role
BOUNDARY_PASSED_TO = (*PASSED_TO, "autoscaling.amazonaws.com", "ecs.amazonaws.com")
PROFILE_ACTIONS = [
    "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile",
    "iam:TagInstanceProfile", "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
]  # fmt: skip


# small helpers that keep the templates readable ------------------------------------------


def _has_indexes(definition: Json) -> bool:
    return bool(definition.get("GlobalSecondaryIndexes") or definition.get("LocalSecondaryIndexes"))


# where the API function reads and writes the bucket's objects: files (its own requests,
# and the presigned URLs it gives for files over 4 MB, which act with its grants: PUT is
# s3:PutObject, GET and HEAD s3:GetObject) and the scripts of big submits
FUNCTION_OBJECTS = ("files/*", "scripts/*")


def _store_statements(
    tables: dict[str, Json], logs: str, objects: tuple[str, ...] = ("*",)
) -> list[Json]:
    """What the host's code needs wherever it runs: this host's tables (and their
    indexes), bucket (its objects under `objects`), a log group and the secret."""
    table_arns: list[Any] = []
    for lid, definition in tables.items():
        table_arns.append(get_att(lid, "Arn"))
        if _has_indexes(definition):
            table_arns.append(sub("${" + lid + ".Arn}/index/*"))
    return [
        statement(TABLE_ACTIONS, table_arns, "HostTables"),
        statement(
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            [sub("${Bucket.Arn}/" + where) for where in objects],
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
        *_store_statements(tables, "FunctionLogs", FUNCTION_OBJECTS),
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
    return _lambda_role(
        f"the API function of hyper host {host_name}", statements, host_name, function_role_name
    )


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


# what no role of a host needs and none may do, whatever policy its owner allows for a
# cluster or a definition: blind the account's own watch (its trail, its detectors, its
# configuration record, its security findings and analyzers), open the account's S3 to
# the public, or destroy keys. docs/aws.md ("Who may do what") says why the boundary
# denies these and does not list what hyper's roles use instead.
ACCOUNT_WATCH_ACTIONS = [
    "cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:UpdateTrail",
    "cloudtrail:PutEventSelectors",
    "guardduty:DeleteDetector", "guardduty:UpdateDetector", "guardduty:DisassociateFrom*",
    "config:StopConfigurationRecorder", "config:Delete*",
    "securityhub:*Disable*",
    "access-analyzer:DeleteAnalyzer",
    "s3:PutAccountPublicAccessBlock",
    "kms:ScheduleKeyDeletion",
    "ec2:DisableEbsEncryptionByDefault",
]  # fmt: skip


# what a role within the boundary may do to a role only when that role holds the boundary
# (iam:PermissionsBoundary; IAM User Guide, "Permissions boundaries for IAM entities",
# its delegation example): so no role of the host makes or changes a role without it
BOUNDARY_KEEPING_ACTIONS = [
    "iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
    "iam:DetachRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
]  # fmt: skip


# what a role of the host that does not run its control plane may still do to it: pull
# the images of the host's repositories (an instance's agent, the execution role)
CONTROL_PLANE_READS = ["ecr:BatchCheck*", "ecr:BatchGet*", "ecr:GetDownload*"]


def control_plane_arns(host_name: str, batch_prefix: str | None) -> list[Json | str]:
    """The host's control plane, as ARN patterns: its two functions (and their versions
    and aliases), its REST API and everything under it, its tables (and their indexes
    and streams), its ECR repositories, its Batch queues, compute environments and
    definitions, and its bucket and objects (the code bucket has a policy of its own:
    host.code_bucket_policy). By name, not by the hyper:host tag: a pattern holds for
    every action of every service, where aws:ResourceTag is evaluated for some actions
    only and a tag can be taken off. A long name is matched by its first 32 characters
    (IAM's 6,144): a pattern may then also match another's names that start alike, which
    only ever denies this host's other roles more."""
    host, deploy = function_name(host_name), physical_name(host_name, "deploy")
    same = min(len(host), len(deploy))
    while host[:same] != deploy[:same]:
        same -= 1
    named = _batch_named(batch_prefix) or f"{table_prefix(host_name)}--"
    return [
        f"arn:*:lambda:*:*:function:{host[: min(same, 32)]}*",  # the start both names share
        sub("arn:*:apigateway:*::/restapis/${Api}*"),
        f"arn:*:dynamodb:*:*:table/{(table_prefix(host_name) + '-')[:32]}*",
        f"arn:*:ecr:*:*:repository/{named.rstrip('-')}/*",
        f"arn:*:batch:*:*:*/{named}*",  # its queues, compute environments, definitions
        sub("${Bucket.Arn}*"),
    ]


def _control_plane_deny(host_name: str, batch_prefix: str | None, runs: list[str]) -> Json:
    """Deny: no role of the host but those that run its control plane (`runs`, patterns of
    aws:PrincipalArn) writes, invokes or reads the control plane (control_plane_arns),
    whatever policy it holds (an allowed AdministratorAccess, AWSLambda_FullAccess,
    AmazonS3FullAccess...): a job that could change the functions' code, the API's
    integration, the host's files, its images, its queues or its tables would act as
    the functions (which read the keys), as other definitions' workers, or on users'
    machines through their results. Images may still be pulled (CONTROL_PLANE_READS)."""
    return {"Sid": "ControlPlane", "Effect": "Deny",
            "NotAction": CONTROL_PLANE_READS,
            "Resource": control_plane_arns(host_name, batch_prefix),
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": runs}}}  # fmt: skip


def _boundary(
    host_name: str,
    batch_prefix: str | None,
    allowed_policies: tuple[str, ...] = (),
) -> Json:
    """The permissions boundary of every role of the host: anything but IAM, STS,
    Organizations, account changes and ACCOUNT_WATCH_ACTIONS, and of IAM only what the
    host's own roles and instance profiles need (the Batch service role reads and passes
    them; the deploy function makes them). A role is made, given policies or a boundary
    only when it holds this boundary, and is given only Batch's managed policies and the
    owner's `allowed_policies`: a role within the boundary that holds IAM write actions
    (an allowed IAMFullAccess, say) cannot make a role without it, nor attach any other
    policy, nor take the boundary off."""
    named = _batch_named(batch_prefix)
    # any partition and account: IAM acts on the caller's account only, and these
    # patterns are shorter than the account's own ARNs (IAM's 6,144 characters)
    iam = "arn:*:iam::*:"
    own = [f"{iam}role/{named}*", f"{iam}instance-profile/{named}*"]
    boundary_name = physical_name(host_name, "boundary", limit=128)  # its own ARN, by name
    this = {"iam:PermissionsBoundary": f"{iam}policy/{boundary_name}"}
    # ROLE_ACTIONS and PROFILE_ACTIONS but BOUNDARY_KEEPING_ACTIONS, in fewer characters
    # (and their reads and untagging with them)
    free = ["iam:DeleteRole", "iam:TagRole", "iam:GetRole*", "iam:List*", "iam:*InstanceProfile"]
    policies = [managed_policy_arn(p) for p in (*BATCH_MANAGED_POLICIES, *allowed_policies)]
    # IAM changes: the deploy role's alone (no job or instance role makes a role, which
    # could trust an outside account, even with an allowed policy that lets it)
    deployer = f"{iam}role/{deploy_role_name(host_name)}"
    # the roles that run the control plane: the API function's and the deploy function's
    runs = [f"{iam}role/{function_role_name(host_name)}", deployer]
    # who passes the host's roles: the deploy role (to Batch, EC2, ECS), and Spot Fleet's
    # role (the instance role to the instances it launches); not a job's role, which
    # could pass the execution role (the worker key) or an instance role to its own
    # (and the Batch service role of a compute environment made before Batch's
    # service-linked role, which passes the instance role the same way)
    passers = [deployer, *(f"{iam}role/{named}{n}" for n in ("spot-fleet", "batch-service"))]
    statements = [
        {"Sid": "AnythingButIdentity", "Effect": "Allow",
         "NotAction": ["iam:*", "sts:*", "organizations:*", "account:*"], "Resource": "*"},
        statement(free, own, "HostRolesOnly",
                  Condition={"ArnLike": {"aws:PrincipalArn": deployer}}),
        statement([a for a in BOUNDARY_KEEPING_ACTIONS if a != "iam:AttachRolePolicy"], own,
                  "BoundedHostRoles",
                  Condition={"StringLike": this, "ArnLike": {"aws:PrincipalArn": deployer}}),
        statement(["iam:AttachRolePolicy"], own, "AllowedPoliciesOnly",
                  Condition={"ArnEquals": {"iam:PolicyARN": policies}, "StringLike": this,
                             "ArnLike": {"aws:PrincipalArn": deployer}}),
        statement(["iam:PassRole"], own, "PassHostRolesOnly",
                  Condition={"StringEqualsIfExists": {"iam:PassedToService": list(
                      BOUNDARY_PASSED_TO)}, "ArnLike": {"aws:PrincipalArn": passers}}),
        statement(["iam:GetInstanceProfile", "iam:GetRole", "iam:ListInstanceProfiles",
                   "iam:ListRoles", "sts:GetCallerIdentity"],
                  "*", "ReadIdentity"),
        _service_linked_roles(),
        {"Sid": "KeepTheAccountsWatch", "Effect": "Deny", "Action": ACCOUNT_WATCH_ACTIONS,
         "Resource": "*"},
        # the API Gateway keys' values open nothing (hyper/key_headers.py), and no role
        # of the host needs them
        {"Sid": "ApiKeyValues", "Effect": "Deny", "Action": "apigateway:GET",
         "Resource": "arn:*:apigateway:*::/apikeys*"},
        _control_plane_deny(host_name, batch_prefix, runs),
        # (the keys' secrets: their resource policies (control_plane.py) let only their
        # readers read or change them, every principal of the account and these roles
        # alike; here it would pass IAM's 6,144 characters for the longest names)
        {"Sid": "KeepTheBoundary", "Effect": "Deny",
         "Action": ["iam:DeleteRolePermissionsBoundary", "iam:CreatePolicyVersion",
                    "iam:DeletePolicy", "iam:SetDefaultPolicyVersion"], "Resource": "*"},
        # a role is made, bounded or given a policy only when it holds this boundary
        # (which then caps it), whatever else allows it
        {"Sid": "BoundaryOnly", "Effect": "Deny",
         "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
                    "iam:PutRolePolicy"], "Resource": "*",
         "Condition": {"StringNotLike": this}},
    ]  # fmt: skip
    return resource(
        "AWS::IAM::ManagedPolicy",
        {
            "ManagedPolicyName": boundary_name,
            "Description": f"the permissions boundary of hyper host {host_name}'s roles",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    )


# what may be done to the keys' secrets, and only by their readers (key_readers)
# what anyone in the account may do on a key's secret (reading neither its value nor
# anything that changes it); the rest, administrative actions included, is the owners'
# (every action, the ones AWS adds later too: ReplicateSecretToRegions, TagResource...)
KEY_SECRET_OPEN_ACTIONS = [
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy",
    "secretsmanager:ListSecretVersionIds",
]  # fmt: skip
# what the host's roles and the readers may do besides: read the value
KEY_SECRET_READ = "secretsmanager:GetSecretValue"
KEY_SECRET_ACTIONS = [KEY_SECRET_READ, *KEY_SECRET_OPEN_ACTIONS]  # NotAction of the owners'
# the Sid suffix of the owners' statement (delete-host reads it back: check_key_owner)
KEY_OWNERS_SID = "SecretChangedByItsOwnersOnly"


def key_readers(host_name: str, batch_prefix: str | None) -> dict[str, list[Json]]:
    """The roles of the host that may read each key's secret, by their ARNs (aws:PrincipalArn
    of a role's session is its role's ARN): the API function's and the deploy function's
    both; the worker key's also the execution role, for the ECS agent."""
    iam = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/"
    functions = [sub(iam + function_role_name(host_name)), sub(iam + deploy_role_name(host_name))]
    execution = (Names(prefix=batch_prefix) if batch_prefix else Names()).execution_role()
    return {"api": functions, "worker": [*functions, sub(iam + execution)]}


def key_secret_denies(readers: dict[str, list[Json]], owned_by: list[Json]) -> list[list[Json]]:
    """For the API key's and the worker key's secret, two Deny statements: no one but
    the readers (the host's roles) and `owned_by` (ArnLike patterns) reads its value; no
    one but `owned_by` does anything else to it but describe it (KEY_SECRET_OPEN_ACTIONS):
    change, delete, replicate, tag it or its policy."""
    return [
        [{"Sid": f"{sid}SecretReadByItsReadersOnly", "Effect": "Deny",
          "Action": KEY_SECRET_READ, "Resource": ref(parameter),
          "Condition": {"ArnNotLike": {"aws:PrincipalArn": [*readers[which], *owned_by]}}},
         {"Sid": f"{sid}{KEY_OWNERS_SID}", "Effect": "Deny",
          "NotAction": KEY_SECRET_ACTIONS, "Resource": ref(parameter),
          "Condition": {"ArnNotLike": {"aws:PrincipalArn": owned_by}}}]
        for sid, which, parameter in (("ApiKey", "api", SECRET_PARAMETER),
                                      ("WorkerKey", "worker", WORKER_SECRET_PARAMETER))
    ]  # fmt: skip


# IAM's quotas (IAM User Guide, "IAM and AWS STS quotas"), in characters without
# whitespace: a role's inline policies together, one managed policy, and the managed
# policies attached to one role (by default; 20 at most on request)
INLINE_POLICIES_LIMIT = 10_240
MANAGED_POLICY_LIMIT = 6_144
MANAGED_POLICIES_PER_ROLE = 10
# the characters the owner's allowed policies' ARNs may take together (each is in the
# deploy role's DeployResources and in the boundary): what keeps both under 6,144 for a
# 63-character host name in the longest region and partition
# (tests/test_aws_permissions.py -k fits_iams_limits)
ALLOWED_POLICIES_CHARACTERS = 1_500


def check_allowed_policies(text: str) -> list[str]:
    """The policies of a list `a,b` (the owner's --allowed-policies); UsageError when
    their ARNs together pass ALLOWED_POLICIES_CHARACTERS, which would put the host's
    policies past IAM's size limits (the host stack would fail on them)."""
    policies = [p.strip() for p in text.split(",") if p.strip()]
    used = sum(allowed_characters(p) for p in policies)
    if used > ALLOWED_POLICIES_CHARACTERS:
        raise UsageError(
            f"--allowed-policies: {len(policies)} policies take {used} characters of IAM "
            f"policy, more than the {ALLOWED_POLICIES_CHARACTERS} a host's policies have "
            "room for (IAM's size limits): allow fewer, or a policy that holds them together"
        )
    return policies


def allowed_characters(policy: str) -> int:
    """What one allowed policy adds to a policy naming it: its longest ARN, quoted, with
    a comma."""
    arn = policy if policy.startswith("arn:") else f"arn:aws-us-gov:iam::aws:policy/{policy}"
    return len(arn) + 3


def deploy_role(
    host_name: str,
    tables: dict[str, Json],
    batch_prefix: str | None,
    allowed_policies: tuple[str, ...] = (),
) -> dict[str, Json]:
    """The deploy function's role (`DeployRole`) and the managed policies it holds: its
    statements pass IAM's 10,240 characters of inline policy for a long host name, so
    the store stays inline (as the API function's), and what a region, cluster, image or
    definition is made of goes into managed policies of at most 6,144 characters each
    (`DeployResources`: stacks, Batch, repositories, roles; `DeployNetwork`: EC2 reads
    and creates; `DeployNetworkChanges`: EC2 tags, changes, deletes and peerings).
    tests/test_aws_permissions.py checks each against IAM's limits for a 63-character
    host name in the longest region and partition names."""
    role, resources, network = _deploy_statements(host_name, tables, batch_prefix, allowed_policies)
    found = {}
    for lid, suffix, what, statements in (
        ("DeployResources", "deploy-resources", "stacks, Batch, repositories and roles", resources),
        ("DeployNetwork", "deploy-network", "EC2 reads and creates", network[0]),
        ("DeployNetworkChanges", "deploy-network-changes", "changes of EC2 networks",
         network[1]),
    ):  # fmt: skip
        found[lid] = resource(
            "AWS::IAM::ManagedPolicy",
            {
                "ManagedPolicyName": physical_name(host_name, suffix, limit=128),
                "Description": f"what the deploy function of hyper host {host_name} makes: {what}",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            },
        )
    made = _lambda_role(
        f"the deploy function of hyper host {host_name}", role, host_name, deploy_role_name
    )
    made["Properties"]["ManagedPolicyArns"] = [ref(lid) for lid in found]
    return {"DeployRole": made, **found}


def _deploy_statements(
    host_name: str,
    tables: dict[str, Json],
    batch_prefix: str | None,
    allowed_policies: tuple[str, ...] = (),
) -> tuple[list[Json], list[Json], list[list[Json]]]:
    """The deploy function's statements (its inline policy's, its resources' policy's
    and its network policies'): the store, and what a region, cluster, image or
    definition is made of: this host's stacks, Batch resources, repositories and roles,
    and EC2 networking (which CloudFormation makes with these credentials, and which has
    no names to narrow it by). The API function cannot do any of this."""

    def arn(service: str, rest: str, region: str = "*") -> Json:
        return sub(f"arn:${{AWS::Partition}}:{service}:{region}:${{AWS::AccountId}}:{rest}")

    named = _batch_named(batch_prefix)
    stacks = arn("cloudformation", f"stack/{resource_prefix(host_name)}-*")
    repositories = arn("ecr", f"repository/{(batch_prefix or 'hyper').rstrip('-')}/*")
    store = _store_statements(tables, "DeployFunctionLogs")
    statements = [
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
        statement(
            ["iam:PassRole"],
            [arn("iam", f"role/{named}*", "")],
            "PassHostRoles",
            Condition={"StringEqualsIfExists": {"iam:PassedToService": list(PASSED_TO)}},
        ),
        *_launch_template_statements(batch_prefix),
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
    network = _network_statements(host_name)
    creates = [s for s in network if s["Sid"] == "NetworkReads" or "Creates" in s["Sid"]]
    return store, statements, [creates, [s for s in network if s not in creates]]


def _network_statements(host_name: str) -> list[Json]:
    """The deploy role's EC2 statements (see EC2_HOST_CREATES and its neighbours)."""
    mine = {f"aws:ResourceTag/{HOST_TAG}": host_name}
    return [
        statement(EC2_READS, "*", "NetworkReads"),
        *_create_statements(host_name),
        statement(
            ["ec2:CreateTags"],
            "*",
            "HostNetworkTagsOnCreate",
            Condition={
                "StringEquals": {
                    "ec2:CreateAction": [a.removeprefix("ec2:") for a in EC2_HOST_CREATES],
                    f"aws:RequestTag/{HOST_TAG}": host_name,
                }
            },
        ),
        # A CloudFormation handler may make a resource without its tags and tag it in a
        # second call, which carries no ec2:CreateAction: then the host's tag may be put
        # on a resource of a type the region stack makes that no one has tagged as any
        # host's yet (nor as an owner's, hyper:use), through CloudFormation only
        # (aws:CalledVia, which CloudFormation sets on the calls it makes with the
        # deploy role's credentials), and with no other tag key than the host's and
        # Name. A tagged resource stays closed.
        statement(
            ["ec2:CreateTags"],
            [ec2(kind) for kind in EC2_CREATED.values()],
            "HostNetworkTagsAfterCreate",
            Condition={
                "Null": {
                    f"aws:ResourceTag/{HOST_TAG}": "true",
                    f"aws:ResourceTag/{OWNER_TAG}": "true",
                },
                "StringEquals": {f"aws:RequestTag/{HOST_TAG}": host_name},
                "ForAllValues:StringEquals": {"aws:TagKeys": [HOST_TAG, "Name"]},
                "ForAnyValue:StringEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"},
            },
        ),
        statement(
            EC2_HOST_CHANGES,
            "*",
            "HostNetworkChanges",
            Condition={
                "StringEquals": mine,
                "StringEqualsIfExists": {f"aws:RequestTag/{HOST_TAG}": host_name},
            },
        ),
        statement(
            EC2_OWNER_CHANGES,
            "*",
            "OwnerNetworkChanges",
            Condition={"StringEquals": {f"aws:ResourceTag/{OWNER_TAG}": host_name}},
        ),
        statement(EC2_HOST_DELETES, "*", "HostNetworkDeletes", Condition={"StringEquals": mine}),
        statement(
            ["ec2:AcceptVpcPeeringConnection"], [ec2("vpc-peering-connection")], "AcceptPeerings"
        ),
        statement(
            ["ec2:AcceptVpcPeeringConnection"],
            [ec2("vpc")],
            "AcceptPeeringsIntoHostVpcs",
            Condition={"StringEquals": mine},
        ),
        statement(
            ["ec2:AcceptVpcPeeringConnection"],
            [ec2("vpc")],
            "AcceptPeeringsIntoOwnerVpcs",
            Condition={"StringEquals": {f"aws:ResourceTag/{OWNER_TAG}": host_name}},
        ),
    ]


def _create_statements(host_name: str) -> list[Json]:
    """The EC2 creates (EC2_HOST_CREATES): each on the ARN of what it makes with the
    request's tag, and on the existing resources it is made in by theirs."""
    request = {"StringEquals": {f"aws:RequestTag/{HOST_TAG}": host_name}}
    made_in = set(EC2_CREATED_IN)
    alone = [a for a in EC2_HOST_CREATES if EC2_CREATED[a] in made_in]
    together = [a for a in EC2_HOST_CREATES if EC2_CREATED[a] not in made_in]
    sid = "HostNetworkCreates"
    found = [
        statement([a], [ec2(EC2_CREATED[a])], sid + _camel(EC2_CREATED[a]), Condition=request)
        for a in alone
    ]
    found.append(
        statement(together, [ec2(EC2_CREATED[a]) for a in together], sid + "Others",
                  Condition=request)
    )  # fmt: skip
    for name, tag, kinds in (
        ("HostNetworkCreatesIn", HOST_TAG, EC2_CREATED_IN),
        ("OwnerNetworkCreatesIn", OWNER_TAG, EC2_OWNER_CREATED_IN),
    ):
        found.append(
            statement(EC2_CREATES_IN, [ec2(k) for k in kinds], name,
                      Condition={"StringEquals": {f"aws:ResourceTag/{tag}": host_name}})
        )  # fmt: skip
    return found


def _camel(kind: str) -> str:
    return "".join(part.title() for part in kind.split("-"))


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
    only with the host's tag, tagged only as they are made (ec2:CreateAction
    CreateLaunchTemplate), deleted only when they carry it. Their ARNs hold an id AWS
    makes, so the tag is what names them as the host's. That tag is `batch.Names.tags`'
    hyper:host (``hyper-HOST``, the Batch side's), not the network's (HOST): so these are
    statements of their own rather than entries of `_network_statements`' lists."""
    host = (batch_prefix or "hyper").rstrip("-")  # batch.Names.tags' hyper:host
    templates = ec2("launch-template")
    return [
        statement(["ec2:CreateLaunchTemplate"], [templates], "HostLaunchTemplates",
                  Condition={"StringEquals": {f"aws:RequestTag/{HOST_TAG}": host}}),
        statement(["ec2:CreateTags"], [templates], "TagLaunchTemplatesAsMade",
                  Condition={"StringEquals": {"ec2:CreateAction": "CreateLaunchTemplate",
                                              f"aws:RequestTag/{HOST_TAG}": host}}),
        statement(["ec2:DeleteLaunchTemplate"], [templates], "DeleteHostLaunchTemplates",
                  Condition={"StringEquals": {f"aws:ResourceTag/{HOST_TAG}": host}}),
        # a new version of this release's data, made the default (launch_templates.py)
        statement(["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate"], [templates],
                  "VersionHostLaunchTemplates",
                  Condition={"StringEquals": {f"aws:ResourceTag/{HOST_TAG}": host}}),
    ]  # fmt: skip


def ec2(kind: str) -> Json:
    """Every EC2 resource of `kind` of the host's account, in any region."""
    return sub(f"arn:${{AWS::Partition}}:ec2:*:${{AWS::AccountId}}:{kind}/*")


def function_role_name(host_name: str) -> str:
    """The API function's role's name: named, so that the boundary and the secrets'
    policies can name it (a generated name is known only once the role is made, and the
    boundary is made before it). Not under the host's role prefix ``hyper-HOST--``,
    which the boundary lets the deploy role change."""
    return physical_name(host_name, "api-role", limit=40)


def deploy_role_name(host_name: str) -> str:
    """The deploy function's role's name (see `function_role_name`)."""
    return physical_name(host_name, "deploy-role", limit=40)


def _lambda_role(
    description: str, statements: list[Json], host_name: str, name: Callable[[str], str]
) -> Json:
    return resource(
        "AWS::IAM::Role",
        {
            "RoleName": name(host_name),
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
