"""The host's HTTP API: one ASGI application built by ``create_app(settings)``.

The same application runs as the local daemon (uvicorn) and, later, serverless.
Every route, the OpenAPI schema included, requires the host's ``x-api-key``.
Routes are coroutines on purpose: the store is used from the event loop's one
thread only, so its transactions never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, BinaryIO, NoReturn

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from hyper import __version__, resources
from hyper.deployer import build_spec
from hyper.errors import (
    Conflict,
    HyperError,
    NotFound,
    StoreUnavailable,
    UsageError,
    is_utf8,
)
from hyper.host.auth import Keys
from hyper.host.dashboard import router as dashboard
from hyper.host.schemas import (
    MAX_ID,
    BatchCompletion,
    BatchCompletionResponse,
    BatchReport,
    CancelResponse,
    ClaimRequest,
    ClaimResponse,
    CompletionReport,
    CompletionResponse,
    HoldResponse,
    JobPage,
    LogPage,
    NodeJoin,
    NodePoll,
    ProgressReport,
    ProgressResponse,
    ResourceList,
    ReturnedClaims,
    Selection,
    SubmitRequest,
    SubmitResponse,
    WorkflowCancel,
    WorkflowRequest,
)
from hyper.host.service import HostService
from hyper.host.settings import HostSettings
from hyper.jobs import FILE_KEY_PATTERN, MAX_FILE_BYTES, MAX_FILE_KEY, JobStatus, LogKind
from hyper.launchers.base import Launcher
from hyper.launchers.local import LocalLauncher
from hyper.launchers.slurm import SlurmLauncher
from hyper.launchers.static import StaticLauncher
from hyper.models import ResourceKind
from hyper.providers import Provider
from hyper.providers.local import LocalProvider
from hyper.scheduler import Scheduler, TickReport
from hyper.store.base import JobFilter, Store

log = logging.getLogger(__name__)
STALL_SECONDS = 2.0  # a gap between the daemon's ticks longer than this is a stall

HTTP_STATUS = (
    (NotFound, 404),
    (Conflict, 409),
    (UsageError, 400),
    (StoreUnavailable, 503),  # nothing was changed: the client may send it again
)
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
WorkflowId = Annotated[int, Path(ge=1, le=MAX_ID)]
FileKey = Annotated[
    str,
    Path(min_length=1, max_length=MAX_FILE_KEY, pattern=FILE_KEY_PATTERN,
         description="1-512 of A-Za-z0-9._/-, no empty, '.' or '..' segment"),
]  # fmt: skip
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _status_of(error: HyperError) -> int:
    for kind, status in HTTP_STATUS:
        if isinstance(error, kind):
            return status
    return 500


LauncherFactory = Callable[[HostService], dict[str, Launcher]]


def local_launchers(service: HostService) -> dict[str, Launcher]:
    """Workers as processes on this machine, and on machines that join it."""
    return {
        "local": LocalLauncher(service.settings),
        "static": StaticLauncher(service.store, service.assignments.fire),
        "slurm": SlurmLauncher(service.settings, service.store),
    }


def create_app(
    settings: HostSettings,
    store: Store,
    *,
    schedule: bool = False,
    provider: Provider | None = None,
    local_defaults: bool = True,
    launchers: LauncherFactory | None = None,
) -> FastAPI:
    """Build the host application around a store. With `launchers` (or `schedule`, which
    takes this machine's) it can run scheduler ticks: `app.state.tick()`. With `schedule`
    it runs them itself, as a long-lived daemon, starting workers on this machine and on
    joined machines."""
    service = HostService(store, settings, provider or LocalProvider())
    if schedule and launchers is None:
        launchers = local_launchers

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        deployer = service.deployer
        # a new host (no resource of any kind) gets the defaults; what was deleted later
        # stays deleted
        if local_defaults and not any(store.list_resources(k.value) for k in ResourceKind):
            for kind, spec in resources.local_defaults():
                deployer.create(kind, spec)
            await deployer.settled()
        deployer.resume()
        started: dict[str, Launcher] = launchers(service) if launchers else {}
        task = None
        loop = asyncio.get_running_loop()
        if started:
            stall = max(STALL_SECONDS, 4 * settings.scheduler_seconds)
            scheduler = Scheduler(
                store,
                started,
                silence_seconds=settings.lease_seconds * 2,
                lease_seconds=settings.lease_seconds,
                # the daemon ticks every scheduler_seconds: a longer gap is a stall of its own
                stall_seconds=stall if schedule else None,
            )

            def tick() -> TickReport:
                now = time.time()
                report = scheduler.tick(now)
                try:
                    _in_loop(loop, lambda: service.workflows.advance(now))
                except Exception:  # as in _schedule: the tick's report still goes back
                    log.exception("moving workflows on failed")
                return report

            app.state.tick = tick
        if schedule:
            # workers that outlived a restart get one lease to report in before their jobs
            # retry, and are not taken for stuck meanwhile
            now = time.time()
            store.extend_leases(settings.lease_seconds, now)
            for worker in store.live_workers():
                store.touch_worker(worker.id, now)
            task = asyncio.create_task(_schedule(scheduler, service, settings))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for launcher in started.values():
                launcher.close()
            await deployer.close()

    async def authenticated(x_api_key: Annotated[str | None, Header()] = None) -> None:
        """Documents the header in the schema; ApiKeyMiddleware has already checked it."""

    app = FastAPI(
        title="hyper host",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(authenticated)],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.router.route_class = JsonRoute
    # the key is checked first (outermost), then the size of what comes with it
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=Keys(settings.api_key, settings.worker_key))
    uploads = asyncio.Semaphore(max(1, settings.max_uploads))
    dashboard.install(app, service)

    @app.exception_handler(HyperError)
    async def _hyper_error(request: Request, error: HyperError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=_status_of(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # as FastAPI's own handler, but a body that is not text (bytes sent as text/plain)
        # is echoed with its bad bytes replaced rather than failing the answer
        errors = jsonable_encoder(
            error.errors(), custom_encoder={bytes: lambda b: b.decode(errors="replace")}
        )
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.post("/purge")
    async def purge(request: PurgeRequest) -> dict[str, Any]:
        """Delete finished jobs, their logs and files, older than `older_than_days`
        (default: the host's retention), and give the space back."""
        days = (
            settings.retention_days if request.older_than_days is None else request.older_than_days
        )
        return {"older_than_days": days, **purge_finished(store, days, rewrite=True)}

    # jobs -------------------------------------------------------------------

    @app.post("/jobs", response_model=SubmitResponse)
    async def submit(request: SubmitRequest) -> SubmitResponse:
        if len(request.jobs) > settings.max_jobs_per_request:
            raise HTTPException(
                413,
                f"at most {settings.max_jobs_per_request} jobs per request (this one has"
                f" {len(request.jobs)}); send them in several",
            )
        return SubmitResponse(ids=service.submit(request.jobs))

    @app.get("/jobs", response_model=JobPage)
    async def list_jobs(
        queue: str | None = None,
        name: str | None = None,
        name_prefix: str | None = None,
        status: Annotated[list[str] | None, Query()] = None,
        array: int | None = Query(
            None, ge=1, le=MAX_ID, description="only the tasks of this array"
        ),
        collapse: bool = Query(False, description="one line per array"),
        after: int = Query(0, ge=0, le=MAX_ID),
        limit: int = Query(100, ge=1, le=1000),
        ids: Annotated[
            list[str] | None, Query(description="job ids and tasks: 12, 12_3, 12[1-5]")
        ] = None,
    ) -> JobPage:
        where = _filter(queue, name, status, name_prefix=name_prefix, array=array)
        if ids:
            where = service.named(ids, where)
        jobs, next_after = service.list_jobs(where, limit=limit, after=after, collapse=collapse)
        return JobPage(jobs=[j.as_dict() for j in jobs], next=next_after)

    @app.get("/jobs/counts")
    async def count_jobs(
        queue: str | None = None,
        name: str | None = None,
        name_prefix: str | None = None,
        array: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> dict[str, int]:
        return service.count_jobs(_filter(queue, name, None, name_prefix=name_prefix, array=array))

    @app.post("/jobs/cancel", response_model=CancelResponse)
    async def cancel(selection: Selection) -> CancelResponse:
        result = service.cancel(selection)
        return CancelResponse(
            cancelled=result.cancelled, stopping=result.stopping, finished=result.finished
        )

    @app.post("/jobs/hold", response_model=HoldResponse)
    async def hold(selection: Selection) -> HoldResponse:
        result = service.hold(selection, hold=True)
        return HoldResponse(changed=result.changed, unchanged=result.unchanged)

    @app.post("/jobs/release", response_model=HoldResponse)
    async def release(selection: Selection) -> HoldResponse:
        result = service.hold(selection, hold=False)
        return HoldResponse(changed=result.changed, unchanged=result.unchanged)

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: JobId, wait: float = Query(0.0, ge=0.0, le=60.0)) -> dict[str, Any]:
        job = await service.wait_for_job(job_id, wait) if wait else service.job(job_id)
        return job.as_dict()

    @app.get("/jobs/{job_id}/script")
    async def get_script(job_id: JobId) -> dict[str, Any]:
        return {"id": job_id, "script": service.script(job_id)}

    @app.get("/jobs/{job_id}/log", response_model=LogPage)
    async def read_log(
        job_id: JobId,
        kind: Annotated[list[LogKind] | None, Query()] = None,
        after: int = Query(0, ge=0, le=MAX_ID),
        wait: float = Query(0.0, ge=0.0, le=60.0),
    ) -> LogPage:
        entries, finished = await service.read_log(job_id, kind or [], after, wait)
        next_after = entries[-1].seq if entries else after
        return LogPage(entries=[e.as_dict() for e in entries], next=next_after, finished=finished)

    # workers ----------------------------------------------------------------------

    @app.post("/workers/{worker_id}/claim", response_model=ClaimResponse)
    async def claim(worker_id: str, request: ClaimRequest) -> ClaimResponse:
        jobs = await service.claim(
            worker_id, request.queue, request.definition, request.limit, request.wait
        )
        return ClaimResponse(jobs=jobs)

    @app.post("/workers/{worker_id}/jobs/{job_id}/progress", response_model=ProgressResponse)
    async def progress(worker_id: str, job_id: JobId, report: ProgressReport) -> ProgressResponse:
        return ProgressResponse(cancel=service.progress(worker_id, job_id, report))

    @app.post("/workers/{worker_id}/jobs/{job_id}/complete", response_model=CompletionResponse)
    async def complete(
        worker_id: str, job_id: JobId, report: CompletionReport
    ) -> CompletionResponse:
        batch = BatchCompletion(
            reports=[BatchReport(job_id=job_id, **report.model_dump())],
            claim_next=report.claim_next,
        )
        (result,), following = await service.complete(worker_id, batch)
        if isinstance(result, Conflict):
            raise result
        return CompletionResponse(status=result.value, jobs=following)

    @app.post("/workers/{worker_id}/complete", response_model=BatchCompletionResponse)
    async def complete_many(worker_id: str, batch: BatchCompletion) -> BatchCompletionResponse:
        results, following = await service.complete(worker_id, batch)
        statuses = [None if isinstance(r, Conflict) else r.value for r in results]
        return BatchCompletionResponse(statuses=statuses, jobs=following)

    @app.post("/workers/{worker_id}/return")
    async def return_claims(worker_id: str, body: ReturnedClaims) -> dict[str, int]:
        claims = [(ref.job_id, ref.attempt) for ref in body.jobs]
        return {"returned": service.return_claims(worker_id, claims)}

    @app.post("/workers/{worker_id}/exit")
    async def worker_exit(worker_id: str) -> dict[str, bool]:
        service.worker_exit(worker_id)
        return {"ok": True}

    # files ------------------------------------------------------------------------

    @app.put(
        "/files/{key:path}",
        status_code=204,
        response_class=Response,
        openapi_extra={"requestBody": {"required": True, "content": BYTES}},
    )
    async def put_file(key: FileKey, request: Request) -> Response:
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

    @app.get("/files/{key:path}", response_class=Response, responses={200: {"content": BYTES}})
    async def get_file(key: FileKey) -> Response:
        return Response(service.get_file(key), media_type="application/octet-stream")

    @app.delete("/files/{key:path}")
    async def delete_files(key: FileKey) -> dict[str, int]:
        """The file, and every file under `key/`."""
        return {"deleted": service.delete_files(key)}

    # workflows ----------------------------------------------------------------------

    @app.post("/workflows", status_code=201)
    async def start_workflow(request: WorkflowRequest) -> dict[str, Any]:
        return service.workflows.start(request).shown()

    @app.get("/workflows")
    async def list_workflows(
        unfinished: bool = False, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        found = service.workflows.recent(unfinished=unfinished, limit=limit)
        return {"workflows": [workflow.shown() for workflow in found]}

    @app.get("/workflows/{workflow_id}")
    async def get_workflow(workflow_id: WorkflowId) -> dict[str, Any]:
        return service.workflows.get(workflow_id).shown()

    @app.post("/workflows/{workflow_id}/cancel")
    async def cancel_workflow(workflow_id: WorkflowId, body: WorkflowCancel) -> dict[str, Any]:
        return service.workflows.cancel(workflow_id, body.cause).shown()

    # resources --------------------------------------------------------------------

    @app.get("/resources/{kind}", response_model=ResourceList)
    async def list_resources(kind: ResourceKind) -> ResourceList:
        return ResourceList(items=service.list_resources(kind))

    @app.get("/resources/{kind}/{name}")
    async def get_resource(kind: ResourceKind, name: str) -> dict[str, Any]:
        return service.get_resource(kind, name)

    @app.post("/resources/{kind}", status_code=202)
    async def create_resource(kind: ResourceKind, spec: dict[str, Any]) -> dict[str, Any]:
        return service.deployer.create(kind, build_spec(kind, spec)).as_dict()

    @app.patch("/resources/{kind}/{name}", status_code=202)
    async def update_resource(
        kind: ResourceKind, name: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        return service.deployer.update(kind, name, changes).as_dict()

    @app.delete("/resources/{kind}/{name}", status_code=202)
    async def delete_resource(kind: ResourceKind, name: str, force: bool = False) -> dict[str, Any]:
        return service.deployer.delete(kind, name, force=force).as_dict()

    # machines of static regions -----------------------------------------------------

    @app.get("/nodes")
    async def list_nodes(region: str | None = None) -> dict[str, Any]:
        return {"nodes": service.nodes(region)}

    @app.post("/nodes/{node_id}/join")
    async def join_node(node_id: str, request: NodeJoin) -> dict[str, Any]:
        return service.join_node(node_id, request)

    @app.post("/nodes/{node_id}/poll")
    async def poll_node(node_id: str, request: NodePoll) -> dict[str, Any]:
        return {"workers": await service.poll_node(node_id, request.wait)}

    @app.post("/nodes/{node_id}/leave")
    async def leave_node(node_id: str) -> dict[str, bool]:
        service.leave_node(node_id)
        return {"ok": True}

    return app


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


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"a request body is at most {limit // 2**20} MiB; send it in parts")


class BodyLimitMiddleware:
    """Refuses (413) a request body beyond `limit` bytes: at once when its declared length
    says so, else as soon as that much has come. File uploads have their own limit
    (MAX_FILE_BYTES), checked as they are spooled to disk."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/files/"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse({"detail": BodyTooLarge(self.limit).detail}, status_code=413)
        await response(scope, receive, send)


class ApiKeyMiddleware:
    """Refuses any request without the right key before anything reads its body; the
    dashboard's pages check their own login (a session cookie) instead."""

    def __init__(self, app: Any, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not _dashboard_path(scope["path"]):
            given = dict(scope["headers"]).get(b"x-api-key", b"")
            if not self.keys.allows(scope["method"], scope["path"], given):
                response = JSONResponse({"detail": "missing or wrong x-api-key"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _dashboard_path(path: str) -> bool:
    return path == dashboard.PREFIX or path.startswith(dashboard.PREFIX + "/")


class JsonRequest(Request):
    """A request whose JSON body holds only what an answer can show and SQLite can store."""

    async def json(self) -> Any:
        body = json.loads(await self.body(), parse_constant=_not_json)
        where = _not_text(body)
        if where is not None:
            # an escaped half of a UTF-16 pair ("\udcff") decodes to a str UTF-8 cannot encode
            raise _invalid_body(where, "not Unicode text: it holds a lone surrogate")
        return body


class JsonRoute(APIRoute):
    """Routes that read their JSON bodies with JsonRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return checked


def _not_json(constant: str) -> NoReturn:
    """Python reads NaN and Infinity, which are not JSON, and no answer could show them."""
    raise _invalid_body((), f"{constant} is not a JSON number")


def _not_text(value: Any, where: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where in a decoded JSON value a string cannot be encoded as UTF-8, if anywhere."""
    if isinstance(value, str):
        return None if value.isascii() or is_utf8(value) else where
    if isinstance(value, dict):
        for key, item in value.items():
            if not is_utf8(key):
                return where  # the key itself could not be shown
            found = _not_text(item, (*where, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for n, item in enumerate(value):
            found = _not_text(item, (*where, n))
            if found is not None:
                return found
    return None


def _invalid_body(where: tuple[str | int, ...], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    error = {"type": "value_error", "loc": ["body", *where], "msg": message}
    return HTTPException(status_code=422, detail=[error])


def _filter(
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


class PurgeRequest(BaseModel):
    older_than_days: float | None = Field(None, ge=0, le=100 * 365)


PURGE_PERIOD_SECONDS = 3600.0  # how often the daemon purges what its retention lets go


def purge_finished(store: Store, days: float, *, rewrite: bool = False) -> dict[str, int]:
    """Purge what finished more than `days` ago, on stores that can (SQLite); `rewrite`
    lets a store made before auto_vacuum be rewritten to give the space back."""
    purge = getattr(store, "purge", None)
    if purge is None:
        raise UsageError("this host's store keeps finished jobs by its own rules")
    report: dict[str, int] = purge(time.time() - days * 86400, rewrite=rewrite)
    if any(report.values()):
        log.info("purged what finished more than %s days ago: %s", days, report)
    return report


async def _schedule(scheduler: Scheduler, service: HostService, settings: HostSettings) -> None:
    """Run scheduler ticks until cancelled: every period, and at once when work arrives;
    each moves the workflows on too. Once an hour (and at start) finished jobs older
    than the retention are purged."""
    next_purge = time.monotonic()
    while True:
        if time.monotonic() >= next_purge and hasattr(service.store, "purge"):
            next_purge = time.monotonic() + PURGE_PERIOD_SECONDS
            try:
                purge_finished(service.store, settings.retention_days)
            except Exception:  # the next hour tries again
                log.exception("purging finished jobs failed")
        try:
            scheduler.tick(time.time())
        except Exception:  # one bad tick must not stop scheduling
            log.exception("scheduler tick failed")
        try:
            service.workflows.advance(time.time())
        except Exception:  # nor one bad read of the workflows
            log.exception("moving workflows on failed")
        await service.work_arrived.wait(settings.scheduler_seconds)


def _in_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
    """Make `call` on the app's event loop, where the deployer starts its work: at once
    when it is this thread's, else through it (a Lambda's tick comes between requests)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        call()
        return

    async def on_loop() -> None:
        call()

    if loop.is_running():
        asyncio.run_coroutine_threadsafe(on_loop(), loop).result()
    else:
        loop.run_until_complete(on_loop())
