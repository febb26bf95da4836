"""Archives a pipeline makes and unpacks: 7z when a 7z program is on PATH (as the
original framework), zip otherwise; both open with standard tools (7-Zip, unzip,
any desktop's archive manager). $HYPER_ARCHIVE_FORMAT (`7z` or `zip`) chooses.

An archive of a folder holds the folder itself (`Period01.zip` unpacks to
`Period01/...`), so unpacking it where it was fetched puts the folder back.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from hyper import commands, tarballs
from hyper.errors import CommandFailed
from hyper.pipeline.codes import ARCHIVE_FAILED, StepFailed
from hyper.tarballs import UnsafeArchive

FORMATS = ("7z", "zip")
UNPACKS = (".7z", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SEVEN_ZIP_SECONDS = 24 * 3600.0  # an archive of a whole output tree may take a while


def seven_zip() -> str | None:
    """The 7-Zip program on PATH, under any of its usual names."""
    return shutil.which("7z") or shutil.which("7za") or shutil.which("7zz")


def archive_format(env: Mapping[str, str]) -> str:
    chosen = env.get("HYPER_ARCHIVE_FORMAT", "").strip().lower()
    if not chosen:
        return "7z" if seven_zip() else "zip"
    if chosen not in FORMATS:
        raise StepFailed(ARCHIVE_FAILED, f"HYPER_ARCHIVE_FORMAT={chosen!r}: use 7z or zip")
    return chosen


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(UNPACKS)


def compress(source: Path, folder: Path, fmt: str) -> Path:
    """An archive of `source` (a folder or a file) in `folder`, named after it."""
    archive = folder / f"{source.name}.{fmt}"
    folder.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)  # 7z would add to an old one
    try:
        if fmt == "7z":
            program = seven_zip()
            if program is None:
                raise StepFailed(ARCHIVE_FAILED, "HYPER_ARCHIVE_FORMAT=7z, but no 7z is on PATH")
            command = [program, "a", "-y", "-bd", str(archive.resolve()), source.name]
            commands.run(command, cwd=str(source.parent), timeout=SEVEN_ZIP_SECONDS)
        else:
            _zip(source, archive)
    except (CommandFailed, OSError) as error:
        archive.unlink(missing_ok=True)
        raise StepFailed(ARCHIVE_FAILED, f"cannot make {archive}: {error}") from None
    return archive


def _zip(source: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as out:
        out.write(source, source.name)
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                out.write(path, f"{source.name}/{path.relative_to(source).as_posix()}")


def expand(archive: Path, into: Path) -> None:
    """Unpack an archive into a folder."""
    name = archive.name.lower()
    into.mkdir(parents=True, exist_ok=True)
    try:
        if name.endswith(".7z"):
            program = seven_zip()
            if program is None:
                raise StepFailed(
                    ARCHIVE_FAILED, f"cannot unpack {archive}: no 7z on PATH (install p7zip)"
                )
            command = [program, "x", "-y", "-bd", f"-o{into}", str(archive)]
            commands.run(command, timeout=SEVEN_ZIP_SECONDS)
        elif name.endswith(".zip"):
            _unzip(archive, into)
        else:
            with tarfile.open(archive) as tar:
                tarballs.extract(tar, into)
    except (CommandFailed, OSError, zipfile.BadZipFile, tarfile.TarError, UnsafeArchive) as error:
        raise StepFailed(ARCHIVE_FAILED, f"cannot unpack {archive}: {error}") from None


def _unzip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as source:
        for info in source.infolist():
            # extract() drops '..' and leading '/', so nothing lands outside `into`
            target = Path(source.extract(info, into))
            mode = info.external_attr >> 16
            if mode & 0o111 and target.is_file():  # keep programs runnable
                os.chmod(target, mode & 0o755)  # never setuid, setgid or writable by others
