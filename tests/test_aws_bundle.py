"""The Lambda code bundle: what goes in, that the same inputs give the same zip, and
that the host app runs from the bundle alone (Python without site-packages)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hyper.providers.aws import bundle
from hyper.providers.aws.templates import LAMBDA_PYTHON, LAMBDA_RUNTIME


def test_the_requirements_leave_out_what_lambda_has_and_the_cli() -> None:
    required = bundle.runtime_requirements()
    names = {bundle._name(r) for r in required}
    assert {"fastapi", "pydantic"} <= names
    assert not names & {"boto3", "botocore", "typer", "rich", "questionary", "uvicorn"}
    assert not names & {"pytest", "moto", "cfn-lint"}  # extras stay out
    assert all("extra" not in r for r in required)


def test_installed_versions_pin_what_is_here() -> None:
    pins = bundle.installed_versions()
    assert pins == sorted(pins)
    assert any(p.startswith("fastapi==") for p in pins)
    assert not any(p.startswith("hyper-scheduler==") for p in pins)


def test_the_zip_depends_only_on_names_and_contents(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "pkg" / "__pycache__").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "pkg" / "a.py").write_text("A = 1\n")
    (tree / "pkg" / "b.py").write_text("B = 2\n")
    (tree / "pkg" / "a.pyc").write_bytes(b"compiled")
    (tree / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"compiled")
    (tree / "bin" / "tool").write_text("#!/this/machine/python\n")
    files = list(bundle.tree_files(tree))
    assert [name for name, _ in files] == ["pkg/a.py", "pkg/b.py"]

    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    bundle.write_zip(files, first)
    os.utime(tree / "pkg" / "a.py", (1_000_000, 1_000_000))
    (tree / "pkg" / "b.py").chmod(0o600)
    bundle.write_zip(reversed(files), second)
    assert first.read_bytes() == second.read_bytes()
    assert bundle.file_digest(first) == bundle.file_digest(second)
    with zipfile.ZipFile(first) as made:
        infos = made.infolist()
    assert {i.date_time for i in infos} == {bundle.ZIP_TIME}
    assert {i.external_attr >> 16 for i in infos} == {bundle.FILE_MODE}

    (tree / "pkg" / "b.py").write_text("B = 3\n")
    third = tmp_path / "3.zip"
    bundle.write_zip(bundle.tree_files(tree), third)
    assert bundle.file_digest(third) != bundle.file_digest(first)


# runs the function's code as Lambda would import it: from the bundle only
RUN_FROM_BUNDLE = """
import json, pathlib, sys, tempfile
sys.path.insert(0, sys.argv[1])
from hyper.host.app import create_app
from hyper.host.lambda_adapter import LambdaApp, make_handler
from hyper.host_settings import HostSettings
from hyper.store.sqlite import SQLiteStore

data = pathlib.Path(tempfile.mkdtemp())
settings = HostSettings(data_dir=data, api_key="bundle-key")
store = SQLiteStore(data / "store.db")
handler = make_handler(lambda: LambdaApp(create_app(settings, store)))
event = {"httpMethod": "GET", "path": "/resources/queues", "headers": {"x-api-key": "bundle-key"},
         "body": None, "isBase64Encoded": False}
answer = handler(event, None)
handler.close()
store.close()
import fastapi, pydantic_core
print(json.dumps({
    "status": answer["statusCode"],
    "queues": [q["name"] for q in json.loads(answer["body"])["items"]],
    "from_bundle": [m.__file__.startswith(sys.argv[1]) for m in (fastapi, pydantic_core)],
    "absent": [m for m in ("boto3", "typer", "rich", "questionary", "uvicorn")
               if m in sys.modules],
}))
"""


def lambda_python() -> str:
    """A Python of the Lambda runtime's version: this one, one on PATH or pyenv's."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == LAMBDA_PYTHON:
        return sys.executable
    found = [shutil.which(f"python{LAMBDA_PYTHON}") or ""]
    found += sorted(map(str, Path.home().glob(f".pyenv/versions/{LAMBDA_PYTHON}.*/bin/python3")))
    for python in filter(None, found):
        runs = subprocess.run([python, "-c", "pass"], capture_output=True, timeout=60, check=False)
        if runs.returncode == 0:
            return python
    pytest.skip(f"no Python {LAMBDA_PYTHON} here to run the bundle as Lambda's runtime does")


@pytest.mark.slow
def test_the_bundle_is_reproducible_and_runs_the_host(tmp_path: Path) -> None:
    """pip fetches Linux wheels (the network, or a local index); the same twice."""
    assert f"python{LAMBDA_PYTHON}" == LAMBDA_RUNTIME
    first = bundle.build_bundle(tmp_path / "one")
    second = bundle.build_bundle(tmp_path / "two")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    assert first.name == f"hyper-lambda-{bundle.file_digest(first)[:16]}.zip"
    assert first.stat().st_size < 50 * 1024 * 1024  # what Lambda takes zipped

    with zipfile.ZipFile(first) as made:
        names = made.namelist()
        made.extractall(tmp_path / "unpacked")
    tops = {n.split("/")[0] for n in names}
    assert "hyper/host/lambda_adapter.py" in names
    assert {"fastapi", "starlette", "pydantic", "pydantic_core", "psutil"} <= tops
    assert not tops & {"boto3", "botocore", "typer", "rich", "questionary", "uvicorn", "bin"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    python_tag = "cpython-" + LAMBDA_PYTHON.replace(".", "")
    assert any(n.startswith("pydantic_core/") and python_tag in n for n in names)

    # the same Python as Lambda's runtime runs it from the bundle alone
    python = lambda_python()
    done = subprocess.run(
        [python, "-I", "-S", "-c", RUN_FROM_BUNDLE, str(tmp_path / "unpacked")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["status"] == 200
    assert seen["queues"]  # the lifespan made the local defaults
    assert seen["from_bundle"] == [True, True]
    assert seen["absent"] == []
