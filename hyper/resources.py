"""Creating resources and checking references to them, for every provider.

A local host's defaults (its main region, a cluster sized to this machine, a
sample queue and definition) are made here through ``create``, the same path
the resource commands take.
"""

from __future__ import annotations

import difflib
import os
import time
from typing import TypeVar

from hyper.errors import UsageError
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
from hyper.store.base import Resource, Store

SpecT = TypeVar("SpecT", bound=Spec)

MAIN_REGION = "local"
DEFAULT_CLUSTER = "local-cluster"
SAMPLE_QUEUE = "sample-queue-1"
SAMPLE_DEFINITION = "sample-def-1"


def _singular(kind: ResourceKind) -> str:
    return kind.value.rstrip("s")


def unknown(kind: ResourceKind, name: str, existing: list[str]) -> UsageError:
    """One line naming the miss, a near match if there is one, and what exists."""
    what = _singular(kind)
    hint = difflib.get_close_matches(name, existing, n=1)
    message = f"unknown {what} {name!r}"
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


def create(store: Store, kind: ResourceKind, spec: Spec) -> Resource:
    """Record a new resource after checking what it refers to.

    On a local host there is nothing to deploy, so the record goes straight to
    ACTIVE; the log says what was checked.
    """
    if store.get_resource(kind.value, spec.name) is not None:
        raise UsageError(f"{_singular(kind)} {spec.name!r} already exists")
    if isinstance(spec, QueueSpec):
        require(store, ResourceKind.CLUSTER, spec.compute_environment)
        if isinstance(spec.region_weights, dict):
            for region in spec.region_weights:
                require(store, ResourceKind.REGION, region)
            if not any(w > 0 for w in spec.region_weights.values()):
                raise UsageError("at least one region weight must be above 0")
            if any(w < 0 for w in spec.region_weights.values()):
                raise UsageError("region weights must be integers of 0 or more")
    if isinstance(spec, DefinitionSpec):
        require(store, ResourceKind.IMAGE, spec.image)
    now = time.time()
    data = spec.model_dump()
    store.put_resource(kind.value, spec.name, data, DeployStatus.CREATING.value, "creating", now)
    return store.put_resource(kind.value, spec.name, data, DeployStatus.ACTIVE.value, "ready", now)


def ensure_local_defaults(store: Store, cores: int | None = None) -> None:
    """Give a new local host what `qsub qsub-example-file.sh` needs.

    Only a host with no region yet is new: what an operator deleted later stays deleted.
    """
    if store.list_resources(ResourceKind.REGION.value):
        return
    cores = cores or os.cpu_count() or 1
    wanted: list[tuple[ResourceKind, Spec]] = [
        (ResourceKind.REGION, RegionSpec(name=MAIN_REGION, kind="local", main_region=True)),
        (ResourceKind.IMAGE, ImageSpec(name="native")),
        (
            ResourceKind.CLUSTER,
            ClusterSpec(name=DEFAULT_CLUSTER, max_vcpus=cores, instance_list=["local"]),
        ),
        (ResourceKind.QUEUE, QueueSpec(name=SAMPLE_QUEUE, compute_environment=DEFAULT_CLUSTER)),
        (ResourceKind.DEFINITION, DefinitionSpec(name=SAMPLE_DEFINITION)),
    ]
    for kind, spec in wanted:
        create(store, kind, spec)
