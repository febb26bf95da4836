"""``hyper tasks``: Work-item pipelines."""

from __future__ import annotations

import typer

app = typer.Typer(help="Work-item pipelines: run and check tasks.json files.", no_args_is_help=True)
