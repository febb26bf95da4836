"""The store on DynamoDB: the tables of ``hyper/store/dynamodb_tables.py`` through boto3.

Same records, states, errors and events as the SQLite store; what SQLite does in one
transaction is done here as follows.

- Every job item carries a ``version``; a change of a job is a transaction
  (TransactWriteItems, at most 100 items) that updates the job on the condition that its
  version is still the one read, adds to the counters its change of state moves, and
  puts its events in the log. A job changed by someone else in between fails the
  condition; it is read again (strongly consistent) and the change decided again. So a
  claim, a completion and a cancel never overwrite each other, and the counters always
  match the jobs.
- Claims: candidates come from the ``claim`` index (Waiting jobs of a queue and
  definition, highest priority first, then by id); each is taken by the transaction
  above with ``status = Waiting`` in its condition, so two workers never hold one job.
  A task of an array with a cap also adds to the array's Running counter on the
  condition that it stays within the cap.
- Counts: counter items per (queue, definition, status, single job or task) and per
  (array, status), each spread over a few shards (a transaction picks one at random, so
  concurrent changes rarely contend; readers add the shards up). qstat's totals and the
  scheduler's demand read these, never the jobs.
- Ids: one counter item, one atomic ADD per submit for all of its ids.
- Submits: ids first, then the counters, then the items in BatchWriteItem calls of 25
  (unprocessed items retried with back-off); nothing is written before every
  dependency has been judged, so a refused submit leaves nothing behind. Scripts over
  300 KB go to S3 under ``scripts/{id}`` first. The counters go with a journal entry
  (counts table, scope ``submits``) that the submit removes once its items are written;
  a submit cut off in between (its Lambda timed out) leaves the entry, and the tick
  takes back what it counted for the items it never wrote (``reconcile_counts``), so
  the scheduler does not start workers for jobs that do not exist.
- Dependencies: as in SQLite, judged at submit. A pending one is recorded (a ``deps``
  item, and a ``dependents`` flag on its target) and then judged again, so that a target
  that ended in between is not missed; settling removes the ``deps`` item on a
  condition, so a dependency is settled once whoever sees it first.
- Listings and counts never Scan: each filter maps to a Query of an index (queue and
  status, name, definition, array), pages merged by id. These indexes hold keys only
  (a heartbeat then writes none of them); the jobs a page finds are read by id
  (BatchGetItem, strongly consistent).

Files are S3 objects under ``files/`` in the host's bucket. Workflows are items of the
resources table (kind ``workflow``, named by their zero-filled id), with a marker item
(kind ``workflow-open``) while unfinished, so the scheduler's tick reads only those.

The tasks of an array hold only what differs between them (index, state, attempts,
name, parameters); the rest is read from the array item, which never changes and is
kept in a small cache.

Not one step, unlike SQLite: a submit is several calls (if one fails, what was written
is deleted again as far as possible before the error is raised; the ids stay used); a
dependency of a whole array reaches its tasks in transactions of 100 (a failure part-way
leaves the rest Blocked); indexes are eventually consistent, so a listing or a claim may
miss a change made a moment ago, but every change reads its job again (strongly
consistent) and writes on a condition, so a stale index can delay work, never double it.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import random
import re
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from hyper import output
from hyper.aws_buckets import expect_bucket_owner
from hyper.aws_errors import error_code
from hyper.errors import Conflict, StoreUnavailable, UsageError
from hyper.jobs import (
    FINISHED,
    NOT_STARTED,
    UNFINISHED,
    JobStatus,
    LogKind,
    Verdict,
    is_under,
    judge_dependency,
    never_met,
    outcome_of_attempt,
    task_script,
)
from hyper.jobspec import Selector
from hyper.store import dynamodb_tables as tables
from hyper.store.base import (
    ArrayRecord,
    CancelResult,
    Ending,
    Fits,
    HoldResult,
    JobFilter,
    JobRecord,
    LogEntry,
    NewJob,
    NodeRecord,
    Resource,
    WorkerRecord,
    WorkflowRecord,
)

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
SETTLED_PER_TICK = 10  # journal entries settled per tick at most
JOURNAL_RUNS_CHARS = 200_000  # of an entry's runs of counter keys, at most
EVENTS_PER_CHANGE = 1000  # a bulk change logs each job up to this many, then one per array
ARRAY_CACHE = 1024
TICK_LEASE = {"scope": "lease", "key": "tick"}  # who runs the scheduler's tick now
SETTLE_CHUNK = 2000  # tasks read at a time when a dependency of their array is settled
PAGE = 500
FILES = "files/"  # where files are kept in the bucket
S3_DELETE_BATCH = 1000  # DeleteObjects' limit
WORKFLOW = "workflow"  # the kind of workflow items in the resources table
OPEN_WORKFLOW = "workflow-open"  # and of the markers of unfinished ones

WAITING = JobStatus.WAITING.value
BLOCKED = JobStatus.BLOCKED.value
HELD = JobStatus.HELD.value
RUNNING = JobStatus.RUNNING.value
SUCCESSFUL = JobStatus.SUCCESSFUL.value
FAILED = JobStatus.FAILED.value
CANCELLED = JobStatus.CANCELLED.value
BAD = (FAILED, CANCELLED)
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


def _counter_keys(job: Mapping[str, Any], status: str) -> list[CounterKey]:
    flag = _flag(job)
    keys = [("jobs", f"{job['queue']}{SEP}{job['definition']}{SEP}{status}{SEP}{flag}", False)]
    if flag == "t":
        # the Running count of an array with a cap is one item: claims check the cap on it
        pinned = status == RUNNING and job.get("cap") is not None
        keys.append((f"array:{job['array_id']}", status, pinned))
    return keys


def _journal_entry(
    counted: Sequence[tuple[int, list[CounterKey]]], deltas: Mapping[CounterKey, int], now: float
) -> Item:
    """A submit's journal entry: its ids, its counters (in the order they are made) and
    the counter keys of its jobs as runs of consecutive ids that share them."""
    runs: list[list[Any]] = []
    for job_id, keys in counted:
        listed = [list(k) for k in keys]
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
                for scope, key, pinned in keys:
                    found[(scope, key, bool(pinned))] += n
    return [[*k, n] for k, n in sorted(found.items()) if n]


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


class DynamoDBStore:
    """The Store protocol on the DynamoDB tables named `{prefix}-...` (see tables.py).

    Clients are made on first use (or passed in); constructing the store calls nothing."""

    counts_requests = False

    def __init__(
        self,
        prefix: str,
        region: str,
        bucket: str | None = None,
        *,
        dynamodb: Any = None,
        s3: Any = None,
        bucket_owner: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.region = region
        self.bucket = bucket
        self.bucket_owner = bucket_owner  # every S3 call names it (ExpectedBucketOwner)
        self._dynamodb = dynamodb
        self._s3 = s3
        self._lock = threading.Lock()
        self._arrays: OrderedDict[int, _Array] = OrderedDict()
        self._scripts: OrderedDict[str, str] = OrderedDict()  # from S3, by key
        name = tables.table_name
        self._jobs = name(prefix, tables.JOBS)
        self._counts_name = name(prefix, tables.COUNTS)
        self._deps = name(prefix, tables.DEPS)
        self._log = name(prefix, tables.LOG)
        self._attempts = name(prefix, tables.ATTEMPTS)
        self._workers = name(prefix, tables.WORKERS)
        self._nodes = name(prefix, tables.NODES)
        self._resources = name(prefix, tables.RESOURCES)

    @property
    def dynamodb(self) -> Any:
        if self._dynamodb is None:
            with self._lock:  # boto3's default session is not safe to share while creating
                if self._dynamodb is None:
                    import boto3
                    from botocore.config import Config

                    # requests are built here, not typed by a user: botocore's check of
                    # every parameter would take a fifth of a big submit's time
                    config = Config(parameter_validation=False, retries={"mode": "standard"})
                    client = boto3.client("dynamodb", region_name=self.region, config=config)
                    client.meta.events.register("after-call.dynamodb", _raise_throttled)
                    self._dynamodb = client
        return self._dynamodb

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            with self._lock:
                if self._s3 is None:
                    import boto3

                    client = boto3.client("s3", region_name=self.region)
                    if self.bucket_owner:
                        expect_bucket_owner(client, self.bucket_owner)
                    self._s3 = client
        return self._s3

    def close(self) -> None:
        for client in (self._dynamodb, self._s3):
            if client is not None and hasattr(client, "close"):
                client.close()

    # reading and writing items ------------------------------------------------------------

    def _get(
        self, table: str, key: Mapping[str, Any], projection: str | None = None
    ) -> Item | None:
        request: dict[str, Any] = {"TableName": table, "Key": _marshal(key), "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
            request["ExpressionAttributeNames"] = _names(projection)
        raw = self.dynamodb.get_item(**request).get("Item")
        return _item(raw) if raw else None

    def _get_jobs(self, ids: Iterable[int], projection: str | None = None) -> dict[int, Item]:
        """Items of the jobs table by id, read strongly consistent, 100 a call."""
        keys = [{"id": {"N": str(i)}} for i in dict.fromkeys(ids)]
        found: dict[int, Item] = {}
        for chunk in _chunks(keys, GET_BATCH):
            spec: dict[str, Any] = {"Keys": list(chunk), "ConsistentRead": True}
            if projection:
                spec["ProjectionExpression"] = projection
                spec["ExpressionAttributeNames"] = _names(projection)
            request: dict[str, Any] = {self._jobs: spec}
            tries = 0
            while request:
                response = self.dynamodb.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self._jobs, []):
                    item = _item(raw)
                    found[item["id"]] = item
                request = response.get("UnprocessedKeys") or {}
                if request:
                    self._wait(tries, "reading jobs")
                    tries += 1
        return found

    def _write(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """(table, PutRequest/DeleteRequest) in BatchWriteItem calls of 25; what comes back
        unprocessed is sent again with back-off."""
        for chunk in _chunks(requests, WRITE_BATCH):
            pending: dict[str, list[dict[str, Any]]] = {}
            for table, request in chunk:
                pending.setdefault(table, []).append(request)
            tries = 0
            while pending:
                response = self.dynamodb.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if pending:
                    self._wait(tries, "writing")
                    tries += 1

    def _wait(self, tries: int, doing: str) -> None:
        if tries >= TRIES:
            raise StoreUnavailable(f"DynamoDB is too busy for {doing}; try again")
        _pause(tries)

    def _query(
        self,
        table: str,
        condition: str,
        values: Mapping[str, Any],
        *,
        index: str | None = None,
        consistent: bool = False,
        filter_: str | None = None,
        limit: int | None = None,
        projection: str | None = None,
    ) -> Iterator[tuple[list[Item], bool]]:
        """Pages of a Query, each with whether more follow."""
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": _names(condition, filter_, projection),
            "ExpressionAttributeValues": _values(values),
        }
        if index:
            request["IndexName"] = index
        if consistent:
            request["ConsistentRead"] = True
        if filter_:
            request["FilterExpression"] = filter_
        if limit:
            request["Limit"] = limit
        if projection:
            request["ProjectionExpression"] = projection
        while True:
            response = self.dynamodb.query(**request)
            last = response.get("LastEvaluatedKey")
            yield [_item(raw) for raw in response.get("Items", [])], bool(last)
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _query_all(
        self, table: str, condition: str, values: Mapping[str, Any], **kw: Any
    ) -> list[Item]:
        return [item for page, _ in self._query(table, condition, values, **kw) for item in page]

    def _transact(self, actions: list[dict[str, Any]]) -> list[str] | None:
        """Write all or nothing. None when done; when a condition failed, the cancellation
        code of each action. Conflicts with other writes are retried with back-off."""
        tries = 0
        while True:
            try:
                if len(actions) == 1 and "Update" in actions[0]:
                    self.dynamodb.update_item(**actions[0]["Update"])
                else:
                    self.dynamodb.transact_write_items(TransactItems=actions)
                return None
            except ClientError as error:
                code = error_code(error)
                if code == "ConditionalCheckFailedException":
                    return [CHECK_FAILED]
                if code == "TransactionCanceledException":
                    reasons = [
                        str(r.get("Code") or "None")
                        for r in error.response.get("CancellationReasons", [])
                    ]
                    if CHECK_FAILED in reasons:
                        return reasons
                    if not set(reasons) <= RETRYABLE:
                        raise
                elif code not in RETRYABLE:
                    raise
                self._wait(tries, "a change of state")
                tries += 1

    def _update_if(self, request: dict[str, Any], **kw: Any) -> dict[str, Any] | None:
        """UpdateItem; None when its condition failed."""
        try:
            return dict(self.dynamodb.update_item(**request, **kw))
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise

    # arrays, scripts and records -----------------------------------------------------------

    def _array_infos(self, ids: Iterable[int]) -> dict[int, _Array]:
        wanted = set(ids)
        with self._lock:
            found = {i: self._arrays[i] for i in wanted if i in self._arrays}
        missing = wanted - set(found)
        if missing:
            for item in self._get_jobs(missing).values():
                if item.get("kind") == "array":
                    info = _Array.of(item)
                    found[info.id] = info
                    with self._lock:
                        self._arrays[info.id] = info
                        while len(self._arrays) > ARRAY_CACHE:
                            self._arrays.popitem(last=False)
        return found

    def _array_info(self, array_id: int) -> _Array | None:
        return self._array_infos([array_id]).get(array_id)

    def _complete(self, items: list[Item]) -> list[Item]:
        """Fill in what tasks read from their array (in place); array items pass as they are."""
        infos = self._array_infos({i["array_id"] for i in items if i.get("kind") == "task"})
        for item in items:
            if item.get("kind") != "task":
                continue
            info = infos[item["array_id"]]
            item.setdefault("name", info.name)
            item.setdefault("retries_left", info.retries)
            item.setdefault("created", info.created)
            item.update(
                queue=info.queue,
                definition=info.definition,
                retries=info.retries,
                priority=info.priority,
                time_limit=info.time_limit,
                array_size=info.size,
                cap=info.cap,
            )
        return items

    def _s3_script(self, key: str) -> str:
        with self._lock:
            cached = self._scripts.get(key)
        if cached is not None:
            return cached
        if self.bucket is None:
            raise StoreUnavailable(f"script {key} is in S3 but this store has no bucket")
        text = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
        with self._lock:
            self._scripts[key] = text
            while len(self._scripts) > 8:
                self._scripts.popitem(last=False)
        return text

    def _script(self, item: Item) -> str:
        """The script a job runs: a task's is its array's, with its text replacements."""
        if item.get("kind") != "task":
            return item["script"] if "script" in item else self._s3_script(item["script_s3"])
        info = self._array_infos([item["array_id"]])[item["array_id"]]
        script = info.script if info.script is not None else self._s3_script(info.script_s3 or "")
        params = json.loads(item.get("params") or "{}")
        return task_script(script, params.get("replacements", {}))

    def _record(
        self, item: Item, *, with_script: bool = False, task_env: bool = False
    ) -> JobRecord:
        """A job as the protocol returns it; `task_env` adds a task's own variables (get_job
        and claim do, listings do not, as in SQLite)."""
        info = None
        if item.get("kind") == "task":
            info = self._array_infos([item["array_id"]])[item["array_id"]]
        env = json.loads(item["env"]) if "env" in item else json.loads(info.env) if info else {}
        if task_env and item.get("params"):
            env = {**env, **json.loads(item["params"]).get("env", {})}
        options = item.get("options") or (info.options if info else "{}")
        return JobRecord(
            id=item["id"],
            name=item["name"],
            queue=item["queue"],
            definition=item["definition"],
            status=JobStatus(item["status"]),
            retries=item["retries"],
            retries_left=item["retries_left"],
            attempt=item.get("attempt", 0),
            exit_code=item.get("exit_code"),
            reason=item.get("reason"),
            cancel_requested=bool(item.get("cancel_requested")),
            worker_id=item.get("worker_id"),
            lease_until=_float(item.get("lease_until")),
            submit_dir=item.get("submit_dir") if info is None else info.submit_dir,
            env=env,
            created=float(item["created"]),
            started=_float(item.get("started")),
            ended=_float(item.get("ended")),
            array_id=item.get("array_id"),
            array_index=item.get("array_index"),
            array_size=item.get("array_size"),
            priority=item["priority"],
            time_limit=item.get("time_limit"),
            options=json.loads(options),
            script=self._script(item) if with_script else None,
        )

    def _array_record(self, item: Item) -> ArrayRecord:
        info = _Array.of(item)
        counts = dict.fromkeys((s.value for s in JobStatus), 0)
        counts.update(self._counts(f"array:{info.id}"))
        return ArrayRecord(
            id=info.id,
            name=info.name,
            queue=info.queue,
            definition=info.definition,
            size=info.size,
            cap=info.cap,
            spec=info.spec,
            retries=info.retries,
            priority=info.priority,
            time_limit=info.time_limit,
            submit_dir=info.submit_dir,
            env=json.loads(info.env),
            options=json.loads(info.options),
            created=info.created,
            counts=counts,
            highest_exit_code=item.get("highest_exit") if counts[FAILED] else None,
        )

    # counters ---------------------------------------------------------------------------

    def _counts(self, scope: str, begins: str = "") -> dict[str, int]:
        """The counters of a scope, their shards added up, by key."""
        condition = "#scope = :scope"
        values: dict[str, Any] = {"scope": scope}
        if begins:
            condition += " AND begins_with(#key, :begins)"
            values["begins"] = begins
        sums: Counter[str] = Counter()
        for item in self._query_all(self._counts_name, condition, values, consistent=True):
            sums[item["key"].rsplit(SEP, 1)[0]] += item.get("n", 0)
        return dict(sums)

    def _job_counts(self, queue: str | None = None) -> list[tuple[str, str, str, str, int]]:
        """(queue, definition, status, s|t, n) of the counters of every queue, or one."""
        found = self._counts("jobs", f"{queue}{SEP}" if queue is not None else "")
        rows = []
        for key, n in found.items():
            q, d, status, flag = key.split(SEP)
            rows.append((q, d, status, flag, n))
        return rows

    def _counter_actions(
        self, deltas: Mapping[CounterKey, int], cap: int | None = None
    ) -> list[dict[str, Any]]:
        """ADDs to counter items, one shard chosen for all of them; with `cap`, the pinned
        Running counter of an array may not pass it."""
        shard = random.randrange(COUNTER_SHARDS)
        actions = []
        for (scope, key, pinned), n in sorted(deltas.items()):
            if n == 0:
                continue
            condition, values = None, None
            if pinned and cap is not None and n > 0:
                condition = "attribute_not_exists(#n) OR #n <= :room"
                values = {"room": cap - n}
            request = _update(
                self._counts_name,
                {"scope": scope, "key": f"{key}{SEP}{0 if pinned else shard}"},
                add={"n": n},
                condition=condition,
                values=values,
            )
            actions.append({"Update": request})
        return actions

    @staticmethod
    def _deltas(change: _Change) -> Counter[CounterKey]:
        deltas: Counter[CounterKey] = Counter()
        before, after = change.item, change.after
        if before["status"] != after["status"]:
            for key in _counter_keys(before, before["status"]):
                deltas[key] -= 1
            for key in _counter_keys(after, after["status"]):
                deltas[key] += 1
        return deltas

    # changing jobs -------------------------------------------------------------------------

    def _actions(self, change: _Change, now: float) -> tuple[list[dict[str, Any]], list[Item], int]:
        """The transaction actions of a change, log entries to write after it (output
        beyond what a transaction holds; their sequence numbers are reserved in it), and
        about how many bytes the actions take."""
        item = change.item
        after = change.after
        set_ = dict(change.set_)
        for key, value in _index_keys(after).items():
            if item.get(key) != value:
                set_[key] = value
        entries = [(LogKind.SYSTEM, text) for text in change.events]
        output = _split_output(change.output)
        seq = int(item.get("log_seq", 0))
        attempt = change.attempt if change.attempt is not None else int(after.get("attempt", 0))
        logs = [
            {
                "job_id": item["id"],
                "seq": seq + n,
                "attempt": attempt,
                "kind": kind.value,
                "time": now,
                "text": text,
            }
            for n, (kind, text) in enumerate([*entries, *output], start=1)
        ]
        if logs:
            set_["log_seq"] = seq + len(logs)
        version = int(item.get("version", 0))
        condition = "#version = :version" if version else "attribute_not_exists(#version)"
        update = _update(
            self._jobs,
            {"id": item["id"]},
            set_=set_,
            add={"version": 1},
            condition=condition,
            values={"version": version} if version else None,
        )
        inline, later = logs, []
        size = sum(len(text.encode()) for _, text in output)
        if len(output) > TRANSACTION_LOG_ENTRIES or size > TRANSACTION_LOG_BYTES:
            inline, later, size = logs[: len(entries)], logs[len(entries) :], 0
        puts = [{"Put": {"TableName": self._log, "Item": _marshal(log)}} for log in inline]
        size += 1000 * (1 + len(entries) + len(change.extra)) + len(json.dumps(set_))
        return [{"Update": update}, *puts, *change.extra], later, size

    def _commit(
        self, changes: Sequence[_Change], now: float
    ) -> tuple[list[_Change], list[_Change]]:
        """Apply changes in transactions of up to 100 items, counters included. Returns
        those applied and those whose job had changed since it was read."""
        applied: list[_Change] = []
        stale: list[_Change] = []
        queue = list(changes)
        while queue:
            group: list[tuple[_Change, int, int]] = []  # change, first action, its actions
            actions: list[dict[str, Any]] = []
            later: list[Item] = []
            deltas: Counter[CounterKey] = Counter()
            size = 0
            while queue:
                own, own_later, own_size = self._actions(queue[0], now)
                own_deltas = self._deltas(queue[0])
                keys = len(set(deltas) | set(own_deltas))
                if group and (
                    len(actions) + len(own) + keys > TRANSACTION_ITEMS
                    or size + own_size > TRANSACTION_BYTES
                ):
                    break
                group.append((queue.pop(0), len(actions), len(own)))
                actions += own
                later += own_later
                deltas.update(own_deltas)
                size += own_size
            codes = self._transact(actions + self._counter_actions(deltas))
            if codes is None:
                applied += [change for change, _, _ in group]
                if later:
                    self._write([(self._log, {"PutRequest": {"Item": _marshal(e)}}) for e in later])
                continue
            retry = []
            for change, first, count in group:
                if codes[first] == CHECK_FAILED:
                    stale.append(change)  # the job changed: read it again
                elif CHECK_FAILED in codes[first + 1 : first + count]:
                    continue  # a condition of its own (a dependency already settled): dropped
                else:
                    retry.append(change)
            queue = retry + queue
        self._after(applied)
        return applied, stale

    def _after(self, applied: Sequence[_Change]) -> None:
        """The highest exit code of an array's failed tasks, kept on the array: a maximum
        cannot be taken inside a transaction, so it is set after, on a condition (it only
        ever grows, so setting it twice or late is harmless)."""
        for change in applied:
            after = change.after
            code = after.get("exit_code")
            if change.status == FAILED and after.get("kind") == "task" and code is not None:
                self._update_if(
                    _update(
                        self._jobs,
                        {"id": after["array_id"]},
                        set_={"highest_exit": code},
                        condition="attribute_not_exists(#highest_exit) OR #highest_exit < :code",
                        values={"code": code},
                    )
                )

    def _transition(
        self, items: Iterable[Item], plan: Callable[[Item], _Change | None], now: float
    ) -> list[_Change]:
        """Change jobs as `plan` decides for each. A job changed by someone else since it
        was read is read again (strongly consistent) and decided again."""
        applied: list[_Change] = []
        pending = list(items)
        for _ in range(TRIES):
            changes = [c for c in map(plan, pending) if c is not None]
            if not changes:
                return applied
            done, stale = self._commit(changes, now)
            applied += done
            if not stale:
                return applied
            fresh = self._get_jobs(c.item["id"] for c in stale)
            pending = self._complete(sorted(fresh.values(), key=lambda i: i["id"]))
        raise StoreUnavailable("jobs kept changing while being changed; try again")

    def _event(self, job_id: int, attempt: int, text: str, now: float) -> None:
        """One SYSTEM event outside a change (a bulk change's line per array)."""
        response = self._update_if(
            _update(
                self._jobs,
                {"id": job_id},
                add={"log_seq": 1, "version": 1},
                condition="attribute_exists(#id)",
            ),
            ReturnValues="UPDATED_NEW",
        )
        if response is None:
            return
        seq = int(response["Attributes"]["log_seq"]["N"])
        entry = {
            "job_id": job_id,
            "seq": seq,
            "attempt": attempt,
            "kind": LogKind.SYSTEM.value,
            "time": now,
            "text": text,
        }
        self.dynamodb.put_item(TableName=self._log, Item=_marshal(entry))

    # resources ---------------------------------------------------------------------------

    def put_resource(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        status: str,
        log_lines: Sequence[str],
        now: float,
    ) -> Resource:
        for _ in range(TRIES):
            current = self._get(self._resources, {"kind": kind, "name": name})
            log = json.loads(current["log"]) if current else []
            log = [*log, *log_lines][-200:]
            created = float(current["created"]) if current else now
            version = int(current.get("version", 0)) if current else 0
            item = {
                "kind": kind,
                "name": name,
                "spec": json.dumps(spec),
                "status": status,
                "log": json.dumps(log),
                "created": created,
                "updated": now,
                "version": version + 1,
            }
            condition = "#version = :version" if current else "attribute_not_exists(#kind)"
            try:
                self.dynamodb.put_item(
                    TableName=self._resources,
                    Item=_marshal(item),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=_names(condition),
                    **(
                        {"ExpressionAttributeValues": _values({"version": version})}
                        if current
                        else {}
                    ),
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    continue  # changed meanwhile: read it again
                raise
            return Resource(kind, name, spec, status, log, created, now)
        raise StoreUnavailable(f"{kind} {name} kept changing; try again")

    @staticmethod
    def _resource(item: Item) -> Resource:
        return Resource(
            kind=item["kind"],
            name=item["name"],
            spec=json.loads(item["spec"]),
            status=item["status"],
            log=json.loads(item["log"]),
            created=float(item["created"]),
            updated=float(item["updated"]),
        )

    def get_resource(self, kind: str, name: str) -> Resource | None:
        item = self._get(self._resources, {"kind": kind, "name": name})
        return self._resource(item) if item else None

    def delete_resource(self, kind: str, name: str) -> None:
        self.dynamodb.delete_item(
            TableName=self._resources, Key=_marshal({"kind": kind, "name": name})
        )

    def list_resources(self, kind: str) -> list[Resource]:
        items = self._query_all(self._resources, "#kind = :kind", {"kind": kind}, consistent=True)
        return [self._resource(item) for item in items]  # in name order, the sort key's

    # submitting -------------------------------------------------------------------------

    def submit(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        if not jobs:
            return []
        judged = self._judge_all(jobs)  # refusals come before anything is written
        for job in jobs:
            if len(job.script.encode()) > SCRIPT_INLINE_BYTES and self.bucket is None:
                raise UsageError(
                    f"script of job {job.name!r} is larger than {SCRIPT_INLINE_BYTES} bytes,"
                    " and this host has no S3 bucket for scripts"
                )
        total = sum(1 if job.array is None else len(job.array.indices) + 1 for job in jobs)
        next_id = self._reserve_ids(total)
        ids: list[int] = []
        items: list[Item] = []
        logs: list[Item] = []
        links: list[tuple[int, str, int]] = []  # owner, kind, target: pending dependencies
        deltas: Counter[CounterKey] = Counter()
        counted: list[tuple[int, list[CounterKey]]] = []  # each job's keys, for the journal
        for job, (pending, never, corr) in zip(jobs, judged, strict=True):
            ids.append(next_id)
            links += [(next_id, kind, target) for kind, target in pending]
            if job.array is None:
                item = self._single_item(job, next_id, pending, never, now)
                items.append(item)
                deltas.update(_counter_keys(item, item["status"]))
                counted.append((next_id, _counter_keys(item, item["status"])))
                if never:
                    event = {"job_id": next_id, "seq": 2, "attempt": 0, "text": never}
                    logs.append({**event, "kind": LogKind.SYSTEM.value, "time": now})
                next_id += 1
            else:
                made = self._array_items(job, next_id, pending, never, corr, now)
                items += made
                view = {"queue": job.queue, "definition": job.definition, "array_id": next_id}
                for status, n in Counter(task["status"] for task in made[1:]).items():
                    for key in _counter_keys(view, status):
                        deltas[key] += n
                counted.append((next_id, []))
                counted += [(t["id"], _counter_keys(view, t["status"])) for t in made[1:]]
                next_id += len(job.array.indices) + 1
        entry = _journal_entry(counted, deltas, now)
        try:
            self._count_submit(entry)
        except Exception:
            self._undo_submit((), entry)
            raise
        writes = [(self._jobs, {"PutRequest": {"Item": _marshal(i)}}) for i in items]
        writes += [(self._log, {"PutRequest": {"Item": _marshal(e)}}) for e in logs]
        try:
            self._write(writes)
        except Exception:
            self._undo_submit(items, entry)
            raise
        self.dynamodb.delete_item(
            TableName=self._counts_name, Key=_marshal({"scope": SUBMITS, "key": entry["key"]})
        )
        if links:
            self._link(links, now)
        return ids

    def _undo_submit(self, items: Sequence[Item], entry: Item) -> None:
        """A submit that failed part-way takes back what it wrote, as far as it can; its ids
        stay used (they are never reused). Its jobs go last first, so that those left by
        a failure here are still the first ones, as the journal expects."""
        try:
            for chunk in reversed(list(_chunks(items, WRITE_BATCH))):
                self._write(
                    [(self._jobs, {"DeleteRequest": {"Key": _marshal({"id": i["id"]})}})
                     for i in chunk]
                )  # fmt: skip
            found = self._get(self._counts_name, {"scope": SUBMITS, "key": entry["key"]})
            if found is not None:
                self._settle_submit(found)
        except Exception:  # the error being raised says more than this one; the tick
            pass  # settles what is left

    # the journal of submits -------------------------------------------------------------

    def _count_submit(self, entry: Item) -> None:
        """A submit's counters, with its journal entry: put with the first transaction of
        counters, then its `applied` raised by each further one, so that it always says
        how many of them were made."""
        deltas = _journal_deltas(entry)
        key = {"scope": SUBMITS, "key": entry["key"]}
        for n, chunk in enumerate(_chunks(deltas, TRANSACTION_ITEMS - 1) if deltas else [[]]):
            if n == 0:
                step = {"Put": {"TableName": self._counts_name,
                                "Item": _marshal({**key, **entry, "applied": 1})}}  # fmt: skip
            else:
                step = {"Update": _update(self._counts_name, key, add={"applied": 1})}
            made = Counter({(sc, k, bool(p)): n for sc, k, p, n in chunk})
            self._transact([*self._counter_actions(made), step])

    def reconcile_counts(self, now: float) -> int:
        """Settle the journal entries of submits cut off (older than SUBMIT_CUT_OFF), a few
        a tick: the counters of their jobs that were never written are taken back. How
        many were settled."""
        settled = 0
        for items, _ in self._query(
            self._counts_name, "#scope = :scope", {"scope": SUBMITS}, consistent=True,
            limit=100,
        ):  # fmt: skip
            for entry in items:
                if float(entry["started"]) <= now - SUBMIT_CUT_OFF:
                    self._settle_submit(entry)
                    settled += 1
                    if settled >= SETTLED_PER_TICK:
                        return settled
        return settled

    def _settle_submit(self, entry: Item) -> None:
        """Take back what a submit that did not finish counted for jobs it never wrote,
        then remove its entry. Each step is a transaction on the entry's `applied`, so a
        settle cut off in turn is taken up where it stopped, never done twice."""
        key = {"scope": SUBMITS, "key": entry["key"]}
        deltas = _journal_deltas(entry)
        chunks = [list(c) for c in _chunks(deltas, TRANSACTION_ITEMS - 1)] or [[]]
        applied = int(entry["applied"])
        if not entry.get("undo") and applied == len(chunks):
            # every counter was made: the jobs never written are the ones to take back
            undo = _journal_deltas(entry, self._unwritten(entry))
            chunks = [list(c) for c in _chunks(undo, TRANSACTION_ITEMS - 1)]
            done = self._update_if(
                _update(
                    self._counts_name, key,
                    set_={"deltas": json.dumps(undo), "applied": len(chunks), "undo": True},
                    condition="#applied = :applied", values={"applied": applied},
                )
            )  # fmt: skip
            if done is None:
                return  # someone else is settling it
            applied = len(chunks)
        while applied > 0:
            back = Counter({(sc, k, bool(p)): -n for sc, k, p, n in chunks[applied - 1]})
            step = _update(
                self._counts_name, key, add={"applied": -1},
                condition="#applied = :applied", values={"applied": applied},
            )  # fmt: skip
            if self._transact([*self._counter_actions(back), {"Update": step}]) is not None:
                return
            applied -= 1
        try:
            self.dynamodb.delete_item(
                TableName=self._counts_name,
                Key=_marshal(key),
                ConditionExpression="#applied = :zero",
                ExpressionAttributeNames={"#applied": "applied"},
                ExpressionAttributeValues=_values({"zero": 0}),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def _unwritten(self, entry: Item) -> list[tuple[int, int]]:
        """The ranges of ids (first, last) of a submit's jobs that are not there. They were
        written in order, WRITE_BATCH at a time, each batch finished before the next: so
        the batches up to one are all there, that one maybe in part, none after it. The
        last batch with any job is found by halving (a few reads), then read in full."""
        first, last = int(entry["first"]), int(entry["last"])
        batches = (last - first) // WRITE_BATCH + 1

        def ids_of(batch: int) -> range:
            start = first + batch * WRITE_BATCH
            return range(start, min(start + WRITE_BATCH, last + 1))

        def any_there(batch: int) -> bool:
            return bool(self._get_jobs(ids_of(batch), "#id"))

        low, high = -1, batches - 1  # the last batch with a job is in (low, high]
        if not any_there(0):
            return [(first, last)]
        low = 0
        while low < high:
            middle = (low + high + 1) // 2
            if any_there(middle):
                low = middle
            else:
                high = middle - 1
        there = set(self._get_jobs(ids_of(low), "#id"))
        missing = [(i, i) for i in ids_of(low) if i not in there]
        if low + 1 < batches:
            missing.append((ids_of(low + 1)[0], last))
        return missing

    def _reserve_ids(self, count: int) -> int:
        """The first of `count` consecutive new ids: one atomic ADD (ids are never reused)."""
        response = self.dynamodb.update_item(
            **_update(self._counts_name, {"scope": "ids", "key": "next"}, add={"n": count}),
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["n"]["N"]) - count + 1

    def _put_script(self, job_id: int, script: str) -> dict[str, Any]:
        data = script.encode()
        if len(data) <= SCRIPT_INLINE_BYTES:
            return {"script": script}
        key = f"scripts/{job_id}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return {"script_s3": key}

    def _single_item(
        self,
        job: NewJob,
        job_id: int,
        pending: list[tuple[str, int]],
        never: str | None,
        now: float,
    ) -> Item:
        status = FAILED if never else self._first_status(job, len(pending))
        item: Item = {
            "id": job_id,
            "kind": "job",
            "name": job.name,
            "queue": job.queue,
            "definition": job.definition,
            "status": status,
            "retries": job.retries,
            "retries_left": job.retries,
            "submit_dir": job.submit_dir,
            "env": json.dumps(job.env),
            "priority": job.priority,
            "time_limit": job.time_limit,
            "options": json.dumps(job.options),
            "deps_left": len(pending) or None,
            "reason": never,
            "created": now,
            "ended": now if never else None,
            "log_seq": 2 if never else 1,  # 1: the submit event, read from the item itself
            "nh": f"s{job.name[:1]}",
            "nk": _name_key(job.name, job_id),
            **self._put_script(job_id, job.script),
        }
        item.update(_index_keys(item))
        return {k: v for k, v in item.items() if v is not None}

    def _array_items(
        self,
        job: NewJob,
        array_id: int,
        pending: list[tuple[str, int]],
        never: str | None,
        corr: list[tuple[list[int], str | None]] | None,
        now: float,
    ) -> list[Item]:
        tasks = job.array
        assert tasks is not None
        size = len(tasks.indices)
        array: Item = {
            "id": array_id,
            "kind": "array",
            "name": job.name,
            "queue": job.queue,
            "definition": job.definition,
            "env": json.dumps(job.env),
            "submit_dir": job.submit_dir,
            "retries": job.retries,
            "priority": job.priority,
            "time_limit": job.time_limit,
            "options": json.dumps(job.options),
            "size": size,
            "cap": tasks.cap,
            "spec": tasks.spec,
            "created": now,
            "log_seq": 1,
            "ak": "array",
            "capped": "1" if tasks.cap else None,
            **self._put_script(array_id, job.script),
        }
        items = [{k: v for k, v in array.items() if v is not None}]
        array_deps = len([k for k, _ in pending if k != "aftercorr"])
        first = FAILED if never else self._first_status(job, array_deps)
        names = tasks.names or [""] * size
        params = tasks.params or [{}] * size
        queue_status = {s: f"{job.queue}{SEP}{s}{SEP}t" for s in (WAITING, BLOCKED, HELD, FAILED)}
        claim_key = f"{job.queue}{SEP}{job.definition}"
        for n, index in enumerate(tasks.indices):
            task_id = array_id + 1 + n
            status, left, reason, waits = first, array_deps, never, None
            if corr is not None and not never:
                waits, corr_reason = corr[n]
                if corr_reason:
                    status, reason = FAILED, corr_reason
                elif waits:
                    left += len(waits)
                    status = self._first_status(job, left)
            # as little as differs between tasks: a million of them are written one by one
            task: Item = {
                "id": task_id,
                "array_id": array_id,
                "array_index": index,
                "status": status,
                "qs": queue_status[status],
            }
            if names[n]:  # named on its own: in the name index (others are found by array)
                task |= {
                    "name": names[n],
                    "nh": f"t{names[n][:1]}",
                    "nk": _name_key(names[n], task_id),
                }
            if params[n]:
                task["params"] = json.dumps(params[n])
            if left:
                task["deps_left"] = left
            if waits:
                task["corr"] = waits
            if reason:
                task["reason"], task["ended"] = reason, now
            if status == WAITING:
                task["ck"], task["co"] = claim_key, _claim_order(job.priority, task_id)
            items.append(task)
        return items

    @staticmethod
    def _first_status(job: NewJob, deps_left: int) -> str:
        if job.hold:
            return HELD
        return BLOCKED if deps_left else WAITING

    def _judge_all(
        self, jobs: Sequence[NewJob]
    ) -> list[tuple[list[tuple[str, int]], str | None, list[tuple[list[int], str | None]] | None]]:
        """Per job: the dependencies still pending, why it can never run (or None), and per
        task of an aftercorr array the targets it waits for and why it can never run."""
        targets = {dep.target for job in jobs for dep in job.depends}
        found = self._complete(list(self._get_jobs(targets).values())) if targets else []
        by_id = {item["id"]: item for item in found}
        judged = []
        for job in jobs:
            pending, never = self._judge_new(job, by_id)
            corr = None
            corr_targets = [t for k, t in pending if k == "aftercorr"]
            if corr_targets and not never and job.array is not None:
                corr = self._corr_pending(corr_targets, job.array.indices, by_id)
            judged.append((pending, never, corr))
        return judged

    def _judge_new(
        self, job: NewJob, found: dict[int, Item]
    ) -> tuple[list[tuple[str, int]], str | None]:
        pending: list[tuple[str, int]] = []
        for dep in dict.fromkeys(job.depends):  # the same dependency twice counts once
            target = found.get(dep.target)
            if dep.kind == "aftercorr":
                if job.array is None:
                    raise UsageError("aftercorr is for arrays: task N waits for task N")
                if target is None or target.get("kind") != "array":
                    raise UsageError(f"aftercorr:{dep.target}: {dep.target} is not an array job")
                pending.append((dep.kind, dep.target))  # judged per task
                continue
            if target is None:
                raise UsageError(f"dependency on unknown job id {dep.target}")
            ok, bad, size = self._state_of(target)
            verdict = judge_dependency(dep.kind, ok=ok, bad=bad, size=size)
            if verdict is Verdict.NEVER:
                return [], never_met(dep.kind, dep.target)
            if verdict is Verdict.PENDING:
                pending.append((dep.kind, dep.target))
        return pending, None

    def _state_of(self, target: Item) -> tuple[int, int, int]:
        """(ok, bad, size) of a dependency's target: a job, or a whole array by its counts."""
        if target.get("kind") == "array":
            counts = self._counts(f"array:{target['id']}")
            bad = sum(counts.get(s, 0) for s in BAD)
            return counts.get(SUCCESSFUL, 0), bad, int(target["size"])
        status = target["status"]
        return int(status == SUCCESSFUL), int(status in BAD), 1

    def _target_state(self, target_id: int) -> tuple[int, int, int]:
        item = self._get(self._jobs, {"id": target_id}, "#id, #kind, #status, #size")
        assert item is not None  # a target is never deleted
        return self._state_of(item)

    def _task_states(self, array_id: int, size: int) -> dict[int, str]:
        """The state of every task of an array by index (strongly consistent, by id)."""
        items = self._get_jobs(
            range(array_id + 1, array_id + size + 1), "#id, #array_index, #status"
        )
        return {item["array_index"]: item["status"] for item in items.values()}

    def _corr_pending(
        self, targets: list[int], indices: list[int], found: dict[int, Item]
    ) -> list[tuple[list[int], str | None]]:
        """Per task: the aftercorr targets it still waits for, and a reason when one can
        never be met. A task with no counterpart has nothing to wait for."""
        result: list[tuple[list[int], str | None]] = [([], None) for _ in indices]
        position = {index: n for n, index in enumerate(indices)}
        for target in targets:
            states = self._task_states(target, int(found[target]["size"]))
            for index, status in states.items():
                n = position.get(index)
                if n is None or status == SUCCESSFUL:
                    continue
                waits, reason = result[n]
                if status in BAD:
                    reason = reason or never_met("aftercorr", target, index)
                else:
                    waits = [*waits, target]
                result[n] = (waits, reason)
        return result

    def _link(self, links: Sequence[tuple[int, str, int]], now: float) -> None:
        """Record pending dependencies, then judge them again. Targets are flagged first, so
        that a target ending from then on looks for what depends on it; one that ended
        before is seen ended when judged again. Settling removes the record on a
        condition, so whichever sees a dependency met first settles it, once."""
        for target in sorted({target for _, _, target in links}):
            self._update_if(
                _update(
                    self._jobs,
                    {"id": target},
                    set_={"dependents": True},
                    add={"version": 1},
                    condition="attribute_exists(#id)",
                )
            )
        self._write(
            [
                (
                    self._deps,
                    {
                        "PutRequest": {
                            "Item": _marshal(
                                {
                                    "target": target,
                                    "dep": f"{owner}{SEP}{kind}",
                                    "owner": owner,
                                    "kind": kind,
                                }
                            )
                        }
                    },
                )
                for owner, kind, target in links
            ]
        )
        ended: list[Ended] = []
        for owner, kind, target in links:
            if kind == "aftercorr":
                ended += self._recheck_corr(owner, target, now)
                continue
            ok, bad, size = self._target_state(target)
            verdict = judge_dependency(kind, ok=ok, bad=bad, size=size)
            ended += self._settle(owner, kind, target, verdict, now)
        self._ended(ended, now)

    def _recheck_corr(self, owner: int, target: int, now: float) -> list[Ended]:
        infos = self._array_infos([owner, target])
        states = self._task_states(target, infos[target].size)
        tasks = self._complete(
            list(self._get_jobs(range(owner + 1, owner + infos[owner].size + 1)).values())
        )
        judged = {}
        for task in tasks:
            status = states.get(task["array_index"])
            if target in task.get("corr", []) and status in FINISHED:
                ok = int(status == SUCCESSFUL)
                judged[task["id"]] = judge_dependency("aftercorr", ok=ok, bad=1 - ok, size=1)
        chosen = [t for t in tasks if t["id"] in judged]
        return self._apply_corr(chosen, target, lambda item: judged[item["id"]], now)

    # reading ------------------------------------------------------------------------------

    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None:
        item = self._get(self._jobs, {"id": job_id})
        if item is None or item.get("kind") == "array":
            return None
        return self._record(self._complete([item])[0], with_script=with_script, task_env=True)

    def get_array(self, array_id: int) -> ArrayRecord | None:
        item = self._get(self._jobs, {"id": array_id})
        if item is None or item.get("kind") != "array":
            return None
        return self._array_record(item)

    def _matches(self, where: JobFilter, item: Item) -> bool:
        if item.get("kind") not in ("job", "task"):
            return False
        if where.queue is not None and item["queue"] != where.queue:
            return False
        if where.name is not None and item["name"] != where.name:
            return False
        if where.definition is not None and item["definition"] != where.definition:
            return False
        if where.name_prefix and not item["name"].startswith(where.name_prefix):
            return False
        if where.statuses and item["status"] not in {s.value for s in where.statuses}:
            return False
        if where.array_id is not None and item.get("array_id") != where.array_id:
            return False
        if where.selects:
            if item["id"] in where.ids:
                return True
            for array_id, indices in where.arrays:
                if item.get("array_id") == array_id and (
                    indices is None or item.get("array_index") in indices
                ):
                    return True
            return False
        return True

    def _stream(
        self,
        condition: str,
        values: Mapping[str, Any],
        index: str,
        *,
        hydrate: bool = False,
        page: int = PAGE,
    ) -> Iterator[Item]:
        """Jobs from a Query of an index, in its order; an index that holds keys only is
        read through BatchGetItem."""
        for items, _ in self._query(self._jobs, condition, values, index=index, limit=page):
            if hydrate:
                found = self._get_jobs(i["id"] for i in items)
                items = [found[i["id"]] for i in items if i["id"] in found]
            yield from self._complete(items)

    def _by_ids(self, ids: Iterable[int]) -> Iterator[Item]:
        ordered = sorted(set(ids))
        for chunk in _chunks(ordered, GET_BATCH):
            found = self._get_jobs(chunk)
            yield from self._complete([found[i] for i in chunk if i in found])

    def _statuses(self, where: JobFilter) -> set[str]:
        return {s.value for s in where.statuses} if where.statuses else {s.value for s in JobStatus}

    def _streams(
        self, where: JobFilter, after: int, page: int, flags: tuple[str, ...]
    ) -> list[Iterator[Item]]:
        """Iterators of jobs in id order past `after`, together at least every job that
        matches `where`, each from the narrowest index the filter allows."""
        if where.selects:
            streams = [self._by_ids(i for i in where.ids if i > after)]
            for array_id, indices in where.arrays:
                streams.append(self._array_stream(array_id, indices, after, page))
            return streams
        if where.array_id is not None:
            return [self._array_stream(where.array_id, None, after, page)]
        if where.name is not None:
            streams = []
            for flag in flags:  # single jobs, and tasks named on their own
                low = f"{where.name[:NAME_KEY_CHARS]}{SEP}{after + 1:019d}"
                high = f"{where.name[:NAME_KEY_CHARS]}{SEP}{'9' * 19}"
                condition = "#nh = :nh AND #nk BETWEEN :low AND :high"
                values = {"nh": f"{flag}{where.name[:1]}", "low": low, "high": high}
                streams.append(
                    self._stream(condition, values, tables.BY_NAME, hydrate=True, page=page)
                )
            if "t" in flags:  # tasks named after their array
                named = self._arrays_where(lambda a: a["name"] == where.name)
                streams += [self._array_stream(a, None, after, page) for a in named]
            return streams
        if where.name_prefix:
            # by name, then id: every match is read to put them in id order (as SQLite does)
            prefix = where.name_prefix
            ids: list[int] = []
            for flag in flags:
                condition = "#nh = :nh AND begins_with(#nk, :prefix)"
                values = {"nh": f"{flag}{prefix[:1]}", "prefix": prefix[:NAME_KEY_CHARS]}
                for items, _ in self._query(self._jobs, condition, values, index=tables.BY_NAME):
                    ids += [i["id"] for i in items if i["id"] > after]
            streams = [self._by_ids(ids)]
            if "t" in flags:
                named = self._arrays_where(lambda a: a["name"].startswith(prefix))
                streams += [self._array_stream(a, None, after, page) for a in named]
            return streams
        statuses = self._statuses(where)
        counted = {
            (q, d, status, flag)
            for q, d, status, flag, n in self._job_counts(where.queue)
            if n > 0 and status in statuses and flag in flags
        }
        if where.definition is not None and where.queue is None:
            wanted = sorted(
                {status for _, d, status, flag in counted if d == where.definition and flag == "s"}
            )
            streams = [
                self._stream(
                    "#dk = :dk AND #id > :after",
                    {"dk": f"{where.definition}{SEP}{status}{SEP}s", "after": after},
                    tables.BY_DEFINITION,
                    hydrate=True,
                    page=page,
                )
                for status in wanted
            ]
            if any(d == where.definition and flag == "t" for _, d, _, flag in counted):
                of_definition = self._arrays_where(lambda a: a["definition"] == where.definition)
                streams += [self._array_stream(a, None, after, page) for a in of_definition]
            return streams
        wanted_qs = sorted(
            {
                (q, status, flag)
                for q, d, status, flag in counted
                if where.definition is None or d == where.definition
            }
        )
        return [
            self._stream(
                "#qs = :qs AND #id > :after",
                {"qs": f"{q}{SEP}{status}{SEP}{flag}", "after": after},
                tables.BY_QUEUE_STATUS,
                hydrate=True,
                page=page,
            )
            for q, status, flag in wanted_qs
        ]

    def _arrays_where(self, test: Callable[[Item], bool]) -> list[int]:
        """The ids of the arrays that pass `test` (arrays are few: one item per submit)."""
        ids = []
        projection = "#id, #name, #queue, #definition"
        for items, _ in self._query(
            self._jobs, "#ak = :ak", {"ak": "array"}, index=tables.ARRAYS, projection=projection
        ):
            ids += [item["id"] for item in items if test(item)]
        return ids

    def _array_stream(
        self, array_id: int, indices: tuple[int, ...] | None, after: int, page: int
    ) -> Iterator[Item]:
        if indices is None:
            return self._stream(
                "#array_id = :array AND #id > :after",
                {"array": array_id, "after": after},
                tables.BY_ARRAY,
                hydrate=True,
                page=page,
            )
        return self._by_ids(self._task_ids(array_id, indices, after))

    def _task_ids(self, array_id: int, indices: Sequence[int], after: int) -> list[int]:
        """The ids of some tasks of an array, by index: one Query per run of indices."""
        wanted = sorted(set(indices))
        if not wanted:
            return []
        runs: list[list[int]] = [[wanted[0], wanted[0]]]
        for index in wanted[1:]:
            if index == runs[-1][1] + 1:
                runs[-1][1] = index
            else:
                runs.append([index, index])
        if len(runs) > 10:  # scattered: one Query over their span, the rest left out
            runs = [[wanted[0], wanted[-1]]]
        chosen = set(wanted)
        ids = []
        for low, high in runs:
            condition = "#array_id = :array AND #array_index BETWEEN :low AND :high"
            values = {"array": array_id, "low": low, "high": high}
            for items, _ in self._query(self._jobs, condition, values, index=tables.BY_ARRAY_INDEX):
                ids += [i["id"] for i in items if i["array_index"] in chosen and i["id"] > after]
        return ids

    def _iterate(
        self,
        where: JobFilter,
        after: int = 0,
        page: int = PAGE,
        flags: tuple[str, ...] = ("s", "t"),
    ) -> Iterator[Item]:
        """Every job that matches, in id order."""
        merged = heapq.merge(*self._streams(where, after, page, flags), key=lambda i: i["id"])
        last = None
        for item in merged:
            if item["id"] == last:
                continue
            last = item["id"]
            if self._matches(where, item) and (flags != ("s",) or item.get("kind") == "job"):
                yield item

    def _select(self, where: JobFilter) -> list[Item]:
        return list(self._iterate(where))

    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int = 0, collapse: bool = False
    ) -> list[JobRecord | ArrayRecord]:
        page = min(max(limit, 10) + 1, PAGE)
        if not collapse or where.array_id is not None or where.selects or where.statuses:
            found = []
            for item in self._iterate(where, after, page):
                found.append(item)
                if len(found) >= limit:
                    break
            return [self._record(item) for item in found]
        # single jobs as they are, each array as one line (filtered by queue and name, as
        # in SQLite)
        singles = []
        for item in self._iterate(where, after, page, flags=("s",)):
            singles.append(item)
            if len(singles) >= limit:
                break
        arrays = []
        for items, _ in self._query(
            self._jobs,
            "#ak = :ak AND #id > :after",
            {"ak": "array", "after": after},
            index=tables.ARRAYS,
            limit=page,
        ):
            for item in items:
                if where.queue is not None and item["queue"] != where.queue:
                    continue
                if where.name is not None and item["name"] != where.name:
                    continue
                if where.name_prefix and not item["name"].startswith(where.name_prefix):
                    continue
                arrays.append(item)
            if len(arrays) >= limit:
                break
        merged = sorted([*singles, *arrays[:limit]], key=lambda i: i["id"])[:limit]
        return [
            self._array_record(item) if item.get("kind") == "array" else self._record(item)
            for item in merged
        ]

    def count_jobs(self, where: JobFilter) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        statuses = self._statuses(where)
        if where.name is None and not where.name_prefix and not where.selects:
            # by queue, definition, array and state: from the counters
            if where.array_id is not None:
                info = self._array_info(where.array_id)
                if info is None or (where.queue or info.queue) != info.queue:
                    return counts
                if (where.definition or info.definition) != info.definition:
                    return counts
                found = self._counts(f"array:{where.array_id}")
                for status, n in found.items():
                    if status in statuses:
                        counts[JobStatus(status)] += n
                return counts
            for _, d, status, _, n in self._job_counts(where.queue):
                if status in statuses and (where.definition is None or d == where.definition):
                    counts[JobStatus(status)] += n
            return counts
        for item in self._iterate(where):
            counts[JobStatus(item["status"])] += 1
        return counts

    def ended_per_minute(self, since: float) -> dict[int, int]:
        # the finished jobs are read by state: no index orders jobs by when they ended
        counts: Counter[int] = Counter()
        for item in self._iterate(JobFilter(statuses=tuple(FINISHED))):
            when = _float(item.get("ended"))
            if when is not None and when >= since:
                counts[int(when // 60) * 60] += 1
        return dict(counts)

    def resolve(self, selectors: Sequence[Selector]) -> JobFilter:
        found = self._get_jobs((s.id for s in selectors), "#id, #kind, #array_id")
        ids: list[int] = []
        arrays: list[tuple[int, tuple[int, ...] | None]] = []
        missing: list[str] = []
        for selector in selectors:
            kind = found.get(selector.id, {}).get("kind")
            if kind == "array":
                arrays.append((selector.id, selector.indices))
            elif selector.indices is not None:
                missing.append(f"{selector.id} (not an array)")
            elif kind is not None:
                ids.append(selector.id)
            else:
                missing.append(str(selector.id))
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise UsageError(f"unknown job id{plural}: {' '.join(missing[:20])}")
        return JobFilter(ids=tuple(ids), arrays=tuple(arrays))

    # changing state -------------------------------------------------------------------------

    def _named(self, where: JobFilter, statuses: Iterable[str], *, among: bool) -> list[int]:
        """Of the job ids a request named, those in (or, among=False, not in) these states."""
        if not where.ids:
            return []
        wanted = set(statuses)
        found = self._get_jobs(where.ids, "#id, #kind, #status")
        return sorted(
            i
            for i, item in found.items()
            if item.get("kind") != "array" and (item["status"] in wanted) == among
        )

    def _unfinished(self, where: JobFilter, states: Iterable[str]) -> list[Item]:
        """The jobs that match and are in one of these states."""
        allowed = set(states) & self._statuses(where)
        chosen = tuple(s for s in JobStatus if s.value in allowed)
        if not chosen:
            return []
        return self._select(dataclasses.replace(where, statuses=chosen))

    def _bulk_events(self, changes: Sequence[_Change], text: str, now: float) -> None:
        """A large change logs one event per array (its jobs logged theirs in the change)."""
        per_array = Counter(c.item["array_id"] for c in changes if c.item.get("kind") == "task")
        for array_id, n in sorted(per_array.items()):
            self._event(array_id, 0, f"{n} tasks: {text}", now)

    def cancel(self, where: JobFilter, now: float) -> CancelResult:
        finished = self._named(where, (s.value for s in FINISHED), among=True)
        items = self._unfinished(where, (s.value for s in UNFINISHED))
        running = {i["id"] for i in items if i["status"] == RUNNING}
        bulk = (
            sum(1 for i in items if i["status"] in {s.value for s in NOT_STARTED})
            > EVENTS_PER_CHANGE
        )
        text = "cancelled before it started"

        def plan(item: Item) -> _Change | None:
            if item["status"] in (WAITING, BLOCKED, HELD):
                events = [] if bulk and item.get("kind") == "task" else [text]
                return _Change(
                    item,
                    {"status": CANCELLED, "cancel_requested": True, "ended": now, "reason": text},
                    events,
                )
            if item["status"] == RUNNING and not item.get("cancel_requested"):
                # its worker stops it at its next report
                return _Change(item, {"cancel_requested": True}, ["cancel requested"])
            return None

        applied = self._transition(items, plan, now)
        ended = [c for c in applied if c.status == CANCELLED]
        stopping = len(running) + sum(
            1 for c in applied if c.status == RUNNING and c.item["id"] not in running
        )
        if bulk:
            self._bulk_events(ended, text, now)
        self._ended([self._ended_of(c) for c in ended], now)
        return CancelResult(len(ended), stopping, finished)

    def hold(self, where: JobFilter, now: float) -> HoldResult:
        return self._set_hold(where, now, hold=True)

    def release(self, where: JobFilter, now: float) -> HoldResult:
        return self._set_hold(where, now, hold=False)

    def _set_hold(self, where: JobFilter, now: float, *, hold: bool) -> HoldResult:
        movable = (WAITING, BLOCKED) if hold else (HELD,)
        unchanged = self._named(where, movable, among=False)  # named, to say so
        items = self._unfinished(where, movable)
        bulk = len(items) > EVENTS_PER_CHANGE
        text = "held" if hold else "released"

        def plan(item: Item) -> _Change | None:
            if item["status"] not in movable:
                return None
            new = HELD if hold else BLOCKED if item.get("deps_left", 0) > 0 else WAITING
            events = [] if bulk and item.get("kind") == "task" else [text]
            return _Change(item, {"status": new}, events)

        applied = self._transition(items, plan, now)
        if bulk:
            self._bulk_events(applied, text, now)
        return HoldResult(len(applied), unchanged)

    def claim(
        self,
        worker_id: str,
        queue: str,
        definition: str,
        limit: int,
        lease: float,
        now: float,
        fits: Fits | None = None,
    ) -> list[JobRecord]:
        claimed: list[JobRecord] = []
        after = ""  # the claim order to continue after
        full: set[int] = set()  # arrays at their cap
        while len(claimed) < limit:
            condition = "#ck = :ck" + (" AND #co > :after" if after else "")
            values = {"ck": f"{queue}{SEP}{definition}", **({"after": after} if after else {})}
            want = min(2 * (limit - len(claimed)) + 1, PAGE)
            items, more = next(
                self._query(self._jobs, condition, values, index=tables.CLAIMABLE, limit=want)
            )
            if not items:
                break
            skipped = False
            for item in self._complete(items):
                after = item["co"]
                array_id = item.get("array_id")
                if array_id is not None and array_id in full:
                    result: JobRecord | str = "full"
                elif fits is not None and not fits(self._request(item)):
                    continue  # more than the worker has left: another worker's
                else:
                    result = self._claim_one(item, worker_id, queue, definition, lease, now)
                if isinstance(result, JobRecord):
                    claimed.append(result)
                    if len(claimed) >= limit:
                        break
                elif result == "full":
                    # an array's tasks are next to each other in this order: skip them all
                    full.add(item["array_id"])
                    after = _claim_order(item["priority"], item["array_id"] + item["array_size"])
                    skipped = True
                    break
            if not skipped and not more and len(claimed) < limit:
                break
        self._touch(worker_id, now)
        return claimed

    def _request(self, item: Item) -> dict[str, Any] | None:
        """What a job asked for (in its options; a task's are its array's)."""
        text = item.get("options")
        if not text and item.get("kind") == "task":
            text = self._array_infos({item["array_id"]})[item["array_id"]].options
        try:
            request = json.loads(text).get("request") if text else None
        except (ValueError, AttributeError):
            return None
        return request if isinstance(request, dict) else None

    def _claim_one(
        self, item: Item, worker_id: str, queue: str, definition: str, lease: float, now: float
    ) -> JobRecord | str:
        """Take one Waiting job: a JobRecord, "gone" (someone else took it) or "full" (its
        array is at its cap)."""
        for _ in range(TRIES):
            if item["status"] != WAITING or (item["queue"], item["definition"]) != (
                queue,
                definition,
            ):
                return "gone"
            attempt = int(item.get("attempt", 0)) + 1
            change = _Change(
                item,
                {
                    "status": RUNNING,
                    "worker_id": worker_id,
                    "attempt": attempt,
                    "lease_until": now + lease,
                    "started": now,
                    "exit_code": None,
                },
                [f"attempt {attempt} started on {worker_id}"],
            )
            actions, _, _ = self._actions(change, now)
            cap = item.get("cap") if item.get("kind") == "task" else None
            codes = self._transact(actions + self._counter_actions(self._deltas(change), cap))
            if codes is None:
                return self._record(change.after, with_script=True, task_env=True)
            if codes[0] != CHECK_FAILED:
                return "full"
            fresh = self._get(self._jobs, {"id": item["id"]})
            if fresh is None:
                return "gone"
            item = self._complete([fresh])[0]  # the index was behind: try the job as it is
        return "gone"

    def heartbeat(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        lease: float,
        now: float,
        process_group: int | None = None,
    ) -> bool:
        set_: dict[str, Any] = {"lease_until": now + lease}
        if process_group is not None:
            set_["pg"] = process_group
        response = self._update_if(
            _update(
                self._jobs,
                {"id": job_id},
                set_=set_,
                add={"version": 1},
                condition="#status = :running AND #worker_id = :worker AND #attempt = :attempt",
                values={"running": RUNNING, "worker": worker_id, "attempt": attempt},
            ),
            ReturnValues="ALL_OLD",
        )
        if response is None:
            raise Conflict(f"worker {worker_id} no longer holds attempt {attempt} of job {job_id}")
        old = _item(response.get("Attributes", {}))
        if process_group is not None and old.get("pg") != process_group:
            attempt_item = {
                "job_id": job_id,
                "attempt": attempt,
                "worker_id": worker_id,
                "pg": process_group,
                "open_worker": worker_id,
            }
            self.dynamodb.put_item(TableName=self._attempts, Item=_marshal(attempt_item))
        self._touch(worker_id, now)
        return bool(old.get("cancel_requested"))

    def process_groups(self, worker_id: str) -> list[tuple[int, int, int]]:
        """(job id, attempt, process group) of the attempts a worker ran, as it reported
        them, that it never reported ended."""
        items = self._query_all(
            self._attempts,
            "#open_worker = :worker",
            {"worker": worker_id},
            index=tables.OPEN_ATTEMPTS,
        )
        return sorted((i["job_id"], i["attempt"], i["pg"]) for i in items)

    def complete(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        exit_code: int | None,
        reason: str | None,
        now: float,
    ) -> JobStatus:
        ending = Ending(job_id, attempt, exit_code, reason, ())
        status = self.complete_many(worker_id, [ending], now)[0]
        if isinstance(status, Conflict):
            raise status
        return status

    def complete_many(
        self, worker_id: str, endings: Sequence[Ending], now: float
    ) -> list[JobStatus | Conflict]:
        """End several attempts, their last output with them; an attempt the worker no
        longer holds gets a Conflict in its place, and its output is dropped. (Each ending
        is its own transaction: one worker's endings touch different jobs.)"""
        results: list[JobStatus | Conflict] = []
        for ending in endings:
            try:
                results.append(self._end_held(worker_id, ending, now))
            except Conflict as conflict:
                results.append(conflict)
        self._touch(worker_id, now)
        return results

    def _end_held(self, worker_id: str, ending: Ending, now: float) -> JobStatus:
        lost = Conflict(
            f"worker {worker_id} no longer holds attempt {ending.attempt} of job {ending.job_id}"
        )
        item = self._get(self._jobs, {"id": ending.job_id})
        if item is None or item.get("kind") == "array":
            raise lost

        def plan(current: Item) -> _Change:
            held = (current["status"], current.get("worker_id"), current.get("attempt"))
            if held != (RUNNING, worker_id, ending.attempt):
                raise lost
            change = self._end_attempt(current, ending.exit_code, ending.reason, now)
            change.output = ending.output
            return change

        (change,) = self._transition(self._complete([item]), plan, now)
        if change.status in {s.value for s in FINISHED}:
            self._ended([self._ended_of(change)], now)
        return JobStatus(change.status)

    def _end_attempt(
        self,
        item: Item,
        exit_code: int | None,
        reason: str | None,
        now: float,
        reclaimed: bool = False,
    ) -> _Change:
        attempt = int(item["attempt"])
        outcome = outcome_of_attempt(
            attempt=attempt,
            exit_code=exit_code,
            retries_left=int(item["retries_left"]),
            cancel_requested=bool(item.get("cancel_requested")),
            reason=reason,
            reclaimed=reclaimed,
        )
        finished = outcome.status in FINISHED
        final_reason = None
        if outcome.status is JobStatus.CANCELLED:
            final_reason = "cancelled"
        elif outcome.status is JobStatus.FAILED:
            final_reason = reason or f"exit code {exit_code}"
        change = _Change(
            item,
            {
                "status": outcome.status.value,
                "retries_left": outcome.retries_left,
                "exit_code": exit_code,
                "reason": final_reason,
                "worker_id": None,
                "lease_until": None,
                "ended": now if finished else None,
                "pg": None,
            },
            [outcome.event],
        )
        if item.get("pg") is not None and exit_code is not None:
            # its process group is no orphan to look for once the attempt reported its end
            request = _update(
                self._attempts,
                {"job_id": item["id"], "attempt": attempt},
                set_={
                    "open_worker": None,
                    "exit_code": exit_code,
                    "ended": now,
                    "outcome": outcome.status.value,
                },
            )
            change.extra.append({"Update": request})
        return change

    @staticmethod
    def _ended_of(change: _Change) -> Ended:
        after = change.after
        return (
            after["id"],
            after.get("array_id"),
            after.get("array_index"),
            JobStatus(after["status"]),
            bool(after.get("dependents")),
        )

    def _deps_on(self, target: int) -> list[_Dep]:
        items = self._query_all(
            self._deps, "#target = :target", {"target": target}, consistent=True
        )
        return [_Dep(int(i["owner"]), str(i["kind"])) for i in items]

    def _ended(self, ended: Sequence[Ended], now: float) -> None:
        """Jobs reached a final state: judge what depends on them (which may end more jobs,
        judged in turn). An array's flag is read after the endings were written: a
        dependent submitted later is judged again after it flagged the array."""
        flagged: dict[int, bool] = {}
        work = list(ended)
        while work:
            job_id, array_id, index, state, dependents = work.pop()
            more: list[Ended] = []
            ok = int(state is JobStatus.SUCCESSFUL)
            if dependents:
                for dep in self._deps_on(job_id):
                    verdict = judge_dependency(dep.kind, ok=ok, bad=1 - ok, size=1)
                    more += self._settle(dep.owner, dep.kind, job_id, verdict, now)
            if array_id is not None:
                if array_id not in flagged:
                    array = self._get(self._jobs, {"id": array_id}, "#dependents")
                    flagged[array_id] = bool(array and array.get("dependents"))
                if flagged[array_id]:
                    for dep in self._deps_on(array_id):
                        if dep.kind == "aftercorr":
                            verdict = judge_dependency("aftercorr", ok=ok, bad=1 - ok, size=1)
                            more += self._settle_task(dep.owner, array_id, index, verdict, now)
                            continue
                        good, bad, size = self._target_state(array_id)
                        verdict = judge_dependency(dep.kind, ok=good, bad=bad, size=size)
                        more += self._settle(dep.owner, dep.kind, array_id, verdict, now)
            work += more

    def _settle(
        self, owner: int, kind: str, target: int, verdict: Verdict, now: float
    ) -> list[Ended]:
        """Apply a judged dependency of a job or a whole array; return the jobs it ended."""
        if verdict is Verdict.PENDING:
            return []
        reason = never_met(kind, target)
        dep_key = {"target": target, "dep": f"{owner}{SEP}{kind}"}
        delete = {
            "Delete": {
                "TableName": self._deps,
                "Key": _marshal(dep_key),
                "ConditionExpression": "attribute_exists(#target)",
                "ExpressionAttributeNames": {"#target": "target"},
            }
        }
        item = self._get(self._jobs, {"id": owner})
        if item is None:
            return []
        if item.get("kind") == "array":
            # the record goes first, on its condition: whoever removes it applies it, to
            # every task (in transactions of up to 100; more than one step for a big array)
            if self._transact([delete]) is not None:
                return []
            ended: list[Ended] = []
            last = owner + int(item["size"])
            for first in range(owner + 1, last + 1, SETTLE_CHUNK):  # a million is read in parts
                chunk = self._get_jobs(range(first, min(first + SETTLE_CHUNK, last + 1)))
                tasks = self._complete(sorted(chunk.values(), key=lambda t: t["id"]))
                ended += self._apply(tasks, verdict, reason, now)
            return ended
        # a single job: the record's removal and the job's change are one transaction
        job = self._complete([item])[0]
        if job["status"] not in (BLOCKED, HELD):
            self._transact([delete])
            return []
        return self._apply([job], verdict, reason, now, extra=[delete])

    def _apply(
        self,
        items: Sequence[Item],
        verdict: Verdict,
        reason: str,
        now: float,
        extra: list[dict[str, Any]] | None = None,
    ) -> list[Ended]:
        """A judged dependency of jobs that have not started: one less to wait for (ready
        when none is left), or never runnable. Returns the jobs it ended."""

        def plan(item: Item) -> _Change | None:
            if item["status"] not in (BLOCKED, HELD):
                return None
            if verdict is Verdict.NEVER:
                change = _Change(
                    item, {"status": FAILED, "reason": reason, "ended": now}, [reason], 0
                )
            else:
                left = int(item.get("deps_left", 0)) - 1
                status = WAITING if item["status"] == BLOCKED and left <= 0 else item["status"]
                change = _Change(item, {"deps_left": left, "status": status})
            change.extra = list(extra or [])
            return change

        applied = self._transition(items, plan, now)
        return [self._ended_of(c) for c in applied if c.status == FAILED]

    def _settle_task(
        self, owner_array: int, target_array: int, index: int | None, verdict: Verdict, now: float
    ) -> list[Ended]:
        """aftercorr: task `index` of `owner_array` waited for task `index` of the target.
        (Found through the array-index index, which may lag a submit by a moment.)"""
        if verdict is Verdict.PENDING or index is None:
            return []
        ids = self._task_ids(owner_array, [index], 0)
        tasks = self._complete(list(self._get_jobs(ids).values()))
        return self._apply_corr(tasks, target_array, lambda _: verdict, now)

    def _apply_corr(
        self,
        tasks: Sequence[Item],
        target: int,
        verdict_of: Callable[[Item], Verdict],
        now: float,
    ) -> list[Ended]:
        """Settle an aftercorr dependency of tasks, each once: the target leaves the task's
        list of what it waits for in the same change."""

        def plan(item: Item) -> _Change | None:
            waits = list(item.get("corr", []))
            if target not in waits or item["status"] not in (BLOCKED, HELD):
                return None
            waits.remove(target)
            verdict = verdict_of(item)
            set_: dict[str, Any] = {"corr": waits or None}
            if verdict is Verdict.NEVER:
                reason = never_met("aftercorr", target, item["array_index"])
                set_ |= {"status": FAILED, "reason": reason, "ended": now}
                return _Change(item, set_, [reason], 0)
            left = int(item.get("deps_left", 0)) - 1
            set_ |= {"deps_left": left}
            if item["status"] == BLOCKED and left <= 0:
                set_["status"] = WAITING
            return _Change(item, set_)

        applied = self._transition(tasks, plan, now)
        return [self._ended_of(c) for c in applied if c.status == FAILED]

    def return_claims(self, worker_id: str, claims: Sequence[tuple[int, int]], now: float) -> int:
        """Jobs a worker claimed but never started go back to waiting, as if never claimed."""
        wanted = dict(claims)
        items = self._complete(list(self._get_jobs(wanted).values()))

        def plan(item: Item) -> _Change | None:
            attempt = wanted[item["id"]]
            if (item["status"], item.get("worker_id"), item.get("attempt")) != (
                RUNNING,
                worker_id,
                attempt,
            ):
                return None
            key = _marshal({"job_id": item["id"], "attempt": attempt})
            delete = {"Delete": {"TableName": self._attempts, "Key": key}}
            return _Change(
                item,
                {
                    "status": WAITING,
                    "attempt": attempt - 1,
                    "worker_id": None,
                    "lease_until": None,
                    "started": None,
                    "pg": None,
                },
                [f"returned unstarted by {worker_id}"],
                attempt - 1,
                extra=[delete],
            )

        return len(self._transition(sorted(items, key=lambda i: i["id"]), plan, now))

    def _leased(self, before: float) -> list[int]:
        """The running jobs whose lease ends before `before`, from every lease shard."""
        return [
            i["id"]
            for shard in LEASE_SHARDS
            for i in self._query_all(
                self._jobs,
                "#leased = :shard AND #lease_until < :before",
                {"shard": shard, "before": before},
                index=tables.LEASES,
            )
        ]

    def expire_leases(self, now: float, keep: Collection[str] = ()) -> list[int]:
        ids = self._leased(now)
        kept = frozenset(keep)
        return self._lose(
            ids,
            lambda item: (
                float(item.get("lease_until") or now) < now
                and str(item.get("worker_id") or "") not in kept
            ),
            "fell silent past its lease",
            now,
        )

    def lease_holders(self, now: float) -> list[str]:
        ids = self._leased(now)
        found = self._get_jobs(ids, "#id, #status, #worker_id") if ids else {}
        return sorted(
            {
                str(i["worker_id"])
                for i in found.values()
                if i.get("status") == RUNNING and i.get("worker_id")
            }
        )

    def abandon(self, worker_id: str, now: float, *, reclaimed: bool = False) -> list[int]:
        """The worker is known to be gone: what it held is lost now, not when leases end."""
        ids = [
            i["id"]
            for i in self._query_all(
                self._jobs, "#worker_id = :worker", {"worker": worker_id}, index=tables.BY_WORKER
            )
        ]
        why = "is gone with its reclaimed machine" if reclaimed else "is gone"
        held = lambda item: item.get("worker_id") == worker_id  # noqa: E731
        return self._lose(ids, held, why, now, reclaimed=reclaimed)

    def _lose(
        self,
        ids: Sequence[int],
        check: Callable[[Item], bool],
        why: str,
        now: float,
        *,
        reclaimed: bool = False,
    ) -> list[int]:
        """End the running attempts that match as lost: each is retried or fails by policy."""
        if not ids:
            return []
        items = self._complete(sorted(self._get_jobs(ids).values(), key=lambda i: i["id"]))

        def plan(item: Item) -> _Change | None:
            if item["status"] != RUNNING or not check(item):
                return None
            reason = f"was lost: worker {item.get('worker_id')} {why}"
            return self._end_attempt(item, None, reason, now, reclaimed)

        applied = self._transition(items, plan, now)
        finished = {s.value for s in FINISHED}
        self._ended([self._ended_of(c) for c in applied if c.status in finished], now)
        return sorted(c.item["id"] for c in applied)

    def extend_leases(self, lease: float, now: float) -> int:
        until = now + lease
        ids = self._leased(until)
        for job_id in ids:  # never shortened: only those that end sooner
            self._update_if(
                _update(
                    self._jobs,
                    {"id": job_id},
                    set_={"lease_until": until},
                    add={"version": 1},
                    condition="#status = :running AND #lease_until < :until",
                    values={"running": RUNNING, "until": until},
                )
            )
        return sum(n for *_, status, _, n in self._job_counts() if status == RUNNING)

    def requests(
        self, queue: str, definition: str, most: int
    ) -> dict[tuple[tuple[str, int], ...], int] | None:
        """Not kept per request here: the scheduler counts jobs."""
        return None

    def demand(self) -> list[tuple[str, str, int, int]]:
        """(queue, definition, waiting, running): waiting counts only the tasks that the
        caps of their arrays let start now."""
        totals: dict[tuple[str, str], list[int]] = {}
        for queue, definition, status, _, n in self._job_counts():
            if status in (WAITING, RUNNING) and n > 0:
                counts = totals.setdefault((queue, definition), [0, 0])
                counts[0 if status == WAITING else 1] += n
        capped = self._query_all(self._jobs, "#capped = :one", {"one": "1"}, index=tables.CAPPED)
        for info in self._array_infos(i["id"] for i in capped).values():
            tasks = self._counts(f"array:{info.id}")
            if sum(tasks.get(s.value, 0) for s in FINISHED) >= info.size:
                # every task ended: no longer looked at (done here, as nothing else knows)
                self._update_if(_update(self._jobs, {"id": info.id}, set_={"capped": None}))
                continue
            pair = (info.queue, info.definition)
            if pair in totals and info.cap is not None:
                waiting, running = tasks.get(WAITING, 0), tasks.get(RUNNING, 0)
                allowed = max(0, min(waiting, info.cap - running))
                totals[pair][0] -= waiting - allowed
        return [(q, d, waiting, running) for (q, d), (waiting, running) in sorted(totals.items())]

    # logs ------------------------------------------------------------------------------

    def append_log(
        self,
        job_id: int,
        attempt: int,
        entries: Sequence[tuple[LogKind, str]],
        now: float,
        *,
        output_limit: int | None = None,
    ) -> None:
        """Sequence numbers come from the job's counter (one ADD), then the entries are
        written. Two writers of one job's log at once (its worker, a cancel) could make a
        reader at that instant see a later entry before an earlier one; the job's own
        changes write their events in their transaction. With `output_limit`, the bytes of
        output kept for the attempt are counted on the job's item (output_kept_<attempt>),
        read and set with a condition, so that two writers never both take the room left."""
        if output_limit is not None and any(k in output.OUTPUT_KINDS for k, _ in entries):
            self._append_limited(job_id, attempt, entries, now, output_limit)
            return
        split = _split_output(entries)
        if not split:
            return
        response = self._update_if(
            _update(
                self._jobs,
                {"id": job_id},
                add={"log_seq": len(split), "version": 1},
                condition="attribute_exists(#id)",
            ),
            ReturnValues="UPDATED_NEW",
        )
        if response is None:
            return  # no such job: nothing could read these
        self._put_log(job_id, attempt, split, int(response["Attributes"]["log_seq"]["N"]), now)

    def _append_limited(
        self,
        job_id: int,
        attempt: int,
        entries: Sequence[tuple[LogKind, str]],
        now: float,
        limit: int,
    ) -> None:
        counter = f"output_kept_{int(attempt)}"
        while True:
            item = self._get(self._jobs, {"id": job_id}, f"#id, #{counter}")
            if item is None:
                return  # no such job: nothing could read these
            counted = counter in item
            before = int(item.get(counter, 0))
            kept, after = output.within(entries, before, limit)
            split = _split_output(kept)
            condition = f"#{counter} = :before" if counted else f"attribute_not_exists(#{counter})"
            response = self._update_if(
                _update(
                    self._jobs,
                    {"id": job_id},
                    set_={counter: after},
                    add={"log_seq": len(split), "version": 1},
                    condition=f"attribute_exists(#id) AND {condition}",
                    values={"before": before} if counted else None,
                ),
                ReturnValues="UPDATED_NEW",
            )
            if response is not None:
                break  # else another writer counted output meanwhile: count again
        if split:
            self._put_log(job_id, attempt, split, int(response["Attributes"]["log_seq"]["N"]), now)

    def _put_log(
        self,
        job_id: int,
        attempt: int,
        split: Sequence[tuple[LogKind, str]],
        last: int,
        now: float,
    ) -> None:
        """Write entries whose sequence numbers end at `last` (reserved already)."""
        first = last - len(split) + 1
        self._write(
            [
                (
                    self._log,
                    {
                        "PutRequest": {
                            "Item": _marshal(
                                {
                                    "job_id": job_id,
                                    "seq": first + n,
                                    "attempt": attempt,
                                    "kind": kind.value,
                                    "time": now,
                                    "text": text,
                                }
                            )
                        }
                    },
                )
                for n, (kind, text) in enumerate(split)
            ]
        )

    def read_log(
        self, job_id: int, kinds: Sequence[LogKind], *, after: int = 0, limit: int = 1000
    ) -> list[LogEntry]:
        wanted = {k.value for k in (kinds or tuple(LogKind))}
        entries: list[LogEntry] = []
        if LogKind.SYSTEM.value in wanted and after < 1:
            # the submit event is not written with the job (one item per job keeps a
            # submit at 25 jobs a call): it is read from the job itself, as entry 1
            item = self._get(self._jobs, {"id": job_id}, "#kind, #queue, #size, #created")
            if item and item.get("kind") in ("job", "array"):
                text = f"submitted to queue {item['queue']}"
                if item["kind"] == "array":
                    text = f"array of {item['size']} tasks submitted to queue {item['queue']}"
                entries.append(LogEntry(1, job_id, 0, LogKind.SYSTEM, float(item["created"]), text))
        filter_ = None
        values: dict[str, Any] = {"job": job_id, "after": max(after, 0)}
        if len(wanted) < len(LogKind):
            filter_ = "#kind IN (" + ", ".join(f":k{n}" for n in range(len(wanted))) + ")"
            values |= {f"k{n}": kind for n, kind in enumerate(sorted(wanted))}
        for items, _ in self._query(
            self._log,
            "#job_id = :job AND #seq > :after",
            values,
            consistent=True,
            filter_=filter_,
            limit=min(limit + 1, 1000),
        ):
            for i in items:
                entries.append(
                    LogEntry(
                        i["seq"],
                        job_id,
                        i["attempt"],
                        LogKind(i["kind"]),
                        float(i["time"]),
                        i["text"],
                    )
                )
            if len(entries) >= limit:
                break
        return entries[:limit]

    # workers ---------------------------------------------------------------------------

    def add_worker(self, worker: WorkerRecord) -> None:
        item = dataclasses.asdict(worker)
        if worker.state != "EXITED":
            item["live"] = live_shard(worker.id)
        if worker.state == "ASSIGNED" and worker.node:
            item["assigned_node"] = worker.node
        self.dynamodb.put_item(TableName=self._workers, Item=_marshal(item))

    def _touch(self, worker_id: str, now: float) -> None:
        self._update_if(
            _update(
                self._workers,
                {"id": worker_id},
                set_={"last_seen": now, "state": "ACTIVE", "assigned_node": None},
                condition="attribute_exists(#id) AND #state <> :exited",
                values={"exited": "EXITED"},
            )
        )

    def claim_tick(self, owner: str, now: float, seconds: float) -> bool:
        """A lease item in the counts table, taken on the condition that no other owner
        holds one that is still valid."""
        claimed = self._update_if(
            _update(
                self._counts_name,
                TICK_LEASE,
                set_={"owner": owner, "until": now + seconds},
                condition="attribute_not_exists(#owner) OR #until < :now OR #owner = :me",
                values={"now": now, "me": owner},
            )
        )
        return claimed is not None

    def release_tick(self, owner: str) -> None:
        self._update_if(
            _update(
                self._counts_name,
                TICK_LEASE,
                set_={"owner": None, "until": None},
                condition="#owner = :me",
                values={"me": owner},
            )
        )

    def touch_worker(self, worker_id: str, now: float) -> None:
        self._touch(worker_id, now)

    def end_worker(self, worker_id: str, now: float) -> None:
        self._update_if(
            _update(
                self._workers,
                {"id": worker_id},
                set_={"state": "EXITED", "ended": now, "live": None, "assigned_node": None},
                condition="attribute_exists(#id) AND #state <> :exited",
                values={"exited": "EXITED"},
            )
        )

    @staticmethod
    def _worker(item: Item) -> WorkerRecord:
        return WorkerRecord(
            id=item["id"],
            queue=item["queue"],
            definition=item["definition"],
            region=item["region"],
            launcher=item["launcher"],
            pid=item.get("pid"),
            state=item["state"],
            started=float(item["started"]),
            last_seen=float(item["last_seen"]),
            ended=_float(item.get("ended")),
            node=item.get("node"),
        )

    def live_workers(self) -> list[WorkerRecord]:
        """From the sparse index of live workers (it may trail a change by a moment)."""
        items = [
            item
            for shard in LIVE_SHARDS
            for item in self._query_all(
                self._workers, "#live = :shard", {"shard": shard}, index=tables.LIVE_WORKERS
            )
        ]
        return sorted((self._worker(i) for i in items), key=lambda w: w.started)

    # nodes of static regions ---------------------------------------------------------------

    def join_node(self, node: NodeRecord) -> None:
        expression = (
            "SET #region = :region, #definition = :definition, #slots = :slots,"
            " #hostname = :hostname, #last_seen = :last_seen,"
            " #joined = if_not_exists(#joined, :joined)"
        )
        values = {
            "region": node.region,
            "definition": node.definition,
            "slots": node.slots,
            "hostname": node.hostname,
            "last_seen": node.last_seen,
            "joined": node.joined,
        }
        self.dynamodb.update_item(
            TableName=self._nodes,
            Key=_marshal({"scope": "node", "id": node.id}),
            UpdateExpression=expression,
            ExpressionAttributeNames=_names(expression),
            ExpressionAttributeValues=_values(values),
        )

    def nodes(self, region: str | None = None) -> list[NodeRecord]:
        items = self._query_all(self._nodes, "#scope = :node", {"node": "node"}, consistent=True)
        return [
            NodeRecord(
                id=i["id"],
                region=i["region"],
                definition=i["definition"],
                slots=i["slots"],
                hostname=i["hostname"],
                joined=float(i["joined"]),
                last_seen=float(i["last_seen"]),
            )
            for i in items
            if region is None or i["region"] == region
        ]

    def leave_node(self, node_id: str) -> None:
        self.dynamodb.delete_item(
            TableName=self._nodes, Key=_marshal({"scope": "node", "id": node_id})
        )

    def take_assignments(self, node_id: str, now: float) -> list[WorkerRecord]:
        """Workers the scheduler placed on a node that the node has not started yet."""
        self._update_if(
            _update(
                self._nodes,
                {"scope": "node", "id": node_id},
                set_={"last_seen": now},
                condition="attribute_exists(#id)",
            )
        )
        assigned = self._query_all(
            self._workers,
            "#assigned_node = :node",
            {"node": node_id},
            index=tables.ASSIGNED_WORKERS,
        )
        taken = []
        for item in assigned:
            response = self._update_if(
                _update(
                    self._workers,
                    {"id": item["id"]},
                    set_={"state": "STARTING", "last_seen": now, "assigned_node": None},
                    condition="#state = :assigned",
                    values={"assigned": "ASSIGNED"},
                ),
                ReturnValues="ALL_NEW",
            )
            if response is not None:  # else another poll took it first
                taken.append(self._worker(_item(response["Attributes"])))
        return taken

    # files ---------------------------------------------------------------------------------

    def _file_bucket(self) -> str:
        if self.bucket is None:
            raise StoreUnavailable("this host has no S3 bucket to keep files in")
        return self.bucket

    def put_file(self, key: str, data: bytes, now: float) -> None:
        self.s3.put_object(Bucket=self._file_bucket(), Key=FILES + key, Body=data)

    def get_file(self, key: str) -> bytes | None:
        try:
            answer = self.s3.get_object(Bucket=self._file_bucket(), Key=FILES + key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        return bytes(answer["Body"].read())

    def delete_files(self, prefix: str) -> int:
        bucket = self._file_bucket()
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=FILES + prefix
        )
        keys = [
            item["Key"]
            for page in pages
            for item in page.get("Contents", [])
            if is_under(item["Key"][len(FILES) :], prefix)  # not "prefix2/..." nor "prefixes"
        ]
        for chunk in _chunks(keys, S3_DELETE_BATCH):
            self.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
        return len(keys)

    # workflows -----------------------------------------------------------------------------

    @staticmethod
    def _workflow_key(kind: str, workflow_id: int) -> dict[str, Any]:
        return {"kind": kind, "name": f"{workflow_id:019d}"}  # names sort as ids

    @staticmethod
    def _workflow(item: Item) -> WorkflowRecord:
        return WorkflowRecord(
            id=int(item["name"]),
            finished=bool(item["finished"]),
            data=json.loads(item["data"]),
            version=int(item["version"]),
            created=float(item["created"]),
            updated=float(item["updated"]),
        )

    def add_workflow(self, data: dict[str, Any], now: float) -> WorkflowRecord:
        response = self.dynamodb.update_item(
            **_update(self._counts_name, {"scope": "ids", "key": WORKFLOW}, add={"n": 1}),
            ReturnValues="UPDATED_NEW",
        )
        workflow_id = int(response["Attributes"]["n"]["N"])
        item = {
            **self._workflow_key(WORKFLOW, workflow_id),
            "finished": False,
            "data": json.dumps(data),
            "version": 1,
            "created": now,
            "updated": now,
        }
        marker = self._workflow_key(OPEN_WORKFLOW, workflow_id)
        self._transact(
            [
                {"Put": {"TableName": self._resources, "Item": _marshal(item)}},
                {"Put": {"TableName": self._resources, "Item": _marshal(marker)}},
            ]
        )
        return self._workflow(item)

    def get_workflow(self, workflow_id: int) -> WorkflowRecord | None:
        item = self._get(self._resources, self._workflow_key(WORKFLOW, workflow_id))
        return self._workflow(item) if item else None

    def list_workflows(self, *, unfinished: bool = False, limit: int = 100) -> list[WorkflowRecord]:
        request: dict[str, Any] = {
            "TableName": self._resources,
            "KeyConditionExpression": "#kind = :kind",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": _values(
                {"kind": OPEN_WORKFLOW if unfinished else WORKFLOW}
            ),
            "ScanIndexForward": False,  # newest first
            "ConsistentRead": True,
        }
        items: list[Item] = []
        while len(items) < limit:
            response = self.dynamodb.query(**request, Limit=limit - len(items))
            items += [_item(raw) for raw in response.get("Items", [])]
            if not response.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        if not unfinished:
            return [self._workflow(item) for item in items]
        found = (self.get_workflow(int(marker["name"])) for marker in items)
        return [record for record in found if record is not None]

    def update_workflow(
        self, record: WorkflowRecord, data: dict[str, Any], *, finished: bool, now: float
    ) -> WorkflowRecord:
        update = _update(
            self._resources,
            self._workflow_key(WORKFLOW, record.id),
            set_={"data": json.dumps(data), "finished": finished, "updated": now},
            add={"version": 1},
            condition="#version = :version",
            values={"version": record.version},
        )
        actions = [{"Update": update}]
        if finished:
            marker = _marshal(self._workflow_key(OPEN_WORKFLOW, record.id))
            actions.append({"Delete": {"TableName": self._resources, "Key": marker}})
        if self._transact(actions) is not None:
            raise Conflict(f"workflow {record.id} changed meanwhile")
        return dataclasses.replace(
            record, finished=finished, data=data, version=record.version + 1, updated=now
        )
