"""hyper's benchmarks, beside its peers, in one run.

    bench/run [--reps 3] [--short-jobs 2000] [--bulk 100000] [--queue-size 1000000] [--quick]
              [--cases B1,B2,...]

Cases (each hyper figure is measured in the same run as the peers', interleaved,
`--reps` times; the table shows medians and the ratio hyper / peer):

  B1 command latency: `qsub -h`, `qstat`, `qdel` and the dialects' `sbatch`, `squeue`
     and `bsub`, each as a whole new process (medians of 30, interleaved), against
     `python -c pass` by the same interpreter, and Slurm's own `sbatch --wrap true`.
  B2 bulk submit: an array of `--bulk` tasks, and one of `--short-jobs` tasks, from
     command start to id printed, against one job's submit, `sbatch --array` and
     HyperQueue's submit.
  B3 short-job throughput: `--short-jobs` jobs whose script is a bare `true`,
     from submit to all done, against the same script run by `xargs -P<cores>`, the
     machine's fork/exec limit, GNU parallel, a Slurm array and HyperQueue.
  B4 qsub to the job's first line of output on an idle host (a worker kept warm,
     and a cold start that spawns one), against Slurm.
  B5 a queue holding `--queue-size` jobs: qstat counts, first page, daemon memory.
  B6 a job writing 100 MB to stdout (-o FILE), against the same script writing to a
     file itself, both from submit to done; its -o file must hold all of it and qlog
     the kept part (the first and last half of the output limit, and the note between).
  B7 a deep queue (`--queue-size` waiting jobs, bench/deep.py): a claim and a scheduler
     tick at p99, one queue and state listed, on the store itself; and `qstat -q Q -f
     Held` as a command, on the B5 host (whose jobs are held).

`--cases` runs some of them (`--cases B1`: command latency alone, a minute); such a
partial run prints its table and verdicts and writes no results. Each target is printed
as met, or with its gap. Figures from a shared machine are
noisy: the load average is written beside them.

The peers are driven by ../shared/bench/peers-bench.sh (set them up with
peers-setup.sh first); a peer that is not installed is left out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


def _peers_script() -> Path:
    """../shared/bench/peers-bench.sh from the checkout or any folder above it."""
    for folder in ROOT.parents:
        found = folder / "shared" / "bench" / "peers-bench.sh"
        if found.exists():
            return found
    return ROOT.parent / "shared" / "bench" / "peers-bench.sh"


PEERS = _peers_script()
RESULTS = ROOT / "bench" / "results"

TARGETS = {
    "B1": "qsub, qstat, qdel and the dialect commands <= 3 x python -c pass",
    "B2": "an array accepted in the time of one job, ahead of Slurm's array submit",
    "B3": ">= 0.8 x the same script run by xargs -P<cores>, ahead of every peer",
    "B4": "< 50 ms",
    "B5": "counts < 0.2 s, first page < 0.5 s, daemon < 300 MB",
    "B6": "100 MB to stdout <= 1.5 x the same to a file; all in -o, the kept part in qlog",
    "B7": "1,000,000 waiting: claim and tick < 10 ms at p99, qstat of a queue and state < 0.5 s",
}
MIB = 2**20
BIG_BYTES = 100_000_000


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
    """Each command as a whole new process, interleaved with `python -c pass`."""
    slurm_dir = host.run("hyper", "dialect-path", "slurm").strip()
    lsf_dir = host.run("hyper", "dialect-path", "lsf").strip()
    held = host.run("qsub", "-h", *Q, "true.sh").strip()
    commands: dict[str, list[str]] = {
        "qsub": [str(BIN / "qsub"), "-h", *Q, "true.sh"],
        "qstat": [str(BIN / "qstat"), "-q", "sample-queue-1", "--limit", "20"],
        "qdel": [str(BIN / "qdel"), held],  # the same held job: cancelled once, then refused
        "sbatch": [f"{slurm_dir}/sbatch", "-H", "-p", "sample-queue-1", "--wrap", "true"],
        "squeue": [f"{slurm_dir}/squeue", "-p", "sample-queue-1"],
        "bsub": [f"{lsf_dir}/bsub", "-H", "-q", "sample-queue-1", "true"],
    }
    times: dict[str, list[float]] = {name: [] for name in ["python", *commands]}

    def once(argv: list[str]) -> float:
        return timed(
            lambda: subprocess.run(
                argv, env=host.env, cwd=host.work, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, check=False,
            )
        ) * 1000  # fmt: skip

    for _ in range(30):
        times["python"].append(once([sys.executable, "-c", "pass"]))
        for name, argv in commands.items():
            times[name].append(once(argv))
    host.run("qdel", "-f", "Held", "-q", "sample-queue-1")
    figures["B1 python -c pass (ms)"].append(statistics.median(times.pop("python")))
    for name, values in times.items():
        figures[f"B1 hyper {name} (ms)"].append(statistics.median(values))
    slurm = peers("sbatch1", 1)
    if "slurm.sbatch_single.median" in slurm:
        figures["B1 slurm sbatch (ms)"].append(slurm["slurm.sbatch_single.median"])


def b2(
    host: Host, figures: dict[str, list[float]], bulk: int, found: dict[str, float], n: int
) -> None:
    """An array's submit, from command start to id printed, against one job's (measured
    the same way, just before) and against the peers' submit of their B3 arrays (they
    must run what they accept, so theirs stay B3-sized; hyper's of that size is timed too)."""
    single = statistics.median(
        timed(lambda: host.run("qsub", "-h", *Q, "true.sh")) for _ in range(5)
    )
    seconds = timed(lambda: host.run("qsub", "-h", "-a", f"1-{bulk}", *Q, "true.sh"))
    same = timed(lambda: host.run("qsub", "-h", "-a", f"1-{n}", *Q, "true.sh"))
    host.run("qdel", "-f", "Held", "-q", "sample-queue-1")
    figures["B2 hyper one job submit (ms)"].append(single * 1000)
    figures[f"B2 hyper array of {bulk} submit (ms)"].append(seconds * 1000)
    figures[f"B2 hyper array of {n} submit (ms)"].append(same * 1000)
    figures["B2 hyper tasks accepted/s"].append(bulk / seconds)
    if found.get(f"slurm.array.n{n}.submit"):
        figures[f"B2 slurm array of {n} submit (ms)"].append(found[f"slurm.array.n{n}.submit"])
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
    figures["B7 qstat -q Q -f STATE command (s)"].append(
        timed(lambda: host.run("qstat", "-q", "sample-queue-1", "-f", "Held", "--limit", "100"))
    )
    figures["B5 daemon memory (MiB)"].append(host.daemon_rss_mib())
    host.run("qdel", "-f", "Held", "-q", "sample-queue-1")


def b6(host: Host, figures: dict[str, list[float]]) -> None:
    """100 MB to stdout (into -o), against the same script writing the file itself."""
    make = f"head -c {BIG_BYTES} /dev/zero | tr '\\0' x | fold -w 99"
    (host.work / "big-stdout.sh").write_text(f"{make}\n")
    (host.work / "big-file.sh").write_text(f"{make} > big-by-itself.out\n")
    to_file = timed(lambda: host.run("qsub", "--wait", *Q, "big-file.sh"))
    job_id = ""

    def to_stdout() -> None:
        nonlocal job_id
        job_id = host.run("qsub", "--wait", "-o", "big-stdout.out", *Q, "big-stdout.sh").strip()

    through = timed(to_stdout)
    whole = (host.work / "big-stdout.out").stat().st_size
    expected = (host.work / "big-by-itself.out").stat().st_size
    kept = len(host.run("qlog", "-t", "STDOUT", job_id).encode())
    for name in ("big-stdout.out", "big-by-itself.out"):
        (host.work / name).unlink(missing_ok=True)
    figures["B6 hyper 100 MB to a file (s)"].append(to_file)
    figures["B6 hyper 100 MB to stdout (s)"].append(through)
    figures["B6 -o file holds all of it (1 = yes)"].append(float(whole == expected))
    figures["B6 qlog holds (MiB)"].append(kept / MIB)


def b7(host: Host, figures: dict[str, list[float]], size: int) -> None:
    """The store and the scheduler under `size` waiting jobs (bench/deep.py), in-process."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "deep.py"), "--size", str(size)],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    found = {}
    for line in done.stdout.splitlines():
        match = re.fullmatch(r"([\w.]+): ([0-9.e+-]+) \S*", line.strip())
        if match:
            found[match.group(1)] = float(match.group(2))
    for key, label in (
        ("deep.claim.p99_ms", "B7 claim p99 (ms)"),
        ("deep.tick.p99_ms", "B7 scheduler tick p99 (ms)"),
        ("deep.qstat_page.median_s", "B7 one queue and state, first page (s)"),
        ("deep.qstat_counts.median_s", "B7 one queue and state, counts (s)"),
    ):
        if key in found:
            figures[label].append(found[key])


def table(figures: dict[str, list[float]]) -> tuple[list[str], list[str]]:
    """The figures (medians), then each target: met, or its gap."""
    medians = {name: statistics.median(values) for name, values in figures.items() if values}
    lines = ["| case | median | runs |", "|---|---|---|"]
    for name, value in medians.items():
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
        lines.append(f"| {name} | {shown} | {len(figures[name])} |")
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    verdicts: list[str] = []

    def check(label: str, value: float | None, limit: float, *, most: bool, unit: str = "") -> None:
        """`most`: value must be <= limit; else >= limit."""
        if value is None:
            lines.append(f"| {label} | not measured | - |")
            return
        met = value <= limit if most else value >= limit
        gap = "met" if met else f"NOT met (gap {abs(value - limit):.3g}{unit})"
        lines.append(f"| {label} | {value:.3g}{unit} | {gap} |")
        verdicts.append(f"{label}: {value:.3g}{unit} -> {gap}")

    def ratio(a: str, b: str) -> float | None:
        return medians[a] / medians[b] if a in medians and b in medians and medians[b] else None

    floor = "B1 python -c pass (ms)"
    for name in ("qsub", "qstat", "qdel", "sbatch", "squeue", "bsub"):
        check(
            f"B1 {name} / python -c pass <= 3",
            ratio(f"B1 hyper {name} (ms)", floor),
            3,
            most=True,
            unit="x",
        )
    arrays = [k for k in medians if k.startswith("B2 hyper array of") and k.endswith("(ms)")]
    for key in arrays:
        size = key.split()[4]
        check(
            f"B2 array of {size} / one job <= 1.5",
            ratio(key, "B2 hyper one job submit (ms)"),
            1.5,
            most=True,
            unit="x",
        )
        peer = f"B2 slurm array of {size} submit (ms)"
        if peer in medians:
            check(
                f"B2 array of {size}: slurm's submit / hyper's >= 1",
                ratio(peer, key),
                1,
                most=False,
                unit="x",
            )
    for peer in ("slurm array", "hyperqueue"):
        check(
            f"B2 tasks accepted/s, hyper's --bulk array / {peer}'s B3 one >= 1",
            ratio("B2 hyper tasks accepted/s", f"B2 {peer} tasks accepted/s"),
            1,
            most=False,
            unit="x",
        )
    check(
        "B3 hyper / same script by xargs >= 0.8",
        ratio("B3 hyper jobs/s", "B3 same script by xargs /s"),
        0.8,
        most=False,
        unit="x",
    )
    for peer in ("GNU parallel -j2", "slurm array", "hyperqueue"):
        check(
            f"B3 hyper / {peer} > 1",
            ratio("B3 hyper jobs/s", f"B3 {peer} jobs/s"),
            1,
            most=False,
            unit="x",
        )
    check(
        "B4 warm worker < 50 ms",
        medians.get("B4 hyper warm worker (ms)"),
        50,
        most=True,
        unit=" ms",
    )
    check("B5 counts < 0.2 s", medians.get("B5 counts (s)"), 0.2, most=True, unit=" s")
    check("B5 first page < 0.5 s", medians.get("B5 first page (s)"), 0.5, most=True, unit=" s")
    check("B5 daemon < 300 MiB", medians.get("B5 daemon memory (MiB)"), 300, most=True, unit=" MiB")
    check(
        "B6 stdout / file <= 1.5",
        ratio("B6 hyper 100 MB to stdout (s)", "B6 hyper 100 MB to a file (s)"),
        1.5,
        most=True,
        unit="x",
    )
    check(
        "B6 -o file holds all of it",
        medians.get("B6 -o file holds all of it (1 = yes)"),
        1,
        most=False,
    )
    check(
        "B6 qlog holds the kept part (>= 32 MiB)",
        medians.get("B6 qlog holds (MiB)"),
        32,
        most=False,
        unit=" MiB",
    )
    check("B7 claim p99 < 10 ms", medians.get("B7 claim p99 (ms)"), 10, most=True, unit=" ms")
    check(
        "B7 tick p99 < 10 ms", medians.get("B7 scheduler tick p99 (ms)"), 10, most=True, unit=" ms"
    )
    for key in ("B7 one queue and state, first page (s)", "B7 qstat -q Q -f STATE command (s)"):
        check(f"{key.removesuffix(' (s)')} < 0.5 s", medians.get(key), 0.5, most=True, unit=" s")
    return lines, verdicts


def chart(figures: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "B3 short jobs per second": [k for k in figures if k.startswith("B3")],
        "B2 tasks accepted per second": [k for k in figures if k.startswith("B2") and "/s" in k],
        "B2 submit, command start to id (ms)": [
            k for k in figures if k.startswith("B2") and "(ms)" in k
        ],
        "B1 command latency (ms)": [k for k in figures if k.startswith("B1")],
        "B6 100 MB of output (s)": [k for k in figures if k.startswith("B6") and "(s)" in k],
    }
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 14))
    for ax, (title, keys) in zip(axes, groups.items(), strict=True):
        values = [statistics.median(figures[k]) for k in keys if figures[k]]
        labels = [k.split(" ", 1)[1] for k in keys if figures[k]]
        colors = ["#d95f02" if "hyper " in f" {label}" else "#7570b3" for label in labels]
        ax.barh(labels, values, color=colors)
        ax.set_title(title)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def free_stamp(day: str) -> str:
    """The day, or DAY-runN for a later run that day: an earlier run's results are kept."""
    stamp, run = day, 1
    while (RESULTS / f"{stamp}.md").exists():
        run += 1
        stamp = f"{day}-run{run}"
    return stamp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--short-jobs", type=int, default=2000, help="B3 size")
    parser.add_argument("--bulk", type=int, default=100_000, help="B2 size")
    parser.add_argument("--queue-size", type=int, default=1_000_000, help="B5 and B7 size")
    parser.add_argument("--quick", action="store_true", help="one repetition, small sizes")
    parser.add_argument(
        "--cases",
        default=",".join(TARGETS),
        help="the cases to run (default all); a partial run writes no results, only prints",
    )
    args = parser.parse_args()
    cases = {case.strip().upper() for case in args.cases.split(",")}
    if not cases <= set(TARGETS):
        parser.error(f"--cases: use some of {', '.join(TARGETS)}")
    if args.quick:
        args.reps, args.short_jobs, args.bulk, args.queue_size = 1, 500, 20_000, 100_000
    figures: dict[str, list[float]] = defaultdict(list)
    loads = [os.getloadavg()[0]]
    host = Host()
    started = time.time()
    try:
        for rep in range(args.reps):
            print(f"# repetition {rep + 1} of {args.reps}", file=sys.stderr)
            if "B1" in cases:
                b1(host, figures)
            found = b3(host, figures, args.short_jobs) if "B3" in cases else {}
            if "B2" in cases:
                b2(host, figures, args.bulk, found, args.short_jobs)
            if "B4" in cases:
                b4(host, figures, idle=10.0)
            if "B6" in cases:
                b6(host, figures)
            loads.append(os.getloadavg()[0])
        if "B5" in cases:
            b5(host, figures, args.queue_size)
    finally:
        host.close()
    if "B7" in cases:
        b7(host, figures, args.queue_size)
    loads.append(os.getloadavg()[0])
    lines, verdicts = table(figures)
    if cases != set(TARGETS):  # only the rows of the cases run
        lines = [line for line in lines if "not measured" not in line]
    print("\n".join(lines))
    if cases != set(TARGETS):
        print(f"# load average (1 min) at the start and after each repetition: {loads}")
        print("\n".join(f"# {line}" for line in verdicts), file=sys.stderr)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = free_stamp(datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    png = RESULTS / f"{stamp}.png"
    chart(figures, png)
    header = [
        f"# hyper benchmarks, {stamp}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.platform()},"
        f" Python {platform.python_version()}. Took {time.time() - started:.0f} s;"
        f" {args.reps} repetitions, B3 {args.short_jobs} jobs, B2 {args.bulk} tasks,"
        f" B5/B7 {args.queue_size} jobs. Load average (1 min) at the start and after each"
        f" repetition: {', '.join(f'{load:.1f}' for load in loads)}"
        " (the machine is shared: medians, and noisy).",
        "",
        "Targets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()),
        "",
    ]
    (RESULTS / f"{stamp}.md").write_text(
        "\n".join([*header, *lines, "", f"![chart]({png.name})", ""])
    )
    # every figure of every repetition, for a reader who wants more than the medians
    (RESULTS / f"{stamp}.json").write_text(json.dumps(figures, indent=1) + "\n")
    print("\n".join(f"# {line}" for line in verdicts), file=sys.stderr)
    print(f"# wrote {RESULTS / f'{stamp}.md'} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
