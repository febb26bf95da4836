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
import qtools.lsf, qtools.slurm, qtools.pbs_formats, qtools.dialect, qtools.dialect_path
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


def test_dialect_commands_start_without_a_host(tmp_path) -> None:
    """Each dialect's launchers (made by `hyper dialect-path`) answer --help without a
    host and without importing anything heavy on the way."""
    from qtools.dialect_path import COMMANDS, folder

    for dialect, commands in COMMANDS.items():
        place = folder(dialect, tmp_path / "dialects")
        for command in commands:
            done = subprocess.run(
                [str(place / command), "--help"],
                capture_output=True,
                text=True,
                env={"HYPER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            )
            assert done.returncode == 0 and "sage" in done.stdout, (command, done.stderr)
    assert not (tmp_path / "config").exists()
