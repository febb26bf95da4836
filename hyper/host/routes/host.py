"""The host itself: its health, its API's schema, and purging what finished long ago."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from hyper.host.deps import Service, Settings, StoreDep, api_router
from hyper.host.ticks import purge_finished

router = api_router()


class PurgeRequest(BaseModel):
    older_than_days: float | None = Field(None, ge=0, le=100 * 365)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema


@router.get("/health")
async def health(service: Service) -> dict[str, Any]:
    return service.health()


@router.post("/purge")
async def purge(request: PurgeRequest, settings: Settings, store: StoreDep) -> dict[str, Any]:
    """Delete finished jobs, their logs and files, older than `older_than_days`
    (default: the host's retention), and give the space back."""
    days = settings.retention_days if request.older_than_days is None else request.older_than_days
    done = purge_finished(store, days, rewrite=True, workers_dir=settings.workers_dir)
    return {"older_than_days": days, **done}
