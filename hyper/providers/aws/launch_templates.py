"""The EC2 launch template of a cluster's instances, one per region, made, tagged and
deleted with the cluster: IMDSv2 required, hop limit 1, and bridged containers' and
non-root processes' traffic to the metadata service dropped. See hyper/providers/aws/batch.py."""

from __future__ import annotations

import base64
from typing import Any

from hyper.models import ClusterSpec
from hyper.providers import Log
from hyper.providers.aws.calls import aws_client, error_code
from hyper.providers.aws.names import Names
from hyper.providers.aws.waiting import ClientFactory

# IMDSv2 only, and its answers go no further than the instance itself (hop limit 1): a
# container on a bridge network is one hop away (AL2023 AMIs otherwise launch with 2); no
# IPv6 endpoint (said, so that a version turning it on differs from hyper's)
METADATA_OPTIONS = {"HttpEndpoint": "enabled", "HttpTokens": "required",
                    "HttpPutResponseHopLimit": 1, "HttpProtocolIpv6": "disabled"}  # fmt: skip
# What every boot of an instance runs before docker and the ECS agent start: containers on
# a bridge network never reach the metadata service, as ECS's guide for task roles has it
# (DOCKER-USER made here if docker has not yet: docker keeps the rules of one it finds);
# nor does any process on the host's network but root's (Batch runs EC2 jobs in host
# network mode, where the DOCKER-USER rule does not apply: the worker runs each job as
# another user, whom this keeps from the instance role; root's ECS agent and worker keep
# it). The same for the service's IPv6 address, which a Nitro instance with an IPv6
# address serves when its metadata options allow it, unless the kernel has no IPv6. Each
# rule is added only when missing, so a second run adds nothing. The rules live in the
# kernel and are gone after a reboot: hence a systemd unit that sets them on every boot,
# which the ECS agent requires (it does not start when the unit fails).
BLOCK_SCRIPT = """#!/bin/bash
rule() {  # TOOL CHAIN RULE...: the rule, first in CHAIN, unless it is there already
  local tool=$1 chain=$2; shift 2
  $tool --check "$chain" "$@" 2>/dev/null || $tool --insert "$chain" 1 "$@"
}
block() {  # TOOL ADDRESS: bridged containers' and non-root processes' traffic to it
  $1 --new-chain DOCKER-USER 2>/dev/null || true
  rule $1 DOCKER-USER --in-interface docker+ --destination $2 --jump DROP &&
    rule $1 OUTPUT --destination $2 --match owner ! --uid-owner 0 --jump DROP
}
block iptables 169.254.169.254/32 || exit 1
[ ! -e /proc/net/if_inet6 ] || block ip6tables fd00:ec2::254/128
"""
BLOCK_PATH = "/usr/local/sbin/hyper-block-imds"
UNIT_NAME = "hyper-block-imds.service"
UNIT = f"""[Unit]
Description=hyper: jobs and bridged containers do not reach the instance metadata service
Before=docker.service ecs.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={BLOCK_PATH}

[Install]
WantedBy=multi-user.target
"""
# the ECS agent starts only after the unit, and only when it succeeded
ECS_DROP_IN = f"""[Unit]
Requires={UNIT_NAME}
After={UNIT_NAME}
"""
# the instance's first boot (Batch takes user data as MIME multi-part; cloud-init runs it
# once, on Amazon Linux 2023, the clusters' image type, before docker and the ECS agent
# start): it installs the unit and runs it. iptables comes with the ECS-optimised AMI's
# docker, not with every Amazon Linux 2023 image: fetched when absent; an instance that
# still cannot drop that traffic never starts the ECS agent, so no job runs where it could
# take the instance's credentials.
USER_DATA = f"""MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="==HYPER=="

--==HYPER==
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
command -v ip6tables >/dev/null || dnf install -y iptables-nft || yum install -y iptables
cat > {BLOCK_PATH} <<'HYPER-SCRIPT'
{BLOCK_SCRIPT}HYPER-SCRIPT
chmod 755 {BLOCK_PATH}
cat > /etc/systemd/system/{UNIT_NAME} <<'HYPER-UNIT'
{UNIT}HYPER-UNIT
mkdir -p /etc/systemd/system/ecs.service.d
cat > /etc/systemd/system/ecs.service.d/hyper-block-imds.conf <<'HYPER-DROP-IN'
{ECS_DROP_IN}HYPER-DROP-IN
systemctl daemon-reload
systemctl enable {UNIT_NAME}
if ! systemctl start {UNIT_NAME}; then
  echo "hyper: no ECS agent: containers' traffic to the metadata service would stay open" >&2
  systemctl mask --now ecs
  exit 1
fi
grep -qx ECS_AWSVPC_BLOCK_IMDS=true /etc/ecs/ecs.config \\
  || echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config

--==HYPER==--
"""


MACHINE_TAGGED = ("instance", "volume")  # what a version tags with the host's tag


def launch_template_data(tags: dict[str, str] | None = None) -> dict[str, Any]:
    """What every instance of a hyper cluster is launched with; its instances and their
    volumes tagged `tags` (the host's: job roles may not touch what holds it, roles.py)."""
    data: dict[str, Any] = {
        "MetadataOptions": dict(METADATA_OPTIONS),
        "UserData": base64.b64encode(USER_DATA.encode()).decode(),
    }
    if tags:
        listed = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        data["TagSpecifications"] = [{"ResourceType": kind, "Tags": listed}
                                     for kind in MACHINE_TAGGED]  # fmt: skip
    return data


def ensure_launch_template(
    region: str,
    cluster: ClusterSpec,
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> tuple[str, bool]:
    """The cluster's launch template in `region` (`launch_template_data`), made when
    absent; its name, and whether its default version is new. One whose default version
    holds other data (made by an older hyper: another boot script, other metadata
    options) gets a new version with this data, made its default: compute environments
    take it on their next infrastructure update (`clusters.deploy_cluster`)."""
    ec2 = clients("ec2", region)
    name = names.launch_template(cluster.name)
    tags = names.tags(cluster=cluster.name)
    wanted = launch_template_data(tags)
    if _launch_template(ec2, name) is None:
        ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=wanted,
            TagSpecifications=[{
                "ResourceType": "launch-template",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }],
        )  # fmt: skip
        log(f"{region}: created launch template {name} (IMDSv2, hop limit 1)")
        return name, False
    (default,) = ec2.describe_launch_template_versions(
        LaunchTemplateName=name, Versions=["$Default"]
    )["LaunchTemplateVersions"]
    if _holds(default.get("LaunchTemplateData", {}), wanted):
        return name, False
    version = ec2.create_launch_template_version(
        LaunchTemplateName=name,
        LaunchTemplateData=wanted,
        VersionDescription="hyper: this release's boot script and metadata options",
    )["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion=str(version))
    log(f"{region}: launch template {name}: version {version}, this release's boot script "
        "and metadata options, is now its default")  # fmt: skip
    return name, True


def _holds(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a version's data is `wanted` and nothing more (EC2 may report more metadata
    options than were given: only those given are compared)."""
    options = current.get("MetadataOptions", {})
    return (
        not set(current) - {"TagSpecifications", *wanted}  # nothing else (a key pair...)
        and current.get("UserData") == wanted["UserData"]
        and all(options.get(k) == v for k, v in wanted["MetadataOptions"].items())
        and _tagged(current) == _tagged(wanted)
    )


def _tagged(data: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The tags a version gives its instances and volumes (and nothing else it may list)."""
    return {
        spec["ResourceType"]: sorted((t["Key"], t["Value"]) for t in spec.get("Tags", []))
        for spec in data.get("TagSpecifications", [])
        if spec.get("ResourceType") in MACHINE_TAGGED
    }


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
