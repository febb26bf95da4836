"""Clusters, queues, images and definitions on AWS Batch, and the Batch launcher.

Everything runs against moto (`mock_aws`, Batch without docker); what moto does not keep
(an update's new max vCPUs) or does not do (throttling, jobs still running) is seen
through botocore's own event hooks on real clients, or a Stubber."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import moto.iam.models
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

from hyper.capacity import Shape
from hyper.errors import DeployFailed
from hyper.jobs import LogKind
from hyper.launchers.base import Launcher, LaunchRequest
from hyper.launchers.batch import BatchLauncher, TokenBucket
from hyper.models import (
    ClusterSpec,
    DefinitionSpec,
    ImageSpec,
    QueueSpec,
    RegionSpec,
    ResourceKind,
    Spec,
)
from hyper.providers.aws import batch, clusters, launch_templates
from hyper.providers.aws.batch import Names, Network, Patience, aws_client
from hyper.providers.aws.roles import JOB_LIMITS
from hyper.scheduler import Scheduler, split_by_weight
from hyper.store.base import ArrayTasks, NewJob, Store, WorkerRecord
from hyper.store.sqlite import SQLiteStore
from hyper.worker import __main__ as worker_main
from hyper.worker_tokens import WorkerTokens
from tests.helpers.aws import ACCOUNT, managed_policies

NAMES = Names("hyper-test")
QUICK = Patience(timeout=5, interval=0, sleep=lambda _: None)
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hyper-test-key-AbCdEf"
TWO = ("us-east-1", "eu-west-1")
THREE = ("us-east-1", "eu-west-1", "ap-southeast-1")
URL = "https://api.example.test/prod"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(moto.iam.models, "aws_managed_policies_data", managed_policies())
    with mock_aws(
        config={"batch": {"use_docker": False}, "iam": {"load_aws_managed_policies": True}}
    ):
        yield


class Calls:
    """A client factory of real (moto) clients that notes every call's parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (region, operation, params)

    def __call__(self, service: str, region: str) -> Any:
        return self.watch(aws_client(service, region), region)

    def watch(self, client: Any, region: str) -> Any:
        def note(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.calls.append((region, model.name, json.loads(json.dumps(params, default=str))))

        client.meta.events.register("before-parameter-build", note)
        return client

    def of(self, operation: str, region: str | None = None) -> list[dict[str, Any]]:
        return [p for r, op, p in self.calls if op == operation and region in (None, r)]

    def operations(self, region: str, *wanted: str) -> list[tuple[str, dict[str, Any]]]:
        return [(op, p) for r, op, p in self.calls if r == region and op in wanted]


def network(region: str) -> Network:
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24")["Subnet"]["SubnetId"]
        for n in range(2)
    )
    group = ec2.create_security_group(GroupName="hyper", Description="workers", VpcId=vpc)
    return Network(subnets, group["GroupId"])


def ami(region: str, name: str) -> str:
    ec2 = boto3.client("ec2", region_name=region)
    return str(ec2.register_image(Name=name, RootDeviceName="/dev/xvda")["ImageId"])


def log_to(lines: list[str]) -> Callable[[str], None]:
    return lines.append


CLUSTER = ClusterSpec(
    name="c1",
    instance_list=["c5.large", "m5.large"],
    max_vcpus=1000,
    compute_envs=3,
    type="SPOT",
    bid_percentage=80,
    allocation_strategy="SPOT_CAPACITY_OPTIMIZED",
    compute_resources_tags={"team": "hydro"},
    main_region_image_name="hyper-worker-ami",
    iam_policies=["AmazonS3ReadOnlyAccess"],
)


def deploy_cluster(regions: tuple[str, ...], calls: Calls, cluster: ClusterSpec = CLUSTER) -> None:
    lines: list[str] = []
    roles = batch.ensure_cluster_roles(cluster, NAMES, lines.append, clients=calls)
    for region in regions:
        batch.deploy_cluster(
            region, cluster, network(region), roles, NAMES, lines.append,
            clients=calls, patience=QUICK,
        )  # fmt: skip


# ---- clusters ---------------------------------------------------------------------------------


def test_a_cluster_is_three_compute_environments_and_one_queue_per_region(aws: None) -> None:
    images = {region: ami(region, "hyper-worker-ami") for region in TWO}
    calls = Calls()
    deploy_cluster(TWO, calls)

    iam = boto3.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName="hyper-test-c1-instance")
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [
        "hyper-test-c1-instance"
    ]
    attached = iam.list_attached_role_policies(RoleName="hyper-test-c1-instance")
    assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == ["AmazonS3ReadOnlyAccess"]
    # the ECS agent's permissions, on the host's own clusters, images and log groups only
    agent = iam.get_role_policy(RoleName="hyper-test-c1-instance", PolicyName="hyper-ecs-instance")
    statements = {s["Sid"]: s for s in agent["PolicyDocument"]["Statement"]}
    assert statements["HostEcsClusters"]["Resource"] == [
        "arn:aws:ecs:*:123456789012:cluster/AWSBatch-hyper-test-*"
    ]
    assert statements["HostContainerInstances"]["Resource"] == [
        "arn:aws:ecs:*:123456789012:container-instance/AWSBatch-hyper-test-*"
    ]
    assert statements["HostImages"]["Resource"] == [
        "arn:aws:ecr:*:123456789012:repository/hyper-test/*"
    ]
    # no log group of the host named: none at all (never Batch's /aws/batch/job, every team's)
    assert "JobLogs" not in statements
    anywhere = [s for s in statements.values() if s["Resource"] == "*"]
    assert [s["Action"] for s in anywhere] == [
        ["ecs:DiscoverPollEndpoint", "ecr:GetAuthorizationToken", "ec2:DescribeTags"]
    ]  # the actions AWS takes on no narrower resource; no ecs:CreateCluster
    # no Batch service role of the host's: Batch's service-linked one, which infrastructure
    # updates (a new launch template version) need and no host boundary caps
    assert "hyper-test-batch-service" not in {r["RoleName"] for r in iam.list_roles()["Roles"]}
    made = calls.of("CreateComputeEnvironment")
    assert made and all("serviceRole" not in p for p in made)

    for region in TWO:
        client = boto3.client("batch", region_name=region)
        envs = client.describe_compute_environments()["computeEnvironments"]
        assert [e["computeEnvironmentName"] for e in envs] == [
            "hyper-test-c1-ce1",
            "hyper-test-c1-ce2",
            "hyper-test-c1-ce3",
        ]
        assert [e["computeResources"]["maxvCpus"] for e in envs] == [334, 333, 333]
        for env in envs:
            assert env["type"] == "MANAGED" and env["state"] == "ENABLED"
            assert ":role/aws-service-role/batch.amazonaws.com/" in env["serviceRole"]
            resources = env["computeResources"]
            assert resources["type"] == "SPOT"
            assert resources["bidPercentage"] == 80
            assert resources["allocationStrategy"] == "SPOT_CAPACITY_OPTIMIZED"
            assert resources["instanceTypes"] == ["c5.large", "m5.large"]
            assert resources["minvCpus"] == 0
            assert resources["tags"] == {"team": "hydro", **NAMES.tags(cluster="c1")}
            assert resources["instanceRole"] == profile["InstanceProfile"]["Arn"]
            assert resources["ec2Configuration"] == [
                {"imageType": "ECS_AL2023", "imageIdOverride": images[region]}
            ]
            assert len(resources["subnets"]) == 2 and len(resources["securityGroupIds"]) == 1
            assert "spotIamFleetRole" not in resources  # only BEST_FIT needs one
        (queue,) = client.describe_job_queues()["jobQueues"]
        assert queue["jobQueueName"] == "hyper-test-c1"
        assert queue["state"] == "ENABLED" and queue["priority"] == 1
        assert queue["computeEnvironmentOrder"] == [
            {"order": n + 1, "computeEnvironment": env["computeEnvironmentArn"]}
            for n, env in enumerate(envs)
        ]
    # per region: 3 CreateComputeEnvironment and 1 CreateJobQueue, nothing updated
    for region in TWO:
        assert len(calls.of("CreateComputeEnvironment", region)) == 3
        assert len(calls.of("CreateJobQueue", region)) == 1
    assert not calls.of("UpdateComputeEnvironment") and not calls.of("UpdateJobQueue")


def test_every_instance_is_launched_with_imdsv2_hop_limit_1_and_no_metadata_for_bridges(
    aws: None,
) -> None:
    """Each compute environment launches its instances from the cluster's launch template:
    IMDSv2 required, hop limit 1, and a boot script that drops bridged containers'
    traffic to the metadata service; the template goes with the cluster."""
    import base64

    for region in TWO:
        ami(region, "hyper-worker-ami")
    deploy_cluster(TWO, Calls())
    for region in TWO:
        ec2 = boto3.client("ec2", region_name=region)
        (template,) = ec2.describe_launch_templates()["LaunchTemplates"]
        assert template["LaunchTemplateName"] == "hyper-test-c1-instances"
        assert {"Key": "hyper:host", "Value": "hyper-test"} in template["Tags"]
        (version,) = ec2.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"]
        )["LaunchTemplateVersions"]
        data = version["LaunchTemplateData"]
        # its instances and volumes carry the host's tag, which job roles may not touch
        tagged = {spec["ResourceType"]: spec["Tags"] for spec in data["TagSpecifications"]}
        for kind in ("instance", "volume"):
            assert {"Key": "hyper:host", "Value": "hyper-test"} in tagged[kind], kind
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        script = base64.b64decode(data["UserData"]).decode()
        assert script.startswith("MIME-Version: 1.0\n")  # Batch takes MIME multi-part only
        # the rules are set by a unit on every boot, before docker and the ECS agent,
        # which requires it (tests below run its script)
        assert launch_templates.BLOCK_SCRIPT in script and launch_templates.UNIT in script
        assert "Before=docker.service ecs.service" in launch_templates.UNIT
        assert "WantedBy=multi-user.target" in launch_templates.UNIT
        assert "Requires=hyper-block-imds.service" in launch_templates.ECS_DROP_IN
        assert "systemctl enable hyper-block-imds.service" in script
        # Amazon Linux 2023: iptables fetched when absent; no agent, so no job, without it
        assert "dnf install -y iptables-nft" in script and "systemctl mask --now ecs" in script
        shell = script.split('charset="us-ascii"\n\n', 1)[1].split("\n--==HYPER==--")[0]
        assert subprocess.run(["bash", "-n"], input=shell, text=True, check=False).returncode == 0
        envs = boto3.client("batch", region_name=region).describe_compute_environments()
        for env in envs["computeEnvironments"]:
            assert env["computeResources"]["launchTemplate"] == {
                "launchTemplateName": "hyper-test-c1-instances", "version": "$Default"}  # fmt: skip
    lines: list[str] = []
    roles = batch.ensure_cluster_roles(CLUSTER, NAMES, lines.append)
    for region in TWO:  # an update keeps the one template, and says nothing of it
        batch.deploy_cluster(region, CLUSTER, network(region), roles, NAMES, lines.append,
                             patience=QUICK)  # fmt: skip
    assert len(boto3.client("ec2", "us-east-1").describe_launch_templates()["LaunchTemplates"]) == 1
    assert not [line for line in lines if "keeps its" in line], lines
    for region in TWO:
        batch.delete_cluster(region, CLUSTER, NAMES, lambda _: None, patience=QUICK)
        assert not boto3.client("ec2", region).describe_launch_templates()["LaunchTemplates"]


def test_an_environment_made_before_launch_templates_says_it_keeps_none() -> None:
    wanted = {"launchTemplate": {"launchTemplateName": "hyper-test-c1-instances",
                                 "version": "$Default"}}  # fmt: skip
    assert clusters._unchanged_in_place({"type": "SPOT"}, {**wanted, "type": "SPOT"}) == [
        "launchTemplate"
    ]
    assert clusters._unchanged_in_place(wanted, wanted) == []


@pytest.mark.parametrize("strategy", ["SPOT_CAPACITY_OPTIMIZED", "BEST_FIT"])
def test_a_launch_template_of_an_older_release_gets_a_new_version_the_environments_take(
    aws: None, strategy: str
) -> None:
    """A cluster's launch template whose default version holds another release's data
    (another boot script) gets a new version of this release's, made its default; Batch
    takes $Default again only in an infrastructure update, so each environment that can
    have one is updated with the launch template; one that cannot (BEST_FIT) says so."""
    import base64

    cluster = CLUSTER.model_copy(update={"allocation_strategy": strategy, "compute_envs": 2,
                                         "main_region_image_name": None})  # fmt: skip
    region = "us-east-1"
    lines: list[str] = []
    roles = batch.ensure_cluster_roles(cluster, NAMES, lines.append)
    where = network(region)
    batch.deploy_cluster(region, cluster, where, roles, NAMES, lines.append, patience=QUICK)
    ec2 = boto3.client("ec2", region_name=region)
    name = NAMES.launch_template("c1")
    older = ec2.create_launch_template_version(
        LaunchTemplateName=name,
        LaunchTemplateData={"UserData": base64.b64encode(b"#!/bin/bash\ntrue\n").decode(),
                            "MetadataOptions": {"HttpTokens": "required"}},
    )["LaunchTemplateVersion"]["VersionNumber"]  # fmt: skip
    ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion=str(older))

    calls, lines = Calls(), []
    batch.deploy_cluster(region, cluster, where, roles, NAMES, lines.append, clients=calls,
                         patience=QUICK)  # fmt: skip
    (default,) = ec2.describe_launch_template_versions(
        LaunchTemplateName=name, Versions=["$Default"]
    )["LaunchTemplateVersions"]
    assert default["VersionNumber"] == older + 1
    data = default["LaunchTemplateData"]
    assert base64.b64decode(data["UserData"]).decode() == launch_templates.USER_DATA
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    updates = calls.of("UpdateComputeEnvironment")
    assert len(updates) == 2
    given = [u["computeResources"].get("launchTemplate") for u in updates]
    if strategy == "BEST_FIT":
        assert given == [None, None]
        assert sum("keeps its launch template's former version" in x for x in lines) == 2
    else:
        assert given == [{"launchTemplateName": name, "version": "$Default"}] * 2
        assert sum("new instances from the new launch template" in x for x in lines) == 2

    # the next deploy finds this release's data: no version, no infrastructure update
    calls = Calls()
    batch.deploy_cluster(region, cluster, where, roles, NAMES, lines.append, clients=calls,
                         patience=QUICK)  # fmt: skip
    assert not calls.of("CreateLaunchTemplateVersion")
    assert all("launchTemplate" not in u["computeResources"]
               for u in calls.of("UpdateComputeEnvironment"))  # fmt: skip


FAKE_IPTABLES = """#!/bin/bash
# a stand-in for iptables and ip6tables: their rules, one per line ("TOOL CHAIN ARGS..."),
# in $RULES; $FAIL names the tool that fails
tool=$(basename "$0")
[ "$FAIL" = "$tool" ] && exit 4
case "$1" in
  --new-chain) grep -qx "$tool chain $2" "$RULES" && exit 1; echo "$tool chain $2" >> "$RULES" ;;
  --check) chain=$2; shift 2; grep -qxF -- "$tool $chain $*" "$RULES" ;;
  --insert) chain=$2; shift 3; echo "$tool $chain $*" >> "$RULES" ;;
  *) exit 2 ;;
esac
"""


def run_block_script(tmp_path: Path, rules: Path, **env: str) -> int:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    for tool in ("iptables", "ip6tables"):
        (fake / tool).write_text(FAKE_IPTABLES)
        (fake / tool).chmod(0o755)
    script = tmp_path / "hyper-block-imds"
    script.write_text(launch_templates.BLOCK_SCRIPT)
    return subprocess.run(
        ["bash", str(script)], check=False, capture_output=True, text=True,
        env={"PATH": f"{fake}:/usr/bin:/bin", "RULES": str(rules), **env},
    ).returncode  # fmt: skip


def test_every_boot_sets_the_metadata_rules_once_and_fails_when_it_cannot(
    tmp_path: Path,
) -> None:
    """The unit's script, run at each boot: the two DROP rules (bridged containers, and
    every process on the host's network but root's) for the metadata service's IPv4
    address and, where the kernel has IPv6, its IPv6 one, each added only when missing; a
    failure is its exit status, so the ECS agent, which requires the unit, never starts."""
    rules = tmp_path / "rules"
    rules.touch()
    assert run_block_script(tmp_path, rules) == 0
    wanted = [
        f"{tool} {rule}"
        for tool, address in (("iptables", "169.254.169.254/32"),
                              ("ip6tables", "fd00:ec2::254/128"))
        if tool == "iptables" or Path("/proc/net/if_inet6").exists()
        for rule in ("chain DOCKER-USER",
                     f"DOCKER-USER --in-interface docker+ --destination {address} --jump DROP",
                     f"OUTPUT --destination {address} --match owner ! --uid-owner 0 --jump DROP")
    ]  # fmt: skip
    assert rules.read_text().splitlines() == wanted
    assert run_block_script(tmp_path, rules) == 0  # the service started again: no new rule
    assert rules.read_text().splitlines() == wanted
    rules.write_text("")  # a reboot: the kernel's rules are gone, the unit sets them again
    assert run_block_script(tmp_path, rules) == 0
    assert rules.read_text().splitlines() == wanted
    for tool in ("iptables", "ip6tables"):
        if tool == "iptables" or Path("/proc/net/if_inet6").exists():
            assert run_block_script(tmp_path, tmp_path / f"other-{tool}", FAIL=tool) != 0


def test_the_compute_resources_of_an_on_demand_cluster() -> None:
    cluster = ClusterSpec(name="od", type="ONDEMAND", allocation_strategy="SPOT_CAPACITY_OPTIMIZED")
    roles = batch.ClusterRoles("arn:service", "arn:profile", None)
    resources = batch.compute_resources(
        cluster, 500, Network(("s-1",), "sg-1"), roles, None, tags=NAMES.tags(cluster="od")
    )
    assert resources == {
        "type": "EC2",
        "allocationStrategy": "BEST_FIT_PROGRESSIVE",
        "minvCpus": 0,
        "maxvCpus": 500,
        "instanceTypes": ["optimal"],
        "subnets": ["s-1"],
        "securityGroupIds": ["sg-1"],
        "instanceRole": "arn:profile",
        "tags": {"hyper:host": "hyper-test", "hyper:cluster": "od"},
        "ec2Configuration": [{"imageType": "ECS_AL2023"}],  # not left to Batch's default
    }
    # the host's tag is hyper's: a cluster's own tags never replace it (the job roles'
    # limits on the host's machines key on it)
    own = ClusterSpec(name="od", compute_resources_tags={"hyper:host": "other", "team": "t"})
    assert batch.compute_resources(
        own, 8, Network(("s-1",), "sg-1"), roles, None, tags=NAMES.tags(cluster="od")
    )["tags"] == {"hyper:host": "hyper-test", "team": "t", "hyper:cluster": "od"}
    gpu = ClusterSpec(name="g", instance_list=["c5.large", "g5.xlarge"])
    assert batch.compute_resources(gpu, 8, Network(("s-1",), "sg-1"), roles, "ami-1", tags={})[
        "ec2Configuration"
    ] == [{"imageType": "ECS_AL2023_NVIDIA", "imageIdOverride": "ami-1"}]
    # without an AMI of its own, each type gets the family for it
    assert batch.compute_resources(gpu, 8, Network(("s-1",), "sg-1"), roles, None, tags={})[
        "ec2Configuration"
    ] == [{"imageType": "ECS_AL2023"}, {"imageType": "ECS_AL2023_NVIDIA"}]
    # Graviton GPU types (arm64): Batch's NVIDIA images are x86 only
    for kinds, families in (
        (["g5g.xlarge"], ["ECS_AL2023"]),
        (["g5g", "c7g.large", "m6gd.large"], ["ECS_AL2023"]),
        (["p4d.24xlarge", "g4dn.xlarge", "g4ad.xlarge", "g6e"], ["ECS_AL2023_NVIDIA"]),
        (["g5g.2xlarge", "g5.2xlarge"], ["ECS_AL2023", "ECS_AL2023_NVIDIA"]),
    ):
        assert batch.image_types(ClusterSpec(name="g", instance_list=kinds)) == families, kinds
    assert batch.split_vcpus(1000, 3) == [334, 333, 333]
    assert batch.split_vcpus(2, 3) == [1, 1]  # never an environment of 0 vCPUs


def test_a_best_fit_spot_cluster_gets_a_spot_fleet_role(aws: None) -> None:
    cluster = ClusterSpec(name="bf", allocation_strategy="BEST_FIT", compute_envs=1)
    roles = batch.ensure_cluster_roles(cluster, NAMES, lambda _: None)
    assert roles.spot_fleet_role and roles.spot_fleet_role.endswith(":role/hyper-test-spot-fleet")
    batch.deploy_cluster("us-east-1", cluster, network("us-east-1"), roles, NAMES,
                         lambda _: None, patience=QUICK)  # fmt: skip
    env = boto3.client("batch").describe_compute_environments()["computeEnvironments"][0]
    assert env["computeResources"]["spotIamFleetRole"] == roles.spot_fleet_role


def test_a_missing_ami_is_one_clear_line(aws: None) -> None:
    roles = batch.ensure_cluster_roles(CLUSTER, NAMES, lambda _: None)
    with pytest.raises(DeployFailed) as failed:
        batch.deploy_cluster("eu-west-1", CLUSTER, network("eu-west-1"), roles, NAMES,
                             lambda _: None, patience=QUICK)  # fmt: skip
    assert str(failed.value) == (
        "no AMI named 'hyper-worker-ami' in eu-west-1: copy it there first (aws ec2 copy-image)"
    )
    assert not boto3.client("batch", "eu-west-1").describe_compute_environments()[
        "computeEnvironments"
    ]


def test_a_launch_template_version_with_more_than_hypers_data_is_replaced(aws: None) -> None:
    """A default version holding this release's data and more (a key pair someone added)
    is not this release's: the deploy makes and defaults a version of hyper's data only."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    cluster = ClusterSpec(name="c1", compute_envs=1)
    name, _ = launch_templates.ensure_launch_template("us-east-1", cluster, NAMES, print)
    data = launch_templates.launch_template_data(NAMES.tags(cluster="c1"))
    added = ec2.create_launch_template_version(
        LaunchTemplateName=name, LaunchTemplateData={**data, "KeyName": "someones-key"}
    )["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion=str(added))
    _, renewed = launch_templates.ensure_launch_template("us-east-1", cluster, NAMES, print)
    (default,) = ec2.describe_launch_template_versions(
        LaunchTemplateName=name, Versions=["$Default"]
    )["LaunchTemplateVersions"]
    assert renewed and default["VersionNumber"] == added + 1
    assert "KeyName" not in default["LaunchTemplateData"]


def test_an_update_sets_max_vcpus_and_state_and_drops_environments(aws: None) -> None:
    for region in TWO:
        ami(region, "hyper-worker-ami")
    deploy_cluster(TWO, Calls())
    smaller = CLUSTER.model_copy(update={"max_vcpus": 600, "compute_envs": 2})
    calls = Calls()
    deploy_cluster(("us-east-1",), calls, smaller)

    updates = calls.of("UpdateComputeEnvironment", "us-east-1")
    assert updates[:2] == [
        {
            "computeEnvironment": f"hyper-test-c1-ce{n}",
            "state": "ENABLED",
            "computeResources": {"minvCpus": 0, "maxvCpus": 300},
        }
        for n in (1, 2)
    ]
    assert not calls.of("CreateComputeEnvironment") and not calls.of("CreateJobQueue")
    # the queue first leaves ce3, which is then disabled and deleted
    steps = calls.operations(
        "us-east-1", "UpdateJobQueue", "UpdateComputeEnvironment", "DeleteComputeEnvironment"
    )
    (operation, queue_update), *rest = steps[2:]
    assert operation == "UpdateJobQueue" and queue_update["state"] == "ENABLED"
    assert [
        (o["order"], o["computeEnvironment"].rsplit("/", 1)[1])
        for o in queue_update["computeEnvironmentOrder"]
    ] == [(1, "hyper-test-c1-ce1"), (2, "hyper-test-c1-ce2")]
    assert rest == [
        (
            "UpdateComputeEnvironment",
            {"computeEnvironment": "hyper-test-c1-ce3", "state": "DISABLED"},
        ),
        ("DeleteComputeEnvironment", {"computeEnvironment": "hyper-test-c1-ce3"}),
    ]
    for region, left in (("us-east-1", 2), ("eu-west-1", 3)):  # the other region untouched
        client = boto3.client("batch", region_name=region)
        envs = client.describe_compute_environments()["computeEnvironments"]
        names = [e["computeEnvironmentName"] for e in envs]
        assert names == [f"hyper-test-c1-ce{n}" for n in range(1, left + 1)]
        (queue,) = client.describe_job_queues()["jobQueues"]
        order = [
            o["computeEnvironment"].rsplit("/", 1)[1] for o in queue["computeEnvironmentOrder"]
        ]
        assert order == names


def test_a_delete_disables_and_deletes_the_queue_then_the_environments(aws: None) -> None:
    for region in TWO:
        ami(region, "hyper-worker-ami")
    deploy_cluster(TWO, Calls())
    calls = Calls()
    lines: list[str] = []
    for region in TWO:
        batch.delete_cluster(region, CLUSTER, NAMES, lines.append, clients=calls, patience=QUICK)
    batch.delete_cluster_roles(CLUSTER, NAMES, lines.append, clients=calls)

    changes = ("UpdateJobQueue", "DeleteJobQueue", "UpdateComputeEnvironment",
               "DeleteComputeEnvironment")  # fmt: skip
    for region in TWO:
        steps = [(op, p.get("jobQueue") or p.get("computeEnvironment"), p.get("state"))
                 for op, p in calls.operations(region, *changes)]  # fmt: skip
        assert steps == [
            ("UpdateJobQueue", "hyper-test-c1", "DISABLED"),
            ("DeleteJobQueue", "hyper-test-c1", None),
            ("UpdateComputeEnvironment", "hyper-test-c1-ce1", "DISABLED"),
            ("DeleteComputeEnvironment", "hyper-test-c1-ce1", None),
            ("UpdateComputeEnvironment", "hyper-test-c1-ce2", "DISABLED"),
            ("DeleteComputeEnvironment", "hyper-test-c1-ce2", None),
            ("UpdateComputeEnvironment", "hyper-test-c1-ce3", "DISABLED"),
            ("DeleteComputeEnvironment", "hyper-test-c1-ce3", None),
        ]
        client = boto3.client("batch", region_name=region)
        assert not client.describe_job_queues()["jobQueues"]
        assert not client.describe_compute_environments()["computeEnvironments"]
    roles = boto3.client("iam").list_roles()["Roles"]
    assert "hyper-test-c1-instance" not in [r["RoleName"] for r in roles]
    assert not boto3.client("iam").list_instance_profiles()["InstanceProfiles"]
    # deleting again finds nothing to do
    batch.delete_cluster("us-east-1", CLUSTER, NAMES, lines.append, patience=QUICK)


def test_an_invalid_compute_environment_is_one_clear_line() -> None:
    """Batch settling a new environment INVALID (a Stubber: moto's are always VALID)."""
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    cluster = ClusterSpec(name="c9", compute_envs=1)
    roles = batch.ClusterRoles("arn:aws:iam::1:role/s", "arn:aws:iam::1:instance-profile/i")
    name = "hyper-test-c9-ce1"
    reason = "CLIENT_ERROR - the instance profile\nis not ready"
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")  # fmt: skip
    clients = {"batch": client, "ec2": ec2}
    with Stubber(client) as stub, Stubber(ec2) as ec2_stub:
        ec2_stub.add_response(  # the cluster's launch template is there already
            "describe_launch_templates",
            {"LaunchTemplates": [{"LaunchTemplateName": "hyper-test-c9-instances"}]},
        )
        ec2_stub.add_response(  # holding this release's data
            "describe_launch_template_versions",
            {
                "LaunchTemplateVersions": [
                    {"LaunchTemplateData": batch.launch_template_data(NAMES.tags(cluster="c9"))}
                ]
            },
        )
        stub.add_response("describe_compute_environments", {"computeEnvironments": []})
        stub.add_response(
            "create_compute_environment",
            {"computeEnvironmentName": name, "computeEnvironmentArn": "arn:ce"},
        )
        stub.add_response(
            "describe_compute_environments",
            {
                "computeEnvironments": [
                    {
                        "computeEnvironmentName": name,
                        "computeEnvironmentArn": "arn:ce",
                        "status": "CREATING",
                    }
                ]
            },
        )
        stub.add_response(
            "describe_compute_environments",
            {
                "computeEnvironments": [
                    {
                        "computeEnvironmentName": name,
                        "computeEnvironmentArn": "arn:ce",
                        "status": "INVALID",
                        "statusReason": reason,
                    }
                ]
            },
        )
        with pytest.raises(DeployFailed) as failed:
            batch.deploy_cluster(
                "us-east-1",
                cluster,
                Network(("s",), "sg"),
                roles,
                NAMES,
                lambda _: None,
                clients=lambda service, _: clients[service],
                patience=QUICK,
            )
        stub.assert_no_pending_responses()
    assert str(failed.value) == (
        "compute environment hyper-test-c9-ce1 in us-east-1: CLIENT_ERROR - the instance "
        "profile\\nis not ready"
    )  # fmt: skip


def test_a_queue_needs_its_clusters_job_queue(aws: None) -> None:
    queue = QueueSpec(name="q1", compute_environment="c1")
    with pytest.raises(DeployFailed, match="cluster 'c1' has no usable job queue in us-east-1"):
        batch.check_queue("us-east-1", queue, NAMES)
    ami("us-east-1", "hyper-worker-ami")
    deploy_cluster(("us-east-1",), Calls())
    arn = batch.check_queue("us-east-1", queue, NAMES)
    assert arn.endswith(":job-queue/hyper-test-c1")


# ---- definitions --------------------------------------------------------------------------------

EVERYTHING = DefinitionSpec(
    name="d1",
    use_cyclone_image=False,
    image_uri="123456789012.dkr.ecr._REGION_.amazonaws.com/worker:2",
    jobs_to_workers_ratio=4,
    vcpus=2,
    memory_limit_mib=4096,
    linux_parameters={"sharedMemorySize": 256, "initProcessEnabled": True},
    ulimits=[{"name": "nofile", "softLimit": 4096, "hardLimit": 8192}],
    mount_points=[{"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": False}],
    host_volumes=[{"name": "scratch", "host": {"sourcePath": "/mnt/scratch"}}],
    gpu_count=1,
    environment={"MODEL": "tuflow", "THREADS": "2"},
    privileged=True,
    user="worker",
    timeout_minutes=90,
    iam_policies=["AmazonS3ReadOnlyAccess", "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"],
    log_driver="awslogs",
    log_options={"awslogs-group": "/hyper/d1"},
)


def expected_container(region: str, role: str) -> dict[str, Any]:
    return {
        "image": f"123456789012.dkr.ecr.{region}.amazonaws.com/worker:2",
        "command": ["/usr/local/bin/start.sh"],
        "resourceRequirements": [
            {"type": "VCPU", "value": "2"},
            {"type": "MEMORY", "value": "4096"},
            {"type": "GPU", "value": "1"},
        ],
        "environment": [
            {"name": "HYPER_API_KEY", "value": SECRET},
            {"name": "HYPER_DEFINITION", "value": "d1"},
            {"name": "HYPER_LIFETIME_SECONDS", "value": "5400"},
            {"name": "MODEL", "value": "tuflow"},
            {"name": "THREADS", "value": "2"},
        ],
        "jobRoleArn": role,
        "privileged": True,
        "ulimits": [{"name": "nofile", "softLimit": 4096, "hardLimit": 8192}],
        "mountPoints": [
            {"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": False}
        ],
        "volumes": [{"name": "scratch", "host": {"sourcePath": "/mnt/scratch"}}],
        "linuxParameters": {"sharedMemorySize": 256, "initProcessEnabled": True},
        # no "user": the worker stays root and runs its jobs as "worker" (worker.identity)
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/hyper/d1"}},
    }


def test_the_job_definition_request_is_every_field_of_the_definition() -> None:
    request = batch.job_definition(
        "eu-west-1", EVERYTHING, NAMES, image=EVERYTHING.image_uri, job_role_arn="arn:role",
        secret_arn=SECRET,
    )  # fmt: skip
    assert request == {
        "jobDefinitionName": "hyper-test-d1",
        "type": "container",
        "platformCapabilities": ["EC2"],
        "containerProperties": expected_container("eu-west-1", "arn:role"),
        "retryStrategy": {"attempts": 1},  # hyper retries, Batch never does
        "timeout": {"attemptDurationSeconds": 5400},
        "propagateTags": True,
        "tags": {"hyper:host": "hyper-test", "hyper:definition": "d1"},
    }


def test_workers_log_to_the_hosts_group_not_batchs_default() -> None:
    """Batch's default awslogs group, /aws/batch/job, is every team's: a definition that
    names no log group of its own logs to the host's (made in a region by its first
    worker there), and one that names its own keeps it."""
    plain = DefinitionSpec(name="d2", use_cyclone_image=False, image_uri="w:1")
    own = {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/hyper/test/workers", "awslogs-create-group": "true"},
    }
    for definition in (plain, plain.model_copy(update={"log_driver": "AWSLOGS"})):
        request = batch.job_definition("eu-west-1", definition, NAMES, image="w:1",
                                       job_role_arn="r", secret_arn=None,
                                       log_group="/hyper/test/workers")  # fmt: skip
        assert request["containerProperties"]["logConfiguration"] == own
    request = batch.job_definition("eu-west-1", EVERYTHING, NAMES, image="w:1",
                                   job_role_arn="r", secret_arn=None,
                                   log_group="/hyper/test/workers")  # fmt: skip
    assert request["containerProperties"]["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/hyper/d1"},
    }
    syslog = plain.model_copy(update={"log_driver": "SYSLOG"})
    request = batch.job_definition("eu-west-1", syslog, NAMES, image="w:1", job_role_arn="r",
                                   secret_arn=None, log_group="/hyper/test/workers")  # fmt: skip
    assert request["containerProperties"]["logConfiguration"] == {"logDriver": "syslog"}


def test_job_definitions_are_registered_in_every_region(aws: None) -> None:
    lines: list[str] = []
    role = batch.ensure_job_role(EVERYTHING, NAMES, SECRET, lines.append)
    image = batch.definition_image(EVERYTHING, None)
    for region in TWO:
        batch.deploy_definition(region, EVERYTHING, NAMES, lines.append, image=image,
                                job_role_arn=role, secret_arn=SECRET)  # fmt: skip
    for region in TWO:
        client = boto3.client("batch", region_name=region)
        (found,) = client.describe_job_definitions(jobDefinitionName="hyper-test-d1")[
            "jobDefinitions"
        ]
        assert found["status"] == "ACTIVE" and found["revision"] == 1
        assert found["type"] == "container"
        assert found["retryStrategy"] == {"attempts": 1}
        assert found["timeout"] == {"attemptDurationSeconds": 5400}
        assert found["platformCapabilities"] == ["EC2"]
        container = found["containerProperties"]
        for key, value in expected_container(region, role).items():
            assert container[key] == value, key

    iam = boto3.client("iam")
    assert role.endswith(":role/hyper-test-d1-job")
    trust = iam.get_role(RoleName="hyper-test-d1-job")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    attached = iam.list_attached_role_policies(RoleName="hyper-test-d1-job")["AttachedPolicies"]
    assert sorted(p["PolicyName"] for p in attached) == [
        "AmazonS3ReadOnlyAccess",
        "CloudWatchAgentServerPolicy",
    ]
    inline = iam.get_role_policy(RoleName="hyper-test-d1-job", PolicyName="hyper-api-key")
    assert inline["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET}
    ]

    # an update is a new revision, the old one deregistered; a delete leaves none active
    changed = EVERYTHING.model_copy(update={"vcpus": 4, "iam_policies": []})
    role = batch.ensure_job_role(changed, NAMES, SECRET, lines.append)
    assert not iam.list_attached_role_policies(RoleName="hyper-test-d1-job")["AttachedPolicies"]
    batch.deploy_definition("us-east-1", changed, NAMES, lines.append, image=image,
                            job_role_arn=role, secret_arn=SECRET)  # fmt: skip
    client = boto3.client("batch", region_name="us-east-1")
    revisions = client.describe_job_definitions(jobDefinitionName="hyper-test-d1")
    assert {d["revision"]: d["status"] for d in revisions["jobDefinitions"]} == {
        1: "INACTIVE",
        2: "ACTIVE",
    }
    for region in TWO:
        batch.delete_definition(region, changed, NAMES, lines.append)
        revisions = boto3.client("batch", region).describe_job_definitions(
            jobDefinitionName="hyper-test-d1", status="ACTIVE"
        )
        assert not revisions["jobDefinitions"]
    batch.delete_job_role(changed, NAMES, lines.append)
    assert "hyper-test-d1-job" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]


def test_a_definition_of_a_host_image_runs_its_ecr_uri() -> None:
    image = ImageSpec(
        name="worker", uri="1.dkr.ecr._REGION_.amazonaws.com/hyper-test/worker:latest"
    )
    definition = DefinitionSpec(name="d2", cyclone_image_name="worker")
    uri = batch.definition_image(definition, image)
    request = batch.job_definition("ap-southeast-1", definition, NAMES, image=uri,
                                   job_role_arn="arn:role", secret_arn=SECRET)  # fmt: skip
    container = request["containerProperties"]
    assert container["image"] == "1.dkr.ecr.ap-southeast-1.amazonaws.com/hyper-test/worker:latest"
    assert "timeout" not in request and "logConfiguration" not in container
    assert "linuxParameters" not in container and "user" not in container
    assert container["resourceRequirements"] == [
        {"type": "VCPU", "value": "1"},
        {"type": "MEMORY", "value": "1024"},
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cyclone_image_name": "native"}, "definition 'd3' runs in image 'native', which has "
         "no container image in AWS: give it a pushed image or an image URI"),
        ({"use_cyclone_image": False, "image_uri": "x", "log_driver": "LOGENTRIES"},
         "AWS Batch has no LOGENTRIES log driver: use one of AWSLOGS, FLUENTD, GELF, JOURNALD, "
         "JSON_FILE, SPLUNK, SYSLOG"),
        ({"use_cyclone_image": False, "image_uri": "x", "environment": {"AWS_BATCH_X": "1"}},
         "environment names starting AWS_BATCH are Batch's: AWS_BATCH_X"),
        ({"use_cyclone_image": False, "image_uri": "x",
          "mount_points": [{"sourceVolume": "nope", "containerPath": "/data"}]},
         "mount point '/data' names no host volume ('nope')"),
    ],
)  # fmt: skip
def test_definitions_batch_cannot_run_are_one_clear_line(
    changes: dict[str, Any], message: str
) -> None:
    definition = DefinitionSpec(name="d3", **changes)
    with pytest.raises(DeployFailed) as failed:
        uri = batch.definition_image(definition, None)
        batch.job_definition("us-east-1", definition, NAMES, image=uri, job_role_arn="r",
                             secret_arn=SECRET)  # fmt: skip
    assert str(failed.value) == message


# ---- images ---------------------------------------------------------------------------------


def test_an_image_is_a_repository_in_every_region(aws: None) -> None:
    image = ImageSpec(name="Worker.GPU")
    lines: list[str] = []
    uris = {r: batch.deploy_repository(r, image, NAMES, lines.append) for r in TWO}
    for region, uri in uris.items():
        repository = NAMES.repository("Worker.GPU")
        assert uri == f"123456789012.dkr.ecr.{region}.amazonaws.com/{repository}"
        found = boto3.client("ecr", region).describe_repositories()["repositories"]
        assert [r["repositoryName"] for r in found] == [repository]
        assert found[0]["imageScanningConfiguration"] == {"scanOnPush": True}
    assert batch.deploy_repository("us-east-1", image, NAMES, lines.append) == uris["us-east-1"]
    assert len([line for line in lines if "created repository" in line]) == 2
    template = batch.uri_template(uris["eu-west-1"], "eu-west-1")
    assert template.replace("_REGION_", "us-east-1") == uris["us-east-1"] + ":latest"
    for region in TWO:
        batch.delete_repository(region, image, NAMES, lines.append)
        assert not boto3.client("ecr", region).describe_repositories()["repositories"]
    batch.delete_repository("us-east-1", image, NAMES, lines.append)  # already gone: fine


def test_names_aws_takes() -> None:
    assert NAMES.repository("Worker.GPU").startswith("hyper-test/worker-gpu-")
    assert NAMES.repository("worker") == "hyper-test/worker"
    assert NAMES.compute_env("c.1", 2).startswith("hyper-test-c_1-ce2-")
    assert NAMES.compute_env("c.1", 2) != NAMES.compute_env("c_1", 2)
    long = NAMES.job_role("d" * 120)
    assert len(long) <= 64 and long != NAMES.job_role("d" * 121)


def test_without_a_docker_engine_images_fail_in_one_clear_line(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine has a docker client but no engine; a host pointing at no engine is the
    same everywhere."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/hyper-test/docker.sock")
    lines: list[str] = []
    for attempt in (
        lambda: batch.build_and_push(
            ImageSpec(name="w", local_build_directory=str(tmp_path)), TWO, NAMES, lines.append
        ),
        lambda: batch.push_local_image(
            ImageSpec(name="w", local_docker_image="mine:1"), TWO, NAMES, lines.append
        ),
    ):
        with pytest.raises(DeployFailed) as failed:
            attempt()
        message = str(failed.value)
        assert "\n" not in message
        assert message.startswith("no docker engine answers on this machine (docker info: ")
        assert message.endswith("): start one to build and push images")
    for region in TWO:  # nothing was made
        assert not boto3.client("ecr", region).describe_repositories()["repositories"]

    monkeypatch.setenv("PATH", str(tmp_path))  # no docker client at all
    with pytest.raises(DeployFailed) as failed:
        batch.push_local_image(ImageSpec(name="w", local_docker_image="mine:1"), TWO, NAMES,
                               lines.append)  # fmt: skip
    assert str(failed.value) == "docker is not installed: images are built and pushed with docker"


# ---- the launcher ---------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "store.db")
    yield db
    db.close()


DEFINITION = DefinitionSpec(name="d1", use_cyclone_image=False, image_uri="worker:1", vcpus=1)


def put(store: Store, kind: ResourceKind, spec: Spec) -> None:
    store.put_resource(kind.value, spec.name, spec.model_dump(), "ACTIVE", ["ready"], time.time())


def aws_host(
    store: Store,
    regions: tuple[str, ...],
    weights: dict[str, int] | None,
    instance_types: tuple[str, ...] = ("optimal",),
) -> None:
    """The host's records and their Batch side: cluster c1 (10,000 vCPUs a region), queue q1
    weighted over `regions` (`auto` when weights is None), definition d1."""
    cluster = ClusterSpec(
        name="c1", instance_list=list(instance_types), max_vcpus=10_000, compute_envs=1
    )
    for region in regions:
        put(store, ResourceKind.REGION, RegionSpec(name=region, kind="aws"))
    put(store, ResourceKind.CLUSTER, cluster)
    put(store, ResourceKind.QUEUE, QueueSpec(
        name="q1", compute_environment="c1", automate_region_weights=weights is None,
        region_distribution_weights=weights or {},
    ))  # fmt: skip
    put(store, ResourceKind.DEFINITION, DEFINITION)
    roles = batch.ensure_cluster_roles(cluster, NAMES, lambda _: None)
    for region in regions:
        batch.deploy_cluster(region, cluster, network(region), roles, NAMES, lambda _: None,
                             patience=QUICK)  # fmt: skip
        batch.deploy_definition(region, DEFINITION, NAMES, lambda _: None, image="worker:1",
                                job_role_arn="arn:aws:iam::123456789012:role/r",
                                secret_arn=SECRET)  # fmt: skip


class Launched:
    """A BatchLauncher on moto clients, with its SubmitJob calls noted and no real sleep."""

    def __init__(self, store: Store, **options: Any) -> None:
        self.calls = Calls()
        self.sleeps: list[float] = []
        self.launcher = BatchLauncher(
            store, url=URL, names=NAMES,
            clients=lambda region: self.calls("batch", region),
            sleep=self.sleeps.append, **options,
        )  # fmt: skip

    def submits(self, region: str | None = None) -> list[dict[str, Any]]:
        return self.calls.of("SubmitJob", region)


def environment(submit: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in submit["containerOverrides"]["environment"]}


def submitted(region: str) -> list[int | None]:
    """The jobs in moto's job queue of c1 in `region`: array sizes, None for single jobs."""
    client = boto3.client("batch", region_name=region)
    listed = client.list_jobs(jobQueue="hyper-test-c1", jobStatus="SUCCEEDED")["jobSummaryList"]
    jobs = [j["jobId"] for j in listed if ":" not in j["jobId"]]  # not the arrays' children
    described = client.describe_jobs(jobs=jobs)["jobs"] if jobs else []
    return [(j.get("arrayProperties") or {}).get("size") for j in described]


def test_a_demand_of_1000_is_one_array_job_per_region_split_5_3_2(
    aws: None, store: SQLiteStore
) -> None:
    weights = {"us-east-1": 5, "eu-west-1": 3, "ap-southeast-1": 2}
    aws_host(store, THREE, weights)
    store.submit([NewJob(name="sim", queue="q1", definition="d1", script="echo hi\n",
                         array=ArrayTasks(indices=list(range(1, 1001))))], time.time())  # fmt: skip
    launched = Launched(store)
    scheduler = Scheduler(store, {"aws": launched.launcher}, silence_seconds=600)

    report = scheduler.tick(time.time())

    shares = split_by_weight(1000, weights)
    assert shares == {"us-east-1": 500, "eu-west-1": 300, "ap-southeast-1": 200}
    assert report.started == 1000
    for region, share in shares.items():
        (submit,) = launched.submits(region)  # ONE SubmitJob per region
        assert submit["arrayProperties"] == {"size": share}
        assert submit["jobQueue"] == "hyper-test-c1"
        assert submit["jobDefinition"] == "hyper-test-d1"
        env = environment(submit)
        assert env["HYPER_URL"] == URL and env["HYPER_QUEUE"] == "q1"
        prefix = env["HYPER_WORKER_ID_PREFIX"]
        workers = [w for w in store.live_workers() if w.region == region]
        assert sorted(w.id for w in workers) == sorted(f"{prefix}-{i}" for i in range(share))
        assert {(w.launcher, w.queue, w.definition) for w in workers} == {("aws", "q1", "d1")}
        assert submitted(region) == [share]  # what moto holds in the region's queue
    assert len(launched.submits()) == 3
    assert len({w.id for w in store.live_workers()}) == 1000
    # the key is in no call, only the secret's ARN in the job definition
    assert "HYPER_API_KEY" not in json.dumps(launched.calls.calls)


def test_auto_weights_come_from_spot_placement_scores_asked_once(
    aws: None, store: SQLiteStore
) -> None:
    aws_host(store, THREE, None, instance_types=("c5.large",))
    store.submit([NewJob(name="sim", queue="q1", definition="d1", script="echo hi\n",
                         array=ArrayTasks(indices=list(range(1, 1001))))], time.time())  # fmt: skip
    ec2 = boto3.client("ec2", region_name="ap-southeast-1")
    with Stubber(ec2) as stub:  # moto has no GetSpotPlacementScores
        stub.add_response(
            "get_spot_placement_scores",
            {"SpotPlacementScores": [{"Region": "us-east-1", "Score": 9},
                                     {"Region": "eu-west-1", "Score": 3},
                                     {"Region": "ap-southeast-1", "Score": 3}]},
            {"InstanceTypes": ["c5.large"], "TargetCapacity": 10_000,
             "TargetCapacityUnitType": "vcpu", "SingleAvailabilityZone": False,
             "RegionNames": sorted(THREE)},
        )  # fmt: skip
        launched = Launched(store, ec2_clients=lambda region: ec2)
        scheduler = Scheduler(store, {"aws": launched.launcher}, silence_seconds=600)
        scheduler.tick(time.time())
        stub.assert_no_pending_responses()
        # moto's Batch ends the arrays at once, so the next tick starts them all again:
        # with the scores kept (a second call would find no answer and fall back to the
        # fixed weights, 5 : 1 : 5)
        scheduler.tick(time.time())

    # 9²/3 : 3²/3 : 3²/3 = 27 : 3 : 3 of 1,000 workers, both times
    sizes = {r: [s["arrayProperties"]["size"] for s in launched.submits(r)] for r in THREE}
    assert sizes == {"us-east-1": [818] * 2, "eu-west-1": [91] * 2, "ap-southeast-1": [91] * 2}


def test_the_submit_job_request(aws: None, store: SQLiteStore) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store, idle_seconds=90)
    request = LaunchRequest("q1", DEFINITION, "us-east-1", 7)
    records = launched.launcher.launch(request)
    (submit,) = launched.submits()
    prefix = environment(submit)["HYPER_WORKER_ID_PREFIX"]
    assert submit == {
        "jobName": f"hyper-test-q1-d1-{prefix}",
        "jobQueue": "hyper-test-c1",
        "jobDefinition": "hyper-test-d1",
        "arrayProperties": {"size": 7},
        "containerOverrides": {
            "environment": [
                {"name": "HYPER_DEFINITION", "value": "d1"},
                {"name": "HYPER_HEARTBEAT_SECONDS", "value": "0.5"},
                {"name": "HYPER_IDLE_SECONDS", "value": "90"},
                {"name": "HYPER_QUEUE", "value": "q1"},
                {"name": "HYPER_REGION", "value": "us-east-1"},
                {"name": "HYPER_URL", "value": URL},
                {"name": "HYPER_WORKER_ID_PREFIX", "value": prefix},
            ]
        },
        "tags": {"hyper:host": "hyper-test"},  # what the API function may stop
    }
    assert [r.id for r in records] == [f"{prefix}-{i}" for i in range(7)]


def test_one_worker_is_a_single_job(aws: None, store: SQLiteStore) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store)
    (record,) = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
    (submit,) = launched.submits()
    assert "arrayProperties" not in submit
    env = environment(submit)
    assert env["HYPER_WORKER_ID"] == record.id and "HYPER_WORKER_ID_PREFIX" not in env
    assert submitted("us-east-1") == [None]
    # the base class's one-at-a-time launch goes through the same hook: single jobs
    records = Launcher.launch(launched.launcher, LaunchRequest("q1", DEFINITION, "us-east-1", 2))
    assert [environment(s)["HYPER_WORKER_ID"] for s in launched.submits()[1:]] == [
        r.id for r in records
    ]
    assert submitted("us-east-1") == [None, None, None]


def test_workers_get_a_token_for_their_own_launch_only_and_no_key_in_the_submit(
    aws: None, store: SQLiteStore
) -> None:
    """The submitted job's overrides hold no key: DescribeJobs shows them to whoever may
    read the account's jobs (ReadOnlyAccess has batch:DescribeJobs). The worker key comes
    from the job definition's secrets; the token alone opens nothing."""
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    tokens = WorkerTokens("the-host-key")
    launched = Launched(store, worker_key="the-worker-key", tokens=tokens)
    array = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 3))
    (single,) = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
    first, second = (environment(s) for s in launched.submits())
    for env in (first, second):
        assert "HYPER_API_KEY" not in env
    assert "the-worker-key" not in json.dumps(launched.calls.calls)
    client = boto3.client("batch", region_name="us-east-1")
    ids = [
        j["jobId"]
        for status in ("SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED")
        for j in client.list_jobs(jobQueue="hyper-test-c1", jobStatus=status)["jobSummaryList"]
    ]
    described = client.describe_jobs(jobs=ids)["jobs"]  # what a read-only principal sees
    assert described and "the-worker-key" not in json.dumps(described, default=str)
    # each launch's token opens its own workers, and no other launch's
    assert all(tokens.valid(r.id, first["HYPER_WORKER_TOKEN"]) for r in array)
    assert tokens.valid(single.id, second["HYPER_WORKER_TOKEN"])
    assert not tokens.valid(single.id, first["HYPER_WORKER_TOKEN"])
    assert not any(tokens.valid(r.id, second["HYPER_WORKER_TOKEN"]) for r in array)
    assert "the-host-key" not in json.dumps(launched.calls.calls)


def test_a_job_role_reads_no_secret_when_workers_are_given_their_key(aws: None) -> None:
    """A host whose launcher gives workers the worker key and a token: job roles read no
    secret, and the inline policy an older role had goes."""
    iam = boto3.client("iam")
    batch.ensure_job_role(DEFINITION, NAMES, SECRET, lambda _: None)
    listed = iam.list_role_policies(RoleName="hyper-test-d1-job")["PolicyNames"]
    assert sorted(listed) == ["hyper-api-key", JOB_LIMITS]
    role = batch.ensure_job_role(DEFINITION, NAMES, None, lambda _: None)
    listed = iam.list_role_policies(RoleName="hyper-test-d1-job")["PolicyNames"]
    assert listed == [JOB_LIMITS]
    request = batch.job_definition("us-east-1", DEFINITION, NAMES, image="worker:1",
                                   job_role_arn=role, secret_arn=None)  # fmt: skip
    names = {e["name"] for e in request["containerProperties"]["environment"]}
    assert "HYPER_API_KEY" not in names


def test_the_worker_key_reaches_workers_from_the_definitions_secrets(aws: None) -> None:
    """The job definition names the worker key's secret (`secrets`, read by the ECS agent
    with an execution role that may read that secret and nothing else), so neither the
    definition nor a submitted job holds the key."""
    secret = boto3.client("secretsmanager").create_secret(
        Name="hyper/test/worker-key", SecretString="the-worker-key")["ARN"]  # fmt: skip
    execution = batch.ensure_execution_role(NAMES, secret, lambda _: None)
    iam = boto3.client("iam")
    (policy,) = iam.list_role_policies(RoleName=NAMES.execution_role())["PolicyNames"]
    document = iam.get_role_policy(RoleName=NAMES.execution_role(), PolicyName=policy)
    grant, *agent = document["PolicyDocument"]["Statement"]
    assert (grant["Action"], grant["Resource"]) == ("secretsmanager:GetSecretValue", secret)
    # an agent with an execution role pulls and logs with it: the host's own only
    assert {s["Sid"] for s in agent} == {"HostImages", "NoNarrowerResource"}
    assert not any("secretsmanager" in str(s["Action"]) for s in agent)
    assert iam.list_attached_role_policies(RoleName=NAMES.execution_role())[
        "AttachedPolicies"] == []  # fmt: skip
    role = batch.ensure_job_role(DEFINITION, NAMES, None, lambda _: None)
    arn = batch.deploy_definition(
        "us-east-1", DEFINITION, NAMES, lambda _: None, image="worker:1", job_role_arn=role,
        secret_arn=None, worker_secret_arn=secret, execution_role_arn=execution,
    )  # fmt: skip
    (registered,) = boto3.client("batch").describe_job_definitions(jobDefinitions=[arn])[
        "jobDefinitions"]  # fmt: skip
    container = registered["containerProperties"]
    assert container["secrets"] == [{"name": "HYPER_API_KEY", "valueFrom": secret}]
    assert container["executionRoleArn"] == execution
    assert "the-worker-key" not in json.dumps(registered, default=str)


@pytest.mark.slow
def test_25000_workers_are_arrays_of_10000_10000_and_5000(aws: None, store: SQLiteStore) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store)
    records = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 25_000))
    sizes = [s["arrayProperties"]["size"] for s in launched.submits()]
    assert sizes == [10_000, 10_000, 5_000]
    assert len(records) == 25_000 and len({r.id for r in records}) == 25_000
    prefixes = [environment(s)["HYPER_WORKER_ID_PREFIX"] for s in launched.submits()]
    assert len(set(prefixes)) == 3
    assert records[10_000].id == f"{prefixes[1]}-0" and records[-1].id == f"{prefixes[2]}-4999"
    # 10,001 workers: an array of 10,000 and a single job
    launched = Launched(store)
    launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 10_001))
    assert [s.get("arrayProperties") for s in launched.submits()] == [{"size": 10_000}, None]


def throttle(client: Any, times: int) -> list[str]:
    """Batch answers SubmitJob with TooManyRequestsException the first `times` calls."""
    seen: list[str] = []

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        seen.append("SubmitJob")
        if len(seen) > times:
            return None  # on to moto
        body = {"Error": {"Code": "TooManyRequestsException", "Message": "Too Many Requests"},
                "ResponseMetadata": {"HTTPStatusCode": 429}}  # fmt: skip
        return AWSResponse("https://batch.test", 429, {}, None), body

    client.meta.events.register("before-call.batch.SubmitJob", answer)
    return seen


def test_throttled_submits_back_off_with_jitter(aws: None, store: SQLiteStore) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store, backoff_seconds=0.5, jitter=lambda low, high: high)
    seen = throttle(launched.launcher.client("us-east-1"), times=3)

    records = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 4))

    assert len(records) == 4
    assert len(seen) == 4  # three throttled, the fourth taken
    assert launched.sleeps == [0.5, 1.0, 2.0]  # the full step when the jitter is at its top
    assert submitted("us-east-1") == [4]
    # the jitter keeps at least half of each step, and the steps stop growing at the cap
    launcher = BatchLauncher(store, url=URL, names=NAMES, backoff_seconds=1,
                             backoff_cap_seconds=8, jitter=lambda low, high: low)  # fmt: skip
    assert [launcher.backoff(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_a_launch_throttled_past_its_attempts_starts_nothing(aws: None, store: SQLiteStore) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store, max_attempts=3)
    seen = throttle(launched.launcher.client("us-east-1"), times=99)
    assert launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 5)) == []
    assert len(seen) == 3 and len(launched.sleeps) == 2


def test_the_token_bucket_keeps_to_50_submits_a_second() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(50, clock=lambda: now[0], sleep=sleep)
    for _ in range(50):  # a burst of 50 at once
        bucket.take()
    assert now[0] == 0
    for _ in range(100):
        bucket.take()
    assert now[0] == pytest.approx(2.0)  # 100 more take two seconds


def test_capacity_is_the_clusters_vcpus_less_what_workers_hold(
    aws: None, store: SQLiteStore
) -> None:
    put(store, ResourceKind.CLUSTER, ClusterSpec(name="c1", max_vcpus=100))
    put(store, ResourceKind.CLUSTER, ClusterSpec(name="c2", max_vcpus=28))
    put(store, ResourceKind.DEFINITION, DefinitionSpec(name="big", vcpus=16))
    put(store, ResourceKind.DEFINITION, DefinitionSpec(name="small", vcpus=2))
    launcher = BatchLauncher(store, url=URL, names=NAMES)
    assert launcher.capacity("us-east-1", "big") == 8
    now = time.time()
    for n in range(3):
        store.add_worker(WorkerRecord(f"w{n}", "q1", "big", "us-east-1", "aws", None,
                                      "STARTING", now, now))  # fmt: skip
    store.add_worker(WorkerRecord("other", "q1", "big", "eu-west-1", "aws", None, "STARTING",
                                  now, now))  # fmt: skip
    assert launcher.capacity("us-east-1", "big") == (128 - 48) // 16
    assert launcher.capacity("us-east-1", "small") == (128 - 48) // 2
    assert launcher.capacity("us-east-1", "missing") is None
    # its own clients leave throttling to its back-off
    assert launcher.client("us-east-1").meta.config.retries["total_max_attempts"] == 1


def test_alive_and_stop_from_batch(aws: None, store: SQLiteStore) -> None:
    """moto ends jobs at once: every worker reads as gone, all in one DescribeJobs."""
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store)
    records = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 3))
    records += launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
    assert [launched.launcher.alive(r) for r in records] == [False] * 4
    assert len(launched.calls.of("DescribeJobs")) == 1
    stranger = WorkerRecord("w-0", "q1", "d1", "us-east-1", "aws", None, "ACTIVE", 0, 0)
    assert launched.launcher.alive(stranger) is None

    more = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 3))
    launched.launcher.stop(more[1])
    (terminate,) = launched.calls.of("TerminateJob")
    parent = launched.submits()[-1]
    job_id = terminate["jobId"]
    assert job_id.endswith(":1") and terminate["reason"] == "hyper: worker stopped"
    assert parent["arrayProperties"] == {"size": 3}
    assert launched.launcher.alive(more[1]) is None  # stopped: no longer followed


def test_alive_reads_arrays_with_some_children_ended(store: SQLiteStore) -> None:
    """Batch with jobs still running (a Stubber: moto ends every job at once)."""
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    clock = [0.0]
    launcher = BatchLauncher(store, url=URL, names=NAMES, clients=lambda region: client,
                             clock=lambda: clock[0], status_seconds=30)  # fmt: skip
    aws_host_records(store)
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobName": "j", "jobId": "array-1"},
                          {"jobName": stubbed_any(), "jobQueue": "hyper-test-c1",
                           "jobDefinition": "hyper-test-d1", "arrayProperties": {"size": 3},
                           "containerOverrides": stubbed_any(),
                           "tags": {"hyper:host": "hyper-test"}})  # fmt: skip
        stub.add_response("submit_job", {"jobName": "j", "jobId": "single-1"})
        array = launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 3))
        (single,) = launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
        summary = {"RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1}
        stub.add_response("describe_jobs", {"jobs": [
            job("array-1", "RUNNING", arrayProperties={"statusSummary": summary, "size": 3}),
            job("single-1", "RUNNABLE"),
        ]}, {"jobs": ["array-1", "single-1"]})  # fmt: skip
        stub.add_response("list_jobs", {"jobSummaryList": [
            {"jobId": "array-1:2", "jobName": "j", "arrayProperties": {"index": 2}}]},
            {"arrayJobId": "array-1", "jobStatus": "FAILED"})  # fmt: skip
        stub.add_response("list_jobs", {"jobSummaryList": [
            {"jobId": "array-1:0", "jobName": "j", "arrayProperties": {"index": 0}}]},
            {"arrayJobId": "array-1", "jobStatus": "SUCCEEDED"})  # fmt: skip
        assert [launcher.alive(r) for r in [*array, single]] == [False, True, False, True]
        clock[0] = 10  # within status_seconds: no new call
        assert launcher.alive(array[1]) is True and launcher.alive(single) is True
        stub.assert_no_pending_responses()


def test_a_spot_reclaim_is_not_counted_against_the_jobs_retries(store: SQLiteStore) -> None:
    """Batch fails a job whose EC2 instance was terminated (a spot reclaim) with the
    statusReason "Host EC2 (instance ...) terminated.": the jobs its worker held go back
    to Waiting without using a retry (none are left here), whether the worker was a
    single job or a child of an array; a worker that failed otherwise still costs its
    job a retry (and so fails it). A Stubber plays Batch, as moto ends jobs at once."""
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    launcher = BatchLauncher(store, url=URL, names=NAMES, clients=lambda region: client,
                             clock=lambda: 0.0, status_seconds=30)  # fmt: skip
    aws_host_records(store)
    gone = "Host EC2 (instance i-0123456789abcdef0) terminated."
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobName": "j", "jobId": "single-1"})
        stub.add_response("submit_job", {"jobName": "j", "jobId": "array-1"})
        workers = launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
        workers += launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 2))
        now = time.time()
        held = {}
        for n, worker in enumerate(workers):
            store.add_worker(worker)
            new = NewJob(name=f"j{n}", queue="q1", definition="d1", script="sleep 60\n",
                         retries=0, env={}, submit_dir=None)  # fmt: skip
            (job_id,) = store.submit([new], now)
            (claim,) = store.claim(worker.id, "q1", "d1", 1, 600, now)
            held[worker.id] = claim.id
            assert claim.id == job_id
        summary = {"FAILED": 2}
        stub.add_response("describe_jobs", {"jobs": [
            job("array-1", "FAILED", arrayProperties={"statusSummary": summary, "size": 2}),
            job("single-1", "FAILED", statusReason=gone),
        ]})  # fmt: skip
        stub.add_response("list_jobs", {"jobSummaryList": [
            {"jobId": "array-1:0", "jobName": "j", "arrayProperties": {"index": 0},
             "statusReason": gone},
            {"jobId": "array-1:1", "jobName": "j", "arrayProperties": {"index": 1},
             "statusReason": "Essential container in task exited"},
        ]}, {"arrayJobId": "array-1", "jobStatus": "FAILED"})  # fmt: skip
        Scheduler(store, {"aws": launcher}, silence_seconds=600).tick(now + 1)
        stub.assert_no_pending_responses()
    states = {w: store.get_job(held[w]) for w in held}
    single, child0, child1 = (states[w.id] for w in workers)
    assert single is not None and child0 is not None and child1 is not None
    assert (single.status.value, single.retries_left) == ("Waiting", 0)
    assert (child0.status.value, child0.retries_left) == ("Waiting", 0)
    assert child1.status.value == "Failed"
    events = [e.text for e in store.read_log(single.id, [LogKind.SYSTEM])]
    assert any("reclaimed" in text and "not counted" in text for text in events), events


def moto_job(job_id: str) -> Any:
    """moto's record of a Batch job in us-east-1, to play what Batch says of it."""
    from moto.batch.models import batch_backends

    found = batch_backends[ACCOUNT]["us-east-1"].get_job_by_id(job_id)
    assert found is not None
    return found


def test_a_reclaim_batch_reports_after_the_lease_ran_out_costs_no_retry(
    aws: None, store: SQLiteStore
) -> None:
    """A worker's lease (150 s) runs out while Batch still says its job is RUNNING (ECS
    has not yet seen its instance go): its jobs wait for Batch's word, asked afresh each
    tick (DescribeJobs), up to 300 s past the lease. Batch then says "Host EC2 (instance
    ...) terminated.": the job goes back to Waiting without a retry. A worker whose job
    failed otherwise, or that Batch still runs once the wait is over (then terminated),
    costs its job a retry as any silent worker's. moto plays Batch: its jobs end at once,
    so each is set to what Batch would say."""
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store, clock=lambda: 0.0)  # no cached answer ever goes stale
    launcher = launched.launcher
    now = time.time()
    workers, held, batch_jobs = [], {}, {}
    for name in ("reclaimed", "running", "crashed"):
        (worker,) = launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
        store.add_worker(worker)
        new = NewJob(name=name, queue="q1", definition="d1", script="sleep 600\n",
                     retries=0, env={}, submit_dir=None)  # fmt: skip
        store.submit([new], now)
        (claim,) = store.claim(worker.id, "q1", "d1", 1, 150, now)
        store.touch_worker(worker.id, now)
        workers.append(worker)
        held[name] = claim.id
        batch_jobs[name] = moto_job(launcher._jobs[worker.id][1])
    deadline = time.monotonic() + 60
    while any(j.status not in ("SUCCEEDED", "FAILED") for j in batch_jobs.values()):
        assert time.monotonic() < deadline, [j.status for j in batch_jobs.values()]
        time.sleep(0.05)
    for job_ in batch_jobs.values():  # as Batch says of a job whose instance just went
        job_.status, job_.job_stopped_reason = "RUNNING", None
    scheduler = Scheduler(store, {"aws": launcher}, silence_seconds=300, lease_seconds=150)

    def status(name: str) -> tuple[str, int]:
        found = store.get_job(held[name])
        assert found is not None
        return found.status.value, found.retries_left

    # the leases ran out; Batch says every job still runs: all wait, none is counted
    assert scheduler.tick(now + 160).expired == []
    assert {name: status(name) for name in held} == {n: ("Running", 0) for n in held}
    assert len(launched.calls.of("DescribeJobs")) == 1  # asked afresh, once for all

    # Batch's word comes: a reclaim (no retry used) and a crash (a retry: none left)
    gone = "Host EC2 (instance i-0123456789abcdef0) terminated."
    batch_jobs["reclaimed"].status, batch_jobs["reclaimed"].job_stopped_reason = "FAILED", gone
    batch_jobs["crashed"].status = "FAILED"
    batch_jobs["crashed"].job_stopped_reason = "Essential container in task exited"
    report = scheduler.tick(now + 300)
    assert status("reclaimed") == ("Waiting", 0)
    assert status("crashed") == ("Failed", 0) and report.expired == [held["crashed"]]
    assert status("running") == ("Running", 0)
    events = [e.text for e in store.read_log(held["reclaimed"], [LogKind.SYSTEM])]
    assert any("reclaimed" in text and "not counted" in text for text in events), events

    # the wait is over and Batch still runs it: stopped, and counted as silent
    assert scheduler.tick(now + 150 + 300 + 1).expired == [held["running"]]
    assert status("running") == ("Failed", 0)
    (stopped,) = launched.calls.of("TerminateJob")
    assert stopped["jobId"] == batch_jobs["running"].job_id
    # none of them is live (the tick started a new worker for the job back in Waiting)
    assert not {w.id for w in workers} & {w.id for w in store.live_workers()}


def test_a_local_worker_past_its_lease_is_not_waited_on(store: SQLiteStore) -> None:
    """Launchers that cannot tell how a worker ended (every local one) wait for nothing:
    a lease that ran out costs the job a retry at once, as before."""

    class Running(Launcher):
        kind = "local"

        def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
            return None

        def alive(self, worker: WorkerRecord) -> bool | None:
            return True

    now = time.time()
    aws_host_records(store)
    worker = WorkerRecord(id="w-1", queue="q1", definition="d1", region="local",
                          launcher="local", pid=None, state="ACTIVE", started=now,
                          last_seen=now)  # fmt: skip
    store.add_worker(worker)
    new = NewJob(name="j", queue="q1", definition="d1", script="true\n", retries=0, env={},
                 submit_dir=None)  # fmt: skip
    (job_id,) = store.submit([new], now)
    store.claim("w-1", "q1", "d1", 1, 30, now)
    scheduler = Scheduler(store, {"local": Running()}, silence_seconds=60, lease_seconds=30)
    assert scheduler.tick(now + 31).expired == [job_id]


def aws_host_records(store: SQLiteStore) -> None:
    put(store, ResourceKind.CLUSTER, ClusterSpec(name="c1"))
    put(store, ResourceKind.QUEUE, QueueSpec(name="q1", compute_environment="c1"))
    put(store, ResourceKind.DEFINITION, DEFINITION)


def stubbed_any() -> Any:
    from botocore.stub import ANY

    return ANY


def job(job_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {"jobId": job_id, "jobName": "j", "jobQueue": "q", "status": status,
            "startedAt": 1, "jobDefinition": "d", **more}  # fmt: skip


# ---- the worker in a Batch job ------------------------------------------------------------


class Refusing(http.server.BaseHTTPRequestHandler):
    """A host that refuses every key, noting who asked with what."""

    seen: list[tuple[str, str | None]] = []
    tokens: list[str | None] = []
    gateway: list[str | None] = []  # x-api-key: the key's API Gateway value

    def do_POST(self) -> None:
        self.seen.append((self.path, self.headers.get("x-hyper-key")))
        self.gateway.append(self.headers.get("x-api-key"))
        self.tokens.append(self.headers.get("x-hyper-worker-token"))
        body = json.dumps({"detail": "bad key"}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_an_array_child_is_its_prefix_and_index_and_reads_the_key_by_arn(
    aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = boto3.client("secretsmanager").create_secret(Name="hyper-key", SecretString="s3cr3t")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Refusing.seen, Refusing.tokens, Refusing.gateway = [], [], []
    try:
        monkeypatch.setenv("HYPER_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HYPER_API_KEY", secret["ARN"])
        monkeypatch.setenv("HYPER_WORKER_ID_PREFIX", "b-0123456789ab")
        monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "7")
        code = worker_main.main(["--worker-id", "w-host-1", "--queue", "q1", "--definition",
                                 "d1", "--workdir", str(tmp_path), "--idle-seconds", "1",
                                 "--patience-seconds", "0"])  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and "refused the API key" in capsys.readouterr().err
    assert Refusing.seen[0] == ("/workers/b-0123456789ab-7/claim", "s3cr3t")

    assert "HYPER_WORKER_ID_PREFIX" not in os.environ  # not handed on to jobs


def test_a_worker_sends_the_key_and_token_its_launch_gave_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Refusing.seen, Refusing.tokens, Refusing.gateway = [], [], []
    try:
        monkeypatch.setenv("HYPER_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HYPER_API_KEY", "the-worker-key")
        monkeypatch.setenv("HYPER_WORKER_TOKEN", "the-token")
        code = worker_main.main(["--worker-id", "b-0123456789ab-0", "--queue", "q1",
                                 "--definition", "d1", "--workdir", str(tmp_path),
                                 "--idle-seconds", "1", "--patience-seconds", "0"])  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and "refused the API key" in capsys.readouterr().err
    assert Refusing.seen[0] == ("/workers/b-0123456789ab-0/claim", "the-worker-key")
    assert Refusing.tokens[0] == "the-token"
    assert "HYPER_WORKER_TOKEN" not in os.environ  # not handed on to jobs


def test_a_worker_that_cannot_read_its_secret_says_so(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYPER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HYPER_API_KEY", SECRET)  # no such secret
    code = worker_main.main(["--worker-id", "w", "--queue", "q1", "--definition", "d1"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"worker: cannot read the API key from {SECRET}: ")
    assert err.count("\n") == 1


def test_calls_per_launch_are_counted(aws: None, store: SQLiteStore) -> None:
    """Launching 1,000 workers over three regions costs three SubmitJob calls and nothing
    else; a look at their liveness one DescribeJobs per region."""
    weights = {"us-east-1": 5, "eu-west-1": 3, "ap-southeast-1": 2}
    aws_host(store, THREE, weights)
    launched = Launched(store)
    records = []
    for region, share in split_by_weight(1000, weights).items():
        records += launched.launcher.launch(LaunchRequest("q1", DEFINITION, region, share))
    assert Counter(op for _, op, _ in launched.calls.calls) == {"SubmitJob": 3}
    assert all(launched.launcher.alive(r) is False for r in records)
    assert Counter((r, op) for r, op, _ in launched.calls.calls if op != "SubmitJob") == {
        (region, "DescribeJobs"): 1 for region in THREE
    }


@pytest.mark.slow
def test_a_cold_launcher_finds_an_arrays_workers_with_one_list_per_array(
    aws: None, store: SQLiteStore
) -> None:
    """A Lambda container that did not launch the workers looks each array up once by its
    name (ListJobs), not once per worker: 1,000 workers of three arrays cost three
    ListJobs and one DescribeJobs per region, where Batch allows 50 calls a second for
    the whole account; a second tick asks nothing more."""
    weights = {"us-east-1": 5, "eu-west-1": 3, "ap-southeast-1": 2}
    aws_host(store, THREE, weights)
    records = []
    for region, share in split_by_weight(1000, weights).items():
        records += Launched(store).launcher.launch(LaunchRequest("q1", DEFINITION, region, share))
    for record in records:  # as the scheduler keeps them
        store.add_worker(record)
    cold = Launched(store)
    assert all(cold.launcher.alive(r) is False for r in records)
    counted = Counter((r, op) for r, op, _ in cold.calls.calls)
    assert counted == {
        **{(region, "ListJobs"): 1 for region in THREE},
        **{(region, "DescribeJobs"): 1 for region in THREE},
    }
    again = Launched(store)
    for record in records:
        again.launcher.stop(record)
    assert Counter(op for _, op, _ in again.calls.calls)["ListJobs"] == 3


# ---- IAM propagation ------------------------------------------------------------------------


def _iam_refusal(reason: str, times: int) -> Callable[..., Any]:
    """A botocore before-call hook: Batch refusing the first `times` creations."""
    left = [times]

    def refuse(**_: Any) -> Any:
        if left[0] <= 0:
            return None
        left[0] -= 1
        response = AWSResponse("https://batch.test", 400, {}, None)
        return response, {"Error": {"Code": "ClientException", "Message": reason},
                          "ResponseMetadata": {"HTTPStatusCode": 400}}  # fmt: skip

    return refuse


def test_new_roles_are_waited_for_before_the_compute_environments(aws: None) -> None:
    """IAM's waiters see each new role and the instance profile, then the roles get time
    to reach Batch, all before the first CreateComputeEnvironment."""
    calls = Calls()
    slept: list[float] = []
    patience = Patience(timeout=5, interval=0, sleep=slept.append, propagation=10)
    cluster = ClusterSpec(name="c1", compute_envs=1)
    roles = batch.ensure_cluster_roles(cluster, NAMES, lambda _: None, clients=calls)
    assert roles.fresh
    lines: list[str] = []
    batch.deploy_cluster("us-east-1", cluster, network("us-east-1"), roles, NAMES, lines.append,
                         clients=calls, patience=patience)  # fmt: skip
    order = [op for _, op, _ in calls.calls]
    first_create = order.index("CreateComputeEnvironment")
    last_role = max(
        i for i, op in enumerate(order) if op in ("CreateRole", "AddRoleToInstanceProfile")
    )
    waited = order[last_role:first_create]
    assert "GetInstanceProfile" in waited  # (no role of its own for Batch: its service-linked one)
    assert slept[:1] == [10]
    assert any("reach Batch and EC2" in line for line in lines)

    # the same roles again: nothing new, no wait
    again = batch.ensure_cluster_roles(cluster, NAMES, lambda _: None, clients=calls)
    assert not again.fresh


def test_a_creation_refused_while_iam_propagates_is_tried_again(aws: None) -> None:
    slept: list[float] = []
    patience = Patience(timeout=5, interval=0, sleep=slept.append, propagation=10)
    cluster = ClusterSpec(name="c1", compute_envs=1)
    roles = batch.ensure_cluster_roles(cluster, NAMES, lambda _: None)
    client = aws_client("batch", "us-east-1")
    reason = "Role arn:aws:iam::123456789012:role/hyper-test-batch-service is not authorized"
    client.meta.events.register("before-call.batch.CreateComputeEnvironment",
                                _iam_refusal(reason, 2))  # fmt: skip
    lines: list[str] = []
    batch.deploy_cluster("us-east-1", cluster, network("us-east-1"), roles, NAMES, lines.append,
                         clients=lambda service, region: client if service == "batch"
                         else aws_client(service, region), patience=patience)  # fmt: skip
    assert slept == [10, 20, 40]  # the propagation wait, then two back-offs
    assert sum("does not see the new roles yet" in line for line in lines) == 2
    assert len(client.describe_compute_environments()["computeEnvironments"]) == 1

    # bounded: refused every time, the change fails with Batch's reason
    other = ClusterSpec(name="c2", compute_envs=1)
    client.meta.events.register("before-call.batch.CreateComputeEnvironment",
                                _iam_refusal(reason, 99))  # fmt: skip
    fresh = batch.ensure_cluster_roles(other, NAMES, lambda _: None)
    with pytest.raises(DeployFailed, match="not authorized"):
        batch.deploy_cluster("us-east-1", other, network("us-east-1"), fresh, NAMES,
                             lambda _: None, clients=lambda service, region: client
                             if service == "batch" else aws_client(service, region),
                             patience=patience)  # fmt: skip


def test_an_environment_invalid_while_iam_propagates_is_made_again(aws: None) -> None:
    slept: list[float] = []
    patience = Patience(timeout=5, interval=0, sleep=slept.append, propagation=10)
    cluster = ClusterSpec(name="c1", compute_envs=1)
    roles = batch.ensure_cluster_roles(cluster, NAMES, lambda _: None)
    client = aws_client("batch", "us-east-1")
    invalid = [2]  # the first two looks after the creation see it INVALID

    def look(parsed: dict[str, Any], **_: Any) -> None:
        for env in parsed.get("computeEnvironments", []):
            if invalid[0] > 0 and env.get("status") == "VALID":
                invalid[0] -= 1
                env["status"] = "INVALID"
                env["statusReason"] = "CLIENT_ERROR - instance profile is not ready"

    calls = Calls()
    calls.watch(client, "us-east-1")
    created = [0]
    client.meta.events.register("after-call.batch.DescribeComputeEnvironments", look)
    client.meta.events.register("before-call.batch.CreateComputeEnvironment",
                                lambda **_: created.__setitem__(0, created[0] + 1))  # fmt: skip
    batch.deploy_cluster("us-east-1", cluster, network("us-east-1"), roles, NAMES,
                         lambda _: None, clients=lambda service, region: client
                         if service == "batch" else aws_client(service, region),
                         patience=patience)  # fmt: skip
    assert created[0] == 2 and len(calls.of("DeleteComputeEnvironment")) == 1
    (env,) = client.describe_compute_environments()["computeEnvironments"]
    assert env["status"] == "VALID"


def test_any_container_finds_and_stops_a_worker_another_launched(
    aws: None, store: SQLiteStore
) -> None:
    """Ticks run in whichever Lambda container: one that did not launch a worker finds
    its Batch job by name, so a worker stuck RUNNABLE is stopped by any of them."""
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    first = Launched(store)
    array = first.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 3))
    (single,) = first.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
    other = Launched(store)  # another container: it launched nothing
    assert other.launcher.alive(array[2]) is not None
    assert other.launcher.alive(single) is not None
    other.launcher.stop(array[2])
    other.launcher.stop(single)
    terminated = [p["jobId"] for p in other.calls.of("TerminateJob")]
    parent = first.calls.of("SubmitJob")[0]
    assert len(terminated) == 2 and terminated[0].endswith(":2") and ":" not in terminated[1]
    assert parent["jobName"].endswith(array[0].id.rpartition("-")[0])


def test_a_job_larger_than_the_definition_gets_a_worker_of_its_own_size(
    aws: None, store: SQLiteStore
) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store)
    shape = Shape(16, 65536, ("0", "1"))
    (record,) = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1, shape))
    (submit,) = launched.submits()
    assert submit["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "16"},
        {"type": "MEMORY", "value": "65536"},
        {"type": "GPU", "value": "2"},
    ]
    assert environment(submit)["HYPER_CAPACITY"] == "16:65536:0,1"  # what its worker packs in
    assert environment(submit)["HYPER_WORKER_ID"] == record.id
    assert submitted("us-east-1") == [None]  # moto took the overrides
    plain = launched.launcher.launch(LaunchRequest("q1", DEFINITION, "us-east-1", 1))
    assert plain and "resourceRequirements" not in launched.submits()[1]["containerOverrides"]


def test_the_scheduler_sizes_a_worker_for_a_job_larger_than_the_definition(
    aws: None, store: SQLiteStore
) -> None:
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    launched = Launched(store)
    big = {"request": {"cpus": 4, "mem_mib": 8192}}  # d1's workers: 1 vCPU, 1024 MiB
    small = {"request": {"cpus": 1, "mem_mib": 256}}
    jobs = [NewJob("big", "q1", "d1", "true", options=big)]
    jobs += [NewJob(f"small{i}", "q1", "d1", "true", options=dict(small)) for i in range(2)]
    store.submit(jobs, time.time())
    scheduler = Scheduler(store, {"aws": launched.launcher}, silence_seconds=600)
    assert scheduler.tick(time.time()).started == 3  # one of its own size, one a 1-CPU job
    sized, packed = launched.submits()
    assert sized["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "8192"},
    ]  # fmt: skip
    assert "resourceRequirements" not in packed["containerOverrides"]
    assert packed["arrayProperties"] == {"size": 2}


def test_a_host_on_dynamodb_takes_a_large_job_and_sizes_its_worker(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AWS host's store (DynamoDB) counts what waiting jobs asked: a job larger than its
    definition's worker is taken at submit, and the tick starts it a worker of its own
    size (containerOverrides) while the smaller ones pack into workers of the definition."""
    from fastapi.testclient import TestClient

    from hyper.host.app import create_app
    from hyper.host_settings import HostSettings
    from hyper.store.dynamodb import DynamoDBStore
    from hyper.store.dynamodb_tables import create_tables
    from tests.conftest import moto_one_request_at_a_time

    moto_one_request_at_a_time(monkeypatch)
    create_tables(boto3.client("dynamodb", region_name="us-east-1"), "hyper-test")
    store = DynamoDBStore("hyper-test", "us-east-1")
    assert store.counts_requests
    aws_host(store, ("us-east-1",), {"us-east-1": 1})
    settings = HostSettings(data_dir=tmp_path, api_key="k", url=URL)
    app = create_app(settings, store, local_defaults=False)

    def job(name: str, **asked: int) -> dict[str, Any]:
        return {"name": name, "queue": "q1", "definition": "d1", "script": "true\n",
                "resources": asked}  # fmt: skip

    with TestClient(app, headers={"x-api-key": "k"}) as api:
        jobs = [job("big", cpus=4, mem_mib=8192, gpus=1)]  # d1's workers: 1 vCPU, 1024 MiB
        jobs += [job(f"small{i}", cpus=1, mem_mib=256) for i in range(6)]
        taken = api.post("/jobs", json={"jobs": jobs})
        assert taken.status_code == 200, taken.text
    big = (("cpus", 4), ("gpus", 1), ("mem_mib", 8192))
    assert store.requests("q1", "d1", 100) == {big: 1, (("cpus", 1), ("mem_mib", 256)): 6}

    launched = Launched(store)
    scheduler = Scheduler(store, {"aws": launched.launcher}, silence_seconds=600)
    assert scheduler.tick(time.time()).started == 7  # its own; a 1-CPU job a 1-vCPU worker
    sized, packed = launched.submits()
    assert sized["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "8192"},
        {"type": "GPU", "value": "1"},
    ]  # fmt: skip
    assert environment(sized)["HYPER_CAPACITY"] == "4:8192:0"
    assert "arrayProperties" not in sized  # a single job of its own size
    assert "resourceRequirements" not in packed["containerOverrides"]
    assert packed["arrayProperties"] == {"size": 6}
    assert len(store.live_workers()) == 7
    store.close()
