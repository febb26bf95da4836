"""Who may call which route: the host's key, and a worker key that works only as a worker.

The host's API key opens every route. A host may also have a worker key (an AWS host
has one, in a secret of its own): it is what its workers, and so the jobs that run
beside them, can read, and it opens only what a worker does: its own calls under
``/workers/{id}/`` (claim, progress and the job's output, complete, return, exit),
reading files (a job's package) and keeping the files a job collects
(``jobs/{id}/...``). Whoever holds it cannot submit, list, cancel or read jobs, read
their logs, change resources or read the host's key. A local host has no worker key:
its workers are its owner's processes and use its key.

Keys are compared in constant time; the worker key is checked only when the host's key
does not match.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

# method, path pattern: what the worker key opens
WORKER_ROUTES = (
    ("POST", re.compile(r"/workers/[^/]+/(claim|complete|return|exit)")),
    ("POST", re.compile(r"/workers/[^/]+/jobs/[0-9]+/(progress|output|complete)")),
    ("GET", re.compile(r"/files/.+")),
    ("PUT", re.compile(r"/files/jobs/[0-9]+/.+")),
)


def worker_route(method: str, path: str) -> bool:
    """Whether a request is one a worker makes (and so one the worker key opens)."""
    return any(method == m and pattern.fullmatch(path) for m, pattern in WORKER_ROUTES)


@dataclass(frozen=True)
class Keys:
    """The keys a host accepts: `api_key` everywhere, `worker_key` (when set) on worker
    routes only."""

    api_key: str
    worker_key: str = ""

    def allows(self, method: str, path: str, given: bytes) -> bool:
        if hmac.compare_digest(given, self.api_key.encode()):
            return True
        if not self.worker_key or not hmac.compare_digest(given, self.worker_key.encode()):
            return False
        return worker_route(method, path)
