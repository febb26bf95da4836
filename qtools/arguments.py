"""The argparse side of the shell tools' parsers: what reads a command line that is
not in the plain form ``qtools.command_line`` reads itself, and every --help.

argparse makes a formatter for every option it is given (to check the option's
metavar), and the standard one asks ``shutil`` for the terminal's width: importing
``shutil`` (and the compression modules it loads) costs a submit a few
milliseconds before any help is shown. This one finds the width as shutil does.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from hyper.errors import EXIT_USAGE, UsageError, is_utf8, one_line
from hyper.version import __version__


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


class FullParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exits 2, refuses
    arguments that are not UTF-8 (nothing could send them to a host), and gives every
    command --version. A later option of the same spelling replaces an earlier one, so a
    dialect's command can reuse qsub's options and respell some."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("conflict_handler", "resolve")
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--version",
            action="version",
            version=f"%(prog)s (hyper) {__version__}",
            help="print the version and exit",
        )

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        for arg in sys.argv[1:] if args is None else args:
            if not is_utf8(arg):
                self.error(f"argument '{one_line(arg)}' is not valid UTF-8")
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


class RaisingParser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors, for options read from a script's lines."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
