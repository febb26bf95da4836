"""The daemon's tick loop: at once when work arrives, every period when nothing does, and
at most every TICK_GAP_SECONDS in a burst of work."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hyper.host.service import Pulse
from hyper.host.ticks import TICK_GAP_SECONDS, run_ticks
from hyper.host_settings import HostSettings


def _ticking(fires: Any) -> list[float]:
    """When a tick loop ticked (seconds from its start) while `fires(pulse)` ran beside it."""
    ticks: list[float] = []

    async def main() -> None:
        pulse = Pulse()
        started = time.monotonic()
        service = SimpleNamespace(store=object(), work_arrived=pulse, stopping=False)  # no purge
        ticker = SimpleNamespace(
            service=service, tick=lambda now: ticks.append(time.monotonic() - started)
        )
        settings = HostSettings(data_dir=Path("/nonexistent"), api_key="k", scheduler_seconds=5.0)
        loop = asyncio.create_task(run_ticks(ticker, settings))  # type: ignore[arg-type]
        try:
            await fires(pulse)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    asyncio.run(main())
    return ticks


def test_a_burst_of_work_is_one_tick_per_gap_and_nothing_fired_is_lost() -> None:
    """200 fires over 0.5 s: about one tick per 50 ms, not 200; the last fire still
    brings a tick after it."""

    async def burst(pulse: Pulse) -> None:
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            pulse.fire()
            await asyncio.sleep(0.0025)
        await asyncio.sleep(3 * TICK_GAP_SECONDS)

    ticks = _ticking(burst)
    assert 5 <= len(ticks) <= 0.5 / TICK_GAP_SECONDS + 3, ticks
    gaps = [b - a for a, b in itertools.pairwise(ticks[1:])]  # the first: start, then work
    assert min(gaps) >= TICK_GAP_SECONDS * 0.9, gaps
    assert ticks[-1] >= 0.5  # after the last fire (the loop started with the burst)


def test_work_after_a_quiet_spell_ticks_at_once() -> None:
    at: list[float] = []

    async def lone(pulse: Pulse) -> None:
        await asyncio.sleep(0.3)  # quiet: the loop waits its period (5 s)
        at.append(time.monotonic())
        pulse.fire()
        await asyncio.sleep(0.05)

    ticks = _ticking(lone)
    assert len(ticks) == 2  # at start, and for the fire
    assert 0.3 <= ticks[1] < 0.3 + TICK_GAP_SECONDS / 2, ticks


def test_a_stopping_host_ticks_no_more() -> None:
    """A stop fires the work pulse to end the long-polls (HostService.stop_waiting): the
    tick loop ends instead of ticking once more."""
    ticks: list[float] = []

    async def main() -> None:
        pulse = Pulse()
        service = SimpleNamespace(store=object(), work_arrived=pulse, stopping=False)
        ticker = SimpleNamespace(service=service, tick=ticks.append)
        settings = HostSettings(data_dir=Path("/nonexistent"), api_key="k", scheduler_seconds=5.0)
        loop = asyncio.create_task(run_ticks(ticker, settings))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)  # its tick at start
        service.stopping = True
        pulse.fire()
        await asyncio.wait_for(loop, 2)  # it ends by itself

    asyncio.run(main())
    assert len(ticks) == 1
