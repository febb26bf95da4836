"""The host client: the one way every command and worker talks to a host.

How bytes reach a host, and how the host proves who it is before the key is sent,
is hyper/transport.py; here are the calls, what their answers mean, and the retries.

Retries with back-off and jitter on connection errors, 429 and 503; every failure becomes
one exception from ``hyper.errors`` whose message tells the user what to do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator

from hyper.errors import (
    AuthError,
    Conflict,
    HostFailure,
    HostRejected,
    HostUnreachable,
    HyperError,
    NotFound,
    UsageError,
)
from hyper.jobs import INLINE_FILE_BYTES, MAX_FILE_BYTES, MAX_LINKED_FILE_BYTES
from hyper.key_headers import key_headers
from hyper.transport import (
    RequestNotSent,
    SocketTransport,
    is_local_url,
    quote,
    urlencode,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a submit's start 3 ms
if TYPE_CHECKING:
    from typing import Any, Protocol

    from hyper.messages import (
        ClaimedJob,
        ClaimRef,
        ClaimRequest,
        Completion,
        FileLink,
        Progress,
        Room,
    )

    class Transport(Protocol):
        def request(
            self, method: str, path: str, body: bytes | None, headers: dict[str, str]
        ) -> tuple[int, bytes]: ...

        def close(self) -> None: ...


RETRY_STATUSES = frozenset({429, 503})
LINKED = 307  # a file's answer: fetch it from the link in the body (hyper/host/routes/files.py)
# a file moved by link may take this long beyond the client's timeout per byte: it is
# sent at 256 KiB/s at least (a socket's timeout bounds a whole sendall)
LINK_SECONDS_PER_BYTE = 1 / 2**18
# what API Gateway answers when Lambda is throttled (500), fails (502) or is too slow
# (504): a request that is safe to repeat (a GET) is asked again, as patiently as a 429
GATEWAY_ERRORS = frozenset({500, 502, 504})
# a throttled host (API Gateway's usage plan: 429) is waited out longer than a failing one:
# up to this many tries, with pauses of up to THROTTLED_PAUSE_SECONDS (about 18 s in all)
THROTTLED_RETRIES = 10
THROTTLED_PAUSE_SECONDS = 4.0


SUBMIT_BATCH_JOBS = 10_000  # the host's max_jobs_per_request
SUBMIT_BATCH_BYTES = 16 * 2**20  # half the host's max_body_bytes: room for escapes
# An AWS host answers through API Gateway and Lambda, whose request and response carry at
# most 6 MB, bodies base64-encoded (4/3 as long): files of at most 4 MB, submits of at
# most 3 MB of JSON, leave room for the event's other fields. Its URL says it is one.
# A bigger file goes by a link the host gives (a presigned S3 URL: `_follow`).
LAMBDA_FILE_BYTES = INLINE_FILE_BYTES
LAMBDA_SUBMIT_BYTES = 3_000_000
# execute-api.REGION.amazonaws.com, and .amazonaws.com.cn in AWS's China regions
LAMBDA_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")


def _url_host(url: str) -> str:
    """The host name of a URL, lower case, without user, port or IPv6 brackets."""
    where = url.partition("://")[2].partition("/")[0].rpartition("@")[2].lower()
    return where[1:].partition("]")[0] if where.startswith("[") else where.partition(":")[0]


def on_lambda(url: str) -> bool:
    """Whether a host's URL is an API Gateway endpoint (an AWS host's)."""
    host = _url_host(url)
    return ".execute-api." in host and host.endswith(LAMBDA_HOSTS)


def on_this_machine(url: str) -> bool:
    """Whether a host's URL is on this machine: its Unix socket, or a loopback address."""
    host = _url_host(url)
    if url.startswith("unix:") or host == "localhost":
        return True
    import ipaddress  # only the worker asks, once: not at every command's start

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only localhost is surely this machine
        return False


def _batches(
    jobs: list[dict[str, Any]], max_bytes: int = SUBMIT_BATCH_BYTES
) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of `jobs` that each fit in one submit request."""
    batch: list[dict[str, Any]] = []
    size = 0
    for job in jobs:
        cost = len(json.dumps(job)) + 2
        if batch and (len(batch) >= SUBMIT_BATCH_JOBS or size + cost > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(job)
        size += cost
    if batch:
        yield batch


def _file_path(key: str) -> str:
    return f"/files/{quote(key)}"  # slashes stay: they are part of the key


def _detail(status: int, body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail", "")
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:300] or f"HTTP {status}"
    if isinstance(detail, list) and detail:  # request validation errors
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return str(detail) or f"HTTP {status}"


# the most jobs one cancel, hold or release request changes: under a second of the host's
# time on a loaded 2-core machine, so a million are changed in 50 short steps
CHANGE_STEP = 20_000


class HostClient:
    """Calls one host's API. `reconnect` is asked for a fresh URL when the host is down
    (for a local host it starts the daemon); it returns None when it cannot help."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        host_name: str = "",
        timeout: float = 30.0,
        retries: int = 5,
        transport: Transport | None = None,
        reconnect: Callable[[], str | None] | None = None,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        worker_token: str = "",
    ) -> None:
        self.url = url
        self.host_name = host_name or url
        self._key = api_key
        # the key and its gateway value (hyper/key_headers.py; a local host on its socket
        # has no gateway: the key alone), and a worker's token, sent with its key where
        # the host gave it one (hyper/host/auth.py)
        self._auth = {"x-api-key": api_key} if is_local_url(url) else key_headers(api_key)
        if worker_token:
            from hyper.worker_tokens import HEADER  # a worker's: not on the commands' path

            self._auth[HEADER] = worker_token
        self._timeout = timeout
        self._retries = retries
        self._retry_statuses = retry_statuses
        self._transport = transport or SocketTransport(url, timeout)
        self._reconnect = reconnect
        lambda_host = on_lambda(url)
        self.max_file_bytes = LAMBDA_FILE_BYTES if lambda_host else MAX_FILE_BYTES
        self._submit_bytes = LAMBDA_SUBMIT_BYTES if lambda_host else SUBMIT_BATCH_BYTES

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        if query:
            items = {k: v for k, v in query.items() if v is not None}
            if items:
                path = f"{path}?{urlencode(items)}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        payload = self._exchange(method, path, data, headers, repeatable=method == "GET")
        return json.loads(payload) if payload else None

    def _exchange(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        repeatable: bool,
        linked: bool = False,
    ) -> bytes:
        """Send a request (with retries) and return the body of its 2xx answer; any other
        answer raises. A `repeatable` request may be sent again even after it may have
        reached the host. With `linked`, a file's answer may be a link (307): the bytes are
        fetched from it."""
        headers = {**self._auth, **headers}
        attempt = 0
        relinked = False
        while True:
            try:
                status, payload = self._transport.request(method, path, data, headers)
            except OSError as exc:
                not_sent = isinstance(exc, RequestNotSent)
                if not_sent and attempt == 0 and self._reconnect is not None:
                    new_url = self._reconnect()
                    if new_url:
                        self._switch(new_url)
                        attempt += 1
                        continue
                # a request that may have reached the host is repeated only when it is safe
                if (not_sent or repeatable) and attempt < self._retries:
                    self._pause(attempt)
                    attempt += 1
                    continue
                raise HostUnreachable(
                    f"host {self.host_name!r} is unreachable at {self.url} ({exc}); "
                    "check it with 'hyper hosts host-status'"
                ) from exc
            gateway_error = repeatable and status in GATEWAY_ERRORS
            again = status in self._retry_statuses or gateway_error
            # API Gateway's 500 is also how a Lambda out of concurrency answers: a busy host,
            # waited out as long as a 429
            throttled = (status == 429 or gateway_error) and self._retries > 0
            tries = max(self._retries, THROTTLED_RETRIES) if throttled else self._retries
            if again and attempt < tries:
                self._pause(attempt, THROTTLED_PAUSE_SECONDS if throttled else 2.0)
                attempt += 1
                continue
            if 200 <= status < 300:
                return payload
            if linked and status == LINKED:
                try:
                    return self._follow(json.loads(payload)["link"])
                except LinkRefused as refused:
                    if relinked:
                        raise HostFailure(f"{refused}, a fresh link too") from None
                    relinked = True  # its signer's session ended: a fresh link, once
                    continue
            raise self._error(status, payload)

    def _switch(self, url: str) -> None:
        self._transport.close()
        self.url = url
        self._transport = SocketTransport(url, self._timeout)

    @staticmethod
    def _pause(attempt: int, ceiling: float = 2.0) -> None:
        jitter = (time.perf_counter_ns() % 1000) / 1000  # enough randomness to spread clients
        time.sleep(min(ceiling, 0.05 * 2**attempt) * (0.5 + jitter))

    def _error(self, status: int, payload: bytes) -> HyperError:
        message = _detail(status, payload)
        if status in (401, 403):
            return AuthError(f"host {self.host_name!r} refused the API key ({message})")
        if status == 404:
            return NotFound(message)
        if status == 429:
            return HostFailure(f"host {self.host_name!r} is busy (too many requests): {message}")
        if status == 409:
            return Conflict(message)
        if 400 <= status < 500:
            return HostRejected(message)
        if status == 503:
            return HostFailure(f"host {self.host_name!r} is unavailable: {message}")
        return HostFailure(f"host {self.host_name!r} failed: {message}")

    # jobs -----------------------------------------------------------------

    def submit(self, jobs: list[dict[str, Any]]) -> list[int]:
        """Submit jobs, in as many requests as the host's limits on one request take
        (SUBMIT_BATCH_JOBS jobs, SUBMIT_BATCH_BYTES of JSON); their ids in order."""
        if self._submit_bytes < SUBMIT_BATCH_BYTES:  # an AWS host: refused before any is sent
            for n, job in enumerate(jobs):
                if len(json.dumps(job)) + 2 > self._submit_bytes:
                    raise UsageError(
                        f"job {n + 1} of the submit is {len(json.dumps(job)):,} bytes of JSON;"
                        f" an AWS host (API Gateway and Lambda) takes {self._submit_bytes:,}"
                        " at most per request: make its script smaller"
                    )
        ids: list[int] = []
        for batch in _batches(jobs, self._submit_bytes):
            ids += self.call("POST", "/jobs", {"jobs": batch})["ids"]
        return ids

    def get_job(self, job_id: int, *, wait: float | None = None) -> dict[str, Any]:
        return dict(self.call("GET", f"/jobs/{int(job_id)}", query={"wait": wait}))

    def list_jobs(self, **filters: Any) -> dict[str, Any]:
        return dict(self.call("GET", "/jobs", query=filters))

    def iter_jobs(
        self, *, limit: int | None = None, after: int | None = None, **filters: Any
    ) -> Iterable[dict[str, Any]]:
        """Every matching job after id `after`, page by page, up to `limit` (None: all)."""
        seen = 0
        while True:
            page_size = 1000 if limit is None else min(1000, limit - seen)
            if page_size <= 0:
                return
            page = self.list_jobs(after=after, limit=page_size, **filters)
            for job in page["jobs"]:
                yield job
                seen += 1
            after = page.get("next")
            if not after:
                return

    def count_jobs(self, **filters: Any) -> dict[str, int]:
        return dict(self.call("GET", "/jobs/counts", query=filters))

    def change(self, action: str, selection: dict[str, Any]) -> dict[str, Any]:
        """Cancel, hold or release the selected jobs, however many: in steps of at most
        CHANGE_STEP jobs, each a short request (the host serves others between them, and
        none comes near a gateway's time limit). The answer sums the steps' counts; the
        named jobs that did not change are those of the first step (later steps see the
        first one's changes as already made)."""
        if action not in ("cancel", "hold", "release"):
            raise ValueError(f"unknown action {action!r}")
        body = {**selection, "limit": CHANGE_STEP}
        try:
            answer = dict(self.call("POST", f"/jobs/{action}", body))
        except HostRejected as error:
            if not str(error).startswith("limit: "):
                raise
            # a host from before steps refuses the field: all at once, as it always did
            return dict(self.call("POST", f"/jobs/{action}", selection))
        total = "cancelled" if action == "cancel" else "changed"
        step = answer
        while step.pop("more", False):
            step = dict(self.call("POST", f"/jobs/{action}", body))
            answer[total] += step[total]
            if "stopping" in step:  # the running jobs as they are now
                answer["stopping"] = step["stopping"]
        return answer

    def read_log(
        self, job_id: int, *, kinds: list[str], after: int = 0, wait: float | None = None
    ) -> dict[str, Any]:
        query = {"kind": kinds, "after": after, "wait": wait}
        return dict(self.call("GET", f"/jobs/{int(job_id)}/log", query=query))

    # the dashboard --------------------------------------------------------

    def dashboard_token(self, *, seconds: float | None = None) -> dict[str, Any]:
        """A single-use login token for the host's dashboard (the API key stays here)."""
        body = {} if seconds is None else {"seconds": seconds}
        return dict(self.call("POST", "/dashboard/tokens", body))

    def dashboard_session(self, token: str) -> dict[str, Any]:
        """Trade a login token for a session cookie (its name, value and max_age)."""
        return dict(self.call("POST", "/dashboard/session", {"token": token}))

    def relay(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Pass a browser's request for a dashboard page on as it is, without the API key
        (the page checks its session cookie), and return the status and body."""
        if not path.startswith("/dashboard/"):
            raise ValueError(f"not a dashboard path: {path!r}")
        try:
            return self._transport.request(method, path, body, headers)
        except OSError as exc:
            raise HostUnreachable(
                f"host {self.host_name!r} is unreachable at {self.url} ({exc})"
            ) from exc

    # files ----------------------------------------------------------------
    # (putting and deleting a key twice does what doing it once does: they may be repeated)

    def _check_file_size(self, key: str, data: bytes) -> None:
        if len(data) <= self.max_file_bytes:
            return
        if self.max_file_bytes < MAX_FILE_BYTES:
            raise UsageError(
                f"file {key!r} is {len(data)} bytes; an AWS host (API Gateway and Lambda)"
                f" takes files of at most {self.max_file_bytes:,} bytes"
            )
        raise UsageError(
            f"file {key!r} is {len(data)} bytes; the host keeps files of at most"
            f" {MAX_FILE_BYTES // 2**20} MiB"
        )

    def put_file(self, key: str, data: bytes) -> None:
        if self._sent_by_link(key, "/links", data):
            return
        self._check_file_size(key, data)
        headers = {"Content-Type": "application/octet-stream"}
        self._exchange("PUT", _file_path(key), data, headers, repeatable=True)

    def get_file(self, key: str) -> bytes:
        """The file's bytes; NotFound when the host has no such file."""
        headers = {"Accept": "application/octet-stream"}
        return self._exchange("GET", _file_path(key), None, headers, repeatable=True, linked=True)

    def delete_files(self, key: str) -> None:
        """Delete the file `key` and every file under `key/`."""
        self._exchange("DELETE", _file_path(key), None, {}, repeatable=True)

    def get_job_package(self, worker_id: str, job_id: int) -> bytes:
        """The package of a job this worker holds."""
        headers = {"Accept": "application/octet-stream"}
        path = f"/workers/{quote(worker_id)}/jobs/{job_id}/package"
        return self._exchange("GET", path, None, headers, repeatable=True, linked=True)

    def put_job_file(self, worker_id: str, job_id: int, key: str, data: bytes) -> None:
        """Keep a file a job this worker holds collected, as ``jobs/{job_id}/{key}``."""
        job = f"/workers/{quote(worker_id)}/jobs/{job_id}"
        if self._sent_by_link(key, f"{job}/links", data):
            return
        self._check_file_size(key, data)
        headers = {"Content-Type": "application/octet-stream"}
        self._exchange("PUT", f"{job}/files/{quote(key)}", data, headers, repeatable=True)

    def _sent_by_link(self, key: str, links: str, data: bytes) -> bool:
        """Send a file over INLINE_FILE_BYTES by the link the host gives for it (a host
        whose API cannot carry it: an AWS host's), and have the host check it arrived
        whole; False when the host gives none (it takes the file itself). A local host
        (on its Unix socket) is not asked: it streams every file to its disk."""
        if len(data) <= INLINE_FILE_BYTES or is_local_url(self.url):
            return False
        if len(data) > MAX_LINKED_FILE_BYTES:
            raise UsageError(
                f"file {key!r} is {len(data):,} bytes; a host keeps files of at most"
                f" {MAX_LINKED_FILE_BYTES // 2**30} GiB"
            )
        import hashlib  # a big file's: not on a submit's path

        body = {"size": len(data), "md5": hashlib.md5(data).hexdigest()}
        wanted = json.dumps(body).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        for fresh in (False, True):
            try:
                answer = self._exchange(
                    "POST", f"{links}/upload/{quote(key)}", wanted, headers, repeatable=True
                )
            except NotFound:  # a host older than links: it takes the file itself
                return False
            link = json.loads(answer).get("link")
            if not link:
                return False
            try:
                self._follow(link, data)
                break
            except LinkRefused as refused:
                if fresh:
                    raise HostFailure(f"{refused}, a fresh link too") from None
                # its signer's session ended: ask for a fresh link, once
        self._exchange("POST", f"{links}/uploaded/{quote(key)}", wanted, headers, repeatable=True)
        return True

    def _follow(self, link: FileLink, data: bytes | None = None) -> bytes:
        """Do the request a link stands for (a presigned URL of one object in the host's
        bucket): its method, its signed headers, never the API key. Repeated on a lost
        connection or a 5xx (a PUT of the same bytes twice does what once does)."""
        from urllib.parse import urlsplit

        parts = urlsplit(link["url"])
        size = len(data) if data is not None else int(link.get("size") or 0)
        timeout = self._timeout + size * LINK_SECONDS_PER_BYTE
        transport = SocketTransport(f"{parts.scheme}://{parts.netloc}", timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        what = f"{link['method']} {parts.path.rsplit('/files/', 1)[-1]}"
        attempt = 0
        try:
            while True:
                try:
                    status, payload = transport.request(
                        link["method"], path, data, dict(link["headers"])
                    )
                except OSError as exc:
                    if attempt < self._retries:
                        self._pause(attempt)
                        attempt += 1
                        continue
                    raise HostUnreachable(
                        f"the storage of host {self.host_name!r} is unreachable for {what} ({exc})"
                    ) from exc
                if 200 <= status < 300 and (data is not None or len(payload) == size):
                    return payload
                if (status >= 500 or 200 <= status < 300) and attempt < self._retries:
                    self._pause(attempt)  # a server error, or a body cut short
                    attempt += 1
                    continue
                if 200 <= status < 300:  # a download cut short, every time
                    raise HostFailure(
                        f"the storage of host {self.host_name!r} sent {len(payload):,} of the"
                        f" {size:,} bytes of {what}"
                    )
                expired = status == 403 and _storage_code(payload) in EXPIRED_LINK_CODES
                raise (LinkRefused if expired else HostFailure)(
                    f"the storage of host {self.host_name!r} refused {what}: HTTP {status}"
                    f" {_storage_error(payload)}".rstrip()
                )
        finally:
            transport.close()

    # resources ------------------------------------------------------------

    def list_resources(self, kind: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/resources/{quote(kind)}")["items"])

    # workers --------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        *,
        queue: str,
        definition: str,
        limit: int,
        wait: float,
        room: Room | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to `limit` jobs; with `room`, only jobs that fit in it."""
        body: ClaimRequest = {
            "queue": queue,
            "definition": definition,
            "limit": limit,
            "wait": wait,
        }
        if room is not None:
            body["room"] = room
        answer = self.call("POST", f"/workers/{quote(worker_id)}/claim", body)
        return _claimed(answer["jobs"])

    def complete(self, worker_id: str, body: Completion) -> list[ClaimedJob]:
        """Report attempts that ended; the jobs claimed in return (body's `claim_next`)."""
        answer = self.call("POST", f"/workers/{quote(worker_id)}/complete", body)
        return _claimed(answer.get("jobs", []))

    def return_claims(self, worker_id: str, refs: list[ClaimRef]) -> None:
        """Hand back claimed attempts that were not started."""
        self.call("POST", f"/workers/{quote(worker_id)}/return", {"jobs": refs})

    def progress(self, worker_id: str, job_id: int, body: Progress) -> dict[str, Any]:
        return dict(self.call("POST", f"/workers/{quote(worker_id)}/jobs/{job_id}/progress", body))

    def progress_output(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        kind: str,
        text: bytes,
        process_group: int | None = None,
    ) -> dict[str, Any]:
        """A progress report with one piece of output (UTF-8), sent as the body itself."""
        query = {"attempt": attempt, "kind": kind}
        if process_group is not None:
            query["process_group"] = process_group
        path = f"/workers/{quote(worker_id)}/jobs/{job_id}/output?{urlencode(query)}"
        headers = {"Accept": "application/json", "Content-Type": "text/plain; charset=utf-8"}
        payload = self._exchange("POST", path, text, headers, repeatable=False)
        return dict(json.loads(payload)) if payload else {}

    def worker_exit(self, worker_id: str) -> None:
        self.call("POST", f"/workers/{quote(worker_id)}/exit", {})


class LinkRefused(HostFailure):
    """S3 refused a link (403): as it does once the temporary credentials that signed it
    have expired, whatever its X-Amz-Expires (ExpiredToken, or AccessDenied; S3 User
    Guide, "Download and upload objects with presigned URLs"). The client asks the host
    for a fresh link once, then gives up with this one line."""


EXPIRED_LINK_CODES = ("ExpiredToken", "AccessDenied")


def _storage_code(payload: bytes) -> str:
    return payload.decode(errors="replace").partition("<Code>")[2].partition("</Code>")[0]


def _storage_error(payload: bytes) -> str:
    """S3's error code and message, from its XML answer."""
    text = payload.decode(errors="replace")
    code = text.partition("<Code>")[2].partition("</Code>")[0]
    message = text.partition("<Message>")[2].partition("</Message>")[0]
    return f"({code}: {message})" if code else ""


def _claimed(jobs: list[dict[str, Any]]) -> list[ClaimedJob]:
    from hyper.messages import ClaimedJob  # dataclasses and typing: a worker's, not a command's

    return [ClaimedJob.from_wire(job) for job in jobs]
