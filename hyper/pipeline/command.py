"""`hyper tasks run` and `hyper tasks validate` as functions of the library, printing
through `say(text, err)`: the CLI (``hyper/cli/tasks.py``) and ``python -m
hyper.pipeline`` both call these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hyper.pipeline import codes, runner, schema

Say = Callable[..., Any]  # say(text, err=False)


def check(source: str, env: Mapping[str, str], say: Say) -> schema.Checked:
    """The document, its problems said on stderr (each with its JSON path)."""
    checked = schema.check(runner.read_source(source), env)
    for warning in checked.warnings:
        say(f"{source}: warning: {warning}", err=True)
    for error in checked.errors:
        say(f"{source}: {error}", err=True)
    return checked


def run_file(file: str | None, env: Mapping[str, str], say: Say) -> int:
    """Run the pipeline `file` (default: $TASKS_PATH, then ./tasks.json; - for stdin);
    its exit code: the first failed step's, 0 when none failed, 2 when it is invalid."""
    source = runner.source_path(file, env)
    checked = check(source, env, say)
    if checked.errors:
        return codes.INVALID
    assert checked.document is not None
    report = runner.run(checked.document, log=say)
    if report.exit_code:
        say(f"hyper: pipeline failed with exit code {report.exit_code}", err=True)
    return report.exit_code
