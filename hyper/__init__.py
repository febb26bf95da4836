"""hyper: a job scheduler and resource orchestrator with a PBS/LSF-style shell interface.

Importing this package is cheap on purpose: no web framework, AWS SDK or prompt
library is loaded until a command needs it. The Python API is loaded on first use:

    import hyper
    with hyper.Executor(queue="sample-queue-1", definition="sample-def-1") as ex:
        print(sum(ex.map(pow, range(100), [2] * 100)))
"""

from __future__ import annotations

from hyper.version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (3 ms)
if TYPE_CHECKING:
    from typing import Any

    from hyper.errors import PoolError, RemoteError
    from hyper.python_api.executor import Executor, JobFuture
    from hyper.python_api.pool import WorkerPool

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    "Executor": "hyper.python_api.executor",
    "JobFuture": "hyper.python_api.executor",
    "WorkerPool": "hyper.python_api.pool",
    "PoolError": "hyper.errors",
    "RemoteError": "hyper.errors",
}

__all__ = ["Executor", "JobFuture", "PoolError", "RemoteError", "WorkerPool", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hyper' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
