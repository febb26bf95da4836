"""The ``hyper`` command: one Typer group per resource, composed here.

Usage errors and hyper's own errors leave as one line on stderr and an exit
code (see ``hyper.errors``); nothing prompts when stdin is not a terminal.
"""

from __future__ import annotations

import sys

import typer

from hyper.cli import hosts

app = typer.Typer(
    name="hyper",
    help="Manage hyper hosts and their resources.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
app.add_typer(hosts.app, name="hosts")


def main(argv: list[str] | None = None) -> int:
    import click

    from hyper.errors import EXIT_USAGE, HyperError

    try:
        code = app(args=argv, prog_name="hyper", standalone_mode=False)
    except click.exceptions.UsageError as error:
        sys.stderr.write(f"hyper: {error.format_message()}\n")
        return EXIT_USAGE
    except click.exceptions.Abort:
        sys.stderr.write("hyper: aborted\n")
        return 130
    except HyperError as error:
        sys.stderr.write(f"hyper: {error}\n")
        return error.exit_code
    return code if isinstance(code, int) else 0
