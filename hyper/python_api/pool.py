"""``hyper.WorkerPool``: worker jobs that connect back to this program and run its calls.

The cluster-manager model of AWSClusterManagers.jl, on every provider: ONE array job of
`max_workers` tasks, each starting a worker that connects back over TCP and proves
itself with a secret made for this pool. The secret travels only in the pool's package,
through the authenticated host, and is deleted by the worker once read: it is on no
command line. The pool takes workers until all have come, its timeout has passed, or
no more can come (the others' jobs ended); it then cancels the tasks that never came
(stragglers), which the original left running. ``wait_for_workers`` judges that as the
original did; leaving the pool releases every worker (its job ends Successful) and
cancels the job of any that does not hang up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from hyper.client import HostClient
from hyper.errors import HyperError, PoolError, RemoteError, UsageError
from hyper.python_api import payload, wire
from hyper.python_api.submission import (
    FINISHED_STATES,
    JobSettings,
    connect,
    how_it_ended,
    task_selector,
    upload,
)

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 25 * 60.0  # the original's
HANDSHAKE_SECONDS = 10.0
RELEASE_SECONDS = 10.0  # how long a released worker may take to hang up
POLL_SECONDS = 0.25
HOST_POLL_SECONDS = 0.5  # while launching: have some workers' jobs ended?


def check_sizes(min_workers: int, max_workers: int) -> None:
    """The original's argument errors."""
    if min_workers < 0:
        raise UsageError("min workers must be non-negative")
    if min_workers > max_workers:
        raise UsageError("min workers exceeds max workers")
    if max_workers < 1:
        raise UsageError("max workers must be at least 1")


@dataclass(frozen=True)
class Capacity:
    """How many workers of a definition the queue's cluster can run."""

    cluster: str
    worker_vcpus: int  # the definition's vCPUs
    region_vcpus: int  # the cluster's max vCPUs, per region
    regions: int  # the regions the queue's workers may go to
    busy_vcpus: int  # held by running jobs of the cluster's queues now

    @property
    def most(self) -> int:
        return self.regions * (self.region_vcpus // self.worker_vcpus)

    @property
    def free(self) -> int:
        return max(0, self.regions * self.region_vcpus - self.busy_vcpus) // self.worker_vcpus


def capacity(client: HostClient, queue_name: str, definition: str) -> Capacity:
    """Ask the host what the queue's cluster can run, and what its running jobs hold."""

    def spec(kind: str, name: str) -> dict[str, Any]:
        return dict(client.call("GET", f"/resources/{kind}/{quote(name, safe='')}")["spec"])

    queue_spec = spec("queues", queue_name)
    cluster = queue_spec["compute_environment"]
    cluster_spec = spec("clusters", cluster)
    regions = {r["name"] for r in client.list_resources("regions") if r["status"] == "ACTIVE"}
    if not queue_spec.get("automate_region_weights", True):
        weights = queue_spec.get("region_distribution_weights") or {}
        regions &= {name for name, weight in weights.items() if weight > 0}
    # what one job asking nothing (a pool's worker) takes: the definition's default share
    vcpus = {
        d["name"]: int(d["spec"].get("default_cpus") or d["spec"].get("vcpus", 1))
        for d in client.list_resources("definitions")
    }
    if definition not in vcpus:
        spec("definitions", definition)  # the host's own message: unknown, did you mean...
    on_cluster = [
        q["name"]
        for q in client.list_resources("queues")
        if q["spec"].get("compute_environment") == cluster
    ]
    busy = sum(
        vcpus.get(job["definition"], 1)
        for name in on_cluster
        for job in client.iter_jobs(queue=name, status=["Running"])
    )
    return Capacity(cluster, vcpus[definition], int(cluster_spec["max_vcpus"]), len(regions), busy)


def preflight(room: Capacity, min_workers: int, max_workers: int) -> None:
    """The original's check, and what it missed: an error when `min_workers` can never
    run at once, a warning when `max_workers` cannot, and one when running jobs hold
    vCPUs the workers need now."""
    what = f"cluster {room.cluster!r} runs at most {room.most} workers of {room.worker_vcpus} vCPUs"
    if min_workers > room.most:
        raise UsageError(f"min workers ({min_workers}) cannot fit: {what}")
    if max_workers > room.most:
        warnings.warn(f"max workers ({max_workers}) cannot fit: {what}", stacklevel=3)
    if room.free < min(max_workers, room.most):
        warnings.warn(
            f"{room.busy_vcpus} vCPUs of cluster {room.cluster!r} are held by running jobs:"
            f" {room.free} of the {max_workers} workers can start before they end",
            stacklevel=3,
        )


@dataclass(eq=False)
class _Worker:
    index: int  # its task's index in the pool's array
    job_id: int
    sock: socket.socket
    released: bool = False  # it hung up when released


class WorkerPool(concurrent.futures.Executor):
    """Workers that run this program's calls: ``submit``/``map`` as any Executor."""

    def __init__(
        self,
        min_workers: int,
        max_workers: int | None = None,
        *,
        queue: str,
        definition: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        host: str | None = None,
        address: str | None = None,
        bind: str | None = None,
        name: str = "hyper-pool",
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        """`max_workers` defaults to `min_workers`; `timeout` is how long workers may take
        to come, in seconds. Workers connect to `address` (default 127.0.0.1, when the
        host is on this machine; give this machine's address on the workers' network
        otherwise); the pool listens on `bind` (default: `address`) on a free port.
        `host`, `env`, `python` as for ``Executor``."""
        max_workers = min_workers if max_workers is None else max_workers
        check_sizes(min_workers, max_workers)
        if not timeout > 0:
            raise UsageError("timeout must be positive")
        self.min_workers, self.max_workers, self.timeout = min_workers, max_workers, timeout
        self.array_id = 0  # the pool's array job, once submitted
        self.address = ("", 0)  # where the pool listens for its workers, once it does
        self._host = host
        self._client = connect(host)
        self._lock = threading.Lock()  # guards the state below
        self._workers: dict[int, _Worker] = {}  # every worker that came, by task index
        self._live = 0  # those still connected
        self._gone: dict[int, dict[str, Any]] = {}  # tasks that ended without coming
        self._stragglers = 0
        self._launching = True
        self._judged = False
        self._tasks: SimpleQueue[tuple[Future[Any], bytes]] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._launched = threading.Event()
        self._closing = threading.Event()
        self._finish_lock = threading.Lock()
        self._finished = False
        self._package: str | None = None
        self._listener: socket.socket | None = None
        try:
            preflight(capacity(self._client, queue, definition), min_workers, max_workers)
            address = address or self._default_address()
            self._listener = socket.create_server((bind or address, 0))
            self._secret = secrets.token_bytes(32)
            self.address = (address, int(self._listener.getsockname()[1]))  # workers come here
            self._package = upload(self._client, payload.pool_package(*self.address, self._secret))
            settings = JobSettings(queue, definition, env=dict(env or {}), python=python)
            job = settings.submission(name, self._package, tasks=max_workers, collect=[])
            (self.array_id,) = self._client.submit([job])
        except BaseException:
            self._let_go()
            raise
        self._acceptor = threading.Thread(target=self._accept, name="hyper-pool", daemon=True)
        self._acceptor.start()

    def _default_address(self) -> str:
        from hyper.hosts import is_loopback
        from hyper.transport import is_local_url

        url = self._client.url
        if is_local_url(url) or is_loopback(urlsplit(url).hostname or ""):
            return "127.0.0.1"
        raise UsageError(
            f"the workers of host {self._client.host_name!r} run on other machines: give"
            " address=, this machine's address on their network"
        )

    @property
    def workers(self) -> int:
        """How many workers are connected now."""
        with self._lock:
            return self._live

    # launching ---------------------------------------------------------------------

    def _accept(self) -> None:
        client = connect(self._host)  # the launch's own connection
        try:
            self._take_workers(client)
        finally:
            try:
                self._end_launch(client)
            finally:
                client.close()
                self._launched.set()
                self._fail_if_workerless()

    def _take_workers(self, client: HostClient) -> None:
        """Take workers until all have come, the timeout passed, or no more can come."""
        assert self._listener is not None
        self._listener.settimeout(POLL_SECONDS)
        deadline = time.monotonic() + self.timeout
        next_look = time.monotonic() + HOST_POLL_SECONDS
        while not self._closing.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self._workers) + len(self._gone) >= self.max_workers:
                    return
            if time.monotonic() >= next_look:
                self._look_for_gone(client)
                next_look = time.monotonic() + HOST_POLL_SECONDS
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as error:  # out of file descriptors, say: take no more
                log.warning("hyper pool: cannot take more workers: %s", error)
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _look_for_gone(self, client: HostClient) -> None:
        try:
            ended = list(client.iter_jobs(array=self.array_id, status=FINISHED_STATES))
        except HyperError as error:  # the host may be back at the next look
            log.warning("hyper pool: cannot see its workers' jobs: %s", error)
            return
        with self._lock:
            for job in ended:
                if int(job["array_index"]) not in self._workers:
                    self._gone[int(job["array_index"])] = job

    def _end_launch(self, client: HostClient) -> None:
        with self._lock:
            self._launching = False
            came = set(self._workers)
            stragglers = [
                i for i in range(self.max_workers) if i not in came and i not in self._gone
            ]
            self._stragglers = len(stragglers)
        assert self._listener is not None
        self._listener.close()
        if stragglers:
            try:
                client.change("cancel", {"ids": [task_selector(self.array_id, stragglers)]})
            except HyperError as error:
                log.warning("hyper pool: cannot cancel the workers that did not come: %s", error)

    def wait_for_workers(self) -> int:
        """Wait until the pool has taken its workers; how many came. Fewer than
        `min_workers`: the pool is closed and PoolError raised; fewer than `max_workers`:
        a warning."""
        self._launched.wait()
        with self._lock:
            came, gone, judged = len(self._workers), list(self._gone.values()), self._judged
            self._judged = True
        if came < self.min_workers:
            why = self._why_missing(gone)
            self.shutdown(wait=True, cancel_futures=True)
            raise PoolError(
                f"Unable to launch the minimum number of workers: {came} of {self.min_workers}"
                f" connected{why}"
            )
        if came < self.max_workers and not judged:
            warnings.warn(f"Only managed to launch {came}/{self.max_workers} workers", stacklevel=2)
        return came

    def _why_missing(self, gone: list[dict[str, Any]]) -> str:
        said = []
        if self._stragglers:
            said.append(f"{self._stragglers} not started within {self.timeout:g} s, cancelled")
        if gone:
            first = how_it_ended(self._client, gone[0])
            said.append(f"{len(gone)} ended without connecting, as {first}")
        return f" ({'; '.join(said)})" if said else ""

    # serving ---------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        """One connection: the handshake, then calls until the pool is closed."""
        try:
            conn.settimeout(HANDSHAKE_SECONDS)
            hello = wire.accept_worker(conn, self._secret)
            index, job_id = int(hello["index"]), int(hello["job_id"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.info("hyper pool: refused a connection: %s", error)
            conn.close()
            return
        with self._lock:
            if not self._launching or index in self._workers or not 0 <= index < self.max_workers:
                conn.close()  # too late: its task is cancelled
                return
            worker = self._workers[index] = _Worker(index, job_id, conn)
            self._gone.pop(index, None)
            self._live += 1
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire.keep_alive(conn)
        try:
            self._work(worker)
        finally:
            with self._lock:
                self._live -= 1
            conn.close()
            self._fail_if_workerless()

    def _work(self, worker: _Worker) -> None:
        while (task := self._next_task()) is not None:
            future, call = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                wire.send_frame(worker.sock, call)
                outcome = wire.receive_frame(worker.sock)
            except OSError as error:
                future.set_exception(
                    RemoteError(
                        f"pool worker job {worker.job_id} was lost while running this call"
                        f" ({error})"
                    )
                )
                return
            payload.settle(future, outcome)
        with contextlib.suppress(OSError):
            wire.send_frame(worker.sock, wire.RELEASE)
            worker.sock.settimeout(RELEASE_SECONDS)
            worker.released = worker.sock.recv(1) == b""

    def _next_task(self) -> tuple[Future[Any], bytes] | None:
        """The next call to run; None once the pool is closing and none are left."""
        while True:
            try:
                return self._tasks.get(timeout=POLL_SECONDS)
            except Empty:
                if self._closing.is_set():
                    return None

    def _fail_if_workerless(self) -> None:
        """With no worker left and none to come, no call can run: say so at once."""
        with self._lock:
            if self._launching or self._live:
                return
        error = RemoteError(f"pool {self.array_id} has no workers left to run this call")
        while True:
            try:
                future, _ = self._tasks.get_nowait()
            except Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(error)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run fn(*args, **kwargs) on the next free worker."""
        if self._closing.is_set():
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        self._tasks.put((future, payload.pickle_call(fn, args, kwargs)))
        self._fail_if_workerless()
        return future

    # closing ---------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls. Workers finish the calls queued (all cancelled with
        `cancel_futures`), then are released; tasks that never came are cancelled.
        `wait` waits for all of it."""
        self._closing.set()
        if cancel_futures:
            with contextlib.suppress(Empty):
                while True:
                    self._tasks.get_nowait()[0].cancel()
        if wait:
            self._finish()
        else:
            threading.Thread(target=self._finish, name="hyper-pool-close", daemon=True).start()

    def _finish(self) -> None:
        with self._finish_lock:
            if self._finished:
                return
            self._acceptor.join()
            for thread in self._threads:
                thread.join()
            stuck = [str(w.job_id) for w in self._workers.values() if not w.released]
            if stuck:  # lost, or did not hang up: their jobs must not hold on to capacity
                try:
                    self._client.change("cancel", {"ids": stuck})
                except HyperError as error:
                    log.warning("hyper pool: cannot cancel workers %s: %s", stuck, error)
            self._let_go()
            self._finished = True

    def _let_go(self) -> None:
        """Give back what the pool holds here and on the host."""
        if self._listener is not None:
            self._listener.close()
        if self._package is not None:
            with contextlib.suppress(HyperError):
                self._client.delete_files(self._package)
        self._client.close()
