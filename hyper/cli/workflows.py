"""``hyper workflows``: Job workflows from INI files."""

from __future__ import annotations

import typer

app = typer.Typer(help="Job workflows from INI files: jobs run in order on a cluster made for the run.", no_args_is_help=True)
