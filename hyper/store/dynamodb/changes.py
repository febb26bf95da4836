"""The DynamoDB store's changes of jobs: records read back, counters, and conditional
transactions that change jobs, their counters and their logs together."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hyper.errors import StoreUnavailable
from hyper.jobs import (
    JobStatus,
    LogKind,
    task_script,
)
from hyper.store.base import (
    ArrayRecord,
    JobRecord,
)
from hyper.store.dynamodb.calls import Calls
from hyper.store.dynamodb.items import (
    ARRAY_CACHE,
    CHECK_FAILED,
    COUNTER_SHARDS,
    FAILED,
    SEP,
    TRANSACTION_BYTES,
    TRANSACTION_ITEMS,
    TRANSACTION_LOG_BYTES,
    TRANSACTION_LOG_ENTRIES,
    TRIES,
    CounterKey,
    Item,
    _Array,
    _Change,
    _counter_keys,
    _float,
    _index_keys,
    _marshal,
    _split_output,
    _update,
)


class Changes(Calls):
    """Records as read (a task completed from its array), counters, and changes of jobs
    in conditional transactions with their counters and events."""

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
            item.setdefault("options", info.options)  # read, never written: a task has none
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
