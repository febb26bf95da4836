"""Resources (regions, clusters, queues, images, definitions): list, see, create,
update and delete; changes are deployed asynchronously (202, then a status)."""

from __future__ import annotations

from typing import Any

from hyper.deployer import build_spec
from hyper.host.deps import Service, api_router
from hyper.host.schemas import ResourceList
from hyper.models import ResourceKind

router = api_router()


@router.get("/resources/{kind}", response_model=ResourceList)
async def list_resources(kind: ResourceKind, service: Service) -> ResourceList:
    return ResourceList(items=service.list_resources(kind))


@router.get("/resources/{kind}/{name}")
async def get_resource(kind: ResourceKind, name: str, service: Service) -> dict[str, Any]:
    return service.get_resource(kind, name)


@router.post("/resources/{kind}", status_code=202)
async def create_resource(
    kind: ResourceKind, spec: dict[str, Any], service: Service
) -> dict[str, Any]:
    return service.deployer.create(kind, build_spec(kind, spec)).as_dict()


@router.patch("/resources/{kind}/{name}", status_code=202)
async def update_resource(
    kind: ResourceKind, name: str, changes: dict[str, Any], service: Service
) -> dict[str, Any]:
    return service.deployer.update(kind, name, changes).as_dict()


@router.delete("/resources/{kind}/{name}", status_code=202)
async def delete_resource(
    kind: ResourceKind, name: str, service: Service, force: bool = False
) -> dict[str, Any]:
    return service.deployer.delete(kind, name, force=force).as_dict()
