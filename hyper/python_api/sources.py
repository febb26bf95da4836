"""The source lines of code that travels by value, so that a worker's tracebacks show
the user's own lines.

cloudpickle sends the code of the user's own functions, not their files, and since
3.1.3 it also renames every such code object's file to ``<dynamic-code>``. Pickling
through `dumps` keeps each code object's real file name and notes which of its lines the
code spans; the program reads those lines (`Spans.lines`) and ships them beside the
pickle; the worker puts them in linecache (`register`), where ``traceback`` looks, so the
lines show even where the file does not exist.
"""

from __future__ import annotations

import functools
import io
import linecache
import types
from collections import ChainMap
from typing import Any

# renamed files in cloudpickle >= 3.1.3; older versions keep the real name
DYNAMIC_CODE = "<dynamic-code>"
# what one file may ship at most: a traceback needs the functions, not whole modules
MAX_LINES_PER_FILE = 5_000
MAX_LINE_CHARS = 1_000

Lines = dict[str, dict[int, str]]  # file name -> line number -> text


class Spans:
    """Which lines of which files the pickled code spans."""

    def __init__(self) -> None:
        self.by_file: dict[str, set[int]] = {}

    def add(self, code: types.CodeType) -> None:
        numbers = {line for _, _, line in code.co_lines() if line is not None}
        numbers.add(code.co_firstlineno)  # a decorator's line, for a decorated function
        first, last = min(numbers), max(numbers)
        self.by_file.setdefault(code.co_filename, set()).update(range(first, last + 1))

    def lines(self) -> Lines:
        """The text of every line spanned, as this process sees its files now."""
        found: Lines = {}
        for name, numbers in self.by_file.items():
            text = linecache.getlines(name)
            wanted = sorted(n for n in numbers if n <= len(text))[:MAX_LINES_PER_FILE]
            if wanted:
                found[name] = {n: text[n - 1][:MAX_LINE_CHARS] for n in wanted}
        return found


@functools.cache
def _pickler_class(cloudpickle: types.ModuleType) -> type:
    base = cloudpickle.Pickler
    reduce_code = base.dispatch_table[types.CodeType]

    class KeepingFileNames(base):  # type: ignore[misc, valid-type]
        """cloudpickle's pickler, except that code keeps its file name and is noted."""

        def __init__(self, file: io.BytesIO, spans: Spans) -> None:
            self.spans = spans
            # the C pickler reads dispatch_table when it is initialised
            self.dispatch_table = ChainMap({types.CodeType: self._reduce_code}, base.dispatch_table)
            super().__init__(file, protocol=cloudpickle.DEFAULT_PROTOCOL)

        def _reduce_code(self, code: types.CodeType) -> Any:
            self.spans.add(code)
            rebuild, args = reduce_code(code)
            renamed = tuple(code.co_filename if arg == DYNAMIC_CODE else arg for arg in args)
            return rebuild, renamed

    return KeepingFileNames


def dumps(cloudpickle: types.ModuleType, value: Any, spans: Spans) -> bytes:
    """`value` pickled as `cloudpickle.dumps` would, its code noted in `spans`."""
    out = io.BytesIO()
    _pickler_class(cloudpickle)(out, spans).dump(value)
    return out.getvalue()


def register(lines: Lines) -> None:
    """Make shipped lines what linecache (and so ``traceback``) finds for their files."""
    for name, numbered in lines.items():
        if not numbered:
            continue
        text = ["\n"] * max(numbered)
        for number, line in numbered.items():
            text[number - 1] = line
        # no modification time: linecache.checkcache keeps such an entry as it is
        linecache.cache[name] = (sum(map(len, text)), None, text, name)
