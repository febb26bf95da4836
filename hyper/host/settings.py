"""A host's settings, kept beside its data (``host.json``, mode 0600)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from hyper.config import write_private
from hyper.jobspec import MAX_SCRIPT_BYTES

SETTINGS_FILE = "host.json"


@dataclass
class HostSettings:
    data_dir: Path
    api_key: str
    name: str = "local"
    url: str = ""  # where workers reach the host; known once the daemon has bound its port
    lease_seconds: float = 30.0  # a running job's worker must report within this
    heartbeat_seconds: float = 0.5  # how often workers report (and learn of qdel)
    worker_idle_seconds: float = 10.0  # a worker with nothing to do exits after this
    worker_patience_seconds: float = 120.0  # a worker keeps trying this long while the host is down
    scheduler_seconds: float = 0.5  # the scheduler's period when nothing wakes it
    max_wait_seconds: float = 20.0  # longest a long-poll request is held
    max_script_bytes: int = MAX_SCRIPT_BYTES  # of a job's script, encoded as UTF-8

    @property
    def database(self) -> Path:
        return self.data_dir / "hyper.db"

    def save(self) -> None:
        data = asdict(self)
        data.pop("data_dir")
        data.pop("url")
        write_private(self.data_dir / SETTINGS_FILE, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, data_dir: Path) -> HostSettings:
        data = json.loads((data_dir / SETTINGS_FILE).read_text())
        known = {f.name for f in fields(cls)}
        return cls(data_dir=data_dir, **{k: v for k, v in data.items() if k in known})
