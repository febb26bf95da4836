"""`hyper hosts create-host --provider aws` and its siblings, run as a user runs them,
against a moto server on loopback: the stack, the saved credentials, the key read from
AWS and never printed, import, redeploy and delete."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from hyper.errors import UsageError
from hyper.providers.aws.host import key_people, owner_patterns
from hyper.providers.aws.permissions import resolve, template_values
from hyper.providers.aws.template_parts import KEY_OWNERS_PARAMETER, KEY_READERS_PARAMETER
from tests.conftest import BIN
from tests.helpers.aws_host import bundle, vpc_with_subnets
from tests.helpers.moto import moto_server

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
API_URL = re.compile(rf"https://\w+\.execute-api\.{REGION}\.amazonaws\.com/v1")

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")


@pytest.fixture
def aws(hyper_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto server on loopback, and the environment that points every AWS call at it."""
    with moto_server(monkeypatch) as endpoint:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "HYPER_HOME": str(hyper_home),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        for name, value in env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        yield env


def hyper(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hyper"), *argv], env=env, capture_output=True, text=True, timeout=300
    )


def saved(env: dict[str, str], name: str) -> dict:
    return json.loads((Path(env["HYPER_HOME"]) / "config" / "hosts" / f"{name}.json").read_text())


def deployed_people(stack: dict) -> tuple[list[str], list[str]]:
    """Who may change the keys' secrets besides the root (their owners), and who else may
    read them, as the host stack was deployed."""
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    owners, readers = values[KEY_OWNERS_PARAMETER], values[KEY_READERS_PARAMETER]
    return [p for p in owners.split("|") if p], [p for p in readers.split("|") if p]


def put_key_policies(stack: dict) -> None:
    """Put on the keys' secrets the resource policies the stack's template gives them, as
    CloudFormation would (moto makes no AWS::SecretsManager::ResourcePolicy)."""
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    template = cloudformation.get_template(StackName=stack["StackName"])["TemplateBody"]
    template = template if isinstance(template, dict) else json.loads(template)
    values = template_values(template, region=REGION, account=ACCOUNT,
                             **{p["ParameterKey"]: p["ParameterValue"]
                                for p in stack["Parameters"]})  # fmt: skip
    secrets = boto3.client("secretsmanager", region_name=REGION)
    for lid in ("ApiKeySecretPolicy", "WorkerKeySecretPolicy"):
        properties = resolve(template["Resources"][lid]["Properties"], values)
        secrets.put_resource_policy(
            SecretId=properties["SecretId"], ResourcePolicy=json.dumps(properties["ResourcePolicy"])
        )


def as_user(env: dict[str, str], name: str) -> dict[str, str]:
    """`env` with the credentials of a new IAM user `name` of moto's account."""
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName=name, Path="/team/")
    made = iam.create_access_key(UserName=name)["AccessKey"]
    return {**env, "AWS_ACCESS_KEY_ID": made["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"]}  # fmt: skip


@pytest.mark.slow  # a whole host deployed under moto, 12 s: not the fast tier
def test_an_aws_host_from_flags_only(aws: dict[str, str], tmp_path: Path) -> None:
    code = bundle(tmp_path / "one.zip", "# one\n")
    done = hyper(
        aws, "hosts", "create-host", "--provider", "aws", "--name", "h1", "--region", REGION,
        "--enable-dashboard", "--code-bundle", str(code),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    host = saved(aws, "h1")
    assert host["provider"] == "aws" and host["region"] == REGION and host["dashboard"]
    assert API_URL.fullmatch(host["url"]), host["url"]
    secrets = boto3.client("secretsmanager", region_name=REGION)
    key = secrets.get_secret_value(SecretId="hyper/h1/api-key")["SecretString"]
    assert host["api_key"] == key
    assert key not in done.stdout + done.stderr
    assert "made the secret hyper/h1/api-key" in done.stderr
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    (stack,) = cloudformation.describe_stacks(StackName="hyper-h1")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    listing = hyper(aws, "hosts", "list-hosts", "--json")
    (row,) = json.loads(listing.stdout)["hosts"]
    assert row["name"] == "h1" and row["in_use"] and row["api_key"] == "********"

    caller = boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]
    assert deployed_people(stack) == (owner_patterns(caller), [])  # the keys' owner: you alone

    # the same control plane on new code, with a VPC and a reader of the keys (a name
    # with a comma, which IAM allows) the owner now allows
    reader_env = as_user(aws, "de,ployer")
    reader = f"arn:aws:iam::{ACCOUNT}:user/team/de,ployer"
    updated = hyper(aws, "hosts", "update-host", "h1", "--code-bundle",
                    str(bundle(tmp_path / "two.zip", "# two\n")),
                    "--allowed-vpcs", "vpc-0123abcd", "--key-readers", reader)  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    (stack,) = cloudformation.describe_stacks(StackName="hyper-h1")["Stacks"]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert saved(aws, "h1")["api_key"] == key
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["AllowedVpcs"] == "vpc-0123abcd"
    people = (owner_patterns(caller), owner_patterns(reader))
    assert deployed_people(stack) == people
    put_key_policies(stack)

    # the reader deploys it again: owners and readers as they were (the secrets' policy
    # unchanged, which only an owner may change); the reader changes no one
    again = hyper(reader_env, "hosts", "update-host", "h1", "--code-bundle",
                  str(bundle(tmp_path / "three.zip", "# three\n")))  # fmt: skip
    assert again.returncode == 0, again.stderr
    (stack,) = cloudformation.describe_stacks(StackName="hyper-h1")["Stacks"]
    assert deployed_people(stack) == people
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["AllowedVpcs"] == (
        "vpc-0123abcd"
    )
    refused = hyper(reader_env, "hosts", "update-host", "h1", "--key-readers", "")
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        f"hyper: --key-readers: only an owner of the host's keys ({', '.join(people[0])}) or"
        f" the account's root may change who reads them, not {reader}"
    ), refused.stderr
    # nor deletes the host: refused before anything is deleted
    refused = hyper(reader_env, "hosts", "delete-host", "h1", "--yes")
    assert refused.returncode != 0
    assert "only an owner of its keys" in refused.stderr and "nothing was deleted" in (
        refused.stderr
    ), refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr
    (stack,) = cloudformation.describe_stacks(StackName="hyper-h1")["Stacks"]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"

    # credentials read back from AWS on another machine
    (Path(aws["HYPER_HOME"]) / "config" / "hosts" / "h1.json").unlink()
    imported = hyper(aws, "hosts", "import-deployment", "--name", "h1", "--region", REGION)
    assert imported.returncode == 0, imported.stderr
    assert saved(aws, "h1")["api_key"] == key and saved(aws, "h1")["url"] == host["url"]

    deleted = hyper(aws, "hosts", "delete-host", "h1", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not cloudformation.describe_stacks()["Stacks"] or all(
        s["StackStatus"] == "DELETE_COMPLETE" for s in cloudformation.describe_stacks()["Stacks"]
    )
    assert secrets.list_secrets()["SecretList"] == []
    assert json.loads(hyper(aws, "hosts", "list-hosts", "--json").stdout)["hosts"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", "h2"], "--region"),
        (["--name", "h2", "--region", REGION, "--account", "999999999999"], "not the account"),
        (["--name", "h2", "--region", REGION, "--vpc", "10.0.0.0/99"], "neither a vpc-id"),
        (["--name", "bad/name", "--region", REGION], "invalid host name"),
        # its names would fall under host `prod`'s grants (hyper-prod--*)
        (["--name", "prod--x", "--region", REGION], "invalid host name"),
        (["--name", "hyper-prod", "--region", REGION], "may not start with 'hyper-'"),
        (["--name", "prod-", "--region", REGION], "invalid host name"),
        (["--name", "prod.", "--region", REGION], "invalid host name"),
        (["--name", "prod..x", "--region", REGION], "invalid host name"),
        (["--name", "h2", "--region", REGION, "--allowed-vpcs", "vpc-0123abcd,x"], "not a vpc-id"),
        (
            ["--name", "h2", "--region", REGION, "--key-readers", "deployer"],
            "'deployer' is not the ARN of an IAM user or role",
        ),
        (
            [
                "--name",
                "h2",
                "--region",
                REGION,
                "--key-readers",
                "arn:aws:iam::999999999999:user/x",
            ],
            "is not of this account",
        ),
        (
            ["--name", "h2", "--region", REGION, "--allowed-container-options", "root"],
            "'root' is none of privileged, host-volumes, devices, log-groups, root-jobs",
        ),
        (
            ["--name", "h2", "--region", REGION, "--subnets", "subnet-0123456789abcdef0"],
            "give --vpc vpc-",
        ),
        (
            [
                "--name",
                "h2",
                "--region",
                REGION,
                "--vpc",
                "vpc-0123456789abcdef0",
                "--subnets",
                "sub-1",
            ],
            "not a subnet id",
        ),
    ],
)
def test_bad_aws_hosts_are_refused(aws: dict[str, str], argv: list[str], message: str) -> None:
    done = hyper(aws, "hosts", "create-host", "--provider", "aws", "--yes", *argv)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert boto3.client("cloudformation", region_name=REGION).describe_stacks()["Stacks"] == []
    assert not (Path(aws["HYPER_HOME"]) / "config" / "hosts").exists() or not list(
        (Path(aws["HYPER_HOME"]) / "config" / "hosts").iterdir()
    )


def test_importing_a_host_that_is_not_there(aws: dict[str, str]) -> None:
    done = hyper(aws, "hosts", "import-deployment", "--name", "nope", "--region", REGION)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done
    assert "no stack hyper-nope" in done.stderr


def test_an_aws_host_in_an_existing_vpc_uses_the_subnets_given(
    aws: dict[str, str], tmp_path: Path
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc, subnets = vpc_with_subnets(REGION, "10.9")
    code = bundle(tmp_path / "one.zip", "# one\n")
    elsewhere = ec2.create_subnet(
        VpcId=ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"], CidrBlock="10.8.1.0/24"
    )["Subnet"]["SubnetId"]
    refused = hyper(aws, "hosts", "create-host", "--provider", "aws", "--name", "h3",
                    "--region", REGION, "--vpc", vpc, "--subnets", elsewhere,
                    "--code-bundle", str(code))  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"subnet {elsewhere} is not in {vpc}" in refused.stderr
    assert boto3.client("cloudformation", region_name=REGION).describe_stacks()["Stacks"] == []

    chosen = ",".join(subnets[1:])
    done = hyper(aws, "hosts", "create-host", "--provider", "aws", "--name", "h3",
                 "--region", REGION, "--vpc", vpc, "--subnets", chosen,
                 "--code-bundle", str(code))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert saved(aws, "h3")["vpc"] == vpc and saved(aws, "h3")["subnets"] == chosen
    function = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName="hyper-h3-host"
    )
    variables = function["Environment"]["Variables"]
    assert (variables["HYPER_HOST_VPC"], variables["HYPER_HOST_SUBNETS"]) == (vpc, chosen)


def test_the_api_key_is_letters_and_digits_as_api_gateway_documents() -> None:
    """API Gateway takes a key of 20 to 128 alphanumeric characters; `-` and `_` (which
    token_urlsafe gives) are not among them."""
    from hyper.providers.aws.host import new_api_key

    keys = {new_api_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(k.isascii() and k.isalnum() and 20 <= len(k) <= 128 for k in keys)


@pytest.mark.slow
def test_delete_host_asks_backs_up_and_removes_everything_in_every_region(
    aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regions, clusters, images and definitions in two regions (made as the deploy
    function makes them, with the user's credentials here), then delete-host: refused
    without --yes outside a terminal, then everything gone, the tables backed up."""
    import time

    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # Batch's service roles
    from hyper.models import ClusterSpec, DefinitionSpec, ImageSpec, RegionSpec, ResourceKind
    from hyper.providers.aws import batch, stacks
    from hyper.providers.aws.provider import AwsProvider
    from hyper.store.dynamodb import DynamoDBStore

    code = bundle(tmp_path / "one.zip", "# one\n")
    done = hyper(aws, "hosts", "create-host", "--provider", "aws", "--name", "h1", "--region",
                 REGION, "--code-bundle", str(code),
                 "--allowed-policies", "AmazonS3ReadOnlyAccess",
                 "--allowed-vpcs", "vpc-0123abcd,vpc-0123456789abcdef0",
                 "--allowed-container-options", "privileged,log-groups")  # fmt: skip
    assert done.returncode == 0, done.stderr
    outputs = stacks.stack_outputs("hyper-h1", REGION)
    assert outputs["AllowedPolicies"] == "AmazonS3ReadOnlyAccess"
    assert outputs["AllowedVpcs"] == "vpc-0123abcd,vpc-0123456789abcdef0"
    assert outputs["AllowedContainerOptions"] == "privileged,log-groups"
    store = DynamoDBStore(outputs["TablePrefix"], REGION, outputs["BucketName"])
    provider = AwsProvider(store, host_name="h1", secret_arn=outputs["SecretArn"],
                           patience=batch.Patience(timeout=30, interval=0))  # fmt: skip
    regions = (REGION, "us-east-1")
    for where in regions:  # a region's network, as its stack would give it
        ec2 = boto3.client("ec2", region_name=where)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="w", Description="w", VpcId=vpc)["GroupId"]
        network = {"AWSTemplateFormatVersion": "2010-09-09",
                   "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                   "Outputs": {"SubnetIds": {"Value": subnet},
                               "SecurityGroupId": {"Value": group}}}  # fmt: skip
        stacks.deploy_stack(stacks.region_stack_name("h1", where), network, where, log=print)
        spec = RegionSpec(name=where, kind="aws", main_region=where == REGION, import_vpc=False,
                          cidr="10.0.0.0/16", subnet_config="PUBLIC")  # fmt: skip
        store.put_resource("regions", where, spec.model_dump(), "ACTIVE", [], time.time())
    made = [
        (ResourceKind.CLUSTER, ClusterSpec(name="c1", compute_envs=1, type="ONDEMAND")),
        (ResourceKind.IMAGE, ImageSpec(name="work")),
        (ResourceKind.DEFINITION, DefinitionSpec(name="d1", use_cyclone_image=False,
                                                 image_uri="w:1")),
    ]  # fmt: skip
    for kind, spec in made:
        provider.deploy(kind, spec, lambda _: None)
        store.put_resource(kind.value, spec.name, spec.model_dump(), "ACTIVE", [], time.time())
    store.close()
    iam = boto3.client("iam")

    def ours() -> dict[str, object]:
        found: dict[str, object] = {
            "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"]
                            if r["RoleName"].startswith("hyper-h1-")),
            "profiles": [p["InstanceProfileName"]
                         for p in iam.list_instance_profiles()["InstanceProfiles"]],
        }  # fmt: skip
        for where in regions:
            client = boto3.client("batch", region_name=where)
            found[where] = (
                [e["computeEnvironmentName"] for e in
                 client.describe_compute_environments()["computeEnvironments"]],
                [q["jobQueueName"] for q in client.describe_job_queues()["jobQueues"]],
                [d["jobDefinitionName"] for d in
                 client.describe_job_definitions(status="ACTIVE")["jobDefinitions"]],
                [r["repositoryName"] for r in boto3.client("ecr", region_name=where)
                 .describe_repositories()["repositories"]],
                [s["StackName"] for s in boto3.client("cloudformation", region_name=where)
                 .describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"],
            )  # fmt: skip
        return found

    before = ours()
    assert "hyper-h1--c1-instance" in before["roles"] and before["profiles"]
    assert all(all(before[w]) for w in regions), before  # something of each kind, each region

    refused = hyper(aws, "hosts", "delete-host", "h1")  # stdin is no terminal: no question
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert ours() == before  # nothing changed

    deleted = hyper(aws, "hosts", "delete-host", "h1", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    after = ours()
    assert after == {"roles": [], "profiles": [], **{w: ([], [], [], [], []) for w in regions}}
    backups = boto3.client("dynamodb", region_name=REGION).list_backups()["BackupSummaries"]
    assert {b["TableName"] for b in backups} >= {outputs["TablePrefix"] + "-jobs"}
    assert "backed up table" in deleted.stderr
    assert boto3.client("secretsmanager", region_name=REGION).list_secrets()["SecretList"] == []


def test_owners_stay_owners_and_readers_readers_across_updates() -> None:
    """key_people: the owners are create-host's caller, kept by every update; readers
    are the --key-readers named last; a host deployed when KeyOwners held the owner and
    the readers together (comma-separated) keeps them all as owners until the owner names
    its readers again; only an owner or the root changes either list."""
    iam = f"arn:aws:iam::{ACCOUNT}:"
    owner, reader, root = iam + "user/owner", iam + "role/team/de,ployer", iam + "root"
    mine, theirs = owner_patterns(owner), owner_patterns(reader)
    assert key_people(None, owner, None) == (mine, [])
    assert key_people(None, owner, [reader]) == (mine, theirs)

    def stack(**parameters: str) -> dict:
        return {"Parameters": [{"ParameterKey": k, "ParameterValue": v}
                               for k, v in parameters.items()]}  # fmt: skip

    deployed = stack(KeyOwners="".join("|" + p for p in mine),
                     KeyReaders="".join("|" + p for p in theirs))  # fmt: skip
    for caller in (owner, reader, iam + "assumed-role/owner/s"):  # the reader: no change
        assert key_people(deployed, caller, None) == (mine, theirs), caller
    assert key_people(deployed, owner, []) == (mine, [])
    assert key_people(deployed, root, []) == (mine, [])
    with pytest.raises(UsageError, match="only an owner of the host's keys"):
        key_people(deployed, reader, [])
    # a host deployed before KeyReaders: its KeyOwners, caller and readers, all owners
    legacy = stack(KeyOwners=",".join([*mine, *owner_patterns(iam + "role/deployer")]))
    before = [*mine, *owner_patterns(iam + "role/deployer")]
    assert key_people(legacy, iam + "role/deployer", None) == (before, [])
    assert key_people(legacy, owner, [iam + "role/deployer"]) == (
        mine, owner_patterns(iam + "role/deployer"))  # fmt: skip
    # a host deployed before KeyOwners: the caller becomes its owner
    assert key_people(stack(), iam + "role/deployer", None) == (
        owner_patterns(iam + "role/deployer"), [])  # fmt: skip
