"""Shared fixtures: a private HYPER_HOME per test, a fresh store, the API in-process,
and a real local host daemon with real worker processes; and the test tiers.

Tiers: bare `pytest` runs the fast tier (unit, API, store contract, and the end-to-end
tests marked `smoke`); `pytest -m e2e` or `-m slow` runs those; `pytest --tier all`
(what .ci/run does) runs everything. Naming test files or `-m` chooses as pytest always
does. A test that uses a real local host is `e2e` whether or not it says so.

Run in parallel (`-n 3`, as .ci/run does), the slow tests are handed out first, so
that the longest do not start last; tests marked `alone` (they stop, kill or starve
processes, or time what they see) are for a run of their own: `-m alone`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hyper import config, hosts, local_host
from hyper.config import HostConfig
from hyper.host_settings import HostSettings
from hyper.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


FAST_TIER = "smoke or not (e2e or slow)"
# fixtures that start a real daemon: a test that uses one is end-to-end
DAEMON_FIXTURES = frozenset({"local"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=("fast", "all"),
        help="fast: unit, API, contract and smoke tests (the default for a bare `pytest`);"
        " all: every test",
    )


def _bare_fast_run(config: pytest.Config) -> bool:
    """A bare `pytest` (no paths, no -m, no --tier): the fast tier."""
    bare = config.args_source is pytest.Config.ArgsSource.TESTPATHS
    return bare and config.getoption("tier") is None and not config.option.markexpr


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads -n
def pytest_cmdline_main(config: pytest.Config) -> None:
    """A bare `pytest` runs the fast tier on every core, unless -n (or -p no:xdist) says
    otherwise: the tier is a few thousand short tests that mostly wait on moto and SQLite."""
    controller = not hasattr(config, "workerinput")  # xdist's workers run what they are given
    if controller and _bare_fast_run(config) and getattr(config.option, "numprocesses", 0) is None:
        config.option.numprocesses = "auto"
        config.option.dist = "worksteal"


def _keep_bytecode() -> None:
    """Compiled modules are kept, as an installed package keeps its own: the tests start
    thousands of Python processes (daemons, workers, commands) from this checkout, and
    pytest rewrites every test module in each of its own processes. Where the environment
    sets PYTHONDONTWRITEBYTECODE, each would compile them all again: a fifth of the CPU of
    the end-to-end tests, and 13 s of it for each pytest process to collect the tests."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # for the processes the tests start
    sys.dont_write_bytecode = False  # for this one: before the test modules are read


def pytest_configure(config: pytest.Config) -> None:
    _keep_bytecode()
    if config.getoption("tier") == "fast" or _bare_fast_run(config):
        config.option.markexpr = FAST_TIER


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses_daemon = DAEMON_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_daemon and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
    if getattr(config.option, "numprocesses", None):
        # slow tests first (a stable sort: each tier keeps its order)
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def hyper_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HYPER_HOME", str(home))
    monkeypatch.delenv("HYPER_HOST", raising=False)
    return home


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials, and nothing pointing boto3 at a real account."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_credentials(monkeypatch)


def moto_one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request atomically; moto, called from several threads at
    once, does not: here it handles one request at a time, as the service would."""
    import threading

    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.RLock()
    handle_request = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, *args: object, **kwargs: object) -> object:
        with lock:
            return handle_request(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)


def moto_backs_up_a_table_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto backs up a table (a deep copy) before a transaction for each of its items that
    names the table, all before any is applied: one copy per table is the same backup, and
    spares a transaction of 100 tasks copying a table of thousands 100 times."""
    from types import SimpleNamespace

    import moto.dynamodb.models as models

    transact = models.DynamoDBBackend.transact_write_items

    def once(self: models.DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        backups: dict[int, Any] = {}

        def deepcopy(value: Any, memo: Any = None) -> Any:
            if not isinstance(value, models.Table):
                return copy.deepcopy(value, memo)
            if id(value) not in backups:
                backups[id(value)] = copy.deepcopy(value)
            return backups[id(value)]

        with monkeypatch.context() as patch:
            patch.setattr(models, "copy", SimpleNamespace(deepcopy=deepcopy))
            transact(self, transact_items)

    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", once)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "store.db")
    yield db
    db.close()


@pytest.fixture
def settings(tmp_path: Path) -> HostSettings:
    return HostSettings(data_dir=tmp_path, api_key="test-key", url="http://127.0.0.1:9")


@pytest.fixture
def api(settings: HostSettings, store: SQLiteStore) -> Iterator[object]:
    """The host app in-process (no scheduler), authenticated."""
    from fastapi.testclient import TestClient

    from hyper.host.app import create_app

    app = create_app(settings, store)
    with TestClient(app, headers={"x-api-key": settings.api_key}) as client:
        yield client


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class LocalHost:
    """A real daemon in a private HYPER_HOME, and helpers to drive the shell tools."""

    config: HostConfig
    env: dict[str, str]
    cwd: Path

    @property
    def data_dir(self) -> Path:
        current = config.load_host(self.config.name).data_dir  # it may have moved
        assert current
        return Path(current)

    def sh(
        self,
        *argv: str,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run one of our commands as a user would, in its own process."""
        command = [str(BIN / argv[0]), *argv[1:]]
        done = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            env=env or self.env,
            cwd=self.cwd,
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(
        self,
        *argv: str,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> str:
        result = self.sh(*argv, input=input, timeout=timeout, env=env)
        assert result.code == 0, f"{argv} exited {result.code}: {result.err}"
        return result.out

    def follow(self, job_id: str) -> subprocess.Popen[str]:
        """`qlog -f JOB` started, its output to read as it comes."""
        return subprocess.Popen([str(BIN / "qlog"), "-f", job_id], cwd=self.cwd, env=self.env,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip

    def script(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.write_text(text)
        return path

    def daemon_pid(self) -> int:
        state = local_host.status(config.load_host(self.config.name))
        assert state.pid
        return state.pid

    def job(self, job_id: str | int) -> dict:
        return json.loads(self.ok("qstat", "-i", str(job_id), "--json"))["job"]

    def wait_finished(self, job_id: str | int, timeout: float = 60) -> dict:
        self.wait_for(
            lambda: self.job(job_id)["status"] in ("Successful", "Failed", "Cancelled"),
            timeout,
            f"job {job_id} to finish",
        )
        return self.job(job_id)

    def worker_pids(self) -> list[int]:
        with contextlib.closing(sqlite3.connect(self.data_dir / "hyper.db")) as db:
            return [row[0] for row in db.execute("SELECT pid FROM workers WHERE pid IS NOT NULL")]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        wait_until(predicate, timeout, what)


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Return once `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def _end_worker(pid: int) -> None:
    """SIGTERM a worker this test started, making sure the pid is still that worker."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"hyper.worker" in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def running_local_host(home: Path, cwd: Path, **settings: float) -> Iterator[LocalHost]:
    """A local host named `local` in HYPER_HOME `home`, running with quick settings (and
    the host `settings` given: lease_seconds, heartbeat_seconds...), its commands run in
    `cwd`; stopped, with its workers, afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HYPER_HOME", str(home))
        patch.delenv("HYPER_HOST", raising=False)
        host = hosts.create_host(hosts.HostRequest(name="local"), start=False)
        assert host.data_dir
        tuned = HostSettings.load(Path(host.data_dir))
        tuned.worker_idle_seconds = 3.0
        tuned.worker_patience_seconds = 20.0
        for name, value in settings.items():
            assert hasattr(tuned, name), name
            setattr(tuned, name, value)
        tuned.save()
        local_host.start(host)
        cwd.mkdir(exist_ok=True)
        env = {**os.environ, "HYPER_HOME": str(home)}
        env.pop("HYPER_HOST", None)
        handle = LocalHost(config.load_host("local"), env, cwd)
        try:
            yield handle
        finally:
            pids = handle.worker_pids()
            local_host.stop(config.load_host("local"))
            for pid in pids:
                _end_worker(pid)


@pytest.fixture
def local(hyper_home: Path, tmp_path: Path) -> Iterator[LocalHost]:
    """A running local host with quick settings; stopped, with its workers, afterwards."""
    with running_local_host(hyper_home, tmp_path / "work") as handle:
        yield handle


@pytest.fixture(autouse=True, scope="session")
def _moto_batch_as_aws(request: pytest.FixtureRequest) -> Iterator[None]:
    """The AWS tests' moto makes compute environments without a serviceRole as AWS does
    (tests/helpers/aws.py), from before any of their fixtures; a run without AWS tests
    does not import moto for it."""
    if not any("aws" in item.nodeid for item in request.session.items):
        yield
        return
    from tests.helpers.aws import batch_takes_its_service_linked_role

    patch = pytest.MonkeyPatch()
    batch_takes_its_service_linked_role(patch)
    yield
    patch.undo()
