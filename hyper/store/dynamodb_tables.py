"""The DynamoDB tables of a host, as data: one ``create_table`` request per table.

``table_definitions`` is pure data so that the AWS host template
(``hyper/providers/aws/templates.py``) can turn the same tables into CloudFormation;
``create_tables`` makes them through a boto3 client (tests, local use). The DynamoDB
store (``hyper/store/dynamodb/``) reads and writes them; the attributes named here are
the keys and index keys it maintains.

Every table is PAY_PER_REQUEST. Index key attributes are written only on the items an
index is for (sparse indexes): ``ck``/``co`` only while a job is Waiting, ``leased`` and
``worker_id`` only while it runs, ``ak`` only on arrays, ``capped`` only on arrays with a
cap that may still run tasks; the name and definition indexes hold single jobs (and tasks
named on their own), as an array's tasks are found through their array.

DynamoDB writes an index only when an item's key or projected attributes in it change.
A heartbeat changes a running job's lease, process group and version: the indexes a
running job is in (queue-status, array, lease, worker) project keys only, so a
heartbeat writes the lease index alone (its sort key is the lease's end; its partitions
are sharded), and listings read the jobs they find by id. Only the claim index (Waiting
jobs, which nobody heartbeats) and the arrays index (array items; the fields it projects
never change, unlike the plan and count of made tasks, which it leaves out) project more.
"""

from __future__ import annotations

from typing import Any

JOBS = "jobs"
COUNTS = "counts"
DEPS = "deps"
LOG = "log"
ATTEMPTS = "attempts"
WORKERS = "workers"
NODES = "nodes"
RESOURCES = "resources"
TABLES = (JOBS, COUNTS, DEPS, LOG, ATTEMPTS, WORKERS, NODES, RESOURCES)

# indexes of the jobs table
BY_QUEUE_STATUS = "queue-status"  # qs = queue, status, s|t (single job or task); by id
BY_NAME = "name"  # nh = s|t + first letter of the name; nk = name, id
BY_DEFINITION = "definition"  # dk = definition, status; by id (single jobs)
BY_ARRAY = "array"  # the tasks of an array, by id
BY_ARRAY_INDEX = "array-index"  # the tasks of an array, by index
CLAIMABLE = "claim"  # ck = queue, definition (Waiting only); co = priority (high first), id
LEASES = "lease"  # running jobs by the end of their lease
BY_WORKER = "worker"  # running jobs by the worker that holds them
ARRAYS = "arrays"  # arrays by id (ak is "array")
CAPPED = "capped"  # arrays with a cap whose tasks have not all ended
# indexes of the other tables
OPEN_ATTEMPTS = "open"  # attempts: those with a process group and no exit code, by worker
LIVE_WORKERS = "live"  # workers that have not exited, by start time
ASSIGNED_WORKERS = "assigned"  # workers assigned to a machine that has not started them


# every key attribute of the jobs table and its indexes, with its type
JOB_KEYS = (
    ("id", "N"), ("qs", "S"), ("nh", "S"), ("nk", "S"), ("dk", "S"), ("array_id", "N"),
    ("array_index", "N"), ("ck", "S"), ("co", "S"), ("leased", "S"), ("lease_until", "N"),
    ("worker_id", "S"), ("ak", "S"), ("capped", "S"),
)  # fmt: skip


# what the arrays index holds of an array (all but its script)
ARRAY_FIELDS = (
    "kind", "name", "queue", "definition", "env", "submit_dir", "retries", "priority",
    "time_limit", "options", "size", "cap", "spec", "created", "highest_exit",
)  # fmt: skip


def table_name(prefix: str, table: str) -> str:
    return f"{prefix}-{table}"


def _attributes(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "AttributeType": kind} for name, kind in pairs]


def _keys(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key is not None:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return keys


def _index(
    name: str, hash_key: str, range_key: str, projection: str = "ALL", include: tuple[str, ...] = ()
) -> dict[str, Any]:
    shape: dict[str, Any] = {"ProjectionType": projection}
    if include:
        shape["NonKeyAttributes"] = list(include)
    return {"IndexName": name, "KeySchema": _keys(hash_key, range_key), "Projection": shape}


def _table(
    prefix: str,
    table: str,
    keys: list[dict[str, str]],
    attributes: list[dict[str, str]],
    indexes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "TableName": table_name(prefix, table),
        "KeySchema": keys,
        "AttributeDefinitions": attributes,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if indexes:
        definition["GlobalSecondaryIndexes"] = indexes
    return definition


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """The host's tables, each as the keyword arguments of boto3's ``create_table``."""
    return [
        # jobs: every job, array task and array by id (one id space); indexes for qstat and claims
        _table(
            prefix,
            JOBS,
            _keys("id"),
            _attributes(*JOB_KEYS),
            [
                _index(BY_QUEUE_STATUS, "qs", "id", "KEYS_ONLY"),
                _index(BY_NAME, "nh", "nk", "KEYS_ONLY"),
                _index(BY_DEFINITION, "dk", "id", "KEYS_ONLY"),
                _index(BY_ARRAY, "array_id", "id", "KEYS_ONLY"),
                _index(BY_ARRAY_INDEX, "array_id", "array_index", "KEYS_ONLY"),
                _index(CLAIMABLE, "ck", "co"),
                _index(LEASES, "leased", "lease_until", "KEYS_ONLY"),
                _index(BY_WORKER, "worker_id", "id", "KEYS_ONLY"),
                _index(ARRAYS, "ak", "id", "INCLUDE", ARRAY_FIELDS),
                _index(CAPPED, "capped", "id", "KEYS_ONLY"),
            ],
        ),
        # counts: the id counter, and sharded job counts per (queue, definition, state) and array
        _table(prefix, COUNTS, _keys("scope", "key"), _attributes(("scope", "S"), ("key", "S"))),
        # deps: the dependencies still pending, by the job or array they wait for
        _table(prefix, DEPS, _keys("target", "dep"), _attributes(("target", "N"), ("dep", "S"))),
        # log: a job's output and events (job_log), by job and sequence number
        _table(prefix, LOG, _keys("job_id", "seq"), _attributes(("job_id", "N"), ("seq", "N"))),
        # attempts: where each attempt runs (its process group), by job and attempt number
        _table(
            prefix,
            ATTEMPTS,
            _keys("job_id", "attempt"),
            _attributes(("job_id", "N"), ("attempt", "N"), ("open_worker", "S")),
            [_index(OPEN_ATTEMPTS, "open_worker", "job_id", "INCLUDE", ("pg",))],
        ),
        # workers: worker agents by id; the live ones and those assigned to a machine indexed
        _table(
            prefix,
            WORKERS,
            _keys("id"),
            _attributes(("id", "S"), ("live", "S"), ("started", "N"), ("assigned_node", "S")),
            [
                _index(LIVE_WORKERS, "live", "started"),
                _index(ASSIGNED_WORKERS, "assigned_node", "id"),
            ],
        ),
        # nodes: machines of static regions, few, in one partition ("node") by id
        _table(prefix, NODES, _keys("scope", "id"), _attributes(("scope", "S"), ("id", "S"))),
        # resources: regions, clusters, queues, images and definitions by kind and name
        _table(prefix, RESOURCES, _keys("kind", "name"), _attributes(("kind", "S"), ("name", "S"))),
    ]


def create_tables(client: Any, prefix: str) -> None:
    """Create the tables through a boto3 DynamoDB client and wait until they are active."""
    definitions = table_definitions(prefix)
    for definition in definitions:
        client.create_table(**definition)
    waiter = client.get_waiter("table_exists")
    for definition in definitions:
        waiter.wait(TableName=definition["TableName"], WaiterConfig={"Delay": 1})
