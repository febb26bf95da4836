"""Workers on the machines of a static region: each joined machine (`hyper worker join`)
offers slots for one definition; a launch assigns workers to machines with free slots,
and each machine starts the workers assigned to it when it next asks."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from hyper.launchers.base import Launcher, LaunchRequest
from hyper.store.base import Store, WorkerRecord

NODE_SILENCE_SECONDS = 60.0  # a machine polls every 10 s; silent this long, it is gone


class StaticLauncher(Launcher):
    kind = "static"

    def __init__(self, store: Store, on_assign: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.on_assign = on_assign
        self._free: dict[str, int] = {}  # slots left on each machine, during one launch

    def launch(self, request: LaunchRequest) -> list[WorkerRecord]:
        self._free = self._free_slots(request.region, request.definition.name)
        records = super().launch(request)
        if records:
            self.on_assign()  # the machines are told when they next ask
        return records

    def _free_slots(self, region: str, definition: str) -> dict[str, int]:
        busy = Counter(w.node for w in self.store.live_workers() if w.node)
        heard_from = time.time() - NODE_SILENCE_SECONDS
        return {
            node.id: node.slots - busy[node.id]
            for node in self.store.nodes(region)
            if node.definition == definition
            and node.slots > busy[node.id]
            and node.last_seen >= heard_from
        }

    def capacity(self, region: str, definition: str) -> int | None:
        return sum(self._free_slots(region, definition).values())

    def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
        free = {node: slots for node, slots in self._free.items() if slots > 0}
        if not free:
            return None
        node = max(sorted(free), key=lambda n: free[n])  # the emptiest machine
        self._free[node] -= 1
        return self._record(worker_id, request, state="ASSIGNED", node=node)
