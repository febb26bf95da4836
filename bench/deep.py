"""B7: a deep queue, measured on the store and the scheduler themselves (in-process).

    python bench/deep.py [--size 1000000] [--samples 200]

A fresh SQLite store gets `--size` waiting jobs (as arrays of 100,000 tasks, and a few
single jobs); then `--samples` claims of one job each, scheduler ticks, and listings of
one queue and state (the first page and the counts, as `qstat -q Q -f Waiting` asks)
are timed one by one. Prints one `name: value unit` line per figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hyper.jobs import JobStatus
from hyper.scheduler import Scheduler
from hyper.store.base import ArrayTasks, JobFilter, NewJob
from hyper.store.sqlite import SQLiteStore

QUEUE, DEFINITION = "deep-queue", "deep-def"
CHUNK = 100_000


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def job(array: int | None = None) -> NewJob:
    return NewJob(
        name="deep", queue=QUEUE, definition=DEFINITION, script="true\n", retries=0, env={},
        submit_dir="/tmp", priority=0, time_limit=None, hold=False, depends=(), options={},
        array=ArrayTasks(indices=range(1, array + 1)) if array else None,
    )  # fmt: skip


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def measure(size: int, samples: int, folder: Path) -> dict[str, float]:
    store = SQLiteStore.open(folder / "deep.db")  # as a daemon opens its store
    figures: dict[str, float] = {}
    try:
        start = time.perf_counter()
        left = size
        while left > 0:
            store.submit([job(min(CHUNK, left))], time.time())
            left -= CHUNK
        store.submit([job() for _ in range(100)], time.time())
        while store.make_tasks(CHUNK):  # every task written, as a deep queue has them
            pass
        figures["deep.fill_seconds"] = time.perf_counter() - start
        claims = [
            timed(lambda: store.claim("w1", QUEUE, DEFINITION, 1, 60.0, time.time()))
            for _ in range(samples)
        ]
        scheduler = Scheduler(store, {}, silence_seconds=60.0)
        ticks = [timed(lambda: scheduler.tick(time.time())) for _ in range(samples)]
        waiting = JobFilter(queue=QUEUE, statuses=(JobStatus.WAITING,))
        pages = [timed(lambda: store.list_jobs(waiting, limit=100)) for _ in range(20)]
        counts = [timed(lambda: store.count_jobs(waiting)) for _ in range(20)]
        for name, values in (("claim", claims), ("tick", ticks)):
            figures[f"deep.{name}.p99_ms"] = p99(values) * 1000
            figures[f"deep.{name}.median_ms"] = statistics.median(values) * 1000
        figures["deep.qstat_page.median_s"] = statistics.median(pages)
        figures["deep.qstat_counts.median_s"] = statistics.median(counts)
    finally:
        store.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hyper-deep-") as folder:
        for name, value in measure(args.size, args.samples, Path(folder)).items():
            unit = name.rsplit("_", 1)[-1] if "_" in name else ""
            print(f"{name}: {value:.4g} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
