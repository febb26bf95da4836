"""``hyper data``: Staging.

The original upload_inputs/get_outputs spellings (`-bucket`, `-local-folder`,
`-filter`, `-threads`) are accepted beside the double-dash ones; `-filter` keeps
its meaning there: a glob for upload, a regular expression for download.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from hyper import staging
from hyper.errors import HyperError, UsageError

app = typer.Typer(
    help="Staging: upload inputs to a bucket and download outputs from it.", no_args_is_help=True
)

BucketOption = typer.Option(None, "--bucket", "-bucket", envvar="BUCKET_NAME", help="the S3 bucket")
FolderOption = typer.Option(..., "--local-folder", "-local-folder", help="the folder here")
PrefixOption = typer.Option("", "--prefix", "-prefix", help="the folder in the bucket, e.g. input/")
ThreadsOption = typer.Option(
    staging.DEFAULT_THREADS, "--threads", "-threads", min=1, max=256, help="files at once"
)
JsonOption = typer.Option(False, "--json", help="print what was done as JSON")


class _Bar:
    """A rich progress bar on stderr (one final line when stderr is not a terminal)."""

    def __init__(self, verb: str, progress: Any) -> None:
        self.verb, self.progress, self.task = verb, progress, None

    def planned(self, files: int, size: int) -> None:
        self.task = self.progress.add_task(f"{self.verb}ing {_size(size)}", total=files)

    def finished(self, item: staging.Item) -> None:
        self.progress.advance(self.task)


def _size(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _bucket(bucket: str | None) -> str:
    if not bucket:
        raise UsageError("must specify --bucket or set $BUCKET_NAME")
    return bucket


def _transfer(verb: str, as_json: bool, move: Callable[[_Bar], staging.TransferReport]) -> None:
    """Move files under a progress bar, then say what happened; failures fail the command."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    started = time.monotonic()
    with Progress(
        *columns, TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True)
    ) as progress:
        report = move(_Bar(verb, progress))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    typer.echo(
        f"hyper: {verb}ed {len(report.sent)} files ({_size(report.sent_bytes)}), skipped"
        f" {len(report.skipped)} already there, in {time.monotonic() - started:.1f} s",
        err=True,
    )
    for item, error in report.failed[:10]:
        typer.echo(f"hyper: failed: {item.key}: {error}", err=True)
    if report.failed:
        raise HyperError(
            f"{len(report.failed)} files failed; run the same command again to retry them"
        )


@app.command("upload")
def upload(
    bucket: str = BucketOption,
    local_folder: Path = FolderOption,
    prefix: str = PrefixOption,
    glob: str = typer.Option(
        None, "--glob", "-filter", help="only files whose path ends so, e.g. 'Dam*/Period*'"
    ),
    regex: str = typer.Option(
        None, "--regex", help="only files whose key this regular expression finds"
    ),
    threads: int = ThreadsOption,
    as_json: bool = JsonOption,
) -> None:
    """Upload a folder's files under a prefix, many at once; files already there with the
    same size and checksum are skipped, so running it again resumes."""
    only, to = staging.make_filter(glob, regex), _bucket(bucket)
    _transfer(
        "upload",
        as_json,
        lambda bar: staging.upload(
            to, local_folder, prefix, only=only, threads=threads, progress=bar
        ),
    )


@app.command("download")
def download(
    bucket: str = BucketOption,
    prefix: str = PrefixOption,
    local_folder: Path = FolderOption,
    glob: str = typer.Option(None, "--glob", help="only keys whose path ends so, e.g. '*.zip'"),
    regex: str = typer.Option(
        None, "--regex", "-filter", help="only keys this regular expression finds"
    ),
    threads: int = ThreadsOption,
    as_json: bool = JsonOption,
) -> None:
    """Download every object under a prefix into a folder (the part of each key after the
    prefix's last '/'), many at once; files already here with the same size and checksum
    are skipped, so running it again resumes."""
    only, source = staging.make_filter(glob, regex), _bucket(bucket)
    _transfer(
        "download",
        as_json,
        lambda bar: staging.download(
            source, prefix, local_folder, only=only, threads=threads, progress=bar
        ),
    )
