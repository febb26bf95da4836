"""Staging: folders to and from an S3 bucket, many files at once, resumable.

A folder and a prefix mirror each other: `upload` puts `FOLDER/a/b.txt` at
`PREFIX/a/b.txt`, and `download` writes the key `PREFIX/a/b.txt` to
`FOLDER/a/b.txt` (the part of the key after the prefix's last '/'). Listings are
paginated, so a prefix may hold any number of keys. A file already at its
destination with the same size and checksum (S3's ETag: the MD5 of the content,
or of its parts for a multipart upload) is skipped, so a re-run after an
interruption sends only what is missing. One failed file does not stop the
others; the report lists every failure.

boto3 is imported only when a client is made: `hyper.staging` itself is cheap.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Protocol

from hyper.errors import HyperError, UsageError, one_line

DEFAULT_THREADS = 10
PART_SIZE = 8 * 1024 * 1024  # boto3's default multipart threshold and part size: the ETag's


class Item(NamedTuple):
    """One file to move: its key in the bucket, its path here, its size in bytes."""

    key: str
    path: Path
    size: int


class Progress(Protocol):
    """What a command shows while files move (the library itself prints nothing)."""

    def planned(self, files: int, size: int) -> None: ...

    def finished(self, item: Item) -> None: ...


@dataclass
class TransferReport:
    sent: list[Item] = field(default_factory=list)
    skipped: list[Item] = field(default_factory=list)
    failed: list[tuple[Item, str]] = field(default_factory=list)

    @property
    def sent_bytes(self) -> int:
        return sum(item.size for item in self.sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": len(self.sent),
            "sent_bytes": self.sent_bytes,
            "skipped": len(self.skipped),
            "failed": [{"key": item.key, "error": error} for item, error in self.failed],
        }


class Filter(NamedTuple):
    """Which files to move: a glob matched against the end of the relative path (as
    `Path.rglob` would find it), or a regular expression searched in the key."""

    glob: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, relative: str, key: str) -> bool:
        if self.glob is not None and not PurePosixPath(relative).match(self.glob):
            return False
        return self.regex is None or self.regex.search(key) is not None


def make_filter(glob: str | None = None, regex: str | None = None) -> Filter:
    if glob is not None and regex is not None:
        raise UsageError("give a glob or a regular expression, not both")
    if glob is not None and not glob.strip("/"):
        raise UsageError(f"glob {glob!r} matches nothing; use e.g. '*.7z' or 'Dam*/Period*'")
    try:
        return Filter(glob, re.compile(regex) if regex is not None else None)
    except re.error as error:
        raise UsageError(f"regular expression {regex!r}: {error}") from None


def s3_client(threads: int = DEFAULT_THREADS) -> Any:
    """An S3 client for `threads` threads at once, in $AWS_REGION when it is set (else
    boto3's own configuration); `AWS_ENDPOINT_URL` points it elsewhere, as in tests."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise HyperError(
            "S3 needs boto3, which is not installed: pip install 'hyper-scheduler[aws]'"
        ) from None
    region = os.environ.get("AWS_REGION") or None
    config = Config(max_pool_connections=max(10, threads), retries={"mode": "standard"})
    return boto3.session.Session().client("s3", region_name=region, config=config)


def s3_error(error: BaseException) -> str:
    """An AWS error (or not reaching AWS) in one line."""
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    code, message = detail.get("Code", ""), detail.get("Message", "")
    if code or message:
        return one_line(f"{code}: {message}" if code and message else str(code or message))
    return one_line(str(error) or type(error).__name__)


def object_key(prefix: str, relative: str) -> str:
    """Where a file goes under a prefix, which names a folder as the original tools did:
    `input` and `input/` both put `a.7z` at `input/a.7z`."""
    if not prefix or prefix.endswith("/"):
        return prefix + relative
    return f"{prefix}/{relative}"


def local_relative(prefix: str, key: str) -> str | None:
    """The path a key gets under the download folder: what follows the prefix's last
    '/'. None for folder markers and keys that would leave the folder ('..')."""
    relative = key[prefix.rfind("/") + 1 :]
    parts = PurePosixPath(relative).parts
    if not relative or key.endswith("/") or relative.startswith("/") or ".." in parts:
        return None
    return relative


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under a prefix, page after page (S3 answers 1,000 at a time)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])
    except ClientError as error:
        if s3_error(error).startswith("NoSuchBucket"):
            raise UsageError(f"no bucket named {bucket!r}") from None
        raise HyperError(f"cannot list s3://{bucket}/{prefix}: {s3_error(error)}") from None
    except BotoCoreError as error:
        raise HyperError(f"cannot list s3://{bucket}/{prefix}: {s3_error(error)}") from None


def etag(path: Path, size: int) -> str:
    """The ETag S3 gives a file uploaded by boto3's defaults: MD5 of the content, or
    for a multipart upload the MD5 of the parts' MD5s and the number of parts."""
    with open(path, "rb") as file:
        parts = [hashlib.md5(chunk).digest() for chunk in iter(lambda: file.read(PART_SIZE), b"")]
    if size < PART_SIZE:
        return parts[0].hex() if parts else hashlib.md5(b"").hexdigest()
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def same(path: Path, size: int, remote_size: int, remote_etag: str) -> bool:
    """Whether a file here and an object there hold the same bytes."""
    return size == remote_size and etag(path, size) == remote_etag.strip('"')


def _config(size: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    # the pool already moves many files at once: only a large file uses threads of its own
    return TransferConfig(
        multipart_threshold=PART_SIZE,
        multipart_chunksize=PART_SIZE,
        use_threads=size > 4 * PART_SIZE,
    )


def upload(
    bucket: str,
    folder: Path,
    prefix: str = "",
    *,
    only: Filter = Filter(),
    threads: int = DEFAULT_THREADS,
    client: Any = None,
    progress: Progress | None = None,
) -> TransferReport:
    """Every file under `folder` (that `only` matches) to `bucket` under `prefix`."""
    if not folder.is_dir():
        raise UsageError(f"no folder {str(folder)!r} to upload")
    client = client or s3_client(threads)
    there = {o["Key"]: (o["Size"], o["ETag"]) for o in list_objects(client, bucket, prefix)}
    report = TransferReport()
    todo = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        key = object_key(prefix, relative)
        if not only.matches(relative, key):
            continue
        item = Item(key, path, path.stat().st_size)
        remote = there.get(key)
        if remote is not None and same(path, item.size, *remote):
            report.skipped.append(item)
        else:
            todo.append(item)

    def send(item: Item) -> None:
        if item.size >= PART_SIZE:
            client.upload_file(str(item.path), bucket, item.key, Config=_config(item.size))
            return
        with open(item.path, "rb") as body:  # one request: lighter than a managed transfer
            client.put_object(Bucket=bucket, Key=item.key, Body=body)

    return _transfer(todo, send, threads, report, progress)


def download(
    bucket: str,
    prefix: str,
    folder: Path,
    *,
    only: Filter = Filter(),
    threads: int = DEFAULT_THREADS,
    client: Any = None,
    progress: Progress | None = None,
) -> TransferReport:
    """Every object under `prefix` in `bucket` (that `only` matches) into `folder`."""
    client = client or s3_client(threads)
    report = TransferReport()
    todo = []
    for found in list_objects(client, bucket, prefix):
        relative = local_relative(prefix, found["Key"])
        if relative is None or not only.matches(relative, found["Key"]):
            continue
        item = Item(found["Key"], folder / relative, found["Size"])
        if item.path.is_file() and same(
            item.path, item.path.stat().st_size, item.size, found["ETag"]
        ):
            report.skipped.append(item)
        else:
            todo.append(item)

    def fetch(item: Item) -> None:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        if item.size >= PART_SIZE:  # boto3 writes to a temporary name, then renames
            client.download_file(bucket, item.key, str(item.path), Config=_config(item.size))
            return
        # so here: an interrupted run never leaves half a file under the real name
        partial = item.path.with_name(f".{item.path.name}.{threading.get_ident()}.part")
        try:
            partial.write_bytes(client.get_object(Bucket=bucket, Key=item.key)["Body"].read())
            partial.replace(item.path)
        finally:
            partial.unlink(missing_ok=True)

    return _transfer(todo, fetch, threads, report, progress)


def _transfer(
    todo: list[Item],
    move: Callable[[Item], None],
    threads: int,
    report: TransferReport,
    progress: Progress | None,
) -> TransferReport:
    if threads < 1:
        raise UsageError(f"--threads {threads}: use 1 or more")
    if progress is not None:
        progress.planned(len(todo), sum(item.size for item in todo))
    lock = threading.Lock()

    def one(item: Item) -> None:
        try:
            move(item)
        except Exception as error:  # one file's failure is reported, the others go on
            with lock:
                report.failed.append((item, s3_error(error)))
        else:
            with lock:
                report.sent.append(item)
        if progress is not None:
            progress.finished(item)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, todo))
    report.failed.sort(key=lambda failure: failure[0].key)
    return report
