"""Creating, updating and deleting CloudFormation stacks, and reading their outputs.

``deploy_stack`` creates a stack or updates it (no change is not an error), waits for
it to settle while logging each resource's progress, and returns its outputs; when it
fails, ``DeployFailed`` carries the reasons the failing resources gave. Waiting polls
with back-off (0, 2, 4, 8, then every 15 s) and gives up after ``timeout`` seconds.

A stack left by a failed creation (ROLLBACK_COMPLETE) cannot be updated: it is
deleted, then created again. Templates above 51,200 bytes, the most CloudFormation
takes inline, go through S3 (``template_bucket``, in the stack's region).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from hyper.errors import DeployFailed, NotFound, UsageError
from hyper.providers.aws.calls import aws_client, aws_errors, error_message, expect_bucket_owner
from hyper.providers.aws.templates import ExistingVpc, Template, physical_name, resource_prefix

Log = Callable[[str], None]

MAX_TEMPLATE_BODY = 51_200  # bytes CloudFormation takes in TemplateBody
NO_UPDATES = "No updates are to be performed"
DEPLOYED = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
# what is left of a stack whose creation failed: it can only be deleted
DEAD = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "REVIEW_IN_PROGRESS"}
CANCELLED = ("Resource creation cancelled", "Resource update cancelled")
DEFAULT_TIMEOUT = 3600.0
POLL_DELAYS = (0.0, 2.0, 4.0, 8.0)
POLL_STEADY = 15.0


def host_stack_name(host_name: str) -> str:
    return physical_name(host_name, limit=128)


def region_stack_name(host_name: str, region: str) -> str:
    """``hyper-HOST--region-REGION``: under the host's resource prefix, which no other
    host's names start with (templates.resource_prefix)."""
    return f"{resource_prefix(host_name)}-region-{region}"


def deploy_stack(
    name: str,
    template: Template,
    region: str,
    parameters: dict[str, str] | None = None,
    log: Log = print,
    *,
    template_bucket: str | None = None,
    tags: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    bucket_owner: str | None = None,
) -> dict[str, str]:
    """Create or update stack `name` in `region` from `template`; its outputs."""
    cf = aws_client("cloudformation", region)
    source = _template_source(name, template, region, template_bucket, bucket_owner)
    request: dict[str, Any] = {
        "StackName": name,
        **source,
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    }
    if parameters:
        request["Parameters"] = [
            {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
        ]
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    with aws_errors(f"stack {name}"):
        stack = describe_stack(name, region)
        if stack is not None and stack["StackStatus"].endswith("_IN_PROGRESS"):
            log(f"stack {name} is {stack['StackStatus']}; waiting for it first")
            since = _latest_event(cf, stack["StackId"])
            stack, _ = _wait(cf, stack["StackId"], since, log, timeout)
        if stack is not None and stack["StackStatus"] in DEAD:
            log(f"stack {name} is {stack['StackStatus']} from a failed creation; deleting it")
            _delete(cf, name, stack, log, timeout)
            stack = None
        if stack is not None and stack["StackStatus"].endswith("_FAILED"):
            raise DeployFailed(
                f"stack {name} is {stack['StackStatus']}: repair or delete it in the "
                "CloudFormation console first"
            )
        if stack is None:
            log(f"creating stack {name} in {region}")
            try:
                stack_id = cf.create_stack(**request, OnFailure="ROLLBACK")["StackId"]
            except ClientError as error:
                raise DeployFailed(f"stack {name}: {error_message(error)}") from None
            since = None
        else:
            stack_id = stack["StackId"]
            since = _latest_event(cf, stack_id)
            try:
                cf.update_stack(**request)
            except ClientError as error:
                if NO_UPDATES in error_message(error):
                    log(f"stack {name}: no changes")
                    return outputs_of(stack)
                raise DeployFailed(f"stack {name}: {error_message(error)}") from None
            log(f"updating stack {name} in {region}")
        final, events = _wait(cf, stack_id, since, log, timeout)
    status = final["StackStatus"]
    if status not in DEPLOYED:
        raise DeployFailed(_failure(name, final, events))
    log(f"stack {name}: {status}")
    return outputs_of(final)


def delete_stack(
    name: str,
    region: str,
    log: Log = print,
    *,
    empty_buckets: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Delete stack `name` and wait until it is gone. CloudFormation deletes only empty
    buckets: with `empty_buckets`, the stack's buckets are emptied first."""
    cf = aws_client("cloudformation", region)
    with aws_errors(f"stack {name}"):
        stack = describe_stack(name, region)
        if stack is None:
            log(f"stack {name}: not there")
            return
        if empty_buckets:
            _empty_buckets(cf, stack["StackId"], region, log)
        _delete(cf, name, stack, log, timeout)


def stack_outputs(name: str, region: str) -> dict[str, str]:
    with aws_errors(f"stack {name}"):
        stack = describe_stack(name, region)
    if stack is None:
        raise NotFound(f"no stack {name} in {region}")
    return outputs_of(stack)


def describe_stack(name: str, region: str) -> dict[str, Any] | None:
    """The stack as DescribeStacks gives it, or None when there is none by that name."""
    cf = aws_client("cloudformation", region)
    with aws_errors(f"stack {name}"):
        try:
            stacks = cf.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            if "does not exist" in error_message(error):
                return None
            raise
    return stacks[0] if stacks else None


def deployed_template(name: str, region: str) -> dict[str, Any] | None:
    """The template stack `name` was last deployed with (None when there is no stack)."""
    cf = aws_client("cloudformation", region)
    with aws_errors(f"stack {name}"):
        try:
            body = cf.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
        except ClientError as error:
            if "does not exist" in error_message(error):
                return None
            raise
    return dict(body) if isinstance(body, dict) else dict(json.loads(body))


def parameters_of(stack: dict[str, Any]) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}


def outputs_of(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}


def lookup_vpc(
    vpc_id: str, region: str, *, zones: int = 3, subnets: Sequence[str] = ()
) -> ExistingVpc:
    """What a region stack needs to know of an existing VPC: its range, the `subnets`
    given for workers (and interface endpoints), or else one subnet in each of up to
    `zones` availability zones, private ones (no public address on launch) first, then
    the roomiest; all its route tables."""
    ec2 = aws_client("ec2", region)
    with aws_errors(f"VPC {vpc_id}"):
        try:
            vpcs = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "InvalidVpcID.NotFound":
                raise
            vpcs = []
        if not vpcs:
            raise NotFound(f"no VPC {vpc_id} in {region}")
        where = [{"Name": "vpc-id", "Values": [vpc_id]}]
        in_vpc = _all(ec2, "describe_subnets", "Subnets", Filters=where)
        tables = _all(ec2, "describe_route_tables", "RouteTables", Filters=where)
    strangers = sorted(set(subnets) - {s["SubnetId"] for s in in_vpc})
    if strangers:
        raise UsageError(f"subnet {strangers[0]} is not in {vpc_id} ({region})")
    best: dict[str, dict[str, Any]] = {}
    for subnet in sorted(
        in_vpc,
        key=lambda s: (
            bool(s.get("MapPublicIpOnLaunch")),
            -int(s.get("AvailableIpAddressCount", 0)),
            s["SubnetId"],
        ),
    ):
        best.setdefault(subnet["AvailabilityZone"], subnet)
    chosen = list(subnets) or [best[zone]["SubnetId"] for zone in sorted(best)[:zones]]
    return ExistingVpc(
        vpc_id=vpc_id,
        subnet_ids=chosen,
        route_table_ids=sorted(t["RouteTableId"] for t in tables),
        cidr=vpcs[0].get("CidrBlock"),
    )


def describe_subnets(vpc_id: str, region: str) -> list[str]:
    """The VPC's subnets as the create-host walkthrough offers them, in the order
    `lookup_vpc` prefers: "subnet-... (zone, range, private|public)"."""
    with aws_errors(f"VPC {vpc_id}"):
        found = _all(
            aws_client("ec2", region), "describe_subnets", "Subnets",
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}],
        )  # fmt: skip
    return [
        f"{s['SubnetId']} ({s['AvailabilityZone']}, {s.get('CidrBlock', '?')}, "
        f"{'public' if s.get('MapPublicIpOnLaunch') else 'private'})"
        for s in sorted(found, key=lambda s: (bool(s.get("MapPublicIpOnLaunch")), s["SubnetId"]))
    ]


def failure_reasons(events: list[dict[str, Any]]) -> list[str]:
    """What the resources that failed said, oldest first, without the resources that were
    only cancelled because another failed; the stack's own reason when none did."""
    reasons: list[str] = []
    stack_reasons: list[str] = []
    for event in events:
        status = event.get("ResourceStatus", "")
        reason = event.get("ResourceStatusReason") or ""
        if not status.endswith("FAILED") or not reason or reason.startswith(CANCELLED):
            continue
        line = f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}): {reason}"
        target = stack_reasons if event.get("ResourceType") == _STACK else reasons
        if line not in target:
            target.append(line)
    return reasons or stack_reasons


# inside --------------------------------------------------------------------------------

_STACK = "AWS::CloudFormation::Stack"


def _template_source(
    name: str, template: Template, region: str, bucket: str | None, owner: str | None = None
) -> dict[str, str]:
    """The template inline, or uploaded to `bucket` (whose owner must be `owner`)."""
    body = json.dumps(template, separators=(",", ":"))
    size = len(body.encode())
    if size <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body}
    if bucket is None:
        raise DeployFailed(
            f"stack {name}: its template is {size:,} bytes, above CloudFormation's "
            f"{MAX_TEMPLATE_BODY:,} inline; it needs a bucket to go through"
        )
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    key = f"hyper/templates/{name}-{digest}.json"
    with aws_errors(f"stack {name}: uploading its template to s3://{bucket}"):
        owned = {"ExpectedBucketOwner": owner} if owner else {}
        aws_client("s3", region).put_object(
            Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json", **owned
        )
    return {"TemplateURL": f"https://{bucket}.s3.{region}.amazonaws.com/{key}"}


def _delays() -> Iterator[float]:
    yield from POLL_DELAYS
    while True:
        yield POLL_STEADY


def _wait(
    cf: Any, stack_id: str, since: str | None, log: Log, timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until the stack is no longer in progress; the stack, and the events since
    event `since` (all of them when None), oldest first."""
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    last = since
    for delay in _delays():
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        stack = cf.describe_stacks(StackName=stack_id)["Stacks"][0]
        for event in _events_after(cf, stack_id, last):
            events.append(event)
            last = event["EventId"]
            log(_event_line(event))
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            return stack, events
        if time.monotonic() >= deadline:
            raise DeployFailed(
                f"stack {stack['StackName']} is still {status} after {timeout:.0f} s; "
                "see the CloudFormation console"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _events_after(cf: Any, stack_id: str, since: str | None) -> list[dict[str, Any]]:
    """The stack's events newer than event `since`, oldest first."""
    newer: list[dict[str, Any]] = []
    pages = cf.get_paginator("describe_stack_events").paginate(StackName=stack_id)
    for page in pages:
        for event in page["StackEvents"]:  # newest first
            if event["EventId"] == since:
                return newer[::-1]
            newer.append(event)
    return newer[::-1]


def _latest_event(cf: Any, stack_id: str) -> str | None:
    events = cf.describe_stack_events(StackName=stack_id)["StackEvents"]
    return events[0]["EventId"] if events else None


def _event_line(event: dict[str, Any]) -> str:
    line = f"{event['ResourceStatus']} {event['LogicalResourceId']} ({event['ResourceType']})"
    reason = event.get("ResourceStatusReason")
    return f"{line}: {reason}" if reason else line


def _failure(name: str, stack: dict[str, Any], events: list[dict[str, Any]]) -> str:
    reasons = failure_reasons(events) or [stack.get("StackStatusReason") or "no reason given"]
    return f"stack {name} {stack['StackStatus']}: " + "; ".join(reasons)


def _delete(cf: Any, name: str, stack: dict[str, Any], log: Log, timeout: float) -> None:
    stack_id = stack["StackId"]
    since = _latest_event(cf, stack_id)
    log(f"deleting stack {name}")
    cf.delete_stack(StackName=stack_id)
    final, events = _wait(cf, stack_id, since, log, timeout)
    if final["StackStatus"] != "DELETE_COMPLETE":
        raise DeployFailed(_failure(name, final, events))
    log(f"stack {name}: deleted")


def _empty_buckets(cf: Any, stack_id: str, region: str, log: Log) -> None:
    # the stack's account owns its buckets: a same-named bucket elsewhere is not emptied
    s3 = expect_bucket_owner(aws_client("s3", region), stack_id.split(":")[4])
    resources = _all(cf, "list_stack_resources", "StackResourceSummaries", StackName=stack_id)
    for found in resources:
        bucket = found.get("PhysicalResourceId")
        if found.get("ResourceType") != "AWS::S3::Bucket" or not bucket:
            continue
        try:
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
            removed = 0
            for page in pages:
                objects = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                ]
                if objects:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
                    removed += len(objects)
        except ClientError as error:
            if "NoSuchBucket" in str(error):
                continue
            raise
        log(f"emptied bucket {bucket} ({removed} objects)")


def _all(client: Any, operation: str, key: str, **arguments: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in client.get_paginator(operation).paginate(**arguments):
        found.extend(page.get(key, []))
    return found
