"""Worker tokens: what lets a worker on a host with a worker key act as itself, and as
no other worker.

A host mints a token for a *group* of worker ids when it launches them (on AWS, one
Batch job or array: the workers ``PREFIX-0 .. PREFIX-(N-1)`` share the group
``PREFIX``) and hands it to them with the launch; a request under ``/workers/ID/`` made
with the worker key is let through only with the token of ID's group
(hyper/host/auth.py). A token is an HMAC of the group under a key derived from the
host's API key, so only the host can mint one and no store of tokens is needed.
"""

from __future__ import annotations

import hashlib
import hmac  # both cheap beside what a worker or host loads; the q-commands read HEADER only

HEADER = "x-hyper-worker-token"  # the header a worker sends its token in
ENVIRONMENT = "HYPER_WORKER_TOKEN"  # where a launched worker finds it


def worker_group(worker_id: str) -> str:
    """The group a worker id belongs to: what comes before its last ``-INDEX``, or the
    id itself when it does not end so."""
    prefix, _, index = worker_id.rpartition("-")
    return prefix if prefix and index.isdigit() else worker_id


class WorkerTokens:
    """Mints and checks the tokens of a host whose API key is `api_key`."""

    def __init__(self, api_key: str) -> None:
        self._key = hmac.new(api_key.encode(), b"hyper worker tokens", hashlib.sha256).digest()

    def token(self, group: str) -> str:
        """The token of every worker in `group`."""
        return hmac.new(self._key, group.encode(), hashlib.sha256).hexdigest()

    def valid(self, worker_id: str, token: str) -> bool:
        """Whether `token` is the one of the worker's group (in constant time); only an
        id ``GROUP-INDEX`` has one."""
        group = worker_group(worker_id)
        if group == worker_id or not token:
            return False
        return hmac.compare_digest(token.encode(), self.token(group).encode())
