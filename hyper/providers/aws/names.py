"""The names a host's Batch, IAM and ECR resources take (`Names`), each within what its
service accepts, under the host's prefix."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

# ---- names ----------------------------------------------------------------------------------

# the log group Batch's awslogs driver writes to unless a definition names another
DEFAULT_LOG_GROUP = "/aws/batch/job"

_BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_IAM_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]+")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


def _fit(wanted: str, pattern: re.Pattern[str], limit: int, clean: Callable[[str], str]) -> str:
    """`wanted` when AWS takes it as is; otherwise a cleaned, shortened form with a hash of
    the wanted name, so that two hyper names never meet in one AWS name."""
    if pattern.fullmatch(wanted) and len(wanted) <= limit:
        return wanted
    digest = hashlib.sha1(wanted.encode()).hexdigest()[:8]
    return f"{clean(wanted)[: limit - 9]}-{digest}"


@dataclass(frozen=True)
class Names:
    """AWS names of a host's resources: everything starts with the host's prefix."""

    prefix: str = "hyper"

    def _batch(self, *parts: str) -> str:
        return _fit(
            "-".join((self.prefix, *parts)),
            _BATCH_NAME,
            128,
            lambda s: re.sub(r"[^A-Za-z0-9_-]", "_", s),
        )

    def _iam(self, *parts: str) -> str:
        return _fit(
            "-".join((self.prefix, *parts)),
            _IAM_NAME,
            64,
            lambda s: re.sub(r"[^A-Za-z0-9+=,.@_-]", "_", s),
        )

    def compute_env(self, cluster: str, number: int) -> str:
        return self._batch(cluster, f"ce{number}")

    def job_queue(self, cluster: str) -> str:
        return self._batch(cluster)

    def launch_template(self, cluster: str) -> str:
        """The EC2 launch template of a cluster's instances (one per region)."""
        return self._batch(cluster, "instances")

    def job_definition(self, definition: str) -> str:
        return self._batch(definition)

    def job_name(self, queue: str, definition: str) -> str:
        return self._batch(queue, definition)

    def worker_job_name(self, queue: str, definition: str, workers: str) -> str:
        """The Batch job of workers `workers` (an array's prefix, or one worker's id): any
        container of the host finds it by this name (ListJobs, JOB_NAME)."""
        return self._batch(queue, definition, workers)

    def repository(self, image: str) -> str:
        def clean(wanted: str) -> str:
            parts = (re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in wanted.split("/"))
            return "/".join(p or "x" for p in parts)

        return _fit(f"{self.prefix.rstrip('-')}/{image}", _REPOSITORY, 256, clean)

    def service_role(self) -> str:
        return self._iam("batch-service")

    def instance_role(self, cluster: str) -> str:
        return self._iam(cluster, "instance")

    def spot_fleet_role(self) -> str:
        return self._iam("spot-fleet")

    def execution_role(self) -> str:
        """The ECS task execution role of the host's job definitions: it reads the worker
        key's secret for the ECS agent (the definitions' ``secrets``), nothing else."""
        return self._iam("worker-secrets")

    def job_role(self, definition: str) -> str:
        return self._iam(definition, "job")

    def tags(self, **more: str) -> dict[str, str]:
        host = self.prefix.rstrip("-")
        return {"hyper:host": host, **{f"hyper:{k}": v for k, v in more.items()}}
