"""The deployer: resource changes are asynchronous.

A create, update or delete checks what it can at once (names, references,
users), records the intent (CREATING, UPDATING, DELETING) and returns; the
provider's work then runs in the background and the record settles ACTIVE or
FAILED with a deployment log (a delete removes the record). Changes left
unsettled by a restart are taken up again.

Where the work runs: by default in this process, in the background. A host whose
requests must end quickly (AWS Lambda) calls `hand_off`: each change goes to another
invocation that calls `run`, and `resume` takes up only changes left unsettled longer
than such an invocation may last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from hyper import resources
from hyper.errors import DeployFailed, UsageError
from hyper.jobs import UNFINISHED
from hyper.models import SPECS, DeployStatus, ResourceKind, Spec
from hyper.providers import Provider
from hyper.store.base import JobFilter, Resource, Store

log = logging.getLogger(__name__)

RUN_LEASE = 900.0  # how long a change's `run` holds it when not handed off (stale_after)


def validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where.replace('_', '-')}: {message}" if where else message


def build_spec(kind: ResourceKind, data: dict[str, Any]) -> Spec:
    try:
        return SPECS[kind].model_validate(data)
    except ValidationError as error:
        raise UsageError(f"{kind.singular}: {validation_message(error)}") from None


class Deployer:
    def __init__(
        self, store: Store, provider: Provider, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.provider = provider
        self.on_change = on_change
        self._dispatch: Callable[[ResourceKind, str], None] | None = None
        self._stale_after = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def create(self, kind: ResourceKind, spec: Spec) -> Resource:
        if self.store.get_resource(kind.value, spec.name) is not None:
            raise UsageError(f"{kind.singular} {spec.name!r} already exists")
        resources.check_references(self.store, kind, spec)
        self._check(kind, spec)
        record = self._record(kind, spec, DeployStatus.CREATING, "creating")
        self._start(kind, spec.name)
        return record

    def _check(self, kind: ResourceKind, spec: Spec) -> None:
        """The provider's own refusals (a provider may have none): UsageError."""
        check = getattr(self.provider, "check", None)
        if check is not None:
            check(kind, spec)

    def update(self, kind: ResourceKind, name: str, changes: dict[str, Any]) -> Resource:
        current = resources.require(self.store, kind, name)
        if not DeployStatus(current.status).settled:
            raise UsageError(f"{kind.singular} {name!r} is {current.status}; wait until it settles")
        if changes.get("name", name) != name:
            raise UsageError("a resource keeps its name; create a new one instead")
        spec = build_spec(kind, {**current.spec, **changes})
        resources.check_references(self.store, kind, spec)
        self._check(kind, spec)
        record = self._record(kind, spec, DeployStatus.UPDATING, f"updating {sorted(changes)}")
        self._start(kind, name)
        return record

    def delete(self, kind: ResourceKind, name: str, *, force: bool = False) -> Resource:
        current = resources.require(self.store, kind, name)
        if current.status == DeployStatus.DELETING.value:
            return current
        if not DeployStatus(current.status).settled:
            raise UsageError(f"{kind.singular} {name!r} is {current.status}; wait until it settles")
        users = resources.users_of(self.store, kind, name)
        if kind is ResourceKind.REGION and current.spec.get("main_region"):
            users.insert(0, "the host (it is the main region)")
        if users and not force:
            raise UsageError(
                f"{kind.singular} {name!r} is in use by {', '.join(users)}; --force deletes it"
                " anyway"
            )
        if force and kind in (ResourceKind.QUEUE, ResourceKind.DEFINITION):
            unfinished = UNFINISHED
            if kind is ResourceKind.QUEUE:
                where = JobFilter(statuses=unfinished, queue=name)
            else:
                where = JobFilter(statuses=unfinished, definition=name)
            self.store.cancel(where, time.time())
        spec = build_spec(kind, current.spec)
        record = self._record(kind, spec, DeployStatus.DELETING, "deleting")
        self._start(kind, name)
        return record

    def hand_off(
        self, dispatch: Callable[[ResourceKind, str], None], *, stale_after: float
    ) -> None:
        """Do changes elsewhere: `dispatch(kind, name)` hands each to a process that
        calls `run`; one unsettled for `stale_after` seconds is taken for lost."""
        self._dispatch, self._stale_after = dispatch, stale_after

    def resume(self) -> list[str]:
        """Take up changes that a restart interrupted (or, handed off, that were lost);
        their names."""
        now = time.time()
        taken = []
        for kind in ResourceKind:
            for record in self.store.list_resources(kind.value):
                stale = now - record.updated >= self._stale_after
                if not DeployStatus(record.status).settled and stale:
                    self._record_line(record, "taken up again")
                    self._start(kind, record.name)
                    taken.append(f"{kind.singular} {record.name}")
        return taken

    async def run(self, kind: ResourceKind, name: str) -> str | None:
        """Do one change's work here and now (what a dispatched change's invocation
        does); its status once settled, None when nothing was left to do."""
        record = self.store.get_resource(kind.value, name)
        if record is None or DeployStatus(record.status).settled:
            return None
        # one invocation at a time per change (Lambda may retry an event, or deliver it
        # twice): the lease outlasts the invocation, so a retry of one that timed out
        # leaves the change to `resume`, which hands it off once it is stale
        what, me = f"deploy {kind.value}/{name}", uuid.uuid4().hex
        if not self.store.claim_lease(what, me, time.time(), self._stale_after or RUN_LEASE):
            log.info("%s %s: another invocation is working on it", kind.singular, name)
            return None
        try:
            record = self.store.get_resource(kind.value, name)  # as the last holder left it
            if record is None or DeployStatus(record.status).settled:
                return None
            self._record_line(record, "working on it")  # not stale while this runs
            await self._work(kind, name)
        finally:
            self.store.release_lease(what, me)
        settled = self.store.get_resource(kind.value, name)
        return settled.status if settled else "DELETED"

    async def settled(self) -> None:
        """Wait until every change under way has settled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _record(self, kind: ResourceKind, spec: Spec, status: DeployStatus, line: str) -> Resource:
        record = self.store.put_resource(
            kind.value, spec.name, spec.model_dump(), status.value, [line], time.time()
        )
        self.on_change()
        return record

    def _record_line(self, record: Resource, line: str) -> None:
        """A line added to an unsettled record's log; its time says it is being worked on."""
        self.store.put_resource(
            record.kind, record.name, record.spec, record.status, [line], time.time()
        )

    def _start(self, kind: ResourceKind, name: str) -> None:
        if self._dispatch is not None:
            self._dispatch(kind, name)
            return
        task = asyncio.get_running_loop().create_task(self._work(kind, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, kind: ResourceKind, name: str) -> None:
        record = self.store.get_resource(kind.value, name)
        if record is None:
            return
        spec = build_spec(kind, record.spec)
        lines: list[str] = []
        deleting = record.status == DeployStatus.DELETING.value
        try:
            if deleting:
                await asyncio.to_thread(self.provider.teardown, kind, spec, lines.append)
                self.store.delete_resource(kind.value, name)
                self.on_change()
                return
            spec = await asyncio.to_thread(self.provider.deploy, kind, spec, lines.append)
            status = DeployStatus.ACTIVE
        except DeployFailed as error:
            lines.append(f"failed: {error}")
            status = DeployStatus.FAILED
        except Exception as error:  # a provider bug must still settle the record
            log.exception("deploying %s %s", kind.singular, name)
            lines.append(f"failed: {type(error).__name__}: {error}")
            status = DeployStatus.FAILED
        self.store.put_resource(
            kind.value, name, spec.model_dump(), status.value, lines or [status.value], time.time()
        )
        self.on_change()
