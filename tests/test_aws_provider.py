"""The AWS provider end to end under moto: regions as stacks, then a cluster, a queue
and a definition in every ACTIVE region, and their teardown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from hyper.errors import DeployFailed
from hyper.models import ClusterSpec, DefinitionSpec, QueueSpec, RegionSpec, ResourceKind
from hyper.providers.aws.provider import AwsProvider
from hyper.providers.aws.waiting import Patience
from hyper.store.sqlite import SQLiteStore
from tests.helpers.aws_host import vpc_with_subnets

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

MAIN, OTHER = "us-east-1", "eu-west-1"
# moto settles at once and its IAM is consistent: no 10 s for new roles to reach Batch, per
# region, where a test is not about that wait (tests/test_aws_batch.py is)
QUICK = Patience(timeout=60, interval=0, propagation=0)


@pytest.fixture
def provider(aws_credentials: None, tmp_path: Path) -> Iterator[AwsProvider]:
    with mock_aws(
        config={"batch": {"use_docker": False}, "iam": {"load_aws_managed_policies": True}}
    ):
        secret = boto3.client("secretsmanager", region_name=MAIN).create_secret(
            Name="hyper/h1/api-key", SecretString="the-key"
        )
        store = SQLiteStore(tmp_path / "store.db")
        yield AwsProvider(store, host_name="h1", secret_arn=secret["ARN"], host_vpc="10.0.0.0/16",
                          patience=QUICK)  # fmt: skip
        store.close()


def active(provider: AwsProvider, kind: ResourceKind, spec: object) -> None:
    """What the deployer does once a deploy succeeded."""
    assert hasattr(spec, "model_dump") and hasattr(spec, "name")
    provider.store.put_resource(kind.value, spec.name, spec.model_dump(), "ACTIVE", [], time.time())


def test_resources_reach_every_active_region(provider: AwsProvider) -> None:
    lines: list[str] = []
    main = RegionSpec(name=MAIN, kind="aws", main_region=True, subnet_config="PUBLIC")
    deployed = provider.deploy(ResourceKind.REGION, main, lines.append)
    assert isinstance(deployed, RegionSpec) and deployed.cidr == "10.0.0.0/16"  # the host's
    active(provider, ResourceKind.REGION, deployed)
    other = RegionSpec(name=OTHER, kind="aws", import_vpc=False, cidr="10.1.0.0/16",
                       subnet_config="PUBLIC")  # fmt: skip
    active(provider, ResourceKind.REGION, provider.deploy(ResourceKind.REGION, other, lines.append))
    assert [r.name for r in provider.active_regions()] == [OTHER, MAIN]
    for region, cidr in ((MAIN, "10.0.0.0/16"), (OTHER, "10.1.0.0/16")):
        vpcs = boto3.client("ec2", region_name=region).describe_vpcs()["Vpcs"]
        assert cidr in [v["CidrBlock"] for v in vpcs]

    cluster = ClusterSpec(name="c1", compute_envs=2, max_vcpus=64, type="ONDEMAND")
    provider.deploy(ResourceKind.CLUSTER, cluster, lines.append)
    active(provider, ResourceKind.CLUSTER, cluster)
    for region in (MAIN, OTHER):
        aws_batch = boto3.client("batch", region_name=region)
        environments = aws_batch.describe_compute_environments()["computeEnvironments"]
        assert len(environments) == 2
        assert sorted(e["computeResources"]["maxvCpus"] for e in environments) == [32, 32]
        (queue,) = aws_batch.describe_job_queues()["jobQueues"]
        assert len(queue["computeEnvironmentOrder"]) == 2
    # the instance role holds exactly the ECS clusters Batch made for the environments
    ecs = sorted(
        e["ecsClusterArn"]
        for region in (MAIN, OTHER)
        for e in boto3.client("batch", region_name=region).describe_compute_environments()[
            "computeEnvironments"
        ]
    )
    assert len(ecs) == 4 and all(":cluster/" in arn for arn in ecs)
    assert instance_grants(provider) == (ecs, [
        arn.replace(":cluster/", ":container-instance/") + "/*" for arn in ecs
    ])  # fmt: skip
    # deployed again, it never holds the name pattern on the way
    written: list[str] = []
    boto3._get_default_session().events.register(
        "before-parameter-build.iam.PutRolePolicy",
        lambda params, **_: written.append(params["PolicyDocument"]),
    )
    provider.deploy(ResourceKind.CLUSTER, cluster, lines.append)
    pattern = f"cluster/AWSBatch-{provider.names.prefix}-*"
    assert written and not any(pattern in document for document in written)
    assert instance_grants(provider)[0] == ecs

    queue = QueueSpec(name="q1", compute_environment="c1")
    provider.deploy(ResourceKind.QUEUE, queue, lines.append)
    with pytest.raises(DeployFailed):
        provider.deploy(ResourceKind.QUEUE, QueueSpec(name="q2", compute_environment="c9"),
                        lines.append)  # fmt: skip

    definition = DefinitionSpec(
        name="d1",
        use_cyclone_image=False,
        image_uri="123456789012.dkr.ecr._REGION_.amazonaws.com/work:1",
        vcpus=2,
        memory_limit_mib=2048,
    )
    provider.deploy(ResourceKind.DEFINITION, definition, lines.append)
    for region in (MAIN, OTHER):
        (found,) = boto3.client("batch", region_name=region).describe_job_definitions(
            status="ACTIVE"
        )["jobDefinitions"]
        image = found["containerProperties"]["image"]
        assert image == f"123456789012.dkr.ecr.{region}.amazonaws.com/work:1"

    provider.teardown(ResourceKind.DEFINITION, definition, lines.append)
    provider.teardown(ResourceKind.CLUSTER, cluster, lines.append)
    for region in (MAIN, OTHER):
        aws_batch = boto3.client("batch", region_name=region)
        assert aws_batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"] == []
        assert aws_batch.describe_job_queues()["jobQueues"] == []
        assert aws_batch.describe_compute_environments()["computeEnvironments"] == []


def instance_grants(provider: AwsProvider) -> tuple[list[str], list[str]]:
    """The ECS clusters and container instances the cluster c1's instance role holds."""
    role = provider.names.instance_role("c1")
    policy = boto3.client("iam").get_role_policy(RoleName=role, PolicyName="hyper-ecs-instance")
    statements = {s["Sid"]: s["Resource"] for s in policy["PolicyDocument"]["Statement"]}
    assert statements["TagContainerInstancesAsRegistered"] == statements["HostContainerInstances"]
    return statements["HostEcsClusters"], statements["HostContainerInstances"]


def test_a_region_that_reuses_no_vpc_is_refused(provider: AwsProvider) -> None:
    provider.host_vpc = None
    with pytest.raises(DeployFailed, match="no VPC to reuse"):
        provider.deploy(ResourceKind.REGION, RegionSpec(name=MAIN, kind="aws"), print)
    with pytest.raises(DeployFailed, match="AWS regions"):
        provider.deploy(ResourceKind.REGION, RegionSpec(name="here", kind="local"), print)


@pytest.mark.slow
def test_a_main_region_in_the_hosts_vpc_puts_workers_in_the_subnets_chosen(
    provider: AwsProvider,
) -> None:
    vpc, made = vpc_with_subnets(MAIN, "10.7")
    provider.host_vpc, provider.host_subnets = vpc, (made[2],)
    main = RegionSpec(name=MAIN, kind="aws", main_region=True, subnet_config="PUBLIC")
    provider.deploy(ResourceKind.REGION, main, print)
    assert provider.network(MAIN).subnets == (made[2],)


def test_isolated_subnets_are_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    """Workers in PRIVATE_ISOLATED subnets could never reach the host's public API."""
    from hyper.deployer import Deployer
    from hyper.errors import UsageError

    store = SQLiteStore(tmp_path / "store.db")
    provider = AwsProvider(store, host_name="h1", secret_arn="arn:x")
    isolated = RegionSpec(name=MAIN, kind="aws", import_vpc=False, cidr="10.0.0.0/16",
                          subnet_config="PRIVATE_ISOLATED")  # fmt: skip
    with pytest.raises(UsageError, match="PRIVATE_ISOLATED subnets have no way to the host's API"):
        Deployer(store, provider).create(ResourceKind.REGION, isolated)
    assert store.list_resources(ResourceKind.REGION.value) == []
    store.close()


def test_a_region_in_a_vpc_the_owner_did_not_allow_is_refused_before_anything_is_recorded(
    tmp_path: Path,
) -> None:
    """`add-region --vpc-id` is an API-key operation: only the host's own VPC and those the
    owner allowed at create-host (`--allowed-vpcs`) may take its workers and endpoints."""
    from hyper.deployer import Deployer
    from hyper.errors import UsageError

    own, allowed, foreign = (
        "vpc-0aaaaaaaaaaaaaaaa",
        "vpc-0bbbbbbbbbbbbbbbb",
        "vpc-0cccccccccccccccc",
    )
    store = SQLiteStore(tmp_path / "store.db")
    provider = AwsProvider(store, host_name="h1", secret_arn="arn:x", host_vpc=own,
                           allowed_vpcs=[allowed, ""])  # fmt: skip
    elsewhere = RegionSpec(name=OTHER, kind="aws", vpc_id=foreign, import_vpc=False)
    with pytest.raises(UsageError, match=f"VPC {foreign} is not one the host's owner allows"):
        Deployer(store, provider).create(ResourceKind.REGION, elsewhere)
    assert store.list_resources(ResourceKind.REGION.value) == []
    # the deploy function refuses it too, before any AWS call (there are no credentials)
    with pytest.raises(DeployFailed, match="not one the host's owner allows"):
        provider.deploy(ResourceKind.REGION, elsewhere, print)
    for vpc in (own, allowed):
        provider.check(ResourceKind.REGION, elsewhere.model_copy(update={"vpc_id": vpc}))
    # a new VPC, or the host's own by import, needs no allowing
    provider.check(ResourceKind.REGION, RegionSpec(name=OTHER, kind="aws", cidr="10.1.0.0/16"))
    provider.check(ResourceKind.REGION, RegionSpec(name=OTHER, kind="aws"))
    store.close()


@pytest.mark.parametrize(
    ("asked", "option"),
    [
        ({"privileged": True}, "privileged"),
        ({"host_volumes": [{"name": "root", "host": {"sourcePath": "/"}}],
          "mount_points": [{"sourceVolume": "root", "containerPath": "/host"}]}, "host-volumes"),
        ({"linux_parameters": {"devices": [{"hostPath": "/dev/mem"}]}}, "devices"),
        ({"log_driver": "AWSLOGS", "log_options": {"awslogs-group": "/audit/trail"}},
         "log-groups"),
        # Batch's default group is every team's: the instance role writes only the host's
        ({"log_driver": "AWSLOGS", "log_options": {"awslogs-group": "/aws/batch/job"}},
         "log-groups"),
        # a job beside a root worker, as root, could read its token from its memory
        ({"user": "root"}, "root-jobs"),
        ({"user": "0:0"}, "root-jobs"),
    ],
)  # fmt: skip
def test_a_definition_reaching_beyond_its_container_needs_the_owners_leave(
    tmp_path: Path, asked: dict, option: str
) -> None:
    """A definition comes with the API key (which jobs can reach); what it asks beyond its
    container is refused before anything is recorded, unless the owner allowed it."""
    from hyper.deployer import Deployer
    from hyper.errors import UsageError

    store = SQLiteStore(tmp_path / "store.db")
    provider = AwsProvider(store, host_name="h1", secret_arn="arn:x")
    definition = DefinitionSpec(name="d9", use_cyclone_image=False, image_uri="w:1", **asked)
    with pytest.raises(UsageError, match=f"--allowed-container-options {option}"):
        Deployer(store, provider).create(ResourceKind.DEFINITION, definition)
    assert store.list_resources(ResourceKind.DEFINITION.value) == []
    with pytest.raises(DeployFailed, match="not allowed by the host's owner"):
        provider.deploy(ResourceKind.DEFINITION, definition, print)
    allowing = AwsProvider(store, host_name="h1", secret_arn="arn:x",
                           allowed_container_options=[option])  # fmt: skip
    allowing.check(ResourceKind.DEFINITION, definition)
    store.close()


def test_what_stays_in_the_container_needs_no_leave(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    provider = AwsProvider(store, host_name="h1", secret_arn="arn:x")
    for fine in (
        {"host_volumes": [{"name": "scratch"}],  # a docker volume, not the instance's files
         "mount_points": [{"sourceVolume": "scratch", "containerPath": "/scratch"}]},
        {"linux_parameters": {"sharedMemorySize": 256, "initProcessEnabled": True}},
        {"log_driver": "AWSLOGS", "log_options": {"awslogs-group": "/hyper/h1/workers"}},
        {"user": "analyst"},  # another user than root: the worker cannot be reached
    ):  # fmt: skip
        spec = DefinitionSpec(name="d1", use_cyclone_image=False, image_uri="w:1", **fine)
        provider.check(ResourceKind.DEFINITION, spec)
    store.close()
