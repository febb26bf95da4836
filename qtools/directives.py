"""Reading job options from a script's directive lines.

As Slurm reads ``#SBATCH``: only the leading block of comments (after an
optional shebang) counts, and the first command ends it. Lines may end in CRLF
or trailing spaces; values follow shell quoting.

``#HYPER`` lines take qsub's own options. ``#SBATCH``, ``#PBS`` and ``#BSUB``
lines are translated (see ``qtools.foreign``). On a conflict the command line
wins over ``#HYPER``, which wins over the others.
"""

from __future__ import annotations

import os
import re

from hyper.errors import UsageError
from hyper.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and argparse cost a qsub's start
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from qtools.command_line import ArgumentParser

PREFIX = "#HYPER"


class JobOptions(NamedTuple):
    """What a script or the command line says about a job; None (or empty) = not said."""

    name: str | None = None
    queue: str | None = None
    retries: int | None = None
    definition: str | None = None
    array: str | None = None
    depends: tuple[str, ...] = ()
    named_depends: tuple[str, ...] = ()  # KIND:NAME, on the jobs of that name (LSF's -w)
    task_depends: tuple[str, ...] = ()  # KIND:ID_INDEX, on one task of an array (Slurm's -d)
    singleton: bool | None = None  # Slurm's -d singleton: after the others of its name
    time_limit: str | None = None
    env: tuple[str, ...] = ()  # NAME=VALUE, or NAME alone for the submitting shell's value
    export_all: bool | None = None
    stdout: str | None = None
    stderr: str | None = None
    workdir: str | None = None  # where the job runs (Slurm -D, LSF -cwd, Torque -d)
    join: bool | None = None
    hold: bool | None = None
    priority: int | None = None
    join_into_error: bool | None = None  # PBS -j eo: stdout goes into the stderr file
    cpus: str | None = None  # the job's request (hyper.capacity)
    mem: str | None = None  # a size; a bare number is MiB
    gpus: str | None = None
    # a dialect's parts of the request, multiplied out at the end (hyper.capacity.combine)
    tasks: str | None = None  # Slurm -n/--ntasks: CPUs are tasks times --cpus-per-task
    tasks_per_node: str | None = None  # Slurm --ntasks-per-node: more tasks is more nodes
    mem_per_cpu: str | None = None  # Slurm --mem-per-cpu, PBS pmem: this times CPUs
    gpus_per_task: str | None = None  # Slurm --gpus-per-task, LSF -gpu num=N/task: times tasks
    cpus_per_gpu: str | None = None  # Slurm --cpus-per-gpu: this times GPUs
    mem_per_gpu: str | None = None  # Slurm --mem-per-gpu: this times GPUs
    slots_per_host: str | None = None  # LSF span[ptile=N]: more slots (-n) is more hosts
    tasks_per_gpu: str | None = None  # Slurm --ntasks-per-gpu: this times GPUs are the tasks

    def has_parts(self) -> bool:
        """Whether it says a request in parts (REQUEST_PARTS) that foreign.combine adds up."""
        return any(getattr(self, name) is not None for name in REQUEST_PARTS)

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


# a request said in parts, as dialects say it: tasks, and amounts per CPU, task or GPU
REQUEST_PARTS = ("tasks", "tasks_per_node", "mem_per_cpu", "gpus_per_task", "cpus_per_gpu",
                 "mem_per_gpu", "slots_per_host", "tasks_per_gpu")  # fmt: skip


def without_servers(depend: str) -> str:
    """A PBS dependency with its job ids as hyper's: `afterok:123.server:124.server` (as
    PBS prints ids) is `afterok:123:124`."""
    return re.sub(r"([0-9]+)\.[\w.-]+", r"\1", depend)


def names_a_directory(path: str) -> bool:
    """Whether an output path names a directory, as PBS reads -o and -e: one ending in
    '/', or one that is a directory here."""
    return path.endswith("/") or os.path.isdir(path.replace("%%", "%"))


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


def add_job_options(
    parser: ArgumentParser | argparse.ArgumentParser, *, directive: bool = False
) -> None:
    """The options a job can be given, shared by qsub's command line and #HYPER lines."""
    name_flags = ["-n", "--name", "--job-name"] if directive else ["-N", "--job-name", "--name"]
    add = parser.add_argument
    add(*name_flags, dest="name", metavar="NAME", help="job name (default: the script's name)")
    if not directive:  # Cyclone's -j NAME, and PBS's -j oe|eo|n: told apart by the value
        add("-j", dest="j", metavar="NAME|oe|eo|n",
            help="the job name; but oe, eo or n join output as PBS's -j (oe: stderr into"
            " the stdout file, eo: the other way, n: apart)")  # fmt: skip
    add("-q", "--queue", metavar="QUEUE", help="queue to submit to")
    add("-r", "--retries", metavar="N", help="retries after a failed first attempt (default 0)")
    add("-d", "--definition", metavar="DEFINITION", help="job definition")
    add(
        "-a",
        "-J",
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
        help="stop the job after this long: MINUTES, MM:SS, HH:MM:SS or D-HH:MM:SS"
        " (qsub: a range or list without a colon, 1-100, is Torque's array)",
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
    add("--cpus", metavar="N", help="CPUs the job gets (default: the definition's whole worker)")
    add("--mem", metavar="SIZE", help="memory the job gets: 512M, 16G (a bare number is MB)")
    add("--gpus", metavar="N", help="GPUs the job gets (default 0)")


def _directive_parser() -> argparse.ArgumentParser:
    from qtools.arguments import HelpFormatter, RaisingParser  # only for #HYPER lines

    parser = RaisingParser(
        prog=PREFIX, add_help=False, allow_abbrev=False, formatter_class=HelpFormatter
    )
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
        cpus=values.cpus,
        mem=values.mem,
        gpus=values.gpus,
    )


class Rule(NamedTuple):
    """Where a scheduler reads its directive lines, from its own documentation."""

    indented: bool  # the prefix may follow leading blanks (PBS: "the first non white space")
    anywhere: bool  # every line of the script counts, not only the leading block (LSF)
    colon_line: bool = False  # a first line starting with ':' is skipped, as "#!" (PBS)


# Slurm (sbatch(1)): "sbatch will stop processing further #SBATCH directives once the first
# non-comment non-whitespace line has been reached in the script."
# PBS (qsub(1B)): "scanning will continue until the first executable line, that is a line
# that is not blank, not a directive line, nor a line whose first non white space character
# is '#'"; a directive is where "the string of characters starting with the first non white
# space character on the line ... matches the directive prefix".
# LSF (bsub job_script): "Use the #BSUB imperative (in upper case letters) at the beginning
# of each line to specify job submission options in the script" - its own example has a
# #BSUB line after the commands.
RULES = {
    "#HYPER": Rule(indented=False, anywhere=False),
    "#SBATCH": Rule(indented=False, anywhere=False),
    "#PBS": Rule(indented=True, anywhere=False, colon_line=True),
    "#BSUB": Rule(indented=False, anywhere=True),
}


def _executable(line: str) -> bool:
    """Whether a line is a command: not blank, and not a comment (indented or not)."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def leading_block(text: str) -> list[tuple[int, str]]:
    """The numbered lines before the script's first command (comments and blank lines,
    indented or not), right-stripped, without the shebang."""
    block = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if number == 1 and line.startswith("#!"):
            continue
        if _executable(line):
            break
        block.append((number, line))
    return block


def first_command_line(text: str) -> int | None:
    """The number of the script's first command line (None when it has none)."""
    for number, raw in enumerate(text.splitlines(), start=1):
        if not (number == 1 and raw.startswith("#!")) and _executable(raw):
            return number
    return None


def directive_lines(text: str, prefix: str) -> list[tuple[int, str]]:
    """(line number, text after the prefix) of each directive line of this prefix, where
    its scheduler reads them (see RULES)."""
    rule = RULES[prefix]
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if number == 1 and (line.startswith("#!") or (rule.colon_line and line.startswith(":"))):
            continue
        candidate = line.lstrip() if rule.indented else line
        if candidate.startswith(prefix):
            rest = candidate[len(prefix) :]
            if not rest or rest[0].isspace() or rest[0] == "-":
                found.append((number, rest))
                continue
        if _executable(line) and not rule.anywhere:
            break
    return found


def indented_lines(text: str, prefix: str) -> list[int]:
    """The numbers of the lines that would be directives of this prefix but for their
    indentation, where its scheduler wants the prefix at the start of the line (a user
    should hear that they are comments to it)."""
    if RULES[prefix].indented:
        return []
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if _executable(line) and not RULES[prefix].anywhere:
            break
        stripped = line.lstrip()
        if stripped != line and stripped.startswith(prefix + " "):
            found.append(number)
    return found


def directive_words(rest: str, prefix: str, number: int) -> list[str]:
    """The words of a directive line's options, as its scheduler splits them: blanks
    separate words, single and double quotes group them (and are removed), a backslash
    keeps the next character, and a '#' that starts a word begins a comment that runs to
    the end of the line (so an apostrophe in that comment is only text)."""
    words: list[str] = []
    word: list[str] | None = None
    index = 0
    while index < len(rest):
        char = rest[index]
        if char.isspace():
            if word is not None:
                words.append("".join(word))
                word = None
            index += 1
            continue
        if word is None:
            if char == "#":
                break
            word = []
        if char == "\\" and index + 1 < len(rest):
            word.append(rest[index + 1])
            index += 2
        elif char in "\"'":
            close = rest.find(char, index + 1)
            if close < 0:
                raise UsageError(
                    f"line {number}: cannot read {prefix} directive: no closing quotation ({char})"
                )
            word.append(rest[index + 1 : close])
            index = close + 1
        else:
            word.append(char)
            index += 1
    if word is not None:
        words.append("".join(word))
    return words


def parse_directives(text: str) -> JobOptions:
    """The options of the script's #HYPER lines."""
    lines = list(directive_lines(text, PREFIX))
    if not lines:  # most scripts: no parser to build
        return JobOptions()
    parser = _directive_parser()
    values = parser.parse_args([])
    for number, rest in lines:
        words = directive_words(rest, PREFIX, number)
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
        self.options = JobOptions()  # the request combined from its parts (foreign.combine)
        self.parts = JobOptions()  # the same before that: a command line's -l may add parts
        self.ignored: list[tuple[int, str]] = []  # (line, option as written) hyper does not do
        self.warnings: list[str] = []  # at most one line, naming all of `ignored`
        self.schedulers: list[str] = []  # whose directives the script had
        self.torque_array = False  # the array came from Torque's -t (its own file names)
        self.slurm_tasks: int | None = None  # Slurm's task count, when it said one

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Translation):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]
