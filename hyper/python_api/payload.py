"""What travels between a program and its calls on workers: packages going out, outcomes
coming back.

A package is a gzip'd tar holding a manifest (which Python and cloudpickle made it, and
what the job is to do) and pickles. Functions travel with cloudpickle, which works only
between the same Python major.minor and the same cloudpickle major version: the worker's
side checks before it unpickles anything, and says which Python to use instead.

An outcome is one call's return value or exception, pickled on its own so that one value
that cannot be pickled, or one exception that cannot be unpickled, spoils nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import platform
import site
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hyper import tarballs
from hyper.errors import RemoteError, UsageError
from hyper.jobs import MAX_FILE_BYTES
from hyper.python_api import sources

MANIFEST = "hyper-python.json"
FUNCTION = "function.pickle"
# every task's calls, each pickled apart: a task unpickles only its own (one file, not one
# per task, as every task unpacks the whole package)
CALLS = "calls.pickle"
SOURCES = "sources.pickle"  # the lines of the code sent by value, for tracebacks
RESULT = "result.pickle"  # what a job of calls leaves for the worker to collect
POOL_SECRET = "pool-secret"  # mode 0600; read, then deleted, by the pool's worker

Call = tuple[tuple[Any, ...], dict[str, Any]]  # positional and keyword arguments


class RemoteTraceback(Exception):
    """Where a call failed on its worker: made the cause of the exception re-raised here,
    as concurrent.futures.ProcessPoolExecutor does, so both tracebacks print."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


@dataclass(frozen=True)
class Versions:
    python: str
    cloudpickle: str

    @classmethod
    def here(cls) -> Versions:
        import cloudpickle

        return cls(platform.python_version(), cloudpickle.__version__)


def _leading(version: str, parts: int) -> list[str]:
    return version.split(".")[:parts]


def incompatibility(pickled_by: Versions, runner: Versions) -> str | None:
    """Why what `pickled_by` pickled cannot be run by `runner`, or None when it can."""
    wanted = ".".join(_leading(pickled_by.python, 2))
    if _leading(pickled_by.python, 2) != _leading(runner.python, 2):
        return (
            f"the worker's Python {runner.python} cannot run functions pickled by Python"
            f" {pickled_by.python} (the major.minor versions must match): set HYPER_PYTHON"
            f" (Executor/WorkerPool python=...) to a Python {wanted} with hyper installed"
        )
    if _leading(pickled_by.cloudpickle, 1) != _leading(runner.cloudpickle, 1):
        major = _leading(pickled_by.cloudpickle, 1)[0]
        return (
            f"the worker's cloudpickle {runner.cloudpickle} cannot load what cloudpickle"
            f" {pickled_by.cloudpickle} pickled: install cloudpickle {major}.x where the jobs run"
        )
    return None


# functions of the user's own modules go by value; cloudpickle's list of such modules is
# process-wide, so one pickling at a time changes it
_BY_VALUE_LOCK = threading.Lock()


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    """Where installed code lives: the standard library and every site-packages."""
    paths = sysconfig.get_paths()
    found = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    found += [*site.getsitepackages(), site.getusersitepackages()]
    return tuple(Path(p).resolve() for p in found)


def _own_package(fn: Callable[..., Any]) -> ModuleType | None:
    """The top package of `fn` when it is the user's own code (a project's module, a test
    file) rather than something installed: a worker could not import it by name."""
    name = getattr(fn, "__module__", None) or ""
    top = sys.modules.get(name.partition(".")[0])
    if top is None or top.__name__ in ("__main__", "hyper", "builtins"):
        return None  # cloudpickle sends __main__ by value already; hyper is on every worker
    where = getattr(top, "__file__", None) or next(iter(getattr(top, "__path__", [])), None)
    if where is None:
        return None  # built in
    path = Path(where).resolve()
    if any(path.is_relative_to(root) for root in _installed_roots()):
        return None
    return top


@contextlib.contextmanager
def _by_value(fn: Callable[..., Any]) -> Iterator[Any]:
    import cloudpickle

    package = _own_package(fn)
    with _BY_VALUE_LOCK:
        registered = (
            package is not None
            and package.__name__ not in cloudpickle.list_registry_pickle_by_value()
        )
        if registered:
            cloudpickle.register_pickle_by_value(package)
        try:
            yield cloudpickle
        finally:
            if registered:
                cloudpickle.unregister_pickle_by_value(package)


def _tar(files: dict[str, bytes], private: Sequence[str] = ()) -> bytes:
    data = tarballs.pack(files.items(), private=private)
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(
            f"the pickled function and arguments take {len(data) / 2**20:.1f} MiB once"
            f" compressed; the host takes at most {MAX_FILE_BYTES // 2**20} MiB:"
            " pass smaller arguments (or where to read them) instead"
        )
    return data


def _manifest(kind: str, versions: Versions | None, **fields: Any) -> bytes:
    body = {"kind": kind, "versions": asdict(versions or Versions.here()), **fields}
    return json.dumps(body).encode()


def calls_package(
    fn: Callable[..., Any], tasks: Sequence[Sequence[Call]], *, versions: Versions | None = None
) -> bytes:
    """A package for a job (one task) or an array (a task per entry), each task running
    `fn` on its calls in order. `versions` says which Python made it (default: this one)."""
    spans = sources.Spans()
    with _by_value(fn) as cloudpickle:
        function = sources.dumps(cloudpickle, fn, spans)
        each = [sources.dumps(cloudpickle, list(own), spans) for own in tasks]
    calls = pickle.dumps(each, protocol=4)
    lines = pickle.dumps(spans.lines(), protocol=4)
    manifest = _manifest("calls", versions, tasks=len(tasks))
    return _tar({MANIFEST: manifest, FUNCTION: function, CALLS: calls, SOURCES: lines})


def pool_package(address: str, port: int, secret: bytes) -> bytes:
    """A package for a pool's workers: where to connect, and the secret that proves it."""
    manifest = _manifest("pool", None, address=address, port=port)
    return _tar({MANIFEST: manifest, POOL_SECRET: secret.hex().encode()}, private=[POOL_SECRET])


def pickle_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """One call, for a pool's worker, with the lines of its code."""
    spans = sources.Spans()
    with _by_value(fn) as cloudpickle:
        call = sources.dumps(cloudpickle, (fn, args, kwargs), spans)
    return pickle.dumps((call, spans.lines()), protocol=4)


# the worker's side -----------------------------------------------------------------


def _error_outcome(error: BaseException, text: str) -> bytes:
    import cloudpickle

    try:
        exception: bytes | None = cloudpickle.dumps(error)
    except Exception:  # an exception holding a lock, a socket...: its text still comes back
        exception = None
    kind = type(error)
    return pickle.dumps(
        {
            "exception": exception,
            "type": f"{kind.__module__}.{kind.__qualname__}",
            "message": str(error),
            "traceback": text,
        }
    )


def run_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Run one call and return its outcome, pickled."""
    import cloudpickle

    try:
        value = fn(*args, **kwargs)
    except Exception as error:
        below_us = error.__traceback__.tb_next if error.__traceback__ else None
        text = "".join(traceback.format_exception(type(error), error, below_us))
        return _error_outcome(error, text)
    try:
        return pickle.dumps({"value": cloudpickle.dumps(value)})
    except Exception as error:
        return _error_outcome(error, f"the return value of {fn!r} cannot be pickled: {error}\n")


def run_pickled_call(data: bytes) -> bytes:
    """Run a call that `pickle_call` made; its outcome, pickled."""
    try:
        call, lines = pickle.loads(data)
        sources.register(lines)
        fn, args, kwargs = pickle.loads(call)
    except Exception as error:
        return _error_outcome(error, f"cannot load the call here: {error!r}\n")
    return run_call(fn, args, kwargs)


def result_file(outcomes: list[bytes] | None = None, failure: str | None = None) -> bytes:
    """What a job of calls leaves: its outcomes, or why it could not run them. Plain
    pickle of bytes and text, so any Python on either side can read it."""
    body = {"failure": failure} if failure is not None else {"outcomes": outcomes or []}
    return pickle.dumps(body, protocol=4)


# the program's side ----------------------------------------------------------------


def read_result(data: bytes, count: int) -> list[bytes]:
    """The `count` outcomes in a job's result file; RemoteError when the job could not
    run its calls."""
    try:
        body = pickle.loads(data)
    except Exception as error:
        raise RemoteError(f"the job's result cannot be read: {error}") from None
    if body.get("failure") is not None:
        raise RemoteError(str(body["failure"]))
    outcomes = list(body.get("outcomes") or [])
    if len(outcomes) != count:
        raise RemoteError(f"the job gave {len(outcomes)} outcomes for {count} calls")
    return outcomes


def unwrap(outcome: bytes) -> Any:
    """The call's return value, or its exception raised with the worker's traceback as
    its cause (RemoteError when the exception cannot be rebuilt here)."""
    body = pickle.loads(outcome)
    if "value" in body:
        return pickle.loads(body["value"])
    cause = RemoteTraceback(body["traceback"])
    error: BaseException | None = None
    if body["exception"] is not None:
        with contextlib.suppress(Exception):
            error = pickle.loads(body["exception"])
    if not isinstance(error, BaseException):
        error = RemoteError(f"{body['type']}: {body['message']}")
    raise error from cause


def settle(future: Future[Any], outcome: bytes) -> None:
    """Give `future` the call's outcome (unless it was cancelled meanwhile)."""
    try:
        value = unwrap(outcome)
    except Exception as error:
        with contextlib.suppress(InvalidStateError):  # it was cancelled meanwhile
            future.set_exception(error)
    else:
        with contextlib.suppress(InvalidStateError):
            future.set_result(value)
