"""The tasks.json format: its JSON Schema, and reading a document with `$VAR`s.

The schema is a Python dict (`hyper tasks schema` prints it as JSON for an editor
or the `jsonschema` command). Keys it does not know are allowed, as the original
framework ignored them, but `check` names each one in a warning: a typo such as
`exitOnEror` should not pass unseen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

SECTIONS = ("fetch", "tasks", "move", "store")

_MODES = {
    "type": ["string", "array"],
    "items": {"type": "string"},
    "description": "modes (MODE_STR): a list, or a string of comma-separated modes",
}
_PATTERNS = {
    "type": ["string", "array"],
    "items": {"type": "string", "minLength": 1},
    "minLength": 1,
    "minItems": 1,
    "description": "one glob or a list of globs, e.g. ['*.in', 'haz-*']",
}
_TEXT = {"type": "string", "minLength": 1}
_FLAG = {"type": "boolean"}
_COMMON = {
    "name": {**_TEXT, "description": "the step's name, shown in the log and the summary"},
    "required": {**_FLAG, "description": "run even after an earlier step failed (false)"},
    "exitOnError": {
        **_FLAG,
        "description": "a failure fails the run and skips the steps after it that are not "
        "required (true); false: reported, tolerated",
    },
    "includeWhenMode": _MODES,
    "excludeWhenMode": _MODES,
    "description": {"type": "string"},
}


def _step(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_COMMON, **properties},
        "required": ["name", *required],
    }


STEPS: dict[str, dict[str, Any]] = {
    "fetch": _step(
        ["bucket", "key", "dest"],
        bucket=_TEXT,
        key={"type": "string", "description": "an object's key, or a prefix of several"},
        dest={**_TEXT, "description": "a file, or a folder (ending in '/') for several"},
        expand={**_FLAG, "description": "unpack fetched archives where they are, then delete them"},
        excludeFilePattern=_PATTERNS,
    ),
    "tasks": {
        **_step(
            ["command"],
            command={**_TEXT, "description": "a shell command; [INPUT_FILE_PATH] is each input"},
            inputFolder={"type": "string"},
            inputFilePattern={**_TEXT, "description": "run once per matching file (recursive)"},
            workers={"type": "integer", "minimum": 0, "description": "at once (0: one per CPU)"},
            timeout={"type": "number", "description": "seconds per run (0 or less: none)"},
            outputFolder={"type": "string"},
            logBehavior={"enum": ["capture", "default"]},
        ),
        "dependentRequired": {"inputFilePattern": ["inputFolder"]},
    },
    "move": _step(
        ["inputFolder", "includeFilePattern", "outputFolder"],
        inputFolder=_TEXT,
        includeFilePattern=_PATTERNS,
        excludeFilePattern=_PATTERNS,
        outputFolder=_TEXT,
    ),
    "store": _step(
        ["bucket", "source", "dest"],
        bucket=_TEXT,
        source=_TEXT,
        dest={"type": "string", "description": "a key, or a prefix ending in '/'"},
        compress=_FLAG,
        compressSubDirectories=_FLAG,
        removeOnStore={**_FLAG, "description": "delete the archive once stored (true)"},
        compressInSharedMemory={**_FLAG, "description": "make archives in /dev/shm"},
    ),
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hyper tasks.json (Cloudburst task pipeline)",
    "type": "object",
    "properties": {
        "$schema": {"type": "string"},
        "programName": {"type": "string"},
        "itemName": {"type": "string"},
        "supportedModes": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        **{name: {"type": "array", "items": STEPS[name]} for name in SECTIONS},
    },
}


class Problem(NamedTuple):
    path: str  # JSONPath of where, e.g. $.tasks[2].workers
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Checked(NamedTuple):
    document: dict[str, Any] | None  # None when there are errors
    errors: list[Problem]
    warnings: list[Problem]


class _Duplicate(ValueError):
    pass


def _strict(schema: Any) -> Any:
    """The schema with unknown keys refused, to find them (for warnings)."""
    if isinstance(schema, dict):
        strict = {key: _strict(value) for key, value in schema.items()}
        if schema.get("type") == "object":
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(value) for value in schema]
    return schema


_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)  # what os.path.expandvars reads


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$VAR` and `${VAR}` from env, in the text, as the original did (os.path.expandvars):
    unknown ones stay. Inside a JSON string a value is escaped, so a quote in it keeps
    the document valid; outside one it is put as it is (`"workers": ${WORKERS}`)."""
    out: list[str] = []
    in_string, at = False, 0
    while at < len(text):
        char = text[at]
        if in_string and char == "\\":
            out.append(text[at : at + 2])
            at += 2
            continue
        found = _VARIABLE.match(text, at) if char == "$" else None
        if found and found.group(1).strip("{}") in env:
            value = env[found.group(1).strip("{}")]
            out.append(json.dumps(value, ensure_ascii=False)[1:-1] if in_string else value)
            at = found.end()
            continue
        in_string ^= char == '"'
        out.append(char)
        at += 1
    return "".join(out)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:  # json.loads would keep the last silently, dropping steps
            raise _Duplicate(f"the key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _place(error: Any) -> list[tuple[int, str]]:
    """Sorts problems as they appear in the document (tasks[2] before tasks[10])."""
    return [(part, "") if isinstance(part, int) else (-1, part) for part in error.absolute_path]


def check(text: str, env: Mapping[str, str]) -> Checked:
    """Parse, expand and validate a tasks.json text; every problem with its JSON path."""
    import jsonschema

    try:
        document = json.loads(expand(text, env), object_pairs_hook=_no_duplicates)
    except _Duplicate as error:
        return Checked(None, [Problem("$", str(error))], [])
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        return Checked(None, [Problem("$", f"not valid JSON: {error.msg} ({where})")], [])
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [
        Problem(error.json_path, error.message)
        for error in sorted(validator.iter_errors(document), key=_place)
    ]
    strict = jsonschema.Draft202012Validator(_strict(SCHEMA))
    warnings = [
        Problem(error.json_path, f"unknown {', '.join(map(repr, unknown))}: ignored")
        for error in sorted(strict.iter_errors(document), key=_place)
        if error.validator == "additionalProperties"
        for unknown in [sorted(set(error.instance) - set(error.schema["properties"]))]
    ]
    return Checked(None if errors else document, errors, warnings)


def modes(value: str | list[str] | None) -> list[str]:
    """A step's includeWhenMode/excludeWhenMode as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [mode.strip() for mode in value.split(",") if mode.strip()]
    return list(value)


def patterns(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
