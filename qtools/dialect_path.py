"""Folders of launchers, one per dialect, for a tool's PATH.

hyper's bsub, sbatch and the others are not installed beside hyper's own commands,
so that they never shadow a real LSF or Slurm on the same machine. Each dialect
gets a folder of small launchers (``hyper dialect-path slurm`` makes it and prints
it); a user puts that folder first on PATH for the tools that should submit to hyper:

    PATH="$(hyper dialect-path slurm):$PATH" snakemake ...

The launchers run this Python (the one hyper is installed in), so they are made
again when it changes. The pbs folder holds qsub, qstat, qdel, qhold and qrls, the
same commands as hyper's own, for a PATH that should have only those.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMMANDS: dict[str, dict[str, str]] = {
    "pbs": {
        "qsub": "qtools.qsub:main",
        "qstat": "qtools.qstat:main",
        "qdel": "qtools.qdel:main",
        "qhold": "qtools.qdel:hold_main",
        "qrls": "qtools.qdel:release_main",
    },
    "lsf": {
        "bsub": "qtools.lsf:bsub_main",
        "bjobs": "qtools.lsf:bjobs_main",
        "bkill": "qtools.lsf:bkill_main",
        "bpeek": "qtools.lsf:bpeek_main",
        "bhist": "qtools.lsf:bhist_main",
    },
    "slurm": {
        "sbatch": "qtools.slurm:sbatch_main",
        "squeue": "qtools.slurm:squeue_main",
        "scancel": "qtools.slurm:scancel_main",
        "sacct": "qtools.slurm:sacct_main",
        "scontrol": "qtools.slurm:scontrol_main",
        "srun": "qtools.srun:srun_main",  # inside a job: its steps
    },
}
DIALECTS = tuple(COMMANDS)


def launcher(target: str, python: str) -> str:
    module, _, function = target.partition(":")
    return (
        f"#!{python}\n"
        "# made by `hyper dialect-path`: runs hyper's command of this name\n"
        "import sys\n"
        f"from {module} import {function}\n"
        f"sys.exit({function}())\n"
    )


def folder(dialect: str, root: Path | None = None) -> Path:
    """The dialect's folder of launchers, made (or made again) as needed."""
    if dialect not in COMMANDS:
        from hyper.errors import UsageError

        raise UsageError(f"unknown dialect {dialect!r}; use {', '.join(DIALECTS)}")
    if root is None:
        from hyper.config import data_root

        root = data_root() / "dialects"
    place = root / dialect
    place.mkdir(parents=True, exist_ok=True)
    for command, target in COMMANDS[dialect].items():
        path = place / command
        text = launcher(target, sys.executable)
        try:
            current = path.read_text()
        except OSError:
            current = None
        if current != text:
            partial = place / f".{command}.{os.getpid()}"
            partial.write_text(text)
            partial.chmod(0o755)
            partial.replace(path)  # atomic: a tool running one never reads half of it
    return place
