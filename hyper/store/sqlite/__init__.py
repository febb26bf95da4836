"""The store on SQLite: one file in the host's data directory, WAL journal. What each
change of a job is, and what it says, comes from ``hyper/store/rules.py``; this package
writes it as set-based SQL.

Used from one thread (the host's event loop), so a write transaction is never
interleaved with another (a daemon's store moves its write-ahead log into the file from
a thread and connection of its own, so that no claim or submit waits for that);
``BEGIN IMMEDIATE`` still guards against a second process opening the same file.
Submits commit with ``synchronous=FULL`` (an acknowledged job survives a power cut);
everything else with NORMAL.

Arrays: one ``arrays`` row holds the script and options once; each task is a
``jobs`` row with its own id (ids come from one sequence, so the array's id is
never a task's). Counters on the array row (running, ok, bad) make concurrency
caps and dependencies on whole arrays O(1). A submit writes the array's row and its
first tasks; the rest are made later from the row's plan, before anything reads or
changes them (``tasks.py``; the rule in ``hyper.store.rules``).

Dependencies: a ``deps`` row per (owner, kind, target), the owner a job or an
array; ``jobs.deps_left`` counts what each job still waits for. When a job
ends, the rows that target it (or its array) are judged, and a job whose
dependency can never be met ends Failed, which may end its own dependents.
Integrity: ``SQLiteStore.open`` (the daemon's start) runs ``PRAGMA quick_check`` and
refuses a damaged store; ids come from ``meta.next_id``, and every reservation is
also written (fsynced, after its commit) to ``hyper.db.ids`` beside the store, a
high-water mark outside the pages the write-ahead log covers. A store whose
next id is below that mark lost acknowledged jobs (a deleted WAL, a copy put back
by hand): ``open`` refuses it, and ``accept_rollback`` lifts its next id above
every id ever given, so that no id is used twice. ``close`` checkpoints the WAL
into the store and truncates it. ``purge`` deletes finished jobs, their logs and
files older than a time; the freed pages go back to the file system
(``auto_vacuum=INCREMENTAL``).
"""

from __future__ import annotations

from hyper.store.base import Store
from hyper.store.sqlite.attempts import Attempts
from hyper.store.sqlite.jobs import Jobs
from hyper.store.sqlite.records import Records


class SQLiteStore(Jobs, Attempts, Records, Store):
    """The Store protocol on one SQLite file (see the package's docstring)."""

    counts_requests = True


__all__ = ["SQLiteStore"]
