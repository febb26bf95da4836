"""The #HYPER directive parser and how qsub builds a job from a script and flags."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import pytest

from hyper.errors import UsageError
from qtools.directives import JobOptions, parse_directives
from qtools.qsub import build_job, build_parser, describe

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


def _env(job: dict) -> dict[str, str]:
    """The job's environment but the submitting shell's umask, which every job carries."""
    return {name: value for name, value in job["env"].items() if name != "HYPER_UMASK"}


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


# ---- how qsub merges the command line, #HYPER and other schedulers' lines ----------

LAYERED = """\
#!/bin/bash
#SBATCH -J from-sbatch
#SBATCH -p sbatch-q
#SBATCH -t 30
#SBATCH --export=NONE
#HYPER -n from-hyper
#HYPER -q hyper-q
#HYPER -t 20
#HYPER -d d
echo hi
"""


def _summary(job: dict[str, object]) -> tuple[object, object, object]:
    return job["name"], job["queue"], job["time_limit"]


def test_command_line_wins_over_hyper_over_sbatch(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, LAYERED, "-j", "from-flags", "-q", "flag-q", "-t", "10"))
    assert _summary(job) == ("from-flags", "flag-q", 600)


def test_hyper_wins_over_sbatch(tmp_path: Path) -> None:
    assert _summary(build_job(_args(tmp_path, LAYERED))) == ("from-hyper", "hyper-q", 1200)


def test_sbatch_is_used_when_nothing_else_says(tmp_path: Path) -> None:
    text = "\n".join(line for line in LAYERED.splitlines() if not line.startswith("#HYPER"))
    job = build_job(_args(tmp_path, text + "\n", "-d", "d"))
    assert _summary(job) == ("from-sbatch", "sbatch-q", 1800)


def test_each_option_falls_back_on_its_own(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, LAYERED, "-t", "5"))
    assert _summary(job) == ("from-hyper", "hyper-q", 300)


def test_environment_lists_add_up_and_the_command_line_wins(tmp_path: Path) -> None:
    text = (
        "#SBATCH --export=NONE,A=sbatch,B=sbatch\n"
        "#HYPER -v B=hyper -v C=hyper\n"
        "#HYPER -q q -d d\n"
        "echo\n"
    )
    job = build_job(_args(tmp_path, text, "-v", "C=flag", "--name-value", "D=flag"))
    assert _env(job) == {"A": "sbatch", "B": "hyper", "C": "flag", "D": "flag"}


def test_directives_hyper_ignores_other_schedulers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "#SBATCH -J slurm-name\n#SBATCH --mem=4G\n#SBATCH -t 5\n#HYPER -q q -d d\necho\n"
    job = build_job(_args(tmp_path, text, "--directives", "hyper"))
    assert job["name"] == "job.sh"
    assert "time_limit" not in job
    assert "compat" not in job
    assert _env(job) == {}  # no Slurm default export either
    assert capsys.readouterr().err == ""


def test_directives_all_warns_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "#SBATCH --exclusive\n#SBATCH --export=NONE\n#HYPER -q q -d d\necho\n"
    build_job(_args(tmp_path, text))
    assert capsys.readouterr().err == (
        "qsub: warning: ignored (not supported): --exclusive (line 1)\n"
    )


def test_directives_none_ignores_hyper_lines_too(tmp_path: Path) -> None:
    text = "#HYPER -q q -d d -n named\n#SBATCH -J slurm\necho\n"
    job = build_job(_args(tmp_path, text, "--directives", "none"))
    assert (job["name"], job["queue"], job["definition"]) == ("job.sh", None, None)
    job = build_job(_args(tmp_path, text, "--directives", "none", "-q", "fq", "-d", "fd"))
    assert (job["name"], job["queue"], job["definition"]) == ("job.sh", "fq", "fd")
    assert "compat" not in job


def test_directives_choice_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _args(tmp_path, "echo\n", "--directives", "slurm")
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ---- environment --------------------------------------------------------------------

PLAIN = "#HYPER -q q -d d\necho\n"


def test_name_alone_takes_the_value_from_this_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPER_TEST_VALUE", "from shell")
    job = build_job(_args(tmp_path, PLAIN, "-v", "HYPER_TEST_VALUE", "-v", "X=1"))
    assert _env(job) == {"HYPER_TEST_VALUE": "from shell", "X": "1"}


def test_name_alone_must_be_set_in_this_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYPER_TEST_UNSET", raising=False)
    with pytest.raises(UsageError, match="-v HYPER_TEST_UNSET: no such variable in this shell"):
        build_job(_args(tmp_path, PLAIN, "-v", "HYPER_TEST_UNSET"))


def test_slurm_export_of_a_name_alone_takes_the_shell_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPER_TEST_VALUE", "v")
    text = "#SBATCH --export=HYPER_TEST_VALUE,Y=2\n" + PLAIN
    assert _env(build_job(_args(tmp_path, text))) == {"HYPER_TEST_VALUE": "v", "Y": "2"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1BAD=x", "'1BAD' is not a valid environment variable name"),
        ("A-B=x", "'A-B' is not a valid environment variable name"),
        ("=x", "'' is not a valid environment variable name"),
        ("1BAD", "'1BAD' is not a valid environment variable name"),
    ],
)
def test_bad_variable_names_are_refused(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_job(_args(tmp_path, PLAIN, "-v", value))


def test_export_env_passes_the_shell_but_never_the_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPER_API_KEY", "secret")
    monkeypatch.setenv("HYPER_TEST_VALUE", "seen")
    job = build_job(_args(tmp_path, PLAIN, "-V", "-v", "HYPER_TEST_VALUE=overridden"))
    env = job["env"]
    assert "HYPER_API_KEY" not in env
    assert env["HYPER_TEST_VALUE"] == "overridden"
    assert env["PATH"] == os.environ["PATH"]


def test_slurm_default_export_never_passes_the_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPER_API_KEY", "secret")
    monkeypatch.setenv("HYPER_TEST_VALUE", "seen")
    env = build_job(_args(tmp_path, "#SBATCH -J x\n" + PLAIN))["env"]
    assert env["HYPER_TEST_VALUE"] == "seen"
    assert "HYPER_API_KEY" not in env


def test_no_environment_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPER_TEST_VALUE", "seen")
    assert _env(build_job(_args(tmp_path, PLAIN))) == {}
    assert _env(build_job(_args(tmp_path, "#PBS -N x\n" + PLAIN))) == {}


# ---- arrays and work items ----------------------------------------------------------


def test_array_spec_is_sent_as_given(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN, "-a", "1-10%4"))
    assert job["array"] == {"spec": "1-10%4"}


def test_array_spec_from_sbatch(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, "#SBATCH -a 0-4 --export=NONE\n" + PLAIN))
    assert job["array"] == {"spec": "0-4"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-a", "5-1"], "'5-1' is an empty range"),
        (["-a", "1-10%0"], "the cap after %"),
        (["-a", "x"], "cannot read 'x'"),
        (["-t", "0"], "must be above zero"),
        (["-W", "after:1"], "unknown type 'after'"),
        (["-W", "afterok"], "needs job ids"),
        (["--workitems", "5-1"], "is an empty range"),
        (["--workitems", ","], "no work items given"),
    ],
)
def test_bad_specs_fail_in_build_job(tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_job(_args(tmp_path, PLAIN, *flags))


def test_array_file_gives_one_task_per_json_line(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"INPUT": "a.txt", "N": 1}\n\n  {"INPUT": "b.txt", "N": 2.5}  \n{}\n')
    job = build_job(_args(tmp_path, "#HYPER -q q -d d\necho INPUT N\n", "-a", str(tasks)))
    assert job["array"] == {
        "tasks": [
            {"replacements": {"INPUT": "a.txt", "N": "1"}},
            {"replacements": {"INPUT": "b.txt", "N": "2.5"}},
            {"replacements": {}},
        ]
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"A": 1}\n{oops\n', "line 2: not JSON"),
        ('{"A": 1}\n[1, 2]\n', "line 2: use a JSON object of replacements"),
        ('"text"\n', "line 1: use a JSON object of replacements"),
        ("\n  \n", "has no lines"),
    ],
)
def test_bad_array_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(content)
    with pytest.raises(UsageError, match=message):
        build_job(_args(tmp_path, PLAIN, "-a", str(tasks)))


def test_array_file_error_names_the_real_line(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"A": 1}\n\n{oops\n')
    with pytest.raises(UsageError, match="line 3: not JSON"):
        build_job(_args(tmp_path, PLAIN, "-a", str(tasks)))


def test_work_items_become_named_tasks(tmp_path: Path) -> None:
    job = build_job(
        _args(tmp_path, PLAIN, "--workitems", "01-03", "--prefix", "D/P", "--padding", "2")
    )
    assert job["array"] == {
        "tasks": [
            {"name": f"D_P0{n}", "env": {"HYPER_WORK_ITEM": f"D/P0{n}", "WORK_ITEM": f"D/P0{n}"}}
            for n in (1, 2, 3)
        ]
    }


def test_work_items_default_padding_is_three(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN, "--workitems", "01-03", "--prefix", "D/P"))
    assert [t["name"] for t in job["array"]["tasks"]] == ["D_P001", "D_P002", "D_P003"]


def test_work_items_given_by_name(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN, "--workitems", "north,south-east"))
    assert [t["env"]["WORK_ITEM"] for t in job["array"]["tasks"]] == ["north", "south-east"]


def test_work_item_file_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Period01\n\n  Period02  \nx/y\n"))
    job = build_job(_args(tmp_path, PLAIN, "--workitem-file", "-", "--prefix", "Dam1/"))
    tasks = job["array"]["tasks"]
    assert [t["name"] for t in tasks] == ["Dam1_Period01", "Dam1_Period02", "Dam1_x_y"]
    assert tasks[2]["env"] == {"HYPER_WORK_ITEM": "Dam1/x/y", "WORK_ITEM": "Dam1/x/y"}


def test_work_item_file_on_disk(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("a\nb\n")
    job = build_job(_args(tmp_path, PLAIN, "--workitem-file", str(items), "--padding", "5"))
    assert [t["name"] for t in job["array"]["tasks"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("flags", "stdin", "message"),
    [
        (["--workitem-file", "-"], "\n \n", "--workitem-file has no work items"),
        (["--workitem-file", "/nonexistent/items"], "", "--workitem-file /nonexistent/items"),
        (["--workitems", "1-2", "--workitem-file", "-"], "a\n", "not both"),
        (["--workitems", "1-2", "-a", "1-2"], "", "give -a/--array or work items, not both"),
        (["--workitem-file", "-", "-a", "1-2"], "a\n", "give -a/--array or work items, not both"),
    ],
)
def test_work_item_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], stdin: str, message: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(UsageError, match=message):
        build_job(_args(tmp_path, PLAIN, *flags))


def test_array_from_a_script_and_work_items_conflict(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not both"):
        build_job(_args(tmp_path, "#HYPER -a 1-3\n" + PLAIN, "--workitems", "a,b"))


def test_script_and_work_items_cannot_both_come_from_stdin() -> None:
    args = build_parser().parse_args(["-q", "q", "-d", "d", "--workitem-file", "-", "-"])
    with pytest.raises(UsageError, match="cannot both come from stdin"):
        build_job(args)


# ---- the rest of the job body -------------------------------------------------------


def test_dependencies_from_several_flags_and_clauses(tmp_path: Path) -> None:
    job = build_job(
        _args(tmp_path, PLAIN, "-W", "depend=afterok:1:2,afterany:3", "-W", "afternotok:4")
    )
    assert job["depends"] == [
        {"kind": "afterok", "target": 1},
        {"kind": "afterok", "target": 2},
        {"kind": "afterany", "target": 3},
        {"kind": "afternotok", "target": 4},
    ]


def test_dependencies_from_script_and_flags_add_up(tmp_path: Path) -> None:
    text = "#SBATCH -d afterok:10 --export=NONE\n#HYPER -W afterany:11\n" + PLAIN
    job = build_job(_args(tmp_path, text, "--dependency", "aftercorr:12"))
    assert job["depends"] == [
        {"kind": "afterok", "target": 10},
        {"kind": "afterany", "target": 11},
        {"kind": "aftercorr", "target": 12},
    ]


def test_pbs_dependency_with_server_names(tmp_path: Path) -> None:
    text = "#PBS -W depend=afterok:123.server:124.server\n" + PLAIN
    job = build_job(_args(tmp_path, text))
    assert job["depends"] == [
        {"kind": "afterok", "target": 123},
        {"kind": "afterok", "target": 124},
    ]


@pytest.mark.parametrize(
    ("value", "seconds"), [("0:02", 2), ("90", 5400), ("1:30:00", 5400), ("1-0:00", 86400)]
)  # qsub's -t 1-0, with no colon, is Torque's array request (test_qsub_forms)
def test_time_limit_is_sent_in_seconds(tmp_path: Path, value: str, seconds: int) -> None:
    assert build_job(_args(tmp_path, PLAIN, "-t", value))["time_limit"] == seconds


def test_lsf_run_limit_is_sent_in_seconds(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, "#BSUB -W 1:30\n#BSUB -env none\n" + PLAIN))
    assert job["time_limit"] == 5400


def test_no_time_limit_no_output_no_array_by_default(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN))
    assert set(job) == {
        "name",
        "queue",
        "definition",
        "retries",
        "script",
        "submit_dir",
        "env",
        "priority",
        "hold",
        "depends",
    }
    assert (job["hold"], job["priority"], job["depends"]) == (False, 0, [])


def test_output_files(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN, "-o", "out.%j", "--join"))
    assert job["output"] == {"stdout": "out.%j", "stderr": None, "join": True}
    job = build_job(_args(tmp_path, PLAIN, "-e", "err.%a"))
    assert job["output"] == {"stdout": None, "stderr": "err.%a", "join": False}


def test_pbs_output_and_join(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, "#PBS -o o.txt\n#PBS -j oe\n" + PLAIN))
    assert job["output"] == {"stdout": "o.txt", "stderr": None, "join": True}


def test_priority_and_hold(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN, "--priority", "-5", "-h"))
    assert (job["priority"], job["hold"]) == (-5, True)


@pytest.mark.parametrize(
    ("value", "message"), [("x", "priority must be a whole number"), ("10001", "between")]
)
def test_bad_priority_is_refused(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_job(_args(tmp_path, PLAIN, "--priority", value))


def test_hyper_h_means_hold(tmp_path: Path) -> None:
    assert parse_directives("#HYPER -h\n").hold is True
    assert parse_directives("#HYPER --hold\n").hold is True
    assert build_job(_args(tmp_path, "#HYPER -h\n" + PLAIN))["hold"] is True
    assert build_job(_args(tmp_path, PLAIN))["hold"] is False


def test_qsub_help_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "usage: qsub" in out
    assert "--hold" in out


def test_sbatch_requeue_and_hold_reach_the_job(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, "#SBATCH --requeue -H --export=NONE\n" + PLAIN))
    assert (job["retries"], job["hold"]) == (1, True)


def test_compat_lists_the_schedulers_whose_lines_the_script_has(tmp_path: Path) -> None:
    assert build_job(_args(tmp_path, "#SBATCH -J x\n" + PLAIN))["compat"] == ["slurm"]
    assert "compat" not in build_job(_args(tmp_path, PLAIN))
    assert "compat" not in build_job(_args(tmp_path, "echo\n", "-q", "q", "-d", "d"))
    # a script for two schedulers: qsub reads it as PBS does (#SBATCH lines are comments
    # to PBS), sbatch as Slurm does
    mixed = "#PBS -N a\n#SBATCH -p b\n#PBS -q c\n" + PLAIN
    job = build_job(_args(tmp_path, mixed))
    assert (job["compat"], job["name"]) == (["pbs"], "a")  # (#HYPER's -q wins over both)
    args = _args(tmp_path, mixed)
    args.dialect = "slurm"
    job = build_job(args)
    assert job["compat"] == ["slurm"] and job["name"] != "a"


# ---- --dry-run ----------------------------------------------------------------------


def test_describe_an_array(tmp_path: Path) -> None:
    job = build_job(_args(tmp_path, PLAIN, "-a", "0-100:5%3", "-t", "1:00:00", "-W", "afterok:9"))
    text = describe(job)
    assert "tasks: 21 (indices 0, 5, 10, 15, 20, 25, 30, 35, 40, 45 ...), at most 3 at once" in text
    assert "time_limit: 3600" in text
    assert "depends: afterok:9" in text
    assert text.endswith("script:\n  | #HYPER -q q -d d\n  | echo\n")


def test_describe_a_short_array_lists_every_index(tmp_path: Path) -> None:
    text = describe(build_job(_args(tmp_path, PLAIN, "-a", "1,3,5")))
    assert "tasks: 3 (indices 1, 3, 5)\n" in text


def test_describe_work_items(tmp_path: Path) -> None:
    job = build_job(
        _args(tmp_path, PLAIN, "--workitems", "1-2", "--prefix", "Dam/P", "--padding", "2")
    )
    lines = describe(job).splitlines()
    assert "tasks: 2" in lines
    assert "  1  Dam_P01  HYPER_WORK_ITEM=Dam/P01 WORK_ITEM=Dam/P01" in lines
    assert "  2  Dam_P02  HYPER_WORK_ITEM=Dam/P02 WORK_ITEM=Dam/P02" in lines


def test_describe_an_array_file(tmp_path: Path) -> None:
    tasks = tmp_path / "t.jsonl"
    tasks.write_text('{"X": 1}\n{"X": 2}\n')
    lines = describe(build_job(_args(tmp_path, PLAIN, "-a", str(tasks)))).splitlines()
    assert "tasks: 2" in lines
    assert "  1  job.sh  X->1" in lines
    assert "  2  job.sh  X->2" in lines


def test_describe_a_plain_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = build_job(_args(tmp_path, PLAIN, "-v", "B=2", "-v", "A=1", "-o", "o.%j"))
    lines = describe(job).splitlines()
    assert lines[:5] == ["name: job.sh", "queue: q", "definition: d", "retries: 0", "priority: 0"]
    assert f"submit_dir: {tmp_path}" in lines
    assert 'output: {"stdout": "o.%j", "stderr": null, "join": false}' in lines
    umask = os.umask(0o077)
    os.umask(umask)
    assert lines[lines.index("environment: 3 variables") + 1 :][:3] == [
        "  A=1",
        "  B=2",
        f"  HYPER_UMASK={umask:04o}",  # the submitting shell's, which every job carries
    ]
    assert not any(line.startswith(("tasks:", "hold:", "depends:")) for line in lines)


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o002])
def test_a_job_carries_the_umask_of_the_shell_that_submitted_it(tmp_path: Path, umask: int) -> None:
    """As sbatch records SLURM_UMASK: the job runs and makes its files with it."""
    before = os.umask(umask)
    try:
        job = build_job(_args(tmp_path, PLAIN))
    finally:
        os.umask(before)
    assert job["env"]["HYPER_UMASK"] == f"{umask:04o}"  # Slurm's jobs find SLURM_UMASK
