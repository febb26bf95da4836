"""Waiting for AWS to settle a change (`Patience`), and the one-line failure of a call.

Every AWS call of the Batch side goes through a `ClientFactory` (plain boto3 clients by
default, imported lazily), so moto, a moto server or a Stubber can stand in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hyper.errors import DeployFailed, one_line

ClientFactory = Callable[[str, str], Any]  # (service, region) -> a boto3 client


# ---- waiting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patience:
    """How long to wait for Batch to settle a change, and how often to look; and, after
    IAM made or changed a role, how long to give it to reach Batch and EC2 (IAM is
    eventually consistent: a compute environment made with a role seconds old is often
    refused, or settles INVALID) and how many times to try again."""

    timeout: float = 900.0
    interval: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    propagation: float = 10.0  # after IAM's waiters saw the roles; doubled per retry
    attempts: int = 4  # creations of a compute environment refused while IAM propagates


def _wait(what: str, done: Callable[[], bool], patience: Patience) -> None:
    deadline = patience.clock() + patience.timeout
    while not done():
        if patience.clock() > deadline:
            raise DeployFailed(f"gave up waiting after {patience.timeout:.0f} s for {what}")
        patience.sleep(patience.interval)


def _aws_failed(what: str, error: Exception) -> DeployFailed:
    return DeployFailed(one_line(f"{what}: {error}"))
