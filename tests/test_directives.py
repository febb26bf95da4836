"""The #HYPER directive parser and how qsub builds a job from a script and flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hyper.errors import UsageError
from qtools.directives import JobOptions, parse_directives
from qtools.qsub import build_job, build_parser

EXAMPLE = (Path(__file__).resolve().parent.parent / "qsub-example-file.sh").read_text()


def test_example_file_directives() -> None:
    assert parse_directives(EXAMPLE) == JobOptions(
        name="example-job-name", queue="sample-queue-1", retries=2, definition="sample-def-1"
    )


def test_long_forms_inline_values_and_quotes() -> None:
    text = "#!/bin/sh\n#HYPER --name='my job' --queue q1\n#HYPER --retries=3 --definition d\necho\n"
    assert parse_directives(text) == JobOptions(
        name="my job", queue="q1", retries=3, definition="d"
    )


def test_crlf_and_trailing_spaces_are_tolerated() -> None:
    text = "#!/bin/bash\r\n#HYPER -q q1   \r\n#HYPER -n  n1\t\r\necho hi\r\n"
    assert parse_directives(text) == JobOptions(name="n1", queue="q1")


def test_only_the_leading_comment_block_counts() -> None:
    text = "#HYPER -q first\n\n# a comment\necho go\n#HYPER -q later\n"
    assert parse_directives(text).queue == "first"


def test_directive_prefix_must_stand_alone() -> None:
    text = "#HYPERX -q nope\n# HYPER -q nope\n#hyper -q nope\necho\n"
    assert parse_directives(text) == JobOptions()


def test_later_directive_wins() -> None:
    assert parse_directives("#HYPER -q a\n#HYPER -q b\n").queue == "b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#HYPER -x 1\n", "line 1: unknown #HYPER option '-x'"),
        ("#!/bin/sh\n#HYPER -q\n", "line 2: #HYPER argument -q/--queue: expected one argument"),
        ("#HYPER -r many\n", "line 1: retries must be a whole number"),
        ("#HYPER -r -1\n", "line 1: retries must be a whole number"),
        ("#HYPER -n 'open\n", "line 1: cannot read #HYPER directive"),
    ],
)
def test_bad_directives_name_the_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_directives(text)


def _args(tmp_path: Path, text: str, *flags: str) -> argparse.Namespace:
    script = tmp_path / "job.sh"
    script.write_text(text)
    return build_parser().parse_args([*flags, str(script)])


def test_flags_override_directives(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, EXAMPLE, "-q", "other", "-r", "0", "-j", "renamed"))
    assert (job["queue"], job["retries"], job["name"], job["definition"]) == (
        "other",
        0,
        "renamed",
        "sample-def-1",
    )


def test_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, "echo hi\n", "-q", "q", "-d", "d"))
    assert job["name"] == "job.sh"
    assert job["retries"] == 0


def test_params_replace_text_before_parsing(tmp_path: Path) -> None:
    job = build_job(
        _args(
            tmp_path,
            "#HYPER -q QUEUE\necho VALUE\n",
            "-d",
            "d",
            "-p",
            '{"QUEUE": "q7", "VALUE": "42"}',
        )
    )
    assert job["queue"] == "q7"
    assert "echo 42" in str(job["script"])


def test_commands_replace_the_body_and_keep_directives(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, EXAMPLE, "-c", "echo replaced"))
    script = str(job["script"])
    assert script.startswith("#!/bin/bash\n#HYPER -n example-job-name")
    assert script.rstrip().endswith("echo replaced")
    assert "sleep 1" not in script


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        ("echo hi\n", ["-d", "d"], "no queue"),
        ("echo hi\n", ["-q", "q"], "no job definition"),
        ("   \n", ["-q", "q", "-d", "d"], "is empty"),
        ("echo\n", ["-q", "q", "-d", "d", "-p", "{nope"], "not valid JSON"),
        ("echo\n", ["-q", "q", "-d", "d", "-p", "[1]"], "JSON object"),
        ("echo\n", ["-q", "q", "-d", "d", "-r", "x"], "retries must be"),
    ],
)
def test_bad_jobs_are_refused_before_anything_is_sent(
    tmp_path: Path, text: str, flags: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        build_job(_args(tmp_path, text, *flags))


def test_binary_script_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "bin.sh"
    script.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UsageError, match="not a text script"):
        build_job(build_parser().parse_args(["-q", "q", "-d", "d", str(script)]))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        build_job(build_parser().parse_args(["-q", "q", "-d", "d", str(tmp_path / "nope.sh")]))


def test_dos_line_endings_are_converted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = build_job(_args(tmp_path, "#HYPER -q q\r\n#HYPER -d d\r\necho hi\r\n"))
    assert job["script"] == "#HYPER -q q\n#HYPER -d d\necho hi\n"
    assert "converted to LF" in capsys.readouterr().err
