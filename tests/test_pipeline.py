"""tasks.json pipelines: the runner in this process, `hyper tasks` as a user types it,
and pipelines run inside real hyper jobs, one per work item, against moto S3."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hyper.cli import main
from hyper.pipeline import runner
from hyper.pipeline.runner import RunReport
from hyper.pipeline.schema import SCHEMA
from tests.conftest import LocalHost, running_local_host
from tests.helpers.staging import BUCKET, S3, hyper, moto_s3

Q = ("-queue", "sample-queue-1", "-jobdef", "sample-def-1")
INPUTS = 20


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    yield from moto_s3(monkeypatch)


def zipped(folder: str, files: dict[str, str]) -> bytes:
    """An archive holding `folder/` and its files, as the original's inputs were packed."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"{folder}/{name}", text)
    return data.getvalue()


def haz_inputs(period: str) -> bytes:
    inputs = {f"haz-{n:02d}.in": f"site {period} input {n}\n" for n in range(INPUTS)}
    return zipped(period, {**inputs, "old.bak": "left over"})


def run_here(document: dict[str, Any], **env: str) -> tuple[RunReport, str]:
    """Run a document in the current directory; its report and what it logged."""
    lines: list[str] = []
    report = runner.run(document, env={**os.environ, **env}, log=lines.append)
    return report, "\n".join(lines)


def states(report: RunReport) -> list[tuple[str, str, int]]:
    return [(r.name, r.state, r.code) for r in report.results]


# ---- the realistic pipeline, inside real jobs ----------------------------------------

TASKS = {
    "programName": "haz",
    "itemName": "${WORK_ITEM}",
    "supportedModes": ["full", "post"],
    "fetch": [
        {
            "name": "get-inputs",
            "bucket": "${BUCKET_NAME}",
            "key": "input/${WORK_ITEM}.zip",
            "dest": "./Sites/${WORK_ITEM}.zip",
            "expand": True,
            "excludeFilePattern": ["*.bak"],
            "excludeWhenMode": "post",
        }
    ],
    "tasks": [
        {
            "name": "haz",
            "command": "tr a-z A-Z < [INPUT_FILE_PATH] > [INPUT_FILE_PATH].out",
            "inputFolder": "Sites/${WORK_ITEM}",
            "inputFilePattern": "haz-*.in",
            "workers": 4,
            "outputFolder": "./Output/${WORK_ITEM}",
            "logBehavior": "capture",
        }
    ],
    "move": [
        {
            "name": "collect",
            "inputFolder": "Sites/${WORK_ITEM}",
            "includeFilePattern": ["*.out"],
            "outputFolder": "Output/${WORK_ITEM}",
        }
    ],
    "store": [
        {
            "name": "store-outputs",
            "bucket": "${BUCKET_NAME}",
            "source": "Output/${WORK_ITEM}",
            "dest": "output/${WORK_ITEM}.zip",
            "compress": True,
        }
    ],
}


@pytest.mark.e2e
def test_work_items_run_their_pipeline_as_jobs_and_their_outputs_come_back(
    s3: S3, hyper_home: Path, tmp_path: Path
) -> None:
    periods = [f"Period{n:02d}" for n in range(1, 17)]
    for period in periods:
        s3.client.put_object(
            Bucket=BUCKET, Key=f"input/Dam001/{period}.zip", Body=haz_inputs(period)
        )
    # the host starts after the S3 environment is set, so its workers and jobs have it
    with running_local_host(hyper_home, tmp_path / "work") as local:
        (local.cwd / "tasks.json").write_text(json.dumps(TASKS, indent=2))
        start = (
            "hyper",
            "items",
            "start",
            "-bucket",
            BUCKET,
            *Q,
            "-workitems",
            "01-16",
            "-prefix",
            "Dam001/Period",
            "-padding",
            "2",
            "-mode",
            "full",
        )
        preview = local.ok(*start)
        assert "preview: 16 work items" in preview and "Dam001_Period16" in preview
        assert "--apply" in preview
        assert json.loads(local.ok("qstat", "--json"))["counts"]["Total"] == 0
        array_id = local.ok(*start, "-apply").strip()
        array = local.wait_finished(array_id, timeout=180)
        assert array["counts"]["Successful"] == 16, failures(local, array_id)
        log = local.ok("qlog", f"{array_id}_16")
        assert "work item [Dam001/Period16] mode [full]" in log
        assert "pipeline succeeded: 4 ran, 0 failed, 0 skipped" in log
        assert (local.cwd / "logs" / "haz-Sites-Dam001-Period16-haz-19.log").is_file()
        sites = local.cwd / "Sites" / "Dam001"
        assert sorted(p.name for p in sites.iterdir()) == periods  # archives unpacked, deleted
        assert not list(sites.rglob("*.bak"))

        assert s3.stored("output/") == [f"output/Dam001/{p}.zip" for p in periods]
        with zipfile.ZipFile(io.BytesIO(s3.read("output/Dam001/Period07.zip"))) as archive:
            names = sorted(n for n in archive.namelist() if n.endswith(".out"))
            assert len(names) == INPUTS and names[0] == "Period07/haz-00.in.out"
            assert archive.read(names[3]) == b"SITE PERIOD07 INPUT 3\n"

        down = local.sh(
            "hyper",
            "data",
            "download",
            "-bucket",
            BUCKET,
            "-prefix",
            "output/",
            "-local-folder",
            "output.tmp",
        )
        assert down.code == 0, down.err
        assert "16/16" in down.err  # the progress bar, once done
        fetched = sorted(p.name for p in (local.cwd / "output.tmp" / "Dam001").iterdir())
        assert fetched == [f"{p}.zip" for p in periods]


def failures(local: LocalHost, array_id: str) -> str:
    """What the tasks of an array that did not succeed said, to read when a test fails."""
    tasks = json.loads(local.ok("qstat", "-a", array_id, "--json"))["jobs"]
    return "\n\n".join(
        f"{t['id']}: {t['status']} {t.get('reason')}\n" + local.sh("qlog", str(t["id"])).out
        for t in tasks
        if t["status"] != "Successful"
    )


@pytest.mark.e2e
def test_a_failing_required_task_fails_its_job_which_is_retried(local: LocalHost) -> None:
    tasks = {
        "tasks": [
            {"name": "prepare", "command": "echo attempt $HYPER_ATTEMPT of $WORK_ITEM"},
            {"name": "model", "command": "echo model broke >&2; exit 3", "required": True},
            {"name": "post", "command": "echo post ran"},
            {"name": "save-logs", "command": "echo saved logs", "required": True},
        ]
    }
    local.script("tasks.json", json.dumps(tasks))
    array_id = local.ok(
        "hyper", "items", "start", *Q, "--workitems", "only", "-r", "1", "--apply"
    ).strip()
    task = local.wait_finished(f"{array_id}_1")
    assert (task["status"], task["exit_code"], task["attempt"]) == ("Failed", 3, 2)
    out = local.ok("qlog", "-t", "STDOUT", f"{array_id}_1")
    lines = out.splitlines()
    assert "attempt 1 of only" in lines and "attempt 2 of only" in lines
    assert "post ran" not in lines and lines.count("saved logs") == 2
    assert "pipeline failed with exit code 3: 3 ran, 1 failed, 1 skipped" in out
    assert "retrying" in local.ok("qlog", "-t", "SYSTEM", f"{array_id}_1")


# ---- exit codes, skips and the summary -----------------------------------------------


def test_the_first_failure_is_the_exit_code_whatever_succeeds_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report, log = run_here(
        {
            "tasks": [
                {"name": "a", "command": "true"},
                {"name": "b", "command": "exit 3"},
                {"name": "c", "command": "touch c-ran"},
                {"name": "d", "command": "exit 5", "exitOnError": False, "required": True},
            ],
            # a later section that succeeds reset the original's code to 0
            "move": [
                {
                    "name": "e",
                    "inputFolder": ".",
                    "includeFilePattern": "*.x",
                    "outputFolder": "o",
                    "required": True,
                }
            ],
        }
    )
    assert report.exit_code == 3
    assert states(report) == [
        ("a", "ok", 0),
        ("b", "failed", 3),
        ("c", "skipped", 0),
        ("d", "tolerated", 5),
        ("e", "ok", 0),
    ]
    assert not (tmp_path / "c-ran").exists()
    assert "pipeline failed with exit code 3: 4 ran, 1 failed, 1 skipped, 1 failed and" in log


def test_a_tolerated_failure_alone_leaves_the_run_successful(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    steps = [
        {"name": "optional", "command": "exit 4", "exitOnError": False},
        {"name": "next", "command": "touch next-ran"},
    ]
    report, log = run_here({"tasks": steps})
    assert report.exit_code == 0 and (tmp_path / "next-ran").exists()
    assert "pipeline succeeded: 2 ran, 0 failed, 0 skipped, 1 failed and tolerated" in log


@pytest.mark.parametrize(
    ("document", "code", "says"),
    [
        (
            {
                "tasks": [
                    {
                        "name": "t",
                        "command": "true",
                        "inputFolder": "in",
                        "inputFilePattern": "*.in",
                    }
                ]
            },
            232,
            "no files match '*.in' in in",
        ),
        ({"tasks": [{"name": "t", "command": "sleep 30", "timeout": 0.5}]}, 244, "timed out"),
        (
            {"fetch": [{"name": "f", "bucket": BUCKET, "key": "input/none.zip", "dest": "in/"}]},
            213,
            f"nothing at s3://{BUCKET}/input/none.zip",
        ),
        (
            {"fetch": [{"name": "f", "bucket": "nosuch", "key": "k", "dest": "in/"}]},
            213,
            "no bucket named 'nosuch'",
        ),
        (
            {
                "fetch": [
                    {
                        "name": "f",
                        "bucket": BUCKET,
                        "key": "input/bad.zip",
                        "dest": "in/",
                        "expand": True,
                    }
                ]
            },
            216,
            "cannot unpack in/bad.zip",
        ),
        (
            {"store": [{"name": "s", "bucket": BUCKET, "source": "Output/none", "dest": "o/"}]},
            43,
            "source Output/none does not exist",
        ),
        (
            {
                "store": [
                    {
                        "name": "s",
                        "bucket": "nosuch",
                        "source": "logs",
                        "dest": "o/",
                        "compress": True,
                    }
                ]
            },
            215,
            "cannot store logs.zip",
        ),
    ],
)
def test_failures_exit_with_the_original_codes(
    s3: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    document: dict[str, Any],
    code: int,
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.log").write_text("a log to store\n")
    s3.client.put_object(Bucket=BUCKET, Key="input/bad.zip", Body=b"not a zip")
    report, log = run_here(document, HYPER_ARCHIVE_FORMAT="zip")
    assert report.exit_code == code
    assert says in report.results[0].detail, log


def test_modes_and_local_mode_choose_the_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    never = {"bucket": "nosuch", "key": "k", "dest": "d/"}  # would fail if it ran
    document = {
        "fetch": [{"name": "fetch", **never}],
        "tasks": [
            {"name": "main", "command": "touch main", "excludeWhenMode": "post"},
            {"name": "post", "command": "touch post", "includeWhenMode": ["post", "full"]},
            {"name": "both", "command": "touch both", "includeWhenMode": "post,full"},
        ],
        "store": [{"name": "store", "bucket": "nosuch", "source": "main", "dest": "o/"}],
    }
    report, log = run_here(document, MODE_STR="post", LOCAL_MODE="1", DISK_STATS="1")
    assert report.exit_code == 0, log
    assert [r.state for r in report.results] == ["skipped", "skipped", "ok", "ok", "skipped"]
    assert report.results[0].detail == report.results[-1].detail == "LOCAL_MODE=1"
    assert report.results[1].detail == "mode 'post' is in excludeWhenMode"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["both", "post"]
    assert log.count("disk: ") == 3  # before, after the fetches, at the end
    default, _ = run_here({"tasks": document["tasks"]}, MODE_STR="")
    assert [r.state for r in default.results] == ["ok", "skipped", "skipped"]
    assert default.mode == "default"


# ---- fan-out, capture, variables -----------------------------------------------------

RUN_FOUR_AT_ONCE = """
mkdir -p running && touch "running/$(basename "$1")"
i=0  # wait, bounded, for three other runs to have started
while [ "$(ls running | wc -l)" -lt 4 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
[ "$(ls running | wc -l)" -ge 4 ] || { echo "ran alone" >&2; exit 9; }
echo "processed $1"
"""


def test_a_command_fans_out_over_input_files_on_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.sh").write_text(RUN_FOUR_AT_ONCE)
    for n in range(8):
        (tmp_path / "Sites" / f"s{n % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "Sites" / f"s{n % 2}" / f"in-{n}.txt").write_text(str(n))
    step = {
        "name": "fan",
        "command": "sh run.sh [INPUT_FILE_PATH]",
        "inputFolder": "Sites",
        "inputFilePattern": "in-*.txt",
        "workers": 4,
        "logBehavior": "capture",
        "outputFolder": "out/x",
    }
    report, log = run_here({"tasks": [step]})
    assert report.exit_code == 0, log
    assert report.results[0].detail == "8 runs" and (tmp_path / "out" / "x").is_dir()
    assert "runs: 8, processors: " in log and ", at once: 4" in log
    captured = tmp_path / "logs" / "fan-Sites-s1-in-3.log"
    assert captured.read_text() == "processed Sites/s1/in-3.txt\n"
    assert not list((tmp_path / "logs").glob("*.err"))  # empty ones are removed


def test_a_failed_run_stops_new_runs_and_its_log_tail_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    for n in range(5):
        (tmp_path / "in" / f"{n}.in").write_text(str(n))
    command = (
        'n=$(cat [INPUT_FILE_PATH]); echo "model $n"; [ "$n" != 2 ] || { echo bad >&2; exit 7; }'
    )
    step = {
        "name": "m",
        "command": command,
        "inputFolder": "in",
        "inputFilePattern": "*.in",
        "workers": 1,
        "logBehavior": "capture",
    }
    report, log = run_here({"tasks": [step]})
    assert report.exit_code == 7
    assert report.results[0].detail == "1 of 5 runs failed, 2 not started (first: #3 exited with 7)"
    assert "last lines of logs/m-in-2.err:\n    bad" in log
    assert not (tmp_path / "logs" / "m-in-3.log").exists()


def test_variables_are_expanded_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORK_ITEM", 'Dam "1"\\x')  # a quote and a backslash stay text
    monkeypatch.setenv("WORKERS", "2")
    command = "echo '$WORK_ITEM ${WORK_ITEM} $UNSET_X' > out"
    text = (
        '{"tasks": [{"name": "t", "workers": ${WORKERS}, "command": ' + json.dumps(command) + "}]}"
    )
    (tmp_path / "tasks.json").write_text(text)
    assert main(["tasks", "run"]) == 0
    assert (tmp_path / "out").read_text() == 'Dam "1"\\x Dam "1"\\x $UNSET_X\n'


# ---- fetch and store -----------------------------------------------------------------


def test_fetch_a_prefix_unpack_and_exclude(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s3.client.put_object(
        Bucket=BUCKET, Key="input/faults/a.zip", Body=zipped("a", {"f.dat": "1", "f.bak": "old"})
    )
    s3.client.put_object(Bucket=BUCKET, Key="input/faults/sub/b.txt", Body=b"2")
    step = {
        "name": "f",
        "bucket": BUCKET,
        "key": "input/faults/",
        "dest": "faults",
        "expand": True,
        "excludeFilePattern": "*.bak",
    }
    report, log = run_here({"fetch": [step]})
    assert report.exit_code == 0, log
    found = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "faults").rglob("*"))
    assert found == ["faults/a", "faults/a/f.dat", "faults/sub", "faults/sub/b.txt"]
    again, log = run_here({"fetch": [{**step, "expand": False}]})
    assert again.exit_code == 0
    assert "fetched 1 objects, 1 already here" in log


def test_store_as_it_is_as_one_archive_or_one_per_sub_folder(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("Output/Site1/a.csv", "Output/Site2/b.csv", "Output/top.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "Output" / "Empty").mkdir()
    store = [
        {"name": "plain", "bucket": BUCKET, "source": "Output", "dest": "plain"},
        {
            "name": "one",
            "bucket": BUCKET,
            "source": "Output",
            "dest": "one/",
            "compress": True,
            "removeOnStore": False,
        },
        {
            "name": "each",
            "bucket": BUCKET,
            "source": "Output",
            "dest": "each",
            "compressSubDirectories": True,
        },
        {"name": "file", "bucket": BUCKET, "source": "Output/top.txt", "dest": "files/"},
    ]
    report, log = run_here({"store": store}, HYPER_ARCHIVE_FORMAT="zip")
    assert report.exit_code == 0, log
    assert s3.stored() == [
        "each/Site1.zip",
        "each/Site2.zip",
        "files/top.txt",
        "one/Output.zip",
        "plain/Site1/a.csv",
        "plain/Site2/b.csv",
        "plain/top.txt",
    ]
    with zipfile.ZipFile(io.BytesIO(s3.read("one/Output.zip"))) as archive:
        assert archive.read("Output/Site2/b.csv") == b"Output/Site2/b.csv"
    with zipfile.ZipFile(io.BytesIO(s3.read("each/Site1.zip"))) as archive:
        assert archive.namelist() == ["Site1/", "Site1/a.csv"]
    assert (tmp_path / "Output.zip").is_file()  # removeOnStore: false keeps it
    assert not (tmp_path / "Output" / "Site1.zip").exists()


FAKE_7Z = """#!{python}
# a stand-in for 7-Zip: `a ARCHIVE NAME` and `x -oDIR ARCHIVE`, in zip format, each call noted
import sys, zipfile, pathlib
open({calls!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "a":
    archive, name = sys.argv[-2:]
    with zipfile.ZipFile(archive, "w") as out:
        for path in [pathlib.Path(name), *sorted(pathlib.Path(name).rglob("*"))]:
            out.write(path)
else:
    into = next(a[2:] for a in sys.argv if a.startswith("-o"))
    zipfile.ZipFile(sys.argv[-1]).extractall(into)
"""


def test_7z_is_used_when_it_is_on_path(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    calls = tmp_path / "7z-calls"
    (tools / "7z").write_text(FAKE_7Z.format(python=sys.executable, calls=str(calls)))
    (tools / "7z").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("HYPER_ARCHIVE_FORMAT", raising=False)
    work = tmp_path / "work"
    (work / "Output" / "P1").mkdir(parents=True)
    (work / "Output" / "P1" / "r.txt").write_text("result")
    monkeypatch.chdir(work)
    store = {"name": "s", "bucket": BUCKET, "source": "Output/P1", "dest": "out/", "compress": True}
    fetch = {"name": "f", "bucket": BUCKET, "key": "out/P1.7z", "dest": "back/", "expand": True}
    report, log = run_here({"store": [store], "fetch": [fetch]})
    assert report.exit_code == 0, log
    assert s3.stored() == ["out/P1.7z"]
    assert (work / "back" / "P1" / "r.txt").read_text() == "result"
    made, unpacked = calls.read_text().splitlines()
    assert made == f"a -y -bd {work / 'Output' / 'P1.7z'} P1"
    assert unpacked == f"x -y -bd -oback {Path('back') / 'P1.7z'}"


# ---- validation and the command line -------------------------------------------------

STEP = {"name": "t", "command": "true"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"tasks": [', "$: not valid JSON: Expecting value (line 1 column 12)"),
        ('{"tasks": [], "tasks": []}', "$: the key 'tasks' appears twice in one object"),
        ("[1]", "$: [1] is not of type 'object'"),
        ('{"tasks": {}}', "$.tasks: {} is not of type 'array'"),
        ('{"tasks": [{"name": "t"}]}', "$.tasks[0]: 'command' is a required property"),
        (
            '{"move": [{"name": "m", "inputFolder": "a", "includeFilePattern": "*"}]}',
            "$.move[0]: 'outputFolder' is a required property",
        ),
        (
            '{"tasks": [{"name": "t", "command": "x", "required": "yes"}]}',
            "$.tasks[0].required: 'yes' is not of type 'boolean'",
        ),
        (
            '{"tasks": [{"name": "t", "command": "x", "workers": -1}]}',
            "$.tasks[0].workers: -1 is less than the minimum of 0",
        ),
        (
            '{"tasks": [{"name": "t", "command": "x", "logBehavior": "tee"}]}',
            "$.tasks[0].logBehavior: 'tee' is not one of ['capture', 'default']",
        ),
        ('{"tasks": [{"name": "", "command": "x"}]}', "$.tasks[0].name: '' should be non-empty"),
        (
            '{"move": [{"name": "m", "inputFolder": "a", "outputFolder": "b", '
            '"includeFilePattern": []}]}',
            "$.move[0].includeFilePattern: [] should be non-empty",
        ),
        (
            '{"tasks": [{"name": "t", "command": "x", "inputFilePattern": "*.in"}]}',
            "$.tasks[0]: 'inputFolder' is a dependency of 'inputFilePattern'",
        ),
        (
            '{"store": [{"name": "s", "bucket": "b", "source": "s", "dest": "d", '
            '"excludeWhenMode": 3}]}',
            "$.store[0].excludeWhenMode: 3 is not of type 'string', 'array'",
        ),
    ],
)
def test_every_schema_error_is_named_with_its_json_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str
) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(text)
    assert main(["tasks", "validate", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: {error}\n"


def test_unknown_keys_are_warnings_and_a_valid_file_says_what_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"version": 2, "tasks": [{**STEP, "exitOnEror": False}, STEP]}))
    assert main(["tasks", "validate", str(path)]) == 0
    said = capsys.readouterr()
    assert said.out == f"{path}: valid (tasks 2)\n"
    assert said.err == (
        f"{path}: warning: $: unknown 'version': ignored\n"
        f"{path}: warning: $.tasks[0]: unknown 'exitOnEror': ignored\n"
    )


def test_an_invalid_document_runs_nothing(tmp_path: Path) -> None:
    later = {"name": "later", "command": "true", "workers": "4"}
    document = {"tasks": [{"name": "first", "command": "touch first-ran"}, later]}
    (tmp_path / "pipeline.json").write_text(json.dumps(document))
    result = hyper("tasks", "run", "pipeline.json", cwd=tmp_path)
    assert result.code == 2
    assert result.err == "pipeline.json: $.tasks[1].workers: '4' is not of type 'integer'\n"
    assert not (tmp_path / "first-ran").exists() and result.out == ""


def test_run_reads_tasks_path_or_stdin_and_exits_with_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.json").write_text(json.dumps({"tasks": [{**STEP, "command": "exit 6"}]}))
    monkeypatch.setenv("TASKS_PATH", "mine.json")
    failed = hyper("tasks", "run", cwd=tmp_path)
    assert failed.code == 6 and failed.err == "hyper: pipeline failed with exit code 6\n"
    # where `hyper` is not on PATH, a job runs the same command this way
    piped = subprocess.run(
        [sys.executable, "-m", "hyper.pipeline", "-"],
        input=json.dumps({"tasks": [STEP]}), capture_output=True, text=True, cwd=tmp_path,
        timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and "pipeline succeeded: 1 ran" in piped.stdout
    monkeypatch.setenv("TASKS_PATH", "none.json")
    missing = hyper("tasks", "run", cwd=tmp_path)
    assert missing.code == 2
    assert missing.err == "hyper: no tasks file 'none.json' (give a path, or set TASKS_PATH)\n"


def test_the_schema_command_prints_a_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    assert main(["tasks", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed == SCHEMA
    jsonschema.validate(TASKS, printed)  # the realistic pipeline above is valid
