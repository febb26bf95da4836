"""Pieces of an AWS host's tests: a code bundle and a VPC with subnets."""

from __future__ import annotations

import zipfile
from pathlib import Path

import boto3


def bundle(path: Path, text: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hyper/__init__.py", text)
    return path


def vpc_with_subnets(region: str, prefix: str) -> tuple[str, list[str]]:
    """A VPC PREFIX.0.0/16 with a subnet in each of three zones."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"{prefix}.{n}.0/24", AvailabilityZone=f"{region}{zone}"
        )["Subnet"]["SubnetId"]
        for n, zone in enumerate("abc", start=1)
    ]
    return vpc, subnets
