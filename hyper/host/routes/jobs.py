"""Jobs: submit, list, count, cancel, hold and release, and one job's record, script
and log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Query

from hyper.host.deps import JobId, Service, Settings, api_router, job_filter
from hyper.host.schemas import (
    MAX_ID,
    CancelResponse,
    HoldResponse,
    JobPage,
    LogPage,
    Selection,
    SubmitRequest,
    SubmitResponse,
)
from hyper.jobs import LogKind

router = api_router()


@router.post("/jobs", response_model=SubmitResponse)
async def submit(request: SubmitRequest, service: Service, settings: Settings) -> SubmitResponse:
    if len(request.jobs) > settings.max_jobs_per_request:
        raise HTTPException(
            413,
            f"at most {settings.max_jobs_per_request} jobs per request (this one has"
            f" {len(request.jobs)}); send them in several",
        )
    return SubmitResponse(ids=service.submit(request.jobs))


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    service: Service,
    queue: str | None = None,
    name: str | None = None,
    name_prefix: str | None = None,
    status: Annotated[list[str] | None, Query()] = None,
    array: int | None = Query(None, ge=1, le=MAX_ID, description="only the tasks of this array"),
    collapse: bool = Query(False, description="one line per array"),
    after: int = Query(0, ge=0, le=MAX_ID),
    limit: int = Query(100, ge=1, le=1000),
    ids: Annotated[
        list[str] | None, Query(description="job ids and tasks: 12, 12_3, 12[1-5]")
    ] = None,
) -> JobPage:
    where = job_filter(queue, name, status, name_prefix=name_prefix, array=array)
    if ids:
        where = service.named(ids, where)
    jobs, next_after = service.list_jobs(where, limit=limit, after=after, collapse=collapse)
    return JobPage(jobs=[j.as_dict() for j in jobs], next=next_after)


@router.get("/jobs/counts")
async def count_jobs(
    service: Service,
    queue: str | None = None,
    name: str | None = None,
    name_prefix: str | None = None,
    array: int | None = Query(None, ge=1, le=MAX_ID),
) -> dict[str, int]:
    return service.count_jobs(job_filter(queue, name, None, name_prefix=name_prefix, array=array))


@router.post("/jobs/cancel", response_model=CancelResponse)
async def cancel(selection: Selection, service: Service) -> CancelResponse:
    result = service.cancel(selection)
    return CancelResponse(
        cancelled=result.cancelled,
        stopping=result.stopping,
        finished=result.finished,
        more=result.more,
    )


@router.post("/jobs/hold", response_model=HoldResponse)
async def hold(selection: Selection, service: Service) -> HoldResponse:
    result = service.hold(selection, hold=True)
    return HoldResponse(changed=result.changed, unchanged=result.unchanged, more=result.more)


@router.post("/jobs/release", response_model=HoldResponse)
async def release(selection: Selection, service: Service) -> HoldResponse:
    result = service.hold(selection, hold=False)
    return HoldResponse(changed=result.changed, unchanged=result.unchanged, more=result.more)


@router.get("/jobs/{job_id}")
async def get_job(
    job_id: JobId, service: Service, wait: float = Query(0.0, ge=0.0, le=60.0)
) -> dict[str, Any]:
    job = await service.wait_for_job(job_id, wait) if wait else service.job(job_id)
    return service.job_details(job)


@router.get("/jobs/{job_id}/script")
async def get_script(job_id: JobId, service: Service) -> dict[str, Any]:
    return {"id": job_id, "script": service.script(job_id)}


@router.get("/jobs/{job_id}/log", response_model=LogPage)
async def read_log(
    job_id: JobId,
    service: Service,
    kind: Annotated[list[LogKind] | None, Query()] = None,
    after: int = Query(0, ge=0, le=MAX_ID),
    wait: float = Query(0.0, ge=0.0, le=60.0),
) -> LogPage:
    entries, finished = await service.read_log(job_id, kind or [], after, wait)
    next_after = entries[-1].seq if entries else after
    return LogPage(entries=[e.as_dict() for e in entries], next=next_after, finished=finished)
