"""Tracebacks from a worker show the user's own source lines, whatever cloudpickle does
with file names, and even where the user's file does not exist on the worker.

CI also runs this module with the oldest cloudpickle the project allows (.ci/run)."""

from __future__ import annotations

import importlib
import io
import linecache
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import cloudpickle
import pytest

from hyper import tarballs
from hyper.python_api import payload, sources

USER_CODE = """
import functools


def shout(word):
    return word.upper()


def twice(fn):
    @functools.wraps(fn)
    def both(*args):
        return fn(*args) + fn(*args)
    return both


@twice
def fail(n):
    if n > 0:
        helper = lambda: 1 / 0  # noqa: E731
        raise ValueError(f"bad input {n}") from None if helper else None
    return n
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user's module, as a project or a notebook would have it: not installed, so its
    functions travel by value; its file is gone before any worker runs."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "userjob.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("userjob")
    yield module
    sys.modules.pop("userjob", None)


def _without_the_file(module) -> str:
    """Delete the module's file, so that only what was shipped can show its lines."""
    path = module.__file__
    Path(path).unlink()
    linecache.checkcache(path)
    return path


def _run_worker(workdir: Path, code: str) -> subprocess.CompletedProcess[bytes]:
    """A fresh Python in `workdir`, as a worker is: the user's module is not on its path."""
    env = {**os.environ, "HYPER_ARRAY_INDEX": "0"}
    return subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True)


def test_a_job_of_calls_shows_the_source_of_a_by_value_function(user_module, tmp_path) -> None:
    package = payload.calls_package(user_module.fail, [[((7,), {})]])
    path = _without_the_file(user_module)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:gz") as archive:
        tarballs.extract(archive, workdir)
    done = _run_worker(workdir, "import sys, hyper.python_api.remote as r; sys.exit(r.main())")
    assert done.returncode == 1, done.stderr
    [outcome] = payload.read_result((workdir / payload.RESULT).read_bytes(), 1)
    with pytest.raises(ValueError, match="bad input 7") as raised:
        payload.unwrap(outcome)
    text = raised.value.__cause__.text
    assert f'File "{path}"' in text and sources.DYNAMIC_CODE not in text
    assert 'raise ValueError(f"bad input {n}")' in text
    assert "return fn(*args) + fn(*args)" in text  # the decorator's frame too


def test_a_pool_call_shows_the_source_of_a_by_value_function(user_module, tmp_path) -> None:
    call = payload.pickle_call(user_module.fail, (3,), {})
    path = _without_the_file(user_module)
    (tmp_path / "call.pickle").write_bytes(call)
    done = _run_worker(
        tmp_path,
        "import sys, hyper.python_api.payload as p;"
        " sys.stdout.buffer.write(p.run_pickled_call(open('call.pickle', 'rb').read()))",
    )
    assert done.returncode == 0, done.stderr
    text = pickle.loads(done.stdout)["traceback"]
    assert f'File "{path}"' in text and sources.DYNAMIC_CODE not in text
    assert 'raise ValueError(f"bad input {n}")' in text


def test_values_come_back_unchanged_and_names_are_real(user_module) -> None:
    spans = sources.Spans()
    cloudpickle.register_pickle_by_value(user_module)
    try:
        data = sources.dumps(cloudpickle, (user_module.shout, user_module.fail), spans)
    finally:
        cloudpickle.unregister_pickle_by_value(user_module)
    shout, fail = pickle.loads(data)
    assert shout("hi") == "HI" and fail(0) == 0
    assert shout.__code__.co_filename == user_module.__file__
    lines = spans.lines()
    assert set(lines) == {user_module.__file__}
    shipped = "".join(lines[user_module.__file__].values())
    assert "return word.upper()" in shipped and "import functools" not in shipped


def test_registered_lines_survive_a_cache_check(tmp_path) -> None:
    name = str(tmp_path / "gone.py")
    sources.register({name: {3: "x = 1\n"}})
    linecache.checkcache(name)
    assert linecache.getline(name, 3) == "x = 1\n"
    assert linecache.getline(name, 1) == "\n"
    linecache.cache.pop(name)
