"""Real job scripts, written for Slurm, PBS and LSF by other people, run as written.

Each script in tests/corpus/ names its source at its top; only payload commands were
replaced by `echo`, every directive line is as its author wrote it. What each must get
(name, array size, time limit, output files) is in tests/helpers/corpus.py, taken from
the schedulers' documentation. Where each scheduler reads its directives:

- sbatch(1): "The batch script may contain options preceded with "#SBATCH" before any
  executable commands in the script. sbatch will stop processing further #SBATCH
  directives once the first non-comment non-whitespace line has been reached."
- qsub(1B) (PBS): "scanning will continue until the first executable line, that is a
  line that is not blank, not a directive line, nor a line whose first non white space
  character is "#". If directives occur on subsequent lines, they will be ignored."
- bsub job_script (LSF): "Use the #BSUB imperative (in upper case letters) at the
  beginning of each line to specify job submission options in the script."
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyper.errors import UsageError
from hyper.jobspec import expand_output_pattern, parse_array
from qtools.qsub import build_job, build_parser
from tests.conftest import LocalHost, running_local_host
from tests.helpers.corpus import CORPUS, SCRIPTS, Expected, concrete

IDS = [entry.path for entry in SCRIPTS]


def test_the_corpus_is_large_and_every_script_names_its_source() -> None:
    files = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*"))
    assert files == sorted(IDS)
    assert len(files) >= 30
    for dialect in ("slurm", "pbs", "lsf"):
        assert sum(path.startswith(dialect) for path in files) >= 8
    for path in files:
        head = (CORPUS / path).read_text().splitlines()
        assert any("Source:" in line for line in head if line.lstrip().startswith("#"))


def _expanded(pattern: str | None, job: int, array: int, index: int | None, name: str) -> str:
    if pattern is None:
        return ""
    return expand_output_pattern(
        pattern, job_id=job, array_id=array, index=index, name=name, user="u"
    )


@pytest.mark.parametrize("entry", SCRIPTS, ids=IDS)
def test_each_script_is_read_as_its_scheduler_reads_it(
    entry: Expected,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / Path(entry.path).name
    shutil.copy(CORPUS / entry.path, script)
    if entry.refused:  # more than one node: one line, nothing submitted
        with pytest.raises(UsageError) as caught:
            build_job(build_parser().parse_args([str(script)]))
        assert "nodes; hyper runs each job on one machine" in str(caught.value)
        assert "\n" not in str(caught.value)
        return
    job = build_job(build_parser().parse_args([str(script)]))
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == (1 if entry.warns else 0), warnings
    # its resource lines are honoured, not warned about
    assert job.get("resources") == entry.asks
    for word in ("--mem", "--ntasks", "--cpus-per-task", "ncpus", "ppn", "rusage", "-n "):
        assert not any(word in line for line in warnings), warnings
    assert (job["name"], job["queue"], job.get("time_limit")) == (
        entry.name,
        entry.queue,
        entry.time_limit,
    )
    array = job.get("array")
    tasks = len(parse_array(array["spec"]).indices) if array else None
    assert tasks == entry.tasks
    index = parse_array(array["spec"]).indices[0] if array else None
    output = job.get("output") or {}
    ids = {"job": 41, "array": 40 if array else 41, "index": index, "name": entry.name}
    got = [
        _expanded(output.get(kind), 41, ids["array"], index, entry.name)
        for kind in ("stdout", "stderr")
    ]
    assert got == [concrete(entry.stdout, **ids), concrete(entry.stderr, **ids)]


# ---- end to end: each runs to Successful on one shared local host -----------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    base = tmp_path_factory.mktemp("corpus")
    with running_local_host(base / "home", base / "work") as local:
        # workers big enough for what the scripts ask (up to 8 CPUs and 240 GB; the
        # machine's CPUs are shared among a worker's jobs when it has fewer)
        local.ok("hyper", "clusters", "update-cluster", "local-cluster", "--max-vcpus", "16")
        local.ok(
            "hyper", "definitions", "add-definition", "--name", "corpus", "--vcpus", "8",
            "--memory-limit-mib", str(256 * 1024), "--yes",
        )  # fmt: skip
        local.ok(
            "hyper", "queues", "update-queue", "sample-queue-1", "--default-definition", "corpus"
        )
        yield local


@pytest.fixture(scope="module")
def submitted(host: LocalHost) -> dict[str, tuple[str, str]]:
    """Every script submitted at once (as written; -q only where it names a partition
    this host does not have): its id and what qsub said on stderr."""
    ids = {}
    for entry in SCRIPTS:
        script = host.cwd / Path(entry.path).name
        shutil.copy(CORPUS / entry.path, script)
        flags = ["-q", "sample-queue-1"] if entry.queue else []
        result = host.sh("qsub", *flags, script.name)
        assert result.code == (2 if entry.refused else 0), f"{entry.path}: {result.err}"
        ids[entry.path] = (result.out.strip(), result.err)
    return ids


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("entry", SCRIPTS, ids=IDS)
def test_each_script_runs_to_successful_with_its_schedulers_fields(
    entry: Expected, host: LocalHost, submitted: dict[str, tuple[str, str]]
) -> None:
    job_id, said = submitted[entry.path]
    if entry.refused:
        assert job_id == "" and len(said.splitlines()) == 1 and "nodes" in said
        return
    assert job_id.isdigit(), said
    assert len(said.splitlines()) <= 1
    job = host.wait_finished(job_id, timeout=600)
    assert job["status"] == "Successful", job
    assert job["name"] == entry.name
    assert job.get("time_limit") == entry.time_limit
    options = job.get("options") or {}
    assert options.get("request") == entry.asks  # what it asked is kept on the job
    if entry.tasks is None:
        numbers = {"job": int(job_id), "array": int(job_id), "index": None}
    else:
        assert job["size"] == entry.tasks
        first = parse_array(job["spec"]).indices[0]
        task = json.loads(host.ok("qstat", "-i", f"{job_id}_{first}", "--json"))["job"]
        numbers = {"job": int(task["id"]), "array": int(job_id), "index": first}
    for kind, template in (("stdout", entry.stdout), ("stderr", entry.stderr)):
        want = concrete(template, name=entry.name, **numbers)
        got = _expanded(options.get(kind), name=entry.name, **numbers)
        assert got == want, kind
        if want:
            assert (host.cwd / want).is_file(), f"{want} was not written"
