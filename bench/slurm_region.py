"""Short jobs per second through a Slurm region of hyper, beside the same jobs as one plain
Slurm array, on the Slurm that .ci/start-slurm starts; and how many Slurm jobs hyper used.

    .venv/bin/python bench/slurm_region.py [--jobs N] [--pilots N] [--no-plain]

It starts a host of its own in a temporary HYPER_HOME and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def sh(*argv: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr}")
    return done.stdout


def squeue_count(name: str) -> int:
    out = subprocess.run(["squeue", "-h", "-r", f"--name={name}", "-o", "%i"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return len(out.split())


def through_hyper(jobs: int, pilots: int, home: Path) -> tuple[float, int, int]:
    from hyper import config, hosts, local_host
    from hyper.host_settings import HostSettings

    os.environ["HYPER_HOME"] = str(home)
    os.environ.pop("HYPER_HOST", None)
    env = dict(os.environ)
    host = hosts.create_host(hosts.HostRequest(name="bench"), start=False)
    assert host.data_dir
    local_host.start(host)
    try:
        sh("hyper", "regions", "add-region", "--name", "hpc", "--kind", "slurm", "--yes",
           "--max-pilots", str(pilots), "--pilot-idle-seconds", "5", env=env)  # fmt: skip
        sh("hyper", "clusters", "add-cluster", "--name", "big", "--max-vcpus", "1000", "--yes",
           env=env)  # fmt: skip
        sh("hyper", "queues", "add-queue", "--name", "hq", "--compute-environment", "big",
           "--manual-region-weights", "-rw", "hpc=1", "--yes", env=env)  # fmt: skip
        script = home / "short.sh"
        script.write_text("#!/bin/bash\ntrue\n")
        start = time.monotonic()
        job = sh("qsub", "-q", "hq", "-d", "sample-def-1", "-a", f"1-{jobs}", str(script),
                 env=env).strip()  # fmt: skip
        while json.loads(sh("qstat", "-i", job, "--json", env=env))["job"]["status"] not in (
            "Successful",
            "Failed",
            "Cancelled",
        ):
            time.sleep(0.2)
        seconds = time.monotonic() - start
        status = json.loads(sh("qstat", "-i", job, "--json", env=env))["job"]["status"]
        assert status == "Successful", status
        data = Path(config.load_host("bench").data_dir or "")
        with sqlite3.connect(data / HostSettings.load(data).database.name) as db:
            elements = db.execute("SELECT count(*) FROM workers WHERE region = 'hpc'").fetchone()
        arrays = (data / "host.log").read_text().count("pilots as slurm job")
        return seconds, arrays, int(elements[0])
    finally:
        local_host.stop(config.load_host("bench"))


def plain_array(jobs: int, folder: Path) -> float:
    start = time.monotonic()
    subprocess.run(["sbatch", "--parsable", "--job-name=plain-array", f"--array=1-{jobs}",
                    "--output=/dev/null", "--mem=64M", "--wrap=true"],
                   check=True, capture_output=True, cwd=folder)  # fmt: skip
    while squeue_count("plain-array"):
        time.sleep(0.2)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pilots", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true", help="skip the plain Slurm array")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slurm-bench-") as tmp:
        home = Path(tmp)
        hyper_s, arrays, elements = through_hyper(args.jobs, args.pilots, home)
        array_s = 0.0 if args.no_plain else plain_array(args.jobs, home)
    plain = {"seconds": round(array_s, 2), "jobs_per_s": round(args.jobs / array_s, 1),
             "slurm_jobs": args.jobs} if array_s else None  # fmt: skip
    print(json.dumps({
        "jobs": args.jobs,
        "hyper_region": {"seconds": round(hyper_s, 2), "jobs_per_s": round(args.jobs / hyper_s, 1),
                         "slurm_arrays": arrays, "slurm_jobs": elements},
        "plain_slurm_array": plain,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
