"""The resource records a host keeps: regions, clusters, queues, images, definitions.

These are what walkthroughs return, what flags fill in, and what the host
stores (as the ``spec`` of a resource record). Field names follow the original
tool's options so its users recognise them.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import shlex
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hyper.output import DEFAULT_OUTPUT_LIMIT_MIB

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ResourceKind(str, enum.Enum):
    REGION = "regions"
    CLUSTER = "clusters"
    QUEUE = "queues"
    IMAGE = "images"
    DEFINITION = "definitions"

    @property
    def singular(self) -> str:
        return self.value.rstrip("s")


class DeployStatus(str, enum.Enum):
    CREATING = "CREATING"
    UPDATING = "UPDATING"
    DELETING = "DELETING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"

    @property
    def settled(self) -> bool:
        return self in (DeployStatus.ACTIVE, DeployStatus.FAILED)


def check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError("use letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)


def check_vpc(value: str) -> None:
    """A vpc-id, or the CIDR of a new VPC."""
    if not value.startswith("vpc-"):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is neither a vpc-id nor a CIDR such as 10.0.0.0/16"
            ) from None


def _cidr(value: str | None) -> str | None:
    if value:
        ipaddress.ip_network(value, strict=False)  # raises ValueError with a clear message
    return value or None


class RegionSpec(Spec):
    """A compute site. On a local host: `local` is this machine; `static` is a pool of
    machines whose workers join over HTTP; `slurm` is a Slurm cluster whose pilot jobs run
    the workers. The network fields matter on AWS, the pilot fields on Slurm."""

    kind: Literal["local", "static", "aws", "slurm"] = "local"
    main_region: bool = False
    import_vpc: bool = True  # use the host's VPC
    vpc_id: str | None = None
    cidr: str | None = None
    peer_with_main_region: bool = False
    deploy_vpc_endpoints: Literal["OFF", "DATA_OPTIMISED", "FOR_PRIVATE_VPC"] = "OFF"
    subnet_config: Literal["PUBLIC", "PRIVATE_ISOLATED", "PRIVATE_WITH_NAT"] = "PRIVATE_WITH_NAT"
    nat_gateways: int = Field(2, ge=0, le=3)
    # slurm: pilot jobs submitted with sbatch (hyper/launchers/slurm.py, docs/slurm.md)
    partition: str = ""  # empty: the cluster's default partition
    account: str = ""
    qos: str = ""
    reservation: str = ""
    sbatch_args: str = ""  # more sbatch arguments, split as a shell would
    pilot_walltime_minutes: int = Field(60, ge=2)
    max_pilots: int = Field(10, ge=1)
    pilot_idle_seconds: float = Field(60.0, ge=1)
    pilot_pending_minutes: float = Field(30.0, gt=0, description="cancel pilots pending longer")
    worker_python: str = ""  # empty: the host's own Python; else a path on the shared file system

    @field_validator("sbatch_args")
    @classmethod
    def _valid_sbatch_args(cls, value: str) -> str:
        shlex.split(value)  # raises ValueError for an unclosed quote
        return value

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str | None) -> str | None:
        return _cidr(value)


class ClusterSpec(Spec):
    """Capacity across every region of the host."""

    instance_list: list[str] = Field(default_factory=lambda: ["optimal"])
    max_vcpus: int = Field(1000, ge=1, description="vCPUs per region")
    compute_envs: int = Field(3, ge=1, le=3)
    type: Literal["SPOT", "ONDEMAND"] = "SPOT"
    iam_policies: list[str] = Field(default_factory=list)
    main_region_image_name: str = ""
    bid_percentage: int = Field(100, ge=1, le=100)
    allocation_strategy: Literal["SPOT_CAPACITY_OPTIMIZED", "BEST_FIT_PROGRESSIVE", "BEST_FIT"] = (
        "SPOT_CAPACITY_OPTIMIZED"
    )
    compute_resources_tags: dict[str, str] = Field(default_factory=dict)


class QueueSpec(Spec):
    compute_environment: str = Field(description="the cluster's exact name")
    automate_region_weights: bool = True
    region_distribution_weights: dict[str, int] = Field(
        default_factory=dict, description="region -> integer weight; 0 leaves a region unused"
    )
    default: bool = Field(False, description="the host's queue for jobs that name none")
    default_definition: str = Field("", description="the definition for jobs that name none")

    @model_validator(mode="after")
    def _weights(self) -> QueueSpec:
        weights = self.region_distribution_weights
        if any(w < 0 for w in weights.values()):
            raise ValueError("region weights are integers of 0 or more")
        if not self.automate_region_weights and not any(w > 0 for w in weights.values()):
            raise ValueError("give at least one region a weight above 0 (or automate weights)")
        return self


class ImageSpec(Spec):
    """`native` is the host machine's own environment; others are container images."""

    local_build_directory: str | None = None
    local_docker_image: str | None = None  # repo:tag pushed with replace-with-local-image
    uri: str | None = None  # where workers pull it from, once built


LOG_DRIVERS = ("AWSLOGS", "FLUENTD", "GELF", "JOURNALD", "JSON_FILE", "LOGENTRIES", "SPLUNK",
               "SYSLOG")  # fmt: skip


class DefinitionSpec(Spec):
    use_cyclone_image: bool = True  # an image of this host, rather than an image URI
    cyclone_image_name: str = "native"
    image_uri: str = ""  # `_REGION_` is replaced per region
    jobs_to_workers_ratio: int = Field(1, ge=1)
    vcpus: int = Field(1, ge=1)
    memory_limit_mib: int = Field(1024, ge=4)
    # CPUs a job asking for nothing gets (memory in proportion); 0: the whole worker
    default_cpus: int = Field(0, ge=0)
    linux_parameters: dict[str, Any] = Field(default_factory=dict)
    ulimits: list[dict[str, Any]] = Field(default_factory=list)
    mount_points: list[dict[str, Any]] = Field(default_factory=list)
    host_volumes: list[dict[str, Any]] = Field(default_factory=list)
    gpu_count: int | None = Field(None, ge=0)
    # the GPUs a worker hands its jobs (their indices on the machine); empty: 0..count-1
    gpu_ids: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    privileged: bool = False
    user: str = ""
    timeout_minutes: int | None = Field(None, ge=1, description="worker lifetime")
    iam_policies: list[str] = Field(default_factory=list)
    log_driver: str = ""
    log_options: dict[str, str] = Field(default_factory=dict)
    enable_qlog: bool = True
    # output of a job attempt the host keeps (its first and last halves): hyper.output
    output_limit_mib: int = Field(DEFAULT_OUTPUT_LIMIT_MIB, ge=1, le=1024)

    @field_validator("log_driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value and value.upper() not in LOG_DRIVERS:
            raise ValueError(f"use one of {', '.join(LOG_DRIVERS)}")
        return value.upper()

    @model_validator(mode="after")
    def _gpus(self) -> DefinitionSpec:
        if self.gpu_ids and len(self.gpu_ids) != (self.gpu_count or 0):
            raise ValueError(
                f"{len(self.gpu_ids)} GPU ids for a gpu_count of {self.gpu_count or 0}: give"
                " one id per GPU"
            )
        if any(not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", g) for g in self.gpu_ids):
            raise ValueError("GPU ids are indices or UUIDs (letters, digits, '-', ':', '.')")
        if self.default_cpus > self.vcpus:
            raise ValueError(
                f"default_cpus {self.default_cpus} is more than the worker's {self.vcpus} vCPUs"
            )
        return self

    @property
    def native(self) -> bool:
        return self.use_cyclone_image and self.cyclone_image_name == "native"


SPECS: dict[ResourceKind, type[Spec]] = {
    ResourceKind.REGION: RegionSpec,
    ResourceKind.CLUSTER: ClusterSpec,
    ResourceKind.QUEUE: QueueSpec,
    ResourceKind.IMAGE: ImageSpec,
    ResourceKind.DEFINITION: DefinitionSpec,
}
