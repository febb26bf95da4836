"""The ``hyper`` command: one Typer group per resource, composed here.

hyper's own errors leave as one line on stderr and their exit code (see
``hyper.errors``), usage errors as one line and exit 2; nothing prompts when
stdin is not a terminal.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from hyper.cli import hosts
from hyper.errors import EXIT_USAGE, HyperError


class HyperGroup(TyperGroup):
    """Turns a HyperError from any command below it into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HyperError as error:
            click.echo(f"hyper: {error}", err=True)
            ctx.exit(error.exit_code)


app = typer.Typer(
    name="hyper",
    cls=HyperGroup,
    help="Manage hyper hosts and their resources.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
app.add_typer(hosts.app, name="hosts")


def main(argv: list[str] | None = None) -> int:
    try:
        code = app(args=argv, prog_name="hyper", standalone_mode=False)
    except click.exceptions.UsageError as error:
        sys.stderr.write(f"hyper: {error.format_message()}\n")
        return EXIT_USAGE
    except click.exceptions.Abort:
        sys.stderr.write("hyper: aborted\n")
        return 130
    return code if isinstance(code, int) else 0
