"""Definitions: a Batch job definition per region running the worker agent.
See hyper/providers/aws/batch.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hyper.errors import DeployFailed, UsageError
from hyper.models import DefinitionSpec, ImageSpec
from hyper.providers import Log
from hyper.providers.aws.calls import aws_client
from hyper.providers.aws.names import Names
from hyper.providers.aws.repositories import REGION_PLACEHOLDER
from hyper.providers.aws.waiting import ClientFactory, _aws_failed
from hyper.worker import identity

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
    "root-jobs": "jobs as root (a job could then act as its worker)",
}


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
    if group is not None and group not in log_groups:  # Batch's /aws/batch/job is everyone's
        asked.append("log-groups")
    if identity.names_root(definition.user):  # others run as another user than the worker
        asked.append("root-jobs")
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
    secret_arn: str | None,
    log_group: str | None = None,
    worker_secret_arn: str | None = None,
    execution_role_arn: str | None = None,
) -> dict[str, Any]:
    """The RegisterJobDefinition request of a definition in `region`: every field of the
    definition mapped; Batch never retries (hyper retries jobs itself). Its workers log to
    `log_group` (the host's) unless it names a driver or group of its own. With
    `worker_secret_arn` and `execution_role_arn`, the worker key reaches the worker as
    ``HYPER_API_KEY`` from the definition's ``secrets``: the ECS agent reads it with the
    execution role (AWS Batch User Guide, "Specify sensitive data with Secrets
    Manager"; the full ARN, as a secret of another region needs), so no key is in the
    submitted job's overrides, which DescribeJobs shows."""
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
    }
    if secret_arn:  # a host made before worker tokens: the worker reads the key itself
        environment["HYPER_API_KEY"] = secret_arn
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
    if worker_secret_arn and execution_role_arn:
        container["executionRoleArn"] = execution_role_arn
        container["secrets"] = [{"name": "HYPER_API_KEY", "valueFrom": worker_secret_arn}]
    if definition.linux_parameters:
        container["linuxParameters"] = dict(definition.linux_parameters)
    # no `user`: the worker stays root, and runs the jobs as the definition's user
    # (hyper.worker.identity), who cannot reach it
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
    if (
        log_group
        and container.get("logConfiguration", {"logDriver": "awslogs"})["logDriver"] == "awslogs"
        and "awslogs-group" not in definition.log_options
    ):
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            **definition.log_options, **own_log_options(log_group)}}  # fmt: skip
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


def own_log_options(log_group: str) -> dict[str, str]:
    """awslogs into the host's own group, not Batch's default `/aws/batch/job` (every
    team's, which a job holding the instance role could write into): the group is made
    in a region by the first worker there (the instance role may make that one group)."""
    return {"awslogs-group": log_group, "awslogs-create-group": "true"}


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
    secret_arn: str | None,
    log_group: str | None = None,
    clients: ClientFactory = aws_client,
    worker_secret_arn: str | None = None,
    execution_role_arn: str | None = None,
) -> str:
    """Register the definition's job definition in `region` (a new revision on update; the
    older ones are deregistered). Returns the new revision's ARN."""
    request = job_definition(
        region,
        definition,
        names,
        image=image,
        job_role_arn=job_role_arn,
        secret_arn=secret_arn,
        log_group=log_group,
        worker_secret_arn=worker_secret_arn,
        execution_role_arn=execution_role_arn,
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
