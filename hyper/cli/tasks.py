"""``hyper tasks``: Work-item pipelines."""

from __future__ import annotations

import json
import os

import typer

from hyper.pipeline import codes, command, runner, schema

app = typer.Typer(help="Work-item pipelines: run and check tasks.json files.", no_args_is_help=True)

FileArgument = typer.Argument(
    None,
    metavar="[TASKS.json]",
    help="the pipeline (default: $TASKS_PATH, then ./tasks.json); - for stdin",
)


def _checked(source: str) -> schema.Checked:
    """The document, its problems on stderr (each with its JSON path); exit 2 when invalid."""
    checked = command.check(source, os.environ, typer.echo)
    if checked.errors:
        raise typer.Exit(codes.INVALID)
    return checked


@app.command("run")
def run(file: str = FileArgument) -> None:
    """Run a tasks.json pipeline in this directory, as a work item's job does: fetch, tasks,
    move and store steps in document order, then a summary. Exits with the code of the
    first failed step (0 when none failed); reads WORK_ITEM, MODE_STR, LOCAL_MODE,
    DISK_STATS and TASKS_PATH from the environment, and expands $VAR in the file."""
    raise typer.Exit(command.run_file(file, os.environ, typer.echo))


@app.command("validate")
def validate(file: str = FileArgument) -> None:
    """Check a tasks.json against the schema (after $VAR expansion from this shell): every
    problem on stderr with its JSON path, exit 2; unknown keys are warnings."""
    source = runner.source_path(file, os.environ)
    document = _checked(source).document or {}
    steps = ", ".join(f"{s} {len(document[s])}" for s in schema.SECTIONS if s in document)
    typer.echo(f"{source}: valid ({steps or 'no steps'})")


@app.command("schema")
def show_schema() -> None:
    """Print the JSON Schema of tasks.json (for an editor, or `jsonschema -i tasks.json`)."""
    typer.echo(json.dumps(schema.SCHEMA, indent=2))
