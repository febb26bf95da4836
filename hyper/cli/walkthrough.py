"""Guided walkthroughs that also work from flags.

A walkthrough is a list of questions; each question is also a flag. The *ask*
step (``walk``) takes what the flags gave, asks the rest on a terminal (with
the question's default, checking each answer as it is typed), and returns the
answers; outside a terminal it asks nothing and names the missing flags;
``--yes`` takes the defaults. The *apply* step is whatever the command does
with the answers, the same whether they were typed or given.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyper.errors import UsageError


def interactive() -> bool:
    return sys.stdin.isatty()


def refuse_missing(missing: list[str]) -> None:
    """Outside a terminal nothing is asked: the command says which flags it lacks."""
    if missing:
        raise UsageError(
            f"missing {', '.join(missing)} (stdin is not a terminal, so nothing is asked;"
            " --yes takes the defaults)"
        )


def answer(question: Any) -> Any:
    """Ask a questionary question; Ctrl-C or end of input aborts the command."""
    value = question.unsafe_ask()
    if value is None:
        raise UsageError("walkthrough cancelled")
    return value


def confirm(question: str, flags: list[str]) -> None:
    """A yes/no question before something that cannot be undone; outside a terminal the
    command says which flags would answer it. No ends the command with exit 1."""
    if not interactive():
        refuse_missing(flags)
    import questionary
    import typer

    if not answer(questionary.confirm(question, default=False)):
        raise typer.Exit(1)


Answers = dict[str, Any]


@dataclass(frozen=True)
class Question:
    """One question of a walkthrough, and the flag that answers it."""

    key: str  # the spec field the answer fills
    flags: tuple[str, ...]  # the first is the name used in messages
    prompt: str
    kind: str = "text"  # text, int, bool, choice, json, list, pairs, ref
    default: Any = None  # None: no default, the answer is required
    choices: tuple[str, ...] = ()
    ref: str | None = None  # kind of resource whose existing names answer a `ref`
    when: Callable[[Answers], bool] | None = None  # asked only when earlier answers say so
    help: str = ""
    value_type: type = str  # pairs: the type of each value
    check: Callable[[Any], Any] | None = None  # raises ValueError for a bad value
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def flag(self) -> str:
        return self.flags[0]


def parse(question: Question, raw: Any) -> Any:
    """A flag's or a typed answer's text as the value the spec wants."""
    kind, flag = question.kind, question.flag
    if kind == "bool" or not isinstance(raw, (str, list)):
        return raw
    if kind == "pairs":
        return _pairs(question, raw if isinstance(raw, list) else [raw])
    if kind == "list" and isinstance(raw, list):
        return [str(item).strip() for item in raw if str(item).strip()]
    raw = str(raw)
    if question.check is not None and raw:
        try:
            question.check(raw)
        except ValueError as error:
            raise UsageError(f"{flag}: {error}") from None
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"{flag}: not a whole number: {raw!r}") from None
    if kind == "choice":
        for choice in question.choices:
            if choice.lower() == str(raw).lower():
                return choice
        raise UsageError(f"{flag}: use one of {', '.join(question.choices)}, not {raw!r}")
    if kind == "json":
        if isinstance(raw, str) and not raw.strip():
            return question.default
        try:
            return json.loads(raw)
        except ValueError as error:
            raise UsageError(f"{flag}: not valid JSON: {error}") from None
    if kind == "list":
        text = raw.strip()
        if text.startswith("["):
            try:
                return [str(item) for item in json.loads(text)]
            except ValueError as error:
                raise UsageError(f"{flag}: not a valid JSON list: {error}") from None
        return [item.strip() for item in text.split(",") if item.strip()]
    return raw


def _pairs(question: Question, items: list[Any]) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in items:
        for part in str(item).split(","):  # a typed answer may list several
            if not part.strip():
                continue
            key, sep, value = part.strip().partition("=")
            if not sep or not key:
                raise UsageError(f"{question.flag}: give KEY VALUE (or KEY=VALUE), not {part!r}")
            try:
                pairs[key] = question.value_type(value)
            except ValueError:
                raise UsageError(f"{question.flag} {key}: not a whole number: {value!r}") from None
    return pairs


def _validator(question: Question) -> Callable[[str], bool | str]:
    def check(text: str) -> bool | str:
        if question.default is None and not text.strip():
            return "an answer is needed"
        try:
            parse(question, text)
        except UsageError as error:
            return str(error).split(": ", 1)[-1]
        return True

    return check


def _shown(default: Any) -> str:
    if default is None:
        return ""
    if isinstance(default, (dict, list)):
        return json.dumps(default) if default else ""
    return str(default)


def ask(question: Question, refs: Callable[[str], list[str]], io: dict[str, Any]) -> Any:
    """Ask one question on the terminal, checking the answer as it is typed."""
    import questionary

    label = f"{question.prompt}"
    if question.kind == "bool":
        return answer(questionary.confirm(label, default=bool(question.default), **io))
    if question.kind in ("choice", "ref"):
        choices = list(question.choices) if question.kind == "choice" else refs(question.ref or "")
        if not choices:
            raise UsageError(f"{question.flag}: there is no {question.ref} to choose from yet")
        default = question.default if question.default in choices else choices[0]
        return answer(questionary.select(label, choices=choices, default=default, **io))
    if question.kind == "pairs" and question.extra.get("per_ref"):
        pairs = {}
        for name in refs(question.extra["per_ref"]):
            text = answer(
                questionary.text(f"{label} {name}:", default="1", validate=_int_check, **io)
            )
            pairs[name] = int(text)
        return pairs
    text = answer(
        questionary.text(
            label, default=_shown(question.default), validate=_validator(question), **io
        )
    )
    return parse(question, text)


def _int_check(text: str) -> bool | str:
    return text.strip().isdigit() or "a whole number of 0 or more"


def walk(
    questions: list[Question],
    given: dict[str, Any],
    *,
    yes: bool,
    refs: Callable[[str], list[str]],
    io: dict[str, Any] | None = None,
    prompt: bool | None = None,
) -> Answers:
    """The ask step: an answer for every question that applies, from its flag, or (with
    --yes) its default, or from the terminal. Outside a terminal nothing is asked: the
    flags still missing are named (with --yes, only those without a default)."""
    ask_them = interactive() if prompt is None else prompt
    answers: Answers = {}
    context: Answers = {}  # the answers so far, defaults standing in for missing ones
    missing: list[str] = []
    for question in questions:
        raw = given.get(question.key)
        given_here = raw is not None and raw != []
        # a flag that was given always counts; otherwise the question may not apply
        if not given_here and question.when is not None and not question.when(context):
            continue
        if not given_here and not ask_them and question.extra.get("optional"):
            continue  # a later addition: outside a terminal its default holds unsaid
        if given_here:
            answers[question.key] = parse(question, raw)
        elif yes and question.default is not None:
            answers[question.key] = question.default
        elif ask_them:
            answers[question.key] = ask(question, refs, io or {})
        else:
            missing.append(question.flag)
        context[question.key] = answers.get(question.key, question.default)
    refuse_missing(missing)
    return answers


# flags the original tool took as two words: `-rw REGION WEIGHT`
PAIR_FLAGS = ("-rw", "--region-distribution-weights", "--compute-resources-tags")


def pair_arguments(argv: list[str]) -> list[str]:
    """`-rw us-east-1 5` as the original tool wrote it, into `-rw us-east-1=5`."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        out.append(word)
        index += 1
        pair = word in PAIR_FLAGS and index + 1 < len(argv) and "=" not in argv[index]
        value = argv[index + 1] if pair else ""
        if pair and (not value.startswith("-") or value[1:].isdigit()):  # `-rw r -1` too
            out.append(f"{argv[index]}={argv[index + 1]}")
            index += 2
    return out
