"""Helpers for guided walkthroughs: ask only on a terminal, otherwise name the flags."""

from __future__ import annotations

import sys
from typing import Any

from hyper.errors import UsageError


def interactive() -> bool:
    return sys.stdin.isatty()


def refuse_missing(missing: list[str]) -> None:
    """Outside a terminal nothing is asked: the command says which flags it lacks."""
    if missing:
        raise UsageError(
            f"missing {', '.join(missing)} (stdin is not a terminal, so nothing is asked;"
            " --yes takes the defaults)"
        )


def answer(question: Any) -> Any:
    """Ask a questionary question; Ctrl-C or end of input aborts the command."""
    value = question.unsafe_ask()
    if value is None:
        raise UsageError("walkthrough cancelled")
    return value
