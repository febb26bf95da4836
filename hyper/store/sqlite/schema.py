"""The SQLite store's tables, and how their rows become records."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from hyper.jobs import (
    UNFINISHED,
    JobStatus,
    task_script,
)
from hyper.store import rules
from hyper.store.base import (
    Fits,
    JobFilter,
    JobRecord,
    WorkflowRecord,
)

# the unfinished jobs, in the words of the partial index that holds them by queue and id
# (jobs_unfinished): SQLite uses it for a query only when the query says exactly this
UNFINISHED_TERM = "status IN ({})".format(", ".join(f"'{s.value}'" for s in UNFINISHED))

SCHEMA_VERSION = 6
UPGRADABLE = (5,)  # older schemas this one upgrades in place

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
    log TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
-- an array: its tasks are jobs rows; `made` of them are written so far (the first ones),
-- `plan` makes the rest (NULL once all are made: hyper.store.sqlite.tasks)
CREATE TABLE IF NOT EXISTS arrays (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, queue TEXT NOT NULL, definition TEXT NOT NULL,
    script TEXT NOT NULL, env TEXT NOT NULL, submit_dir TEXT, retries INTEGER NOT NULL,
    priority INTEGER NOT NULL, time_limit INTEGER, options TEXT NOT NULL,
    size INTEGER NOT NULL, cap INTEGER, spec TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0, ok INTEGER NOT NULL DEFAULT 0,
    bad INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    made INTEGER NOT NULL DEFAULT 0, plan TEXT
);
CREATE INDEX IF NOT EXISTS arrays_by_queue ON arrays (queue);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, array_id INTEGER, array_index INTEGER,
    name TEXT NOT NULL, queue TEXT NOT NULL, definition TEXT NOT NULL,
    script TEXT, env TEXT, params TEXT, submit_dir TEXT,
    status TEXT NOT NULL, retries INTEGER NOT NULL, retries_left INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, exit_code INTEGER, reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, worker_id TEXT, lease_until REAL,
    priority INTEGER NOT NULL DEFAULT 0, time_limit INTEGER, options TEXT,
    deps_left INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, started REAL, ended REAL
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (status, queue, definition, priority DESC, id);
CREATE INDEX IF NOT EXISTS jobs_by_queue ON jobs (queue, id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, id);  -- qstat -f STATE, page by page
-- squeue, qstat of a queue's unfinished jobs: a page without walking those that ended
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (queue, id) WHERE {unfinished};
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs (name);
CREATE INDEX IF NOT EXISTS jobs_by_array ON jobs (array_id, array_index);
CREATE INDEX IF NOT EXISTS jobs_by_ended ON jobs (ended);  -- throughput, on the dashboard
-- pages of single jobs (array_id NULL) or of one array's tasks, by id, without a sort
CREATE INDEX IF NOT EXISTS jobs_by_array_id ON jobs (array_id);
-- counts per (queue, definition, array, status), so that qstat's totals and the scheduler's
-- demand never scan the jobs (array_id 0: jobs outside arrays); submits add theirs in bulk,
-- a trigger follows every change of state
CREATE TABLE IF NOT EXISTS job_counts (
    queue TEXT NOT NULL, definition TEXT NOT NULL, array_id INTEGER NOT NULL,
    status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (queue, definition, array_id, status)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_counts_by_array ON job_counts (array_id);
CREATE TRIGGER IF NOT EXISTS jobs_counted_on_update AFTER UPDATE OF status ON jobs
WHEN OLD.status != NEW.status BEGIN
    UPDATE job_counts SET n = n - 1
    WHERE queue = OLD.queue AND definition = OLD.definition
      AND array_id = coalesce(OLD.array_id, 0) AND status = OLD.status;
    INSERT INTO job_counts VALUES (NEW.queue, NEW.definition, coalesce(NEW.array_id, 0),
                                   NEW.status, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS deps (
    owner INTEGER NOT NULL, kind TEXT NOT NULL, target INTEGER NOT NULL,
    PRIMARY KEY (owner, kind, target)
);
CREATE INDEX IF NOT EXISTS deps_by_target ON deps (target);
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, worker_id TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, exit_code INTEGER, outcome TEXT,
    process_group INTEGER,  -- where the worker runs it, once reported
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS job_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, time REAL NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_log_by_job ON job_log (job_id, kind, seq);
-- bytes of output kept per attempt, against the definition's output limit
CREATE TABLE IF NOT EXISTS output_kept (
    job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, definition TEXT NOT NULL, region TEXT NOT NULL,
    launcher TEXT NOT NULL, pid INTEGER, state TEXT NOT NULL, started REAL NOT NULL,
    last_seen REAL NOT NULL, ended REAL, node TEXT
);
CREATE INDEX IF NOT EXISTS workers_by_state ON workers (state);
-- machines of static regions that joined to run workers (`hyper worker join`)
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, region TEXT NOT NULL, definition TEXT NOT NULL, slots INTEGER NOT NULL,
    hostname TEXT NOT NULL, joined REAL NOT NULL, last_seen REAL NOT NULL,
    capacity TEXT NOT NULL DEFAULT ''
);
-- jobs' packages and what they collect, by key
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY, data BLOB NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT, finished INTEGER NOT NULL, version INTEGER NOT NULL,
    data TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_unfinished ON workflows (finished, id);
""".replace("{unfinished}", UNFINISHED_TERM)

JOB_COLUMNS = (
    "j.id, j.name, j.queue, j.definition, j.status, j.retries, j.retries_left, j.attempt,"
    " j.exit_code, j.reason, j.cancel_requested, j.worker_id, j.lease_until,"
    " coalesce(j.submit_dir, a.submit_dir) AS submit_dir,"
    " coalesce(j.env, a.env) AS env, j.created, j.started, j.ended, j.array_id, j.array_index,"
    " a.size AS array_size, j.priority, j.time_limit, coalesce(j.options, a.options) AS options"
)
JOB_FROM = "jobs j LEFT JOIN arrays a ON a.id = j.array_id"
ARRAY_COLUMNS = (
    "id, name, queue, definition, size, cap, spec, retries, priority, time_limit, submit_dir,"
    " env, options, created"
)
LOG_INSERT = "INSERT INTO job_log (job_id, attempt, kind, time, text) VALUES (?, ?, ?, ?, ?)"
Ended = tuple[int, int | None, int | None, JobStatus]  # job id, array id, index, final state


def _from_row(record_type: Any, row: sqlite3.Row, /, **decoded: Any) -> Any:
    """A record (a dataclass) from the row's columns of its fields' names, those in
    `decoded` given as decoded (statuses, JSON)."""
    columns = set(row.keys())
    plain = {
        f.name: row[f.name]
        for f in dataclasses.fields(record_type)
        if f.name in columns and f.name not in decoded
    }
    return record_type(**plain, **decoded)


def _job(row: sqlite3.Row, script: str | None = None) -> JobRecord:
    record: JobRecord = _from_row(
        JobRecord,
        row,
        status=JobStatus(row["status"]),
        cancel_requested=bool(row["cancel_requested"]),
        env=json.loads(row["env"] or "{}"),
        options=json.loads(row["options"] or "{}"),
        script=script,
    )
    return record


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _set(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """An UPDATE's assignments of the fields a rule names (hyper.store.rules)."""
    return ", ".join(f"{name} = ?" for name in fields), list(fields.values())


def _placed(where: JobFilter, *, array: str, status: str) -> tuple[list[str], list[Any]]:
    """The clauses (and their arguments) of a filter's queue, definition, array and
    states, over a table that keeps jobs by those (job_counts; arrays, whose id is the
    array and whose tasks not made yet are in `status`)."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("queue", where.queue), (array, where.array_id),
                          ("definition", where.definition)):  # fmt: skip
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if where.statuses:
        clauses.append(f"{status} IN ({_in(where.statuses)})")
        args += [s.value for s in where.statuses]
    return clauses, args


def _where(where: JobFilter, alias: str = "j.") -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if where.queue is not None:
        clauses.append(f"{alias}queue = ?")
        args.append(where.queue)
    if where.name is not None:
        clauses.append(f"{alias}name = ?")
        args.append(where.name)
    if where.definition is not None:
        clauses.append(f"{alias}definition = ?")
        args.append(where.definition)
    if where.name_prefix:
        clauses.append(f"{alias}name >= ? AND {alias}name < ?")
        args += [where.name_prefix, where.name_prefix + "\U0010ffff"]
    if where.statuses:
        clauses.append(f"{alias}status IN ({_in(where.statuses)})")
        args.extend(s.value for s in where.statuses)
        if where.queue is not None and set(where.statuses) == set(UNFINISHED):
            clauses.append(f"{alias}{UNFINISHED_TERM}")  # implied: lets jobs_unfinished serve
    if where.array_id is not None:
        clauses.append(f"{alias}array_id = ?")
        args.append(where.array_id)
    if where.selects:
        picks: list[str] = []
        if where.ids:
            picks.append(f"{alias}id IN ({_in(where.ids)})")
            args.extend(where.ids)
        for array_id, indices in where.arrays:
            if indices is None:
                picks.append(f"{alias}array_id = ?")
                args.append(array_id)
            else:  # any number of indices: one JSON parameter, not one variable each
                picks.append(
                    f"({alias}array_id = ? AND {alias}array_index IN"
                    " (SELECT value FROM json_each(?)))"
                )
                args += [array_id, json.dumps(list(indices))]
        clauses.append("(" + " OR ".join(picks) + ")")
    return (" AND ".join(clauses) or "1"), args


def _request_key(text: str | None) -> tuple[tuple[str, int], ...]:
    """A request kept as JSON text, as sorted items (() for nothing asked)."""
    try:
        request = json.loads(text) if text else None
    except ValueError:
        request = None
    return rules.request_items(request)


def _fits_function(fits: Fits) -> Callable[[str | None], int]:
    """`fits` as an SQL function of a job's options (JSON text)."""

    def call(options: str | None) -> int:
        return int(fits(rules.request_of(options)))

    return call


def _workflow(row: sqlite3.Row) -> WorkflowRecord:
    record: WorkflowRecord = _from_row(
        WorkflowRecord, row, finished=bool(row["finished"]), data=json.loads(row["data"])
    )
    return record


def _task(row: sqlite3.Row, *, with_script: bool) -> JobRecord:
    """A job read with its script and params: a task's own variables over its array's."""
    record = _job(row, _task_script(row) if with_script else None)
    record.env = {**record.env, **_task_params(row).get("env", {})}
    return record


def _task_params(row: sqlite3.Row) -> dict[str, Any]:
    return json.loads(row["params"]) if row["params"] else {}


def _task_script(row: sqlite3.Row) -> str:
    return task_script(row["script"], _task_params(row).get("replacements", {}))
