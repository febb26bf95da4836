"""Workers: claim jobs, report progress and completions, hand claims back, and leave."""

from __future__ import annotations

from fastapi import Query, Request

from hyper.errors import Conflict
from hyper.host.deps import JobId, Service, api_router
from hyper.host.schemas import (
    MAX_ID,
    BatchCompletion,
    BatchCompletionResponse,
    BatchReport,
    ClaimRequest,
    ClaimResponse,
    CompletionReport,
    CompletionResponse,
    OutputChunk,
    ProgressReport,
    ProgressResponse,
    ReturnedClaims,
)
from hyper.jobs import LogKind

router = api_router()


@router.post("/workers/{worker_id}/claim", response_model=ClaimResponse)
async def claim(worker_id: str, request: ClaimRequest, service: Service) -> ClaimResponse:
    jobs = await service.claim(
        worker_id,
        request.queue,
        request.definition,
        request.limit,
        request.wait,
        request.room.model_dump() if request.room else None,
    )
    return ClaimResponse(jobs=jobs)


@router.post("/workers/{worker_id}/jobs/{job_id}/progress", response_model=ProgressResponse)
async def progress(
    worker_id: str, job_id: JobId, report: ProgressReport, service: Service
) -> ProgressResponse:
    return ProgressResponse(cancel=service.progress(worker_id, job_id, report))


@router.post(
    "/workers/{worker_id}/jobs/{job_id}/output",
    response_model=ProgressResponse,
    openapi_extra={"requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def progress_output(
    worker_id: str,
    job_id: JobId,
    request: Request,
    service: Service,
    attempt: int = Query(ge=1, le=MAX_ID),
    kind: LogKind = Query(),
    process_group: int | None = Query(None, ge=1, le=MAX_ID),
) -> ProgressResponse:
    """A progress report carrying one piece of output as the body itself (UTF-8 text,
    not JSON): what a job prints in bulk reaches the log without being escaped and
    parsed again. Otherwise the same as /progress."""
    text = (await request.body()).decode(errors="replace")
    report = ProgressReport(
        attempt=attempt,
        output=[OutputChunk(kind=kind, text=text)] if text else [],
        process_group=process_group,
    )
    return ProgressResponse(cancel=service.progress(worker_id, job_id, report))


@router.post("/workers/{worker_id}/jobs/{job_id}/complete", response_model=CompletionResponse)
async def complete(
    worker_id: str, job_id: JobId, report: CompletionReport, service: Service
) -> CompletionResponse:
    batch = BatchCompletion(
        reports=[BatchReport(job_id=job_id, **report.model_dump())],
        claim_next=report.claim_next,
    )
    (result,), following = await service.complete(worker_id, batch)
    if isinstance(result, Conflict):
        raise result
    return CompletionResponse(status=result.value, jobs=following)


@router.post("/workers/{worker_id}/complete", response_model=BatchCompletionResponse)
async def complete_many(
    worker_id: str, batch: BatchCompletion, service: Service
) -> BatchCompletionResponse:
    results, following = await service.complete(worker_id, batch)
    statuses = [None if isinstance(r, Conflict) else r.value for r in results]
    return BatchCompletionResponse(statuses=statuses, jobs=following)


@router.post("/workers/{worker_id}/return")
async def return_claims(worker_id: str, body: ReturnedClaims, service: Service) -> dict[str, int]:
    claims = [(ref.job_id, ref.attempt) for ref in body.jobs]
    return {"returned": service.return_claims(worker_id, claims)}


@router.post("/workers/{worker_id}/exit")
async def worker_exit(worker_id: str, service: Service) -> dict[str, bool]:
    service.worker_exit(worker_id)
    return {"ok": True}
