"""The dashboard's routes: server-rendered pages under ``/dashboard``.

Every page, fragment and static file needs a session (see ``login``); the two routes
that start one need the API key instead. Links are relative, so the same pages work
under any prefix (an API Gateway stage) and through ``hyper dashboard``'s loopback
server. Pages refresh their parts with htmx; the throughput chart is uPlot. Changing
a job (cancel, hold, release) needs ``confirm=yes`` and is noted in its SYSTEM log.
"""

from __future__ import annotations

import pathlib
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from hyper.errors import UsageError
from hyper.host.dashboard import login, views
from hyper.host.schemas import MAX_ID, Selection
from hyper.host.service import HostService
from hyper.jobs import UNFINISHED, LogKind
from hyper.key_headers import given_key
from hyper.store.base import ArrayRecord, JobFilter, JobRecord

PREFIX = "/dashboard"
HERE = pathlib.Path(__file__).parent
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
ACTIONS = {"cancel": "cancelled", "hold": "held", "release": "released"}


class TokenRequest(BaseModel):
    seconds: float = Field(login.TOKEN_SECONDS, ge=1, le=login.MAX_TOKEN_SECONDS)


class SessionRequest(BaseModel):
    token: str = Field(max_length=login.MAX_TOKEN_LENGTH)


class LoginRequired(Exception):
    """No session, or an expired one."""


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
    return env


def _static_files() -> dict[str, pathlib.Path]:
    root = HERE / "static"
    return {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and path.suffix in STATIC_TYPES
    }


def _base(request: Request) -> str:
    """The relative way from this page back to the dashboard's root."""
    inside = request.url.path.split(PREFIX, 1)[-1].strip("/").split("/")
    depth = len(inside) - 1 if inside != [""] else 0
    if request.url.path.endswith("/") and inside != [""]:
        depth += 1
    return "../" * depth if depth else "./"


def install(app: FastAPI, service: HostService) -> None:
    """Add the dashboard of the host `service` runs to its app (routes of its own, out
    of the API's schema)."""
    api_key = service.settings.api_key
    cookie = login.cookie_name(api_key)
    templates = _templates()
    static = _static_files()

    def session(request: Request) -> None:
        if not login.session_valid(api_key, request.cookies.get(cookie, ""), time.time()):
            raise LoginRequired()

    def with_key(
        x_api_key: Annotated[str | None, Header()] = None,
        x_hyper_key: Annotated[str | None, Header()] = None,
    ) -> None:
        if not login.key_matches(api_key, given_key(x_hyper_key, x_api_key)):
            raise HTTPException(401, "missing or wrong x-api-key")

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(
            base=_base(request), host=service.settings.name, **context
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    app.add_exception_handler(LoginRequired, login_required)
    keyed: dict[str, Any] = {"dependencies": [Depends(with_key)], "include_in_schema": False}
    logged_in: dict[str, Any] = {"dependencies": [Depends(session)], "include_in_schema": False}
    _add_login(app, service, page, keyed)

    # pages -----------------------------------------------------------------------------

    @app.get(PREFIX + "/", **logged_in)
    async def overview(request: Request, part: str = "") -> HTMLResponse:
        data = views.overview(service)
        if part == "overview":
            return page(request, "overview_part.html", **data)
        return page(request, "overview.html", **data)

    @app.get(PREFIX + "/throughput.json", **logged_in)
    async def throughput() -> JSONResponse:
        return JSONResponse(views.throughput(service, time.time()), headers=SECURITY_HEADERS)

    @app.get(PREFIX + "/jobs", **logged_in)
    async def jobs(
        request: Request,
        queue: str = Query("", max_length=200),
        state: str = Query("", max_length=40),
        name: str = Query("", max_length=200),
        array: str = Query("", max_length=20),
        after: int = Query(0, ge=0, le=MAX_ID),
        part: str = "",
    ) -> HTMLResponse:
        if array and (not array.isdigit() or not 1 <= int(array) <= MAX_ID):
            raise UsageError(f"array {array!r} is not a job id")
        query = views.JobQuery(queue, state, name, int(array) if array else None, after)
        data = views.jobs_page(service, query)
        return page(request, "jobs_rows.html" if part == "rows" else "jobs.html", **data)

    @app.get(PREFIX + "/jobs/{job_id}", **logged_in)
    async def job(
        request: Request,
        job_id: JobId,
        part: str = "",
        after: int = Query(0, ge=0, le=MAX_ID),
    ) -> HTMLResponse:
        """The job's page, or a part of it: its fields (`fields`), its log after `after`
        (`log`). Parts are asked at the page's own address, so their links hold."""
        if part == "log":
            return page(request, "log_part.html", **views.log_after(service, job_id, after))
        data = views.job_page(service, job_id)
        return page(request, "job_part.html" if part == "fields" else "job.html", **data)

    @app.post(PREFIX + "/jobs/{job_id}/{action}", **logged_in)
    async def change(
        request: Request,
        job_id: JobId,
        action: str,
    ) -> HTMLResponse:
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}")
        form = parse_qs((await request.body())[:1000].decode(errors="replace"))
        if form.get("confirm") != ["yes"]:
            raise UsageError(f"{action} needs confirm=yes")
        return page(request, "done.html", said=_change(service, job_id, action))

    @app.get(PREFIX + "/workflows", **logged_in)
    async def workflows(request: Request) -> HTMLResponse:
        return page(request, "workflows.html", workflows=views.workflows(service))

    @app.get(PREFIX + "/resources/{kind}", **logged_in)
    async def resources(request: Request, kind: str) -> HTMLResponse:
        if kind not in views.RESOURCE_KINDS:
            raise HTTPException(404, f"no kind {kind!r}")
        found = views.resources(service, kind)
        return page(request, "resources.html", kind=kind, items=found, kinds=views.RESOURCE_KINDS)

    @app.get(PREFIX + "/static/{name:path}", **logged_in)
    async def static_file(name: str) -> Response:
        path = static.get(name)
        if path is None:
            raise HTTPException(404, "no such file")
        headers = {**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"}
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix], headers=headers)


def _add_login(app: FastAPI, service: HostService, page: Any, keyed: dict[str, Any]) -> None:
    """The routes that log a browser in: a token for the key, a session for a token."""
    api_key = service.settings.api_key
    cookie = login.cookie_name(api_key)
    anyone: dict[str, Any] = {"include_in_schema": False}

    @app.post(PREFIX + "/tokens", **keyed)
    async def new_token(body: TokenRequest) -> dict[str, Any]:
        now = time.time()
        token = login.issue_token(service.store, now, body.seconds)
        return {"token": token, "expires": now + body.seconds, "path": f"{PREFIX}/login"}

    @app.post(PREFIX + "/session", **keyed)
    async def trade_token(body: SessionRequest) -> dict[str, Any]:
        """For a server that stands between the browser and the host (hyper dashboard's
        loopback server): the token's session, for it to set as its own cookie."""
        now = time.time()
        if not login.redeem_token(service.store, body.token, now):
            raise HTTPException(401, "this login token has expired or was used")
        value = login.new_session(api_key, now)
        return {"cookie": cookie, "value": value, "max_age": login.SESSION_SECONDS}

    @app.get(PREFIX + "/login", **anyone)
    async def log_in(request: Request, token: str = Query("", max_length=200)) -> Response:
        now = time.time()
        if not login.redeem_token(service.store, token, now):
            return page(request, "login.html", status=401, reason="expired or used")
        answer = RedirectResponse("./", status_code=303, headers=SECURITY_HEADERS)
        set_session(answer, request, cookie, login.new_session(api_key, now))
        return answer


def _change(service: HostService, job_id: int, action: str) -> str:
    """Cancel, hold or release a job from the dashboard (noted in its log); what changed."""
    affected = _unfinished(service, service.job(job_id))
    selection = Selection(ids=[str(job_id)])
    if action == "cancel":
        result = service.cancel(selection)
        changed = result.cancelled + result.stopping
        said = f"{result.cancelled} cancelled, {result.stopping} stopping"
    else:
        held = service.hold(selection, hold=action == "hold")
        changed = held.changed
        said = f"{held.changed} {ACTIONS[action]}"
    if changed:
        _note(service, affected, f"{ACTIONS[action]} from the dashboard")
    return said


def set_session(response: Response, request: Request, cookie: str, value: str) -> None:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(
        cookie,
        value,
        max_age=login.SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def _unfinished(service: HostService, found: JobRecord | ArrayRecord) -> list[JobRecord]:
    """The job, or the array's tasks, that have not ended: what an action may change."""
    if isinstance(found, JobRecord):
        return [] if found.finished else [found]
    tasks: list[JobRecord] = []
    where = JobFilter(array_id=found.id, statuses=UNFINISHED)
    while True:
        page = service.store.list_jobs(where, limit=1000, after=tasks[-1].id if tasks else 0)
        tasks += [task for task in page if isinstance(task, JobRecord)]
        if len(page) < 1000:
            return tasks


def _note(service: HostService, jobs: list[JobRecord], text: str) -> None:
    """Say in the SYSTEM log of each job what was done."""
    now = time.time()
    for job in jobs:
        service.store.append_log(job.id, job.attempt, [(LogKind.SYSTEM, text)], now)
    service.jobs_changed.fire()


async def login_required(request: Request, error: Exception) -> Response:
    """What a request without a live session gets: nothing of the host's."""
    html = (
        "<!doctype html><title>hyper: log in</title><h1>Log in first</h1>"
        "<p>Run <code>hyper dashboard</code> to open this page logged in.</p>"
    )
    return HTMLResponse(html, status_code=401, headers=SECURITY_HEADERS)
