"""The DynamoDB store's changes of state: cancel and hold, and the workers' side of jobs
(claims, leases, endings, returns, lost workers), and the counts the scheduler reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any

from hyper.errors import Conflict
from hyper.jobs import (
    FINISHED,
    UNFINISHED,
    JobStatus,
)
from hyper.store import dynamodb_tables as tables
from hyper.store import rules
from hyper.store.base import (
    CancelResult,
    Ending,
    Fits,
    HoldResult,
    JobFilter,
    JobRecord,
)
from hyper.store.dynamodb.dependents import Dependents
from hyper.store.dynamodb.items import (
    ACTIVE,
    CANCELLED,
    CHECK_FAILED,
    LEASE_SHARDS,
    PAGE,
    REQUESTS,
    RUNNING,
    SEP,
    TRIES,
    WAITING,
    Item,
    _Change,
    _claim_order,
    _item,
    _marshal,
    _request_items,
    _update,
)


class Attempts(Dependents):
    """Cancel and hold, claims, leases, endings, lost workers, and the scheduler's demand."""

    def cancel(self, where: JobFilter, now: float, *, limit: int | None = None) -> CancelResult:
        # what it may change is made first (with one more than `limit` takes: `more`)
        made = self._made_for(where, limit=None if limit is None else limit + 1)
        finished = self._named(where, (s.value for s in FINISHED), among=True)
        items, more = _up_to(
            limit,
            self._unfinished(where, (s.value for s in UNFINISHED), made),
            lambda item: item["status"] in rules.NOT_STARTED_VALUES,
        )
        running = {i["id"] for i in items if i["status"] == RUNNING}
        bulk = rules.is_bulk(sum(1 for i in items if i["status"] in rules.NOT_STARTED_VALUES))
        text = rules.CANCELLED_BEFORE_START

        def plan(item: Item) -> _Change | None:
            if item["status"] in rules.NOT_STARTED_VALUES:
                events = [] if bulk and item.get("kind") == "task" else [text]
                return _Change(item, rules.cancelled_unstarted(now), events)
            if item["status"] == RUNNING and not item.get("cancel_requested"):
                # its worker stops it at its next report
                return _Change(item, {"cancel_requested": True}, [rules.CANCEL_REQUESTED])
            return None

        applied = self._transition(items, plan, now)
        ended = [c for c in applied if c.status == CANCELLED]
        stopping = len(running) + sum(
            1 for c in applied if c.status == RUNNING and c.item["id"] not in running
        )
        if bulk:
            self._bulk_events(ended, text, now)
        self._ended([self._ended_of(c) for c in ended], now)
        return CancelResult(len(ended), stopping, finished, more=more)

    def set_hold(
        self, where: JobFilter, now: float, limit: int | None, *, hold: bool
    ) -> HoldResult:
        movable = rules.movable(hold)
        moving = tuple(s for s in JobStatus if s.value in set(movable) & self._statuses(where))
        made: list[int] = []
        if moving:  # what it may change is made first (one more than `limit` takes: `more`)
            limited = None if limit is None else limit + 1
            made = self._made_for(dataclasses.replace(where, statuses=moving), limit=limited)
        unchanged = self._named(where, movable, among=False)  # named, to say so
        items, more = _up_to(limit, self._unfinished(where, movable, made), lambda item: True)
        bulk = rules.is_bulk(len(items))
        text = rules.hold_event(hold)

        def plan(item: Item) -> _Change | None:
            if item["status"] not in movable:
                return None
            new = rules.held_status(hold, int(item.get("deps_left", 0)))
            events = [] if bulk and item.get("kind") == "task" else [text]
            return _Change(item, {"status": new}, events)

        applied = self._transition(items, plan, now)
        if bulk:
            self._bulk_events(applied, text, now)
        return HoldResult(len(applied), unchanged, more=more)

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
        self._make_to_claim(queue, definition, limit, fits)
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
        return rules.request_of(text)

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
                rules.claimed(worker_id, attempt, lease, now),
                [rules.attempt_started(attempt, worker_id)],
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
            raise rules.not_held(worker_id, attempt, job_id)
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
        items = self._query_all(
            self._attempts,
            "#open_worker = :worker",
            {"worker": worker_id},
            index=tables.OPEN_ATTEMPTS,
        )
        return sorted((i["job_id"], i["attempt"], i["pg"]) for i in items)

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
        lost = rules.not_held(worker_id, ending.attempt, ending.job_id)
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
        if change.status in rules.FINISHED_VALUES:
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
        outcome = rules.end_attempt(
            attempt=attempt,
            exit_code=exit_code,
            retries_left=int(item["retries_left"]),
            cancel_requested=bool(item.get("cancel_requested")),
            reason=reason,
            reclaimed=reclaimed,
        )
        change = _Change(item, {**outcome.fields(exit_code, now), "pg": None}, [outcome.event])
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

    def return_claims(self, worker_id: str, claims: Sequence[tuple[int, int]], now: float) -> int:
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
            set_ = {**rules.returned(attempt), "pg": None}
            events = [rules.returned_unstarted(worker_id)]
            return _Change(item, set_, events, attempt - 1, extra=[delete])

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
            rules.FELL_SILENT,
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
        ids = [
            i["id"]
            for i in self._query_all(
                self._jobs, "#worker_id = :worker", {"worker": worker_id}, index=tables.BY_WORKER
            )
        ]
        why = rules.gone(reclaimed)
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
        """End as lost those of jobs `ids` still running that `check` passes (each retried or
        failed as rules.end_attempt decides, in transactions); their job ids."""
        if not ids:
            return []
        items = self._complete(sorted(self._get_jobs(ids).values(), key=lambda i: i["id"]))

        def plan(item: Item) -> _Change | None:
            if item["status"] != RUNNING or not check(item):
                return None
            reason = rules.lost(item.get("worker_id"), why)
            return self._end_attempt(item, None, reason, now, reclaimed)

        applied = self._transition(items, plan, now)
        finished = rules.FINISHED_VALUES
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
        """From the counters: those of the jobs that asked, by request; the rest of the
        Waiting and Running jobs asked nothing. None past `most` jobs, or when the counters
        disagree (jobs that asked, kept before they were counted so)."""
        pair = f"{queue}{SEP}{definition}{SEP}"
        total = sum(
            n for q, d, status, _, n in self._job_counts(queue)
            if (q, d) == (queue, definition) and status in ACTIVE
        )  # fmt: skip
        if total > most:
            return None
        found: dict[tuple[tuple[str, int], ...], int] = {}
        for key, n in self._counts(REQUESTS, pair).items():
            if n < 0:
                return None
            if n:
                found[_request_items(key[len(pair) :])] = n
        plain = total - sum(found.values())
        if plain < 0:
            return None
        if plain:
            found[()] = plain
        return found

    def demand(self) -> list[tuple[str, str, int, int]]:
        counts = [
            (queue, definition, status, n) for queue, definition, status, _, n in self._job_counts()
        ]
        capped: list[tuple[str, str, int, int, int]] = []
        found = self._query_all(self._jobs, "#capped = :one", {"one": "1"}, index=tables.CAPPED)
        for info in self._array_infos(i["id"] for i in found).values():
            tasks = self._counts(f"array:{info.id}")
            if sum(tasks.get(s, 0) for s in rules.FINISHED_VALUES) >= info.size:
                # every task ended: no longer looked at (done here, as nothing else knows)
                self._update_if(_update(self._jobs, {"id": info.id}, set_={"capped": None}))
            elif info.cap is not None:
                waiting, running = tasks.get(WAITING, 0), tasks.get(RUNNING, 0)
                capped.append((info.queue, info.definition, info.cap, waiting, running))
        return rules.demand(counts, capped)


def _up_to(
    limit: int | None, items: list[Item], counted: Callable[[Item], bool]
) -> tuple[list[Item], bool]:
    """The items a change takes: every one, or at most `limit` of the `counted` kind (the
    others all); and whether some were left for a next call."""
    if limit is None:
        return items, False
    taken: list[Item] = []
    left = limit
    for item in items:
        if not counted(item):
            taken.append(item)
        elif left > 0:
            taken.append(item)
            left -= 1
        else:
            return taken, True
    return taken, False
