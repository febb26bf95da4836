"""Starting a worker agent process: the local launcher and joined machines both do it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerStart:
    url: str
    worker_id: str
    queue: str
    definition: str
    idle_seconds: float
    heartbeat_seconds: float
    patience_seconds: float
    lifetime_seconds: float | None = None
    region: str = ""
    self_fence: bool = True  # False: the host ends this worker's jobs itself (same machine)
    capacity: str = ""  # what it has on a machine that said its capacity (CPUS:MEM_MIB:GPUS)


def spawn_worker(start: WorkerStart, api_key: str, workers_dir: Path) -> subprocess.Popen[bytes]:
    """A worker in its own session and folder, logging to `worker.log` there. The API key
    and the host's URL travel in the environment, never on the command line."""
    folder = workers_dir / start.worker_id
    folder.mkdir(parents=True, exist_ok=True)
    # a host started from inside a job must not hand that job's worker id on: it marks
    # the processes to end when that worker dies
    env = {k: v for k, v in os.environ.items() if k != "HYPER_WORKER_ID"}
    env["HYPER_API_KEY"] = api_key
    env["HYPER_URL"] = start.url  # not on the command line, which every user can read
    command = [
        sys.executable, "-m", "hyper.worker",
        "--worker-id", start.worker_id,
        "--queue", start.queue,
        "--definition", start.definition,
        "--workdir", str(folder),
        "--idle-seconds", str(start.idle_seconds),
        "--heartbeat-seconds", str(start.heartbeat_seconds),
        "--patience-seconds", str(start.patience_seconds),
    ]  # fmt: skip
    if start.region:
        command += ["--region", start.region]
    if not start.self_fence:
        command.append("--host-fences")
    if start.capacity:
        command += ["--capacity", start.capacity]
    if start.lifetime_seconds:
        command += ["--lifetime-seconds", str(start.lifetime_seconds)]
    with open(folder / "worker.log", "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,
        )


def remove_ended_folders(workers_dir: Path, live: set[str], before: float) -> int:
    """Remove the folders of workers that are not `live` and were last written before
    `before` (their worker.log, and the spool a killed worker left): kept for as long as
    finished jobs are, then purged with them. Returns how many were removed."""
    removed = 0
    try:
        folders = [
            entry for entry in os.scandir(workers_dir) if entry.is_dir(follow_symlinks=False)
        ]
    except OSError:
        return 0
    for folder in folders:
        if folder.name in live:
            continue
        try:
            written = max(
                [folder.stat().st_mtime]
                + [entry.stat().st_mtime for entry in os.scandir(folder.path)]
            )
        except OSError:
            continue
        if written < before:
            shutil.rmtree(folder.path, ignore_errors=True)
            removed += 1
    return removed
