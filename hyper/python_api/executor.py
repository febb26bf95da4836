"""``hyper.Executor``: a concurrent.futures Executor whose calls run as hyper jobs.

``submit`` makes one job, ``map`` one array job (a task per item, or per `chunksize`
items). The function and its arguments go in a package through the host's file store;
the job leaves its outcome in ``result.pickle``, which its worker collects into the
store, so it works on every provider. One thread per Executor watches its unfinished
jobs, many in one request, backing off while nothing ends (as submitit does).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from hyper.client import HostClient
from hyper.errors import HyperError, NotFound, RemoteError
from hyper.python_api import payload
from hyper.python_api.submission import (
    FINISHED_STATES,
    JobSettings,
    connect,
    how_it_ended,
    log_text,
    task_selector,
    upload,
)

P = ParamSpec("P")
T = TypeVar("T")

FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 1.0
PATIENCE_SECONDS = 120.0  # a host failing this long fails the futures waiting on it
SELECTORS_PER_REQUEST = 200  # keeps a request's query well under the server's limit


class JobFuture(Future[T]):
    """A Future for one call that runs in a hyper job (or array task)."""

    def __init__(
        self, executor: Executor, job_id: int, array_id: int | None, index: int | None
    ) -> None:
        super().__init__()
        self._executor = executor
        self.job_id = job_id  # the job, or the array task, that runs the call
        self.array_id = array_id  # the array, for calls made by map
        self.index = index  # the task's index in that array
        self._told = False  # waiters were told it was cancelled

    def cancel(self) -> bool:
        """Cancel the job on the host, whether it waits or runs (it then ends Cancelled);
        False when it had already ended."""
        if self.done():
            return self.cancelled()
        if self.job_id in self._executor._cancel_jobs([self.job_id]):
            return False  # it ended before the cancel came: its outcome is on its way
        return self._mark_cancelled()

    def _mark_cancelled(self) -> bool:
        with self._executor._lock:
            if not Future.cancel(self):
                return False
            if not self._told:  # Future.cancel leaves telling wait()/as_completed() to us
                self._told = True
                self.set_running_or_notify_cancel()
            return True

    def log(self, kinds: Sequence[str] = ("STDOUT", "STDERR")) -> str:
        """The job's output so far (what `qlog` shows); `kinds` also takes SYSTEM, METRICS."""
        return self._executor._log(self.job_id, kinds)


@dataclass
class _Job:
    """A job on the host and the futures its result settles."""

    id: int
    futures: list[JobFuture[Any]]
    package: str
    array_id: int | None = None
    index: int | None = None


class Executor(concurrent.futures.Executor):
    """Runs calls as hyper jobs, on any provider: ``submit`` one job per call, ``map``
    one array job. Use it as a context manager, or call ``shutdown``."""

    def __init__(
        self,
        *,
        queue: str,
        definition: str,
        host: str | None = None,
        name: str | None = None,
        retries: int = 0,
        time_limit: int | None = None,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        cpus: int | None = None,
        mem: str | int | None = None,
        gpus: int | None = None,
    ) -> None:
        """`host` is a saved host's name (default: the host in use, created on first use
        as qsub does); `name` the jobs' name (default: python-FUNCTION); `time_limit`
        in seconds; `env` variables for the jobs; `python` hyper's Python where the jobs
        run (default: $HYPER_PYTHON there, else the worker's own interpreter); `cpus`,
        `mem` ("4G"; a number is MiB) and `gpus` what each job gets on its worker (as
        qsub's --cpus, --mem, --gpus; default: the definition's share)."""
        self._settings = JobSettings(
            queue, definition, retries, time_limit, dict(env or {}), python, cpus, mem, gpus
        )
        self._settings.resources()  # a bad request is refused here, before any submit
        self._name = name
        self._host = host
        self._client = connect(host)  # for the caller's threads, one request at a time
        self._lock = threading.RLock()  # also guards the state below
        self._pending: dict[int, _Job] = {}
        self._unsettled: dict[str, int] = {}  # package key -> its jobs not yet settled
        self._shutdown = False
        self._closed = False  # its client is
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None

    # submitting ----------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> JobFuture[T]:
        """Run fn(*args, **kwargs) as one job."""
        (future,) = self._submit(fn, [[(args, kwargs)]], array=False)
        return future

    def map_array(
        self, fn: Callable[..., T], *iterables: Iterable[Any], chunksize: int = 1
    ) -> list[JobFuture[T]]:
        """Submit fn over the zipped iterables as ONE array job, a task per `chunksize`
        items; the futures, one per item, in order."""
        if chunksize < 1:
            raise ValueError("chunksize must be at least 1")
        calls: list[payload.Call] = [(args, {}) for args in zip(*iterables, strict=False)]
        if not calls:
            return []
        chunks = [calls[i : i + chunksize] for i in range(0, len(calls), chunksize)]
        return self._submit(fn, chunks, array=True)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """As concurrent.futures' map, but submitted as ONE array job (see map_array)."""
        futures = self.map_array(fn, *iterables, chunksize=chunksize)
        return self._in_order(futures, timeout)

    def _in_order(self, futures: list[JobFuture[T]], timeout: float | None) -> Iterator[T]:
        end = None if timeout is None else time.monotonic() + timeout
        try:
            for future in futures:
                yield future.result(None if end is None else end - time.monotonic())
        finally:  # the caller stopped early (or a call failed): the rest is not wanted
            left = [f for f in futures if not f.done()]
            if left:
                finished = set(self._cancel_jobs(sorted({f.job_id for f in left})))
                for future in left:
                    if future.job_id not in finished:
                        future._mark_cancelled()

    def _submit(
        self, fn: Callable[..., Any], tasks: list[list[payload.Call]], *, array: bool
    ) -> list[JobFuture[Any]]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        package = payload.calls_package(fn, tasks)
        name = self._name or f"python-{getattr(fn, '__name__', 'call')}"
        with self._lock:
            key = upload(self._client, package)
            job = self._settings.submission(
                name, key, tasks=len(tasks) if array else None, collect=[payload.RESULT]
            )
            try:
                (first,) = self._client.submit([job])
            except BaseException:
                with contextlib.suppress(HyperError):
                    self._client.delete_files(key)
                raise
            futures: list[JobFuture[Any]] = []
            for index, calls in enumerate(tasks):
                # an array's tasks take the ids after its own, in index order
                job_id, array_id, at = (
                    (first + 1 + index, first, index) if array else (first, None, None)
                )
                mine = [JobFuture[Any](self, job_id, array_id, at) for _ in calls]
                self._pending[job_id] = _Job(job_id, mine, key, array_id, at)
                futures += mine
            self._unsettled[key] = len(tasks)
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="hyper-executor", daemon=True
                )
                self._watcher.start()
        self._wake.set()
        return futures

    # the host --------------------------------------------------------------------

    @contextlib.contextmanager
    def _calling(self) -> Iterator[HostClient]:
        """The executor's client, for one caller at a time; after shutdown, a new one
        that is closed after use."""
        with self._lock:
            if not self._closed:
                yield self._client
                return
        with connect(self._host) as client:
            yield client

    def _cancel_jobs(self, job_ids: list[int]) -> list[int]:
        """Cancel jobs in one request; those that had already ended."""
        with self._calling() as client:
            answer = client.change("cancel", {"ids": [str(i) for i in job_ids]})
        return [int(i) for i in answer.get("finished", [])]

    def _log(self, job_id: int, kinds: Sequence[str]) -> str:
        with self._calling() as client:
            return log_text(client, job_id, kinds)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits. `cancel_futures` cancels every unfinished job; `wait` waits
        until every job has ended and its outcome has come back."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending.values())
        if cancel_futures and pending:
            finished = set(self._cancel_jobs([job.id for job in pending]))
            for job in pending:
                if job.id not in finished:
                    for future in job.futures:
                        future._mark_cancelled()
        self._wake.set()
        if wait and self._watcher is not None:
            self._watcher.join()
        with self._lock:
            self._closed = True
            self._client.close()

    # watching --------------------------------------------------------------------

    def _watch(self) -> None:
        client = connect(self._host)  # the watcher's own connection
        delay = FIRST_POLL_SECONDS
        failing_since: float | None = None
        try:
            while True:
                with self._lock:
                    pending = dict(self._pending)
                    if not pending and self._shutdown:
                        return
                if not pending:
                    self._wake.wait()
                    self._wake.clear()
                    continue
                try:
                    ended = self._ended(client, pending)
                    for job in ended:
                        self._settle(client, pending[int(job["id"])], job)
                except Exception as error:  # the host may be back soon; if not, say so
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > PATIENCE_SECONDS:
                        self._fail_all(error)
                    ended = []
                else:
                    failing_since = None
                delay = FIRST_POLL_SECONDS if ended else min(delay * 2, MAX_POLL_SECONDS)
                self._wake.wait(delay)
                self._wake.clear()
        finally:
            client.close()

    @staticmethod
    def _ended(client: HostClient, pending: dict[int, _Job]) -> list[dict[str, Any]]:
        """The pending jobs that have ended, asked many at a time."""
        singles = [str(job.id) for job in pending.values() if job.array_id is None]
        tasks: dict[int, list[int]] = {}
        for job in pending.values():
            if job.array_id is not None and job.index is not None:
                tasks.setdefault(job.array_id, []).append(job.index)
        selectors = singles + [task_selector(a, indices) for a, indices in tasks.items()]
        ended = []
        for start in range(0, len(selectors), SELECTORS_PER_REQUEST):
            chunk = selectors[start : start + SELECTORS_PER_REQUEST]
            ended += list(client.iter_jobs(ids=chunk, status=FINISHED_STATES))
        return [job for job in ended if int(job["id"]) in pending]

    def _settle(self, client: HostClient, job: _Job, record: dict[str, Any]) -> None:
        outcomes: list[bytes] | None = None
        error: BaseException | None = None
        if record["status"] != "Cancelled":
            try:
                data = client.get_file(f"jobs/{job.id}/{payload.RESULT}")
            except NotFound:
                error = RemoteError(f"no result came back: {how_it_ended(client, record)}")
            else:
                try:
                    outcomes = payload.read_result(data, len(job.futures))
                except RemoteError as failure:
                    error = failure
            with contextlib.suppress(HyperError):  # only tidiness is lost
                client.delete_files(f"jobs/{job.id}")
        with self._lock:
            self._pending.pop(job.id, None)
            self._unsettled[job.package] -= 1
            spent = self._unsettled[job.package] == 0
            if spent:
                del self._unsettled[job.package]
        if spent:
            with contextlib.suppress(HyperError):
                client.delete_files(job.package)
        for position, future in enumerate(job.futures):
            if outcomes is not None:
                payload.settle(future, outcomes[position])
            elif error is not None:
                with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                    future.set_exception(error)
            else:
                future._mark_cancelled()

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            jobs = list(self._pending.values())
            self._pending.clear()
            self._unsettled.clear()
        for job in jobs:
            for future in job.futures:
                with contextlib.suppress(InvalidStateError):
                    future.set_exception(error)
