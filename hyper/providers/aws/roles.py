"""The IAM roles of a host's clusters and definitions (global: made once per change,
before the per-region resources; idempotent). See hyper/providers/aws/batch.py."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hyper.models import ClusterSpec, DefinitionSpec
from hyper.providers import Log
from hyper.providers.aws import grants
from hyper.providers.aws.calls import aws_client, error_code
from hyper.providers.aws.names import Names
from hyper.providers.aws.policies import INLINE_POLICIES_LIMIT
from hyper.providers.aws.waiting import ClientFactory, Patience, _aws_failed

# ---- IAM (global) ---------------------------------------------------------------------------

_AWS_POLICY = "arn:{partition}:iam::aws:policy/{name}"
_BATCH_SERVICE_POLICY = "service-role/AWSBatchServiceRole"
# the instances' own policy (`instance_policy`), in place of AWS's managed
# AmazonEC2ContainerServiceforEC2Role, whose ECS, ECR and Logs actions are on "*"
_INSTANCE_POLICY_NAME = "hyper-ecs-instance"
_SPOT_FLEET_POLICY = "service-role/AmazonEC2SpotFleetTaggingRole"
_IAM_REGION = "us-east-1"  # IAM is global; its client needs some region


@dataclass(frozen=True)
class ClusterRoles:
    """What a cluster's compute environments run as (ARNs). `fresh`: IAM made or changed
    one of them just now, so Batch may not see it yet (`wait_for_roles`)."""

    service_role: str | None  # None: Batch's service-linked role
    instance_profile: str
    spot_fleet_role: str | None = None
    fresh: bool = False


# what Batch and EC2 say while a new role or instance profile has not reached them
IAM_NOT_YET = re.compile(
    r"role|instance ?profile|not authori[sz]ed|assume|AccessDenied|iam", re.IGNORECASE
)


def _name_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def wait_for_roles(
    roles: ClusterRoles, log: Log, *, clients: ClientFactory = aws_client, patience: Patience
) -> None:
    """When `roles` are fresh: IAM's own waiters until it shows each role and the
    instance profile, then `patience.propagation` seconds for the other services."""
    if not roles.fresh:
        return
    iam = clients("iam", _IAM_REGION)
    config = {"Delay": max(1, int(patience.interval)), "MaxAttempts": 40}
    if patience.interval == 0:
        config["Delay"] = 0
    try:
        for role in (roles.service_role, roles.spot_fleet_role):
            if role:
                iam.get_waiter("role_exists").wait(RoleName=_name_of(role), WaiterConfig=config)
        iam.get_waiter("instance_profile_exists").wait(
            InstanceProfileName=_name_of(roles.instance_profile), WaiterConfig=config
        )
    except Exception as error:
        raise _aws_failed("waiting for IAM to show the cluster's roles", error) from None
    log(f"new IAM roles: giving them {patience.propagation:g} s to reach Batch and EC2")
    patience.sleep(patience.propagation)


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def _policy_arn(policy: str, partition: str) -> str:
    """A policy ARN as given, or the ARN of an AWS managed policy named `policy`."""
    if policy.startswith("arn:"):
        return policy
    return _AWS_POLICY.format(partition=partition, name=policy)


def _ensure_role(
    iam: Any,
    name: str,
    service: str,
    policies: Sequence[str],
    tags: Mapping[str, str],
    log: Log,
    inline: Mapping[str, dict[str, Any]] | None = None,
    changed: list[str] | None = None,
    boundary: str | None = None,
) -> str:
    """The role `name`, trusted by `service`, with exactly `policies` attached and the
    given inline policies; created when absent. Returns its ARN; a role created or
    given new policies is added to `changed`."""
    fresh = False
    bounded = {"PermissionsBoundary": boundary} if boundary else {}
    try:
        role = iam.get_role(RoleName=name)["Role"]
        arn = str(role["Arn"])
        current = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
        if boundary and current != boundary:
            iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
        had = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
        mark = {k: v for k, v in tags.items() if k == grants.GRANTS_TAG and had.get(k) != v}
        if mark:  # the grants it is given now (hyper.providers.aws.grants)
            iam.tag_role(RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in mark.items()])
    except Exception as error:
        if error_code(error) != "NoSuchEntity":
            raise _aws_failed(f"reading role {name}", error) from None
        arn = str(
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=_trust(service),
                Description=f"hyper: {service}",
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                **bounded,
            )["Role"]["Arn"]
        )
        log(f"created role {name}")
        fresh = True
    created = fresh
    partition = arn.split(":")[1]
    wanted = {_policy_arn(p, partition) for p in policies}
    attached = {
        p["PolicyArn"]
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        for p in page["AttachedPolicies"]
    }
    fresh = fresh or bool(wanted - attached)
    for policy in sorted(wanted - attached):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy)
        except Exception as error:
            raise _aws_failed(f"attaching {policy} to role {name}", error) from None
    for policy in sorted(attached - wanted):
        iam.detach_role_policy(RoleName=name, PolicyArn=policy)
    for policy_name, document in (inline or {}).items():
        iam.put_role_policy(
            RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )
    if inline is not None and not created:  # an inline policy no longer wanted goes
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page["PolicyNames"]:
                if policy_name not in inline:
                    iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    if fresh and changed is not None:
        changed.append(name)
    return arn


def _delete_role(iam: Any, name: str, log: Log, boundary: str | None = None) -> None:
    """Delete role `name` with its policies and instance profiles. With `boundary` (the
    host's), a role that lacks it (made before boundaries) is given it first: the boundary
    lets the host's roles detach and delete policies only of a role that holds it."""
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            return
        raise _aws_failed(f"reading role {name}", error) from None
    current = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    if boundary and current != boundary:
        iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for policy in page["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        for policy_name in page["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    for page in iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=name):
        for profile in page["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(
                InstanceProfileName=profile["InstanceProfileName"], RoleName=name
            )
            iam.delete_instance_profile(InstanceProfileName=profile["InstanceProfileName"])
    iam.delete_role(RoleName=name)
    log(f"deleted role {name}")


def _spot_fleet_needed(cluster: ClusterSpec) -> bool:
    return cluster.type == "SPOT" and cluster.allocation_strategy == "BEST_FIT"


def instance_policy(
    names: Names,
    partition: str,
    account: str,
    log_groups: Sequence[str] = (),
    ecs_clusters: Sequence[str] = (),
) -> dict[str, Any]:
    """What the ECS agent on a cluster's instances does (AWS's managed
    AmazonEC2ContainerServiceforEC2Role's actions), on the host's own resources only:
    the ECS clusters Batch made for the cluster's compute environments (`ecs_clusters`,
    the ecsClusterArn Batch reports for each) and their container instances, the host's
    image repositories, and the log groups its jobs write to (`log_groups`, the host's
    own: never Batch's default `/aws/batch/job`, which every team's jobs share; the
    awslogs driver makes the group in a region where it is missing). No
    ecs:CreateCluster: Batch makes the clusters.

    Without `ecs_clusters` (an environment not made yet, or not yet VALID: Batch reports
    its ECS cluster only then) the grant is by the name Batch gives those clusters,
    ``AWSBatch-COMPUTE_ENVIRONMENT-UUID``, which AWS documents no contract for: so it
    holds only from a cluster's first deploy until its environments are VALID, before
    any instance starts (they start at 0 vCPUs), and `narrow_instance_policy` then
    replaces it."""
    host = f"{names.prefix}-"  # every compute environment's name starts with it

    def arn(service: str, rest: str) -> str:
        return f"arn:{partition}:{service}:*:{account}:{rest}"

    if ecs_clusters:
        clusters = sorted(set(ecs_clusters))
        # container-instance/CLUSTER/ID, in the cluster's own region
        instances = [f"{c.replace(':cluster/', ':container-instance/', 1)}/*" for c in clusters]
    else:
        clusters = [arn("ecs", f"cluster/AWSBatch-{host}*")]
        instances = [arn("ecs", f"container-instance/AWSBatch-{host}*")]

    logs = [
        {"Sid": "JobLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [arn("logs", f"log-group:{group}{end}") for group in log_groups
                      for end in ("", ":*")]}
    ] if log_groups else []  # fmt: skip
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "HostEcsClusters", "Effect": "Allow",
             "Action": ["ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance",
                        "ecs:SubmitContainerStateChange", "ecs:SubmitTaskStateChange",
                        "ecs:SubmitAttachmentStateChanges"],
             "Resource": clusters},
            # these act on the container instance (ECS's service authorization reference),
            # whose ARN is container-instance/CLUSTER/ID
            {"Sid": "HostContainerInstances", "Effect": "Allow",
             "Action": ["ecs:Poll", "ecs:StartTelemetrySession",
                        "ecs:UpdateContainerInstancesState"],
             "Resource": instances},
            # an agent that registers with tags (ECS_CONTAINER_INSTANCE_TAGS, or tags
            # propagated from the instance) tags its container instance as it registers
            {"Sid": "TagContainerInstancesAsRegistered", "Effect": "Allow",
             "Action": ["ecs:TagResource"],
             "Resource": instances,
             "Condition": {"StringEquals": {"ecs:CreateAction": "RegisterContainerInstance"}}},
            {"Sid": "HostImages", "Effect": "Allow",
             "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage"],
             "Resource": [arn("ecr", f"repository/{names.prefix.rstrip('-')}/*")]},
            *logs,
            {"Sid": "NoNarrowerResource", "Effect": "Allow",
             "Action": ["ecs:DiscoverPollEndpoint", "ecr:GetAuthorizationToken",
                        "ec2:DescribeTags"],
             "Resource": "*"},
        ],
    }  # fmt: skip


def ensure_cluster_roles(
    cluster: ClusterSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    boundary: str | None = None,
    log_groups: Sequence[str] = (),
    ecs_clusters: Sequence[str] = (),
) -> ClusterRoles:
    """The roles a cluster's compute environments need, created when absent, each with
    the permissions `boundary` (the host's) when given. The instance role has
    `instance_policy` (with the host's `log_groups`, and its environments' `ecs_clusters`
    when all are known) and the cluster's iam_policies."""
    iam = clients("iam", _IAM_REGION)
    tags = names.tags(cluster=cluster.name)
    changed: list[str] = []
    # no Batch service role of the host's: compute environments take Batch's
    # service-linked role (AWSServiceRoleForBatch), which infrastructure updates need
    # (Batch User Guide, "Perform infrastructure updates") and no host boundary caps; a
    # host made before keeps its PREFIX-batch-service for the environments made with it
    instance_role = names.instance_role(cluster.name)
    caller = str(clients("sts", _IAM_REGION).get_caller_identity()["Arn"])
    partition, account = caller.split(":")[1], caller.split(":")[4]
    policy = instance_policy(names, partition, account, log_groups, ecs_clusters)
    _ensure_role(
        iam,
        instance_role,
        "ec2.amazonaws.com",
        list(cluster.iam_policies),
        {**tags, **grants.tag("clusters")},
        log,
        inline={_INSTANCE_POLICY_NAME: policy},
        changed=changed,
        boundary=boundary,
    )
    try:
        profile = iam.get_instance_profile(InstanceProfileName=instance_role)["InstanceProfile"]
    except Exception as error:
        if error_code(error) != "NoSuchEntity":
            raise _aws_failed(f"reading instance profile {instance_role}", error) from None
        profile = iam.create_instance_profile(
            InstanceProfileName=instance_role,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["InstanceProfile"]
        log(f"created instance profile {instance_role}")
    if not any(r["RoleName"] == instance_role for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(InstanceProfileName=instance_role, RoleName=instance_role)
        changed.append(instance_role)
    spot_fleet = None
    if _spot_fleet_needed(cluster):
        spot_fleet = _ensure_role(
            iam,
            names.spot_fleet_role(),
            "spotfleet.amazonaws.com",
            [_SPOT_FLEET_POLICY],
            names.tags(),
            log,
            changed=changed,
            boundary=boundary,
        )
    return ClusterRoles(None, str(profile["Arn"]), spot_fleet, fresh=bool(changed))


def narrow_instance_policy(
    cluster: ClusterSpec,
    names: Names,
    ecs_clusters: Sequence[str],
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    log_groups: Sequence[str] = (),
) -> None:
    """The cluster's instance role granted the ECS clusters of its compute environments
    (`ecs_clusters`, every region's, as Batch reports them) exactly, in place of the
    name pattern; kept as it is when one is not known, or when the exact list would pass
    IAM's inline limit for a role (then the pattern stays, and this says so)."""
    if not ecs_clusters or not all(ecs_clusters):
        log(f"cluster {cluster.name}: its ECS clusters are not all known yet; the instance "
            "role keeps the AWSBatch-<environment> name pattern")  # fmt: skip
        return
    partition, account = ecs_clusters[0].split(":")[1], ecs_clusters[0].split(":")[4]
    document = instance_policy(names, partition, account, log_groups, ecs_clusters)
    if len(json.dumps(document, separators=(",", ":"))) > INLINE_POLICIES_LIMIT:
        log(f"cluster {cluster.name}: {len(ecs_clusters)} ECS clusters pass IAM's inline "
            "limit; the instance role keeps the AWSBatch-<environment> name pattern")  # fmt: skip
        return
    name = names.instance_role(cluster.name)
    iam = clients("iam", _IAM_REGION)
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=_INSTANCE_POLICY_NAME)
        if current.get("PolicyDocument") == document:
            return
    except Exception as error:
        if error_code(error) != "NoSuchEntity":
            raise _aws_failed(f"reading role {name}", error) from None
    iam.put_role_policy(RoleName=name, PolicyName=_INSTANCE_POLICY_NAME,
                        PolicyDocument=json.dumps(document))  # fmt: skip
    log(f"role {name}: granted exactly the ECS clusters of its {len(ecs_clusters)} compute "
        "environments")  # fmt: skip


def delete_cluster_roles(
    cluster: ClusterSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    boundary: str | None = None,
) -> None:
    """The cluster's own instance role and profile, once no region uses them (given the
    host's `boundary` first where it lacks it: `_delete_role`). The service and spot fleet
    roles are shared by the host's clusters and stay."""
    _delete_role(clients("iam", _IAM_REGION), names.instance_role(cluster.name), log, boundary)


def delete_shared_roles(
    names: Names, log: Log, *, clients: ClientFactory = aws_client, boundary: str | None = None
) -> None:
    """The roles every cluster of the host shares (Batch's service role, the spot fleet
    role): once the host goes."""
    iam = clients("iam", _IAM_REGION)
    for name in (names.service_role(), names.spot_fleet_role(), names.execution_role()):
        _delete_role(iam, name, log, boundary)


# What a job's role never does, whatever its definition's policies allow (an owner may
# allow AdministratorAccess): the host's functions, API, tables, repositories, Batch and
# bucket are the boundary's (ControlPlane); these reach the same keys by other ways.
JOB_LIMITS = "hyper-job-limits"
# the ECS container agent's actions: a principal allowed ecs:Poll on a container instance
# of the clusters Batch made for the host is handed that instance's task payloads, with
# other workers' execution-role credentials (so the worker key) and their tokens
ECS_AGENT_ACTIONS = [
    "ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance",
    "ecs:DiscoverPollEndpoint", "ecs:Poll", "ecs:StartTelemetrySession",
    "ecs:PutSystemLogEvents", "ecs:SubmitTaskStateChange", "ecs:SubmitContainerStateChange",
    "ecs:SubmitAttachmentStateChanges", "ecs:UpdateContainerInstancesState",
    "ecs:UpdateContainerAgent", "ecs:ExecuteCommand",
]  # fmt: skip
# the registry's own settings, on "*": a registry policy or a replication rule lets
# another account write the host's repositories (mutable tags: a new :latest runs in
# other definitions' workers)
ECR_REGISTRY_ACTIONS = [
    "ecr:PutRegistryPolicy", "ecr:DeleteRegistryPolicy", "ecr:PutReplicationConfiguration",
    "ecr:CreatePullThroughCacheRule", "ecr:UpdatePullThroughCacheRule",
    "ecr:CreateRepositoryCreationTemplate", "ecr:UpdateRepositoryCreationTemplate",
]  # fmt: skip


# what runs commands on machines chosen by tag or by a document's targets, not one by one:
# no tag condition can keep the host's machines out of them (a job has no need of them)
FLEET_COMMAND_ACTIONS = [
    "ssm:CreateAssociation", "ssm:CreateAssociationBatch", "ssm:UpdateAssociation",
    "ssm:StartAutomationExecution", "ssm:StartChangeRequestExecution",
    "ssm:RegisterTaskWithMaintenanceWindow", "ssm:UpdateMaintenanceWindowTask",
    "ssm:RegisterTargetWithMaintenanceWindow", "ssm:UpdateMaintenanceWindowTarget",
]  # fmt: skip


# what reaches into an instance or its volumes, or changes what makes them (the machines
# and launch templates carry the host's tag, launch_templates.py)
HOST_MACHINE_ACTIONS = [
    "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CreateStoreImageTask",
    "ec2:ModifyInstanceAttribute", "ec2:StopInstances", "ec2:StartInstances",
    "ec2:AttachVolume", "ec2:DetachVolume", "ec2:CreateReplaceRootVolumeTask",
    "ec2:GetConsoleOutput", "ec2:GetConsoleScreenshot", "ec2-instance-connect:*",
    "ssm:SendCommand", "ssm:StartSession",
    # the tag itself (untagged, a volume would be open), and the launch templates that
    # make the machines
    "ec2:CreateTags", "ec2:DeleteTags", "ec2:DeleteLaunchTemplate",
    "ec2:DeleteLaunchTemplateVersions",
    # the metadata service's settings (its IPv6 endpoint turned on, or the agent's
    # credentials cut off) and the instance's role; and what only stops the host's work
    "ec2:ModifyInstanceMetadataOptions", "ec2:DisassociateIamInstanceProfile",
    "ec2:ReplaceIamInstanceProfileAssociation", "ec2:TerminateInstances",
    "ec2:RebootInstances", "ec2:ModifyVolume", "ec2:SendDiagnosticInterrupt",
    "ec2:AttachNetworkInterface",
]  # fmt: skip
# what machines are launched from later, and what launches them, anywhere: AWS checks no
# iam:PassRole when an Auto Scaling group that follows $Latest or $Default launches a new
# launch template version, so a version naming the host's instance profile (in a template
# of the job's own or anyone's) would start a machine with its role; whether EC2 Fleet
# checks it for a template naming one, AWS does not say; a launch configuration made from
# a running worker takes its role too; and an AMI named as a cluster's
# main_region_image_name (the newest of the name is taken at each deploy) would boot the
# host's next workers
LAUNCH_SOURCE_ACTIONS = [
    "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
    "ec2:CreateFleet", "ec2:ModifyFleet", "ec2:ModifySpotFleetRequest",
    "autoscaling:StartInstanceRefresh",
    "autoscaling:CreateLaunchConfiguration", "ec2:RegisterImage", "ec2:CopyImage",
    "ec2:CreateImage", "ec2:ImportImage", "ec2:CreateRestoreImageTask",
]  # fmt: skip
# what Batch launches and launches from carries this tag: its machines, its Auto Scaling
# groups and Spot Fleet requests, and the launch template it makes of the cluster's (with
# the instance role in it)
BATCH_TAG = "aws:ResourceTag/AWSBatchServiceTag"


def job_limits(names: Names) -> dict[str, Any]:
    """The inline policy every job role holds: no ECS agent's actions anywhere; nothing
    on the ECS clusters Batch made for the host (a task of its own there runs as root on
    the instance's network, where the metadata service gives the instance role); nothing
    that reaches into the host's machines or what Batch launched, no new launch sources
    (templates, versions, fleets, AMIs), nor commands sent to machines by tag; no
    registry-wide ECR settings; and none of the host's stacks, API keys, usage plans and
    log groups (each would stop or slow the host)."""
    host = names.prefix.rstrip("-")
    ecs = f"arn:*:ecs:*:*:{{}}/AWSBatch-{host}--*"
    clusters = ecs.format("cluster")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "NotAnEcsAgent", "Effect": "Deny", "Action": ECS_AGENT_ACTIONS,
             "Resource": "*"},
            {"Sid": "NotOnTheHostsClusters", "Effect": "Deny", "Action": "ecs:*",
             "Resource": [clusters, ecs.format("container-instance"), ecs.format("task"),
                          ecs.format("service")]},
            # RunTask and StartTask are checked against the task definition, with the
            # cluster in ecs:cluster
            {"Sid": "NoTasksOnTheHostsClusters", "Effect": "Deny", "Action": "ecs:*",
             "Resource": "*", "Condition": {"ArnLike": {"ecs:cluster": clusters}}},
            # its machines: a snapshot of a worker's volume, an image of it or a change of
            # its user data would give what its containers hold (the worker key)
            {"Sid": "NotTheHostsMachines", "Effect": "Deny", "Action": HOST_MACHINE_ACTIONS,
             "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/hyper:host": host}}},
            {"Sid": "NoCommandsByTag", "Effect": "Deny", "Action": FLEET_COMMAND_ACTIONS,
             "Resource": "*"},
            # what Batch launched and launches from, any Batch environment's (the tag's
            # value is Batch's own), whatever other tags a version or a group put on it
            {"Sid": "NotWhatBatchLaunches", "Effect": "Deny",
             "Action": [*HOST_MACHINE_ACTIONS, "ec2:CancelSpotFleetRequests"],
             "Resource": "*", "Condition": {"Null": {BATCH_TAG: "false"}}},
            {"Sid": "NotBatchsGroups", "Effect": "Deny", "NotAction": "autoscaling:Describe*",
             "Resource": f"arn:*:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/"
                         f"AWSBatch-{host}--*"},
            {"Sid": "NotBatchsTaggedGroups", "Effect": "Deny",
             "NotAction": "autoscaling:Describe*",
             "Resource": "arn:*:autoscaling:*:*:autoScalingGroup:*",
             "Condition": {"Null": {BATCH_TAG: "false"}}},
            {"Sid": "NoNewLaunchSources", "Effect": "Deny", "Action": LAUNCH_SOURCE_ACTIONS,
             "Resource": "*"},
            # nor a group made from a running worker (its InstanceId, no launch template)
            {"Sid": "NoGroupsFromAMachine", "Effect": "Deny",
             "Action": "autoscaling:CreateAutoScalingGroup", "Resource": "*",
             "Condition": {"Null": {"autoscaling:LaunchTemplateVersionSpecified": "true"}}},
            {"Sid": "NotTheRegistrysSettings", "Effect": "Deny",
             "Action": ECR_REGISTRY_ACTIONS, "Resource": "*"},
            {"Sid": "NotTheHostsStacksKeysAndLogs", "Effect": "Deny",
             "Action": ["cloudformation:*", "apigateway:*", "logs:Delete*", "logs:Put*Policy",
                        "logs:PutSubscriptionFilter", "logs:AssociateKmsKey",
                        "logs:PutTransformer"],
             "Resource": [f"arn:*:cloudformation:*:*:stack/{host}/*",
                          f"arn:*:cloudformation:*:*:stack/{host}--*/*",
                          "arn:*:apigateway:*::/apikeys*", "arn:*:apigateway:*::/usageplans*",
                          f"arn:*:logs:*:*:log-group:*{host}*"]},
        ],
    }  # fmt: skip


def ensure_job_role(
    definition: DefinitionSpec,
    names: Names,
    secret_arn: str | None,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    boundary: str | None = None,
) -> str:
    """The job role of a definition's workers: what the definition's iam_policies allow
    (within the permissions `boundary`, when given) but what job_limits denies, and with
    a `secret_arn` reading that secret (a host made before worker tokens); no other
    inline policy."""
    inline = {JOB_LIMITS: job_limits(names)}
    if secret_arn:
        inline["hyper-api-key"] = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": secret_arn}
            ],
        }  # fmt: skip
    return _ensure_role(
        clients("iam", _IAM_REGION),
        names.job_role(definition.name),
        "ecs-tasks.amazonaws.com",
        definition.iam_policies,
        {**names.tags(definition=definition.name), **grants.tag("definitions")},
        log,
        inline=inline,
        boundary=boundary,
    )


def execution_policy(
    names: Names, worker_secret_arn: str, log_groups: Sequence[str] = ()
) -> dict[str, Any]:
    """The execution role's policy: the ECS agent reads the worker key's secret with it
    as it starts a worker's container (the definitions' ``secrets``). An agent given an
    execution role also pulls the task's image and writes its awslogs with it, so it may
    do those on the host's own repositories and `log_groups` (as the instance role), and
    nothing else."""
    partition, account = worker_secret_arn.split(":")[1], worker_secret_arn.split(":")[4]
    agent = [
        s for s in instance_policy(names, partition, account, log_groups)["Statement"]
        if s["Sid"] in ("HostImages", "JobLogs")
    ]  # fmt: skip
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "WorkerKeyOnly", "Effect": "Allow",
             "Action": "secretsmanager:GetSecretValue", "Resource": worker_secret_arn},
            *agent,
            {"Sid": "NoNarrowerResource", "Effect": "Allow",
             "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        ],
    }  # fmt: skip


def ensure_execution_role(
    names: Names,
    worker_secret_arn: str,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    boundary: str | None = None,
    log_groups: Sequence[str] = (),
) -> str:
    """The execution role of the host's job definitions (shared by them), with
    `execution_policy`. No job gets its credentials."""
    return _ensure_role(
        clients("iam", _IAM_REGION),
        names.execution_role(),
        "ecs-tasks.amazonaws.com",
        [],
        names.tags(),
        log,
        inline={"hyper-worker-key": execution_policy(names, worker_secret_arn, log_groups)},
        boundary=boundary,
    )


def delete_job_role(
    definition: DefinitionSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    boundary: str | None = None,
) -> None:
    _delete_role(clients("iam", _IAM_REGION), names.job_role(definition.name), log, boundary)
