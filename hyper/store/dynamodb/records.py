"""The DynamoDB store's other records: resources, job logs, workers, the tick lease,
nodes of static regions, files in S3, workflows."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from hyper import output
from hyper.aws_errors import error_code
from hyper.errors import StoreUnavailable
from hyper.jobs import (
    LogKind,
    is_under,
)
from hyper.messages import FileLink
from hyper.store import dynamodb_tables as tables
from hyper.store import rules
from hyper.store.base import (
    LogEntry,
    NodeRecord,
    Resource,
    WorkerRecord,
    WorkflowRecord,
)
from hyper.store.dynamodb.changes import Changes
from hyper.store.dynamodb.items import (
    FILES,
    LIVE_SHARDS,
    OPEN_WORKFLOW,
    S3_DELETE_BATCH,
    TICK_LEASE,
    TRIES,
    WORKFLOW,
    Item,
    _chunks,
    _float,
    _item,
    _marshal,
    _names,
    _split_output,
    _update,
    _values,
    live_shard,
)


class Records(Changes):
    """Resources, logs, workers and nodes, the tick lease, files, workflows."""

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
            log = rules.resource_log(json.loads(current["log"]) if current else [], log_lines)
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
                size = item["size"] if item["kind"] == "array" else None
                text = rules.submitted(item["queue"], size)
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

    def claim_tick(self, owner: str, now: float, seconds: float) -> bool:
        return self.claim_lease(TICK_LEASE["key"], owner, now, seconds)

    def release_tick(self, owner: str) -> None:
        self.release_lease(TICK_LEASE["key"], owner)

    def claim_lease(self, what: str, owner: str, now: float, seconds: float) -> bool:
        """A lease item in the counts table, taken on the condition that no other owner
        holds one that is still valid."""
        claimed = self._update_if(
            _update(
                self._counts_name,
                {**TICK_LEASE, "key": what},
                set_={"owner": owner, "until": now + seconds},
                condition="attribute_not_exists(#owner) OR #until < :now OR #owner = :me",
                values={"now": now, "me": owner},
            )
        )
        return claimed is not None

    def release_lease(self, what: str, owner: str) -> None:
        self._update_if(
            _update(
                self._counts_name,
                {**TICK_LEASE, "key": what},
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
            " #joined = if_not_exists(#joined, :joined), #capacity = :capacity"
        )
        values = {
            "region": node.region,
            "definition": node.definition,
            "slots": node.slots,
            "hostname": node.hostname,
            "last_seen": node.last_seen,
            "joined": node.joined,
            "capacity": node.capacity,
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
                capacity=i.get("capacity", ""),
            )
            for i in items
            if region is None or i["region"] == region
        ]

    def leave_node(self, node_id: str) -> None:
        self.dynamodb.delete_item(
            TableName=self._nodes, Key=_marshal({"scope": "node", "id": node_id})
        )

    def take_assignments(self, node_id: str, now: float) -> list[WorkerRecord]:
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
        answer = self._file_object(key)
        return None if answer is None else bytes(answer["Body"].read())

    def _file_object(self, key: str) -> dict[str, Any] | None:
        """S3's answer to a GET of the file under `key` (its body still to read); None
        when there is no such file."""
        try:
            return dict(self.s3.get_object(Bucket=self._file_bucket(), Key=FILES + key))
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise

    # files moved by presigned URL, past the API (its requests are at most 6 MB) ----------

    def read_file(self, key: str, inline_bytes: int, seconds: int) -> bytes | FileLink | None:
        """The bytes under `key` when there are at most `inline_bytes`, else a link to GET
        them for `seconds`; None when there is no such file. One call either way."""
        answer = self._file_object(key)
        if answer is None:
            return None
        with answer["Body"] as body:
            if int(answer["ContentLength"]) <= inline_bytes:
                return bytes(body.read())
        return self._file_link("get_object", key, int(answer["ContentLength"]), seconds, {}, {})

    def upload_link(self, key: str, size: int, md5: str, seconds: int) -> FileLink:
        """A link to PUT exactly `size` bytes of MD5 `md5` (hex) at `key`, for `seconds`:
        S3 keeps nothing of a body cut short or of other bytes (Content-MD5 is signed)."""
        digest = base64.b64encode(bytes.fromhex(md5)).decode()
        params = {"ContentMD5": digest, "ContentLength": size}
        return self._file_link("put_object", key, size, seconds, params, {"Content-MD5": digest})

    def file_stat(self, key: str) -> tuple[int, str] | None:
        """The size and ETag (the MD5 in hex of a file PUT whole) of the file at `key`."""
        try:
            head = self.s3.head_object(Bucket=self._file_bucket(), Key=FILES + key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return int(head["ContentLength"]), str(head["ETag"]).strip('"')

    def _file_link(
        self,
        method: str,
        key: str,
        size: int,
        seconds: int,
        params: dict[str, Any],
        headers: dict[str, str],
    ) -> FileLink:
        where = {"Bucket": self._file_bucket(), "Key": FILES + key, **params}
        url = self.s3_links.generate_presigned_url(method, Params=where, ExpiresIn=seconds)
        if self.bucket_owner:  # signed with the URL: S3 refuses it for another's bucket
            headers = {**headers, "x-amz-expected-bucket-owner": self.bucket_owner}
        verb = "PUT" if method == "put_object" else "GET"
        expires = time.time() + seconds
        return {"url": url, "method": verb, "headers": headers, "size": size, "expires": expires}

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
            raise rules.workflow_changed(record.id)
        return dataclasses.replace(
            record, finished=finished, data=data, version=record.version + 1, updated=now
        )
