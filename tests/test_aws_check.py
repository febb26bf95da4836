"""`hyper hosts check-host` on AWS: each check says what it found and what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from hyper.config import HostConfig
from hyper.errors import UsageError
from hyper.providers.aws import check, stacks
from hyper.providers.aws.host import AwsHostRequest, deploy_host
from tests.helpers.aws import ACCOUNT, mocked_aws
from tests.helpers.aws_host import bundle

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with mocked_aws(monkeypatch):
        yield


def test_what_an_account_lacks_is_said_check_by_check(aws: None) -> None:
    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=REGION,
                      account=ACCOUNT)  # fmt: skip
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="work")
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "0" * 64},
                           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "layers": []})  # fmt: skip
    ecr.put_image(repositoryName="work", imageManifest=manifest, imageTag="1")
    uri = f"{ACCOUNT}.dkr.ecr._REGION_.amazonaws.com/work:"
    resources = {
        "regions": [{"name": REGION, "status": "ACTIVE", "spec": {"kind": "aws"}}],
        "clusters": [{"name": "c1", "spec": {"type": "SPOT", "max_vcpus": 256}}],
        "definitions": [
            {"name": "pushed", "spec": {"image_uri": uri + "1"}},
            {"name": "missing", "spec": {"image_uri": uri + "2"}},
            {"name": "public", "spec": {"image_uri": "python:3.11"}},
        ],
    }
    trip = check.Check("trip", True, "")
    found = {c.what: c for c in check.check_host(host, resources, round_trip=lambda: trip)}
    assert found["AWS credentials"].ok and ACCOUNT in found["AWS credentials"].detail
    assert found["host stack"].ok is False and "create-host" in found["host stack"].detail
    assert found[f"image of pushed in {REGION}"].ok is True
    assert found[f"image of missing in {REGION}"].ok is False
    assert found[f"image of public in {REGION}"].ok is None  # not in ECR: not checked
    assert "Lambda concurrent executions" in found
    assert f"EC2 spot vCPUs in {REGION}" in found
    assert found["trip"].ok
    assert all(c.detail for c in found.values() if c.what != "trip")

    other = host._replace(account="999999999999")
    (credentials, *_) = check.check_host(other, {})
    assert credentials.ok is False and "999999999999" in credentials.detail


def test_the_round_trip_waits_for_the_job_to_end() -> None:
    statuses = iter(["Waiting", "Running", "Successful"])
    ok = check.wait_for_job(lambda: 7, lambda _: next(statuses), timeout=60, sleep=lambda _: None)
    assert ok.ok and ok.detail == "job 7 Successful"


def account_settings(limit: int, unreserved: int) -> None:
    """Lambda's GetAccountSettings answered with these figures (moto has no answer of its
    own): a hook on boto3's default session, before any client is made."""
    answer = {"AccountLimit": {"ConcurrentExecutions": limit,
                               "UnreservedConcurrentExecutions": unreserved},
              "AccountUsage": {"FunctionCount": 0}}  # fmt: skip

    def respond(**_: object) -> tuple[AWSResponse, dict]:
        return AWSResponse("https://lambda", 200, {}, None), answer

    boto3.DEFAULT_SESSION.events.register("before-call.lambda.GetAccountSettings", respond)


def test_create_host_refuses_an_account_whose_lambda_concurrency_is_too_low(
    aws: None, tmp_path: Path
) -> None:
    """A new account (limit 50): one line saying what to ask AWS for, and nothing made."""
    account_settings(50, 50)
    with pytest.raises(UsageError) as refused:
        deploy_host(AwsHostRequest(name="h1", region=REGION), lambda _: None,
                    code=bundle(tmp_path / "b.zip", ""))  # fmt: skip
    message = str(refused.value)
    assert "\n" not in message and "at least 510 concurrent executions" in message, message
    assert "50 (50 unreserved)" in message
    assert not boto3.client("secretsmanager", region_name=REGION).list_secrets()["SecretList"]
    assert not boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]
    assert not boto3.client("cloudformation", region_name=REGION).describe_stacks()["Stacks"]


def test_the_concurrency_asked_for_counts_other_functions_reservations() -> None:
    def lacking(limit: int, unreserved: int, reserved_already: int = 0) -> str:
        settings = {"AccountLimit": {"ConcurrentExecutions": limit,
                                     "UnreservedConcurrentExecutions": unreserved}}  # fmt: skip
        return check.lambda_concurrency_lacking(settings, reserved_already)

    assert lacking(1000, 1000) == "" and lacking(510, 510) == ""
    assert "at least 510 " in lacking(509, 509)
    assert "at least 710 " in lacking(600, 400)  # other functions reserve 200
    assert lacking(1000, 800) == ""
    assert lacking(1000, 590, reserved_already=410) == ""  # a redeploy: its own 410 are held
    assert "at least 1010 " in lacking(1000, 90, reserved_already=410)


def test_check_host_reads_the_accounts_lambda_limit(aws: None) -> None:
    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=REGION,
                      account=ACCOUNT)  # fmt: skip
    account_settings(50, 50)
    found = {c.what: c for c in check.check_host(host, {})}
    lambda_check = found["Lambda concurrent executions"]
    assert lambda_check.ok is False and "at least 510" in lambda_check.detail


def test_check_host_names_what_holds_older_grants_and_how_to_redeploy_it(aws: None) -> None:
    """Definitions, clusters and region stacks deployed before their grants' version
    (an upgraded host's) each get a line with the command that deploys them again; what
    was deployed, or deployed again, with this release's grants gets none."""
    from hyper.models import ClusterSpec, DefinitionSpec, RegionSpec
    from hyper.providers.aws import grants, roles
    from hyper.providers.aws.names import Names
    from hyper.providers.aws.templates import region_template, resource_prefix

    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=REGION,
                      account=ACCOUNT)  # fmt: skip
    names = Names(prefix=resource_prefix("h1"))
    iam = boto3.client("iam", region_name="us-east-1")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    for old in (names.job_role("old"), names.job_role("upgraded"), names.instance_role("c-old")):
        iam.create_role(
            RoleName=old,
            AssumeRolePolicyDocument=trust,
            Tags=[{"Key": "hyper:host", "Value": "h1"}],
        )  # as before the marks
    spec = {"use_cyclone_image": False, "image_uri": "w:1"}
    for name in ("new", "upgraded"):  # deployed (again) now
        roles.ensure_job_role(DefinitionSpec(name=name, **spec), names, None, print)
    made = roles.ensure_cluster_roles(ClusterSpec(name="c-new"), names, print)
    # compute environments in the host's region: c-old's made before launch templates
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="w", Description="w", VpcId=vpc)["GroupId"]
    for cluster, template in (("c-old", None), ("c-new", {"launchTemplateName": "t"})):
        compute = {"type": "EC2", "minvCpus": 0, "maxvCpus": 4, "instanceTypes": ["optimal"],
                   "subnets": [subnet], "securityGroupIds": [group],
                   "instanceRole": made.instance_profile}  # fmt: skip
        if template:
            compute["launchTemplate"] = template
        boto3.client("batch", region_name=REGION).create_compute_environment(
            computeEnvironmentName=names.compute_env(cluster, 1), type="MANAGED",
            state="ENABLED", computeResources=compute,
        )  # fmt: skip
    # region stacks of this release's template, and of one from before the marks
    new_stack = region_template(RegionSpec(name="eu-west-2", kind="aws", cidr="10.1.0.0/16"),
                                host_name="h1")  # fmt: skip
    assert new_stack["Outputs"][grants.GRANTS_OUTPUT]["Value"] == str(grants.VERSIONS["regions"])
    outputs = {k: v for k, v in new_stack["Outputs"].items() if k != grants.GRANTS_OUTPUT}
    old_stack = {**new_stack, "Outputs": outputs}
    for where, template in ((REGION, old_stack), ("eu-west-2", new_stack)):
        boto3.client("cloudformation", region_name=where).create_stack(
            StackName=stacks.region_stack_name("h1", where), TemplateBody=json.dumps(template)
        )
    resources = {
        "regions": [{"name": r, "status": "ACTIVE", "spec": {"kind": "aws"}}
                    for r in (REGION, "eu-west-2")],
        "clusters": [{"name": c, "spec": {"type": "ONDEMAND", "max_vcpus": 0}}
                     for c in ("c-old", "c-new")],
        "definitions": [{"name": d, "spec": {"image_uri": "w:1"}}
                        for d in ("old", "new", "upgraded", "never-deployed")],
    }  # fmt: skip
    mine = ("grants", "launch template")
    found = [c for c in check.check_host(host, resources) if c.what.startswith(mine)]
    assert [(c.what, c.ok, c.detail) for c in found] == [
        ("grants of definition old", False, "deployed with grants version 1, older than 3:"
         " hyper definitions update-definition old --redeploy"),
        ("grants of cluster c-old", False, "deployed with grants version 1, older than 3:"
         " hyper clusters update-cluster c-old --redeploy"),
        (f"grants of region {REGION}", False, "deployed with grants version 1, older than 2:"
         f" hyper regions update-region {REGION} --redeploy"),
        # which a redeploy does not mend
        (f"launch template of cluster c-old in {REGION}", False, "hyper-h1--c-old-ce1 made"
         " before launch templates, which an update keeps: hyper clusters delete-cluster"
         " c-old, then add-cluster"),
    ]  # fmt: skip
    # deployed again, each holds this release's grants: one line says so
    roles.ensure_job_role(DefinitionSpec(name="old", **spec), names, None, print)
    roles.ensure_cluster_roles(ClusterSpec(name="c-old"), names,
                               print)  # fmt: skip
    boto3.client("cloudformation", region_name=REGION).update_stack(
        StackName=stacks.region_stack_name("h1", REGION), TemplateBody=json.dumps(new_stack)
    )
    resources["clusters"] = resources["clusters"][1:]  # c-old made again, from the start
    (line,) = [c for c in check.check_host(host, resources) if c.what.startswith(mine)]
    assert line.ok and "this release's" in line.detail


def test_check_host_names_environments_that_keep_an_older_launch_template_version(
    aws: None,
) -> None:
    """A cluster whose launch template has a newer default version (this release's boot
    script) than its compute environments took gets a line for those Batch cannot update
    (a custom service role, or BEST_FIT): they keep the older version, so only deleting
    and adding the cluster again mends them; those made with Batch's service-linked role
    and another strategy take it on their update, and get none."""
    from hyper.models import ClusterSpec
    from hyper.providers.aws import launch_templates, roles
    from hyper.providers.aws.names import Names
    from hyper.providers.aws.templates import resource_prefix

    host = HostConfig(name="h1", provider="aws", url="https://x", api_key="k", region=REGION,
                      account=ACCOUNT)  # fmt: skip
    names = Names(prefix=resource_prefix("h1"))
    iam = boto3.client("iam", region_name="us-east-1")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    custom = iam.create_role(RoleName="old-batch-service", AssumeRolePolicyDocument=trust)
    linked = iam.create_role(RoleName="AWSServiceRoleForBatch", AssumeRolePolicyDocument=trust,
                             Path="/aws-service-role/batch.amazonaws.com/")  # fmt: skip
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="w", Description="w", VpcId=vpc)["GroupId"]
    batch = boto3.client("batch", region_name=REGION)
    clusters = {  # cluster: (its environment's service role, strategy)
        "c-custom": (custom["Role"]["Arn"], "BEST_FIT_PROGRESSIVE"),
        "c-best-fit": (linked["Role"]["Arn"], "BEST_FIT"),
        "c-linked": (linked["Role"]["Arn"], "BEST_FIT_PROGRESSIVE"),
    }
    for cluster, (service_role, strategy) in clusters.items():
        made = roles.ensure_cluster_roles(ClusterSpec(name=cluster), names, print)
        template = names.launch_template(cluster)
        ec2.create_launch_template(LaunchTemplateName=template,
                                   LaunchTemplateData={"UserData": "b2xk"})  # fmt: skip
        batch.create_compute_environment(
            computeEnvironmentName=names.compute_env(cluster, 1), type="MANAGED",
            state="ENABLED", serviceRole=service_role,
            computeResources={
                "type": "EC2", "minvCpus": 0, "maxvCpus": 4, "instanceTypes": ["optimal"],
                "subnets": [subnet], "securityGroupIds": [group],
                "instanceRole": made.instance_profile, "allocationStrategy": strategy,
                "launchTemplate": {"launchTemplateName": template, "version": "$Default"},
            },
        )  # fmt: skip
    resources = {
        "regions": [{"name": REGION, "status": "ACTIVE", "spec": {"kind": "aws"}}],
        "clusters": [{"name": c, "spec": {"type": "ONDEMAND", "max_vcpus": 0}} for c in clusters],
    }

    def lines() -> list[tuple[str, bool | None, str]]:
        return [(c.what, c.ok, c.detail) for c in check.check_host(host, resources)
                if c.what.startswith("launch template")]  # fmt: skip

    assert lines() == []  # every environment on its template's first version
    for cluster in clusters:  # this release's boot script: version 2, the default
        launch_templates.ensure_launch_template(REGION, ClusterSpec(name=cluster), names, print)
    found = lines()
    assert [(what, ok) for what, ok, _ in found] == [
        (f"launch template version of cluster {c} in {REGION}", False)
        for c in ("c-custom", "c-best-fit")
    ]
    detail = found[0][2]
    assert detail.startswith(
        "hyper-h1--c-custom-ce1 cannot take an infrastructure update (made with a custom"
        " service role, or BEST_FIT), so they keep the version of hyper-h1--c-custom-instances"
        " they were made with unless made after its default version 2 ("
    ), detail
    assert detail.endswith(
        "which holds this release's boot script (the metadata service's rules for jobs):"
        " hyper clusters delete-cluster c-custom, then add-cluster"
    ), detail
