"""B2 on the AWS host's store: how long the DynamoDB store's submit of one job and of
arrays takes, against moto's in-process DynamoDB (not the service: no network).

    python bench/b2_dynamodb.py [--repeat 5] [--sizes 2000,100000]

Prints one `name: median ms (each run)` line per case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import boto3
import moto

from hyper.store.base import ArrayTasks, NewJob
from hyper.store.dynamodb import DynamoDBStore
from hyper.store.dynamodb_tables import create_tables

REGION, PREFIX = "us-east-1", "b2"


def new_job(name: str, size: int | None) -> NewJob:
    tasks = None if size is None else ArrayTasks(indices=range(size))
    return NewJob(name=name, script="true\n", queue="q", definition="d", array=tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="2000,100000")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    with moto.mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), PREFIX)
        store = DynamoDBStore(PREFIX, REGION)
        cases = [("one job", None)] + [
            (f"array of {int(n):,}", int(n)) for n in args.sizes.split(",")
        ]
        for label, size in cases:
            took = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                store.submit([new_job("b2", size)], time.time())
                took.append((time.perf_counter() - started) * 1000)
            each = ", ".join(f"{t:.1f}" for t in took)
            print(f"{label}: {statistics.median(took):.1f} ms ({each})", flush=True)


if __name__ == "__main__":
    main()
