"""A workflow job's files as a package: a gzip'd tar archive of a local file or folder,
or of an S3 object or every object under an S3 prefix (fetched with boto3). The worker
unpacks it where the job runs (``hyper.worker.prepare.unpack_package``)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyper import tarballs
from hyper.errors import UsageError
from hyper.jobs import MAX_FILE_BYTES


def _checked(data: bytes, source: str) -> bytes:
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(
            f"the package of {source} is {len(data)} bytes compressed; the host keeps"
            f" packages of at most {MAX_FILE_BYTES // 2**20} MiB"
        )
    return data


@dataclass(frozen=True)
class LocalSource:
    """A file (packed as itself, by its name) or a folder (packed as what it holds)."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def has(self, handler: str) -> bool:
        if self.path.is_dir():
            return (self.path / handler).is_file()
        return handler == self.path.name

    def pack(self) -> bytes:
        members: Iterator[tuple[str, bytes | Path]]
        if self.path.is_dir():
            members = ((child.name, child) for child in sorted(self.path.iterdir()))
        else:
            members = iter([(self.path.name, self.path)])
        return _checked(tarballs.pack(members), str(self))


@dataclass(frozen=True)
class S3Source:
    """An S3 object (packed by its name) or a prefix (every object under it, by its path
    below the prefix), as the original's s3_uri."""

    uri: str
    bucket: str
    key: str
    _listing: list[tuple[str, str]] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def parse(cls, uri: str) -> S3Source:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket:
            raise UsageError(f"s3_uri {uri!r} is not of the form s3://bucket/key")
        return cls(uri, bucket, key)

    def __str__(self) -> str:
        return self.uri

    def _s3(self) -> Any:
        try:
            import boto3
        except ImportError:
            raise UsageError(
                f"{self.uri}: s3_uri needs boto3 (pip install 'hyper-scheduler[aws]')"
            ) from None
        return boto3.client("s3")

    def objects(self) -> list[tuple[str, str]]:
        """(S3 key, name in the package) of what the URI names; listed once."""
        if not self._listing:
            self._listing.extend(self._list())
        return self._listing

    def _list(self) -> list[tuple[str, str]]:
        from botocore.exceptions import BotoCoreError, ClientError

        from hyper.aws_errors import error_code, error_message

        s3 = self._s3()
        try:
            if self.key and not self.key.endswith("/"):
                try:
                    s3.head_object(Bucket=self.bucket, Key=self.key)
                    return [(self.key, posixpath.basename(self.key))]
                except ClientError as error:
                    if error_code(error) not in ("404", "NoSuchKey"):
                        raise
            prefix = self.key.rstrip("/") + "/" if self.key else ""
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            found = [
                (item["Key"], item["Key"][len(prefix) :])
                for page in pages
                for item in page.get("Contents", [])
                if not item["Key"].endswith("/")  # the console's folder markers
            ]
        except (BotoCoreError, ClientError) as error:
            raise UsageError(f"{self.uri}: {error_message(error)}") from None
        if not found:
            raise UsageError(f"{self.uri}: no object there, nor under it")
        return found

    def has(self, handler: str) -> bool:
        return any(name == handler for _, name in self.objects())

    def pack(self) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        from hyper.aws_errors import error_message

        s3 = self._s3()
        try:
            contents = [
                (name, s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                for key, name in self.objects()
            ]
        except (BotoCoreError, ClientError) as error:
            raise UsageError(f"{self.uri}: {error_message(error)}") from None
        return _checked(tarballs.pack(iter(contents)), self.uri)


Source = LocalSource | S3Source
