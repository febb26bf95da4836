"""``hyper items``: Work items."""

from __future__ import annotations

import typer

app = typer.Typer(help="Work items: start and stop them as array jobs, with a preview first.", no_args_is_help=True)
