"""What every shell tool shares: one-line errors and exit codes, the host connection."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hyper.client import HostClient
from hyper.config import HostConfig
from hyper.errors import EXIT_USAGE, HyperError, UsageError, is_utf8, one_line
from hyper.jobspec import Selector
from hyper.version import __version__
from qtools.arguments import HelpFormatter


class ArgumentParser(argparse.ArgumentParser):
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


def add_host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        metavar="NAME",
        help="the saved host to use (default: $HYPER_HOST, then the host in use)",
    )


def connect(host: str | None) -> HostClient:
    from hyper.hosts import connect as connect_host
    from hyper.hosts import first_use_note

    def first_use(created: HostConfig) -> None:
        sys.stderr.write(f"hyper: {first_use_note(created)}\n")

    return connect_host(host, on_first_use=first_use)


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a command body, turning hyper's errors into one line and an exit code."""
    try:
        return body()
    except HyperError as error:
        sys.stderr.write(f"{prog}: {one_line(str(error))}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `qstat | head`: the reader is gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def job_id_of(client: HostClient, selector: Selector) -> int:
    """The job a selector names: a job id, or one task of an array (`12_3`, `12[3]`)."""
    if selector.indices is None:
        return selector.id
    if len(selector.indices) != 1:
        raise UsageError(f"{selector.id}{list(selector.indices)} names several tasks; give one")
    (index,) = selector.indices
    found = client.list_jobs(ids=[f"{selector.id}_{index}"], limit=1)["jobs"]
    if not found:
        raise UsageError(f"array {selector.id} has no task {index}")
    return int(found[0]["id"])


def read_script_bytes(path: str) -> bytes:
    """A script file's bytes; a missing or unreadable file is a one-line usage error."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a script") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
