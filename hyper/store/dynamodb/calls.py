"""The DynamoDB store's calls: clients, reads, batched writes, queries and transactions."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from hyper.aws_buckets import expect_bucket_owner
from hyper.aws_errors import error_code
from hyper.errors import StoreUnavailable
from hyper.store import dynamodb_tables as tables
from hyper.store.dynamodb.items import (
    CHECK_FAILED,
    GET_BATCH,
    RETRYABLE,
    TRIES,
    WRITE_BATCH,
    Item,
    _Array,
    _chunks,
    _item,
    _marshal,
    _names,
    _pause,
    _raise_throttled,
    _values,
)


class Calls:
    """The tables and bucket through boto3: clients made on first use, reads, batched
    writes, queries, transactions, each retried with back-off where DynamoDB throttles."""

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
        self._s3_links: Any = None
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

    @property
    def s3_links(self) -> Any:
        """A client that presigns URLs of the bucket's objects: Signature Version 4, and the
        bucket's regional virtual-hosted address (a new bucket outside us-east-1 answers
        its global address with a redirect, which breaks a signed request), or the path
        under an endpoint set by `AWS_ENDPOINT_URL` (as in tests)."""
        if self._s3_links is None:
            with self._lock:
                if self._s3_links is None:
                    import boto3
                    from botocore.config import Config

                    elsewhere = any(
                        os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
                    )
                    style = "path" if elsewhere else "virtual"
                    config = Config(signature_version="s3v4", s3={"addressing_style": style})
                    client = boto3.client("s3", region_name=self.region, config=config)
                    if self.bucket_owner:
                        expect_bucket_owner(client, self.bucket_owner)
                    self._s3_links = client
        return self._s3_links

    def close(self) -> None:
        for client in (self._dynamodb, self._s3, self._s3_links):
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
