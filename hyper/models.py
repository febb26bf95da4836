"""The resource records a host keeps: regions, clusters, queues, images, definitions.

These are what walkthroughs return, what flags fill in, and what the host
stores (as the ``spec`` of a resource record). Names follow the original
tool's options so its users recognise them.
"""

from __future__ import annotations

import enum
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ResourceKind(str, enum.Enum):
    REGION = "regions"
    CLUSTER = "clusters"
    QUEUE = "queues"
    IMAGE = "images"
    DEFINITION = "definitions"


class DeployStatus(str, enum.Enum):
    CREATING = "CREATING"
    UPDATING = "UPDATING"
    DELETING = "DELETING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                "use letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value


class RegionSpec(Spec):
    kind: Literal["local", "static", "aws", "slurm"] = "local"
    main_region: bool = False


class ClusterSpec(Spec):
    max_vcpus: int = Field(1000, ge=1, description="vCPUs per region")
    instance_list: list[str] = Field(default_factory=lambda: ["optimal"])
    compute_envs: int = Field(3, ge=1, le=3)
    type: Literal["SPOT", "ONDEMAND"] = "SPOT"


class QueueSpec(Spec):
    compute_environment: str = Field(description="the cluster's exact name")
    region_weights: dict[str, int] | Literal["auto"] = "auto"


class ImageSpec(Spec):
    local_build_directory: str | None = None


class DefinitionSpec(Spec):
    image: str = "native"
    jobs_to_workers_ratio: int = Field(1, ge=1)
    vcpus: int = Field(1, ge=1)
    memory_limit_mib: int = Field(1024, ge=4)
    environment: dict[str, str] = Field(default_factory=dict)
    timeout_minutes: int | None = Field(None, ge=1, description="worker lifetime")
    enable_qlog: bool = True


SPECS: dict[ResourceKind, type[Spec]] = {
    ResourceKind.REGION: RegionSpec,
    ResourceKind.CLUSTER: ClusterSpec,
    ResourceKind.QUEUE: QueueSpec,
    ResourceKind.IMAGE: ImageSpec,
    ResourceKind.DEFINITION: DefinitionSpec,
}
