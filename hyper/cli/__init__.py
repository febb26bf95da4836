"""The ``hyper`` command: one Typer group per resource, composed here.

hyper's own errors leave as one line on stderr and their exit code (see
``hyper.errors``), usage errors as one line and exit 2; nothing prompts when
stdin is not a terminal.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from hyper.cli.walkthrough import pair_arguments
from hyper.errors import EXIT_FAILURE, EXIT_USAGE, HyperError, is_utf8, one_line

# each group's module and the Typer in it: a command loads its own group's modules only,
# `hyper --help` every group's
GROUPS = {
    "hosts": ("hyper.cli.hosts", "app"),
    "regions": ("hyper.cli.resources", "regions"),
    "clusters": ("hyper.cli.resources", "clusters"),
    "queues": ("hyper.cli.resources", "queues"),
    "images": ("hyper.cli.resources", "images"),
    "definitions": ("hyper.cli.resources", "definitions"),
    "worker": ("hyper.cli.worker", "app"),
    "workflows": ("hyper.cli.workflows", "app"),
    "tasks": ("hyper.cli.tasks", "app"),
    "items": ("hyper.cli.items", "app"),
    "data": ("hyper.cli.data", "app"),
}
# commands of their own, not in a group: in every app (two keep `hyper` a group)
COMMANDS = {
    "dashboard": ("hyper.cli.dashboard", "command"),
    "dialect-path": ("hyper.cli.dialects", "dialect_path"),
}


class HyperGroup(TyperGroup):
    """Turns a HyperError from any command below it into one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HyperError as error:
            typer.echo(f"hyper: {error}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:  # a file the user named, say: one line, not a traceback
            typer.echo(f"hyper: {error}", err=True)
            ctx.exit(EXIT_FAILURE)


def make_app(group: str | None = None) -> typer.Typer:
    """The ``hyper`` command with every group, or with only `group` among them (none,
    for one of COMMANDS): the others' modules are not imported, most of a command's
    start."""
    app = typer.Typer(
        name="hyper",
        cls=HyperGroup,
        help="Manage hyper hosts and their resources.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        add_completion=False,
    )
    for name, (module, attribute) in GROUPS.items():
        if group in (None, name):
            app.add_typer(_loaded(module, attribute), name=name)
    for name, (module, attribute) in COMMANDS.items():
        app.command(name)(_loaded(module, attribute))
    return app


def _loaded(module: str, attribute: str) -> Any:
    return getattr(importlib.import_module(module), attribute)


def _click_errors() -> Any:
    import importlib

    try:  # newer Typer releases carry their own copy of click's errors
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


def main(argv: list[str] | None = None) -> int:
    errors = _click_errors()
    args = pair_arguments(sys.argv[1:] if argv is None else argv)
    for arg in args:
        if not is_utf8(arg):
            sys.stderr.write(f"hyper: argument '{one_line(arg)}' is not valid UTF-8\n")
            return EXIT_USAGE
    try:
        group = args[0] if args and (args[0] in GROUPS or args[0] in COMMANDS) else None
        code = make_app(group)(args=args, prog_name="hyper", standalone_mode=False)
    except errors.UsageError as error:
        sys.stderr.write(f"hyper: {error.format_message()}\n")
        return EXIT_USAGE
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("hyper: aborted\n")
        return 130
    return code if isinstance(code, int) else 0
