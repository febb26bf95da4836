"""What each kind of step does: fetch from S3, run commands, move files, store to S3.

Each takes its step (a validated dict of tasks.json) and the run's context, returns
a short description of what it did, and raises StepFailed (with the original
framework's code) when it fails. Relative paths are relative to the directory the
run is in, as in the original.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from hyper import staging
from hyper.pipeline import archives
from hyper.pipeline.codes import (
    FETCH_FAILED,
    FETCH_PREFIX_FAILED,
    MOVE_FAILED,
    NO_INPUT_FILES,
    RUN_FAILED,
    STORE_FAILED,
    STORE_SOURCE_MISSING,
    StepFailed,
)
from hyper.pipeline.schema import patterns

Log = Callable[[str], None]
LOG_FOLDER = Path("logs")  # where `logBehavior: capture` writes, as the original
INPUT_MACRO = "[INPUT_FILE_PATH]"
TAIL_LINES = 10


@dataclass
class Context:
    env: Mapping[str, str]
    log: Log
    s3: Callable[[], Any]  # the S3 client, made on first use
    cpus: int


# ---- fetch ---------------------------------------------------------------------------


def fetch(step: dict[str, Any], ctx: Context) -> str:
    """An object to a file (or into a folder), or every object under a prefix into a folder;
    then unpack the archives fetched (`expand`) and delete files (`excludeFilePattern`)."""
    bucket, key, dest = step["bucket"], step["key"], step["dest"]
    client = ctx.s3()
    found = [o for o in staging.list_objects(client, bucket, key) if not o["Key"].endswith("/")]
    exact = next((o for o in found if o["Key"] == key), None)
    if exact is not None:
        target = _fetch_target(Path(dest), key, dest.endswith("/"), bool(step.get("expand")))
        _fetch_one(client, bucket, exact, target, ctx.log)
        fetched, root = [target], target
    elif found:
        report = staging.download(bucket, key, Path(dest), client=client)
        if report.failed:
            item, error = report.failed[0]
            raise StepFailed(
                FETCH_PREFIX_FAILED,
                f"{len(report.failed)} of {len(found)} objects under s3://{bucket}/{key} could "
                f"not be fetched (first: {item.key}: {error})",
            )
        fetched, root = [item.path for item in report.sent + report.skipped], Path(dest)
        ctx.log(f"fetched {len(report.sent)} objects, {len(report.skipped)} already here")
    else:
        raise StepFailed(FETCH_FAILED, f"nothing at s3://{bucket}/{key}")
    unpacked = 0
    if step.get("expand"):
        for path in fetched:
            if archives.is_archive(path):
                ctx.log(f"unpacking {path}")
                archives.expand(path, path.parent)
                path.unlink()
                unpacked += 1
        if exact is not None and unpacked:
            root = _unpacked_folder(target)
    removed = _remove_matching(root, patterns(step.get("excludeFilePattern")), ctx.log)
    what = str(fetched[0]) if exact is not None else f"{len(fetched)} files into {dest}"
    extras = [f"{unpacked} unpacked" if unpacked else "", f"{removed} removed" if removed else ""]
    return ", ".join([what, *filter(None, extras)])


def _fetch_target(dest: Path, key: str, folder: bool, expand: bool) -> Path:
    """Where one object goes: `dest`, or inside it when it is a folder (or, to unpack an
    archive, not an archive's name itself)."""
    name = PurePosixPath(key).name
    if (
        folder
        or dest.is_dir()
        or (expand and archives.is_archive(Path(name)) and not archives.is_archive(dest))
    ):
        return dest / name
    return dest


def _fetch_one(client: Any, bucket: str, found: dict[str, Any], target: Path, log: Log) -> None:
    if target.is_file() and staging.same(
        target, target.stat().st_size, found["Size"], found["ETag"]
    ):
        log(f"{target} is already here (same size and checksum)")
        return
    log(f"fetching s3://{bucket}/{found['Key']} to {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        client.download_file(bucket, found["Key"], str(target))
    except Exception as error:
        raise StepFailed(
            FETCH_FAILED, f"cannot fetch s3://{bucket}/{found['Key']}: {staging.s3_error(error)}"
        ) from None


def _unpacked_folder(target: Path) -> Path:
    """Where an archive unpacked: the folder named after it (`Period01.zip` -> `Period01`)
    when it held one, else the folder it was in."""
    name = target.name
    for suffix in archives.UNPACKS:
        if name.lower().endswith(suffix) and (target.parent / name[: -len(suffix)]).is_dir():
            return target.parent / name[: -len(suffix)]
    return target.parent


def _remove_matching(root: Path, globs: list[str], log: Log) -> int:
    """excludeFilePattern: the files fetched (a file, or every file in a folder) it matches."""
    if not globs:
        return 0
    found = sorted(root.rglob("*")) if root.is_dir() else [root]
    doomed = [p for p in found if p.is_file() and any(p.match(glob) for glob in globs)]
    for path in doomed:
        log(f"removing file: {path}")
        path.unlink()
    return len(doomed)


# ---- tasks ---------------------------------------------------------------------------


class Run(NamedTuple):
    number: int
    command: str
    input: str  # the input file, or '' for a command run once


def run_commands(step: dict[str, Any], ctx: Context) -> str:
    """The command once, or once per input file on a pool of `workers` threads."""
    name = step["name"]
    if step.get("outputFolder"):
        Path(step["outputFolder"]).mkdir(parents=True, exist_ok=True)
    inputs = [""]
    if step.get("inputFilePattern"):
        folder, pattern = Path(step["inputFolder"]), step["inputFilePattern"]
        inputs = [str(p) for p in sorted(folder.rglob(pattern))] if folder.is_dir() else []
        if not inputs:
            raise StepFailed(NO_INPUT_FILES, f"no files match {pattern!r} in {folder}")
    runs = [Run(n, step["command"].replace(INPUT_MACRO, i), i) for n, i in enumerate(inputs, 1)]
    workers = min(step.get("workers") or ctx.cpus, len(runs))
    timeout = step.get("timeout")
    timeout = timeout if timeout is not None and timeout > 0 else None
    capture = step.get("logBehavior") == "capture"
    exit_on_error = step.get("exitOnError", True)
    ctx.log(f"runs: {len(runs)}, processors: {ctx.cpus}, at once: {workers}")
    stop = threading.Event()  # after a failure that ends the step, start no more runs
    failures: list[tuple[Run, int, str]] = []
    started = 0
    lock = threading.Lock()

    def one(run: Run) -> None:
        nonlocal started
        if stop.is_set():
            return
        with lock:
            started += 1
        shown = run.command.replace("\n", "\\n")
        ctx.log(f"starting: [{name}] #{run.number}/{len(runs)} [{shown}]")
        code, why = _run(run, name if capture else None, timeout, ctx.env)
        if code != 0:
            with lock:
                failures.append((run, code, why))
            if exit_on_error:
                stop.set()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, runs))
    if capture:
        _drop_empty_error_logs(name, runs)
    if not failures:
        return f"{len(runs)} runs" if len(runs) > 1 else "1 run"
    run, code, why = failures[0]
    if capture:
        for failed, _, _ in failures[:3]:
            _show_tail(name, failed, ctx.log)
    if len(runs) == 1:
        raise StepFailed(code, why)
    skipped = f", {len(runs) - started} not started" if started < len(runs) else ""
    raise StepFailed(
        code, f"{len(failures)} of {len(runs)} runs failed{skipped} (first: #{run.number} {why})"
    )


def _log_files(name: str, run: Run) -> tuple[Path, Path]:
    """Per-run logs as the original named them: logs/NAME-INPUT_PATH_WITH_DASHES.log/.err."""
    stem = run.input.replace("/", "-")
    for suffix in (".in", ".txt"):
        stem = stem.removesuffix(suffix)
    base = f"{name}-{stem}" if stem else name
    return LOG_FOLDER / f"{base}.log", LOG_FOLDER / f"{base}.err"


def _run(
    run: Run, capture: str | None, timeout: float | None, env: Mapping[str, str]
) -> tuple[int, str]:
    """Run one command in /bin/sh (as the original: shell=True); its exit code and why."""
    outputs: list[Any] = []
    try:
        if capture is not None:
            outputs = [open(path, "wb") for path in _log_files(capture, run)]  # noqa: SIM115
        process = subprocess.Popen(
            run.command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=outputs[0] if outputs else None,
            stderr=outputs[1] if outputs else None,
            env=dict(env),
        )
    except OSError as error:
        return RUN_FAILED, f"could not start: {error}"
    finally:
        for file in outputs:
            file.close()
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(process.pid)
        process.wait()
        return RUN_FAILED, f"timed out after {timeout:g} s"
    if code < 0:  # killed by a signal, as a shell would say it
        code = 128 - code
    return code, f"exited with {code}"


def _kill_tree(pid: int) -> None:
    """The shell and everything it started (they share the job's process group, so
    qdel still reaches them: no session of their own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _drop_empty_error_logs(name: str, runs: list[Run]) -> None:
    """Only this step's own runs' logs: work items sharing a folder run side by side, and a
    glob would reach (and race with) another item's files."""
    for run in runs:
        _, error_log = _log_files(name, run)
        with contextlib.suppress(FileNotFoundError):
            if error_log.stat().st_size == 0:
                error_log.unlink()


def _show_tail(name: str, run: Run, log: Log) -> None:
    for path in _log_files(name, run):
        if path.is_file() and path.stat().st_size:
            lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            log(f"--- last lines of {path}:")
            for line in lines:
                log(f"    {line}")


# ---- move ----------------------------------------------------------------------------


def move(step: dict[str, Any], ctx: Context) -> str:
    """Files matching includeFilePattern (and no excludeFilePattern) from inputFolder to
    outputFolder, keeping their paths below inputFolder."""
    source, target = Path(step["inputFolder"]), Path(step["outputFolder"])
    excludes = patterns(step.get("excludeFilePattern"))
    chosen: list[Path] = []
    if source.is_dir():
        for pattern in patterns(step["includeFilePattern"]):
            chosen += sorted(source.rglob(pattern))
    moved = 0
    for path in chosen:
        if not path.exists() or any(path.match(glob) for glob in excludes):
            continue  # already moved with its folder, or excluded
        destination = target / path.relative_to(source)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(destination))
        except OSError as error:
            raise StepFailed(MOVE_FAILED, f"cannot move {path} to {destination}: {error}") from None
        moved += 1
    if not moved:
        ctx.log(f"warning: no files moved from {source} to {target}")
    return f"{moved} moved from {source} to {target}"


# ---- store ---------------------------------------------------------------------------


def store(step: dict[str, Any], ctx: Context) -> str:
    """A file or folder to S3: as it is, as one archive (`compress`), or one archive per
    sub-folder (`compressSubDirectories`)."""
    bucket, source, dest = step["bucket"], Path(step["source"]), step["dest"]
    if not source.exists():
        raise StepFailed(STORE_SOURCE_MISSING, f"source {source} does not exist")
    if source.is_dir() and not any(source.iterdir()):
        ctx.log(f"skipping empty output directory: {source}")
        return f"nothing to store: {source} is empty"
    client = ctx.s3()
    if step.get("compressSubDirectories") or step.get("compress"):
        folders = [source]
        if step.get("compressSubDirectories"):
            inside = sorted(source.iterdir()) if source.is_dir() else []
            folders = [d for d in inside if d.is_dir() and any(d.iterdir())]
            dest = staging.object_key(dest, "")  # a folder: each archive keeps its name in it
        if not folders:
            return f"nothing to store: no sub-folder of {source} holds files"
        fmt = archives.archive_format(ctx.env)
        for folder in folders:
            _store_archive(client, bucket, folder, dest, fmt, step, ctx.log)
        return f"{len(folders)} {fmt} archive(s) to s3://{bucket}/{dest}"
    if source.is_dir():
        report = staging.upload(bucket, source, dest, client=client)
        if report.failed:
            item, error = report.failed[0]
            raise StepFailed(
                STORE_FAILED,
                f"{len(report.failed)} files could not be stored (first: {item.path}: {error})",
            )
        return (
            f"{len(report.sent)} files to s3://{bucket}/{dest}, {len(report.skipped)} already there"
        )
    key = _key_for(dest, source.name)
    _put(client, bucket, source, key, ctx.log)
    return f"s3://{bucket}/{key}"


def _key_for(dest: str, name: str) -> str:
    """A dest ending in '/' (or empty) is a folder: the file keeps its name in it."""
    return staging.object_key(dest, name) if not dest or dest.endswith("/") else dest


def _store_archive(
    client: Any, bucket: str, folder: Path, dest: str, fmt: str, step: dict[str, Any], log: Log
) -> None:
    shared = step.get("compressInSharedMemory") and Path("/dev/shm").is_dir()
    # in memory, each run gets a folder of its own: work items may share folder names
    place = Path(tempfile.mkdtemp(dir="/dev/shm")) if shared else folder.parent
    try:
        log(f"compressing {folder} ({fmt})")
        archive = archives.compress(folder, place, fmt)
        key = _key_for(dest, archive.name)
        suffix = PurePosixPath(key).suffix.lower()
        if suffix in (".7z", ".zip") and suffix != f".{fmt}":
            log(f"warning: a {fmt} archive is stored as {key} (HYPER_ARCHIVE_FORMAT chooses)")
        _put(client, bucket, archive, key, log)
        if step.get("removeOnStore", True):
            archive.unlink()
    finally:
        if shared:
            shutil.rmtree(place, ignore_errors=True)


def _put(client: Any, bucket: str, path: Path, key: str, log: Log) -> None:
    log(f"storing {path} to s3://{bucket}/{key}")
    try:
        client.upload_file(str(path), bucket, key)
    except Exception as error:
        raise StepFailed(
            STORE_FAILED, f"cannot store {path} to s3://{bucket}/{key}: {staging.s3_error(error)}"
        ) from None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
