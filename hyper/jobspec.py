"""The small languages users write job options in: array ranges, work items, time
limits, dependencies, job selectors, job names and output-file patterns.

Shared by the shell tools (which parse what users type) and the host (which
checks it again), so it imports only light parts of the standard library
(records are NamedTuples: dataclasses would cost qsub a few milliseconds).
Every parser raises ``UsageError`` with a message that names the bad part.
"""

from __future__ import annotations

import re

from hyper.errors import UsageError
from hyper.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see records)
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_ARRAY_SIZE = 1_000_000
MAX_ARRAY_INDEX = 4_000_000_000
MAX_TIME_LIMIT = 10 * 365 * 86400  # seconds
MAX_JOB_ID = 2**62
MAX_SCRIPT_BYTES = 4 * 1024 * 1024  # as Slurm's default max_script_size
MAX_NAME_LENGTH = 256
# a job name may hold spaces, quotes and shell metacharacters (as in Slurm: nothing hands it
# to a shell), but not what would make it a path or break a line, since %x puts it in file
# names: no '/', not '.' or '..', no control characters (the pattern suits pydantic too)
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
JOB_NAME_PATTERN = rf"^(?:[^/{_CONTROL}]*[^./{_CONTROL}][^/{_CONTROL}]*|\.{{3,}})$"
# the same rule without compiling the pattern (a millisecond of every submit's start)
_CONTROL_CHARS = frozenset(chr(code) for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029))
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEPENDENCY_KINDS = ("afterok", "afterany", "afternotok", "aftercorr")


class ArrayRange(NamedTuple):
    indices: Sequence[int]  # a range when the spec is one (no list of a million to make)
    cap: int | None  # most tasks running at once


def parse_array(spec: str) -> ArrayRange:
    """`1-10000`, `0-100:5`, `1,3,5-9`, each optionally ending in `%CAP`."""
    text = spec.strip()
    body, percent, cap_text = text.partition("%")
    cap = None
    if percent:
        if not re.fullmatch(r"[0-9]+", cap_text) or int(cap_text) < 1:
            raise UsageError(f"array {spec!r}: the cap after % must be a whole number of 1 or more")
        cap = int(cap_text)
    indices: list[int] = []
    seen: set[int] = set()
    parts = body.split(",")
    for part in parts:
        match = re.fullmatch(r"\s*([0-9]+)(?:\s*-\s*([0-9]+)(?::([0-9]+))?)?\s*", part)
        if not match:
            raise UsageError(
                f"array {spec!r}: cannot read {part!r} (use forms like 1-10, 0-100:5, 1,3,5-9, %4)"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) is not None else 1
        if last < first or step < 1:
            raise UsageError(f"array {spec!r}: {part.strip()!r} is an empty range")
        if last > MAX_ARRAY_INDEX:
            raise UsageError(f"array {spec!r}: indices go up to {MAX_ARRAY_INDEX}")
        if (last - first) // step + 1 + len(indices) > MAX_ARRAY_SIZE:
            raise UsageError(f"array {spec!r}: more than {MAX_ARRAY_SIZE} tasks")
        if len(parts) == 1:  # one range: its indices, in order, without duplicates
            return ArrayRange(range(first, last + 1, step), cap)
        for index in range(first, last + 1, step):
            if index not in seen:
                seen.add(index)
                indices.append(index)
    return ArrayRange(sorted(indices), cap)


def expand_work_items(spec: str, prefix: str = "", padding: int = 3) -> list[str]:
    """Cloudburst work items: `01-16` is a numeric range, zero-filled to `padding`
    (or to the width written); comma-separated items are taken as given. A `-`
    inside a name that is not two numbers is part of the name."""
    if not 0 <= padding <= MAX_NAME_LENGTH:
        raise UsageError(f"--padding {padding}: use a width from 0 to {MAX_NAME_LENGTH}")
    items: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"([0-9]+)-([0-9]+)", part)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if last < first:
                raise UsageError(f"work items {spec!r}: {part!r} is an empty range")
            if len(items) + last - first >= MAX_ARRAY_SIZE:
                raise UsageError(f"work items {spec!r}: more than {MAX_ARRAY_SIZE} items")
            width = max(padding, len(match.group(1)))
            items.extend(f"{prefix}{n:0{width}d}" for n in range(first, last + 1))
        else:
            items.append(f"{prefix}{part}")
    if not items:
        raise UsageError("no work items given")
    return items


def parse_time_limit(text: str) -> int:
    """Seconds, from Slurm's forms: `MINUTES`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
    `D-HH:MM:SS`."""
    value = text.strip()
    match = re.fullmatch(r"(?:([0-9]+)-)?([0-9]+)(?::([0-9]+))?(?::([0-9]+))?", value)
    if not match or not value:
        raise UsageError(
            f"time limit {text!r}: use MINUTES, MM:SS, HH:MM:SS or D-HH:MM:SS (e.g. 90 or 1:30:00)"
        )
    days, a, b, c = match.groups()
    numbers = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = [*numbers, 0, 0][:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(numbers) == 1:
        total = numbers[0] * 60
    elif len(numbers) == 2:
        total = numbers[0] * 60 + numbers[1]
    else:
        total = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    if total <= 0:
        raise UsageError(f"time limit {text!r} must be above zero")
    if total > MAX_TIME_LIMIT:
        raise UsageError(f"time limit {text!r} is longer than ten years")
    return total


def is_job_name(name: str) -> bool:
    """Whether `name` matches JOB_NAME_PATTERN: no '/' or control character, and not only
    dots unless three or more."""
    if "/" in name or not _CONTROL_CHARS.isdisjoint(name):
        return False
    return bool(name.strip(".")) or len(name) >= 3


def check_job_name(name: str, what: str = "job name") -> str:
    """A job's (or a task's) name, checked against JOB_NAME_PATTERN with a message saying why."""
    if not name:
        raise UsageError(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    if not is_job_name(name):
        if not _CONTROL_CHARS.isdisjoint(name):
            raise UsageError(f"{what} {name!r} has a control character (a newline, a tab...)")
        raise UsageError(
            f"{what} {name!r}: names go into file names (%x), so no '/' and not '.' or '..'"
        )
    return name


class Dependency(NamedTuple):
    kind: str
    target: int


def parse_dependencies(text: str) -> list[Dependency]:
    """`afterok:12:13,afterany:14` (Slurm), also after `depend=` (PBS's `-W depend=...`)."""
    value = text.strip()
    if value.startswith("depend="):
        value = value[len("depend=") :]
    deps: list[Dependency] = []
    if "?" in value:
        raise UsageError(
            f"dependency {text!r}: '?' (any one of) is not supported; hyper waits for all"
        )
    for clause in value.split(","):
        kind, _, targets = clause.strip().partition(":")
        if kind not in DEPENDENCY_KINDS:
            raise UsageError(
                f"dependency {text!r}: unknown type {kind!r}; use {', '.join(DEPENDENCY_KINDS)}"
            )
        ids = [t for t in targets.split(":") if t]
        if not ids:
            raise UsageError(f"dependency {text!r}: {kind} needs job ids, as {kind}:ID[:ID...]")
        for target in ids:
            if not re.fullmatch(r"[0-9]+", target) or int(target) > MAX_JOB_ID:
                raise UsageError(f"dependency {text!r}: {target!r} is not a job id")
            deps.append(Dependency(kind, int(target)))
    return deps


def parse_env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"{text!r}: give variables as NAME=VALUE")
    check_env_name(name)
    return name, value


def check_env_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a valid environment variable name")
    return name


class Selector(NamedTuple):
    """A job id, or some tasks of an array: `12`, `12[3-5]`, `12_3`."""

    id: int
    indices: tuple[int, ...] | None = None


def parse_selector(text: str) -> Selector:
    match = re.fullmatch(r"([0-9]+)(?:\[([0-9,:\-]+)\]|_([0-9]+))?", text.strip())
    if not match:
        raise UsageError(f"not a job id: {text!r} (use ID, ARRAY_ID[1-5] or ARRAY_ID_3)")
    job_id = int(match.group(1))
    if job_id > MAX_JOB_ID:
        raise UsageError(f"not a job id: {text!r}")
    if match.group(2) is not None:
        return Selector(job_id, tuple(parse_array(match.group(2)).indices))
    if match.group(3) is not None:
        return Selector(job_id, (int(match.group(3)),))
    return Selector(job_id)


def expand_output_pattern(
    pattern: str,
    *,
    job_id: int,
    array_id: int,
    index: int | None,
    name: str,
    user: str,
    step: str | None = None,
    task: int = 0,
) -> str:
    """Slurm's filename patterns (sbatch(1), "filename pattern"): %j job id, %J job id
    and step (the batch step has no step number), %A array id, %a array index, %x job
    name, %u user, %N the short host name, %n node number (0), %s step ("batch", or an
    srun's number), %t task (0, or an srun's task), %% a percent sign; a number after %
    zero-pads (%3a: 007). Unknown `%c` sequences are left as they are."""
    values = {
        "j": str(job_id),
        "J": f"{job_id}.{step}" if step is not None else str(job_id),
        "A": str(array_id),
        "a": str(index if index is not None else 0),
        "x": name,
        "u": user,
        "n": "0",
        "s": step if step is not None else "batch",
        "t": str(task),
    }

    def one(match: re.Match[str]) -> str:
        width, code = match.group(1), match.group(2)
        if code == "%":
            return "%"
        if code == "N":
            import socket

            value = socket.gethostname().split(".")[0]
        else:
            value = values[code]
        return value.zfill(int(width)) if width and value.isdigit() else value

    return re.sub(r"%([0-9]*)([jJAaxuNnst%])", one, pattern)
