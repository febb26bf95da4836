"""Workers as processes on this machine."""

from __future__ import annotations

import os
import subprocess
import sys

from hyper.host.settings import HostSettings
from hyper.launchers.base import Launcher, LaunchRequest
from hyper.store.base import WorkerRecord


class LocalLauncher(Launcher):
    kind = "local"

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.workers_dir = settings.data_dir / "workers"
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _start(self, worker_id: str, request: LaunchRequest) -> int | None:
        folder = self.workers_dir / worker_id
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["HYPER_API_KEY"] = self.settings.api_key  # never on the command line
        command = [
            sys.executable,
            "-m",
            "hyper.worker",
            "--url",
            self.settings.url,
            "--worker-id",
            worker_id,
            "--queue",
            request.queue,
            "--definition",
            request.definition.name,
            "--workdir",
            str(folder),
            "--idle-seconds",
            str(self.settings.worker_idle_seconds),
            "--heartbeat-seconds",
            str(self.settings.heartbeat_seconds),
            "--patience-seconds",
            str(self.settings.worker_patience_seconds),
        ]
        if request.definition.timeout_minutes:
            command += ["--lifetime-seconds", str(request.definition.timeout_minutes * 60)]
        with open(folder / "worker.log", "ab") as log:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
                env=env,
                start_new_session=True,
            )
        self._children[child.pid] = child
        return child.pid

    def alive(self, worker: WorkerRecord) -> bool | None:
        if worker.pid is None:
            return None
        child = self._children.get(worker.pid)
        if child is not None:
            if child.poll() is None:
                return True
            del self._children[worker.pid]
            return False
        try:  # started by an earlier run of the daemon
            os.kill(worker.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self) -> None:
        for child in list(self._children.values()):
            child.poll()
        self._children.clear()
