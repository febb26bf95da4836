"""The host's HTTP API: one ASGI application built by ``create_app(settings, store)``.

The same application runs as the local daemon (``hyper.host.daemon``, on uvicorn) and
in AWS Lambda (``hyper.host.lambda_app``). Every route, the OpenAPI schema included,
requires the host's ``x-api-key`` (the dashboard's pages, a login of their own). The
routes live one router per resource in ``hyper.host.routes``, what they share in
``hyper.host.deps``, the start and stop in ``hyper.host.lifespan``. Routes are
coroutines on purpose: the store is used from the event loop's one thread only, so its
transactions never interleave.
"""

from __future__ import annotations

import asyncio

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hyper.errors import (
    Conflict,
    HostStopping,
    HyperError,
    NotFound,
    StoreUnavailable,
    UsageError,
)
from hyper.host.auth import Keys
from hyper.host.dashboard import router as dashboard
from hyper.host.deps import authenticated
from hyper.host.lifespan import LauncherFactory, host_lifespan
from hyper.host.middleware import ApiKeyMiddleware, BodyLimitMiddleware, JsonRoute
from hyper.host.routes import ROUTERS
from hyper.host.service import HostService
from hyper.host_settings import HostSettings
from hyper.launchers.base import Launcher
from hyper.launchers.local import LocalLauncher
from hyper.launchers.slurm import SlurmLauncher
from hyper.launchers.static import StaticLauncher
from hyper.providers import Provider
from hyper.providers.local import LocalProvider
from hyper.store.base import Store
from hyper.version import __version__

HTTP_STATUS = (
    (NotFound, 404),
    (Conflict, 409),
    (UsageError, 400),
    (StoreUnavailable, 503),  # nothing was changed: the client may send it again
    (HostStopping, 503),  # the same, once the host is back
)


def _status_of(error: HyperError) -> int:
    for kind, status in HTTP_STATUS:
        if isinstance(error, kind):
            return status
    return 500


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
    app = FastAPI(
        title="hyper host",
        version=__version__,
        lifespan=host_lifespan(
            service, launchers=launchers, schedule=schedule, local_defaults=local_defaults
        ),
        dependencies=[Depends(authenticated)],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.uploads = asyncio.Semaphore(max(1, settings.max_uploads))
    app.router.route_class = JsonRoute
    # the key is checked first (outermost), then the size of what comes with it
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=Keys(settings.api_key, settings.worker_key))
    dashboard.install(app, service)
    app.add_exception_handler(HyperError, _hyper_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    for router in ROUTERS:
        # the routes themselves, not the router (which FastAPI would include lazily, its
        # routes matched through a layer of its own): the app's routes stay one flat list
        # of APIRoutes, matched as they always were
        app.router.routes.extend(router.routes)
    return app


async def _hyper_error(request: Request, error: HyperError) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=_status_of(error))


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    # as FastAPI's own handler, but a body that is not text (bytes sent as text/plain) is
    # echoed with its bad bytes replaced rather than failing the answer
    errors = jsonable_encoder(
        error.errors(), custom_encoder={bytes: lambda b: b.decode(errors="replace")}
    )
    return JSONResponse({"detail": errors}, status_code=422)
