"""Files: the host's file store (packages, staged inputs, results), by key; and a
worker's view of it, the files of the jobs it holds (its key may open nothing else:
hyper/host/auth.py).

Where the store can give links (an AWS host's bucket, whose API carries 6 MB a request),
a file over 4 MB moves past the host, by a presigned URL of exactly its object:

- a GET of it answers ``307`` with the URL in ``Location`` and ``{"link": FileLink}``
  (the headers the request must carry are signed with it);
- an upload asks ``POST /links/upload/KEY`` with its size and MD5 for a link to PUT it
  (``{"link": null}`` from a host that takes it itself), PUTs it there, then
  ``POST /links/uploaded/KEY``, answered only once that object is there whole.

A worker does the same for the jobs it holds under ``/workers/ID/jobs/N/``.
"""

from __future__ import annotations

import tempfile
import time
from typing import BinaryIO

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse

from hyper.host.deps import FileKey, JobId, Service, Settings, StoreDep, Uploads, api_router
from hyper.host.schemas import UploadBody
from hyper.jobs import MAX_FILE_BYTES
from hyper.messages import FileLink

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
    """The package of a job the worker holds (or a link to it: 307)."""
    return _file_answer(service.job_package(worker_id, job_id))


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
    return _file_answer(service.read_file(key))


def _file_answer(found: bytes | FileLink) -> Response:
    if isinstance(found, bytes):
        return Response(found, media_type="application/octet-stream")
    return JSONResponse({"link": found}, status_code=307, headers={"Location": found["url"]})


LINK_ANSWER = {"type": "object", "properties": {"link": {"type": "object", "nullable": True}}}


@router.post("/links/upload/{key:path}", responses={200: {"content": {"application/json": {
    "schema": LINK_ANSWER}}}})  # fmt: skip
async def upload_link(key: FileKey, body: UploadBody, service: Service) -> dict[str, object]:
    """A link to PUT the file straight into the host's bucket; null: PUT it to /files."""
    return {"link": service.upload_link(key, body.size, body.md5)}


@router.post("/links/uploaded/{key:path}", status_code=204, response_class=Response)
async def uploaded(key: FileKey, body: UploadBody, service: Service) -> Response:
    """The file sent by link is there, whole (409 until it is)."""
    service.uploaded(key, body.size, body.md5)
    return Response(status_code=204)


@router.post("/workers/{worker_id}/jobs/{job_id}/links/upload/{key:path}")
async def job_upload_link(
    worker_id: str, job_id: JobId, key: FileKey, body: UploadBody, service: Service
) -> dict[str, object]:
    """A link to PUT a file a job the worker holds collects (``jobs/{job_id}/{key}``)."""
    return {"link": service.job_upload_link(worker_id, job_id, key, body.size, body.md5)}


@router.post(
    "/workers/{worker_id}/jobs/{job_id}/links/uploaded/{key:path}",
    status_code=204,
    response_class=Response,
)
async def job_uploaded(
    worker_id: str, job_id: JobId, key: FileKey, body: UploadBody, service: Service
) -> Response:
    service.job_uploaded(worker_id, job_id, key, body.size, body.md5)
    return Response(status_code=204)


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
