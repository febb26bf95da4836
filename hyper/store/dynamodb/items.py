"""The DynamoDB store's items: limits, keys and attribute values, index keys, counter
keys, the journal of submits, and one job's change as a value."""

from __future__ import annotations

import functools
import json
import random
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from hyper.errors import StoreUnavailable
from hyper.jobs import (
    JobStatus,
    LogKind,
)
from hyper.store import rules

SCRIPT_INLINE_BYTES = 300 * 1024  # larger scripts go to S3 (an item holds at most 400 KB)
LOG_TEXT_CHARS = 90_000  # longer output is logged as several entries (4 bytes a character)
WRITE_BATCH = 25  # BatchWriteItem's limit
GET_BATCH = 100  # BatchGetItem's limit
TRANSACTION_ITEMS = 100  # TransactWriteItems' limit
TRANSACTION_BYTES = 3_000_000  # of the 4 MB a transaction may hold
TRANSACTION_LOG_ENTRIES = 40  # output beyond this (or this size) is written after its change
TRANSACTION_LOG_BYTES = 1_000_000
COUNTER_SHARDS = 4
TRIES = 10  # attempts at a write that meets throttling or a conflict, with back-off
SEP = "\x1f"  # between the parts of a key (names hold no control characters)
NAME_KEY_CHARS = 200  # of a name in the name index (a sort key holds at most 1 KB)
PRIORITY_OFFSET = 10**9
# The lease and live-worker indexes are written by every heartbeat: their partition keys
# are spread over this many shards (a running job's by its id, a live worker's by a hash
# of its id), so no partition takes more than 1/16 of the heartbeats. At 10,000 running
# jobs reporting every 30 s (an AWS host), that is 42 index writes/s per lease shard (a
# new lease end is a delete and a put), against DynamoDB's 1,000 per partition
# (tests/test_dynamodb_store.py counts them). No other index is written by a heartbeat.
SHARDS = 16


def lease_shard(job_id: int) -> str:
    return f"L{job_id % SHARDS:02d}"


def live_shard(worker_id: str) -> str:
    return f"W{zlib.crc32(worker_id.encode()) % SHARDS:02d}"


LEASE_SHARDS = tuple(f"L{n:02d}" for n in range(SHARDS))
LIVE_SHARDS = tuple(f"W{n:02d}" for n in range(SHARDS))
# A submit adds its counters before it writes its jobs, with a journal entry (in the
# same transaction) that it removes once they are written. An entry older than Lambda's
# longest timeout belongs to a submit that was cut off (nothing still running can write
# its jobs): the tick takes back what it counted for jobs that were never written.
SUBMIT_CUT_OFF = 900.0
SUBMITS = "submits"  # the journal's scope in the counts table, keyed by first id
# An array whose tasks are made after its submit has a marker in the counts table (scope
# UNMADE, keyed by its id), put before its submit writes any item and kept until its last
# task is made: the arrays with tasks to make are one strongly consistent
# Query, whatever point a submit was cut off at, and a task is made only while the marker
# is there (a submit withdrawn deletes the marker first, then the tasks made since and
# its items: hyper.store.dynamodb.journal). It stays while tasks may have been made
# within INDEX_LAG (tasks.Epoch).
UNMADE = "unmade"
# An array written whole at its submit has a marker too (flagged `whole`), kept as long:
# claims, which make tasks, leave those out of their Query.
# How long after a write an index may still not show the item: DynamoDB's global
# secondary indexes are eventually consistent, "usually within a fraction of a second".
# An array's tasks written within this long are read by id as well (tasks.Epoch).
INDEX_LAG = 10.0
# A write that takes longer than this (retried under throttling, a long submit) is stamped
# again once done: its items are read by id INDEX_LAG after they reached the table.
SLOW_WRITE = 1.0
MAKE_CHUNK = TRANSACTION_ITEMS - 2  # tasks a transaction makes (beside the array and marker)
PLAN_ITEM_BYTES = 350_000  # an array item with a plan past this is written whole at submit
SETTLED_PER_TICK = 10  # journal entries settled per tick at most
JOURNAL_RUNS_CHARS = 200_000  # of an entry's runs of counter keys, at most
ARRAY_CACHE = 1024
TICK_LEASE = {"scope": "lease", "key": "tick"}  # who runs the scheduler's tick now
SETTLE_CHUNK = 2000  # tasks read at a time when a dependency of their array is settled
PAGE = 500
FILES = "files/"  # where files are kept in the bucket
S3_DELETE_BATCH = 1000  # DeleteObjects' limit
WORKFLOW = "workflow"  # the kind of workflow items in the resources table
OPEN_WORKFLOW = "workflow-open"  # and of the markers of unfinished ones

WAITING, BLOCKED, HELD, RUNNING = rules.WAITING, rules.BLOCKED, rules.HELD, rules.RUNNING
SUCCESSFUL, FAILED, CANCELLED = rules.SUCCESSFUL, rules.FAILED, rules.CANCELLED
RETRYABLE = {
    "None",
    "TransactionConflict",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ThrottlingError",
    "ThrottlingException",
    "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
}
CHECK_FAILED = "ConditionalCheckFailed"
THROTTLED = frozenset({
    "ThrottlingError", "ThrottlingException", "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded",
})  # fmt: skip


class Throttled(StoreUnavailable, ClientError):
    """DynamoDB still throttling a request after botocore's own retries. The store's
    retry loops take it as the ClientError it is; anywhere else it is StoreUnavailable,
    which the host answers with 503 and clients ask again (not a 500 they would not)."""

    def __init__(self, response: dict[str, Any], operation: str) -> None:
        ClientError.__init__(self, response, operation)


def _raise_throttled(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """botocore's after-call hook: a throttled answer becomes `Throttled`."""
    code = (parsed.get("Error") or {}).get("Code")
    if code in THROTTLED:
        raise Throttled(parsed, model.name)


Item = dict[str, Any]
Ended = tuple[int, int | None, int | None, JobStatus, bool]  # id, array, index, state, dependents


# values ------------------------------------------------------------------------------------


def _av(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (list, tuple)):
        return {"L": [_av(v) for v in value]}
    raise TypeError(f"cannot store {value!r}")


def _py(value: dict[str, Any]) -> Any:
    kind, raw = next(iter(value.items()))
    if kind == "N":
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    if kind == "L":
        return [_py(v) for v in raw]
    if kind == "NULL":
        return None
    return raw


def _item(raw: Mapping[str, Any]) -> Item:
    item = {key: _py(value) for key, value in raw.items()}
    if "array_id" in item and "kind" not in item:
        item["kind"] = "task"  # tasks are not written with their kind: one attribute less
    return item


def _marshal(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _av(value) for key, value in item.items() if value is not None}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


_PLACEHOLDER = re.compile(r"#(\w+)")


def _names(*expressions: str | None) -> dict[str, str]:
    return {f"#{n}": n for e in expressions if e for n in _PLACEHOLDER.findall(e)}


def _values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f":{key}": _av(value) for key, value in values.items()}


def _update(
    table: str,
    key: Mapping[str, Any],
    *,
    set_: Mapping[str, Any] | None = None,
    add: Mapping[str, int] | None = None,
    condition: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An UpdateItem request: attributes in `set_` set (or removed, when None), numbers in
    `add` added to; `condition` names attributes as #name and values as :name."""
    vals = _values(values or {})
    assigned, removed, added = [], [], []
    for n, (attr, value) in enumerate((set_ or {}).items()):
        if value is None:
            removed.append(f"#{attr}")
        else:
            assigned.append(f"#{attr} = :s{n}")
            vals[f":s{n}"] = _av(value)
    for n, (attr, amount) in enumerate((add or {}).items()):
        added.append(f"#{attr} :a{n}")
        vals[f":a{n}"] = _av(amount)
    clauses = (("SET ", assigned), ("REMOVE ", removed), ("ADD ", added))
    expression = " ".join(word + ", ".join(parts) for word, parts in clauses if parts)
    request: dict[str, Any] = {
        "TableName": table,
        "Key": _marshal(key),
        "UpdateExpression": expression,
        "ExpressionAttributeNames": _names(expression, condition),
    }
    if vals:
        request["ExpressionAttributeValues"] = vals
    if condition:
        request["ConditionExpression"] = condition
    return request


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _pause(tries: int) -> None:
    """Back-off with full jitter: up to 50 ms, doubling, at most 2 s."""
    time.sleep(random.uniform(0, min(2.0, 0.05 * 2**tries)))


# keys -----------------------------------------------------------------------------------


def _claim_order(priority: int, job_id: int) -> str:
    return f"{PRIORITY_OFFSET - priority:010d}{SEP}{job_id:019d}"


def _name_key(name: str, job_id: int) -> str:
    return f"{name[:NAME_KEY_CHARS]}{SEP}{job_id:019d}"


def _flag(job: Mapping[str, Any]) -> str:
    """'t' for a task of an array, 's' for a single job: listings of single jobs only
    (one line per array) read no tasks."""
    return "t" if job.get("array_id") is not None else "s"


def _index_keys(job: Mapping[str, Any]) -> dict[str, Any]:
    """The index attributes that follow from a job's state (None: not in that index)."""
    status, flag = job["status"], _flag(job)
    waiting = status == WAITING
    return {
        "qs": f"{job['queue']}{SEP}{status}{SEP}{flag}",
        # tasks are found by definition through their array
        "dk": f"{job['definition']}{SEP}{status}{SEP}{flag}" if flag == "s" else None,
        "ck": f"{job['queue']}{SEP}{job['definition']}" if waiting else None,
        "co": _claim_order(job["priority"], job["id"]) if waiting else None,
        "leased": lease_shard(int(job["id"]))
        if status == RUNNING and job.get("lease_until") is not None
        else None,
    }


CounterKey = tuple[str, str, bool]  # scope, key without its shard, pinned to shard 0
REQUESTS = "requests"  # the scope of the counters of Waiting and Running jobs by request
ACTIVE = frozenset({WAITING, RUNNING})


@functools.lru_cache(maxsize=256)
def _request_text(options: str | None) -> str:
    """What a job asked for, from its options (JSON text), as `cpus=2,mem_mib=100` (items
    sorted; "" for nothing asked)."""
    return ",".join(f"{k}={v}" for k, v in rules.request_items(rules.request_of(options)))


def _request_items(text: str) -> tuple[tuple[str, int], ...]:
    """A request written by _request_text, back as its sorted items."""
    pairs = (part.partition("=") for part in text.split(",") if part)
    return tuple((name, int(value)) for name, _, value in pairs)


def _counter_keys(job: Mapping[str, Any], status: str) -> list[CounterKey]:
    flag = _flag(job)
    keys = [("jobs", f"{job['queue']}{SEP}{job['definition']}{SEP}{status}{SEP}{flag}", False)]
    if flag == "t":
        # the Running count of an array with a cap is one item: claims check the cap on it
        pinned = status == RUNNING and job.get("cap") is not None
        keys.append((f"array:{job['array_id']}", status, pinned))
    asked = _request_text(job.get("options")) if status in ACTIVE else ""
    if asked:  # a task's options are its array's (in the items _complete fills in)
        keys.append((REQUESTS, f"{job['queue']}{SEP}{job['definition']}{SEP}{asked}", False))
    return keys


def _journal_entry(
    counted: Sequence[tuple[int, list[CounterKey]]],
    deltas: Mapping[CounterKey, int],
    now: float,
    *,
    later: Mapping[int, tuple[int, int]] | None = None,
) -> Item:
    """A submit's journal entry: its ids, its counters (in the order they are made) and
    the counter keys of its jobs as runs of consecutive ids that share them. `later`:
    per array whose tasks past its first are made after the submit, the ids of those
    (first, last); they are counted with the array's own id (each key with how many
    times), as they are there exactly when the array's item is."""
    later = later or {}
    runs: list[list[Any]] = []
    for job_id, keys in counted:
        times = [later[job_id][1] - later[job_id][0] + 1] if job_id in later else []
        listed = [[*k, *times] for k in keys]
        if runs and runs[-1][1] == job_id - 1 and runs[-1][2] == listed:
            runs[-1][1] = job_id
        else:
            runs.append([job_id, job_id, listed])
    text = json.dumps(runs)
    return {
        "key": f"{counted[0][0]:019d}",
        "first": counted[0][0],
        "last": counted[-1][0],
        "started": now,
        "deltas": json.dumps([[*k, n] for k, n in sorted(deltas.items()) if n]),
        # an item holds 400 KB: runs past this (tasks whose states change every few, as
        # aftercorr can make them) are left out, and only a submit cut off before it
        # wrote any job can then be taken back
        "runs": text if len(text) <= JOURNAL_RUNS_CHARS else None,
        "later": json.dumps(sorted([a, *ids] for a, ids in later.items())) if later else None,
    }


def _journal_deltas(
    entry: Mapping[str, Any], only: Sequence[tuple[int, int]] | None = None
) -> list[list[Any]]:
    """A journal entry's counters as [scope, key, pinned, n], in the order they are made;
    with `only`, those of the jobs in these id ranges, from its runs."""
    if only is None:
        return [list(d) for d in json.loads(entry["deltas"])]
    if entry.get("runs") is None:  # too many to keep: all or nothing
        whole = (int(entry["first"]), int(entry["last"]))
        return _journal_deltas(entry) if list(only) == [whole] else []
    found: Counter[CounterKey] = Counter()
    for low, high, keys in json.loads(entry["runs"]):
        for first, last in only:
            n = min(high, last) - max(low, first) + 1
            if n > 0:
                for scope, key, pinned, *times in keys:
                    found[(scope, key, bool(pinned))] += n * (times[0] if times else 1)
    return [[*k, n] for k, n in sorted(found.items()) if n]


def _task_item(
    array_id: int,
    n: int,
    index: int,
    status: str,
    *,
    queue: str,
    claim_key: str,
    priority: int,
    left: int = 0,
    reason: str | None = None,
    ended: float | None = None,
    name: str | None = None,
    params: Any = None,
    waits: list[int] | None = None,
) -> Item:
    """Task `n` of an array (id array + 1 + n) as written: as little as differs between
    tasks (a million of them are written one by one); the rest is read from the array."""
    task_id = array_id + 1 + n
    task: Item = {
        "id": task_id,
        "array_id": array_id,
        "array_index": index,
        "status": status,
        "qs": f"{queue}{SEP}{status}{SEP}t",
    }
    if name:  # named on its own: in the name index (others are found by array)
        task |= {"name": name, "nh": f"t{name[:1]}", "nk": _name_key(name, task_id)}
    if params:
        task["params"] = json.dumps(params)
    if left:
        task["deps_left"] = left
    if waits:
        task["corr"] = waits
    if reason:
        task["reason"], task["ended"] = reason, ended
    if status == WAITING:
        task["ck"], task["co"] = claim_key, _claim_order(priority, task_id)
    return task


def _id_key(job_id: int) -> str:
    """An id as a key of the counts table that sorts as the id."""
    return f"{job_id:019d}"


def _unmade_marker(array_id: int, now: float, *, whole: bool = False) -> Item:
    marker = {"scope": UNMADE, "key": _id_key(array_id), "array_id": array_id, "started": now}
    return marker | ({"whole": 1} if whole else {})


def _split_output(entries: Sequence[tuple[LogKind, str]]) -> list[tuple[LogKind, str]]:
    """Output as entries an item can hold: a longer text becomes consecutive entries."""
    out: list[tuple[LogKind, str]] = []
    for kind, text in entries:
        if len(text) <= LOG_TEXT_CHARS:
            out.append((kind, text))
        else:
            out += [
                (kind, text[i : i + LOG_TEXT_CHARS]) for i in range(0, len(text), LOG_TEXT_CHARS)
            ]
    return out


@dataclass(frozen=True)
class _Array:
    """What an array item holds; it never changes once written."""

    id: int
    name: str
    queue: str
    definition: str
    script: str | None
    script_s3: str | None
    env: str
    submit_dir: str | None
    options: str
    retries: int
    priority: int
    time_limit: int | None
    size: int
    cap: int | None
    spec: str
    created: float

    @classmethod
    def of(cls, item: Item) -> _Array:
        return cls(
            id=item["id"],
            name=item["name"],
            queue=item["queue"],
            definition=item["definition"],
            script=item.get("script"),
            script_s3=item.get("script_s3"),
            env=item.get("env", "{}"),
            submit_dir=item.get("submit_dir"),
            options=item.get("options", "{}"),
            retries=item["retries"],
            priority=item["priority"],
            time_limit=item.get("time_limit"),
            size=item["size"],
            cap=item.get("cap"),
            spec=item.get("spec", ""),
            created=float(item["created"]),
        )


@dataclass
class _Change:
    """One job's change: attributes to set (None removes), SYSTEM events and worker output
    to log (under `attempt`, by default the job's), and more actions for its transaction."""

    item: Item
    set_: dict[str, Any]
    events: list[str] = field(default_factory=list)
    attempt: int | None = None
    output: Sequence[tuple[LogKind, str]] = ()
    extra: list[dict[str, Any]] = field(default_factory=list)

    @property
    def after(self) -> Item:
        return {**self.item, **self.set_}

    @property
    def status(self) -> str:
        return str(self.after["status"])


@dataclass(frozen=True)
class _Dep:
    owner: int
    kind: str
