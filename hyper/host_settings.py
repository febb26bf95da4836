"""A host's settings, kept beside its data (``host.json``, mode 0600)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from hyper.config import write_private
from hyper.errors import UsageError
from hyper.jobspec import MAX_SCRIPT_BYTES
from hyper.messages import TIMINGS

SETTINGS_FILE = "host.json"
MAX_BODY_BYTES = 32 * 2**20
MAX_JOBS_PER_REQUEST = 10_000


@dataclass
class HostSettings:
    data_dir: Path
    api_key: str
    name: str = "local"
    # a key that opens only what workers do (hyper/host/auth.py); none on a local host
    worker_key: str = ""
    url: str = ""  # where workers reach the host; known once the daemon has bound its port
    # the workers' timings (hyper.messages.WorkerTimings says what each is)
    lease_seconds: float = TIMINGS.lease_seconds
    heartbeat_seconds: float = TIMINGS.heartbeat_seconds
    worker_idle_seconds: float = TIMINGS.idle_seconds
    worker_patience_seconds: float = TIMINGS.patience_seconds
    scheduler_seconds: float = 0.5  # the scheduler's period when nothing wakes it
    max_wait_seconds: float = TIMINGS.max_wait_seconds  # longest a long-poll request is held
    max_script_bytes: int = MAX_SCRIPT_BYTES  # of a job's script, encoded as UTF-8
    # limits on the doors (docs/reliability-host.md)
    max_body_bytes: int = MAX_BODY_BYTES  # of a JSON request; a file upload has its own
    max_jobs_per_request: int = MAX_JOBS_PER_REQUEST  # the clients split bigger submits
    max_uploads: int = 4  # file uploads received at once; more wait their turn
    header_timeout_seconds: float = 10.0  # to send a request's head, once connected
    idle_timeout_seconds: float = 30.0  # a kept-alive connection without a request closes
    max_connections: int = 1000  # at once on the Unix socket
    max_tcp_connections: int = 256  # at once on the TCP door (with --bind)
    tls_handshake_seconds: float = 10.0  # to finish the TLS handshake on the TCP door
    # what is kept
    retention_days: float = 30.0  # finished jobs, their logs and files are purged after this

    @property
    def database(self) -> Path:
        return self.data_dir / "hyper.db"

    @property
    def workers_dir(self) -> Path:
        """Where local workers keep their folders (worker.log, spools), one each."""
        return self.data_dir / "workers"

    def save(self) -> None:
        data = asdict(self)
        data.pop("data_dir")
        data.pop("url")
        if not data["worker_key"]:
            data.pop("worker_key")
        write_private(self.data_dir / SETTINGS_FILE, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, data_dir: Path) -> HostSettings:
        """The settings in `data_dir`; a damaged file is one UsageError naming it."""
        path = data_dir / SETTINGS_FILE
        known = {f.name: f for f in fields(cls)}
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            values = {k: v for k, v in data.items() if k in known and k != "data_dir"}
            for name, value in values.items():
                _check(name, value, known[name].type)
            if not isinstance(values.get("api_key"), str) or not values["api_key"]:
                raise ValueError("no api_key")
        except FileNotFoundError:
            raise UsageError(
                f"{path} is missing; restore it from a backup of the folder, or delete the"
                " host and create it again"
            ) from None
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise UsageError(
                f"{path} is damaged ({str(error)[:80]}); restore it from a backup of the"
                " folder, or fix it by hand (it is JSON)"
            ) from None
        return cls(data_dir=data_dir, **values)


def _check(name: str, value: object, annotation: object) -> None:
    """A value of the declared type (the annotations are strings here)."""
    kind = str(annotation)
    if kind == "str" and not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    if kind in ("int", "float") and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
    ):
        raise ValueError(f"{name} is not a number of at least 0")
