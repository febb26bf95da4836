"""Reading ``#HYPER`` directives from a job script.

As Slurm reads ``#SBATCH``: only the leading block of comments (after an
optional shebang) counts, and the first command ends it. Lines may end in
CRLF or trailing spaces. Values follow shell quoting.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, fields, replace

from hyper.errors import UsageError

PREFIX = "#HYPER"


@dataclass(frozen=True)
class JobOptions:
    """What a script (or the command line) says about a job; None = not said."""

    name: str | None = None
    queue: str | None = None
    retries: int | None = None
    definition: str | None = None

    def merged_over(self, base: JobOptions) -> JobOptions:
        """These options, falling back to `base` for anything not said here."""
        given = {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }
        return replace(base, **given)


# option spellings -> field
OPTIONS = {
    "-n": "name",
    "--name": "name",
    "--job-name": "name",
    "-q": "queue",
    "--queue": "queue",
    "-r": "retries",
    "--retries": "retries",
    "-d": "definition",
    "--definition": "definition",
}


def parse_retries(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or value > 100:
        raise UsageError(f"{where}: retries must be a whole number from 0 to 100, not {text!r}")
    return value


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


def parse_directives(text: str) -> JobOptions:
    values: dict[str, object] = {}
    for number, line in leading_block(text):
        if not (
            line.startswith(PREFIX) and (len(line) == len(PREFIX) or line[len(PREFIX)].isspace())
        ):
            continue
        where = f"line {number}"
        try:
            words = shlex.split(line[len(PREFIX) :], comments=False)
        except ValueError as exc:
            raise UsageError(f"{where}: cannot read {PREFIX} directive: {exc}") from None
        index = 0
        while index < len(words):
            word = words[index]
            option, has_inline, inline = (
                word.partition("=") if word.startswith("--") else (word, "", "")
            )
            field = OPTIONS.get(option)
            if field is None:
                raise UsageError(f"{where}: unknown {PREFIX} option {option!r}")
            if has_inline:
                value = inline
            elif index + 1 < len(words):
                index += 1
                value = words[index]
            else:
                raise UsageError(f"{where}: {PREFIX} {option} needs a value")
            values[field] = parse_retries(value, where) if field == "retries" else value
            index += 1
    return JobOptions(**values)  # type: ignore[arg-type]
