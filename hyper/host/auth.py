"""Who may call which route: the host's key, and a worker key that works only as one worker.

The host's API key opens every route. A host may also have a worker key (an AWS host has
one: the API Gateway key its workers pass the gateway with). Alone it opens nothing: a
request made with it must also carry a worker token (hyper/worker_tokens.py, minted by
the host when it launched the worker), and then it opens only that worker's own calls
under ``/workers/{id}/``: claim, progress and the job's output, complete, return, exit,
fetching the package of a job it holds and keeping the files such a job collects, or
links that move just those files past the host (the routes themselves check that the job
is the worker's). Whoever holds a worker's key and token cannot act as another worker
(of another launch), read or write other files, submit, list, cancel or read jobs, read
their logs, change resources or read the host's key. A local host has no worker key: its
workers are its owner's processes and use its key.

Keys are compared in constant time; the worker key is checked only when the host's key
does not match.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field

from hyper.worker_tokens import WorkerTokens

_WORKER = r"/workers/(?P<worker>[^/]+)"
# method, path pattern: what a worker's key and token open (its own id in the path)
WORKER_ROUTES = (
    ("POST", re.compile(_WORKER + r"/(claim|complete|return|exit)")),
    ("POST", re.compile(_WORKER + r"/jobs/[0-9]+/(progress|output|complete)")),
    ("GET", re.compile(_WORKER + r"/jobs/[0-9]+/package")),
    ("PUT", re.compile(_WORKER + r"/jobs/[0-9]+/files/.+")),
    ("POST", re.compile(_WORKER + r"/jobs/[0-9]+/links/(upload|uploaded)/.+")),
)


def worker_route(method: str, path: str) -> str | None:
    """The worker id of a request a worker makes (one its key and token may open), or
    None for any other request."""
    for wanted, pattern in WORKER_ROUTES:
        found = pattern.fullmatch(path) if method == wanted else None
        if found:
            return found.group("worker")
    return None


@dataclass(frozen=True)
class Keys:
    """The keys a host accepts: `api_key` everywhere, `worker_key` (when set) with a
    worker's token on that worker's routes only."""

    api_key: str
    worker_key: str = ""
    tokens: WorkerTokens = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", WorkerTokens(self.api_key))

    def allows(self, method: str, path: str, given: bytes, token: bytes = b"") -> bool:
        if hmac.compare_digest(given, self.api_key.encode()):
            return True
        if not self.worker_key or not hmac.compare_digest(given, self.worker_key.encode()):
            return False
        worker = worker_route(method, path)
        # (an ASGI path is already percent-decoded, as the route's worker_id will be)
        return worker is not None and self.tokens.valid(worker, token.decode(errors="replace"))
