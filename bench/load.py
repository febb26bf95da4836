"""A load test on loopback: batched submits and status queries, both at fixed rates,
against a fresh local host whose workers run the jobs meanwhile.

    bench/load [--seconds 120] [--jobs-per-second 2000] [--batch 100]
               [--queries-per-second 200] [--json]

Each client process keeps to its schedule (a late request is sent at once, never
skipped), so a host that cannot keep up shows as missed rates and long latencies.
Every error is counted; at the end every accepted id is looked up in the host.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Any

from bench import RESULTS, Host

SUBMITTERS = 4
QUERIERS = 4
JOB = {"name": "load", "queue": "sample-queue-1", "definition": "sample-def-1", "script": "true\n"}


def paced(rate: float, seconds: float, start: float) -> Any:
    """Yield at `rate` per second for `seconds` from `start` (a time.time() shared by
    every client): on schedule, or at once when late."""
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        yield n


def submitter(home: str, rate: float, batch: int, seconds: float, start: float, out: Any) -> None:
    os.environ["HYPER_HOME"] = home
    from hyper.errors import HyperError
    from hyper.hosts import connect

    latencies, errors, ids = [], [], []
    with connect("local") as client:
        for _ in paced(rate / batch, seconds, start):
            began = time.perf_counter()
            try:
                ids += client.submit([JOB] * batch)
            except HyperError as error:
                errors.append(str(error))
            latencies.append(time.perf_counter() - began)
    span = (start, max(time.time(), start + seconds))  # the schedule's window, or more
    out.put({"kind": "submit", "latencies": latencies, "errors": errors, "ids": ids, "span": span})


def querier(home: str, rate: float, seconds: float, start: float, out: Any) -> None:
    """What watching users ask: totals, the first page of waiting jobs, one job."""
    os.environ["HYPER_HOME"] = home
    from hyper.errors import HyperError
    from hyper.hosts import connect

    latencies, errors = [], []
    with connect("local") as client:
        newest = 1
        for n in paced(rate, seconds, start):
            began = time.perf_counter()
            try:
                if n % 3 == 0:
                    client.count_jobs()
                elif n % 3 == 1:
                    page = client.list_jobs(status=["Waiting"], limit=20)["jobs"]
                    newest = max([newest, *(job["id"] for job in page)])
                else:
                    client.get_job(newest)
            except HyperError as error:
                errors.append(str(error))
            latencies.append(time.perf_counter() - began)
    span = (start, max(time.time(), start + seconds))  # the schedule's window, or more
    out.put({"kind": "query", "latencies": latencies, "errors": errors, "ids": [], "span": span})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def run(seconds: float, jobs_per_second: float, batch: int, queries_per_second: float) -> dict:
    host = Host()
    try:
        out: Any = multiprocessing.Queue()
        home = str(host.home)
        start = time.time() + 1.0  # once every client is up
        clients = [
            multiprocessing.Process(
                target=submitter,
                args=(home, jobs_per_second / SUBMITTERS, batch, seconds, start, out),
            )
            for _ in range(SUBMITTERS)
        ] + [
            multiprocessing.Process(
                target=querier, args=(home, queries_per_second / QUERIERS, seconds, start, out)
            )
            for _ in range(QUERIERS)
        ]
        for process in clients:
            process.start()
        reports = [out.get(timeout=seconds * 10 + 60) for _ in clients]
        # from the first request sent to the last answered
        elapsed = max(r["span"][1] for r in reports) - min(r["span"][0] for r in reports)
        for process in clients:
            process.join()
        with host.client() as client:
            counts = client.count_jobs()
            done = counts.get("Successful", 0)
        accepted = [i for r in reports for i in r["ids"]]
        stored = counts["Total"]
    finally:
        host.close()
    figures: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "jobs_accepted": len(accepted),
        "jobs_stored": stored,
        "jobs_unique": len(set(accepted)),
        "jobs_run_meanwhile": done,
        "jobs_per_second": round(len(accepted) / elapsed),
    }
    for kind in ("submit", "query"):
        latencies = [x for r in reports if r["kind"] == kind for x in r["latencies"]]
        errors = [e for r in reports if r["kind"] == kind for e in r["errors"]]
        figures[kind] = {
            "requests": len(latencies),
            "per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "max_ms": round(max(latencies, default=0) * 1000, 1),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--jobs-per-second", type=float, default=2000)
    parser.add_argument("--batch", type=int, default=100, help="jobs per submit request")
    parser.add_argument("--queries-per-second", type=float, default=200)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    figures = run(args.seconds, args.jobs_per_second, args.batch, args.queries_per_second)
    if args.json:
        print(json.dumps(figures))
        return 0
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    submit, query = figures["submit"], figures["query"]
    lines = [
        f"# hyper load test, {stamp}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.platform()}. {figures['seconds']} s on"
        f" loopback: {args.jobs_per_second:.0f} jobs/s offered in batches of {args.batch},"
        f" {args.queries_per_second:.0f} status queries/s, workers running the jobs.",
        "",
        "| | requests | per second | p50 | p99 | max | errors |",
        "|---|---|---|---|---|---|---|",
        f"| submit ({args.batch} jobs) | {submit['requests']} | {submit['per_second']}"
        f" ({figures['jobs_per_second']} jobs/s) | {submit['p50_ms']} ms | {submit['p99_ms']} ms"
        f" | {submit['max_ms']} ms | {submit['errors']} |",
        f"| status query | {query['requests']} | {query['per_second']} | {query['p50_ms']} ms"
        f" | {query['p99_ms']} ms | {query['max_ms']} ms | {query['errors']} |",
        "",
        f"Jobs accepted {figures['jobs_accepted']}, stored {figures['jobs_stored']}, ids unique"
        f" {figures['jobs_unique']}; run to the end meanwhile {figures['jobs_run_meanwhile']}.",
        "",
    ]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"load-{stamp}.md").write_text("\n".join(lines))
    print(f"# wrote {RESULTS / f'load-{stamp}.md'}", file=sys.stderr)
    ok = submit["errors"] == query["errors"] == 0
    return 0 if ok and figures["jobs_stored"] == figures["jobs_accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
