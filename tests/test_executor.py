"""hyper.Executor against a real local host: calls run as jobs on real workers, their
functions and results travelling through the host's file store."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

import hyper
from hyper.errors import UsageError
from hyper.python_api import payload
from tests.conftest import LocalHost
from tests.helpers.executor import DEFINITION, QUEUE, fail, files_left

pytestmark = pytest.mark.e2e


def shout(word: str, *, times: int = 1) -> str:
    print(f"saying {word}")
    return (word.upper() + "!") * times


class NeedsTwo(Exception):
    """An exception that pickles but cannot be unpickled (its __init__ wants two)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")


def fail_oddly() -> None:
    raise NeedsTwo(1, 2)


def die() -> None:
    print("giving up now", file=sys.stderr, flush=True)
    os._exit(3)


def nap(seconds: float) -> None:
    time.sleep(seconds)


def qstat_lines(local: LocalHost) -> list[dict]:
    return list(json.loads(local.ok("qstat", "--json"))["jobs"])


def test_map_runs_as_one_array_job(local: LocalHost) -> None:
    with hyper.Executor(queue=QUEUE, definition=DEFINITION) as ex:
        assert sum(ex.map(pow, range(100), [2] * 100)) == 328350
        chunked = ex.map_array(shout, ["a", "b", "c", "d", "e"], chunksize=2)
        assert [f.result(timeout=60) for f in chunked] == ["A!", "B!", "C!", "D!", "E!"]
        assert list(ex.map(pow, [], [])) == []
    lines = qstat_lines(local)
    assert [(j["kind"], j["name"], j["size"], j["status"]) for j in lines] == [
        ("array", "python-pow", 100, "Successful"),
        ("array", "python-shout", 3, "Successful"),  # 5 items, 2 a task
    ]
    assert {f.array_id for f in chunked} == {lines[1]["id"]}
    assert [f.index for f in chunked] == [0, 0, 1, 1, 2]
    assert files_left(local) == 0  # packages and results are cleared once read


def test_submit_returns_values_and_raises_with_the_remote_traceback(local: LocalHost) -> None:
    with hyper.Executor(queue=QUEUE, definition=DEFINITION, name="calls") as ex:
        ok = ex.submit(shout, "hi", times=2)
        bad = ex.submit(fail, 7)
        odd = ex.submit(fail_oddly)
        assert ok.result(timeout=60) == "HI!HI!"
        error = bad.exception(timeout=60)
        rebuilt = odd.exception(timeout=60)
    assert "saying hi" in ok.log()
    assert isinstance(error, ValueError) and str(error) == "bad input 7"
    cause = error.__cause__
    assert isinstance(cause, payload.RemoteTraceback)
    assert "in fail" in cause.text and 'raise ValueError(f"bad input {n}")' in cause.text
    # an exception that cannot be rebuilt here comes back as its type, message and traceback
    assert isinstance(rebuilt, hyper.RemoteError)
    assert str(rebuilt) == "tests.test_executor.NeedsTwo: 1 and 2"
    assert "raise NeedsTwo(1, 2)" in str(rebuilt.__cause__)
    states = {job["id"]: (job["name"], job["status"]) for job in qstat_lines(local)}
    assert states == {
        ok.job_id: ("calls", "Successful"),
        bad.job_id: ("calls", "Failed"),
        odd.job_id: ("calls", "Failed"),
    }


def test_a_job_that_ends_without_a_result_says_why(local: LocalHost) -> None:
    with hyper.Executor(queue=QUEUE, definition=DEFINITION) as ex:
        future = ex.submit(die)
        error = future.exception(timeout=60)
    assert isinstance(error, hyper.RemoteError)
    assert str(error) == (
        f"no result came back: job {future.job_id} ended Failed (exit code 3): giving up now"
    )


def test_cancel_stops_the_job(local: LocalHost) -> None:
    with hyper.Executor(queue=QUEUE, definition=DEFINITION) as ex:
        running = ex.submit(nap, 60)
        local.wait_for(lambda: local.job(running.job_id)["status"] == "Running", 30, "it to run")
        assert running.cancel()
        assert running.cancelled() and running.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            running.result(timeout=1)
        done = ex.submit(pow, 2, 3)
        assert done.result(timeout=60) == 8
        assert not done.cancel()  # it had ended
        # a map left early cancels what it did not wait for, in one request
        naps = ex.map(nap, [0, 60, 60])
        next(naps)
        naps.close()
    array = qstat_lines(local)[-1]
    assert array["counts"]["Successful"] == 1 and array["counts"]["Cancelled"] == 2
    assert local.wait_finished(running.job_id)["status"] == "Cancelled"
    assert local.job(done.job_id)["status"] == "Successful"


def test_bad_input_changes_nothing(local: LocalHost) -> None:
    with hyper.Executor(queue="no-such-queue", definition=DEFINITION) as ex:
        with pytest.raises(UsageError, match="unknown queue 'no-such-queue'"):
            ex.submit(pow, 2, 3)
        with pytest.raises(ValueError, match="chunksize"):
            ex.map_array(pow, [1], [2], chunksize=0)
    assert qstat_lines(local) == []
    assert files_left(local) == 0
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 2, 3)


def run_remote(folder: Path, package: bytes) -> subprocess.CompletedProcess[str]:
    """The worker's side of a package, as a job runs it: unpacked, in its folder."""
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:gz") as archive:
        archive.extractall(folder, filter="data")
    return subprocess.run(
        [sys.executable, "-m", "hyper.python_api.remote"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HYPER_ARRAY_INDEX": "0"},
    )


@pytest.mark.parametrize(
    ("python", "cloudpickle", "said"),
    [
        ("2.7.18", None, "the worker's Python {here} cannot run functions pickled by Python"
         " 2.7.18 (the major.minor versions must match): set HYPER_PYTHON"),
        (None, "1.6.0", "the worker's cloudpickle {cp} cannot load what cloudpickle 1.6.0"
         " pickled: install cloudpickle 1.x where the jobs run"),
    ],
)  # fmt: skip
def test_the_worker_refuses_what_another_python_pickled(
    tmp_path: Path, python: str | None, cloudpickle: str | None, said: str
) -> None:
    here = payload.Versions.here()
    made_by = payload.Versions(python or here.python, cloudpickle or here.cloudpickle)
    package = payload.calls_package(pow, [[((2, 3), {})]], versions=made_by)
    done = run_remote(tmp_path, package)
    message = said.format(here=here.python, cp=here.cloudpickle)
    assert done.returncode == 1
    assert message in done.stderr
    with pytest.raises(
        hyper.RemoteError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        payload.read_result((tmp_path / payload.RESULT).read_bytes(), 1)
    # the same package made by this Python runs
    same = payload.calls_package(pow, [[((2, 3), {})]])
    assert run_remote(tmp_path / "same", same).returncode == 0
    (outcome,) = payload.read_result((tmp_path / "same" / payload.RESULT).read_bytes(), 1)
    assert payload.unwrap(outcome) == 8


def test_importing_hyper_loads_no_web_framework_sdk_or_cli() -> None:
    heavy = ("fastapi", "starlette", "uvicorn", "boto3", "botocore", "typer", "questionary")
    code = (
        "import sys, hyper\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
        "hyper.Executor, hyper.WorkerPool, hyper.RemoteError\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "[]"]
    assert "Executor" in dir(hyper)
    with pytest.raises(AttributeError):
        _ = hyper.NoSuchThing
