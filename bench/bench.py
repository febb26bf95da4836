"""hyper's benchmarks, beside its peers, in one run.

    bench/run [--reps 3] [--short-jobs 2000] [--bulk 100000] [--queue-size 1000000] [--quick]

Cases (each hyper figure is measured in the same run as the peers', interleaved,
`--reps` times; the table shows medians and the ratio hyper / peer):

  B1 submit latency: one `qsub` as a whole new process (median of 30), against
     `python -c pass` by the same interpreter and `sbatch --wrap true`.
  B2 bulk submit: an array of `--bulk` tasks, from command start to id printed,
     against `sbatch --array` and HyperQueue's submit.
  B3 short-job throughput: `--short-jobs` jobs whose script is a bare `true`,
     from submit to all done, against the machine's own limit (xargs -P cores),
     GNU parallel, a Slurm array and HyperQueue.
  B4 qsub to the job's first line of output on an idle host (a worker kept warm,
     and a cold start that spawns one), against Slurm.
  B5 a queue holding `--queue-size` jobs: qstat counts, first page, daemon memory.

The peers are driven by ../shared/bench/peers-bench.sh (set them up with
peers-setup.sh first); a peer that is not installed is left out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PEERS = ROOT.parent / "shared" / "bench" / "peers-bench.sh"
RESULTS = ROOT / "bench" / "results"

TARGETS = {
    "B1": "qsub <= 3 x python -c pass",
    "B2": ">= 100,000 tasks/s accepted, ahead of every peer",
    "B3": ">= 0.8 x the fork/exec limit, ahead of every peer",
    "B4": "< 50 ms",
    "B5": "counts < 0.2 s, first page < 0.5 s, daemon < 300 MB",
}


class Host:
    """A fresh local host in a private HYPER_HOME, driven through the real commands."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="hyper-bench-"))
        self.work = self.home / "work"
        self.work.mkdir()
        self.env = {**os.environ, "HYPER_HOME": str(self.home)}
        self.run("hyper", "hosts", "create-host", "--yes")
        (self.work / "true.sh").write_text("true\n")
        (self.work / "hello.sh").write_text("echo hello\n")

    def run(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], env=self.env, cwd=self.work,
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def client(self) -> Any:
        """The library's client for this host (imported here, as a user's program would)."""
        os.environ["HYPER_HOME"] = str(self.home)
        from hyper.hosts import connect

        return connect("local")

    def daemon_rss_mib(self) -> float:
        import json

        state = json.loads((self.home / "data/hosts/local/daemon.json").read_text())
        status = Path(f"/proc/{state['pid']}/status").read_text()
        kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return kib / 1024

    def close(self) -> None:
        workers = self.worker_pids()
        self.run("hyper", "hosts", "delete-host", "--yes", check=False)
        for pid in workers:  # they would wait out their patience for the host to return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(self.home, ignore_errors=True)

    def worker_pids(self) -> list[int]:
        """The worker processes of this host (their folders are under its home)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"hyper.worker" in command and str(self.home).encode() in command:
                found.append(int(entry.name))
        return found


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def peers(phases: str, n: int) -> dict[str, float]:
    """Figures from the shared peers script: {"name": value}."""
    if not PEERS.exists():
        return {}
    env = {**os.environ, "PHASES": phases}
    done = subprocess.run(
        ["bash", str(PEERS), str(n)], env=env, capture_output=True, text=True, timeout=3600
    )
    figures = {}
    for line in done.stdout.splitlines():
        match = re.fullmatch(r"([\w.]+): ([0-9.]+) \S+", line.strip())
        if match:
            figures[match.group(1)] = float(match.group(2))
    return figures


Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def b1(host: Host, figures: dict[str, list[float]]) -> None:
    qsub, floor = [], []
    for _ in range(30):
        qsub.append(timed(lambda: host.run("qsub", "-h", *Q, "true.sh")) * 1000)
        floor.append(
            timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)) * 1000
        )
    host.run("qdel", "-f", "Held", "-q", "sample-queue-1")
    figures["B1 hyper qsub (ms)"].append(statistics.median(qsub))
    figures["B1 python -c pass (ms)"].append(statistics.median(floor))
    slurm = peers("sbatch1", 1)
    if "slurm.sbatch_single.median" in slurm:
        figures["B1 slurm sbatch (ms)"].append(slurm["slurm.sbatch_single.median"])


def b2(
    host: Host, figures: dict[str, list[float]], bulk: int, found: dict[str, float], n: int
) -> None:
    """The peers' arrays are the ones B3 runs (they must run what they accept, so theirs
    stay B3-sized): accepted tasks per second from their submit times."""
    seconds = timed(lambda: host.run("qsub", "-h", "-a", f"1-{bulk}", *Q, "true.sh"))
    host.run("qdel", "-f", "Held", "-q", "sample-queue-1")
    figures["B2 hyper tasks accepted/s"].append(bulk / seconds)
    for key, label in ((f"slurm.array.n{n}.submit", "B2 slurm array tasks accepted/s"),
                       (f"hq.n{n}.submit", "B2 hyperqueue tasks accepted/s")):  # fmt: skip
        if found.get(key):
            figures[label].append(n / (found[key] / 1000))


def b3(host: Host, figures: dict[str, list[float]], n: int) -> dict[str, float]:
    seconds = timed(lambda: host.run("qsub", "--wait", "-a", f"1-{n}", *Q, "true.sh"))
    figures["B3 hyper jobs/s"].append(n / seconds)
    # the machine's limit for the same work: the same script, as many lanes as cores
    lanes = str(os.cpu_count() or 1)
    same = timed(
        lambda: subprocess.run(
            f"seq {n} | xargs -P{lanes} -n1 bash true.sh", shell=True, cwd=host.work, check=True
        )
    )
    figures["B3 same script by xargs /s"].append(n / same)
    found = peers("raw parallel array hq", n)
    for key, label in (
        (f"raw.xargs_P2.n{n}.rate", "B3 fork/exec limit (xargs -P2) /s"),
        (f"parallel.j2.n{n}.rate", "B3 GNU parallel -j2 jobs/s"),
        (f"slurm.array.n{n}.e2e_rate", "B3 slurm array jobs/s"),
        (f"hq.n{n}.e2e_rate", "B3 hyperqueue jobs/s"),
    ):
        if key in found:
            figures[label].append(found[key])
    return found


def first_output(host: Host) -> float:
    client = host.client()
    start = time.perf_counter()
    job_id = host.run("qsub", *Q, "hello.sh").strip()
    while True:
        page = client.read_log(int(job_id), kinds=["STDOUT"], wait=10)
        if page["entries"]:
            return time.perf_counter() - start


def b4(host: Host, figures: dict[str, list[float]], idle: float) -> None:
    first_output(host)  # a worker is now warm, for `idle` seconds
    figures["B4 hyper warm worker (ms)"].append(first_output(host) * 1000)
    time.sleep(idle + 2)  # the worker has left: the next job starts one
    figures["B4 hyper cold start (ms)"].append(first_output(host) * 1000)


def b5(host: Host, figures: dict[str, list[float]], size: int) -> None:
    chunk = 100_000
    for start in range(0, size, chunk):
        host.run("qsub", "-h", "-a", f"1-{min(chunk, size - start)}", *Q, "true.sh")
    client = host.client()
    figures["B5 counts (s)"].append(timed(lambda: client.count_jobs(queue="sample-queue-1")))
    figures["B5 first page (s)"].append(
        timed(lambda: client.list_jobs(queue="sample-queue-1", limit=100, collapse=True))
    )
    figures["B5 qstat command (s)"].append(
        timed(lambda: host.run("qstat", "-q", "sample-queue-1", "--limit", "100"))
    )
    figures["B5 daemon memory (MiB)"].append(host.daemon_rss_mib())
    host.run("qdel", "-f", "Held", "-q", "sample-queue-1")


def table(figures: dict[str, list[float]]) -> list[str]:
    medians = {name: statistics.median(values) for name, values in figures.items() if values}
    lines = ["| case | median | runs |", "|---|---|---|"]
    for name, value in medians.items():
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
        lines.append(f"| {name} | {shown} | {len(figures[name])} |")
    lines += ["", "| ratio | value | target |", "|---|---|---|"]

    def ratio(label: str, a: str, b: str, target: str) -> None:
        if a in medians and b in medians and medians[b]:
            lines.append(f"| {label} | {medians[a] / medians[b]:.2f} | {target} |")

    ratio("B1 qsub / python -c pass", "B1 hyper qsub (ms)", "B1 python -c pass (ms)", "<= 3")
    ratio("B1 qsub / sbatch", "B1 hyper qsub (ms)", "B1 slurm sbatch (ms)", "reported")
    for peer in ("slurm array", "hyperqueue"):
        ratio(f"B2 hyper / {peer}", "B2 hyper tasks accepted/s", f"B2 {peer} tasks accepted/s",
              "> 1")  # fmt: skip
    ratio("B3 hyper / fork limit", "B3 hyper jobs/s", "B3 fork/exec limit (xargs -P2) /s", ">= 0.8")
    ratio("B3 hyper / same script by xargs", "B3 hyper jobs/s", "B3 same script by xargs /s",
          "reported")  # fmt: skip
    for peer in ("GNU parallel -j2", "slurm array", "hyperqueue"):
        ratio(f"B3 hyper / {peer}", "B3 hyper jobs/s", f"B3 {peer} jobs/s", "> 1")
    return lines


def chart(figures: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "B3 short jobs per second": [k for k in figures if k.startswith("B3")],
        "B2 tasks accepted per second": [k for k in figures if k.startswith("B2")],
        "B1 submit latency (ms)": [k for k in figures if k.startswith("B1")],
    }
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 9))
    for ax, (title, keys) in zip(axes, groups.items(), strict=True):
        values = [statistics.median(figures[k]) for k in keys if figures[k]]
        labels = [k.split(" ", 1)[1] for k in keys if figures[k]]
        colors = ["#d95f02" if "hyper " in f" {label}" else "#7570b3" for label in labels]
        ax.barh(labels, values, color=colors)
        ax.set_title(title)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--short-jobs", type=int, default=2000, help="B3 size")
    parser.add_argument("--bulk", type=int, default=100_000, help="B2 size")
    parser.add_argument("--queue-size", type=int, default=1_000_000, help="B5 size")
    parser.add_argument("--quick", action="store_true", help="one repetition, small sizes")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.short_jobs, args.bulk, args.queue_size = 1, 500, 20_000, 100_000
    figures: dict[str, list[float]] = defaultdict(list)
    host = Host()
    started = time.time()
    try:
        for rep in range(args.reps):
            print(f"# repetition {rep + 1} of {args.reps}", file=sys.stderr)
            b1(host, figures)
            found = b3(host, figures, args.short_jobs)
            b2(host, figures, args.bulk, found, args.short_jobs)
            b4(host, figures, idle=10.0)
        b5(host, figures, args.queue_size)
    finally:
        host.close()
    lines = table(figures)
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    png = RESULTS / f"{stamp}.png"
    chart(figures, png)
    header = [
        f"# hyper benchmarks, {stamp}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.platform()},"
        f" Python {platform.python_version()}. Took {time.time() - started:.0f} s;"
        f" {args.reps} repetitions, B3 {args.short_jobs} jobs, B2 {args.bulk} tasks,"
        f" B5 {args.queue_size} jobs.",
        "",
        "Targets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()),
        "",
    ]
    (RESULTS / f"{stamp}.md").write_text(
        "\n".join([*header, *lines, "", f"![chart]({png.name})", ""])
    )
    print(f"# wrote {RESULTS / f'{stamp}.md'} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
