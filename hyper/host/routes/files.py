"""Files: the host's file store (packages, staged inputs, results), by key; and a
worker's view of it, the files of the jobs it holds (its key may open nothing else:
hyper/host/auth.py)."""

from __future__ import annotations

import tempfile
import time
from typing import BinaryIO

from fastapi import HTTPException, Request, Response

from hyper.host.deps import FileKey, JobId, Service, Settings, StoreDep, Uploads, api_router
from hyper.jobs import MAX_FILE_BYTES

router = api_router()
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.put(
    "/files/{key:path}",
    status_code=204,
    response_class=Response,
    openapi_extra={"requestBody": {"required": True, "content": BYTES}},
)
async def put_file(
    key: FileKey,
    request: Request,
    service: Service,
    settings: Settings,
    store: StoreDep,
    uploads: Uploads,
) -> Response:
    await _keep(key, request, service, settings, store, uploads)
    return Response(status_code=204)


@router.get(
    "/workers/{worker_id}/jobs/{job_id}/package",
    response_class=Response,
    responses={200: {"content": BYTES}},
)
async def get_job_package(worker_id: str, job_id: JobId, service: Service) -> Response:
    """The package of a job the worker holds."""
    return Response(service.job_package(worker_id, job_id), media_type="application/octet-stream")


@router.put(
    "/workers/{worker_id}/jobs/{job_id}/files/{key:path}",
    status_code=204,
    response_class=Response,
    openapi_extra={"requestBody": {"required": True, "content": BYTES}},
)
async def put_job_file(
    worker_id: str,
    job_id: JobId,
    key: FileKey,
    request: Request,
    service: Service,
    settings: Settings,
    store: StoreDep,
    uploads: Uploads,
) -> Response:
    """A file a job the worker holds collects, kept as ``jobs/{job_id}/{key}``."""
    full = service.job_file_key(worker_id, job_id, key)
    await _keep(full, request, service, settings, store, uploads)
    return Response(status_code=204)


async def _keep(
    key: str,
    request: Request,
    service: Service,
    settings: Settings,
    store: StoreDep,
    uploads: Uploads,
) -> None:
    """At most `max_uploads` at once, each spooled to a file beside the store and then
    copied in, a chunk at a time: never whole in memory."""
    async with uploads:
        with tempfile.TemporaryFile(dir=settings.data_dir) as spool:
            size = await _file_body(request, spool)
            spool.seek(0)
            put_from = getattr(store, "put_file_from", None)
            if put_from is not None:
                put_from(key, spool, size, time.time())
            else:
                service.put_file(key, spool.read())


@router.get("/files/{key:path}", response_class=Response, responses={200: {"content": BYTES}})
async def get_file(key: FileKey, service: Service) -> Response:
    return Response(service.get_file(key), media_type="application/octet-stream")


@router.delete("/files/{key:path}")
async def delete_files(key: FileKey, service: Service) -> dict[str, int]:
    """The file, and every file under `key/`."""
    return {"deleted": service.delete_files(key)}


async def _file_body(request: Request, spool: BinaryIO) -> int:
    """Write the raw body of a file upload to `spool`; its size. Refused (413) beyond
    MAX_FILE_BYTES before it is all read: at once when its declared length says so."""
    too_large = HTTPException(413, f"a file is at most {MAX_FILE_BYTES // 2**20} MiB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FILE_BYTES:
        raise too_large
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise too_large
        spool.write(chunk)
    return size
