"""`hyper hosts check-host` for an AWS host: what a real account still lacks, in one
screen. Each check says what it found and, when something is missing, what to do.

- credentials: whose they are (STS), and that they are the host's account;
- the host: its stack deployed, its functions' roles there with the host's boundary;
- the Batch service-linked role (AWS makes it on first use; an account whose policies
  forbid that must make it first);
- quotas: the account's Lambda concurrency (lambda:GetAccountSettings, the limit that
  holds) against what the host reserves, EC2 On-Demand and Spot vCPUs in each region
  against what the host's clusters ask;
- images: each definition's image is in its registry in every ACTIVE region;
- grants: each definition, cluster and region deployed with older grants than this
  release gives (hyper.providers.aws.grants), with the command that deploys it again;
  each cluster's compute environments that keep an older launch template (made before
  launch templates, or unable to take an infrastructure update), with what mends them;
- a round trip (optional, `--queue` and `--definition`): one job submitted, run by a
  Batch worker and reported back, within a deadline.

Nothing here changes the account, except the round trip's one job.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hyper.config import HostConfig
from hyper.providers.aws import grants, stacks
from hyper.providers.aws.calls import aws_client, error_code, error_message
from hyper.providers.aws.clusters import MAX_COMPUTE_ENVS, infrastructure_updates
from hyper.providers.aws.names import Names
from hyper.providers.aws.template_parts import (
    API_CONCURRENCY,
    DEPLOY_CONCURRENCY,
    resource_prefix,
)

# quota codes (Service Quotas) and what an AWS host wants at least
LAMBDA_CONCURRENCY = ("lambda", "L-B99A9384", 1000.0)  # concurrent executions
# the host's functions reserve this much of the account's Lambda concurrency, and AWS
# keeps 100 unreserved: an account's limit must be at least their sum (510), more when
# other functions reserve some. The limit that holds is lambda:GetAccountSettings'
# (new accounts have less than their Service Quotas value says).
HOST_RESERVES = API_CONCURRENCY + DEPLOY_CONCURRENCY
UNRESERVED_KEPT = 100
EC2_ON_DEMAND_VCPUS = ("ec2", "L-1216C47A")  # Running On-Demand Standard instances, vCPUs
EC2_SPOT_VCPUS = ("ec2", "L-34B43A08")  # All Standard Spot Instance Requests, vCPUs


MAKE_BATCH_ROLE = (
    "absent: AWS makes it on the first compute environment, or: aws iam "
    "create-service-linked-role --aws-service-name batch.amazonaws.com"
)


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool | None  # None: could not tell
    detail: str


Clients = Callable[[str, str], Any]


def check_host(
    host: HostConfig,
    resources: dict[str, list[dict[str, Any]]],
    *,
    clients: Clients = aws_client,
    round_trip: Callable[[], Check] | None = None,
) -> list[Check]:
    """Every check of an AWS host; `resources` are the host's records by kind (from its
    API: regions, clusters, definitions)."""
    region = host.region or "us-east-1"
    found = [_credentials(host, region, clients)]
    found += _stack(host, region, clients)
    found.append(_service_linked_role(clients))
    regions = [r["name"] for r in resources.get("regions", [])
               if r["status"] == "ACTIVE" and r["spec"].get("kind") == "aws"]  # fmt: skip
    deployed = any(c.what == "host stack" and c.ok for c in found)
    found.append(_lambda_concurrency(clients, region, HOST_RESERVES if deployed else 0))
    clusters = [c["spec"] for c in resources.get("clusters", [])]
    for kind, code in (("ONDEMAND", EC2_ON_DEMAND_VCPUS), ("SPOT", EC2_SPOT_VCPUS)):
        wanted = float(sum(c.get("max_vcpus", 0) for c in clusters if c.get("type") == kind))
        if wanted:
            for where in regions:
                label = f"EC2 {kind.lower()} vCPUs in {where}"
                found.append(_quota(clients, where, code[0], code[1], wanted, label))
    for definition in resources.get("definitions", []):
        uri = definition["spec"].get("image_uri") or ""
        for where in regions:
            found.append(_image(clients, where, definition["name"], uri))
    found += _grants(host, resources, regions, clients)
    if round_trip is not None:
        found.append(round_trip())
    return found


def _credentials(host: HostConfig, region: str, clients: Clients) -> Check:
    try:
        account = str(clients("sts", region).get_caller_identity()["Account"])
    except Exception as error:
        return Check("AWS credentials", False, f"none usable: {error_message(error)}")
    if host.account and host.account != account:
        return Check("AWS credentials", False,
                     f"account {account}, but the host is in {host.account}")  # fmt: skip
    return Check("AWS credentials", True, f"account {account}")


def _stack(host: HostConfig, region: str, clients: Clients) -> list[Check]:
    try:
        stack = stacks.describe_stack(stacks.host_stack_name(host.name), region)
    except Exception as error:
        return [Check("host stack", None, error_message(error))]
    if stack is None:
        return [Check("host stack", False, "not deployed: hyper hosts create-host")]
    status = str(stack.get("StackStatus"))
    found = [Check("host stack", status in stacks.DEPLOYED, status)]
    outputs = stacks.outputs_of(stack)
    boundary = outputs.get("BoundaryArn")
    iam = clients("iam", "us-east-1")
    for what in ("FunctionRole", "DeployRole"):
        try:
            resource = clients("cloudformation", region).describe_stack_resource(
                StackName=stacks.host_stack_name(host.name), LogicalResourceId=what
            )["StackResourceDetail"]
            role = iam.get_role(RoleName=resource["PhysicalResourceId"])["Role"]
        except Exception as error:
            found.append(Check(f"role {what}", False, error_message(error)))
            continue
        has = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
        ok = bool(boundary) and has == boundary
        found.append(Check(f"role {what}", ok, "bounded" if ok else "no permissions boundary:"
                           " hyper hosts update-host"))  # fmt: skip
    return found


def _service_linked_role(clients: Clients) -> Check:
    try:
        clients("iam", "us-east-1").get_role(RoleName="AWSServiceRoleForBatch")
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            return Check("Batch service-linked role", None, MAKE_BATCH_ROLE)
        return Check("Batch service-linked role", None, error_message(error))
    return Check("Batch service-linked role", True, "there")


def _quota(
    clients: Clients, region: str, service: str, code: str, wanted: float, label: str
) -> Check:
    try:
        value = float(
            clients("service-quotas", region).get_service_quota(
                ServiceCode=service, QuotaCode=code
            )["Quota"]["Value"]
        )
    except Exception as error:
        return Check(label, None, f"could not read quota {code}: {error_message(error)}")
    if value < wanted:
        return Check(label, False, f"{value:g}, less than {wanted:g}: ask AWS for more"
                     f" (Service Quotas, {service} {code})")  # fmt: skip
    return Check(label, True, f"{value:g} (wanted {wanted:g})")


def lambda_concurrency_lacking(settings: dict[str, Any], reserved_already: int = 0) -> str:
    """What the account lacks to reserve the host's Lambda concurrency, from
    lambda:GetAccountSettings' answer ("" when nothing); `reserved_already`: what the
    host's functions hold now (a redeploy)."""
    limit = int(settings["AccountLimit"]["ConcurrentExecutions"])
    unreserved = int(settings["AccountLimit"]["UnreservedConcurrentExecutions"])
    reserved_by_others = limit - unreserved - reserved_already
    needed = HOST_RESERVES + UNRESERVED_KEPT + reserved_by_others
    if limit >= needed:
        return ""
    return (
        f"the account's Lambda concurrency in this region is {limit} ({unreserved} unreserved);"
        f" the host reserves {HOST_RESERVES} and AWS keeps {UNRESERVED_KEPT} unreserved: ask"
        f" AWS for at least {needed} concurrent executions (Service Quotas, lambda"
        f" {LAMBDA_CONCURRENCY[1]})"
    )


def _lambda_concurrency(clients: Clients, region: str, reserved_already: int) -> Check:
    label = "Lambda concurrent executions"
    try:
        settings = clients("lambda", region).get_account_settings()
    except Exception as error:
        return Check(label, None, f"could not read the account's limit: {error_message(error)}")
    lacking = lambda_concurrency_lacking(settings, reserved_already)
    if lacking:
        return Check(label, False, lacking)
    limit = int(settings["AccountLimit"]["ConcurrentExecutions"])
    return Check(label, True, f"{limit} (the host is sized for {LAMBDA_CONCURRENCY[2]:,.0f})")


def _image(clients: Clients, region: str, definition: str, uri: str) -> Check:
    label = f"image of {definition} in {region}"
    image = uri.replace("_REGION_", region)
    if ".dkr.ecr." not in image:
        return Check(label, None, f"{image or 'a host image'}: not in ECR, not checked")
    registry, _, rest = image.partition("/")
    repository, _, tag = rest.partition(":")
    account = registry.split(".", 1)[0]
    try:
        clients("ecr", region).describe_images(
            registryId=account, repositoryName=repository, imageIds=[{"imageTag": tag or "latest"}]
        )
    except Exception as error:
        return Check(label, False, f"{image}: {error_message(error)}")
    return Check(label, True, image)


def _grants(
    host: HostConfig,
    resources: dict[str, list[dict[str, Any]]],
    regions: list[str],
    clients: Clients,
) -> list[Check]:
    """A line for each definition, cluster and region stack deployed with older grants
    (or one line when none is), each with the command that deploys it again."""
    names = Names(prefix=resource_prefix(host.name))
    iam = clients("iam", "us-east-1")
    marks: list[tuple[str, str, Callable[[], str | None]]] = []
    for record in resources.get("definitions", []):
        job_role = names.job_role(record["name"])
        marks.append(("definitions", record["name"], functools.partial(_role_mark, iam, job_role)))
    for record in resources.get("clusters", []):
        role = names.instance_role(record["name"])
        marks.append(("clusters", record["name"], functools.partial(_role_mark, iam, role)))
    for where in regions:
        stack = stacks.region_stack_name(host.name, where)
        marks.append(("regions", where, functools.partial(_stack_mark, stack, where)))
    found = []
    for kind, name, read in marks:
        label = f"grants of {grants.SINGULAR[kind]} {name}"
        try:
            version = grants.version_of(read())
        except LookupError:
            continue  # not deployed: it holds no grants
        except Exception as error:
            found.append(Check(label, None, f"could not read: {error_message(error)}"))
            continue
        current = grants.VERSIONS[kind]
        if version < current:
            command = grants.redeploy_command(kind, name)
            said = f"deployed with grants version {version}, older than {current}: {command}"
            found.append(Check(label, False, said))
    for record in resources.get("clusters", []):
        for where in regions:
            found += _launch_templates(clients, names, record["name"], where)
    if not found:
        versions = ", ".join(f"{kind} {v}" for kind, v in grants.VERSIONS.items())
        found.append(Check("grants", True, f"everything deployed with this release's ({versions})"))
    return found


def _launch_templates(clients: Clients, names: Names, cluster: str, region: str) -> list[Check]:
    """A line when the cluster's compute environments in `region` were made before launch
    templates (IMDSv2, no metadata service for containers): an update keeps them so; and
    one when some cannot take an infrastructure update (`_kept_versions`)."""
    label = f"launch template of cluster {cluster} in {region}"
    wanted = [names.compute_env(cluster, n + 1) for n in range(MAX_COMPUTE_ENVS)]
    try:
        envs = clients("batch", region).describe_compute_environments(computeEnvironments=wanted)[
            "computeEnvironments"
        ]
    except Exception as error:
        return [Check(label, None, f"could not read: {error_message(error)}")]
    bare = [e["computeEnvironmentName"] for e in envs
            if not (e.get("computeResources") or {}).get("launchTemplate")]  # fmt: skip
    found = []
    if bare:
        said = (
            f"{', '.join(bare)} made before launch templates, which an update keeps:"
            f" hyper clusters delete-cluster {cluster}, then add-cluster"
        )
        found.append(Check(label, False, said))
    return found + _kept_versions(clients, names, cluster, region, envs)


def _kept_versions(
    clients: Clients, names: Names, cluster: str, region: str, envs: list[dict[str, Any]]
) -> list[Check]:
    """A line when the cluster's launch template has had a newer default version made (a
    release's new boot script or metadata options: ensure_launch_template) and some of
    its compute environments cannot take it: Batch takes $Default again only in an
    infrastructure update, which it does only for an environment made with its
    service-linked role and not BEST_FIT (clusters.infrastructure_updates); so their
    instances boot the older version (without, for one, the rules that keep jobs from
    the metadata service). Only a new environment takes the new version."""
    template = names.launch_template(cluster)
    stuck = []
    for env in envs:
        spec = (env.get("computeResources") or {}).get("launchTemplate") or {}
        if spec.get("launchTemplateName") == template and not infrastructure_updates(env):
            stuck.append((env["computeEnvironmentName"], str(spec.get("version", "$Default"))))
    if not stuck:
        return []
    label = f"launch template version of cluster {cluster} in {region}"
    ec2 = clients("ec2", region)
    try:
        (found,) = ec2.describe_launch_templates(LaunchTemplateNames=[template])["LaunchTemplates"]
    except Exception as error:
        if "NotFound" in error_code(error):
            return []  # no template: each environment says so when it next launches
        return [Check(label, None, f"could not read: {error_message(error)}")]
    default = int(found["DefaultVersionNumber"])
    kept = [name for name, version in stuck if version != str(default)]
    if default <= 1 or not kept:
        return []  # the version they were made with, or the one they name
    try:
        (made,) = ec2.describe_launch_template_versions(
            LaunchTemplateName=template, Versions=[str(default)]
        )["LaunchTemplateVersions"]
        since = f" ({made['CreateTime']:%Y-%m-%d %H:%M} UTC)"
    except Exception:  # the date only helps: the line stands without it
        since = ""
    said = (
        f"{', '.join(kept)} cannot take an infrastructure update (made with a custom"
        f" service role, or BEST_FIT), so they keep the version of {template} they were"
        f" made with unless made after its default version {default}{since}, which holds"
        f" this release's boot script (the metadata service's rules for jobs):"
        f" hyper clusters delete-cluster {cluster}, then add-cluster"
    )
    return [Check(label, False, said)]


def _role_mark(iam: Any, role: str) -> str | None:
    """The role's grants tag (LookupError: no such role)."""
    try:
        tags = iam.list_role_tags(RoleName=role)["Tags"]
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            raise LookupError(role) from None
        raise
    return next((t["Value"] for t in tags if t["Key"] == grants.GRANTS_TAG), None)


def _stack_mark(name: str, region: str) -> str | None:
    """The stack's grants output (LookupError: no such stack)."""
    stack = stacks.describe_stack(name, region)
    if stack is None:
        raise LookupError(name)
    return stacks.outputs_of(stack).get(grants.GRANTS_OUTPUT)


def wait_for_job(
    submit: Callable[[], int],
    status: Callable[[int], str],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Check:
    """The round trip: one job submitted, then its status until it ends or `timeout`."""
    job = submit()
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = status(job)
        if seen in ("Successful", "Failed", "Cancelled"):
            break
        sleep(5)
    ok = seen == "Successful"
    detail = f"job {job} {seen or 'unknown'}" + ("" if seen else f" after {timeout:g} s")
    return Check("one job round trip", ok, detail)
