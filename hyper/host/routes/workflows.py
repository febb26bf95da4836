"""Workflows: start one, list them, see one, cancel one (the host moves them on)."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from hyper.host.deps import Service, WorkflowId, api_router
from hyper.host.schemas import WorkflowCancel, WorkflowRequest

router = api_router()


@router.post("/workflows", status_code=201)
async def start_workflow(request: WorkflowRequest, service: Service) -> dict[str, Any]:
    return service.workflows.start(request).shown()


@router.get("/workflows")
async def list_workflows(
    service: Service, unfinished: bool = False, limit: int = Query(100, ge=1, le=1000)
) -> dict[str, Any]:
    found = service.workflows.recent(unfinished=unfinished, limit=limit)
    return {"workflows": [workflow.shown() for workflow in found]}


@router.get("/workflows/{workflow_id}")
async def get_workflow(workflow_id: WorkflowId, service: Service) -> dict[str, Any]:
    return service.workflows.get(workflow_id).shown()


@router.post("/workflows/{workflow_id}/cancel")
async def cancel_workflow(
    workflow_id: WorkflowId, body: WorkflowCancel, service: Service
) -> dict[str, Any]:
    return service.workflows.cancel(workflow_id, body.cause).shown()
