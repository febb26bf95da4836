"""The SQLite store's other records: resources, job logs, workers and nodes, files (and
purging what is old), workflows."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from hyper import output
from hyper.errors import StoreUnavailable
from hyper.jobs import (
    FINISHED,
    LogKind,
)
from hyper.store import rules
from hyper.store.base import (
    LogEntry,
    NodeRecord,
    Resource,
    WorkerRecord,
    WorkflowRecord,
)
from hyper.store.sqlite.connection import FILE_CHUNK, GIVE_BACK_SECONDS, SQLiteBase, _unavailable
from hyper.store.sqlite.schema import (
    LOG_INSERT,
    _from_row,
    _in,
    _workflow,
)


class Records(SQLiteBase):
    """Resources, logs, workers, nodes, files and their retention, workflows."""

    # resources ---------------------------------------------------------------

    def put_resource(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        status: str,
        log_lines: Sequence[str],
        now: float,
    ) -> Resource:
        with self._write(durable=True) as db:
            row = db.execute(
                "SELECT log, created FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
            log = rules.resource_log(json.loads(row["log"]) if row else [], log_lines)
            created = row["created"] if row else now
            db.execute(
                "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, name, json.dumps(spec), status, json.dumps(log), created, now),
            )
        return Resource(kind, name, spec, status, log, created, now)

    def _resource(self, row: sqlite3.Row) -> Resource:
        record: Resource = _from_row(
            Resource, row, spec=json.loads(row["spec"]), log=json.loads(row["log"])
        )
        return record

    def delete_resource(self, kind: str, name: str) -> None:
        with self._write(durable=True) as db:
            db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))

    def get_resource(self, kind: str, name: str) -> Resource | None:
        row = self._db.execute(
            "SELECT * FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        return self._resource(row) if row else None

    def list_resources(self, kind: str) -> list[Resource]:
        rows = self._db.execute("SELECT * FROM resources WHERE kind = ? ORDER BY name", (kind,))
        return [self._resource(row) for row in rows]

    # logs ------------------------------------------------------------------------

    def append_log(
        self,
        job_id: int,
        attempt: int,
        entries: Sequence[tuple[LogKind, str]],
        now: float,
        *,
        output_limit: int | None = None,
    ) -> None:
        if not entries:
            return
        with self._write() as db:
            if output_limit is not None:
                row = db.execute(
                    "SELECT bytes FROM output_kept WHERE job_id = ? AND attempt = ?",
                    (job_id, attempt),
                ).fetchone()
                entries, kept = output.within(entries, row[0] if row else 0, output_limit)
                db.execute(
                    "INSERT INTO output_kept VALUES (?, ?, ?) ON CONFLICT (job_id, attempt)"
                    " DO UPDATE SET bytes = excluded.bytes",
                    (job_id, attempt, kept),
                )
            db.executemany(
                LOG_INSERT,
                [(job_id, attempt, kind.value, now, text) for kind, text in entries],
            )

    def read_log(
        self, job_id: int, kinds: Sequence[LogKind], *, after: int = 0, limit: int = 1000
    ) -> list[LogEntry]:
        wanted = kinds or tuple(LogKind)
        rows = self._db.execute(
            f"SELECT * FROM job_log WHERE job_id = ? AND kind IN ({_in(wanted)})"
            " AND seq > ? ORDER BY seq LIMIT ?",
            [job_id, *(k.value for k in wanted), after, limit],
        )
        return [_from_row(LogEntry, row, kind=LogKind(row["kind"])) for row in rows]

    # workers -----------------------------------------------------------------------

    def add_worker(self, worker: WorkerRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    worker.id,
                    worker.queue,
                    worker.definition,
                    worker.region,
                    worker.launcher,
                    worker.pid,
                    worker.state,
                    worker.started,
                    worker.last_seen,
                    worker.ended,
                    worker.node,
                ),
            )

    def claim_tick(self, owner: str, now: float, seconds: float) -> bool:
        return True  # one daemon owns the file, and its ticks run one after another

    def release_tick(self, owner: str) -> None:
        pass

    def claim_lease(self, what: str, owner: str, now: float, seconds: float) -> bool:
        return True  # the same: one daemon runs each change in one task

    def release_lease(self, what: str, owner: str) -> None:
        pass

    def touch_worker(self, worker_id: str, now: float) -> None:
        with self._write() as db:
            self._touch(db, worker_id, now)

    def end_worker(self, worker_id: str, now: float) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE workers SET state = 'EXITED', ended = ? WHERE id = ? AND state != 'EXITED'",
                (now, worker_id),
            )

    def live_workers(self) -> list[WorkerRecord]:
        rows = self._db.execute("SELECT * FROM workers WHERE state != 'EXITED' ORDER BY started")
        return [WorkerRecord(**dict(row)) for row in rows]

    # nodes of static regions ----------------------------------------------------------

    def join_node(self, node: NodeRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " region = excluded.region, definition = excluded.definition,"
                " slots = excluded.slots, hostname = excluded.hostname,"
                " last_seen = excluded.last_seen, capacity = excluded.capacity",
                (node.id, node.region, node.definition, node.slots, node.hostname, node.joined,
                 node.last_seen, node.capacity),
            )  # fmt: skip

    def nodes(self, region: str | None = None) -> list[NodeRecord]:
        if region is None:
            rows = self._db.execute("SELECT * FROM nodes ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM nodes WHERE region = ? ORDER BY id", (region,))
        return [NodeRecord(**dict(row)) for row in rows]

    def leave_node(self, node_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))

    def take_assignments(self, node_id: str, now: float) -> list[WorkerRecord]:
        with self._write() as db:
            db.execute("UPDATE nodes SET last_seen = ? WHERE id = ?", (now, node_id))
            rows = db.execute(
                "UPDATE workers SET state = 'STARTING', last_seen = ? WHERE node = ? AND"
                " state = 'ASSIGNED' RETURNING *",
                (now, node_id),
            ).fetchall()
        return [WorkerRecord(**dict(row)) for row in rows]

    # files -------------------------------------------------------------------------------

    def put_file(self, key: str, data: bytes, now: float) -> None:
        with self._write(durable=True) as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (key, data, now))

    def put_file_from(self, key: str, source: BinaryIO, size: int, now: float) -> None:
        """Store `size` bytes read from `source` a chunk at a time, never all in memory."""
        with self._write(durable=True) as db:
            (rowid,) = db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, zeroblob(?), ?) RETURNING rowid",
                (key, size, now),
            ).fetchone()
            blobopen = getattr(db, "blobopen", None)  # Python 3.11 and later
            if blobopen is None:
                db.execute("UPDATE files SET data = ? WHERE rowid = ?", (source.read(), rowid))
                return
            with blobopen("files", "data", rowid) as blob:
                while chunk := source.read(FILE_CHUNK):
                    blob.write(chunk)

    # retention ----------------------------------------------------------------------

    def purge(self, before: float, *, rewrite: bool = False) -> dict[str, int]:
        """Delete the jobs that finished before `before` (an array once all its tasks
        have), their logs, attempts and files (what they collected, and their package if
        no job left uses it), and workers that ended before it; then give the freed pages
        back to the file system (a store made without auto_vacuum only with `rewrite`: a
        VACUUM holds the store for as long as it takes). What was deleted, counted."""
        done = ",".join(f"'{s.value}'" for s in FINISHED)
        with self._write() as db:
            db.execute("DROP TABLE IF EXISTS temp.purged")
            db.execute(
                "CREATE TEMP TABLE purged AS"
                f" SELECT id, array_id FROM jobs WHERE array_id IS NULL AND status IN ({done})"
                "   AND ended < ?1"
                " UNION ALL SELECT j.id, j.array_id FROM jobs j WHERE j.array_id IN ("
                "   SELECT array_id FROM jobs WHERE array_id IS NOT NULL"
                "   AND array_id NOT IN (SELECT id FROM arrays WHERE plan IS NOT NULL)"
                "   GROUP BY array_id"
                f"   HAVING sum(status NOT IN ({done}) OR ended IS NULL OR ended >= ?1) = 0)",
                (before,),
            )
            db.execute("CREATE INDEX temp.purged_id ON purged (id)")
            packages = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT json_extract(coalesce(j.options, a.options), '$.package')"
                    " FROM purged p JOIN jobs j ON j.id = p.id"
                    " LEFT JOIN arrays a ON a.id = j.array_id"
                )
                if row[0]
            ]
            counted = db.execute(
                "SELECT j.queue, j.definition, coalesce(j.array_id, 0), j.status, count(*)"
                " FROM purged p JOIN jobs j ON j.id = p.id GROUP BY 1, 2, 3, 4"
            ).fetchall()
            for queue, definition, array_id, status, n in counted:
                db.execute(
                    "UPDATE job_counts SET n = n - ? WHERE queue = ? AND definition = ?"
                    " AND array_id = ? AND status = ?",
                    (n, queue, definition, array_id, status),
                )
            db.execute("DELETE FROM job_counts WHERE n <= 0")
            logs = db.execute(
                "DELETE FROM job_log WHERE job_id IN (SELECT id FROM purged)"
            ).rowcount
            db.execute("DELETE FROM attempts WHERE job_id IN (SELECT id FROM purged)")
            db.execute(
                "DELETE FROM deps WHERE owner IN (SELECT id FROM purged)"
                " OR owner IN (SELECT array_id FROM purged)"
            )
            files = db.execute(
                "DELETE FROM files WHERE key GLOB 'jobs/[0-9]*/*' AND CAST(substr(key, 6,"
                " instr(substr(key, 6), '/') - 1) AS INTEGER) IN (SELECT id FROM purged)"
            ).rowcount
            jobs = db.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM purged)").rowcount
            db.execute("DELETE FROM arrays WHERE id IN (SELECT array_id FROM purged)")
            for package in packages:
                in_use = db.execute(
                    "SELECT 1 FROM jobs j LEFT JOIN arrays a ON a.id = j.array_id WHERE"
                    " json_extract(coalesce(j.options, a.options), '$.package') = ? LIMIT 1",
                    (package,),
                ).fetchone()
                if not in_use:
                    files += db.execute("DELETE FROM files WHERE key = ?", (package,)).rowcount
            workers = db.execute(
                "DELETE FROM workers WHERE ended IS NOT NULL AND ended < ?", (before,)
            ).rowcount
            db.execute("DROP TABLE temp.purged")
        space_kept = 0
        if jobs or files or workers:
            try:
                self._give_back_space(rewrite=rewrite)
            except (StoreUnavailable, sqlite3.OperationalError):
                # the deletes are made whatever the disk says now: the store keeps their
                # pages for new jobs (a purge said "nothing was changed", and its retry 0 jobs)
                space_kept = 1
        counts = {"jobs": jobs, "log_lines": logs, "files": files, "workers": workers}
        return {**counts, "space_kept": space_kept}

    def _give_back_space(self, *, rewrite: bool) -> None:
        """Return free pages to the file system and empty the write-ahead log. A store made
        before auto_vacuum was set is rewritten (VACUUM) to set it, when `rewrite`."""
        try:
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                if rewrite:
                    self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    self._db.execute("VACUUM")
            else:
                # sqlite3_exec steps it to the end (execute would free one page per call)
                self._db.executescript("PRAGMA incremental_vacuum;")
            # the file shrinks only when the log is checkpointed whole: a checkpoint of the
            # daemon's own checkpointer thread running at that moment makes this one busy
            deadline = time.monotonic() + GIVE_BACK_SECONDS
            while self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        except sqlite3.OperationalError as error:
            raise _unavailable(self.path, error) from error

    def get_file(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT data FROM files WHERE key = ?", (key,)).fetchone()
        return bytes(row["data"]) if row else None

    def delete_files(self, prefix: str) -> int:
        with self._write() as db:
            # the key, and the keys from "prefix/" up to "prefix0" ('0' follows '/')
            cursor = db.execute(
                "DELETE FROM files WHERE key = ? OR (key > ? AND key < ?)",
                (prefix, prefix + "/", prefix + "0"),
            )
            return cursor.rowcount

    # workflows -----------------------------------------------------------------------------

    def add_workflow(self, data: dict[str, Any], now: float) -> WorkflowRecord:
        with self._write(durable=True) as db:
            row = db.execute(
                "INSERT INTO workflows (finished, version, data, created, updated)"
                " VALUES (0, 1, ?, ?, ?) RETURNING *",
                (json.dumps(data), now, now),
            ).fetchone()
        return _workflow(row)

    def get_workflow(self, workflow_id: int) -> WorkflowRecord | None:
        row = self._db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchone()
        return _workflow(row) if row else None

    def list_workflows(self, *, unfinished: bool = False, limit: int = 100) -> list[WorkflowRecord]:
        clause = "WHERE finished = 0" if unfinished else ""
        rows = self._db.execute(
            f"SELECT * FROM workflows {clause} ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_workflow(row) for row in rows]

    def update_workflow(
        self, record: WorkflowRecord, data: dict[str, Any], *, finished: bool, now: float
    ) -> WorkflowRecord:
        with self._write(durable=True) as db:
            row = db.execute(
                "UPDATE workflows SET finished = ?, version = version + 1, data = ?, updated = ?"
                " WHERE id = ? AND version = ? RETURNING *",
                (int(finished), json.dumps(data), now, record.id, record.version),
            ).fetchone()
        if row is None:
            raise rules.workflow_changed(record.id)
        return _workflow(row)
