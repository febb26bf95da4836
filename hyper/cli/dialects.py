"""``hyper dialect-path``: where the PBS, LSF and Slurm commands live."""

from __future__ import annotations

import typer


def dialect_path(
    dialect: str = typer.Argument(..., metavar="DIALECT", help="pbs, lsf or slurm"),
) -> None:
    """Print the folder of this dialect's commands (made if needed), to put first on PATH
    for a tool that drives that scheduler: PATH="$(hyper dialect-path slurm):$PATH"."""
    from qtools.dialect_path import folder

    typer.echo(str(folder(dialect.lower())))
