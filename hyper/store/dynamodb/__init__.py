"""The store on DynamoDB: the tables of ``hyper/store/dynamodb_tables.py`` through boto3.

Same records, states, errors and events as the SQLite store: both ask
``hyper/store/rules.py`` what each change of a job is and what it says. What SQLite does in
one transaction is done here as follows.

- Every job item carries a ``version``; a change of a job is a transaction
  (TransactWriteItems, at most 100 items) that updates the job on the condition that its
  version is still the one read, adds to the counters its change of state moves, and
  puts its events in the log. A job changed by someone else in between fails the
  condition; it is read again (strongly consistent) and the change decided again. So a
  claim, a completion and a cancel never overwrite each other, and the counters always
  match the jobs.
- Claims: candidates come from the ``claim`` index (Waiting jobs of a queue and
  definition, highest priority first, then by id); each is taken by the transaction
  above with ``status = Waiting`` in its condition, so two workers never hold one job.
  A task of an array with a cap also adds to the array's Running counter on the
  condition that it stays within the cap.
- Counts: counter items per (queue, definition, status, single job or task) and per
  (array, status), each spread over a few shards (a transaction picks one at random, so
  concurrent changes rarely contend; readers add the shards up). qstat's totals and the
  scheduler's demand read these, never the jobs. Jobs that asked for resources are also
  counted per (queue, definition, request) while Waiting or Running (scope
  ``requests``; a claim or a retry moves nothing there), so that the scheduler packs
  requests into workers without reading the jobs.
- Ids: one counter item, one atomic ADD per submit for all of its ids.
- Submits: ids first, then the counters, then the items in BatchWriteItem calls of 25
  (unprocessed items retried with back-off); nothing is written before every dependency
  has been judged, so a refused submit leaves nothing behind. An array's submit writes
  its item, with the plan that makes any of its tasks, and its first 24 tasks (one
  BatchWriteItem call with the item); the rest are made later, in transactions, by
  whatever needs them first and by the tick (``tasks.py``), and are counted from the
  submit on. Scripts over 300 KB go to S3 under ``scripts/{id}`` first. The counters go
  with a journal entry (counts table, scope ``submits``) that the submit removes once
  its items are written; a submit cut off in between (its Lambda timed out) leaves the
  entry, and the tick takes back what it counted for the items it never wrote
  (``reconcile_counts``), so the scheduler does not start workers for jobs that do not
  exist. A submit that failed is withdrawn: every item it wrote is deleted in the state
  it is in, with its counters (``journal.py``).
- Dependencies: as in SQLite, judged at submit. A pending one is recorded (a ``deps``
  item, and a ``dependents`` flag on its target) and then judged again, so that a target
  that ended in between is not missed; settling removes the ``deps`` item on a
  condition, so a dependency is settled once whoever sees it first.
- Listings and counts never Scan: each filter maps to a Query of an index (queue and
  status, name, definition, array), pages merged by id. These indexes hold keys only
  (a heartbeat then writes none of them); the jobs a page finds are read by id
  (BatchGetItem, strongly consistent).

Files are S3 objects under ``files/`` in the host's bucket. Workflows are items of the
resources table (kind ``workflow``, named by their zero-filled id), with a marker item
(kind ``workflow-open``) while unfinished, so the scheduler's tick reads only those.

The tasks of an array hold only what differs between them (index, state, attempts,
name, parameters); the rest is read from the array item, whose fields a task reads never
change and are kept in a small cache (its plan and count of made tasks are read afresh).

Not one step, unlike SQLite: a submit is several calls (if one fails, what was written
is deleted again as far as possible before the error is raised; the ids stay used); a
dependency of a whole array reaches its tasks in transactions of 100 (a failure part-way
leaves the rest Blocked); indexes are eventually consistent, so a listing or a claim may
miss a change made a moment ago, but every change reads its job again (strongly
consistent) and writes on a condition, so a stale index can delay work, never double it.
"""

from __future__ import annotations

from hyper.store.base import Store
from hyper.store.dynamodb.attempts import Attempts
from hyper.store.dynamodb.records import Records
from hyper.store.dynamodb.submit import Submitting


class DynamoDBStore(Submitting, Attempts, Records, Store):
    """The Store protocol on the DynamoDB tables named `{prefix}-...` (see tables.py).

    Clients are made on first use (or passed in); constructing the store calls nothing."""

    counts_requests = True


__all__ = ["DynamoDBStore"]
