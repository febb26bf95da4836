"""What a running job uses: its processes' memory and CPU time, sampled, and the rule
that ends a job over the memory it asked for where no cgroup holds it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from hyper.worker.reaper import JobCgroup

METRICS_SECONDS = 5.0  # how often a running job's metrics go with its heartbeat
MEMORY_CHECK_SECONDS = 0.25  # how often the worker looks at a job's memory (no cgroup)


def metrics_every(
    pid: int, seconds: float, *, below: bool = False
) -> Callable[[], dict[str, float] | None]:
    """The job's metrics, at most once every `seconds` (None in between)."""
    last = [time.monotonic()]

    def sample() -> dict[str, float] | None:
        if time.monotonic() - last[0] < seconds:
            return None
        last[0] = time.monotonic()
        return metrics(pid, below=below)

    return sample


def metrics(pid: int, *, host: bool = True, below: bool = False) -> dict[str, float] | None:
    """The memory and CPU time of `pid` and the processes below it (`below`: those only,
    not `pid`, a job's keeper); with `host`, the machine's too."""
    try:
        import psutil

        root = psutil.Process(pid)
        processes = [*([] if below else [root]), *root.children(recursive=True)]
        rss = 0
        cpu = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
        if not host:
            return {"cpu_seconds": round(cpu, 3), "rss_mib": round(rss / 2**20, 2)}
        memory = psutil.virtual_memory()
        return {
            "cpu_seconds": round(cpu, 3),
            "rss_mib": round(rss / 2**20, 2),
            "processes": float(len(processes)),
            "host_cpu_count": float(psutil.cpu_count() or 0),
            "host_cpu_percent": psutil.cpu_percent(interval=None),
            "host_memory_total_mib": round(memory.total / 2**20, 1),
            "host_memory_used_mib": round(memory.used / 2**20, 1),
            "host_memory_percent": memory.percent,
        }
    except Exception:  # a process that just ended has no metrics; that is fine
        return None


class MemoryWatch:
    """A job's memory and CPU time while it runs. Where its cgroup holds its memory
    (memory.max) the kernel ends it and this only tells why; elsewhere this ends it when
    its resident memory (all its processes) goes above what it asked for, looked at every
    MEMORY_CHECK_SECONDS (a job may go above it for that long)."""

    def __init__(
        self, pid: int, limit_mib: int, cgroup: JobCgroup | None, held: bool, below: bool = False
    ) -> None:
        self.pid, self.limit_mib, self.cgroup, self.held = pid, limit_mib, cgroup, held
        self.below = below  # `pid` is the job's keeper: its processes are below it
        self.peak_mib = 0.0
        self.cpu_seconds = 0.0
        self._last = time.monotonic()

    def over(self) -> str | None:
        """Why the job must end now (None while it is within its memory)."""
        if time.monotonic() - self._last < MEMORY_CHECK_SECONDS:
            return None
        self._last = time.monotonic()
        sample = metrics(self.pid, host=False, below=self.below)
        if sample is None:
            return None
        self.peak_mib = max(self.peak_mib, sample["rss_mib"])
        self.cpu_seconds = max(self.cpu_seconds, sample["cpu_seconds"])
        if not self.held and sample["rss_mib"] > self.limit_mib:
            return (
                f"out of memory: it used {sample['rss_mib']:.0f} MiB, above the"
                f" {self.limit_mib} MiB it asked for"
            )
        return None

    def killed_by_kernel(self) -> bool:
        return self.held and self.cgroup is not None and self.cgroup.oom_kills() > 0

    def reason(self) -> str:
        return f"out of memory: it reached the {self.limit_mib} MiB it asked for"

    def usage(self) -> dict[str, float] | None:
        """What it used, as sampled while it ran (None when it ended before a sample)."""
        if not (self.peak_mib or self.cpu_seconds):
            return None
        return {"peak_rss_mib": round(self.peak_mib, 1), "cpu_seconds": round(self.cpu_seconds, 2)}
