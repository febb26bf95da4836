"""Clusters, queues, images and definitions on AWS, one region at a time.

What each resource is in a region (every name comes from `Names`, under the host's prefix):

- cluster     ``compute_envs`` managed Batch compute environments ``PREFIX-CLUSTER-ce1..3``
              sharing the cluster's max vCPUs (SPOT or ON_DEMAND, in the region's subnets
              and security group), and ONE job queue ``PREFIX-CLUSTER`` in front of them,
              in that order. An update sets max vCPUs and state; a delete disables and
              deletes the job queue, then the compute environments.
- queue       nothing of its own: its workers are array jobs on its cluster's job queue
              (`check_queue` says whether that queue is there).
- image       an ECR repository ``prefix/image`` per region. `build_and_push` and
              `push_local_image` use docker when a docker engine answers (`docker info`).
              The image's URI is kept with ``_REGION_`` for the region, as definitions
              write it.
- definition  a Batch job definition ``PREFIX-DEFINITION`` per region whose container
              runs the worker agent (``start.sh`` of the worker image, see
              example-worker-image/), with a job role ``PREFIX-DEFINITION-job``.

IAM roles are global: the ``ensure_*_role(s)`` functions run once per change, before the
per-region ones, and are idempotent. They are created when absent, each with the least
AWS documents for its service:

- ``PREFIX-batch-service``   (batch.amazonaws.com) AWS managed ``AWSBatchServiceRole``;
- ``PREFIX-CLUSTER-instance`` (ec2.amazonaws.com) and its instance profile: what the ECS
  agent does (``AmazonEC2ContainerServiceforEC2Role``'s actions) on the host's own ECS
  clusters, repositories and log groups (`instance_policy`), plus the cluster's
  iam_policies;
- ``PREFIX-spot-fleet``       (spotfleet.amazonaws.com) ``AmazonEC2SpotFleetTaggingRole``,
  only for SPOT clusters with allocation strategy BEST_FIT (the others need none);
- ``PREFIX-DEFINITION-job``  (ecs-tasks.amazonaws.com): an inline policy allowing
  ``secretsmanager:GetSecretValue`` on the host's API-key secret and nothing else, plus
  the definition's iam_policies.

A `ClusterRoles` of ARNs made elsewhere may be passed instead of `ensure_cluster_roles`.

The API key never travels in a job definition or a submitted job: the job definition sets
``HYPER_API_KEY`` to the *ARN* of the host's secret, and the worker (``python -m
hyper.worker``) reads the secret's value with its job role when it sees an ARN there.

Every AWS call goes through `ClientFactory` (plain boto3 clients by default, imported
lazily), so moto, a moto server (``AWS_ENDPOINT_URL``) or a Stubber can stand in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyper.commands import run
from hyper.errors import CommandFailed, DeployFailed, UsageError, one_line
from hyper.models import ClusterSpec, DefinitionSpec, ImageSpec, QueueSpec
from hyper.providers import Log
from hyper.providers.aws.calls import aws_client, error_code, error_message

ClientFactory = Callable[[str, str], Any]  # (service, region) -> a boto3 client


# ---- names ----------------------------------------------------------------------------------

_BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_IAM_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]+")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


def _fit(wanted: str, pattern: re.Pattern[str], limit: int, clean: Callable[[str], str]) -> str:
    """`wanted` when AWS takes it as is; otherwise a cleaned, shortened form with a hash of
    the wanted name, so that two hyper names never meet in one AWS name."""
    if pattern.fullmatch(wanted) and len(wanted) <= limit:
        return wanted
    digest = hashlib.sha1(wanted.encode()).hexdigest()[:8]
    return f"{clean(wanted)[: limit - 9]}-{digest}"


@dataclass(frozen=True)
class Names:
    """AWS names of a host's resources: everything starts with the host's prefix."""

    prefix: str = "hyper"

    def _batch(self, *parts: str) -> str:
        return _fit(
            "-".join((self.prefix, *parts)),
            _BATCH_NAME,
            128,
            lambda s: re.sub(r"[^A-Za-z0-9_-]", "_", s),
        )

    def _iam(self, *parts: str) -> str:
        return _fit(
            "-".join((self.prefix, *parts)),
            _IAM_NAME,
            64,
            lambda s: re.sub(r"[^A-Za-z0-9+=,.@_-]", "_", s),
        )

    def compute_env(self, cluster: str, number: int) -> str:
        return self._batch(cluster, f"ce{number}")

    def job_queue(self, cluster: str) -> str:
        return self._batch(cluster)

    def launch_template(self, cluster: str) -> str:
        """The EC2 launch template of a cluster's instances (one per region)."""
        return self._batch(cluster, "instances")

    def job_definition(self, definition: str) -> str:
        return self._batch(definition)

    def job_name(self, queue: str, definition: str) -> str:
        return self._batch(queue, definition)

    def worker_job_name(self, queue: str, definition: str, workers: str) -> str:
        """The Batch job of workers `workers` (an array's prefix, or one worker's id): any
        container of the host finds it by this name (ListJobs, JOB_NAME)."""
        return self._batch(queue, definition, workers)

    def repository(self, image: str) -> str:
        def clean(wanted: str) -> str:
            parts = (re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in wanted.split("/"))
            return "/".join(p or "x" for p in parts)

        return _fit(f"{self.prefix.rstrip('-')}/{image}", _REPOSITORY, 256, clean)

    def service_role(self) -> str:
        return self._iam("batch-service")

    def instance_role(self, cluster: str) -> str:
        return self._iam(cluster, "instance")

    def spot_fleet_role(self) -> str:
        return self._iam("spot-fleet")

    def job_role(self, definition: str) -> str:
        return self._iam(definition, "job")

    def tags(self, **more: str) -> dict[str, str]:
        host = self.prefix.rstrip("-")
        return {"hyper:host": host, **{f"hyper:{k}": v for k, v in more.items()}}


# ---- waiting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patience:
    """How long to wait for Batch to settle a change, and how often to look; and, after
    IAM made or changed a role, how long to give it to reach Batch and EC2 (IAM is
    eventually consistent: a compute environment made with a role seconds old is often
    refused, or settles INVALID) and how many times to try again."""

    timeout: float = 900.0
    interval: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    propagation: float = 10.0  # after IAM's waiters saw the roles; doubled per retry
    attempts: int = 4  # creations of a compute environment refused while IAM propagates


def _wait(what: str, done: Callable[[], bool], patience: Patience) -> None:
    deadline = patience.clock() + patience.timeout
    while not done():
        if patience.clock() > deadline:
            raise DeployFailed(f"gave up waiting after {patience.timeout:.0f} s for {what}")
        patience.sleep(patience.interval)


def _aws_failed(what: str, error: Exception) -> DeployFailed:
    return DeployFailed(one_line(f"{what}: {error}"))


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

    service_role: str
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
    if fresh and changed is not None:
        changed.append(name)
    return arn


def _delete_role(iam: Any, name: str, log: Log) -> None:
    try:
        iam.get_role(RoleName=name)
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            return
        raise _aws_failed(f"reading role {name}", error) from None
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
    names: Names, partition: str, account: str, log_groups: Sequence[str] = ()
) -> dict[str, Any]:
    """What the ECS agent on a cluster's instances does (AWS's managed
    AmazonEC2ContainerServiceforEC2Role's actions), on the host's own resources only:
    the ECS clusters Batch makes for the host's compute environments (named
    ``AWSBatch-COMPUTE_ENVIRONMENT-...``) and their container instances, the host's image
    repositories, and the log groups its jobs write to (Batch's default one and
    `log_groups`). No ecs:CreateCluster: Batch makes the clusters."""
    host = f"{names.prefix}-"  # every compute environment's name starts with it

    def arn(service: str, rest: str) -> str:
        return f"arn:{partition}:{service}:*:{account}:{rest}"

    groups = [DEFAULT_LOG_GROUP, *log_groups]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "HostEcsClusters", "Effect": "Allow",
             "Action": ["ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance",
                        "ecs:SubmitContainerStateChange", "ecs:SubmitTaskStateChange",
                        "ecs:SubmitAttachmentStateChanges", "ecs:UpdateContainerInstancesState"],
             "Resource": [arn("ecs", f"cluster/AWSBatch-{host}*")]},
            {"Sid": "HostContainerInstances", "Effect": "Allow",
             "Action": ["ecs:Poll", "ecs:StartTelemetrySession"],
             "Resource": [arn("ecs", f"container-instance/AWSBatch-{host}*")]},
            {"Sid": "HostImages", "Effect": "Allow",
             "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage"],
             "Resource": [arn("ecr", f"repository/{names.prefix.rstrip('-')}/*")]},
            {"Sid": "JobLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [arn("logs", f"log-group:{group}:*") for group in groups]},
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
) -> ClusterRoles:
    """The roles a cluster's compute environments need, created when absent, each with
    the permissions `boundary` (the host's) when given. The instance role has
    `instance_policy` (with the host's `log_groups`) and the cluster's iam_policies."""
    iam = clients("iam", _IAM_REGION)
    tags = names.tags(cluster=cluster.name)
    changed: list[str] = []
    service = _ensure_role(
        iam,
        names.service_role(),
        "batch.amazonaws.com",
        [_BATCH_SERVICE_POLICY],
        names.tags(),
        log,
        changed=changed,
        boundary=boundary,
    )
    instance_role = names.instance_role(cluster.name)
    partition, account = service.split(":")[1], service.split(":")[4]
    _ensure_role(
        iam,
        instance_role,
        "ec2.amazonaws.com",
        list(cluster.iam_policies),
        tags,
        log,
        inline={_INSTANCE_POLICY_NAME: instance_policy(names, partition, account, log_groups)},
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
    return ClusterRoles(service, str(profile["Arn"]), spot_fleet, fresh=bool(changed))


def delete_cluster_roles(
    cluster: ClusterSpec, names: Names, log: Log, *, clients: ClientFactory = aws_client
) -> None:
    """The cluster's own instance role and profile, once no region uses them. The service
    and spot fleet roles are shared by the host's clusters and stay."""
    _delete_role(clients("iam", _IAM_REGION), names.instance_role(cluster.name), log)


def delete_shared_roles(names: Names, log: Log, *, clients: ClientFactory = aws_client) -> None:
    """The roles every cluster of the host shares (Batch's service role, the spot fleet
    role): once the host goes."""
    iam = clients("iam", _IAM_REGION)
    for name in (names.service_role(), names.spot_fleet_role()):
        _delete_role(iam, name, log)


def ensure_job_role(
    definition: DefinitionSpec,
    names: Names,
    secret_arn: str,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    boundary: str | None = None,
) -> str:
    """The job role of a definition's workers: read the host's API key, and what the
    definition's iam_policies allow (within the permissions `boundary`, when given)."""
    read_key = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}
        ],
    }
    return _ensure_role(
        clients("iam", _IAM_REGION),
        names.job_role(definition.name),
        "ecs-tasks.amazonaws.com",
        definition.iam_policies,
        names.tags(definition=definition.name),
        log,
        inline={"hyper-api-key": read_key},
        boundary=boundary,
    )


def delete_job_role(
    definition: DefinitionSpec, names: Names, log: Log, *, clients: ClientFactory = aws_client
) -> None:
    _delete_role(clients("iam", _IAM_REGION), names.job_role(definition.name), log)


# ---- clusters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """Where a region's instances go: its subnets and its security group."""

    subnets: tuple[str, ...]
    security_group: str


@dataclass(frozen=True)
class ClusterInRegion:
    job_queue: str  # ARN
    compute_environments: tuple[str, ...] = field(default=())  # ARNs, in queue order


MAX_COMPUTE_ENVS = 3
_SETTLING = ("CREATING", "UPDATING", "DELETING")


def split_vcpus(total: int, parts: int) -> list[int]:
    """`total` vCPUs over at most `parts` compute environments, the larger shares first;
    never an environment of 0 vCPUs."""
    parts = max(1, min(parts, total))
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def find_ami(region: str, name: str, *, clients: ClientFactory = aws_client) -> str:
    """The id of this account's newest AMI named `name` in `region` (an `ami-` id as is)."""
    if name.startswith("ami-"):
        return name
    images = clients("ec2", region).describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
    )["Images"]
    if not images:
        raise DeployFailed(
            f"no AMI named {name!r} in {region}: copy it there first (aws ec2 copy-image)"
        )
    return str(max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"])


# ---- the instances' launch template ----------------------------------------------------------

# IMDSv2 only, and its answers go no further than the instance itself (hop limit 1): a
# container on a bridge network is one hop away (AL2023 AMIs otherwise launch with 2)
METADATA_OPTIONS = {"HttpEndpoint": "enabled", "HttpTokens": "required",
                    "HttpPutResponseHopLimit": 1}  # fmt: skip
# the instance's boot script (Batch takes user data as MIME multi-part): containers on a
# bridge network never reach the metadata service, as ECS's guide for task roles has it
# (DOCKER-USER made here if docker has not yet: docker keeps the rules of one it finds)
USER_DATA = """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="==HYPER=="

--==HYPER==
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
iptables --new-chain DOCKER-USER 2>/dev/null || true
iptables --insert DOCKER-USER 1 --in-interface docker+ --destination 169.254.169.254/32 --jump DROP
echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config

--==HYPER==--
"""


def launch_template_data() -> dict[str, Any]:
    """What every instance of a hyper cluster is launched with."""
    return {
        "MetadataOptions": dict(METADATA_OPTIONS),
        "UserData": base64.b64encode(USER_DATA.encode()).decode(),
    }


def ensure_launch_template(
    region: str,
    cluster: ClusterSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> str:
    """The cluster's launch template in `region` (`launch_template_data`), made when
    absent; its name."""
    ec2 = clients("ec2", region)
    name = names.launch_template(cluster.name)
    if _launch_template(ec2, name) is None:
        tags = names.tags(cluster=cluster.name)
        ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=launch_template_data(),
            TagSpecifications=[{
                "ResourceType": "launch-template",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }],
        )  # fmt: skip
        log(f"{region}: created launch template {name} (IMDSv2, hop limit 1)")
    return name


def delete_launch_template(
    region: str,
    cluster: ClusterSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> None:
    ec2 = clients("ec2", region)
    name = names.launch_template(cluster.name)
    if _launch_template(ec2, name) is not None:
        ec2.delete_launch_template(LaunchTemplateName=name)
        log(f"{region}: deleted launch template {name}")


def _launch_template(ec2: Any, name: str) -> dict[str, Any] | None:
    try:
        found = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    except Exception as error:
        if error_code(error) == "InvalidLaunchTemplateName.NotFoundException":
            return None
        raise
    return found[0] if found else None


def compute_resources(
    cluster: ClusterSpec,
    max_vcpus: int,
    network: Network,
    roles: ClusterRoles,
    image_id: str | None,
    launch_template: str | None = None,
) -> dict[str, Any]:
    """The computeResources of one of the cluster's compute environments (its instances
    launched from `launch_template`, when given)."""
    spot = cluster.type == "SPOT"
    strategy = cluster.allocation_strategy
    if not spot and strategy == "SPOT_CAPACITY_OPTIMIZED":  # on-demand has no such strategy
        strategy = "BEST_FIT_PROGRESSIVE"
    resources: dict[str, Any] = {
        "type": "SPOT" if spot else "EC2",
        "allocationStrategy": strategy,
        "minvCpus": 0,
        "maxvCpus": max_vcpus,
        "instanceTypes": list(cluster.instance_list),
        "subnets": list(network.subnets),
        "securityGroupIds": [network.security_group],
        "instanceRole": roles.instance_profile,
        "tags": {**cluster.compute_resources_tags, "hyper:cluster": cluster.name},
    }
    if spot:
        resources["bidPercentage"] = cluster.bid_percentage
        if roles.spot_fleet_role:
            resources["spotIamFleetRole"] = roles.spot_fleet_role
    if image_id:
        resources["ec2Configuration"] = [{"imageType": "ECS_AL2", "imageIdOverride": image_id}]
    if launch_template:
        resources["launchTemplate"] = {"launchTemplateName": launch_template, "version": "$Default"}
    return resources


def _compute_envs(batch: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    found = batch.describe_compute_environments(computeEnvironments=list(names))
    return {
        env["computeEnvironmentName"]: env
        for env in found["computeEnvironments"]
        if env.get("status") != "DELETED"
    }


def _job_queue(batch: Any, name: str) -> dict[str, Any] | None:
    found = batch.describe_job_queues(jobQueues=[name])["jobQueues"]
    return next((q for q in found if q.get("status") != "DELETED"), None)


def _settled_envs(
    batch: Any, region: str, names: Sequence[str], *, invalid_fails: bool = False
) -> Callable[[], bool]:
    """A check that the environments are settled (not creating, updating or deleting);
    with `invalid_fails`, one that settled INVALID fails the change with Batch's reason."""

    def check() -> bool:
        envs = _compute_envs(batch, names)
        for name, env in envs.items():
            if invalid_fails and env.get("status") == "INVALID":
                reason = env.get("statusReason", "no reason given")
                raise DeployFailed(one_line(f"compute environment {name} in {region}: {reason}"))
        return all(env.get("status") not in _SETTLING for env in envs.values())

    return check


def _settled_queue(
    batch: Any, region: str, name: str, *, invalid_fails: bool = False
) -> Callable[[], bool]:
    def check() -> bool:
        queue = _job_queue(batch, name)
        if invalid_fails and queue is not None and queue.get("status") == "INVALID":
            reason = queue.get("statusReason", "no reason given")
            raise DeployFailed(one_line(f"job queue {name} in {region}: {reason}"))
        return queue is None or queue.get("status") not in _SETTLING

    return check


def deploy_cluster(
    region: str,
    cluster: ClusterSpec,
    network: Network,
    roles: ClusterRoles,
    names: Names,
    log: Log,
    *,
    image_id: str | None = None,
    clients: ClientFactory = aws_client,
    patience: Patience = Patience(),
) -> ClusterInRegion:
    """Create or update the cluster's compute environments and job queue in `region`.
    `image_id` (or the cluster's main_region_image_name, looked up in the region) is the
    instances' AMI."""
    batch = clients("batch", region)
    if image_id is None and cluster.main_region_image_name:
        image_id = find_ami(region, cluster.main_region_image_name, clients=clients)
    shares = split_vcpus(cluster.max_vcpus, cluster.compute_envs)
    wanted = [names.compute_env(cluster.name, n + 1) for n in range(len(shares))]
    every = [names.compute_env(cluster.name, n + 1) for n in range(MAX_COMPUTE_ENVS)]
    wait_for_roles(roles, log, clients=clients, patience=patience)
    try:
        template = ensure_launch_template(region, cluster, names, log, clients=clients)
        existing = _compute_envs(batch, every)
        created: dict[str, dict[str, Any]] = {}
        for name, vcpus in zip(wanted, shares, strict=True):
            resources = compute_resources(cluster, vcpus, network, roles, image_id, template)
            env = existing.get(name)
            if env is None:
                created[name] = {
                    "computeEnvironmentName": name,
                    "type": "MANAGED",
                    "state": "ENABLED",
                    "computeResources": resources,
                    "serviceRole": roles.service_role,
                    "tags": names.tags(cluster=cluster.name),
                }
                _create_env(batch, region, created[name], roles, patience, log)
                log(f"{region}: created compute environment {name} ({vcpus} vCPUs)")
                continue
            _wait(f"compute environment {name}", _settled_envs(batch, region, [name]), patience)
            batch.update_compute_environment(
                computeEnvironment=name,
                state="ENABLED",
                computeResources={"minvCpus": 0, "maxvCpus": vcpus},
            )
            log(f"{region}: updated compute environment {name} ({vcpus} vCPUs, ENABLED)")
            kept = _unchanged_in_place(env.get("computeResources", {}), resources)
            if kept:
                log(
                    f"{region}: {name} keeps its {', '.join(kept)}: delete and re-create the "
                    "cluster to change them"
                )
        _settle_created(batch, region, cluster.name, wanted, created, roles, patience, log)
        envs = _compute_envs(batch, wanted)
        order = [
            {"order": n + 1, "computeEnvironment": envs[name]["computeEnvironmentArn"]}
            for n, name in enumerate(wanted)
        ]
        queue_name = names.job_queue(cluster.name)
        queue = _job_queue(batch, queue_name)
        if queue is None:
            batch.create_job_queue(
                jobQueueName=queue_name,
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=order,
                tags=names.tags(cluster=cluster.name),
            )
            log(f"{region}: created job queue {queue_name}")
        else:
            _wait(f"job queue {queue_name}", _settled_queue(batch, region, queue_name), patience)
            batch.update_job_queue(
                jobQueue=queue_name, state="ENABLED", computeEnvironmentOrder=order
            )
            log(f"{region}: updated job queue {queue_name}")
        settled = _settled_queue(batch, region, queue_name, invalid_fails=True)
        _wait(f"job queue {queue_name}", settled, patience)
        queue = _job_queue(batch, queue_name)
        for name in [n for n in every if n in existing and n not in wanted]:
            _delete_compute_env(batch, region, name, log, patience)
    except DeployFailed:
        raise
    except Exception as error:
        raise _aws_failed(f"cluster {cluster.name} in {region}", error) from None
    assert queue is not None
    return ClusterInRegion(
        str(queue["jobQueueArn"]),
        tuple(envs[name]["computeEnvironmentArn"] for name in wanted),
    )


def _iam_not_yet(roles: ClusterRoles, reason: str) -> bool:
    """Whether `reason` (Batch's) is IAM not having reached Batch yet, for fresh roles."""
    return roles.fresh and bool(IAM_NOT_YET.search(reason))


def _create_env(
    batch: Any,
    region: str,
    request: dict[str, Any],
    roles: ClusterRoles,
    patience: Patience,
    log: Log,
) -> None:
    """CreateComputeEnvironment, tried again (at most `patience.attempts` times, waiting
    longer each time) while Batch refuses roles IAM made just now."""
    for attempt in range(1, patience.attempts + 1):
        try:
            batch.create_compute_environment(**request)
            return
        except Exception as error:
            said = error_message(error)
            if attempt == patience.attempts or not _iam_not_yet(roles, said):
                raise
            wait = patience.propagation * 2**attempt
            log(f"{region}: Batch does not see the new roles yet ({one_line(said)}); "
                f"again in {wait:g} s")  # fmt: skip
            patience.sleep(wait)


def _settle_created(
    batch: Any,
    region: str,
    cluster: str,
    wanted: Sequence[str],
    created: Mapping[str, dict[str, Any]],
    roles: ClusterRoles,
    patience: Patience,
    log: Log,
) -> None:
    """Wait until the cluster's environments settle. One made just now with fresh roles
    that settles INVALID for a reason of IAM's is deleted and made again, at most
    `patience.attempts` times; any other INVALID fails the change with Batch's reason."""
    for attempt in range(1, patience.attempts + 1):
        try:
            _wait(
                f"the compute environments of {cluster} in {region}",
                _settled_envs(batch, region, wanted, invalid_fails=True),
                patience,
            )
            return
        except DeployFailed:
            if attempt == patience.attempts or not roles.fresh or not created:
                raise
            envs = _compute_envs(batch, list(created))
            again = [
                n for n, env in envs.items()
                if env.get("status") == "INVALID"
                and _iam_not_yet(roles, str(env.get("statusReason", "")))
            ]  # fmt: skip
            if not again:
                raise
            wait = patience.propagation * 2**attempt
            for name in again:
                log(f"{region}: {name} is INVALID while IAM propagates; making it again "
                    f"in {wait:g} s")  # fmt: skip
                _delete_compute_env(batch, region, name, lambda _: None, patience)
            patience.sleep(wait)
            for name in again:
                batch.create_compute_environment(**created[name])


def _unchanged_in_place(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The fields an update leaves as they are, where the cluster now asks otherwise."""
    fields = ("type", "instanceTypes", "allocationStrategy", "bidPercentage", "ec2Configuration")
    kept = [f for f in fields if f in current and current.get(f) != wanted.get(f)]
    name = "launchTemplateName"  # one made before launch templates has none
    if (current.get("launchTemplate") or {}).get(name) != wanted.get("launchTemplate", {}).get(
        name
    ):
        kept.append("launchTemplate")
    return kept


def _delete_compute_env(batch: Any, region: str, name: str, log: Log, patience: Patience) -> None:
    settled = _settled_envs(batch, region, [name])
    _wait(f"compute environment {name}", settled, patience)
    env = _compute_envs(batch, [name]).get(name)
    if env is None:
        return
    if env.get("state") != "DISABLED":
        batch.update_compute_environment(computeEnvironment=name, state="DISABLED")
        _wait(f"compute environment {name} to be disabled", settled, patience)
    batch.delete_compute_environment(computeEnvironment=name)
    _wait(
        f"compute environment {name} to go",
        lambda: name not in _compute_envs(batch, [name]),
        patience,
    )
    log(f"{region}: deleted compute environment {name}")


def delete_cluster(
    region: str,
    cluster: ClusterSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
    patience: Patience = Patience(),
) -> None:
    """Disable and delete the cluster's job queue, then its compute environments, waiting
    for each step (Batch refuses to delete what is enabled or still in use)."""
    batch = clients("batch", region)
    queue_name = names.job_queue(cluster.name)
    try:
        settled = _settled_queue(batch, region, queue_name)
        _wait(f"job queue {queue_name}", settled, patience)
        queue = _job_queue(batch, queue_name)
        if queue is not None:
            if queue.get("state") != "DISABLED":
                batch.update_job_queue(jobQueue=queue_name, state="DISABLED")
                _wait(f"job queue {queue_name} to be disabled", settled, patience)
            batch.delete_job_queue(jobQueue=queue_name)
            _wait(
                f"job queue {queue_name} to go",
                lambda: _job_queue(batch, queue_name) is None,
                patience,
            )
            log(f"{region}: deleted job queue {queue_name}")
        for number in range(1, MAX_COMPUTE_ENVS + 1):
            _delete_compute_env(
                batch, region, names.compute_env(cluster.name, number), log, patience
            )
        delete_launch_template(region, cluster, names, log, clients=clients)
    except DeployFailed:
        raise
    except Exception as error:
        raise _aws_failed(f"deleting cluster {cluster.name} in {region}", error) from None


# ---- queues ---------------------------------------------------------------------------------


def check_queue(
    region: str, queue: QueueSpec, names: Names, *, clients: ClientFactory = aws_client
) -> str:
    """The ARN of the job queue a queue's workers go to in `region`: its cluster's."""
    name = names.job_queue(queue.compute_environment)
    try:
        found = _job_queue(clients("batch", region), name)
    except Exception as error:
        raise _aws_failed(f"queue {queue.name} in {region}", error) from None
    if found is None or found.get("status") != "VALID" or found.get("state") != "ENABLED":
        state = "missing" if found is None else f"{found.get('state')}/{found.get('status')}"
        raise DeployFailed(
            f"cluster {queue.compute_environment!r} has no usable job queue in {region} "
            f"({state}): deploy the cluster there first"
        )
    return str(found["jobQueueArn"])


# ---- images ---------------------------------------------------------------------------------

REGION_PLACEHOLDER = "_REGION_"


def deploy_repository(
    region: str, image: ImageSpec, names: Names, log: Log, *, clients: ClientFactory = aws_client
) -> str:
    """The image's ECR repository in `region`, created when absent; returns its URI."""
    ecr = clients("ecr", region)
    name = names.repository(image.name)
    try:
        try:
            found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        except Exception as error:
            if error_code(error) != "RepositoryNotFoundException":
                raise
            found = ecr.create_repository(
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": k, "Value": v} for k, v in names.tags(image=image.name).items()],
            )["repository"]
            log(f"{region}: created repository {name}")
    except Exception as error:
        raise _aws_failed(f"image {image.name} in {region}", error) from None
    return str(found["repositoryUri"])


def delete_repository(
    region: str, image: ImageSpec, names: Names, log: Log, *, clients: ClientFactory = aws_client
) -> None:
    """The image's repository in `region`, with every image it holds."""
    name = names.repository(image.name)
    try:
        clients("ecr", region).delete_repository(repositoryName=name, force=True)
        log(f"{region}: deleted repository {name}")
    except Exception as error:
        if error_code(error) != "RepositoryNotFoundException":
            raise _aws_failed(f"deleting image {image.name} in {region}", error) from None


def uri_template(repository_uri: str, region: str, tag: str = "latest") -> str:
    """A repository URI of one region as the image's URI for every region."""
    return f"{repository_uri.replace(f'.{region}.', f'.{REGION_PLACEHOLDER}.')}:{tag}"


def require_docker_engine() -> None:
    """DeployFailed, in one line, unless a docker engine answers on this machine."""
    if shutil.which("docker") is None:
        raise DeployFailed("docker is not installed: images are built and pushed with docker")
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=60)
    except CommandFailed as error:
        said = (error.stderr.strip() or error.stdout.strip()).splitlines()[-1:] or ["no answer"]
        raise DeployFailed(
            one_line(
                f"no docker engine answers on this machine (docker info: {said[0]}): "
                "start one to build and push images"
            )
        ) from None


def _push(
    local: str,
    image: ImageSpec,
    regions: Sequence[str],
    names: Names,
    log: Log,
    clients: ClientFactory,
) -> str:
    """Tag the local image `local` for every region's repository and push it there. The
    registry's token goes into a private docker config folder, never on a command line."""
    if not regions:
        raise DeployFailed(f"image {image.name}: no ACTIVE region to push it to")
    uri = ""
    with tempfile.TemporaryDirectory(prefix="hyper-docker-") as config:
        for region in regions:
            repository = deploy_repository(region, image, names, log, clients=clients)
            token = clients("ecr", region).get_authorization_token()["authorizationData"][0]
            registry = repository.split("/", 1)[0]
            auths = {"auths": {registry: {"auth": token["authorizationToken"]}}}
            Path(config, "config.json").write_text(json.dumps(auths))
            target = f"{repository}:latest"
            try:
                run(["docker", "tag", local, target], timeout=120)
                run(["docker", "--config", config, "push", target], timeout=3600)
            except CommandFailed as error:
                raise DeployFailed(str(error)) from None
            log(f"{region}: pushed {target}")
            uri = uri_template(repository, region)
    return uri


def build_and_push(
    image: ImageSpec,
    regions: Sequence[str],
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> ImageSpec:
    """Build the image from its folder with docker and push it to every region's
    repository; returns it with its URI (``_REGION_`` for the region). The build context
    is the folder's files plus a wheel of this hyper (`worker_build`)."""
    from hyper.providers.aws.worker_build import build_context

    folder = Path(image.local_build_directory or "")
    if not image.local_build_directory or not (folder / "Dockerfile").is_file():
        raise DeployFailed(f"{folder} has no Dockerfile")
    require_docker_engine()
    local = f"hyper/{image.name}:latest".lower()
    log(f"building {local} from {folder} (with a wheel of this hyper)")
    with build_context(folder) as context:  # the folder's files and hyper's wheel
        try:
            output = run(["docker", "build", "-t", local, str(context)], timeout=3600)
        except CommandFailed as error:
            raise DeployFailed(str(error)) from None
    for line in output.strip().splitlines()[-5:]:
        log(line)
    return image.model_copy(update={"uri": _push(local, image, regions, names, log, clients)})


def push_local_image(
    image: ImageSpec,
    regions: Sequence[str],
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> ImageSpec:
    """replace-with-local-image: tag the image's local_docker_image and push it to every
    region given (the ACTIVE ones)."""
    if not image.local_docker_image:
        raise DeployFailed("give the local image to push (repo:tag)")
    require_docker_engine()
    try:
        run(["docker", "image", "inspect", image.local_docker_image], timeout=60)
    except CommandFailed:
        raise DeployFailed(f"docker has no image {image.local_docker_image!r}") from None
    uri = _push(image.local_docker_image, image, regions, names, log, clients)
    return image.model_copy(update={"uri": uri})


# ---- definitions ----------------------------------------------------------------------------

WORKER_COMMAND = ["/usr/local/bin/start.sh"]  # the worker image's start.sh runs the agent
# Batch's names for the log drivers hyper's definitions name (LOGENTRIES has none)
LOG_DRIVERS = {
    "AWSLOGS": "awslogs",
    "FLUENTD": "fluentd",
    "GELF": "gelf",
    "JOURNALD": "journald",
    "JSON_FILE": "json-file",
    "SPLUNK": "splunk",
    "SYSLOG": "syslog",
}


def definition_image(definition: DefinitionSpec, image: ImageSpec | None) -> str:
    """The image a definition's workers run in, ``_REGION_`` still in it: its image URI,
    or the ECR URI of the host's image it names."""
    if not definition.use_cyclone_image:
        if not definition.image_uri:
            raise DeployFailed(f"definition {definition.name!r} names no image URI")
        return definition.image_uri
    if definition.native or image is None or not image.uri:
        raise DeployFailed(
            f"definition {definition.name!r} runs in image {definition.cyclone_image_name!r}, "
            "which has no container image in AWS: give it a pushed image or an image URI"
        )
    return image.uri


# what a definition may ask that reaches beyond its own container, each allowed only
# when the host's owner allows it (create-host --allowed-container-options)
CONTAINER_OPTIONS = {
    "privileged": "privileged containers (the whole instance)",
    "host-volumes": "host volumes (the instance's files)",
    "devices": "host devices",
    "log-groups": "log groups other than the host's",
}
DEFAULT_LOG_GROUP = "/aws/batch/job"  # where Batch's awslogs driver writes unless told


def container_options(definition: DefinitionSpec, log_groups: Sequence[str]) -> list[str]:
    """The CONTAINER_OPTIONS `definition` asks for; `log_groups` are the host's own."""
    asked = []
    if definition.privileged:
        asked.append("privileged")
    if any(volume.get("host") for volume in definition.host_volumes):  # not EFS, not scratch
        asked.append("host-volumes")
    if definition.linux_parameters.get("devices"):
        asked.append("devices")
    group = definition.log_options.get("awslogs-group")
    if group is not None and group not in (*log_groups, DEFAULT_LOG_GROUP):
        asked.append("log-groups")
    return asked


def check_container_options(text: str) -> list[str]:
    """The options of a list `a,b` (the owner's --allowed-container-options)."""
    options = [o.strip() for o in text.split(",") if o.strip()]
    wrong = [o for o in options if o not in CONTAINER_OPTIONS]
    if wrong:
        raise UsageError(
            f"--allowed-container-options: {wrong[0]!r} is none of {', '.join(CONTAINER_OPTIONS)}"
        )
    return options


def job_definition(
    region: str,
    definition: DefinitionSpec,
    names: Names,
    *,
    image: str,
    job_role_arn: str,
    secret_arn: str,
) -> dict[str, Any]:
    """The RegisterJobDefinition request of a definition in `region`: every field of the
    definition mapped; Batch never retries (hyper retries jobs itself)."""
    reserved = sorted(n for n in definition.environment if n.startswith("AWS_BATCH"))
    if reserved:
        raise DeployFailed(f"environment names starting AWS_BATCH are Batch's: {reserved[0]}")
    volumes = {v.get("name") for v in definition.host_volumes}
    for mount in definition.mount_points:
        if mount.get("sourceVolume") not in volumes:
            raise DeployFailed(
                f"mount point {mount.get('containerPath')!r} names no host volume "
                f"({mount.get('sourceVolume')!r})"
            )
    environment = {
        **definition.environment,
        "HYPER_DEFINITION": definition.name,
        "HYPER_API_KEY": secret_arn,  # the secret's ARN: the worker reads the key itself
    }
    if definition.timeout_minutes:
        environment["HYPER_LIFETIME_SECONDS"] = str(definition.timeout_minutes * 60)
    requirements = [
        {"type": "VCPU", "value": str(definition.vcpus)},
        {"type": "MEMORY", "value": str(definition.memory_limit_mib)},
    ]
    if definition.gpu_count:
        requirements.append({"type": "GPU", "value": str(definition.gpu_count)})
    container: dict[str, Any] = {
        "image": image.replace(REGION_PLACEHOLDER, region),
        "command": list(WORKER_COMMAND),
        "resourceRequirements": requirements,
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "jobRoleArn": job_role_arn,
        "privileged": definition.privileged,
        "ulimits": list(definition.ulimits),
        "mountPoints": list(definition.mount_points),
        "volumes": list(definition.host_volumes),
    }
    if definition.linux_parameters:
        container["linuxParameters"] = dict(definition.linux_parameters)
    if definition.user:
        container["user"] = definition.user
    if definition.log_driver:
        driver = LOG_DRIVERS.get(definition.log_driver)
        if driver is None:
            raise DeployFailed(
                f"AWS Batch has no {definition.log_driver} log driver: use one of "
                f"{', '.join(LOG_DRIVERS)}"
            )
        container["logConfiguration"] = {"logDriver": driver}
        if definition.log_options:
            container["logConfiguration"]["options"] = dict(definition.log_options)
    request: dict[str, Any] = {
        "jobDefinitionName": names.job_definition(definition.name),
        "type": "container",
        "platformCapabilities": ["EC2"],
        "containerProperties": container,
        "retryStrategy": {"attempts": 1},
        "propagateTags": True,
        "tags": names.tags(definition=definition.name),
    }
    if definition.timeout_minutes:
        request["timeout"] = {"attemptDurationSeconds": definition.timeout_minutes * 60}
    return request


def _active_revisions(batch: Any, name: str) -> list[str]:
    arns = []
    for page in batch.get_paginator("describe_job_definitions").paginate(
        jobDefinitionName=name, status="ACTIVE"
    ):
        arns += [d["jobDefinitionArn"] for d in page["jobDefinitions"] if d["status"] == "ACTIVE"]
    return arns


def deploy_definition(
    region: str,
    definition: DefinitionSpec,
    names: Names,
    log: Log,
    *,
    image: str,
    job_role_arn: str,
    secret_arn: str,
    clients: ClientFactory = aws_client,
) -> str:
    """Register the definition's job definition in `region` (a new revision on update; the
    older ones are deregistered). Returns the new revision's ARN."""
    request = job_definition(
        region, definition, names, image=image, job_role_arn=job_role_arn, secret_arn=secret_arn
    )
    batch = clients("batch", region)
    name = request["jobDefinitionName"]
    try:
        older = _active_revisions(batch, name)
        arn = str(batch.register_job_definition(**request)["jobDefinitionArn"])
        for revision in older:
            batch.deregister_job_definition(jobDefinition=revision)
    except Exception as error:
        raise _aws_failed(f"definition {definition.name} in {region}", error) from None
    log(f"{region}: registered {arn.rsplit('/', 1)[-1]}")
    return arn


def delete_definition(
    region: str,
    definition: DefinitionSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> None:
    """Deregister every active revision of the definition's job definition in `region`."""
    batch = clients("batch", region)
    name = names.job_definition(definition.name)
    try:
        for revision in _active_revisions(batch, name):
            batch.deregister_job_definition(jobDefinition=revision)
    except Exception as error:
        raise _aws_failed(f"deleting definition {definition.name} in {region}", error) from None
    log(f"{region}: deregistered {name}")
