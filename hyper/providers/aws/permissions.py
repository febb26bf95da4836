"""Which IAM permission each AWS call hyper makes needs, and whether a policy grants it.

A role's policy is right when every call the code makes with it is allowed, on the very
resource it touches; AWS answers AccessDenied otherwise, long after the tests passed
under moto (which checks no policy). So the calls are recorded (botocore's
``before-parameter-build`` event, see `CallRecorder`), each is turned into the
permissions it needs (`needs`: the action, and the ARN of the resource it will have
once deployed), and `Policy.allows` evaluates the role's Allow statements the way IAM
does for them: actions and resources with ``*`` and ``?`` wildcards, conditions on the
request's tags (``aws:RequestTag/...``) and the resource's (``aws:ResourceTag/...``).

The same records write the table of calls in docs/aws.md, so the two cannot drift.

Some calls need more than their own action (AWS documents these as "dependent
actions"): creating with tags needs the service's Tag* action; naming a role for a
service to use needs ``iam:PassRole`` on it; CloudFormation creates a stack's resources
with the caller's credentials (no service role here), so a CreateStack needs what each of
its resource types needs (`STACK_RESOURCE_ACTIONS`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class Need:
    """One permission a call needs: `action` on `resource`, with the request's tags
    (`request_tags`) and, for an existing resource, the tags it has (`resource_tags`)."""

    action: str
    resource: str
    request_tags: tuple[tuple[str, str], ...] = ()
    resource_tags: tuple[tuple[str, str], ...] = ()
    why: str = ""  # the call it comes from, for messages
    context: tuple[tuple[str, str], ...] = ()  # other condition keys: iam:PolicyARN...


@dataclass(frozen=True)
class Call:
    """One AWS call as the code made it."""

    service: str  # the IAM prefix: batch, iam, ec2...
    operation: str  # CreateComputeEnvironment
    region: str
    params: Json = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"


# ---- recording calls ------------------------------------------------------------------


class CallRecorder:
    """Notes every call of clients made from `session` (a boto3 or botocore session)
    after `start()`: register before the clients are made."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.recording = True

    def attach(self, events: Any) -> None:
        events.register("before-parameter-build", self._note)

    def _note(self, params: Json, model: Any, context: Mapping[str, Any], **_: Any) -> None:
        if not self.recording:
            return
        service = model.service_model.signing_name or model.service_model.endpoint_prefix
        safe = json.loads(json.dumps(params, default=lambda v: f"<{type(v).__name__}>"))
        region = str(context.get("client_region") or "")
        self.calls.append(Call(_IAM_PREFIX.get(service, service), model.name, region, safe))

    def take(self) -> list[Call]:
        taken, self.calls = self.calls, []
        return taken


_IAM_PREFIX = {"monitoring": "cloudwatch", "events": "events", "execute-api": "apigateway"}


# ---- what each call needs ------------------------------------------------------------------

# actions CloudFormation performs with the caller's credentials for each resource type it
# makes, changes or deletes in the region stacks (each handler's "required permissions")
STACK_RESOURCE_ACTIONS: dict[str, tuple[str, ...]] = {
    "AWS::EC2::VPC": ("ec2:CreateVpc", "ec2:DescribeVpcs", "ec2:ModifyVpcAttribute",
                      "ec2:DescribeVpcAttribute", "ec2:DeleteVpc", "ec2:CreateTags",
                      "ec2:DeleteTags"),
    "AWS::EC2::Subnet": ("ec2:CreateSubnet", "ec2:DescribeSubnets", "ec2:ModifySubnetAttribute",
                         "ec2:DeleteSubnet", "ec2:CreateTags", "ec2:DeleteTags"),
    "AWS::EC2::InternetGateway": ("ec2:CreateInternetGateway", "ec2:DescribeInternetGateways",
                                  "ec2:DeleteInternetGateway", "ec2:CreateTags",
                                  "ec2:DeleteTags"),
    "AWS::EC2::VPCGatewayAttachment": ("ec2:AttachInternetGateway",
                                       "ec2:DetachInternetGateway"),
    "AWS::EC2::RouteTable": ("ec2:CreateRouteTable", "ec2:DescribeRouteTables",
                             "ec2:DeleteRouteTable", "ec2:CreateTags", "ec2:DeleteTags"),
    "AWS::EC2::Route": ("ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"),
    "AWS::EC2::SubnetRouteTableAssociation": ("ec2:AssociateRouteTable",
                                              "ec2:ReplaceRouteTableAssociation",
                                              "ec2:DisassociateRouteTable"),
    "AWS::EC2::EIP": ("ec2:AllocateAddress", "ec2:DescribeAddresses", "ec2:ReleaseAddress",
                      "ec2:DisassociateAddress", "ec2:CreateTags", "ec2:DeleteTags"),
    "AWS::EC2::NatGateway": ("ec2:CreateNatGateway", "ec2:DescribeNatGateways",
                             "ec2:DeleteNatGateway", "ec2:CreateTags", "ec2:DeleteTags"),
    "AWS::EC2::SecurityGroup": ("ec2:CreateSecurityGroup", "ec2:DescribeSecurityGroups",
                                "ec2:AuthorizeSecurityGroupEgress",
                                "ec2:RevokeSecurityGroupEgress",
                                "ec2:AuthorizeSecurityGroupIngress",
                                "ec2:RevokeSecurityGroupIngress",
                                "ec2:DeleteSecurityGroup", "ec2:CreateTags", "ec2:DeleteTags"),
    "AWS::EC2::VPCEndpoint": ("ec2:CreateVpcEndpoint", "ec2:DescribeVpcEndpoints",
                              "ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints",
                              "ec2:CreateTags", "ec2:DeleteTags"),
    "AWS::EC2::VPCPeeringConnection": ("ec2:CreateVpcPeeringConnection",
                                       "ec2:AcceptVpcPeeringConnection",
                                       "ec2:DescribeVpcPeeringConnections",
                                       "ec2:DeleteVpcPeeringConnection", "ec2:CreateTags",
                                       "ec2:DeleteTags"),
}  # fmt: skip

# calls that need no permission at all
_FREE = {"sts:GetCallerIdentity"}

# calls whose resource can only be "*" (AWS's service authorization reference)
_ANY_RESOURCE = re.compile(
    r"^(ec2:(Describe|Get).*|batch:(Describe|List).*|cloudformation:(ValidateTemplate|ListStacks)"
    r"|ecr:GetAuthorizationToken|iam:CreateServiceLinkedRole|servicequotas:.*"
    r"|apigateway:.*|s3:ListAllMyBuckets|lambda:GetAccountSettings)$"
)


@dataclass(frozen=True)
class Place:
    """Where calls go: the partition and account they are made in."""

    account: str
    partition: str = "aws"

    def arn(self, service: str, region: str, rest: str, *, account: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{region}:{self.account if account else ''}:{rest}"


def _tags(value: Any) -> tuple[tuple[str, str], ...]:
    """Tags as AWS APIs take them: a map, or a list of Key/Value (or key/value)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))
    if isinstance(value, list):
        found = [(t.get("Key", t.get("key")), t.get("Value", t.get("value"))) for t in value]
        return tuple(sorted((str(k), str(v)) for k, v in found))
    return ()


def _last(value: str, marker: str) -> str:
    """A name given as a name or an ARN (`...:marker/NAME`)."""
    return value.split(f"{marker}/", 1)[1] if value.startswith("arn:") else value


def needs(
    call: Call,
    place: Place,
    *,
    stack_templates: Mapping[str, Json] | None = None,
    role_boundaries: Mapping[str, str] | None = None,
    made_tags: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
) -> list[Need]:
    """The permissions `call` needs in `place`. `stack_templates` (a template by stack
    name) gives a CreateStack/UpdateStack/DeleteStack the actions of its resources;
    `role_boundaries` (a boundary ARN by role name, as the roles were made) gives a call
    on an existing role the ``iam:PermissionsBoundary`` IAM evaluates it with;
    `made_tags` (tags by name, as the resources were made: `made_tags_of`) gives a call on
    an existing EC2 launch template the ``aws:ResourceTag`` IAM evaluates it with."""
    if call.name in _FREE:
        return []
    found = list(_needs(call, place, stack_templates or {}))
    made = made_tags or {}
    held_tags = made.get(str(call.params.get("LaunchTemplateName", "")))
    if call.name in ("batch:CancelJob", "batch:TerminateJob"):
        held_tags = made.get(BATCH_JOBS)
    if call.service in ("ec2", "batch") and held_tags:
        found = [dataclasses.replace(n, resource_tags=n.resource_tags or held_tags) for n in found]
    role = call.params.get("RoleName") if call.service == "iam" else None
    boundary = (role_boundaries or {}).get(role or "")
    if boundary and "PermissionsBoundary" not in call.params:
        held = ("iam:PermissionsBoundary", boundary)
        found = [
            dataclasses.replace(n, context=(*n.context, held))
            if n.action.startswith("iam:") and ":role/" in n.resource
            else n
            for n in found
        ]
    return [
        Need(n.action, n.resource, n.request_tags, n.resource_tags, n.why or call.name, n.context)
        for n in found
    ]


def _needs(call: Call, place: Place, templates: Mapping[str, Json]) -> Iterator[Need]:
    p, region, op = call.params, call.region, call.operation
    action = call.name
    if action == "iam:CreateServiceLinkedRole":
        yield Need(action, "*", context=(("iam:AWSServiceName", p.get("AWSServiceName", "")),))
        return
    if _ANY_RESOURCE.match(action):
        yield Need(action, "*")
        return
    handler = _HANDLERS.get(call.service)
    if handler is None:
        raise KeyError(f"no permission rule for {action}: add one to permissions.py")
    yield from handler(call, place, templates)
    _ = (p, region, op)


def _batch(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    p, region, action = call.params, call.region, call.name

    def arn(kind: str, value: str) -> str:
        return value if value.startswith("arn:") else place.arn("batch", region, f"{kind}/{value}")

    tags = _tags(p.get("tags"))
    if call.operation == "CreateComputeEnvironment":
        target = arn("compute-environment", p["computeEnvironmentName"])
        yield Need(action, target, tags)
        resources = p.get("computeResources", {})
        for role, to in ((p.get("serviceRole"), "batch"),
                         (resources.get("spotIamFleetRole"), "spotfleet")):  # fmt: skip
            if role:
                yield Need("iam:PassRole", _role_arn(role, place), context=_passed(to))
        profile = resources.get("instanceRole")
        if profile:  # hyper names an instance profile after its role
            yield Need("iam:PassRole", _role_arn(_last(profile, "instance-profile"), place),
                       context=_passed("ec2"))  # fmt: skip
    elif call.operation in ("UpdateComputeEnvironment", "DeleteComputeEnvironment"):
        yield Need(action, arn("compute-environment", p["computeEnvironment"]))
    elif call.operation == "CreateJobQueue":
        yield Need(action, arn("job-queue", p["jobQueueName"]), tags)
        for env in p.get("computeEnvironmentOrder", []):
            yield Need(action, arn("compute-environment", env["computeEnvironment"]))
    elif call.operation in ("UpdateJobQueue", "DeleteJobQueue"):
        yield Need(action, arn("job-queue", p["jobQueue"]))
        for env in p.get("computeEnvironmentOrder", []):
            yield Need(action, arn("compute-environment", env["computeEnvironment"]))
    elif call.operation == "RegisterJobDefinition":
        yield Need(action, arn("job-definition", p["jobDefinitionName"]), tags)
        container = p.get("containerProperties", {})
        for key in ("jobRoleArn", "executionRoleArn"):  # both passed to ECS tasks
            if container.get(key):
                yield Need("iam:PassRole", container[key], context=_passed("ecs-tasks"))
    elif call.operation == "DeregisterJobDefinition":
        yield Need(action, arn("job-definition", p["jobDefinition"]))
    elif call.operation == "SubmitJob":
        yield Need(action, arn("job-queue", p["jobQueue"]), tags)
        yield Need(action, arn("job-definition", p["jobDefinition"]))
    elif call.operation in ("CancelJob", "TerminateJob"):
        yield Need(action, arn("job", p["jobId"]))
    else:
        raise KeyError(f"no permission rule for {action}: add one to permissions.py")
    if tags and call.operation.startswith(("Create", "Register", "Submit")):
        kinds: dict[str, tuple[str, str]] = {
            "CreateComputeEnvironment": ("compute-environment", "computeEnvironmentName"),
            "CreateJobQueue": ("job-queue", "jobQueueName"),
            "RegisterJobDefinition": ("job-definition", "jobDefinitionName"),
        }
        if call.operation == "SubmitJob":  # the job's own tags: its ARN is not known yet
            yield Need("batch:TagResource", arn("job", "*"), tags)
        else:
            kind, key = kinds[call.operation]
            yield Need("batch:TagResource", arn(kind, p[key]), tags)


def _passed(service: str) -> tuple[tuple[str, str], ...]:
    """The iam:PassedToService of a role a call passes to `service`."""
    return (("iam:PassedToService", f"{service}.amazonaws.com"),)


def _role_arn(role: str, place: Place) -> str:
    return role if role.startswith("arn:") else place.arn("iam", "", f"role/{role}")


def _iam(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    p, action = call.params, call.name

    def arn(kind: str, name: str) -> str:
        return place.arn("iam", "", f"{kind}/{name}")

    tags = _tags(p.get("Tags"))
    if "InstanceProfileName" in p:
        yield Need(action, arn("instance-profile", p["InstanceProfileName"]), tags)
        if call.operation == "AddRoleToInstanceProfile":  # the profile passes the role on
            yield Need("iam:PassRole", arn("role", p["RoleName"]))
        if call.operation == "CreateInstanceProfile" and tags:
            yield Need("iam:TagInstanceProfile", arn("instance-profile", p["InstanceProfileName"]),
                       tags)  # fmt: skip
        return
    if "RoleName" in p:
        context: list[tuple[str, str]] = []
        if p.get("PermissionsBoundary"):
            context.append(("iam:PermissionsBoundary", p["PermissionsBoundary"]))
        if call.operation in ("AttachRolePolicy", "DetachRolePolicy"):
            context.append(("iam:PolicyARN", p["PolicyArn"]))
        yield Need(action, arn("role", p["RoleName"]), tags, context=tuple(context))
        if call.operation == "CreateRole" and tags:
            yield Need("iam:TagRole", arn("role", p["RoleName"]), tags)
        return
    raise KeyError(f"no permission rule for {action}: add one to permissions.py")


def _ecr(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    p, action = call.params, call.name
    names = p.get("repositoryNames") or [p.get("repositoryName")]
    tags = _tags(p.get("tags"))
    for name in names:
        target = place.arn("ecr", call.region, f"repository/{name}")
        yield Need(action, target, tags)
        if tags and call.operation == "CreateRepository":
            yield Need("ecr:TagResource", target, tags)


def _cloudformation(call: Call, place: Place, templates: Mapping[str, Json]) -> Iterator[Need]:
    p, action = call.params, call.name
    name = p.get("StackName", "")
    stack = (
        name
        if name.startswith("arn:")
        else place.arn("cloudformation", call.region, f"stack/{name}/*")
    )
    yield Need(action, stack, _tags(p.get("Tags")))
    if call.operation in ("CreateStack", "UpdateStack", "DeleteStack"):
        if p.get("TemplateURL"):
            bucket, key = _s3_url(p["TemplateURL"])
            yield Need("s3:GetObject", f"arn:{place.partition}:s3:::{bucket}/{key}")
        template = templates.get(_last(name, "stack").split("/")[0]) or _body(p)
        yield from sorted(set(_stack_needs(call, place, template or {})), key=_need_order)


def _need_order(need: Need) -> tuple[str, str, tuple[tuple[str, str], ...], str]:
    return (need.why, need.action, need.context, str(need.resource_tags))


# the action that makes a resource of each type (ec2:CreateAction when it tags on create)
_CREATED_BY = {
    kind: next((a for a in actions if a.startswith(("ec2:Create", "ec2:Allocate"))
                and a != "ec2:CreateTags"), "")
    for kind, actions in STACK_RESOURCE_ACTIONS.items()
}  # fmt: skip
# actions of a resource type that act on other resources, by the property naming each
_ACTS_ON: dict[str, tuple[str, ...]] = {
    "AWS::EC2::Route": ("RouteTableId",),
    "AWS::EC2::SubnetRouteTableAssociation": ("RouteTableId", "SubnetId"),
    "AWS::EC2::VPCGatewayAttachment": ("InternetGatewayId", "VpcId"),
}

# what each created type is: a create is authorized on the new resource's ARN (with the
# request's tags) and on each existing resource it is made in (with that one's tags), by
# the property naming it (the service authorization reference's resource types, EC2)
_MAKES: dict[str, str] = {
    "AWS::EC2::VPC": "vpc", "AWS::EC2::Subnet": "subnet",
    "AWS::EC2::InternetGateway": "internet-gateway", "AWS::EC2::RouteTable": "route-table",
    "AWS::EC2::EIP": "elastic-ip", "AWS::EC2::NatGateway": "natgateway",
    "AWS::EC2::SecurityGroup": "security-group", "AWS::EC2::VPCEndpoint": "vpc-endpoint",
    "AWS::EC2::VPCPeeringConnection": "vpc-peering-connection",
}  # fmt: skip
_MADE_IN: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::EC2::Subnet": (("VpcId", "vpc"),),
    "AWS::EC2::RouteTable": (("VpcId", "vpc"),),
    "AWS::EC2::SecurityGroup": (("VpcId", "vpc"),),
    "AWS::EC2::NatGateway": (("SubnetId", "subnet"), ("AllocationId", "elastic-ip")),
    "AWS::EC2::VPCEndpoint": (("VpcId", "vpc"), ("SubnetIds", "subnet"),
                              ("RouteTableIds", "route-table"),
                              ("SecurityGroupIds", "security-group")),
    "AWS::EC2::VPCPeeringConnection": (("VpcId", "vpc"),),  # the requester's
}  # fmt: skip


def _stack_needs(call: Call, place: Place, template: Json) -> Iterator[Need]:
    """What a stack's resources need, as IAM sees each action: a create with the tags the
    request gives the new resource (and ec2:CreateTags with its ec2:CreateAction); a
    change or delete with the tags the resource it acts on has (a route: its route
    table's; an attachment: the gateway's and the VPC's). A resource the template does
    not make (an id given as a literal: the owner's) has no tags known here."""
    resources = template.get("Resources", {})

    def tags_of(value: Any) -> tuple[tuple[str, str], ...]:
        made = None
        if isinstance(value, dict) and set(value) == {"Ref"}:
            made = value["Ref"]
        elif isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            made = value["Fn::GetAtt"][0]
        if made in resources:
            return _tags(resources[made].get("Properties", {}).get("Tags"))
        return ()

    def ec2(kind: str) -> str:
        return place.arn("ec2", call.region, f"{kind}/*")

    for found in resources.values():
        kind, properties = found["Type"], found.get("Properties", {})
        own = _tags(properties.get("Tags"))
        why = f"{call.name} ({kind})"
        for action in STACK_RESOURCE_ACTIONS.get(kind, ()):
            if action.startswith(("ec2:Describe", "ec2:Get")):
                yield Need(action, "*", why=why)
            elif kind in _ACTS_ON:  # a route or an attachment is no resource of IAM's
                for key in _ACTS_ON[kind]:
                    yield Need(action, "*", (), tags_of(properties.get(key)), why=why)
            elif action == _CREATED_BY[kind]:
                yield Need(action, ec2(_MAKES[kind]), own, why=why)
                for key, existing in _MADE_IN.get(kind, ()):
                    for value in _listed(properties.get(key, [])):
                        yield Need(action, ec2(existing), (), tags_of(value), why=why)
            elif action == "ec2:CreateTags":
                created = (("ec2:CreateAction", _CREATED_BY[kind].removeprefix("ec2:")),)
                yield Need(action, "*", own, why=why, context=created)  # made with its tags
                yield Need(action, "*", own, own, why=why)  # and an update's new tags
            else:
                yield Need(action, "*", (), own, why=why)


def _body(params: Json) -> Json | None:
    body = params.get("TemplateBody")
    return json.loads(body) if isinstance(body, str) else None


def _s3_url(url: str) -> tuple[str, str]:
    match = re.match(r"https://([^.]+)\.s3[.-][^/]*/(.+)", url)
    if not match:
        raise ValueError(f"not an S3 URL: {url}")
    return match[1], match[2]


_S3_ACTIONS = {
    "HeadBucket": ("s3:ListBucket", False),
    "ListObjectsV2": ("s3:ListBucket", False),
    "ListObjectVersions": ("s3:ListBucketVersions", False),
    "CreateBucket": ("s3:CreateBucket", False),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock", False),
    "PutBucketPolicy": ("s3:PutBucketPolicy", False),
    "PutBucketVersioning": ("s3:PutBucketVersioning", False),
    "DeleteBucket": ("s3:DeleteBucket", False),
    "DeleteObjects": ("s3:DeleteObject", False),
    "HeadObject": ("s3:GetObject", True),
    "GetObject": ("s3:GetObject", True),
    "PutObject": ("s3:PutObject", True),
    "CreateMultipartUpload": ("s3:PutObject", True),
    "UploadPart": ("s3:PutObject", True),
    "CompleteMultipartUpload": ("s3:PutObject", True),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", True),
    "DeleteObject": ("s3:DeleteObject", True),
}


def _s3(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    action, on_object = _S3_ACTIONS[call.operation]
    bucket = call.params["Bucket"]
    where = f"{bucket}/{call.params['Key']}" if on_object else bucket
    if call.operation == "DeleteObjects":  # s3:DeleteObject on each object it names
        for named in call.params.get("Delete", {}).get("Objects", []):
            yield Need(action, f"arn:{place.partition}:s3:::{bucket}/{named['Key']}")
        return
    yield Need(action, f"arn:{place.partition}:s3:::{where}")


def _dynamodb(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    p = call.params

    def table(name: str, index: str | None = None) -> str:
        arn = place.arn("dynamodb", call.region, f"table/{name}")
        return f"{arn}/index/{index}" if index else arn

    if call.operation in ("TransactWriteItems", "TransactGetItems"):
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}  # fmt: skip
        for item in p.get("TransactItems", []):
            for kind, request in item.items():
                yield Need(f"dynamodb:{kinds[kind]}", table(request["TableName"]))
    elif call.operation in ("BatchGetItem", "BatchWriteItem"):
        for name in p.get("RequestItems", {}):
            yield Need(call.name, table(name))
    else:
        yield Need(call.name, table(p["TableName"], p.get("IndexName")))


def _secretsmanager(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    p = call.params
    name = p.get("SecretId") or p.get("Name") or ""
    target = (
        name
        if name.startswith("arn:")
        else place.arn(
            "secretsmanager",
            call.region,
            f"secret:{name}-AbCdEf",  # AWS adds six characters
        )
    )
    tags = _tags(p.get("Tags"))
    yield Need(call.name, target, tags)
    if tags and call.operation == "CreateSecret":
        yield Need("secretsmanager:TagResource", target, tags)


def _lambda(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    name = call.params["FunctionName"]
    target = name if name.startswith("arn:") else place.arn("lambda", call.region,
                                                            f"function:{name}")  # fmt: skip
    action = "lambda:InvokeFunction" if call.operation == "Invoke" else call.name
    yield Need(action, target)


BATCH_JOBS = "batch jobs"  # `made_tags_of`'s key for the tags the Batch jobs were submitted with


def made_tags_of(calls: Iterable[Call]) -> dict[str, tuple[tuple[str, str], ...]]:
    """The tags each EC2 launch template was made with, by name, and those every Batch job
    was submitted with (`BATCH_JOBS`, when all were submitted with the same), from the
    calls."""
    calls = list(calls)
    made = {
        str(c.params["LaunchTemplateName"]): tuple(
            tag for spec in c.params.get("TagSpecifications", []) for tag in _tags(spec["Tags"])
        )
        for c in calls
        if c.name == "ec2:CreateLaunchTemplate"
    }
    jobs = {_tags(c.params.get("tags")) for c in calls if c.name == "batch:SubmitJob"}
    if len(jobs) == 1:
        made[BATCH_JOBS] = jobs.pop()
    return made


def _ec2(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    """EC2 calls made directly (the networks are CloudFormation's): launch templates,
    whose ARNs carry an id AWS makes, so they are narrowed by their tags."""
    p, action = call.params, call.name
    target = place.arn("ec2", call.region, "launch-template/*")
    if call.operation == "CreateLaunchTemplate":
        tags = tuple(t for spec in p.get("TagSpecifications", []) for t in _tags(spec["Tags"]))
        yield Need(action, target, tags)
        if tags:  # tagging on create: CreateTags, within this create only
            yield Need("ec2:CreateTags", target, tags,
                       context=(("ec2:CreateAction", "CreateLaunchTemplate"),))  # fmt: skip
    elif call.operation in ("DeleteLaunchTemplate", "CreateLaunchTemplateVersion",
                            "ModifyLaunchTemplate"):  # fmt: skip
        yield Need(action, target)
    else:
        raise KeyError(f"no permission rule for {action}: add one to permissions.py")


def _logs(call: Call, place: Place, _: Mapping[str, Json]) -> Iterator[Need]:
    group = call.params.get("logGroupName", "*")
    yield Need(call.name, place.arn("logs", call.region, f"log-group:{group}:*"))


_HANDLERS: dict[str, Callable[[Call, Place, Mapping[str, Json]], Iterator[Need]]] = {
    "batch": _batch,
    "iam": _iam,
    "ecr": _ecr,
    "cloudformation": _cloudformation,
    "s3": _s3,
    "dynamodb": _dynamodb,
    "secretsmanager": _secretsmanager,
    "lambda": _lambda,
    "logs": _logs,
    "ec2": _ec2,
}


# ---- evaluating a policy --------------------------------------------------------------------


def _matches(pattern: str, value: str, *, case: bool) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Policy:
    """The Allow statements of a role (inline policies, already resolved to literals).
    Anything not allowed is denied, as IAM does; Deny statements are kept too."""

    statements: list[Json]
    principal: str = ""  # the aws:PrincipalArn it is checked as (a role's ARN), if known

    def of(self, principal: str) -> Policy:
        """The same statements, checked as `principal` (a boundary's, for one role)."""
        return Policy(self.statements, principal)

    def allows(self, need: Need) -> bool:
        if self.principal and "aws:PrincipalArn" not in dict(need.context):
            need = replace(need, context=(*need.context, ("aws:PrincipalArn", self.principal)))
        allowed = False
        for statement in self.statements:
            if not self._applies(statement, need):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
        return allowed

    def _applies(self, statement: Json, need: Need) -> bool:
        actions = _listed(statement.get("Action", []))
        if "NotAction" in statement:
            if any(_matches(a, need.action, case=False) for a in _listed(statement["NotAction"])):
                return False
        elif not any(_matches(a, need.action, case=False) for a in actions):
            return False
        resources = _listed(statement.get("Resource", "*"))
        if not any(_matches(r, need.resource, case=True) for r in resources):
            return False
        return _conditions(statement.get("Condition", {}), need)

    def denied(self, wanted: Iterable[Need]) -> list[Need]:
        return [n for n in wanted if not self.allows(n)]


def _string_test(operator: str, wanted: Any, value: str) -> bool:
    like = operator == "StringLike"
    return any(_matches(w, value, case=True) if like else w == value for w in _listed(wanted))


# condition keys a request may or may not carry (`Need.context`), besides tags
_CONTEXT_KEYS = frozenset({
    "iam:PermissionsBoundary", "iam:PolicyARN", "iam:AWSServiceName", "iam:PassedToService",
    "ec2:CreateAction", "ecs:CreateAction", "ecs:cluster", "aws:PrincipalArn", "aws:CalledVia",
    "autoscaling:LaunchTemplateVersionSpecified",
})  # fmt: skip


def _conditions(conditions: Json, need: Need) -> bool:
    """StringEquals/StringLike, their Not forms (and ...IfExists) on aws:RequestTag,
    aws:ResourceTag, aws:TagKeys and the need's context keys; any other condition key is
    taken as not met (an unknown is no grant). A Not test of a key the request does not
    have is met, as IAM has it."""
    request, resource = dict(need.request_tags), dict(need.resource_tags)
    context = dict(need.context)
    unknown = ["unknown"]  # a key this checker cannot tell: no grant

    def values_of(key: str) -> list[str] | None:
        if key.startswith("aws:RequestTag/"):
            got = request.get(key.split("/", 1)[1])
            return None if got is None else [got]
        if key.startswith("aws:ResourceTag/"):
            got = resource.get(key.split("/", 1)[1])
            return None if got is None else [got]
        if key == "aws:TagKeys":
            return list(request)
        if key in context:
            return [context[key]]
        if key in _CONTEXT_KEYS:  # a key IAM knows, absent from this request
            return None
        return unknown

    for operator, tests in conditions.items():
        if operator == "Null":  # "true": the key is absent; "false": present
            for key, wanted in tests.items():
                found = values_of(key)
                if found is unknown or (found is None) != (str(wanted).lower() == "true"):
                    return False
            continue
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        multi = base.startswith("ForAllValues:")
        any_value = base.startswith("ForAnyValue:")
        base = base.removeprefix("ForAllValues:").removeprefix("ForAnyValue:")
        base = {
            "ArnEquals": "StringEquals",
            "ArnLike": "StringLike",
            "ArnNotEquals": "StringNotEquals",
            "ArnNotLike": "StringNotLike",
        }.get(base, base)
        negated = base in ("StringNotEquals", "StringNotLike")
        base = base.replace("Not", "")
        if base not in ("StringEquals", "StringLike"):
            return False
        for key, wanted in tests.items():
            values = values_of(key)
            if values is unknown:
                return False
            if values is None or (multi and not values):
                if if_exists or multi or negated:
                    continue
                return False
            if negated:
                if any(_string_test(base, wanted, v) for v in values):
                    return False
            elif any_value:
                if not any(_string_test(base, wanted, v) for v in values):
                    return False
            elif not all(_string_test(base, wanted, v) for v in values):
                return False
    return True


# ---- resolving a template's policy ---------------------------------------------------------


def resolve(value: Any, values: Mapping[str, str]) -> Any:
    """A CloudFormation value with Ref, Fn::GetAtt (as `LOGICAL.Attribute`), Fn::Sub,
    Fn::Join and Fn::Split replaced from `values` (AWS::AccountId, AWS::Partition,
    AWS::Region, parameters...)."""
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return values[value["Ref"]]
    if set(value) == {"Fn::GetAtt"}:
        return values[".".join(value["Fn::GetAtt"])]
    if set(value) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m[1]], value["Fn::Sub"])
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(parts, values))
    if set(value) == {"Fn::Split"}:
        separator, text = value["Fn::Split"]
        return resolve(text, values).split(separator)
    return {k: resolve(v, values) for k, v in value.items()}


def role_policy(template: Json, role: str, values: Mapping[str, str]) -> Policy:
    """The policies of role `role` of `template`, resolved: its inline policies and the
    template's managed policies it holds (`ManagedPolicyArns` naming them by Ref)."""
    statements: list[Json] = []
    for document in role_documents(template, role).values():
        statements += resolve(document["Statement"], values)
    return Policy(statements)


def role_documents(template: Json, role: str) -> dict[str, Json]:
    """The policy documents of role `role` of `template`, unresolved, by name: its inline
    policies (``inline:NAME``) and the template's managed policies it holds (their
    logical ids); what IAM's size limits are counted on."""
    resources = template["Resources"]
    properties = resources[role]["Properties"]
    found = {
        f"inline:{p['PolicyName']}": p["PolicyDocument"] for p in properties.get("Policies", [])
    }
    for arn in properties.get("ManagedPolicyArns", []):
        lid = str(arn.get("Ref")) if isinstance(arn, dict) else ""
        if lid in resources and resources[lid]["Type"] == "AWS::IAM::ManagedPolicy":
            found[lid] = resources[lid]["Properties"]["PolicyDocument"]
    return found


def template_values(
    template: Json, *, region: str, account: str, partition: str = "aws", **more: str
) -> dict[str, str]:
    """What `resolve` needs for a host template deployed in `region` of `account`: the
    pseudo parameters, and the names and ARNs its tables, bucket, log groups and
    functions will have (`more` gives parameters and the bucket's generated name)."""
    place = Place(account, partition)
    values = {"AWS::AccountId": account, "AWS::Partition": partition, "AWS::Region": region,
              "AWS::URLSuffix": "amazonaws.com", **more}  # fmt: skip
    for lid, found in template.get("Resources", {}).items():
        kind, properties = found["Type"], found.get("Properties", {})
        if kind == "AWS::DynamoDB::Table":
            values[lid] = properties["TableName"]
            values[f"{lid}.Arn"] = place.arn("dynamodb", region, f"table/{properties['TableName']}")
        elif kind == "AWS::S3::Bucket":
            name = more.get(lid, f"{lid.lower()}-generated")
            values[lid] = name
            values[f"{lid}.Arn"] = f"arn:{partition}:s3:::{name}"
        elif kind == "AWS::Logs::LogGroup":
            name = properties["LogGroupName"]
            values[lid] = name
            values[f"{lid}.Arn"] = place.arn("logs", region, f"log-group:{name}:*")
        elif kind == "AWS::Lambda::Function":
            name = properties["FunctionName"]
            values[lid] = name
            values[f"{lid}.Arn"] = place.arn("lambda", region, f"function:{name}")
        elif kind == "AWS::IAM::Role":
            name = properties.get("RoleName", lid)
            values[f"{lid}.Arn"] = place.arn("iam", "", f"role/{name}")
        elif kind == "AWS::IAM::ManagedPolicy":
            values[lid] = place.arn("iam", "", f"policy/{properties['ManagedPolicyName']}")
        elif kind == "AWS::ApiGateway::RestApi":  # an id API Gateway makes: 10 characters
            values[lid] = more.get(lid, "a1b2c3d4e5")
    return values
