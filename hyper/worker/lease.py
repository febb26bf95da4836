"""Keeping a running job's lease: a thread of the worker that heartbeats and sends the
job's output, so that neither waits for the other, nor for the job.

The worker's main thread reads the job's pipes into the spool, enforces its time limit
and watches this thread's last renewal: nothing it does waits for the host. This thread
sends the spool's head in bounded pieces (each call renews the lease), at least every
heartbeat, and reports what it learns: a cancel, or that the lease is gone.

The time a renewal counts from is when its request was sent (the host cannot have set the
lease earlier), on a clock that runs while the machine sleeps (CLOCK_BOOTTIME).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hyper.client import HostClient, on_lambda
from hyper.errors import Conflict, HostFailure, HostUnreachable
from hyper.messages import OutputPiece, Progress
from hyper.worker.spool import Spool

SEND_BYTES = 1024 * 1024  # output per call, at most (about)
# output per call once the job has ended (its tail, sent before its report): fewer, larger
# calls, each a transaction on the host; escaped into JSON (a piece of both streams), at
# most 6 times as long, still within the host's 32 MiB request limit; not to an AWS host,
# whose requests API Gateway and Lambda keep within 6 MB
FLUSH_BYTES = 4 * 1024 * 1024
RAW_BYTES = 64 * 1024  # a piece of one stream this large goes as the body of its call


def clock() -> float:
    """Seconds on a clock that also runs while the machine is suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class LeaseKeeper(threading.Thread):
    def __init__(
        self,
        client: HostClient,
        worker_id: str,
        job_id: int,
        attempt: int,
        process_group: int,
        spool: Spool | None,
        heartbeat_seconds: float,
        metrics: Callable[[], dict[str, float] | None],
        chores: Callable[[HostClient], None] = lambda client: None,
        mark: Path | None = None,
    ) -> None:
        super().__init__(name=f"lease-{job_id}.{attempt}", daemon=True)
        self.client = client
        self.worker_id, self.job_id, self.attempt = worker_id, job_id, attempt
        self.process_group = process_group
        self.spool = spool
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics
        self.chores = chores  # other calls to make while the job runs (earlier reports)
        self.mark = mark  # a file touched at each renewal, for the machine's node to watch
        self.renewed = clock()  # the claim's lease counts from before this
        self.cancel = threading.Event()
        self.lost = threading.Event()  # the host refused the lease: the job is not ours
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._first_wait = heartbeat_seconds

    def start_after(self, elapsed: float) -> None:
        """Start the thread for a job that has run `elapsed` seconds: its first call is
        due one heartbeat after the job started. A job that ends sooner needs no thread:
        its claim's lease covers it, and its output goes with its final report (short
        jobs, batched, stay cheap)."""
        self._first_wait = max(0.0, self.heartbeat_seconds - elapsed)
        self.start()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self.ident is not None:  # a keeper never started has nothing to wait for
            super().join(timeout)

    def run(self) -> None:
        if self._halt.wait(self._first_wait):
            return
        first = True
        while not self._halt.is_set():
            output = self.spool.take(SEND_BYTES) if self.spool is not None else []
            if not self._send(output, self.metrics()):
                self._wake.wait(min(1.0, self.heartbeat_seconds))
                continue
            if first:
                first = False
                self.chores(self.client)
            if self.lost.is_set():
                return
            if not (self.spool is not None and self.spool.pending()):
                self._wake.wait(self.heartbeat_seconds)

    def _send(
        self, output: list[OutputPiece], metrics: dict[str, float] | None, requeue: bool = True
    ) -> bool:
        """One progress call; True when the host answered (the lease is renewed or gone).
        Output the host did not take goes back to the spool for the next call."""
        body: Progress = {
            "attempt": self.attempt,
            "output": output,
            "metrics": metrics,
            "process_group": self.process_group,  # so its host can end it if this worker dies
        }
        sent = clock()
        try:
            if len(output) == 1 and metrics is None and len(output[0]["text"]) >= RAW_BYTES:
                # bulk output of one stream: as the body itself, not escaped into JSON
                answer = self.client.progress_output(
                    self.worker_id,
                    self.job_id,
                    self.attempt,
                    output[0]["kind"],
                    output[0]["text"].encode(),
                    self.process_group,
                )
            else:
                answer = self.client.progress(self.worker_id, self.job_id, body)
        except Conflict:
            self.lost.set()
            return True
        except (HostUnreachable, HostFailure):
            if self.spool is not None and output and requeue:
                self.spool.unsend()
            return False
        self.renewed = sent
        if self.mark is not None:
            with contextlib.suppress(OSError):
                os.utime(self.mark)
        if answer.get("cancel"):
            self.cancel.set()
        return True

    def flush(self, patience: float, carry: int = 0) -> list[OutputPiece] | None:
        """Once the job has ended (this thread stopped): the rest of its output. When all
        of it fits in `carry` bytes it is returned, for the final report to take (a short
        job costs no call of its own); else it is sent here, trying for up to `patience`
        seconds while the host does not answer, and nothing is returned. None when the
        lease is gone (the output is then dropped)."""
        if self.spool is None:
            return None if self.lost.is_set() else []
        pieces = self.spool.rest(SEND_BYTES if on_lambda(self.client.url) else FLUSH_BYTES)
        first = next(pieces, [])
        second = next(pieces, None)
        if second is None and sum(len(c["text"].encode()) for c in first) <= carry:
            return None if self.lost.is_set() else first
        for piece in itertools.chain([first], [second] if second else [], pieces):
            deadline = time.monotonic() + patience
            while True:
                if self.lost.is_set():
                    return None
                if self._send(piece, None, requeue=False):
                    break
                if time.monotonic() > deadline:
                    return []  # the report will say how the job ended, without this
                time.sleep(1.0)
        return None if self.lost.is_set() else []
