"""``hyper data``: Staging."""

from __future__ import annotations

import typer

app = typer.Typer(help="Staging: upload inputs to a bucket and download outputs from it.", no_args_is_help=True)
