"""The shell tools start fast: they never import a web framework, an AWS SDK,
a prompt library or the hyper CLI's own stack; and on their common paths (a plain
command line, a local host) none of the standard library's slow starters either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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

# what each costs a command's start (docs/speed.md, B1): argparse (and the gettext and
# locale look-ups of its messages) only for --help, errors and unusual command lines;
# the others never on these paths
SLOW_STARTERS = (
    "argparse",
    "gettext",
    "locale",
    "typing",
    "pathlib",
    "urllib.parse",
    "ipaddress",
    "tempfile",
    "shutil",
    "random",
    "socket",
    "selectors",
    "threading",
    "subprocess",
    "hashlib",
    "dataclasses",
    "inspect",
    "logging",
    "asyncio",
    "platformdirs",
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


PLAIN_PROBE = """
import json, os, sys
from qtools import qdel, qlog, qstat, qsub, slurm, lsf, dialect, pbs_formats
from hyper import config
from hyper.client import HostClient
from hyper.transport import urlencode
args = qsub.build_parser().parse_args(["-h", "-q", "Q", "-d", "D", "-v", "A=1", "job.sh"])
job = qsub.build_job(args, [])
qstat.build_parser().parse_args(["-q", "Q", "--limit", "20"])
qdel.build_parser("qdel").parse_args(["12", "13[1-2]"])
qlog.build_parser().parse_args(["-t", "ALL", "12"])
host = config.load_host(config.current_host_name())
client = HostClient(host.url, host.api_key)
urlencode({"queue": "Q", "limit": 21, "collapse": True, "status": ["Held"]})
print(json.dumps(sorted(sys.modules)))
"""


def _start_env(home: Path) -> dict[str, str]:
    """Python without site-packages (-S): only this checkout's own modules are found,
    so whatever is loaded, the command loaded."""
    return {"HYPER_HOME": str(home), "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]}


def test_plain_command_lines_load_no_slow_starter(hyper_home: Path, tmp_path: Path) -> None:
    from hyper import config

    config.save_host(config.HostConfig("local", "local", "unix:/nowhere/hyper.sock", "key"))
    config.select_host("local")
    (tmp_path / "job.sh").write_text("#!/bin/bash\necho hi\n")
    done = subprocess.run(
        [sys.executable, "-S", "-c", PLAIN_PROBE],
        capture_output=True,
        text=True,
        env=_start_env(hyper_home),
        cwd=tmp_path,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint(SLOW_STARTERS), sorted(loaded & set(SLOW_STARTERS))


# each command as a user runs it against a local host; a launcher as pip and
# `hyper dialect-path` write them
COMMANDS = {
    "qsub": ("qtools.qsub:main", ["-h", "-q", "sample-queue-1", "-d", "sample-def-1", "t.sh"]),
    "qstat": ("qtools.qstat:main", ["-q", "sample-queue-1", "--limit", "20"]),
    "qlog": ("qtools.qlog:main", ["HELD"]),
    "qdel": ("qtools.qdel:main", ["HELD"]),
    "sbatch": ("qtools.slurm:sbatch_main", ["-H", "-p", "sample-queue-1", "--wrap", "true"]),
    "squeue": ("qtools.slurm:squeue_main", ["-p", "sample-queue-1"]),
    "scancel": ("qtools.slurm:scancel_main", ["HELD"]),
    "bsub": ("qtools.lsf:bsub_main", ["-H", "-q", "sample-queue-1", "true"]),
    "bjobs": ("qtools.lsf:bjobs_main", ["-q", "sample-queue-1"]),
    "bkill": ("qtools.lsf:bkill_main", ["HELD"]),
}


@pytest.mark.e2e
def test_commands_load_no_slow_starter(local) -> None:
    """The whole path of each command, the request to a local host included."""
    env = {**_start_env(Path(local.env["HYPER_HOME"])), "USER": "someone"}
    (local.cwd / "t.sh").write_text("true\n")
    for command, (target, words) in COMMANDS.items():
        held = local.ok("qsub", "-h", "-q", "sample-queue-1", "-d", "sample-def-1", "t.sh")
        module, _, function = target.partition(":")
        launcher = f"import sys; from {module} import {function}; sys.exit({function}())"
        argv = [held.strip() if word == "HELD" else word for word in words]
        done = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", "-c", launcher, *argv],
            capture_output=True, text=True, env=env, cwd=local.cwd, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stderr[-500:])
        loaded = {
            line.rsplit("|", 1)[1].strip()
            for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }
        assert loaded.isdisjoint(SLOW_STARTERS), (command, sorted(loaded & set(SLOW_STARTERS)))
