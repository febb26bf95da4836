"""The ``hyper`` command: one Typer group per resource, composed here.

hyper's own errors leave as one line on stderr and their exit code (see
``hyper.errors``), usage errors as one line and exit 2; nothing prompts when
stdin is not a terminal.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from hyper.cli import dashboard, data, dialects, hosts, items, resources, tasks, worker, workflows
from hyper.errors import EXIT_FAILURE, EXIT_USAGE, HyperError, is_utf8, one_line


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
app.add_typer(resources.regions, name="regions")
app.add_typer(resources.clusters, name="clusters")
app.add_typer(resources.queues, name="queues")
app.add_typer(resources.images, name="images")
app.add_typer(resources.definitions, name="definitions")
app.add_typer(worker.app, name="worker")
app.add_typer(workflows.app, name="workflows")
app.add_typer(tasks.app, name="tasks")
app.add_typer(items.app, name="items")
app.add_typer(data.app, name="data")
app.command("dashboard")(dashboard.command)
app.command("dialect-path")(dialects.dialect_path)


def _click_errors() -> Any:
    import importlib

    try:  # newer Typer releases carry their own copy of click's errors
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


def main(argv: list[str] | None = None) -> int:
    errors = _click_errors()
    args = resources.pair_arguments(sys.argv[1:] if argv is None else argv)
    for arg in args:
        if not is_utf8(arg):
            sys.stderr.write(f"hyper: argument '{one_line(arg)}' is not valid UTF-8\n")
            return EXIT_USAGE
    try:
        code = app(args=args, prog_name="hyper", standalone_mode=False)
    except errors.UsageError as error:
        sys.stderr.write(f"hyper: {error.format_message()}\n")
        return EXIT_USAGE
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("hyper: aborted\n")
        return 130
    return code if isinstance(code, int) else 0
