"""Bad input changes nothing and gets one clear line, never a traceback.

A corpus of bad input kept as data: each case runs as a user would type it, in its
own process, against one real local host shared by the module, and must exit 2
with exactly one line on stderr (``PROG: ...``), nothing on stdout, and the host's
jobs, ids, events, resources and saved hosts as they were. The tests after the
corpus show the other side of the line: odd but valid input is taken unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from hyper.jobspec import ENV_NAME, MAX_SCRIPT_BYTES
from tests.conftest import BIN, LocalHost, running_local_host

pytestmark = pytest.mark.e2e

Q = ("-q", "sample-queue-1", "-d", "sample-def-1")


# ---- the shared host -------------------------------------------------------------------


class Host(NamedTuple):
    local: LocalHost
    home: Path
    job: int  # a held job
    array: int  # a held array of tasks 1-3


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A running local host (as conftest's `local`, but one for the whole module), with a
    held job and a held array for the selectors to name."""
    base = tmp_path_factory.mktemp("bad-input")
    home = base / "home"
    with running_local_host(home, base / "work") as local:
        (local.cwd / "held.sh").write_text("echo held\n")
        job = int(local.ok("qsub", "-h", *Q, "held.sh"))
        array = int(local.ok("qsub", "-h", "-a", "1-3", *Q, "held.sh"))
        yield Host(local, home, job, array)


def snapshot(host: Host) -> dict[str, Any]:
    """What bad input must leave alone: jobs, arrays, dependencies, the next id, the
    event log, resources (read-only from the host's database) and the saved hosts."""
    database = host.local.data_dir / "hyper.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        state = {
            table: db.execute(query).fetchall()
            for table, query in {
                "jobs": "SELECT id, status, cancel_requested, name, priority FROM jobs ORDER BY id",
                "arrays": "SELECT id, name, size, cap, spec FROM arrays ORDER BY id",
                "deps": "SELECT * FROM deps ORDER BY owner, kind, target",
                "meta": "SELECT * FROM meta ORDER BY key",
                "events": "SELECT max(seq), count(*) FROM job_log",
                "resources": "SELECT kind, name, spec, status, updated FROM resources"
                " ORDER BY kind, name",
            }.items()
        }
    saved = host.home / "config"
    state["config"] = sorted(
        (str(path.relative_to(saved)), path.read_bytes())
        for path in saved.rglob("*")
        if path.is_file()
    )
    return state


# ---- the corpus ---------------------------------------------------------------------------


class Special(NamedTuple):
    """A file that is not plain bytes: a directory or a socket."""

    kind: str


DIRECTORY = Special("directory")
SOCKET = Special("socket")


class Case(NamedTuple):
    argv: tuple[str, ...]  # JOB and ARRAY stand for the host's held job and array
    files: Mapping[str, bytes | Special]
    stdin: bytes
    cwd: str  # a subdirectory to run in ("": the case's own directory)


def case(
    id: str,
    *argv: str,
    files: Mapping[str, bytes | Special] | None = None,
    stdin: bytes = b"",
    cwd: str = "",
) -> Any:
    return pytest.param(Case(argv, files or {}, stdin, cwd), id=id)


def script(*directives: str, body: str = "echo hi", crlf: bool = False) -> bytes:
    text = "\n".join(["#!/bin/bash", *directives, body]) + "\n"
    return (text.replace("\n", "\r\n") if crlf else text).encode()


D = "-q sample-queue-1 -d sample-def-1"
OK = script(f"#HYPER {D}")
JOB = {"job.sh": OK}
MANUAL = ["--compute-environment", "local-cluster", "--manual-region-weights"]


def sized(size: int, filler: bytes = b"#") -> bytes:
    """A valid script of exactly `size` bytes: a long comment, then a command."""
    start, end = OK.removesuffix(b"echo hi\n"), b"\necho hi\n"
    return start + filler * (size - len(start) - len(end)) + end


# fmt: off
CASES = [
    # -- scripts: binary, empty, too big, not UTF-8, CRLF -------------------------------------
    case("binary-script", "qsub", "job.sh", files={"job.sh": b"\x7fELF\x02\x01\x01\x00\x00"}),
    case("binary-stdin", "qsub", *Q, "-", stdin=b"\x00\x01\x02\xff"),
    case("nul-inside-script", "qsub", "job.sh", files={"job.sh": OK + b"echo a\x00b\n"}),
    case("empty-script", "qsub", *Q, "job.sh", files={"job.sh": b""}),
    case("blank-script", "qsub", *Q, "job.sh", files={"job.sh": b" \n\n\t\n"}),
    case("empty-stdin", "qsub", *Q, "-"),
    case("empty-commands", "qsub", *Q, "-c", ""),
    case("huge-script", "qsub", "job.sh", files={"job.sh": sized(5 * 2**20)}),
    case("script-one-byte-over", "qsub", "job.sh", files={"job.sh": sized(MAX_SCRIPT_BYTES + 1)}),
    case("huge-stdin", "qsub", "-", stdin=sized(5 * 2**20)),
    case("huge-after-params", "qsub", "-p", '{"X": "YY"}', "job.sh",
         files={"job.sh": sized(3 * 2**20, b"X")}),
    case("invalid-utf8-body", "qsub", "job.sh", files={"job.sh": OK + b"echo \xff\xfe\n"}),
    case("invalid-utf8-directive", "qsub", "job.sh",
         files={"job.sh": OK.replace(b"sample-def-1", b"sample-def-1 -n caf\xe9")}),  # Latin-1
    case("crlf-unknown-directive", "qsub", "job.sh",
         files={"job.sh": script(f"#HYPER {D}", "#HYPER --bogus", crlf=True)}),
    case("crlf-unbalanced-quote", "qsub", "job.sh",
         files={"job.sh": script(f"#HYPER {D} -n 'open", crlf=True)}),
    case("sbatch-warning-then-bad-time", "qsub", "job.sh",
         files={"job.sh": script(f"#HYPER {D}", "#SBATCH --mem=1G -t abc")}),
    # -- directives ----------------------------------------------------------------------------
    *(case(f"hyper-{name}", "qsub", "job.sh", files={"job.sh": script(line)}) for name, line in [
        ("unknown-flag", f"#HYPER {D} --bogus"),
        ("stray-word", f"#HYPER {D} stray"),
        ("abbreviated-flag", "#HYPER -d sample-def-1 --que sample-queue-1"),
        ("unbalanced-double-quote", '#HYPER -q "sample-queue-1 -d sample-def-1'),
        ("unbalanced-single-quote", f"#HYPER {D} -n 'x"),
        ("missing-value", "#HYPER -q sample-queue-1 -d"),
        ("help-flag", f"#HYPER {D} --help"),
        ("negative-retries", f"#HYPER {D} -r -3"),
        ("reversed-array", f"#HYPER {D} -a 5-1"),
        ("bad-time-limit", f"#HYPER {D} -t nope"),
        ("bad-priority", f"#HYPER {D} --priority=abc"),
        ("name-with-slash", f"#HYPER {D} -n a/b"),
        ("dependency-without-ids", f"#HYPER {D} -W depend=afterok:"),
    ]),
    *(case(f"foreign-{name}", "qsub", "job.sh", files={"job.sh": script(*lines)})
      for name, lines in [
        ("sbatch-missing-value", ["#HYPER -d sample-def-1", "#SBATCH -p sample-queue-1 -J"]),
        ("sbatch-bad-array", ["#HYPER -d sample-def-1", "#SBATCH -p sample-queue-1 --array=5-1"]),
        ("sbatch-burst-buffer-dependency", [f"#HYPER {D}", "#SBATCH -d afterburstbuffer:3"]),
        ("sbatch-bad-export-name", [f"#HYPER {D}", "#SBATCH --export=1BAD=x"]),
        ("pbs-priority-not-a-number", [f"#HYPER {D}", "#PBS -p abc"]),
        ("pbs-bad-join", [f"#HYPER {D}", "#PBS -j xy"]),
        ("bsub-bad-condition", [f"#HYPER {D}", '#BSUB -w "foo(1)"']),
    ]),
    # -- arrays and work items -------------------------------------------------------------------
    *(case(f"array-{name}", "qsub", f"--array={spec}", "job.sh", files=JOB) for name, spec in [
        ("reversed", "5-1"),
        ("open-end", "1-"),
        ("word", "x"),
        ("zero-step", "1-10:0"),
        ("zero-cap", "1-10%0"),
        ("empty-cap", "1-10%"),
        ("index-too-high", "1-99999999999"),
        ("too-many-tasks", "1-2000000"),
        ("huge-number", "1-" + "9" * 40),
        ("empty", ""),
        ("negative", "-1-5"),
        ("only-commas", ",,"),
    ]),
    case("array-file-bad-json", "qsub", "-a", "tasks.txt", "job.sh",
         files={**JOB, "tasks.txt": b'{"X": "1"}\n{bad\n'}),
    case("array-file-not-object", "qsub", "-a", "tasks.txt", "job.sh",
         files={**JOB, "tasks.txt": b"[1]\n"}),
    case("array-and-work-items", "qsub", "-a", "1-3", "--workitems", "1-3", "job.sh", files=JOB),
    case("work-items-reversed", "qsub", "--workitems", "5-1", "job.sh", files=JOB),
    case("work-items-none", "qsub", "--workitems", ",", "job.sh", files=JOB),
    case("work-item-dotdot", "qsub", "--workitems", "a,..", "job.sh", files=JOB),
    case("work-item-newline", "qsub", "--workitems", "a\nb", "job.sh", files=JOB),
    case("work-item-file-control-chars", "qsub", "--workitem-file", "items", "job.sh",
         files={**JOB, "items": b"ok\n\x1b[31mred\n"}),
    case("work-item-file-not-text", "qsub", "--workitem-file", "items", "job.sh",
         files={**JOB, "items": b"\xff\xfe\n"}),
    case("work-item-file-missing", "qsub", "--workitem-file", "nope", "job.sh", files=JOB),
    case("padding-negative", "qsub", "--padding=-1", "--workitems", "1-2", "job.sh", files=JOB),
    case("padding-huge", "qsub", "--padding=100000000", "--workitems", "1-9", "job.sh",
         files=JOB),
    case("padding-word", "qsub", "--padding", "x", "--workitems", "1-2", "job.sh", files=JOB),
    case("both-from-stdin", "qsub", "--workitem-file", "-", "-", stdin=OK),
    # -- names: a path, a line break or nothing is refused (see test_odd_names_round_trip) ----
    *(case(f"name-{name}", "qsub", "-j", value, "job.sh", files=JOB) for name, value in [
        ("with-slash", "a/b"),
        ("path-escape", "../escape"),
        ("dotdot", ".."),
        ("dot", "."),
        ("newline", "two\nlines"),
        ("carriage-return", "a\rb"),
        ("tab", "a\tb"),
        ("escape-sequence", "\x1b[2Jcleared"),
        ("line-separator", "a\u2028b"),
        ("empty", ""),
        ("too-long", "x" * 300),
        ("not-utf8", "caf\udce9"),
    ]),
    case("default-name-with-newline", "qsub", "a\nb.sh", files={"a\nb.sh": OK}),
    # -- text that is not UTF-8, wherever it comes from ------------------------------------------
    case("not-utf8-commands", "qsub", *Q, "-c", "echo \udcff"),
    case("not-utf8-params", "qsub", "-p", '{"hi": "\udcff"}', "job.sh", files=JOB),
    case("not-utf8-variable", "qsub", "-v", "A=\udcff", "job.sh", files=JOB),
    case("not-utf8-queue", "qsub", "-q", "\udcff", "-d", "sample-def-1", "job.sh", files=JOB),
    case("not-utf8-file-name", "qsub", "\udcff.sh", files={"\udcff.sh": OK}),
    case("not-utf8-directory", "qsub", "../job.sh", files={**JOB, "d\udcff": DIRECTORY},
         cwd="d\udcff"),
    # -- queues and definitions ------------------------------------------------------------------
    case("unknown-queue", "qsub", "-q", "nosuch", "-d", "sample-def-1", "job.sh", files=JOB),
    case("queue-typo", "qsub", "-q", "sample-queue-2", "-d", "sample-def-1", "job.sh", files=JOB),
    case("unknown-definition", "qsub", "-q", "sample-queue-1", "-d", "nosuch", "job.sh", files=JOB),
    case("no-default-definition", "qsub", "-q", "nosuch", "job.sh", files={"job.sh": b"echo\n"}),
    case("empty-queue", "qsub", "-q", "", "job.sh", files=JOB),
    case("empty-definition", "qsub", "-d", "", "job.sh", files={"job.sh": b"echo\n"}),
    # -- JSON options ------------------------------------------------------------------------------
    *(case(f"params-{name}", "qsub", "-p", value, "job.sh", files=JOB) for name, value in [
        ("bad-json", "{bad"),
        ("a-list", "[1]"),
        ("number-value", '{"a": 1}'),
        ("true-value", '{"a": true}'),
        ("null-value", '{"a": null}'),
        ("object-value", '{"a": {"b": "c"}}'),
        ("empty-key", '{"": "x"}'),
        ("empty", ""),
    ]),
    # -- numbers: retries, time limits, priority -------------------------------------------------
    *(case(name, "qsub", option, "job.sh", files=JOB) for name, option in [
        ("retries-negative", "--retries=-1"),
        ("retries-too-large", "--retries=101"),
        ("retries-word", "--retries=many"),
        ("retries-exponent", "--retries=1e3"),
        ("time-zero", "--time-limit=0"),
        ("time-word", "--time-limit=abc"),
        ("time-too-many-fields", "--time-limit=1:2:3:4"),
        ("time-over-ten-years", "--time-limit=99999999999"),
        ("time-negative", "--time-limit=-5"),
        ("time-empty", "--time-limit="),
        ("priority-word", "--priority=high"),
        ("priority-too-high", "--priority=10001"),
        ("priority-too-low", "--priority=-10001"),
        ("priority-fraction", "--priority=1.5"),
    ]),
    # -- dependencies -----------------------------------------------------------------------------
    *(case(f"depend-{name}", "qsub", "-W", value, "job.sh", files=JOB) for name, value in [
        ("unknown-job", "depend=afterok:999999"),
        ("no-ids", "depend=afterok"),
        ("unknown-type", "depend=sometime:1"),
        ("not-an-id", "depend=afterok:x"),
        ("any-of", "depend=afterok:1?2"),
        ("empty", ""),
        ("id-too-big", "depend=afterok:" + "9" * 30),
        ("one-known-one-not", "depend=afterok:JOB:999998"),
    ]),
    # -- environment variables --------------------------------------------------------------------
    *(case(f"env-{name}", "qsub", "-v", value, "job.sh", files=JOB) for name, value in [
        ("empty-name", "=x"),
        ("digit-first", "1A=x"),
        ("space-in-name", "A B=1"),
        ("unset-variable", "HYPER_SURELY_NOT_SET_ANYWHERE"),
    ]),
    # -- files that are not scripts ---------------------------------------------------------------
    case("missing-file", "qsub", *Q, "nope.sh"),
    case("missing-file-newline-name", "qsub", *Q, "no\nsuch.sh"),
    case("directory-as-script", "qsub", *Q, "adir", files={"adir": DIRECTORY}),
    case("socket-as-script", "qsub", *Q, "sock", files={"sock": SOCKET}),
    case("path-through-a-file", "qsub", "job.sh/x", files=JOB),
    case("file-name-too-long", "qsub", *Q, "x" * 300 + ".sh"),
    # -- qsub's own command line ------------------------------------------------------------------
    case("unknown-flag", "qsub", "--bogus", "job.sh", files=JOB),
    case("no-script", "qsub", *Q),
    case("arguments-for-a-python-script", "qsub", *Q, "job.py", "1",
         files={"job.py": b"#!/usr/bin/env python3\nprint(1)\n"}),
    case("bad-directives-choice", "qsub", "--directives", "slurm", "job.sh", files=JOB),
    # -- selectors: qstat, qdel, qhold, qrls, qlog (JOB: a held job, ARRAY: a held array) --------
    case("qstat-id-word", "qstat", "-i", "x"),
    case("qstat-id-unknown", "qstat", "-i", "999999"),
    case("qstat-id-zero", "qstat", "-i", "0"),
    case("qstat-id-huge", "qstat", "-i", "9" * 30),
    case("qstat-bad-state", "qstat", "-f", "NotAState"),
    case("qstat-negative-limit", "qstat", "--limit", "-1"),
    case("qstat-array-word", "qstat", "-a", "x"),
    case("qstat-only-ids-maybe", "qstat", "-o", "maybe"),
    case("qstat-after-word", "qstat", "--after", "x"),
    case("qstat-not-utf8-name", "qstat", "-j", "\udcff"),
    case("qdel-word", "qdel", "abc"),
    case("qdel-nothing", "qdel", "-q", "nosuch"),
    case("qdel-open-bracket", "qdel", "12["),
    case("qdel-empty-brackets", "qdel", "ARRAY[]"),
    case("qdel-unknown", "qdel", "999999"),
    case("qdel-reversed-tasks", "qdel", "ARRAY[5-1]"),
    case("qdel-task-word", "qdel", "ARRAY_x"),
    case("qdel-huge-id", "qdel", "9" * 30),
    case("qdel-bad-state", "qdel", "-f", "NotAState"),
    case("qdel-good-and-bad", "qdel", "JOB", "abc"),
    case("qdel-good-and-unknown", "qdel", "JOB", "999999"),
    case("qdel-tasks-of-a-plain-job", "qdel", "JOB[1]"),
    case("qhold-word", "qhold", "abc"),
    case("qhold-id-option-word", "qhold", "-i", "x"),
    case("qhold-bad-state", "qhold", "-f", "Nope"),
    case("qrls-bad-tasks", "qrls", "ARRAY[x]"),
    case("qrls-unknown", "qrls", "999999"),
    case("qrls-good-and-bad", "qrls", "ARRAY", "JOB_"),
    case("qlog-open-bracket", "qlog", "12["),
    case("qlog-word", "qlog", "abc"),
    case("qlog-unknown", "qlog", "999999"),
    case("qlog-zero", "qlog", "0"),
    case("qlog-no-id", "qlog"),
    case("qlog-bad-type", "qlog", "-t", "BOGUS", "JOB"),
    case("qlog-wrong-queue", "qlog", "-q", "other-queue", "JOB"),
    # -- hyper resource commands -------------------------------------------------------------------
    *(case(f"add-queue-{name}", "hyper", "queues", "add-queue", "--name", "q2", *flags)
      for name, flags in [
        ("weight-word", [*MANUAL, "-rw", "local", "abc"]),
        ("weight-negative", [*MANUAL, "-rw", "local", "-5"]),
        ("weight-unknown-region", [*MANUAL, "-rw", "nowhere", "1"]),
        ("weight-without-region", [*MANUAL, "-rw", "=1"]),
        ("all-weights-zero", [*MANUAL, "-rw", "local", "0"]),
        ("weights-missing", MANUAL),
        ("unknown-cluster", ["--compute-environment", "nosuch", "--yes"]),
        ("unknown-flag", ["--bogus"]),
    ]),
    case("add-queue-name-with-slash", "hyper", "queues", "add-queue", "--name", "a/b",
         "--compute-environment", "local-cluster", "--yes"),
    case("add-queue-that-exists", "hyper", "queues", "add-queue", "--name", "sample-queue-1",
         "--compute-environment", "local-cluster", "--yes"),
    case("update-queue-unknown", "hyper", "queues", "update-queue", "nosuch",
         "--compute-environment", "local-cluster"),
    case("update-queue-nothing", "hyper", "queues", "update-queue", "sample-queue-1"),
    case("delete-queue-unknown", "hyper", "queues", "delete-queue", "nosuch"),
    case("delete-queue-in-use", "hyper", "queues", "delete-queue", "sample-queue-1"),
    *(case(f"add-cluster-{name}", "hyper", "clusters", "add-cluster", "--name", "c2", *flags,
           "--yes") for name, flags in [
        ("vcpus-word", ["--max-vcpus", "abc"]),
        ("vcpus-negative", ["--max-vcpus", "-4"]),
        ("bad-type", ["--type", "WEIRD"]),
        ("bid-over-100", ["--bid-percentage", "150"]),
    ]),
    *(case(f"add-definition-{name}", "hyper", "definitions", "add-definition", "--name", "d2",
           *flags, "--yes") for name, flags in [
        ("zero-vcpus", ["--vcpus", "0"]),
        ("bad-json", ["--linux-parameters", "{bad"]),
        ("env-not-object", ["--environment", "[1]"]),
        ("env-number", ["--environment", '{"A": 1}']),
        ("unknown-image", ["--cyclone-image-name", "nosuch"]),
    ]),
    case("hyper-not-utf8", "hyper", "queues", "delete-queue", "\udcff"),
    case("hyper-unknown-group", "hyper", "nosuchgroup"),
    case("hyper-unknown-command", "hyper", "queues", "nosuchcmd"),
    case("select-unknown-host", "hyper", "hosts", "select-host", "nosuch"),
    case("create-host-bad-name", "hyper", "hosts", "create-host", "--name", "a/b"),
    case("create-host-that-exists", "hyper", "hosts", "create-host", "--name", "local"),
]
# fmt: on

# what must never show in the one line: a traceback, an object's repr, escaped bytes
NOISE = re.compile(r"Traceback|object at 0x|\w+Error\(|\\udc[89a-f]|\[\{'|Value error,")


def make_files(directory: Path, files: Mapping[str, bytes | Special]) -> None:
    for name, content in files.items():
        path = directory / name
        if content == DIRECTORY:
            path.mkdir()
        elif content == SOCKET:
            home = os.getcwd()
            os.chdir(directory)  # a relative name: AF_UNIX paths are short
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.bind(name)  # the file stays; nothing listens
            finally:
                os.chdir(home)
        else:
            path.write_bytes(content)


class Result(NamedTuple):
    code: int
    out: str
    err: str


def run(host: Host, argv: tuple[str, ...], cwd: Path, stdin: bytes = b"") -> Result:
    """One command as a user runs it; its output must be UTF-8 text."""
    words = [w.replace("JOB", str(host.job)).replace("ARRAY", str(host.array)) for w in argv]
    done = subprocess.run(
        [str(BIN / words[0]), *words[1:]],
        input=stdin,
        capture_output=True,
        env=host.local.env,
        cwd=cwd,
        timeout=60,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def test_the_corpus_is_large_and_its_ids_are_unique() -> None:
    ids = [param.id for param in CASES]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_changes_nothing_and_says_one_line(host: Host, bad: Case, tmp_path: Path) -> None:
    make_files(tmp_path, bad.files)
    before = snapshot(host)
    result = run(host, bad.argv, tmp_path / bad.cwd, bad.stdin)
    lines = result.err.splitlines()
    assert (result.code, len(lines), result.out) == (2, 1, ""), result
    line = lines[0]
    assert result.err == line + "\n"
    assert line.startswith(f"{bad.argv[0]}: ") and line[len(bad.argv[0]) + 2 :].strip(), line
    assert not NOISE.search(line), line
    assert snapshot(host) == before


# ---- what is taken: the other side of the line -------------------------------------------


def job(host: Host, job_id: str) -> dict[str, Any]:
    result = run(host, ("qstat", "-i", job_id, "--json"), host.local.cwd)
    assert result.code == 0, result
    return dict(json.loads(result.out)["job"])


def stored_script(host: Host, job_id: str) -> str:
    database = host.local.data_dir / "hyper.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (text,) = db.execute("SELECT script FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
    return str(text)


def test_crlf_on_a_valid_script_is_accepted(host: Host, tmp_path: Path) -> None:
    (tmp_path / "dos.sh").write_bytes(script("#HYPER -q sample-queue-1 -d sample-def-1 -h",
                                             body="echo 'from windows'", crlf=True))  # fmt: skip
    result = run(host, ("qsub", "dos.sh"), tmp_path)
    assert result.code == 0, result
    assert result.err == "qsub: the script's DOS line endings (CRLF) were converted to LF\n"
    job_id = result.out.strip()
    assert job(host, job_id)["status"] == "Held"
    assert stored_script(host, job_id).endswith("\necho 'from windows'\n")
    assert "\r" not in stored_script(host, job_id)


ODD_NAMES = [
    'it\'s "quoted"',
    "a;b&c|d",
    "$HOME $(id) `id`",
    "*?[x]{y}<>!#~%",
    "  spaced  out  ",
    "back\\slash",
    "ünïcödé 名前 🚀",
    "a..b",
    "...",
    ".hidden",
    "-starts-with-dash",
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_round_trip(host: Host, name: str) -> None:
    """Slurm takes any job name without '/' or a line break, and so does hyper: nothing
    hands the name to a shell, so quotes and metacharacters are safe. What qstat shows is
    exactly what was given, and the name finds the job."""
    result = run(host, ("qsub", "-h", *Q, f"--job-name={name}", "held.sh"), host.local.cwd)
    assert (result.code, result.err) == (0, ""), result
    job_id = result.out.strip()
    assert job(host, job_id)["name"] == name
    listed = run(host, ("qstat", "--json", f"--job-name={name}"), host.local.cwd)
    assert [j["id"] for j in json.loads(listed.out)["jobs"]] == [int(job_id)]


def test_a_script_of_exactly_the_limit_is_accepted(host: Host, tmp_path: Path) -> None:
    (tmp_path / "big.sh").write_bytes(sized(MAX_SCRIPT_BYTES))
    result = run(host, ("qsub", "-h", "big.sh"), tmp_path)
    assert (result.code, result.err) == (0, ""), result
    assert len(stored_script(host, result.out.strip()).encode()) == MAX_SCRIPT_BYTES


def test_export_env_leaves_behind_what_a_job_cannot_take(host: Host, tmp_path: Path) -> None:
    """`-V` passes plain variables; an exported bash function or a value that is not
    UTF-8 is named in one warning, not a refusal of the whole job."""
    plain = {k: v for k, v in host.local.env.items() if ENV_NAME.fullmatch(k) and v.isprintable()}
    env = {**plain, "BASH_FUNC_f%%": "() {  echo f\n}", "HYPER_LATIN1": "caf\udce9",
           "HYPER_PLAIN": "kept"}  # fmt: skip
    done = subprocess.run(
        [str(BIN / "qsub"), "-h", "-V", *Q, str(host.local.cwd / "held.sh")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "qsub: warning: -V: not passed (not a plain name, or not UTF-8):"
        " BASH_FUNC_f%%, HYPER_LATIN1\n"
    )
    passed = job(host, done.stdout.strip())["env"]
    assert passed["HYPER_PLAIN"] == "kept"
    assert "BASH_FUNC_f%%" not in passed and "HYPER_LATIN1" not in passed


def test_the_host_checks_names_and_script_size_too(api: Any) -> None:
    """What qsub refuses, the API refuses too, for clients that are not qsub."""
    base = {"queue": "q", "definition": "d", "script": "echo\n"}
    for name in ("a/b", "..", "two\nlines", ""):
        response = api.post("/jobs", json={"jobs": [{**base, "name": name}]})
        assert response.status_code == 422, (name, response.text)
    too_big = {**base, "name": "big", "script": "#" * (MAX_SCRIPT_BYTES + 1)}
    assert api.post("/jobs", json={"jobs": [too_big]}).status_code == 422
    tasks = {**base, "name": "n", "array": {"tasks": [{"name": ".."}]}}
    assert api.post("/jobs", json={"jobs": [tasks]}).status_code == 422
