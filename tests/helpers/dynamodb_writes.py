"""Writes to DynamoDB tables and their global secondary indexes, counted per partition
key as DynamoDB counts them, for a boto3 client under moto.

moto keeps no index write counts, so they are worked out from each written item as it
was before and after the write, by DynamoDB's rules for index writes (the developer
guide's page on global secondary indexes, "Write capacity units"): an item enters or
leaves an index as its key attributes appear or go (one write); a change of an index key
is a delete and a put (two writes, one on each partition); a change of a projected
attribute is one write; a write that changes neither writes nothing to the index.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3

Raw = dict[str, Any]  # an item as DynamoDB's wire format has it


@dataclass(frozen=True)
class _Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    include: frozenset[str]


@dataclass
class _Table:
    keys: tuple[str, ...]
    indexes: list[_Index]


@dataclass
class WriteCounter:
    """Every write a client makes from its creation on: `per_partition` counts them by
    (table or table/index, partition key value)."""

    client: Any
    per_partition: Counter[tuple[str, str]] = field(default_factory=Counter)
    _reader: Any = None
    _tables: dict[str, _Table] = field(default_factory=dict)
    _pending: list[tuple[str, Raw, Raw | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = boto3.client("dynamodb", region_name=self.client.meta.region_name)
        self.client.meta.events.register("before-parameter-build.dynamodb", self._before)
        self.client.meta.events.register("after-call.dynamodb", self._after)

    def writes_of(self, prefix: str) -> dict[str, int]:
        """The writes of each partition of a table or index (by "table" or "table/index")."""
        return {key: n for (where, key), n in self.per_partition.items() if where == prefix}

    def _table(self, name: str) -> _Table:
        if name not in self._tables:
            found = self._reader.describe_table(TableName=name)["Table"]
            indexes = [
                _Index(
                    index["IndexName"],
                    tuple(k["AttributeName"] for k in index["KeySchema"]),
                    index["Projection"]["ProjectionType"],
                    frozenset(index["Projection"].get("NonKeyAttributes", ())),
                )
                for index in found.get("GlobalSecondaryIndexes", [])
            ]
            keys = tuple(k["AttributeName"] for k in found["KeySchema"])
            self._tables[name] = _Table(keys, indexes)
        return self._tables[name]

    def _targets(self, operation: str, params: dict[str, Any]) -> list[tuple[str, Raw]]:
        """(table, key) of each item a write request may change."""

        def key_of(table: str, item: Raw) -> Raw:
            return {k: item[k] for k in self._table(table).keys}

        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = params["TableName"]
            return [(table, key_of(table, params.get("Key") or params["Item"]))]
        found: list[tuple[str, Raw]] = []
        if operation == "TransactWriteItems":
            for action in params["TransactItems"]:
                for kind in ("Put", "Update", "Delete"):
                    if kind in action:
                        spec = action[kind]
                        table = spec["TableName"]
                        found.append((table, key_of(table, spec.get("Key") or spec["Item"])))
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        found.append((table, key_of(table, request["PutRequest"]["Item"])))
                    else:
                        found.append((table, key_of(table, request["DeleteRequest"]["Key"])))
        return found

    def _read(self, table: str, key: Raw) -> Raw | None:
        item = self._reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self._pending = [(t, k, self._read(t, k)) for t, k in self._targets(model.name, params)]

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        pending, self._pending = self._pending, []
        if "Error" in parsed or not pending:
            return
        unprocessed = parsed.get("UnprocessedItems") or {}
        assert not unprocessed, "moto left items unprocessed: count them when it does"
        for table, key, old in pending:
            new = self._read(table, key)
            self.per_partition[(table, _value(key[self._table(table).keys[0]]))] += 1
            for index in self._table(table).indexes:
                self._count_index(table, index, old, new)

    def _count_index(self, table: str, index: _Index, old: Raw | None, new: Raw | None) -> None:
        where = f"{table}/{index.name}"
        before = old if old is not None and all(k in old for k in index.keys) else None
        after = new if new is not None and all(k in new for k in index.keys) else None
        if before is None and after is None:
            return
        if before is None or after is None:
            present = after if after is not None else before
            assert present is not None
            self.per_partition[(where, _value(present[index.keys[0]]))] += 1
            return
        if any(before[k] != after[k] for k in index.keys):  # a delete and a put
            self.per_partition[(where, _value(before[index.keys[0]]))] += 1
            self.per_partition[(where, _value(after[index.keys[0]]))] += 1
            return
        if self._projected(table, index, before) != self._projected(table, index, after):
            self.per_partition[(where, _value(after[index.keys[0]]))] += 1

    def _projected(self, table: str, index: _Index, item: Raw) -> Raw:
        if index.projection == "ALL":
            return item
        kept = set(index.keys) | set(self._table(table).keys)
        if index.projection == "INCLUDE":
            kept |= index.include
        return {k: v for k, v in item.items() if k in kept}


def _value(attribute: dict[str, Any]) -> str:
    return str(next(iter(attribute.values())))
