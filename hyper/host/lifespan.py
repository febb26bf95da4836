"""The host app's lifespan: on start, a new host's default resources and the resource
changes left unsettled; with launchers, the tick (``app.state.tick``); as a daemon, the
tick run in a loop. On stop, the loop, the launchers and the deployer end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from hyper import resources
from hyper.host.service import HostService
from hyper.host.ticks import Ticker, run_ticks
from hyper.launchers.base import Launcher
from hyper.models import ResourceKind
from hyper.scheduler import Scheduler

STALL_SECONDS = 2.0  # a gap between the daemon's ticks longer than this is a stall

LauncherFactory = Callable[[HostService], dict[str, Launcher]]


def host_lifespan(
    service: HostService,
    *,
    launchers: LauncherFactory | None,
    schedule: bool,
    local_defaults: bool,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Any]]:
    """The lifespan of a host app around `service`: see the module's docstring."""
    store, settings = service.store, service.settings

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
            ticker = Ticker(scheduler, service, asyncio.get_running_loop())
            app.state.tick = ticker
            if schedule:
                # workers that outlived a restart get one lease to report in before their
                # jobs retry, and are not taken for stuck meanwhile
                now = time.time()
                store.extend_leases(settings.lease_seconds, now)
                for worker in store.live_workers():
                    store.touch_worker(worker.id, now)
                task = asyncio.create_task(run_ticks(ticker, settings))
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

    return lifespan
