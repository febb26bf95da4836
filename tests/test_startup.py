"""The shell tools start fast: they never import a web framework, an AWS SDK,
a prompt library or the hyper CLI's own stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "boto3",
    "botocore",
    "questionary",
    "prompt_toolkit",
    "typer",
    "rich",
    "psutil",
    "httpx",
)

PROBE = """
import json, sys
import hyper, hyper.hosts, hyper.client, hyper.local_host
import qtools.qsub, qtools.qstat, qtools.qlog, qtools.qdel
print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def test_shell_tools_import_nothing_heavy() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_help_works_without_a_host(tmp_path) -> None:
    for tool in ("qsub", "qstat", "qlog", "qdel"):
        done = subprocess.run(
            [sys.executable, "-m", f"qtools.{tool}", "--help"],
            capture_output=True,
            text=True,
            env={"HYPER_HOME": str(tmp_path)},
        )
        assert done.returncode == 0 and "usage:" in done.stdout, tool
    assert not (tmp_path / "config").exists()  # --help created no host
