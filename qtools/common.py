"""What every shell tool shares: one-line errors and exit codes, the host connection."""

from __future__ import annotations

import os
import sys

from hyper.errors import HyperError, UsageError, one_line
from qtools.command_line import ArgumentParser

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see command_line)
if TYPE_CHECKING:
    from collections.abc import Callable

    from hyper.client import HostClient
    from hyper.config import HostConfig
    from hyper.jobspec import Selector

__all__ = ["ArgumentParser", "add_host_option", "connect", "job_id_of", "read_script_bytes", "run"]


def as_pathlib_reads(path: str) -> str:
    """A path as pathlib.Path(path) names it (no empty, '.' or trailing parts: `job.sh/`
    is job.sh, '' is '.'), for the shell tools, which read files without pathlib."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts) or "."


def file_name(path: str) -> str:
    """pathlib.Path(path).name: the last part ('' for '.' and '/')."""
    name = as_pathlib_reads(path).rsplit("/", 1)[-1]
    return "" if name in (".", "") else name


def add_host_option(parser: ArgumentParser) -> None:
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


def run(prog: str, body: Callable[[], int], *, whole_process: bool = False) -> int:
    """Run a command body, turning hyper's errors into one line and an exit code. With
    `whole_process` (main was called for the process's own command line), the process
    ends here (see `leave`)."""
    code = _run(prog, body)
    if whole_process:
        leave(code)
    return code


def _run(prog: str, body: Callable[[], int]) -> int:
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


def leave(code: int) -> None:
    """End the process with `code` once its output is written, as sys.exit(code) does
    when main returns, but without Python's teardown of every module it loaded (a few
    milliseconds: more than a command's request). Nothing of a command's is left to
    finish then: its requests are answered, its files closed. When the output cannot
    be written, it returns, and Python's own exit says so, as before."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


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
        with open(as_pathlib_reads(path), "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a script") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
