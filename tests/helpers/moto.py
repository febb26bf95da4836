"""A moto server on loopback for tests that reach AWS from other processes.

moto keeps its state in this process, across servers, so every server starts from a
reset. With AWS's managed policies loaded (Batch's service roles need them) a reset
reloads them for every account moto has seen, which takes seconds on a busy machine: it
is waited for with a generous bound, never a short fixed timeout.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

# how long a reset or a setting may take on a busy 2-core machine before it is a failure
MOTO_API_SECONDS = 300.0


def _moto_api(endpoint: str, path: str, body: object | None = None) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method="POST",
    )
    urllib.request.urlopen(request, timeout=MOTO_API_SECONDS).close()


def forget_transaction_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each DynamoDB transaction in moto deep-copies every table it touches, to roll back
    on failure, and moto keeps every model object it makes for its dashboard: a 1,000-job
    run kept every copy (about 1 GB a minute) and spent three quarters of its time
    copying. Here a transaction's copy of a table copies only the items it names (the
    others cannot change under it), and the copies are forgotten afterwards."""
    from moto.core.model_instances import model_data
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    transact = DynamoDBBackend.transact_write_items
    named: dict[str, set[tuple[Any, Any]]] = {}  # table: the keys the transaction names

    def keys_of(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        named.clear()
        for item in transact_items:
            (op,) = item.values()
            table = self.tables.get(op.get("TableName", ""))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            hash_value = key.get(table.hash_key_attr)
            range_value = key.get(table.range_key_attr) if table.range_key_attr else None
            named.setdefault(table.name, set()).add(
                (
                    DynamoType(hash_value) if hash_value else None,
                    DynamoType(range_value) if range_value else None,
                )
            )

    def copy_named_items(table: Table, memo: dict[int, Any]) -> Table:
        copied = copy.copy(table)
        items = copy.copy(table.items)  # the same kind of dict, its values shared
        if table.has_range_key:
            for hash_value, ranged in items.items():
                items[hash_value] = dict(ranged)
        for hash_value, range_value in named.get(table.name, ()):
            if hash_value is None or hash_value not in items:
                continue
            if table.has_range_key:
                if range_value in items[hash_value]:
                    item = items[hash_value][range_value]
                    items[hash_value][range_value] = copy.deepcopy(item, memo)
            else:
                items[hash_value] = copy.deepcopy(items[hash_value], memo)
        copied.items = items
        return copied

    def forgetting(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        keys_of(self, transact_items)
        try:
            transact(self, transact_items)
        finally:
            named.clear()
            for model in model_data["dynamodb"].values():
                model.instances_tracked = []  # type: ignore[attr-defined]

    monkeypatch.setattr(Table, "__deepcopy__", copy_named_items, raising=False)
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", forgetting)


def no_iam_propagation(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's IAM is consistent at once: the AWS providers built in this process (a host's
    deploy function behind the loopback gateway) give new roles no 10 s per region to
    reach Batch and EC2 (tests/test_aws_batch.py tests that wait)."""
    from hyper.providers.aws import batch as aws_batch

    quick = functools.partial(aws_batch.Patience, propagation=0.0)
    monkeypatch.setattr(aws_batch, "Patience", quick)


def bucket_policy_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto evaluates a bucket policy's statements without their conditions (its
    put_bucket_policy says so), so a Deny for some principals (the code bucket's, for
    the roles hosts' deploy functions make) denies everyone; S3 takes the conditions.
    Here a statement with a condition is left out: what S3 does for the principals
    these tests call as (moto's user), which no such condition names."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy)
        found = document.get("Statement", [])
        found = found if isinstance(found, list) else [found]
        document["Statement"] = [s for s in found if "Condition" not in s]
        return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)

    monkeypatch.setattr(FakeBucket, "get_permission", get_permission)


@contextlib.contextmanager
def moto_server(
    monkeypatch: pytest.MonkeyPatch, *, managed_policies: bool = False, batch: bool = False
) -> Iterator[str]:
    """A fresh moto server's endpoint, reset; `managed_policies` loads AWS's managed IAM
    policies, `batch` runs Batch jobs without docker."""
    forget_transaction_copies(monkeypatch)
    no_iam_propagation(monkeypatch)
    bucket_policy_conditions(monkeypatch)
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true" if managed_policies else "false")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    try:
        started = time.monotonic()
        _moto_api(endpoint, "reset")
        if batch:
            _moto_api(endpoint, "config", {"batch": {"use_docker": False}})
        took = time.monotonic() - started
        if took > 10:  # worth knowing when the suite slows, not a failure
            print(f"moto's reset took {took:.0f} s")
        yield endpoint
    finally:
        # what the test made stays in this process until a reset: gigabytes after a long
        # run, which slow every later test and the interpreter's exit
        with contextlib.suppress(OSError):
            _moto_api(endpoint, "reset")
        server.stop()


def batch_child_environment(job: dict[str, Any], region: str) -> dict[str, str]:
    """What a submitted Batch job's container starts with: its environment, and its job
    definition's `secrets` read from Secrets Manager (as the ECS agent does with the
    definition's execution role)."""
    import boto3

    found = {e["name"]: e["value"] for e in job["container"]["environment"]}
    batch = boto3.client("batch", region_name=region)
    (definition,) = batch.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])[
        "jobDefinitions"
    ]
    secrets = boto3.client("secretsmanager", region_name=region)
    for secret in definition["containerProperties"].get("secrets", []):
        found[secret["name"]] = secrets.get_secret_value(SecretId=secret["valueFrom"])[
            "SecretString"
        ]
    return found
