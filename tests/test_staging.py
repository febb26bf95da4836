"""hyper data upload / download: threaded S3 staging against a moto server on loopback,
run as a user types it (the commands are separate processes)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.staging import BUCKET, S3, hyper, moto_s3


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    yield from moto_s3(monkeypatch)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_two_thousand_files_go_up_and_come_back_and_a_rerun_sends_only_what_changed(
    s3: S3, tmp_path: Path
) -> None:
    inputs = tmp_path / "input.tmp"
    for number in range(2000):  # past S3's 1,000 keys a listing page
        path = inputs / f"Dam{number % 4:03d}" / f"Period{number:04d}.in"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"input {number}\n")
    up = hyper(
        "data",
        "upload",
        "-bucket",
        BUCKET,
        "-local-folder",
        str(inputs),
        "-prefix",
        "input/",
        "-threads",
        "10",
        cwd=tmp_path,
    )
    assert up.code == 0, up.err
    assert "2000/2000" in up.err  # the progress bar's last state
    assert "uploaded 2000 files" in up.err
    keys = s3.stored("input/")
    assert len(keys) == 2000 and keys[0] == "input/Dam000/Period0000.in"

    back = tmp_path / "back"
    down = hyper(
        "data",
        "download",
        "--bucket",
        BUCKET,
        "--prefix",
        "input/",
        "--local-folder",
        str(back),
        "--json",
        cwd=tmp_path,
    )
    assert down.code == 0, down.err
    size = sum(len(content) for content in tree(inputs).values())
    assert json.loads(down.out) == {"sent": 2000, "sent_bytes": size, "skipped": 0, "failed": []}
    assert tree(back) == tree(inputs)

    # same size, other bytes: the checksum, not the size, finds it
    changed = inputs / "Dam001" / "Period0001.in"
    changed.write_text(changed.read_text().upper())
    again = hyper(
        "data",
        "upload",
        "--bucket",
        BUCKET,
        "--local-folder",
        str(inputs),
        "--prefix",
        "input",
        "--json",
        cwd=tmp_path,
    )
    assert again.code == 0, again.err
    assert json.loads(again.out)["sent"] == 1 and json.loads(again.out)["skipped"] == 1999
    assert s3.read("input/Dam001/Period0001.in") == b"INPUT 1\n"
    resumed = hyper(
        "data",
        "download",
        "--bucket",
        BUCKET,
        "--prefix",
        "input/",
        "--local-folder",
        str(back),
        "--json",
        cwd=tmp_path,
    )
    assert json.loads(resumed.out)["sent"] == 1
    assert tree(back) == tree(inputs)


def test_filters_keep_the_original_meaning_of_filter(s3: S3, tmp_path: Path) -> None:
    folder = tmp_path / "source.tmp"
    for name in ("Dam001/Period01.7z", "Dam001/notes.txt", "Dam002/Period01.7z", "faults/f.7z"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    # upload's -filter is a glob, matched as Path.rglob would (the end of the path)
    up = hyper(
        "data",
        "upload",
        "-bucket",
        BUCKET,
        "-local-folder",
        str(folder),
        "-prefix",
        "in/",
        "-filter",
        "Dam*/Period*",
        cwd=tmp_path,
    )
    assert up.code == 0, up.err
    assert s3.stored() == ["in/Dam001/Period01.7z", "in/Dam002/Period01.7z"]
    hyper(
        "data",
        "upload",
        "--bucket",
        BUCKET,
        "--local-folder",
        str(folder),
        "--prefix",
        "all",
        cwd=tmp_path,
    )
    # download's -filter is a regular expression searched in the key
    down = hyper(
        "data",
        "download",
        "-bucket",
        BUCKET,
        "-prefix",
        "all/",
        "-local-folder",
        str(tmp_path / "out"),
        "-filter",
        r"Dam00[2-9]|\.txt$",
        cwd=tmp_path,
    )
    assert down.code == 0, down.err
    assert sorted(tree(tmp_path / "out")) == ["Dam001/notes.txt", "Dam002/Period01.7z"]
    globbed = hyper(
        "data",
        "download",
        "--bucket",
        BUCKET,
        "--prefix",
        "all/Dam",
        "--local-folder",
        str(tmp_path / "g"),
        "--glob",
        "*.7z",
        cwd=tmp_path,
    )
    assert globbed.code == 0, globbed.err
    assert sorted(tree(tmp_path / "g")) == ["Dam001/Period01.7z", "Dam002/Period01.7z"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["upload", "--bucket", "nosuch", "--local-folder", "."], "no bucket named 'nosuch'"),
        (["download", "--bucket", "nosuch", "--local-folder", "x"], "no bucket named 'nosuch'"),
        (["upload", "--bucket", BUCKET, "--local-folder", "missing"], "no folder 'missing'"),
        (["download", "--bucket", BUCKET, "--local-folder", "x", "--regex", "("], "regular expr"),
        (["upload", "--local-folder", "."], "must specify --bucket or set $BUCKET_NAME"),
        (
            ["download", "--bucket", BUCKET, "--local-folder", "x", "--glob", "a", "--regex", "b"],
            "not both",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.delenv("BUCKET_NAME", raising=False)
    result = hyper("data", *argv, cwd=tmp_path)
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert s3.stored() == [] and not (tmp_path / "x").exists()


def test_a_file_that_cannot_be_written_fails_the_command_and_the_others_arrive(
    s3: S3, tmp_path: Path
) -> None:
    for name in ("out/a.txt", "out/b.txt", "out/c.txt"):
        s3.client.put_object(Bucket=BUCKET, Key=name, Body=name.encode())
    (tmp_path / "here" / "b.txt").mkdir(parents=True)  # a folder where a file should go
    result = hyper(
        "data",
        "download",
        "--bucket",
        BUCKET,
        "--prefix",
        "out/",
        "--local-folder",
        "here",
        cwd=tmp_path,
    )
    assert result.code == 1
    assert "failed: out/b.txt" in result.err and "1 files failed" in result.err
    assert tree(tmp_path / "here") == {"a.txt": b"out/a.txt", "c.txt": b"out/c.txt"}
    assert not [p for p in (tmp_path / "here").iterdir() if p.name.endswith(".part")]


def test_keys_that_would_leave_the_folder_are_not_written(s3: S3, tmp_path: Path) -> None:
    s3.client.put_object(Bucket=BUCKET, Key="out/../../escape.txt", Body=b"x")
    s3.client.put_object(Bucket=BUCKET, Key="out/fine.txt", Body=b"y")
    assert "out/../../escape.txt" in s3.stored()
    result = hyper(
        "data",
        "download",
        "--bucket",
        BUCKET,
        "--prefix",
        "out/",
        "--local-folder",
        "here",
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    assert tree(tmp_path / "here") == {"fine.txt": b"y"}
    assert not (tmp_path.parent / "escape.txt").exists()
    assert os.listdir(tmp_path) == ["here"]
