"""Clusters (compute environments and a job queue per region) and the queues on them.
See hyper/providers/aws/batch.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyper.errors import DeployFailed, one_line
from hyper.models import ClusterSpec, QueueSpec
from hyper.providers import Log
from hyper.providers.aws.calls import aws_client, error_message
from hyper.providers.aws.launch_templates import delete_launch_template, ensure_launch_template
from hyper.providers.aws.names import Names
from hyper.providers.aws.roles import IAM_NOT_YET, ClusterRoles, wait_for_roles
from hyper.providers.aws.waiting import ClientFactory, Patience, _aws_failed, _wait

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
    ecs_clusters: tuple[str, ...] = field(default=())  # each environment's, Batch's ARN


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


# GPU instance families (P and G), which take the ECS-optimised AMI with NVIDIA's drivers
GPU_FAMILY = re.compile(r"^[pg]\d")
# AWS Graviton (arm64) families: a "g" among the letters after the generation (c7g,
# m6gd, g5g, x2gd); Batch's NVIDIA image types are for x86 only ("can be used for all
# non AWS Graviton-based instance types", Batch API reference, Ec2Configuration)
GRAVITON_FAMILY = re.compile(r"^[a-z]+\d+[a-z-]*g[a-z-]*$")


def _graviton(kind: str) -> bool:
    return bool(GRAVITON_FAMILY.match(kind.split(".")[0]))


def nvidia(kind: str) -> bool:
    """Whether instance type (or family) `kind` takes Batch's NVIDIA image: a P or G
    type that is not a Graviton one."""
    return bool(GPU_FAMILY.match(kind)) and not _graviton(kind)


def graviton_gpus(cluster: ClusterSpec) -> list[str]:
    """The cluster's Graviton GPU types (g5g): Batch has no NVIDIA image for them."""
    return [k for k in cluster.instance_list if GPU_FAMILY.match(k) and _graviton(k)]


def image_types(cluster: ClusterSpec, image_id: str | None = None) -> list[str]:
    """The ECS-optimised AMI families of the cluster's compute environments: Amazon Linux
    2023 (Batch ends its support of Amazon Linux 2), with NVIDIA's drivers for x86 GPU
    instance types. A cluster with both gets both, and Batch gives each instance type the
    one for it; Graviton types (arm64, g5g among them) get the plain one. One AMI given
    (`image_id`) is one family: NVIDIA's when any type needs it."""
    wanted = [
        "ECS_AL2023_NVIDIA" if nvidia(kind) else "ECS_AL2023" for kind in cluster.instance_list
    ]
    if image_id:
        return ["ECS_AL2023_NVIDIA" if "ECS_AL2023_NVIDIA" in wanted else "ECS_AL2023"]
    return sorted(set(wanted)) or ["ECS_AL2023"]


def compute_resources(
    cluster: ClusterSpec,
    max_vcpus: int,
    network: Network,
    roles: ClusterRoles,
    image_id: str | None,
    launch_template: str | None = None,
    *,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """The computeResources of one of the cluster's compute environments (its instances
    launched from `launch_template`, when given, and tagged with the cluster's tags and
    hyper's `tags`, which win: the job roles' limits key on the host's tag)."""
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
        "tags": {**cluster.compute_resources_tags, **tags},
    }
    if spot:
        resources["bidPercentage"] = cluster.bid_percentage
        if roles.spot_fleet_role:
            resources["spotIamFleetRole"] = roles.spot_fleet_role
    # the AMI family named, not left to Batch's default: the launch template's boot script
    # is written for Amazon Linux 2023
    resources["ec2Configuration"] = [
        {"imageType": kind, **({"imageIdOverride": image_id} if image_id else {})}
        for kind in image_types(cluster, image_id)
    ]
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
    arm = graviton_gpus(cluster)
    if arm and not image_id:
        log(f"{region}: {', '.join(arm)}: AWS Batch has no NVIDIA image for Graviton types; "
            "they get Amazon Linux 2023 without NVIDIA's drivers (give the cluster an AMI "
            "with them, main_region_image_name)")  # fmt: skip
    try:
        template, renewed = ensure_launch_template(region, cluster, names, log, clients=clients)
        existing = _compute_envs(batch, every)
        created: dict[str, dict[str, Any]] = {}
        for name, vcpus in zip(wanted, shares, strict=True):
            resources = compute_resources(cluster, vcpus, network, roles, image_id, template,
                                          tags=names.tags(cluster=cluster.name))  # fmt: skip
            env = existing.get(name)
            if env is None:
                created[name] = {
                    "computeEnvironmentName": name,
                    "type": "MANAGED",
                    "state": "ENABLED",
                    "computeResources": resources,
                    # no serviceRole: Batch's service-linked role (roles.py)
                    "tags": names.tags(cluster=cluster.name),
                }
                _create_env(batch, region, created[name], roles, patience, log)
                log(f"{region}: created compute environment {name} ({vcpus} vCPUs)")
                continue
            _wait(f"compute environment {name}", _settled_envs(batch, region, [name]), patience)
            update: dict[str, Any] = {"minvCpus": 0, "maxvCpus": vcpus}
            current = env.get("computeResources", {})
            uses = (current.get("launchTemplate") or {}).get("launchTemplateName") == template
            follows = renewed and uses and infrastructure_updates(env)  # the new version
            if follows:
                # Batch takes $Default again only in an infrastructure update (Batch API
                # reference, LaunchTemplateSpecification): its instances are replaced
                update["launchTemplate"] = {"launchTemplateName": template, "version": "$Default"}
            batch.update_compute_environment(
                computeEnvironment=name, state="ENABLED", computeResources=update
            )
            log(
                f"{region}: updated compute environment {name} ({vcpus} vCPUs, ENABLED"
                f"{', new instances from the new launch template' if follows else ''})"
            )
            if renewed and uses and not follows:
                log(
                    f"{region}: {name} keeps its launch template's former version: Batch "
                    "updates it only for an environment made with its service-linked role "
                    "and not BEST_FIT; delete and re-create the cluster to change it"
                )
            kept = _unchanged_in_place(current, resources)
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
        tuple(str(envs[name].get("ecsClusterArn") or "") for name in wanted),
    )


def ecs_clusters(
    region: str, cluster: ClusterSpec, names: Names, *, clients: ClientFactory = aws_client
) -> tuple[str, ...] | None:
    """The ECS clusters of the cluster's compute environments in `region` as Batch reports
    them (ecsClusterArn), or None when one is not made or not VALID yet."""
    shares = split_vcpus(cluster.max_vcpus, cluster.compute_envs)
    wanted = [names.compute_env(cluster.name, n + 1) for n in range(len(shares))]
    envs = _compute_envs(clients("batch", region), wanted)
    found = [envs.get(name, {}) for name in wanted]
    if not all(env.get("status") == "VALID" and env.get("ecsClusterArn") for env in found):
        return None
    return tuple(str(env["ecsClusterArn"]) for env in found)


SERVICE_LINKED_ROLE = ":role/aws-service-role/batch.amazonaws.com/"


def infrastructure_updates(env: Mapping[str, Any]) -> bool:
    """Whether Batch takes an infrastructure update (a launch template, an AMI) of
    compute environment `env` (as DescribeComputeEnvironments gives it): only one made
    with its service-linked role and an allocation strategy other than BEST_FIT (Batch
    User Guide, "Perform infrastructure updates")."""
    strategy = env.get("computeResources", {}).get("allocationStrategy", "BEST_FIT")
    return SERVICE_LINKED_ROLE in str(env.get("serviceRole", "")) and strategy != "BEST_FIT"


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
