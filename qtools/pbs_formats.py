"""qstat's PBS Pro and Torque shapes: the status table, full output, JSON and DSV.

The table (``qstat ID...``, ``qstat -u USER``, ``qstat -x``)::

    Job ID                    Name             User            Time Use S Queue
    ------------------------- ---------------- --------------- -------- - -----
    12                        STDIN            ann             00:00:03 R batch

Full output (``qstat -f``): ``Job Id: ID`` then ``    attribute = value`` lines,
a blank line after each job. ``-F json`` gives PBS Pro's
``{"timestamp": ..., "pbs_version": ..., "pbs_server": ..., "Jobs": {"ID": {...}}}``
and ``-F dsv`` one line a job, ``Job Id: ID|attribute=value|...``.

Job ids are printed as qsub printed them (no ``.server`` suffix); states and exit
statuses come from ``qtools.states``.
"""

from __future__ import annotations

import _socket  # socket.gethostname itself; the socket module costs 2 ms to import
import json
import time

from hyper.version import __version__
from qtools import states
from qtools.dialect import clock, ctime, display_id, elapsed, requested, user

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs qstat's start 3 ms
if TYPE_CHECKING:
    from typing import Any


def server_name() -> str:
    return _socket.gethostname().split(".")[0] or "localhost"


def pbs_id(job: dict[str, Any]) -> str:
    """The id as qsub printed it: 12, or 12[] for a whole array, 12[3] for a task."""
    if job.get("kind") == "array":
        return f"{job['id']}[]"
    if job.get("array_id") is not None:
        return f"{job['array_id']}[{job['array_index']}]"
    return str(job["id"])


def attributes(job: dict[str, Any], server: str) -> dict[str, Any]:
    """A job's attributes under PBS Pro's names, in the order qstat -f prints them."""
    owner = f"{user()}@{server}"
    options = job.get("options") or {}
    said = states.words(job)
    cpus, mem, gpus = requested(job)
    out: dict[str, Any] = {
        "Job_Name": job["name"],
        "Job_Owner": owner,
    }
    if job.get("started"):
        out["resources_used"] = {
            "cput": clock(elapsed(job)),
            "walltime": clock(elapsed(job)),
            "ncpus": cpus,
        }
        used = job.get("used") or {}
        if used.get("peak_rss_mib"):
            out["resources_used"]["mem"] = f"{int(used['peak_rss_mib'] * 1024)}kb"
        if "cpu_seconds" in used:
            out["resources_used"]["cput"] = clock(used["cpu_seconds"])
    out["job_state"] = said.pbs
    out["queue"] = job["queue"]
    out["server"] = server
    created = job.get("created")
    out["ctime"] = ctime(created)
    stdout = options.get("stdout")
    stderr = options.get("stderr")
    directory = job.get("submit_dir") or ""
    out["Error_Path"] = f"{server}:{stderr or stdout or directory}"
    if job.get("worker_id"):
        out["exec_host"] = f"{server}/0"
    out["Hold_Types"] = "u" if job["status"] == "Held" else "n"
    out["Join_Path"] = "oe" if options.get("join") or (stdout and not stderr) else "n"
    out["Keep_Files"] = "n"
    out["Mail_Points"] = "a"
    out["mtime"] = ctime(job.get("ended") or job.get("started") or created)
    out["Output_Path"] = f"{server}:{stdout or directory}"
    out["Priority"] = job.get("priority") or 0
    out["qtime"] = ctime(created)
    out["Rerunable"] = "True" if job.get("retries") else "False"
    limits: dict[str, Any] = {"ncpus": cpus, "nodect": 1}
    if mem:
        limits["mem"] = f"{mem}mb"
    if gpus:
        limits["ngpus"] = gpus
    if job.get("time_limit"):
        limits["walltime"] = clock(job["time_limit"])
    out["Resource_List"] = limits
    if job.get("started"):
        out["stime"] = ctime(job["started"])
    out["substate"] = {"Q": 10, "H": 20, "R": 42, "F": 92}.get(said.pbs, 10)
    variables = {"PBS_O_WORKDIR": directory, "PBS_O_QUEUE": job["queue"]}
    variables.update(job.get("env") or {})
    out["Variable_List"] = variables
    if job.get("reason"):
        out["comment"] = job["reason"]
    out["etime"] = ctime(created)
    out["run_count"] = job.get("attempt") or 0
    status = states.pbs_exit_status(job)
    if status is not None:
        out["Exit_status"] = status
    if job.get("kind") == "array":
        out["array"] = "True"
        out["array_indices_submitted"] = job.get("spec", "")
        counts = job.get("counts") or {}
        queued = sum(counts.get(s, 0) for s in ("Waiting", "Blocked", "Held"))
        out["array_state_count"] = (
            f"Queued:{queued} Running:{counts.get('Running', 0)} Exiting:0 "
            f"Expired:{sum(counts.get(s, 0) for s in states.FINISHED)}"
        )
    elif job.get("array_id") is not None:
        out["array_id"] = f"{job['array_id']}[]"
        out["array_index"] = job["array_index"]
    out["Submit_arguments"] = job["name"]
    if job.get("ended"):
        out["obittime"] = ctime(job["ended"])
    return out


def _flat(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """Attributes as qstat -f prints them: Resource_List.walltime = 01:00:00."""
    rows = []
    for key, value in attrs.items():
        if key == "Variable_List":
            rows.append((key, ",".join(f"{k}={v}" for k, v in value.items())))
        elif isinstance(value, dict):
            rows += [(f"{key}.{sub}", str(inner)) for sub, inner in value.items()]
        else:
            rows.append((key, str(value)))
    return rows


def full_text(jobs: list[dict[str, Any]]) -> str:
    server = server_name()
    out = []
    for job in jobs:
        out.append(f"Job Id: {pbs_id(job)}\n")
        out += [f"    {key} = {value}\n" for key, value in _flat(attributes(job, server))]
        out.append("\n")
    return "".join(out)


def full_json(jobs: list[dict[str, Any]]) -> str:
    server = server_name()
    document = {
        "timestamp": int(time.time()),
        "pbs_version": f"hyper {__version__}",
        "pbs_server": server,
        "Jobs": {pbs_id(job): attributes(job, server) for job in jobs},
    }
    return json.dumps(document, indent=4) + "\n"


def full_dsv(jobs: list[dict[str, Any]], delimiter: str = "|") -> str:
    server = server_name()
    lines = []
    for job in jobs:
        cells = [f"Job Id: {pbs_id(job)}"]
        cells += [f"{key}={value}" for key, value in _flat(attributes(job, server))]
        lines.append(delimiter.join(cells) + "\n")
    return "".join(lines)


TABLE_TITLES = ("Job ID", "Name", "User", "Time Use", "S", "Queue")
TABLE_WIDTHS = (25, 16, 15, 8, 1, 5)


def table(jobs: list[dict[str, Any]], header: bool = True) -> str:
    """Torque's (and PBS Pro's) default qstat table: one word per column, names cut
    to 16 characters and their spaces written as '_', so that `split()` reads it."""
    rows = []
    if header:
        rows.append(_row(TABLE_TITLES))
        rows.append(" ".join("-" * width for width in TABLE_WIDTHS))
    for job in jobs:
        name = "_".join(job["name"].split())[:16]
        cells = (
            pbs_id(job),
            name,
            user()[:15],
            clock(elapsed(job)) if job.get("started") else "0",
            states.words(job).pbs,
            job["queue"],
        )
        rows.append(_row(cells))
    return "".join(row.rstrip() + "\n" for row in rows)


ALTERNATE_TITLES = ("Job ID", "Username", "Queue", "Jobname", "SessID", "NDS", "TSK",
                    "Memory", "Time", "S", "Time")  # fmt: skip
ALTERNATE_WIDTHS = (15, 8, 8, 10, 6, 3, 3, 6, 5, 1, 5)


def alternate_table(jobs: list[dict[str, Any]], header: bool = True) -> str:
    """PBS's alternative display (qstat -a, and -u USER): one word per column, so that
    FireWorks' PBS adapter finds each job's S and Queue where the heading's words say."""
    rows = []
    if header:
        above = ("", "", "", "", "", "", "", "Req'd", "Req'd", "", "Elap")
        rows += [_cells(above, ALTERNATE_WIDTHS), _cells(ALTERNATE_TITLES, ALTERNATE_WIDTHS)]
        rows.append(" ".join("-" * width for width in ALTERNATE_WIDTHS))
    for job in jobs:
        cpus, mem, _ = requested(job)
        limit = job.get("time_limit")
        cells = (
            pbs_id(job),
            user()[:8],
            job["queue"],
            "_".join(job["name"].split())[:10],
            "--",
            "1",
            str(cpus),
            f"{mem}mb" if mem else "--",
            clock(limit)[:5] if limit else "--",
            states.words(job).pbs,
            clock(elapsed(job))[:5] if job.get("started") else "--",
        )
        rows.append(_cells(cells, ALTERNATE_WIDTHS))
    return "".join(row.rstrip() + "\n" for row in rows)


def _cells(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    return " ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))


def _row(cells: tuple[str, ...]) -> str:
    return _cells(cells, TABLE_WIDTHS)


def ids_only(jobs: list[dict[str, Any]]) -> str:
    return "".join(f"{display_id(job)}\n" for job in jobs)
