"""What the API's routers share: the host's service, settings and store (taken from the
app they are part of), the key header the schema documents, the path types, and the
router every resource module starts from.

The dependencies are coroutines on purpose: FastAPI runs a plain function in a thread
pool, and the store is used from the event loop's one thread only."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request

from hyper.host.middleware import JsonRoute
from hyper.host.schemas import MAX_ID
from hyper.host.service import HostService
from hyper.host_settings import HostSettings
from hyper.jobs import FILE_KEY_PATTERN, MAX_FILE_KEY, JobStatus
from hyper.store.base import JobFilter, Store


async def authenticated(x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Documents the header in the schema; ApiKeyMiddleware has already checked it."""


async def _service(request: Request) -> HostService:
    service: HostService = request.app.state.service
    return service


async def _settings(request: Request) -> HostSettings:
    settings: HostSettings = request.app.state.service.settings
    return settings


async def _store(request: Request) -> Store:
    store: Store = request.app.state.service.store
    return store


async def _uploads(request: Request) -> asyncio.Semaphore:
    uploads: asyncio.Semaphore = request.app.state.uploads
    return uploads


Service = Annotated[HostService, Depends(_service)]
Settings = Annotated[HostSettings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
Uploads = Annotated[asyncio.Semaphore, Depends(_uploads)]

JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
WorkflowId = Annotated[int, Path(ge=1, le=MAX_ID)]
FileKey = Annotated[
    str,
    Path(min_length=1, max_length=MAX_FILE_KEY, pattern=FILE_KEY_PATTERN,
         description="1-512 of A-Za-z0-9._/-, no empty, '.' or '..' segment"),
]  # fmt: skip


def api_router() -> APIRouter:
    """A router of the API: its routes read JSON bodies strictly (JsonRoute) and document
    the key header."""
    return APIRouter(route_class=JsonRoute, dependencies=[Depends(authenticated)])


def job_filter(
    queue: str | None,
    name: str | None,
    status: list[str] | None,
    *,
    name_prefix: str | None = None,
    array: int | None = None,
) -> JobFilter:
    statuses = tuple(JobStatus.parse(s) for s in status or [])
    return JobFilter(
        queue=queue, name=name, name_prefix=name_prefix, statuses=statuses, array_id=array
    )
