"""A job script's text: the program it runs in, its shell, where its first command is,
and PBS's paths in it."""

from __future__ import annotations

import re

from qtools.directives import first_command_line

SHELLS = {"sh", "bash", "ksh", "zsh", "dash"}  # what can be given script arguments


def without_host(path: str) -> str:
    """PBS's `host:/path` as the path: the job writes where it runs; PBS Pro's
    `^array_index^` is the task's index (%a)."""
    match = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*:(/.*)", path)
    return (match.group(1) if match else path).replace("^array_index^", "%a")


def program_of(text: str) -> str:
    """The program a script's shebang names (bash when it has none)."""
    first = text.split("\n", 1)[0]
    if not first.startswith("#!"):
        return "bash"
    words = first[2:].split()
    program = words[0].rsplit("/", 1)[-1] if words else ""
    if program == "env":
        program = next((w for w in words[1:] if not w.startswith("-")), "")
    return program


def shell_of(text: str) -> str | None:
    """The shell a script runs in, or None when its shebang names another program."""
    program = program_of(text)
    return program if program in SHELLS else None


def before_first_command(text: str, line: str) -> str:
    """The script with `line` put just before its first command (after its directives)."""
    lines = text.split("\n")
    number = first_command_line(text)
    lines.insert(len(lines) if number is None else number - 1, line)
    return "\n".join(lines)
