"""argparse's help formatter without its start-up cost.

argparse makes a formatter for every option it is given (to check the option's
metavar), and the standard one asks ``shutil`` for the terminal's width: importing
``shutil`` (and the compression modules it loads) costs a submit a few
milliseconds before any help is shown. This one finds the width as shutil does.
"""

from __future__ import annotations

import argparse
import os
import sys


def terminal_columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it: $COLUMNS, then the
    terminal of stdout, then 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:  # as argparse does, without importing shutil
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)
