"""Rules about resources that hold for every provider: what a resource refers to
must exist, what is in use may not be deleted, and a new local host's defaults.
"""

from __future__ import annotations

import difflib
import os
from typing import TypeVar

from hyper.errors import UsageError
from hyper.jobs import UNFINISHED
from hyper.models import (
    ClusterSpec,
    DefinitionSpec,
    DeployStatus,
    ImageSpec,
    QueueSpec,
    RegionSpec,
    ResourceKind,
    Spec,
)
from hyper.store.base import JobFilter, Resource, Store

SpecT = TypeVar("SpecT", bound=Spec)

MAIN_REGION = "local"
DEFAULT_CLUSTER = "local-cluster"
SAMPLE_QUEUE = "sample-queue-1"
SAMPLE_DEFINITION = "sample-def-1"
NATIVE_IMAGE = "native"


def unknown(kind: ResourceKind, name: str, existing: list[str]) -> UsageError:
    """One line naming the miss, a near match if there is one, and what exists."""
    hint = difflib.get_close_matches(name, existing, n=1)
    message = f"unknown {kind.singular} {name!r}"
    if hint:
        message += f"; did you mean {hint[0]!r}?"
    message += f" (existing {kind.value}: {', '.join(existing) or 'none'})"
    return UsageError(message)


def names(store: Store, kind: ResourceKind) -> list[str]:
    return [r.name for r in store.list_resources(kind.value)]


def require(store: Store, kind: ResourceKind, name: str) -> Resource:
    found = store.get_resource(kind.value, name)
    if found is None:
        raise unknown(kind, name, names(store, kind))
    return found


def spec_of(store: Store, kind: ResourceKind, name: str, model: type[SpecT]) -> SpecT:
    return model.model_validate(require(store, kind, name).spec)


def find_spec(store: Store, kind: ResourceKind, name: str, model: type[SpecT]) -> SpecT | None:
    found = store.get_resource(kind.value, name)
    return model.model_validate(found.spec) if found else None


def active_regions(store: Store) -> list[RegionSpec]:
    return [
        RegionSpec.model_validate(r.spec)
        for r in store.list_resources(ResourceKind.REGION.value)
        if r.status == DeployStatus.ACTIVE.value
    ]


def check_references(store: Store, kind: ResourceKind, spec: Spec) -> None:
    """Everything `spec` names must exist, by exact name."""
    if isinstance(spec, QueueSpec):
        require(store, ResourceKind.CLUSTER, spec.compute_environment)
        for region in spec.region_distribution_weights:
            require(store, ResourceKind.REGION, region)
        if spec.default_definition:
            require(store, ResourceKind.DEFINITION, spec.default_definition)
        for other in store.list_resources(ResourceKind.QUEUE.value):
            if spec.default and other.spec.get("default") and other.name != spec.name:
                raise UsageError(
                    f"queue {other.name!r} is already the host's default queue; give it"
                    " --no-default first"
                )
    if isinstance(spec, DefinitionSpec) and spec.use_cyclone_image:
        require(store, ResourceKind.IMAGE, spec.cyclone_image_name)
    if isinstance(spec, DefinitionSpec) and not spec.use_cyclone_image and not spec.image_uri:
        raise UsageError("give --image-uri, or use a host image (--use-cyclone-image)")
    if (
        isinstance(spec, ImageSpec)
        and spec.name == NATIVE_IMAGE
        and (spec.local_build_directory or spec.local_docker_image)
    ):
        raise UsageError("the native image is the host machine's own environment: nothing to build")
    if isinstance(spec, RegionSpec) and spec.main_region:
        for other in store.list_resources(ResourceKind.REGION.value):
            if other.spec.get("main_region") and other.name != spec.name:
                raise UsageError(f"region {other.name!r} is already the main region")


def users_of(store: Store, kind: ResourceKind, name: str) -> list[str]:
    """What stops `name` from being deleted: the resources and jobs that use it."""
    users: list[str] = []
    unfinished = UNFINISHED

    def jobs(where: JobFilter) -> None:
        count = sum(store.count_jobs(where).values())
        if count:
            users.append(f"{count} unfinished job{'s' if count > 1 else ''}")

    if kind is ResourceKind.CLUSTER:
        for queue in store.list_resources(ResourceKind.QUEUE.value):
            if queue.spec.get("compute_environment") == name:
                users.append(f"queue {queue.name!r}")
    elif kind is ResourceKind.IMAGE:
        for definition in store.list_resources(ResourceKind.DEFINITION.value):
            spec = DefinitionSpec.model_validate(definition.spec)
            if spec.use_cyclone_image and spec.cyclone_image_name == name:
                users.append(f"definition {definition.name!r}")
    elif kind is ResourceKind.REGION:
        for queue in store.list_resources(ResourceKind.QUEUE.value):
            if queue.spec.get("region_distribution_weights", {}).get(name, 0) > 0:
                users.append(f"queue {queue.name!r}")
        workers = [w for w in store.live_workers() if w.region == name]
        if workers:
            users.append(f"{len(workers)} running workers")
    elif kind is ResourceKind.QUEUE:
        jobs(JobFilter(queue=name, statuses=unfinished))
    elif kind is ResourceKind.DEFINITION:
        for queue in store.list_resources(ResourceKind.QUEUE.value):
            if queue.spec.get("default_definition") == name:
                users.append(f"queue {queue.name!r} (its default definition)")
        jobs(JobFilter(definition=name, statuses=unfinished))
    return users


def local_defaults(cores: int | None = None) -> list[tuple[ResourceKind, Spec]]:
    """What a new local host has, so that `qsub qsub-example-file.sh` works at once."""
    cores = cores or os.cpu_count() or 1
    return [
        (ResourceKind.REGION, RegionSpec(name=MAIN_REGION, kind="local", main_region=True)),
        (ResourceKind.IMAGE, ImageSpec(name=NATIVE_IMAGE)),
        (
            ResourceKind.CLUSTER,
            ClusterSpec(name=DEFAULT_CLUSTER, max_vcpus=cores, instance_list=["local"]),
        ),
        (ResourceKind.DEFINITION, DefinitionSpec(name=SAMPLE_DEFINITION)),
        (
            ResourceKind.QUEUE,
            QueueSpec(
                name=SAMPLE_QUEUE,
                compute_environment=DEFAULT_CLUSTER,
                default=True,
                default_definition=SAMPLE_DEFINITION,
            ),
        ),
    ]
