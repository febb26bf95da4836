"""Running a tasks.json: its steps in document order, and an exit code that tells the truth.

The sections (`fetch`, `tasks`, `move`, `store`) run in the order the document
writes them, each step in turn. A step is skipped when its mode says so
(`includeWhenMode`, `excludeWhenMode` against $MODE_STR, "default" when unset),
when $LOCAL_MODE=1 and it is a fetch or a store, or when an earlier step failed
and it is not `required`. A failed step fails the run, and the run exits with the
code of the first failure, whatever runs after it; a step with `exitOnError: false`
is the exception its author asked for: its failure is reported and tolerated.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyper import staging
from hyper.errors import HyperError, UsageError
from hyper.pipeline import codes, steps
from hyper.pipeline.schema import SECTIONS, modes

Log = Callable[[str], None]
DEFAULT_FILE = "tasks.json"
RUNS: dict[str, Callable[[dict[str, Any], steps.Context], str]] = {
    "fetch": steps.fetch,
    "tasks": steps.run_commands,
    "move": steps.move,
    "store": steps.store,
}
FAILURE_CODES = {  # for hyper's own errors in a step (no S3 client, a bucket refused...)
    "fetch": codes.FETCH_FAILED,
    "tasks": codes.RUN_FAILED,
    "move": codes.MOVE_FAILED,
    "store": codes.STORE_FAILED,
}


@dataclass
class StepResult:
    section: str
    name: str
    state: str  # ok | failed | tolerated | skipped
    detail: str
    code: int = 0
    seconds: float = 0.0


@dataclass
class RunReport:
    mode: str
    results: list[StepResult] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for result in self.results if result.state == state)

    @property
    def exit_code(self) -> int:
        return next((r.code for r in self.results if r.state == "failed"), 0)

    def summary(self) -> list[str]:
        """The table printed at the end: every step, what became of it and why."""
        width = max((len(r.name) for r in self.results), default=0)
        lines = [f"summary (mode {self.mode}):"]
        for r in self.results:
            took = f" ({r.seconds:.1f} s)" if r.state != "skipped" else ""
            code = f"exit {r.code}: " if r.state in ("failed", "tolerated") else ""
            lines.append(f"  {r.state:<9} {r.section:<5} {r.name:<{width}}  {code}{r.detail}{took}")
        ran = sum(self.count(state) for state in ("ok", "failed", "tolerated"))
        counts = f"{ran} ran, {self.count('failed')} failed, {self.count('skipped')} skipped"
        if self.count("tolerated"):
            counts += f", {self.count('tolerated')} failed and tolerated (exitOnError: false)"
        if self.exit_code:
            lines.append(f"pipeline failed with exit code {self.exit_code}: {counts}")
        else:
            lines.append(f"pipeline succeeded: {counts}")
        return lines


def source_path(argument: str | None, env: Mapping[str, str]) -> str:
    """Which tasks.json: the argument, else $TASKS_PATH, else ./tasks.json; `-` is stdin."""
    return argument or env.get("TASKS_PATH") or DEFAULT_FILE


def read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except FileNotFoundError:
        raise UsageError(f"no tasks file {source!r} (give a path, or set TASKS_PATH)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {source!r}: {error}") from None


def skip_reason(step: dict[str, Any], section: str, mode: str, env: Mapping[str, str]) -> str:
    """Why a step does not run in this mode, or '' when it does."""
    included, excluded = modes(step.get("includeWhenMode")), modes(step.get("excludeWhenMode"))
    if step.get("includeWhenMode") is not None and mode not in included:
        return f"mode {mode!r} is not in includeWhenMode"
    if mode in excluded:
        return f"mode {mode!r} is in excludeWhenMode"
    if section in ("fetch", "store") and env.get("LOCAL_MODE") == "1":
        return "LOCAL_MODE=1"
    return ""


def run(
    document: dict[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    log: Log = print,
) -> RunReport:
    """Run a validated tasks.json document in the current directory."""
    env = os.environ if env is None else env
    mode = env.get("MODE_STR") or "default"
    report = RunReport(mode)
    # the S3 client is made once, when a step first needs it (a pipeline may need none)
    ctx = steps.Context(env, log, functools.cache(staging.s3_client), steps.cpu_count())
    supported = document.get("supportedModes")
    if supported and mode not in supported:
        log(f"warning: mode {mode!r} is not one of supportedModes {supported}")
    program, item = document.get("programName", ""), document.get("itemName", "")
    log(f"processing: program [{program}] work item [{item}] mode [{mode}]")
    steps.LOG_FOLDER.mkdir(exist_ok=True)  # the original made it: stores of logs/ rely on it
    disk_stats = env.get("DISK_STATS") == "1"
    if disk_stats:
        log(disk_usage())
    for section in (s for s in document if s in SECTIONS):
        for step in document[section]:
            report.results.append(_run_step(section, step, mode, report, ctx))
        if disk_stats and section == "fetch":
            log(disk_usage())
    if disk_stats:
        log(disk_usage())
    for line in report.summary():
        log(line)
    return report


def _run_step(
    section: str, step: dict[str, Any], mode: str, report: RunReport, ctx: steps.Context
) -> StepResult:
    name = step["name"]
    reason = skip_reason(step, section, mode, ctx.env)
    if not reason and report.exit_code and not step.get("required"):
        reason = "an earlier step failed (this one is not required)"
    if reason:
        ctx.log(f"skipping {section} step {name}: {reason}")
        return StepResult(section, name, "skipped", reason)
    ctx.log(f"==> {section} {name}")
    started = time.monotonic()
    try:
        detail = RUNS[section](step, ctx)
    except codes.StepFailed as error:
        code, detail = error.code, str(error)
    except HyperError as error:
        code, detail = FAILURE_CODES[section], str(error)
    except Exception as error:  # the original's code for what nothing else names
        code, detail = codes.UNEXPECTED, f"unexpected error: {type(error).__name__}: {error}"
    else:
        return StepResult(section, name, "ok", detail, 0, time.monotonic() - started)
    tolerated = step.get("exitOnError", True) is False
    ctx.log(f"{'warning' if tolerated else 'error'}: {section} step {name} failed: {detail}")
    state = "tolerated" if tolerated else "failed"
    return StepResult(section, name, state, detail, code, time.monotonic() - started)


def disk_usage() -> str:
    """DISK_STATS=1: the disk's space, and what this directory holds (df -h, du -sh)."""
    total, used, free = shutil.disk_usage(".")
    here = sum(
        (Path(root) / name).lstat().st_size for root, _, names in os.walk(".") for name in names
    )
    gib = 1024**3
    return (
        f"disk: {used / gib:.1f} GiB used, {free / gib:.1f} GiB free of {total / gib:.1f} GiB;"
        f" this directory holds {here / gib:.2f} GiB"
    )
