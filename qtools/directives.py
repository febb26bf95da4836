"""Reading job options from a script's directive lines.

As Slurm reads ``#SBATCH``: only the leading block of comments (after an
optional shebang) counts, and the first command ends it. Lines may end in CRLF
or trailing spaces; values follow shell quoting.

``#HYPER`` lines take qsub's own options. ``#SBATCH``, ``#PBS`` and ``#BSUB``
lines are translated (see ``qtools.foreign``). On a conflict the command line
wins over ``#HYPER``, which wins over the others.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NamedTuple, NoReturn

from hyper.errors import UsageError

PREFIX = "#HYPER"


class JobOptions(NamedTuple):
    """What a script or the command line says about a job; None (or empty) = not said."""

    name: str | None = None
    queue: str | None = None
    retries: int | None = None
    definition: str | None = None
    array: str | None = None
    depends: tuple[str, ...] = ()
    time_limit: str | None = None
    env: tuple[str, ...] = ()  # NAME=VALUE, or NAME alone for the submitting shell's value
    export_all: bool | None = None
    stdout: str | None = None
    stderr: str | None = None
    join: bool | None = None
    hold: bool | None = None
    priority: int | None = None

    def merged_over(self, base: JobOptions) -> JobOptions:
        """These options, falling back to `base` for anything not said here. Lists add up,
        this side last, so its variables win."""
        given: dict[str, Any] = {}
        for name, value in self._asdict().items():
            if isinstance(value, tuple):
                given[name] = (*getattr(base, name), *value)
            elif value is not None:
                given[name] = value
        return base._replace(**given)


def _at(where: str) -> str:
    """A message's prefix naming where a value was written ("" for the command line)."""
    return f"{where}: " if where else ""


def parse_retries(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or value > 100:
        raise UsageError(f"{_at(where)}retries must be a whole number from 0 to 100, not {text!r}")
    return value


def parse_priority(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{_at(where)}priority must be a whole number, not {text!r}") from None
    if not -10_000 <= value <= 10_000:
        raise UsageError(f"{_at(where)}priority must be between -10000 and 10000")
    return value


def add_job_options(parser: argparse.ArgumentParser, *, directive: bool = False) -> None:
    """The options a job can be given, shared by qsub's command line and #HYPER lines."""
    name_flags = ["-n", "--name", "--job-name"] if directive else ["-j", "--job-name", "--name"]
    add = parser.add_argument
    add(*name_flags, dest="name", metavar="NAME", help="job name (default: the script's name)")
    add("-q", "--queue", metavar="QUEUE", help="queue to submit to")
    add("-r", "--retries", metavar="N", help="retries after a failed first attempt (default 0)")
    add("-d", "--definition", metavar="DEFINITION", help="job definition")
    add(
        "-a",
        "--array",
        metavar="SPEC|FILE",
        help="array: 1-100, 0-100:5, 1,3,5-9, with %%CAP for at most CAP tasks at once;"
        " or a file of JSON replacements, one task a line",
    )
    add(
        "-W",
        "--dependency",
        dest="depends",
        action="append",
        default=[],
        metavar="DEPEND",
        help="depend=afterok:ID[:ID...] (also afterany, afternotok, aftercorr; comma-separated)",
    )
    add(
        "-t",
        "--time-limit",
        dest="time_limit",
        metavar="TIME",
        help="stop the job after this long: MINUTES, MM:SS, HH:MM:SS or D-HH:MM:SS",
    )
    add(
        "-v",
        "--name-value",
        dest="env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an environment variable for the job (repeatable)",
    )
    add(
        "-V",
        "--export-env",
        dest="export_all",
        action="store_const",
        const=True,
        help="pass the submitting shell's environment to the job",
    )
    add(
        "-o",
        "--output",
        dest="stdout",
        metavar="PATTERN",
        help="also write stdout to this file (%%j id, %%A array id, %%a index, %%x name, %%u user)",
    )
    add(
        "-e",
        "--error",
        dest="stderr",
        metavar="PATTERN",
        help="also write stderr to this file (without -e it goes to the -o file)",
    )
    add(
        "--join",
        action="store_const",
        const=True,
        help="write stderr into the stdout file (as PBS's -j oe)",
    )
    add(
        "-h",
        "--hold",
        action="store_const",
        const=True,
        help="submit held: the job starts only after qrls",
    )
    add("--priority", metavar="N", help="higher runs first among waiting jobs of a queue")


class _DirectiveParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _directive_parser() -> argparse.ArgumentParser:
    parser = _DirectiveParser(prog=PREFIX, add_help=False, allow_abbrev=False)
    add_job_options(parser, directive=True)
    return parser


def options_from(values: argparse.Namespace, where: str) -> JobOptions:
    """JobOptions from parsed qsub options (the command line, where="", or #HYPER lines)."""
    return JobOptions(
        name=values.name,
        queue=values.queue,
        retries=parse_retries(values.retries, where) if values.retries is not None else None,
        definition=values.definition,
        array=values.array,
        depends=tuple(values.depends),
        time_limit=values.time_limit,
        env=tuple(values.env),
        export_all=values.export_all,
        stdout=values.stdout,
        stderr=values.stderr,
        join=values.join,
        hold=values.hold,
        priority=parse_priority(values.priority, where) if values.priority is not None else None,
    )


def leading_block(text: str) -> list[tuple[int, str]]:
    """The numbered lines of the script's leading comment block, right-stripped."""
    block = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if number == 1 and line.startswith("#!"):
            continue
        if line and not line.startswith("#"):
            break
        block.append((number, line))
    return block


def directive_words(line: str, prefix: str, number: int) -> list[str] | None:
    """The shell words of a directive line with this prefix, or None when it is not one."""
    if not line.startswith(prefix):
        return None
    rest = line[len(prefix) :]
    if rest and not rest[0].isspace():
        return None
    try:
        return shlex.split(rest, comments=False)
    except ValueError as exc:
        raise UsageError(f"line {number}: cannot read {prefix} directive: {exc}") from None


def parse_directives(text: str) -> JobOptions:
    """The options of the script's #HYPER lines."""
    parser = _directive_parser()
    values = parser.parse_args([])
    for number, line in leading_block(text):
        words = directive_words(line, PREFIX, number)
        if words is None:
            continue
        try:
            unknown = parser.parse_known_args(words, namespace=values)[1]
        except UsageError as error:
            raise UsageError(f"line {number}: {PREFIX} {error}") from None
        if unknown:
            raise UsageError(f"line {number}: unknown {PREFIX} option {unknown[0]!r}")
        options_from(values, f"line {number}")  # checks numbers where they were written
    return options_from(values, PREFIX)


class Translation:
    """Options found in other schedulers' directives, and what hyper could not take."""

    def __init__(self) -> None:
        self.options = JobOptions()
        self.warnings: list[str] = []
        self.schedulers: list[str] = []  # whose directives the script had

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Translation):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]
