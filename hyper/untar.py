"""Unpacking tar archives that came from elsewhere (a job's package, a pipeline's inputs)
so that nothing lands outside the folder they are unpacked into.

Every member is checked before anything is written: only files, folders and symbolic
links, no absolute path and no ``..``. Links are followed only where Python's own
``data`` filter can check where they really lead once unpacked (a chain of links that
each look harmless can point out: ``l -> ..`` then ``l/m -> ..``); on a Python without
it (before 3.10.12 and 3.11.4) an archive with links is refused. Hard links are refused
everywhere. The filter also clears setuid, setgid and sticky bits.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from hyper.jobs import escapes


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
