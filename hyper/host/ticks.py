"""The host's tick, one function for every entry point: a scheduler tick (leases,
retries, dependents, workers), then the workflows moved on. The daemon runs it in a
loop (``run_ticks``: every period, and at once when work arrives, purging what its
retention lets go once an hour); the Lambda function runs it on its schedule's event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from hyper.errors import UsageError
from hyper.host.service import HostService
from hyper.host_settings import HostSettings
from hyper.scheduler import Scheduler, TickReport
from hyper.store.base import Store
from hyper.worker.spawn import remove_ended_folders

log = logging.getLogger(__name__)

PURGE_PERIOD_SECONDS = 3600.0  # how often the daemon purges what its retention lets go
TICK_GAP_SECONDS = 0.05  # in a burst of work, the shortest time between two ticks


class Ticker:
    """One tick of a host: ``ticker()`` (or ``ticker.tick(now)``). The workflows move on
    on the app's event loop `loop`, where the deployer starts its work, even when the
    tick comes from another thread (a Lambda's tick comes between requests); a failure
    to move them is logged, and the scheduler's report still goes back."""

    def __init__(
        self, scheduler: Scheduler, service: HostService, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.scheduler = scheduler
        self.service = service
        self.loop = loop

    def __call__(self) -> TickReport:
        return self.tick(time.time())

    def tick(self, now: float) -> TickReport:
        try:
            return self.scheduler.tick(now)
        finally:
            try:
                _in_loop(self.loop, lambda: self.service.workflows.advance(now))
            except Exception:  # the tick's report still goes back
                log.exception("moving workflows on failed")


async def run_ticks(ticker: Ticker, settings: HostSettings) -> None:
    """Tick until cancelled or the host stops: every `scheduler_seconds`, and at once
    when work arrives. Once an hour (and at start) finished jobs older than the retention
    are purged."""
    service = ticker.service
    next_purge = time.monotonic()
    burst = False
    while not service.stopping:
        if time.monotonic() >= next_purge and hasattr(service.store, "purge"):
            next_purge = time.monotonic() + PURGE_PERIOD_SECONDS
            try:
                purge_finished(
                    service.store, settings.retention_days, workers_dir=settings.workers_dir
                )
            except Exception:  # the next hour tries again
                log.exception("purging finished jobs failed")
        try:
            ticker.tick(time.time())
        except Exception:  # one bad tick must not stop scheduling
            log.exception("scheduler tick failed")
        # in a burst of work (reports of short jobs, submits), a tick at most every
        # TICK_GAP_SECONDS: each reads the waiting jobs' requests, and the next would
        # find the same
        burst = await service.work_arrived.wait(
            settings.scheduler_seconds, settle=TICK_GAP_SECONDS if burst else 0.0
        )


def purge_finished(
    store: Store, days: float, *, rewrite: bool = False, workers_dir: Path | None = None
) -> dict[str, int]:
    """Purge what finished more than `days` ago, on stores that can (SQLite), and the
    folders of local workers that ended as long ago (`workers_dir`); `rewrite` lets a
    store made before auto_vacuum be rewritten to give the space back."""
    purge = getattr(store, "purge", None)
    if purge is None:
        raise UsageError("this host's store keeps finished jobs by its own rules")
    before = time.time() - days * 86400
    report: dict[str, int] = purge(before, rewrite=rewrite)
    if workers_dir is not None:
        live = {worker.id for worker in store.live_workers()}
        report["worker_folders"] = remove_ended_folders(workers_dir, live, before)
    if any(report.values()):
        log.info("purged what finished more than %s days ago: %s", days, report)
    return report


def _in_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
    """Make `call` on `loop`: at once when it is this thread's, else through it."""
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
