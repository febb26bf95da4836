"""The DynamoDB store's reading: jobs by id, listings and counts through the indexes,
what a request names."""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from hyper.jobs import (
    FINISHED,
    JobStatus,
)
from hyper.jobspec import Selector
from hyper.store import dynamodb_tables as tables
from hyper.store import rules
from hyper.store.base import (
    ArrayRecord,
    JobFilter,
    JobRecord,
)
from hyper.store.dynamodb.items import (
    GET_BATCH,
    NAME_KEY_CHARS,
    PAGE,
    SEP,
    Item,
    _Change,
    _chunks,
    _float,
)
from hyper.store.dynamodb.tasks import Tasks


class Reading(Tasks):
    """Jobs and arrays read by id, listed and counted through the indexes."""

    # reading ------------------------------------------------------------------------------

    def get_job(self, job_id: int, *, with_script: bool = False) -> JobRecord | None:
        item = self._get(self._jobs, {"id": job_id})
        if item is None and self._make_ids([job_id]):  # a task not made yet: made first
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
        made: Iterable[int] = (),
    ) -> Iterator[Item]:
        """Every job that matches, in id order. `made`: the ids of tasks this call has just
        made, read by id (strongly consistent) as well: an index shows a new item only a
        moment after its write, and an answer must count them (a qdel must not miss them)."""
        streams = self._streams(where, after, page, flags)
        fresh = self._by_ids(i for i in made if i > after)  # first: its copy is the one kept
        merged = heapq.merge(fresh, *streams, key=lambda i: i["id"])
        last = None
        for item in merged:
            if item["id"] == last:
                continue
            last = item["id"]
            if self._matches(where, item) and (flags != ("s",) or item.get("kind") == "job"):
                yield item

    def _select(self, where: JobFilter, made: Iterable[int] = ()) -> list[Item]:
        return list(self._iterate(where, made=made))

    def list_jobs(
        self, where: JobFilter, *, limit: int, after: int = 0, collapse: bool = False
    ) -> list[JobRecord | ArrayRecord]:
        page = min(max(limit, 10) + 1, PAGE)
        if not rules.one_line_per_array(where, collapse):
            found = self._page(where, after, page, limit)
            last = found[-1]["id"] if len(found) >= limit else None
            if self._unmade_before(where.queue, after, last):  # the page may miss some
                made = self._made_for(where, after=after, limit=limit)
                found = self._page(where, after, page, limit, made)
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

    def _page(
        self, where: JobFilter, after: int, page: int, limit: int, made: Iterable[int] = ()
    ) -> list[Item]:
        found = []
        for item in self._iterate(where, after, page, made=made):
            found.append(item)
            if len(found) >= limit:
                break
        return found

    def count_jobs(self, where: JobFilter) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        statuses = self._statuses(where)
        if rules.from_counts(where):
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
        made = self._made_for(where)  # counted from the jobs: every one must be there
        for item in self._iterate(where, made=made):
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
        kinds = {i: item.get("kind") for i, item in found.items()}
        kinds |= self._task_kinds(s.id for s in selectors if s.id not in found)
        return rules.resolve(selectors, kinds)

    # changing state -------------------------------------------------------------------------

    def _named(self, where: JobFilter, statuses: Iterable[str], *, among: bool) -> list[int]:
        """The job ids a request named whose items, read by id, are in these states
        (among=False: are not)."""
        if not where.ids:
            return []
        wanted = set(statuses)
        found = self._get_jobs(where.ids, "#id, #kind, #status")
        return sorted(
            i
            for i, item in found.items()
            if item.get("kind") != "array" and (item["status"] in wanted) == among
        )

    def _unfinished(
        self, where: JobFilter, states: Iterable[str], made: Iterable[int] = ()
    ) -> list[Item]:
        """The jobs that match and are in one of these states (`made`: as _iterate)."""
        allowed = set(states) & self._statuses(where)
        chosen = tuple(s for s in JobStatus if s.value in allowed)
        if not chosen:
            return []
        return self._select(dataclasses.replace(where, statuses=chosen), made)

    def _bulk_events(self, changes: Sequence[_Change], text: str, now: float) -> None:
        """A large change logs one event per array (its jobs logged theirs in the change)."""
        per_array = Counter(c.item["array_id"] for c in changes if c.item.get("kind") == "task")
        for array_id, n in sorted(per_array.items()):
            self._event(array_id, 0, rules.bulk_event(n, text), now)
