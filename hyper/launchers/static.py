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
        free = self._free_slots(request.region, request.definition.name)
        if not free:
            return None
        node = max(sorted(free), key=lambda n: free[n])  # the emptiest machine
        record = self._record(worker_id, request, state="ASSIGNED", node=node)
        self.store.add_worker(record)  # counted as busy for the next worker of this launch
        self.on_assign()
        return record

    def owns_records(self) -> bool:
        return True
