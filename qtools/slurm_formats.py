"""Slurm's job fields and output formats, as ``qtools.slurm``'s commands print them:
squeue's ``-o`` and ``-O`` columns, and the ``--json`` documents of squeue and sacct."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from hyper.errors import UsageError
from qtools import dialect, states

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and pathlib cost a command's start
if TYPE_CHECKING:
    from typing import Any

MIN_JOB_AGE = 300.0  # seconds a finished job stays in squeue -t all (Slurm's MinJobAge)


def slurm_id(job: dict[str, Any]) -> str:
    if job.get("kind") == "array":
        return f"{job['id']}_[{job.get('spec', '')}]"
    return dialect.display_id(job)


def _minutes(seconds: int | None) -> str:
    if not seconds:
        return "UNLIMITED"
    return _duration(seconds)


def _duration(seconds: float) -> str:
    """Slurm's [D-]HH:MM:SS (squeue's TIME drops leading zero fields: 0:05, 1:02:03)."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def _short_duration(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, minutes, secs = rest // 3600, rest // 60 % 60, rest % 60
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def _maxrss(job: dict[str, Any]) -> str:
    """sacct's MaxRSS: the peak resident memory the worker saw (empty when not known)."""
    peak = (job.get("used") or {}).get("peak_rss_mib")
    return f"{int(peak * 1024)}K" if peak else ""


def _output_path(fields: Fields, pattern: str | None) -> str:
    """A job's -o or -e file as scontrol shows it: its patterns filled in for the job (or
    the task), under its working directory. An array as a whole keeps %a."""
    if not pattern:
        return ""
    from hyper.jobspec import expand_output_pattern

    job = fields.job
    if job.get("kind") == "array":
        pattern = pattern.replace("%a", "%%a")  # its tasks' own
    path = expand_output_pattern(
        pattern, job_id=job["id"], array_id=job.get("array_id") or job["id"],
        index=job.get("array_index"), name=job["name"], user=dialect.user(),
    )  # fmt: skip
    return os.path.join(job.get("submit_dir") or "", path)


class Fields:
    """A job's values under Slurm's names, as squeue and sacct print them."""

    def __init__(self, job: dict[str, Any], server: str) -> None:
        self.job = job
        self.server = server
        self.said = states.words(job)
        self.options = job.get("options") or {}

    def value(self, name: str) -> str:
        field = FIELDS.get(name)
        if field is None:
            raise UsageError(f'Invalid field requested: "{name}"')
        return field(self)


# each field of a job by its Slurm name; made once, not once per job listed
FIELDS: dict[str, Callable[[Fields], str]] = {
    "jobid": lambda f: slurm_id(f.job),
    "jobidraw": lambda f: str(f.job["id"]),
    "jobarrayid": lambda f: slurm_id(f.job),
    "arrayjobid": lambda f: str(
        f.job["id"] if f.job.get("array_id") is None else f.job["array_id"]
    ),
    "arraytaskid": lambda f: "N/A" if f.job.get("array_id") is None else str(f.job["array_index"]),
    "jobname": lambda f: f.job["name"],
    "name": lambda f: f.job["name"],
    "partition": lambda f: f.job["queue"],
    "account": lambda f: "",
    "alloccpus": lambda f: str(dialect.requested(f.job)[0]),
    "ncpus": lambda f: str(dialect.requested(f.job)[0]),
    "nnodes": lambda f: "1",
    "numnodes": lambda f: "1",
    "state": lambda f: f.said.slurm,
    "statecompact": lambda f: f.said.slurm_compact,
    "exitcode": lambda f: states.slurm_exit_code(f.job),
    "derivedexitcode": lambda f: states.slurm_exit_code(f.job),
    "elapsed": lambda f: _duration(dialect.elapsed(f.job)),
    "elapsedraw": lambda f: str(int(dialect.elapsed(f.job))),
    "timeused": lambda f: _short_duration(dialect.elapsed(f.job)),
    "timelimit": lambda f: _minutes(f.job.get("time_limit")),
    "submit": lambda f: dialect.iso(f.job.get("created")),
    "submittime": lambda f: dialect.iso(f.job.get("created")),
    "start": lambda f: dialect.iso(f.job.get("started")),
    "starttime": lambda f: dialect.iso(f.job.get("started")),
    "end": lambda f: dialect.iso(f.job.get("ended")),
    "endtime": lambda f: dialect.iso(f.job.get("ended")),
    "user": lambda f: dialect.user(),
    "username": lambda f: dialect.user(),
    "uid": lambda f: str(os.getuid()),
    "nodelist": lambda f: f.server if f.job.get("started") else "None assigned",
    "reason": lambda f: f.said.slurm_reason,
    "workdir": lambda f: f.job.get("submit_dir") or "",
    "stdout": lambda f: _output_path(f, f.options.get("stdout")),
    "stderr": lambda f: _output_path(f, f.options.get("stderr") or f.options.get("stdout")),
    "priority": lambda f: str(f.job.get("priority") or 0),
    "qos": lambda f: "normal",
    "comment": lambda f: f.job.get("reason") or "",
    "reqmem": lambda f: _memory(f.job),
    "maxrss": lambda f: _maxrss(f.job),
    "cluster": lambda f: "hyper",
    "timeleft": lambda f: _time_left(f.job),
    "minmemory": lambda f: _memory(f.job),
    "tres-per-node": lambda f: _gres(f.job),
    "gres": lambda f: _gres(f.job),
}


def _memory(job: dict[str, Any]) -> str:
    """The memory it asked for, in MB (sacct's ReqMem, squeue's %m)."""
    return f"{dialect.requested(job)[1] or 0}M"


def _time_left(job: dict[str, Any]) -> str:
    """squeue's %L: the time limit less what the job has run, UNLIMITED without one."""
    limit = job.get("time_limit")
    if not limit:
        return "UNLIMITED"
    return _short_duration(max(0.0, limit - dialect.elapsed(job)))


def _gres(job: dict[str, Any]) -> str:
    """squeue's %b: the generic resources it asked for, GPUs here (N/A without)."""
    gpus = dialect.requested(job)[2]
    return f"gres/gpu:{gpus}" if gpus else "N/A"


SQUEUE_DEFAULT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"


PERCENT = {
    "i": "jobid",
    "A": "arrayjobid",
    "a": "arraytaskid",
    "F": "arrayjobid",
    "K": "arraytaskid",
    "j": "name",
    "u": "user",
    "t": "statecompact",
    "T": "state",
    "M": "timeused",
    "l": "timelimit",
    "D": "nnodes",
    "C": "ncpus",
    "P": "partition",
    "q": "qos",
    "r": "reason",
    "V": "submittime",
    "S": "starttime",
    "e": "endtime",
    "Z": "workdir",
    "N": "nodelist",
    "p": "priority",
    "U": "uid",
    "o": "name",
    "k": "comment",
    "Q": "priority",
    "L": "timeleft",
    "m": "minmemory",
    "b": "tres-per-node",
}


PERCENT_TITLES = {
    "i": "JOBID",
    "A": "JOBID",
    "a": "TASK_ID",
    "F": "ARRAY_JOB_ID",
    "K": "ARRAY_TASK_ID",
    "j": "NAME",
    "u": "USER",
    "t": "ST",
    "T": "STATE",
    "M": "TIME",
    "l": "TIME_LIMIT",
    "D": "NODES",
    "C": "CPUS",
    "P": "PARTITION",
    "q": "QOS",
    "r": "REASON",
    "R": "NODELIST(REASON)",
    "V": "SUBMIT_TIME",
    "S": "START_TIME",
    "e": "END_TIME",
    "Z": "WORK_DIR",
    "N": "NODELIST",
    "p": "PRIORITY",
    "U": "UID",
    "o": "COMMAND",
    "k": "COMMENT",
    "Q": "PRIORITY",
    "L": "TIME_LEFT",
    "m": "MIN_MEMORY",
    "b": "TRES_PER_NODE",
}


FORMAT_TITLES = {
    "jobarrayid": "JOBID",
    "jobid": "JOBID",
    "statecompact": "ST",
    "username": "USER",
    "timeused": "TIME",
    "name": "NAME",
    "numnodes": "NODES",
    "reasonlist": "NODELIST(REASON)",
    "timeleft": "TIME_LEFT",
    "minmemory": "MIN_MEMORY",
    "tres-per-node": "TRES_PER_NODE",
}


Cell = tuple[str, int | None, bool, Callable[[Fields], str]]  # title, width, right, value


def percent_format(spec: str) -> list[Cell | str]:
    """squeue -o: `%[.][size]type` fields and the text between them."""
    out: list[Cell | str] = []
    for match in re.finditer(r"%(\.?)([0-9]*)([a-zA-Z%])|([^%]+)", spec):
        if match.group(4) is not None:
            out.append(match.group(4))
            continue
        right, size, letter = match.group(1) == ".", match.group(2), match.group(3)
        if letter == "%":
            out.append("%")
            continue
        value: Callable[[Fields], str]
        if letter == "R":
            value = _reason_list
        elif letter in PERCENT:
            value = _getter(PERCENT[letter])
        else:
            raise UsageError(f"invalid output format: %{letter}")
        out.append((PERCENT_TITLES.get(letter, letter), int(size) if size else None, right, value))
    return out


def _reason_list(fields: Fields) -> str:
    """%R: the node a running job runs on, or why a job is not running."""
    if fields.job.get("started") and not states.finished(fields.job):
        return fields.server
    return f"({fields.said.slurm_reason})"


PROBE = {"status": "Waiting", "id": 0, "name": "", "queue": ""}


def _getter(name: str) -> Callable[[Fields], str]:
    return lambda fields: fields.value(name)


def long_format(spec: str) -> list[Cell | str]:
    """squeue -O: `Field[:[.][size]]` joined by commas; 20 characters by default."""
    out: list[Cell | str] = []
    for item in spec.split(","):
        name, _, size = item.strip().partition(":")
        if not name:
            continue
        key = name.lower()
        if key == "reasonlist":
            value: Callable[[Fields], str] = _reason_list
        else:
            value = _getter(key)
            Fields(PROBE, "").value(key)  # refuses a field it does not know
        right = size.startswith(".")
        width = int(size.lstrip(".")) if size.lstrip(".").isdigit() else 20
        title = FORMAT_TITLES.get(key, key.upper())
        out.append((title, width, right, value))
        out.append(" ")
    return out


def render(cells: list[Cell | str], jobs: list[dict[str, Any]], header: bool) -> str:
    server = server_name()
    rows = []
    if header:
        rows.append(_line(cells, lambda cell: cell[0]))
    for job in jobs:
        fields = Fields(job, server)
        rows.append(_line(cells, lambda cell, f=fields: cell[3](f)))  # type: ignore[misc]
    return "".join(row.rstrip() + "\n" for row in rows)


def _line(cells: list[Cell | str], text: Callable[[Cell], str]) -> str:
    out = []
    for cell in cells:
        if isinstance(cell, str):
            out.append(cell)
            continue
        value = text(cell)
        width, right = cell[1], cell[2]
        if width is not None:
            value = value[:width]
            value = value.rjust(width) if right else value.ljust(width)
        out.append(value)
    return "".join(out)


def server_name() -> str:
    import _socket  # socket.gethostname itself; the socket module costs 2 ms to import

    return _socket.gethostname().split(".")[0] or "localhost"


def _number(value: float | int | None) -> dict[str, Any]:
    return {"set": value is not None, "infinite": False, "number": int(value or 0)}


def json_document(jobs: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """Slurm's --json shape (data_parser 0.0.40), with the fields tools read."""
    server = server_name()
    out = []
    for job in jobs:
        said = states.words(job)
        code, _, signal = states.slurm_exit_code(job).partition(":")
        finished = states.finished(job)
        array = job.get("array_id")
        options = job.get("options") or {}
        status = (
            "SUCCESS"
            if finished and code == "0" and signal == "0"
            else ("SIGNALED" if signal != "0" else "ERROR" if finished else "PENDING")
        )
        out.append(
            {
                "job_id": int(job["id"]),
                "name": job["name"],
                "job_state": [said.slurm],
                "state": {"current": [said.slurm], "reason": said.slurm_reason},
                "state_reason": said.slurm_reason,
                "partition": job["queue"],
                "user_name": dialect.user(),
                "account": "",
                "array_job_id": _number(array if array is not None else 0),
                "array_task_id": _number(job.get("array_index")),
                "exit_code": {
                    "status": [status],
                    "return_code": _number(int(code) if finished else None),
                    "signal": {"id": _number(int(signal) if signal != "0" else None), "name": ""},
                },
                "derived_exit_code": {"status": [status], "return_code": _number(int(code))},
                "submit_time": _number(job.get("created")),
                "start_time": _number(job.get("started")),
                "end_time": _number(job.get("ended")),
                "time": {
                    "submission": int(job.get("created") or 0),
                    "start": int(job.get("started") or 0),
                    "end": int(job.get("ended") or 0),
                    "elapsed": int(dialect.elapsed(job)),
                    "limit": _number((job.get("time_limit") or 0) // 60 or None),
                },
                "time_limit": _number((job.get("time_limit") or 0) // 60 or None),
                "priority": _number(job.get("priority") or 0),
                "current_working_directory": job.get("submit_dir") or "",
                "working_directory": job.get("submit_dir") or "",
                "standard_output": options.get("stdout") or "",
                "standard_error": options.get("stderr") or "",
                "nodes": server if job.get("started") else "",
                "comment": job.get("reason") or "",
            }
        )
    return {
        "jobs": out,
        "meta": {"plugin": {"type": "hyper", "name": command}, "command": [command]},
        "errors": [],
        "warnings": [],
    }
