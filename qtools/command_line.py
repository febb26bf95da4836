"""A command line read as argparse reads it, without argparse on the common path.

argparse costs a command's start several milliseconds before anything is parsed: its
import, gettext's look-ups for every message it prepares, and a help formatter made
for every option declared. ``ArgumentParser`` here takes the same declarations
(``add_argument`` as argparse takes it) and reads a command line itself when it has
the plain form scripts use: options first, each spelled in full, its value in the next
word or after ``=``, then the positional arguments. Anything else is handed to the
argparse parser built from the same declarations (``qtools.arguments.FullParser``),
so help, ``--version``, errors, abbreviations, clustered flags, ``--``, options after
a positional, values starting with ``-`` and values argparse would refuse behave
exactly as argparse makes them. ``tests/test_command_line.py`` checks that both
readings agree.
"""

from __future__ import annotations

import sys

from hyper.errors import EXIT_USAGE, is_utf8, one_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any, NoReturn

    from qtools.arguments import FullParser
else:

    class Namespace:
        """argparse.Namespace without argparse: attributes, compared by value."""

        def __init__(self, **values: Any) -> None:
            self.__dict__.update(values)

        def __eq__(self, other: object) -> bool:
            return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

        def __contains__(self, key: str) -> bool:
            return key in self.__dict__

        def __repr__(self) -> str:
            return f"Namespace({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


# argparse's constants, the same values (argparse reads these strings)
SUPPRESS = "==SUPPRESS=="
OPTIONAL = "?"
ZERO_OR_MORE = "*"
ONE_OR_MORE = "+"
REMAINDER = "..."

# what each positional's nargs matches in a run of plain words (A), as argparse's patterns
_POSITIONAL_PATTERNS = {None: "(A)", OPTIONAL: "(A?)", ZERO_OR_MORE: "(A*)", ONE_OR_MORE: "(A+)",
                        REMAINDER: "(A*)"}  # fmt: skip
_VALUE_ACTIONS = {"store", "append"}
_FLAG_CONSTS = {"store_const": None, "store_true": True, "store_false": False}
# parser settings the quick reading follows; any other sends every command line to argparse
_PLAIN_SETTINGS = {"prog", "description", "epilog", "usage", "add_help", "formatter_class",
                   "conflict_handler", "allow_abbrev"}  # fmt: skip


_OWN = {"_args", "_kwargs", "_calls", "_declared", "_by_flag", "_full", "_quick", "prog"}


class _Declared:
    """One add_argument call, as the quick reading needs it."""

    def __init__(self, flags: tuple[str, ...], settings: dict[str, Any]) -> None:
        self.flags = list(flags) if flags and flags[0].startswith("-") else []
        self.positional = not self.flags
        action = settings.get("action", "store")
        self.action = action if isinstance(action, str) else "custom"
        self.nargs = settings.get("nargs")
        self.type = settings.get("type")
        self.choices = settings.get("choices")
        self.required = settings.get("required", False)
        default: Any = None
        if self.action in _FLAG_CONSTS:
            self.const = settings.get("const", _FLAG_CONSTS[self.action])
            default = {"store_true": False, "store_false": True}.get(self.action)
        else:
            self.const = settings.get("const")
            default = SUPPRESS if self.action in ("help", "version") else None
        self.default = settings.get("default", default)
        if self.positional:
            self.dest = flags[0]
        elif settings.get("dest"):
            self.dest = settings["dest"]
        elif self.action in ("help", "version"):
            self.dest = SUPPRESS
        else:
            long = [flag for flag in flags if flag.startswith("--")]
            self.dest = (long or list(flags))[0].lstrip("-").replace("-", "_")


def _for_argparse(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with argparse's own SUPPRESS object where they say SUPPRESS: argparse
    tells it by identity (`help is not SUPPRESS`), not by value."""
    import argparse

    return {k: argparse.SUPPRESS if v is SUPPRESS else v for k, v in settings.items()}


class _Unplain(Exception):
    """The command line is not in the plain form: argparse reads it."""


class ArgumentParser:
    """argparse.ArgumentParser's declarations and parse_args, quick on plain command
    lines (see the module's docstring); every other use builds the argparse parser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self._declared: list[_Declared] = []
        self._by_flag: dict[str, _Declared] = {}
        self._full: FullParser | None = None
        # only plain settings, and the conflicts resolved as FullParser does (the later wins)
        self._quick = not args and set(kwargs) <= _PLAIN_SETTINGS
        self._quick = self._quick and kwargs.get("conflict_handler", "resolve") == "resolve"
        self.prog = kwargs.get("prog") or sys.argv[0].rsplit("/", 1)[-1]
        if kwargs.get("add_help", True):
            self._declare(("-h", "--help"), {"action": "help"})
        self._declare(("--version",), {"action": "version"})

    def add_argument(self, *flags: str, **settings: Any) -> None:
        self._calls.append((flags, settings))
        if self._full is not None:
            self._full.add_argument(*flags, **_for_argparse(settings))
        self._declare(flags, settings)

    def _declare(self, flags: tuple[str, ...], settings: dict[str, Any]) -> None:
        declared = _Declared(flags, settings)
        for flag in declared.flags:  # conflict_handler="resolve": the later declaration wins
            earlier = self._by_flag.pop(flag, None)
            if earlier is not None:
                earlier.flags.remove(flag)
                if not earlier.flags:
                    self._declared.remove(earlier)
            self._by_flag[flag] = declared
        self._declared.append(declared)

    def full(self) -> FullParser:
        """The argparse parser of these declarations (built once)."""
        if self._full is None:
            from qtools.arguments import FullParser

            self._full = FullParser(*self._args, **self._kwargs)
            for flags, settings in self._calls:
                self._full.add_argument(*flags, **_for_argparse(settings))
        return self._full

    def __getattr__(self, name: str) -> Any:
        """Anything else argparse's parser does (help, groups...) is its own."""
        if name.startswith("__") or name in _OWN:
            raise AttributeError(name)
        self._quick = False  # a group or setting added there is argparse's alone to read
        return getattr(self.full(), name)

    def parse_args(self, args: list[str] | None = None, namespace: Any = None) -> Namespace:
        argv = sys.argv[1:] if args is None else list(args)
        quick = self.read_plain(argv) if namespace is None else None
        if quick is not None:
            return quick
        return self.full().parse_args(argv, Namespace() if namespace is None else namespace)

    def read_plain(self, argv: list[str]) -> Namespace | None:
        """What argparse would make of a plain command line; None for any other."""
        if not self._quick:
            return None
        try:
            return self._read(argv)
        except _Unplain:
            return None

    def error(self, message: str) -> NoReturn:
        """A usage error: one line on stderr, exit 2 (as FullParser.error)."""
        sys.stderr.write(f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)

    def _read(self, argv: list[str]) -> Namespace:
        """argparse's result for a plain command line; _Unplain for any other."""
        if not all(is_utf8(word) for word in argv):
            raise _Unplain
        values = Namespace()
        for declared in self._declared:
            dest, default = declared.dest, declared.default
            if dest != SUPPRESS and default != SUPPRESS and dest not in values.__dict__:
                setattr(values, dest, default)
        seen: set[int] = set()  # ids of the declarations given
        index = 0
        while index < len(argv) and argv[index].startswith("-") and argv[index] != "-":
            index = self._read_option(argv, index, values, seen)
        words = argv[index:]
        if any(word.startswith("-") and word != "-" for word in words):
            raise _Unplain  # an option after a positional (or a value like -1)
        self._read_positionals(words, values)
        for declared in self._declared:
            if declared.positional or id(declared) in seen:
                continue
            if declared.required:
                raise _Unplain
            default = getattr(values, declared.dest, None)
            if isinstance(default, str) and default is declared.default:
                setattr(values, declared.dest, self._value(declared, default, check=False))
        return values

    def _read_option(self, argv: list[str], index: int, values: Namespace, seen: set[int]) -> int:
        """Read the option at argv[index] into `values`; the index of the next word."""
        word = argv[index]
        flag, explicit, given = word, None, False
        if word.startswith("--") and "=" in word:
            flag, explicit = word.split("=", 1)
            given = True
            if explicit == "--":
                raise _Unplain  # argparse drops a value of "--"
        declared = self._by_flag.get(flag)
        if declared is None:
            raise _Unplain  # an abbreviation, clustered flags, -qVALUE, -1, or unknown
        seen.add(id(declared))
        index += 1
        if declared.action in _FLAG_CONSTS and declared.nargs is None and not given:
            setattr(values, declared.dest, declared.const)
            return index
        if declared.action not in _VALUE_ACTIONS:
            raise _Unplain  # help, version, or what argparse alone does
        if declared.nargs == OPTIONAL and declared.action == "store" and not given:
            following = argv[index] if index < len(argv) else None
            if following is None or following in self._by_flag:
                setattr(values, declared.dest, self._value(declared, declared.const))
                return index
            if following.startswith("-"):
                raise _Unplain
            setattr(values, declared.dest, self._value(declared, following))
            return index + 1
        if declared.nargs is not None:
            raise _Unplain
        if not given:
            if index >= len(argv) or argv[index].startswith("-"):
                raise _Unplain  # no value, or one argparse may read as an option
            explicit = argv[index]
            index += 1
        value = self._value(declared, explicit)
        if declared.action == "append":
            earlier = getattr(values, declared.dest, None)
            if earlier is not None and type(earlier) is not list:
                raise _Unplain
            value = [*(earlier or []), value]
        setattr(values, declared.dest, value)
        return index

    def _read_positionals(self, words: list[str], values: Namespace) -> None:
        """As argparse matches positionals to a run of plain words: the longest list of
        them (first ones first) whose patterns match, each taking what its pattern took."""
        import re

        positionals = [d for d in self._declared if d.positional]
        if any(d.action != "store" or d.nargs not in _POSITIONAL_PATTERNS for d in positionals):
            raise _Unplain
        pattern = "".join(_POSITIONAL_PATTERNS[d.nargs] for d in positionals)
        match = re.fullmatch(pattern, "A" * len(words))
        if match is None:
            raise _Unplain  # words left over, or a positional without its word
        start = 0
        for declared, taken in zip(positionals, match.groups(), strict=True):
            given = words[start : start + len(taken)]
            start += len(taken)
            setattr(values, declared.dest, self._positional_value(declared, given))

    def _positional_value(self, declared: _Declared, given: list[str]) -> Any:
        if declared.nargs is None:
            return self._value(declared, given[0])
        if declared.nargs == OPTIONAL:
            if given:
                return self._value(declared, given[0])
            default = declared.default
            return self._value(declared, default) if isinstance(default, str) else default
        if declared.nargs == ZERO_OR_MORE and not given:
            if declared.default is not None:
                if declared.choices is not None:
                    raise _Unplain
                return declared.default
            return []
        return [self._value(declared, word, check=declared.nargs != REMAINDER) for word in given]

    @staticmethod
    def _value(declared: _Declared, text: Any, *, check: bool = True) -> Any:
        """A word as its type makes it, among the choices; argparse reports anything else."""
        if not isinstance(text, str):
            return text  # a default or const that is not text is taken as it is
        value = text
        if declared.type is not None:
            try:
                value = declared.type(text)
            except Exception:
                raise _Unplain from None
        if check and declared.choices is not None and value not in declared.choices:
            raise _Unplain
        return value
