"""Recording stand-ins for a batch system's commands (PBS's qsub/qstat/qdel, LSF's
bsub/bjobs/bkill): each appends its argv as one JSON line to `calls.jsonl` and prints what
the real command would for a submitted array. Only the commands are checked with these;
Slurm is tested against a real one."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

ANSWERS = {
    "qsub": "12[].pbs-server",
    "qstat": json.dumps(
        {
            "Jobs": {
                "12[].pbs-server": {"job_state": "B"},
                "12[1].pbs-server": {"job_state": "R"},
                "12[2].pbs-server": {"job_state": "Q"},
            }
        }
    ),
    "qdel": "",
    "bsub": "Job <34> is submitted to queue <normal>.",
    "bjobs": "34|1|RUN\n34|2|PEND",
    "bkill": "Job <34[2]> is being terminated",
}


def install(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The recording commands in `folder/bin`, first on PATH; returns the calls file."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = folder / "calls.jsonl"
    for name, answer in ANSWERS.items():
        path = bin_dir / name
        path.write_text(
            "#!/usr/bin/env python3\n"
            "import json, sys\n"
            f"with open({str(calls)!r}, 'a') as out:\n"
            "    out.write(json.dumps(sys.argv[1:]) + '\\n')\n"
            f"print({answer!r})\n"
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return calls


def calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
