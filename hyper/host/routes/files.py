"""Files: the host's file store (packages, staged inputs, results), by key."""

from __future__ import annotations

import tempfile
import time
from typing import BinaryIO

from fastapi import HTTPException, Request, Response

from hyper.host.deps import FileKey, Service, Settings, StoreDep, Uploads, api_router
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
    return Response(status_code=204)


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
