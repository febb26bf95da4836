"""The machines of static regions: join, poll for workers to start, leave."""

from __future__ import annotations

from typing import Any

from hyper.host.deps import Service, api_router
from hyper.host.schemas import NodeJoin, NodePoll, NodePollResponse

router = api_router()


@router.get("/nodes")
async def list_nodes(service: Service, region: str | None = None) -> dict[str, Any]:
    return {"nodes": service.nodes(region)}


@router.post("/nodes/{node_id}/join")
async def join_node(node_id: str, request: NodeJoin, service: Service) -> dict[str, Any]:
    return service.join_node(node_id, request)


@router.post("/nodes/{node_id}/poll")
async def poll_node(node_id: str, request: NodePoll, service: Service) -> NodePollResponse:
    return NodePollResponse(workers=await service.poll_node(node_id, request.wait))


@router.post("/nodes/{node_id}/leave")
async def leave_node(node_id: str, service: Service) -> dict[str, bool]:
    service.leave_node(node_id)
    return {"ok": True}
