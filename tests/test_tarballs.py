"""Archives from elsewhere unpack inside their folder, or not at all."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from hyper import tarballs


def archive(*members: tuple[str, str, bytes | str]) -> tarfile.TarFile:
    """A tar of (name, kind, data or link target) with kind file, dir, sym or hard."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(data)
                tar.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                info.size, info.mode = len(raw), 0o6755
                tar.addfile(info, io.BytesIO(raw))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)


def test_a_chain_of_links_cannot_lead_out(tmp_path: Path) -> None:
    """Each link alone points inside; together `sub/l/m` is the folder's parent."""
    into = tmp_path / "job"
    chain = archive(
        ("sub", "dir", b""),
        ("sub/l", "sym", ".."),
        ("sub/l/m", "sym", ".."),
        ("sub/l/m/pwned", "file", b"x"),
    )
    with pytest.raises((tarballs.UnsafeArchive, tarfile.TarError)):
        tarballs.extract(chain, into)
    assert not (tmp_path / "pwned").exists()
    # where Python has no filter to follow links with, links are refused outright
    with pytest.raises(tarballs.UnsafeArchive, match="points outside"):
        tarballs.check(chain.getmember("sub/l"), links=False)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("../up", "file", b"x"), "outside its folder"),
        (("/etc/x", "file", b"x"), "outside its folder"),
        (("a/../../up", "file", b"x"), "outside its folder"),
        (("out", "sym", "../.."), "points outside"),
        (("abs", "sym", "/etc/passwd"), "points outside"),
        (("hard", "hard", "inside.txt"), "is a hard link"),
    ],
)
def test_members_that_could_land_outside_are_refused_before_anything_is_written(
    tmp_path: Path, member: tuple[str, str, bytes | str], message: str
) -> None:
    into = tmp_path / "job"
    with pytest.raises(tarballs.UnsafeArchive, match=message):
        tarballs.extract(archive(("inside.txt", "file", b"ok"), member), into)
    assert not into.exists()


def test_files_links_inside_and_modes_without_special_bits(tmp_path: Path) -> None:
    into = tmp_path / "job"
    tarballs.extract(
        archive(("bin", "dir", b""), ("bin/run", "file", "#!/bin/sh\n"), ("run", "sym", "bin/run")),
        into,
    )
    assert (into / "run").read_text() == "#!/bin/sh\n"
    mode = stat.S_IMODE((into / "bin" / "run").stat().st_mode)
    assert mode & 0o111 and not mode & (stat.S_ISUID | stat.S_ISGID)
