"""Gzip'd tar archives: packing a job's package, and unpacking archives that came from
elsewhere (a package, a pipeline's inputs) so that nothing lands outside their folder.

Every member is checked before anything is written: only files, folders and symbolic
links, no absolute path and no ``..``. Links are followed only where Python's own
``data`` filter can check where they really lead once unpacked (a chain of links that
each look harmless can point out: ``l -> ..`` then ``l/m -> ..``); on a Python without
it (before 3.10.12 and 3.11.4) an archive with links is refused. Hard links are refused
everywhere. The filter also clears setuid, setgid and sticky bits.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

from hyper.jobs import escapes

PRIVATE = 0o600  # a member only its owner may read (a pool's secret)


def pack(members: Iterable[tuple[str, bytes | Path]], *, private: Iterable[str] = ()) -> bytes:
    """A gzip'd tar of (name, content or local path) pairs: a path is added with all it
    holds, links followed (a package holds no links); `private` names get mode 0600."""
    secret = set(private)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", dereference=True) as tar:
        for name, content in members:
            if isinstance(content, Path):
                tar.add(content, arcname=name)
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), int(time.time())
            info.mode = PRIVATE if name in secret else 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class UnsafeArchive(ValueError):
    """An archive with a member that could be written outside its folder."""


def extract(archive: tarfile.TarFile, into: Path) -> None:
    members = archive.getmembers()
    filtered = hasattr(tarfile, "data_filter")
    for member in members:
        check(member, links=filtered)
    into.mkdir(parents=True, exist_ok=True)
    if filtered:
        archive.extractall(into, members=members, filter="data")
    else:  # pragma: no cover - Pythons before the data filter
        for member in members:
            member.mode &= 0o777
        archive.extractall(into, members=members)


def check(member: tarfile.TarInfo, *, links: bool = True) -> None:
    """Refuse a member that could be written outside the folder (UnsafeArchive)."""
    if escapes(member.name) or ".." in member.name.split("/"):
        raise UnsafeArchive(f"{member.name!r} would be unpacked outside its folder")
    if member.islnk():
        raise UnsafeArchive(f"{member.name!r} is a hard link: archives here hold none")
    if member.issym():
        target = f"{member.name.rpartition('/')[0]}/{member.linkname}".lstrip("/")
        if not links or member.linkname.startswith("/") or escapes(target):
            raise UnsafeArchive(f"link {member.name!r} points outside its folder")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"{member.name!r} is neither a file, a folder nor a link")
