"""Providers do the work behind resource changes: what a region, cluster, queue, image or
definition means where the host runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hyper.models import ResourceKind, Spec

Log = Callable[[str], None]


class Provider(Protocol):
    def deploy(self, kind: ResourceKind, spec: Spec, log: Log) -> Spec:
        """Create or update what `spec` describes; return it with anything learnt (an image's
        URI). Raise DeployFailed with the reason."""
        ...

    def teardown(self, kind: ResourceKind, spec: Spec, log: Log) -> None:
        """Remove what `spec` had created."""
        ...
