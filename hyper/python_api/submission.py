"""The jobs hyper's Python API submits, and what it asks the host about them.

Each job runs a short shell script that finds hyper's Python on the worker and runs
``python -m hyper.python_api.remote`` in the job's unpacked package. That Python is
``$HYPER_PYTHON`` when the job or its definition sets it; otherwise the interpreter
running the job's worker agent (``$HYPER_WORKER_PYTHON``), which has hyper and
cloudpickle by construction; otherwise ``python3``. The submitter's own ``sys.executable`` is not
used: it need not exist where the job runs.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hyper.client import HostClient
from hyper.config import HostConfig
from hyper.jobs import FINISHED
from hyper.jobspec import MAX_NAME_LENGTH

log = logging.getLogger("hyper")

FINISHED_STATES = sorted(status.value for status in FINISHED)

REMOTE_SCRIPT = """#!/bin/sh
# hyper's Python API: run the pickled calls of this job's package, its working directory.
# hyper's Python: $HYPER_PYTHON, else the one running this job's worker agent.
exec "${HYPER_PYTHON:-${HYPER_WORKER_PYTHON:-python3}}" -m hyper.python_api.remote
"""


def connect(host: str | None) -> HostClient:
    """A client of the saved host `host` (default: the host in use); a new user's first
    call creates and starts the local host, as their first qsub would."""
    from hyper.hosts import connect as connect_host
    from hyper.hosts import first_use_note

    def first_use(created: HostConfig) -> None:
        log.warning("hyper: %s", first_use_note(created))

    return connect_host(host, on_first_use=first_use)


def job_name(text: str) -> str:
    """`text` made a valid job name: no '/' or control characters, not only dots."""
    name = re.sub(r"[/\x00-\x1f\x7f]", "_", text)[:MAX_NAME_LENGTH]
    return name if name.strip(".") else "python"


@dataclass(frozen=True)
class JobSettings:
    """How the jobs of an Executor or a pool run: what a qsub would say."""

    queue: str
    definition: str
    retries: int = 0
    time_limit: int | None = None  # seconds
    env: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None  # hyper's Python on the workers ($HYPER_PYTHON)
    cpus: int | None = None  # each job's request (hyper.capacity; None: the default)
    mem: str | int | None = None  # a size such as "4G"; a number is MiB
    gpus: int | None = None

    def resources(self) -> dict[str, int]:
        """The jobs' request as the host takes it (checked here: a bad one is UsageError)."""
        from hyper import capacity

        body: dict[str, int] = {}
        if self.cpus is not None:
            body["cpus"] = max(1, capacity.parse_count(self.cpus, "cpus", capacity.MAX_CPUS))
        if self.mem is not None:
            body["mem_mib"] = capacity.parse_size(str(self.mem), "M", "mem")
        if self.gpus is not None:
            body["gpus"] = capacity.parse_count(self.gpus, "gpus", capacity.MAX_GPUS)
        return body

    def submission(
        self, name: str, package: str, *, tasks: int | None, collect: list[str]
    ) -> dict[str, Any]:
        """A job (tasks None) or an array of `tasks` tasks indexed from 0, running the
        package `package`."""
        env = dict(self.env)
        if self.python:
            env["HYPER_PYTHON"] = self.python
        job: dict[str, Any] = {
            "name": job_name(name),
            "queue": self.queue,
            "definition": self.definition,
            "script": REMOTE_SCRIPT,
            "retries": self.retries,
            "env": env,
            "submit_dir": os.getcwd(),
            "time_limit": self.time_limit,
            "package": package,
            "collect": collect,
        }
        if tasks is not None:
            job["array"] = {"spec": f"0-{tasks - 1}"}
        resources = self.resources()
        if resources:
            job["resources"] = resources
        return job


def upload(client: HostClient, package: bytes) -> str:
    """Put a package in the host's file store; its key."""
    key = f"python/{uuid.uuid4().hex}.tar.gz"
    client.put_file(key, package)
    return key


def task_selector(array_id: int, indices: Iterable[int]) -> str:
    """Tasks of an array as one id the host understands: ``12[0-4,7]``."""
    spans: list[list[int]] = []
    for index in sorted(indices):
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return f"{array_id}[{text}]"


def log_text(client: HostClient, job_id: int, kinds: Iterable[str]) -> str:
    """A job's whole log of those kinds, as text."""
    parts, after = [], 0
    while True:
        page = client.read_log(job_id, kinds=list(kinds), after=after)
        parts += [entry["text"] for entry in page["entries"]]
        if not page["entries"]:
            return "".join(parts)
        after = page["next"]


def how_it_ended(client: HostClient, job: dict[str, Any]) -> str:
    """A job's end in one line: its state, exit code, reason and the last line it wrote
    to stderr."""
    said = job.get("reason") or f"exit code {job.get('exit_code')}"
    lines = log_text(client, int(job["id"]), ["STDERR"]).strip().splitlines()
    last = f": {lines[-1].strip()}" if lines else ""
    return f"job {job['id']} ended {job['status']} ({said}){last}"
