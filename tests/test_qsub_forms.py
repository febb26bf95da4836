"""qsub as users of other schedulers type it: trailing comments, PBS's command-line forms,
script arguments, a script on stdin, defaults, and the rough edges of qdel and qlog."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyper.errors import UsageError
from qtools.directives import JobOptions, parse_directives
from qtools.qsub import build_job, build_parser
from qtools.qsub_forms import split_variables
from tests.conftest import BIN, ROOT, LocalHost, running_local_host


def _job(tmp_path: Path, text: str, *flags: str) -> dict:
    script = tmp_path / "job.sh"
    script.write_text(text)
    return build_job(build_parser().parse_args([*flags, str(script)]))


def test_readme_annotated_hyper_block_is_read_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(#!/bin/bash\n#HYPER -n .*?)```", readme, re.S)
    assert block, "the README's annotated #HYPER example"
    assert parse_directives(block.group(1)) == JobOptions(
        name="example-job-name",
        queue="sample-queue-1",
        retries=2,
        definition="sample-def-1",
        time_limit="1:00:00",
        stdout="out-%j.txt",
    )


def test_an_indented_comment_does_not_end_the_directives(tmp_path: Path) -> None:
    text = "#!/bin/bash\n  # set up\n#SBATCH -J named\n\n    # more\n#SBATCH -t 5\necho\n"
    job = _job(tmp_path, text)
    assert (job["name"], job["time_limit"]) == ("named", 300)


def test_an_apostrophe_in_a_trailing_comment_is_only_text(tmp_path: Path) -> None:
    job = _job(tmp_path, "#SBATCH --job-name=x   # the job's name\necho\n")
    assert job["name"] == "x"


def test_an_unbalanced_quote_in_the_options_is_refused_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="line 2: cannot read #HYPER directive"):
        _job(tmp_path, "#!/bin/sh\n#HYPER -n 'open\necho\n")


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        (["-N", "pbsname"], "name", "pbsname"),
        (["-j", "cyclonename"], "name", "cyclonename"),
        (["-l", "walltime=1:30:00"], "time_limit", 5400),
        (["-l", "select=1:ncpus=4:mem=8gb,walltime=00:10:00"], "time_limit", 600),
        (["-l", "walltime=3600"], "time_limit", 3600),  # PBS: a bare number is seconds
        (["-p", "5"], "priority", 5),
        (["-r", "y"], "retries", 1),
        (["-r", "n"], "retries", 0),
        (["-r", "3"], "retries", 3),
        (["-J", "1-4"], "array", {"spec": "1-4"}),
        (["-W", "depend=afterok:7"], "depends", [{"kind": "afterok", "target": 7}]),
        (
            ["-W", "depend=afterok:7.pbs01:8.pbs01.example.org"],
            "depends",
            [{"kind": "afterok", "target": 7}, {"kind": "afterok", "target": 8}],
        ),  # PBS's ids
        (["-h"], "hold", True),
    ],
)
def test_pbs_command_line_forms(
    tmp_path: Path, flags: list[str], field: str, value: object
) -> None:
    job = _job(tmp_path, "echo\n", *flags)
    assert job[field] == value


@pytest.mark.parametrize(
    ("value", "stdout", "stderr", "join"),
    [("oe", "o.txt", None, True), ("n", "o.txt", "e.txt", False)],
)
def test_pbs_join_is_told_from_a_job_name_by_its_value(
    tmp_path: Path, value: str, stdout: str, stderr: str | None, join: bool
) -> None:
    flags = ["-j", value, "-o", "o.txt"] + (["-e", "e.txt"] if stderr else [])
    job = _job(tmp_path, "echo\n", *flags)
    assert job["name"] == "job.sh"
    assert job["output"] == {"stdout": stdout, "stderr": stderr, "join": join}


def test_pbs_output_paths_lose_their_host(tmp_path: Path) -> None:
    job = _job(tmp_path, "echo\n", "-o", "login1:/tmp/x.out")
    assert job["output"]["stdout"] == "/tmp/x.out"


@pytest.mark.parametrize(
    ("value", "array", "time_limit"),
    [
        ("1-100", "1-100", None),  # Torque's qsub -t array_request
        ("0-1", "0-1", None),
        ("1,3,5-9", "1,3,5-9", None),
        ("0-9%2", "0-9%2", None),
        ("90", None, 5400),  # minutes: qsub's own time limit
        ("1:30:00", None, 5400),
        ("2-12:00:00", None, 216000),
    ],
)
def test_qsub_t_is_torques_array_where_its_value_is_no_time(
    tmp_path: Path, value: str, array: str | None, time_limit: int | None
) -> None:
    """Torque's qsub(1): "-t array_request Specifies the task ids of a job array"; a
    1-100 read as a time limit of 1 day and 100 hours ran one job instead of 100."""
    job = _job(tmp_path, "#!/bin/bash\necho $PBS_ARRAYID\n", "-t", value)
    assert job.get("array") == ({"spec": array} if array else None)
    assert job.get("time_limit") == time_limit
    if array:  # a PBS job, whose tasks find Torque's name for their index
        assert job["compat"] == ["pbs"]
        assert 'export PBS_ARRAYID="$PBS_ARRAY_INDEX"' in job["script"]


def test_qsub_t_that_was_days_and_hours_says_what_it_is_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _job(tmp_path, "#!/bin/bash\necho\n", "-t", "1-12")
    assert "note: -t 1-12 is Torque's array of tasks 1-12; a time limit of days and hours" in (
        capsys.readouterr().err
    )
    _job(tmp_path, "#!/bin/bash\necho\n", "-t", "1-100")  # never a time: no note
    assert capsys.readouterr().err == ""


def test_qsub_t_on_a_torque_array_script_overrides_its_range(tmp_path: Path) -> None:
    """A script of `#PBS -t 0-1024%2000` resubmitted for two of its tasks: `qsub -t 0-1`."""
    text = "#!/bin/bash\n#PBS -t 0-1024%2000\necho $PBS_ARRAYID\n"
    assert _job(tmp_path, text, "-t", "0-1")["array"] == {"spec": "0-1"}
    job = _job(tmp_path, text, "-t", "1:00:00")
    assert (job["array"], job["time_limit"]) == ({"spec": "0-1024%2000"}, 3600)


@pytest.mark.parametrize(
    ("flags", "resources"),
    [
        ([], {"cpus": 1, "mem_mib": 4096}),
        (["-l", "pmem=256mb"], {"cpus": 1, "mem_mib": 256}),  # the script's pmem replaced
        (["-l", "ncpus=2"], {"cpus": 2, "mem_mib": 8192}),  # its pmem for each of 2 CPUs
        (["-l", "mem=1gb"], {"cpus": 1, "mem_mib": 1024}),  # the job's whole memory
        (["--cpus", "3"], {"cpus": 3, "mem_mib": 4096}),  # hyper's own: the whole request
    ],
)
def test_the_command_lines_pbs_resources_replace_the_scripts_part_by_part(
    tmp_path: Path, flags: list[str], resources: dict[str, int]
) -> None:
    """qsub(1B): options on the command line override the script's directives; pmem is
    memory for each CPU (`-l pmem=` was dropped, and `-l ncpus=` kept 1 CPU's pmem)."""
    text = "#!/bin/bash\n#PBS -l nodes=1:ppn=1\n#PBS -l pmem=4gb\necho\n"
    assert _job(tmp_path, text, *flags)["resources"] == resources


def test_pmem_on_the_command_line_of_a_plain_script_is_memory_for_each_cpu(
    tmp_path: Path,
) -> None:
    job = _job(tmp_path, "#!/bin/bash\necho\n", "-l", "pmem=256mb,ncpus=2")
    assert job["resources"] == {"cpus": 2, "mem_mib": 512}


def test_pbs_ncpus_on_the_command_line_are_all_a_slurm_scripts_cpus(tmp_path: Path) -> None:
    text = "#!/bin/bash\n#SBATCH -n 4 -c 2\necho\n"
    assert _job(tmp_path, text)["resources"] == {"cpus": 8}
    assert _job(tmp_path, text, "-l", "ncpus=3")["resources"] == {"cpus": 3}


def test_qsub_d_is_torques_working_directory_where_it_is_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Torque's qsub(1B): "-d path: defines the working directory path to be used for the
    job"; myqueue passes `-d FOLDER`, which was refused as an unknown definition."""
    folder = tmp_path / "run here"
    folder.mkdir()
    job = _job(tmp_path, "#!/bin/bash\necho\n", "-d", str(folder))
    assert (job["definition"], job["submit_dir"]) == (None, str(folder))
    monkeypatch.chdir(folder)
    assert _job(tmp_path, "#!/bin/bash\necho\n", "-d", ".")["submit_dir"] == str(folder)
    named = _job(tmp_path, "#!/bin/bash\necho\n", "-d", "sample-def-1")  # hyper's own
    assert (named["definition"], named["submit_dir"]) == ("sample-def-1", str(folder))


def test_pbs_pro_array_index_in_output_paths_on_the_command_line(tmp_path: Path) -> None:
    job = _job(tmp_path, "echo\n", "-J", "0-7", "-o", "out.^array_index^", "-e", "e^array_index^")
    assert (job["output"]["stdout"], job["output"]["stderr"]) == ("out.%a", "e%a")


def test_a_slurm_jobs_tasks_are_exported_before_its_first_command(tmp_path: Path) -> None:
    """altrove-ai's 4process_4gpu.sh: --ntasks=4 --gpus-per-task=1 --cpus-per-gpu=4."""
    text = ("#!/bin/bash\n#SBATCH --ntasks=4\n#SBATCH --gpus-per-task=1\n"
            "#SBATCH --cpus-per-gpu=4\nsrun python train.py\n")  # fmt: skip
    job = _job(tmp_path, text)
    assert job["resources"] == {"cpus": 16, "gpus": 4}
    lines = job["script"].splitlines()
    assert lines[-2:] == [
        "export SLURM_NTASKS=4 SLURM_NPROCS=4 SLURM_CPUS_PER_TASK=4  # the job's Slurm tasks",
        "srun python train.py",
    ]
    assert "SLURM_NTASKS" not in _job(tmp_path, "#!/bin/bash\n#SBATCH -c 4\necho\n")["script"]


def test_pbs_options_hyper_does_not_use_make_one_warning_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "#SBATCH --exclusive\n#SBATCH --nodes=1\necho\n"
    job = _job(
        tmp_path, text, "-A", "proj", "-m", "abe", "-M", "me@x", "-l", "ncpus=2,place=scatter",
        "-S", "/bin/tcsh",
    )  # fmt: skip
    assert job["resources"] == {"cpus": 2}
    assert capsys.readouterr().err.splitlines() == [
        "qsub: warning: ignored (not supported): --exclusive (line 1);"
        " -l place=scatter, -A proj, -m abe, -M me@x, -S /bin/tcsh (command line)"
    ]


def test_a_bash_shell_is_what_hyper_runs_anyway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _job(tmp_path, "echo\n", "-S", "/bin/bash")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("value", "pairs"),
    [
        ("A=1,B=2", ["A=1", "B=2"]),
        ("A=1,B,C=3", ["A=1", "B", "C=3"]),
        ("X=1,2", ["X=1,2"]),
        ("ONE=1", ["ONE=1"]),
    ],
)
def test_pbs_variable_lists(value: str, pairs: list[str]) -> None:
    assert split_variables(value) == pairs


def test_script_arguments_are_set_before_the_first_command(tmp_path: Path) -> None:
    text = '#!/bin/bash\n#SBATCH -J a\n# note\necho "$1 $2"\n'
    script = tmp_path / "job.sh"
    script.write_text(text)
    job = build_job(build_parser().parse_args([str(script), "5", "7 8"]))
    assert job["script"].splitlines() == [
        "#!/bin/bash",
        "#SBATCH -J a",
        "# note",
        "set -- 5 '7 8'  # qsub's script arguments",
        'echo "$1 $2"',
    ]


def test_script_arguments_need_a_shell_script(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("#!/usr/bin/env python3\nprint(1)\n")
    with pytest.raises(UsageError, match="runs python3: script arguments"):
        build_job(build_parser().parse_args([str(script), "1"]))


def test_options_after_the_file_belong_to_the_script(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("echo\n")
    args = build_parser().parse_args(["-q", "q", str(script), "-q", "x"])
    assert (args.queue, args.script_args) == ("q", ["-q", "x"])


def test_without_a_file_the_script_comes_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"#PBS -N fromstdin\necho\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    job = build_job(build_parser().parse_args([]))
    assert job["name"] == "fromstdin"


def test_pbs_output_to_a_directory_gets_the_default_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "logs").mkdir()
    monkeypatch.chdir(tmp_path)
    job = _job(tmp_path, "#PBS -N sim\n#PBS -o logs\n#PBS -e errs/\n#PBS -t 1-3\necho\n")
    assert job["output"] == {
        "stdout": "logs/%x.o%A-%a",
        "stderr": "errs/%x.e%A-%a",
        "join": False,
    }


def test_lsf_output_to_a_directory_and_its_job_id(tmp_path: Path) -> None:
    job = _job(tmp_path, '#BSUB -J "a[1-2]"\n#BSUB -o out/\n#BSUB -e e.%J.%I\necho\n')
    assert job["output"] == {"stdout": "out/%A_%a.out", "stderr": "e.%A.%a", "join": False}


# ---- from the shell, on one local host ------------------------------------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    base = tmp_path_factory.mktemp("forms")
    with running_local_host(base / "home", base / "work") as local:
        yield local


@pytest.mark.e2e
def test_readme_example_runs_as_written_with_no_flags(host: LocalHost) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(#!/bin/bash\n#HYPER -n .*?)```", readme, re.S)
    assert block
    host.script("readme-job.sh", block.group(1))
    job_id = host.ok("qsub", "readme-job.sh").strip()
    job = host.wait_finished(job_id)
    assert (job["status"], job["name"], job["time_limit"]) == (
        "Successful",
        "example-job-name",
        3600,
    )
    assert (host.cwd / f"out-{job_id}.txt").read_text().startswith(f"job {job_id}, attempt 1")


@pytest.mark.e2e
def test_a_plain_script_runs_on_the_defaults_with_its_arguments(host: LocalHost) -> None:
    host.script("args.sh", 'echo "$1 $2"\n')
    job_id = host.ok("qsub", "args.sh", "5", "7").strip()
    assert host.wait_finished(job_id)["status"] == "Successful"
    assert host.ok("qlog", job_id) == "5 7\n"
    job = host.job(job_id)
    assert (job["queue"], job["definition"]) == ("sample-queue-1", "sample-def-1")


@pytest.mark.e2e
def test_warnings_come_before_the_id(host: LocalHost) -> None:
    host.script("warns.sh", "#SBATCH --mail-user=a@b.c\necho\n")
    merged = subprocess.run(
        [str(BIN / "qsub"), "warns.sh"],
        cwd=host.cwd,
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert merged[0].startswith("qsub: warning: ignored (not supported): --mail-user=a@b.c")
    assert merged[-1].isdigit()


@pytest.mark.e2e
def test_dry_run_checks_the_queue_and_definition(host: LocalHost) -> None:
    host.script("dry.sh", "#SBATCH -a 1-4\necho\n")
    before = host.ok("qstat", "-o")
    result = host.sh("qsub", "--dry-run", "dry.sh")
    assert result.code == 0
    assert result.err.splitlines()[-1] == (
        "qsub: dry run: queue 'sample-queue-1' and definition 'sample-def-1' exist;"
        " an array of 4 tasks would be submitted; nothing was"
    )
    refused = host.sh("qsub", "--dry-run", "-d", "nope", "dry.sh")
    assert refused.code == 2
    assert refused.err.startswith("qsub: unknown definition 'nope'")
    assert host.ok("qstat", "-o") == before


@pytest.mark.e2e
def test_missing_queue_and_definition_are_named_in_one_line(host: LocalHost) -> None:
    host.ok("hyper", "queues", "update-queue", "sample-queue-1", "--no-default")
    try:
        host.script("none.sh", "echo\n")
        result = host.sh("qsub", "none.sh")
        assert result.code == 2
        assert len(result.err.splitlines()) == 1
        assert "a queue (-q QUEUE" in result.err
        assert "a job definition (-d DEFINITION" in result.err
    finally:
        host.ok("hyper", "queues", "update-queue", "sample-queue-1", "--default")


@pytest.mark.e2e
def test_waiting_jobs_piped_from_qstat_are_cancelled(host: LocalHost) -> None:
    host.script("held.sh", "echo\n")
    ids = [host.ok("qsub", "-h", "held.sh").strip() for _ in range(2)]
    listed = host.ok("qstat", "-f", "Held", "-o")
    assert sorted(listed.split()) == sorted(ids)
    result = host.sh("qdel", input=listed)
    assert result.code == 0, result.err
    assert all(host.job(i)["status"] == "Cancelled" for i in ids)
    again = host.sh("qdel", "-", input=listed)
    assert again.code == 1
    assert f"qdel: job {ids[0]} had already finished" in again.err
    empty = host.sh("qdel", input="")
    assert (empty.code, empty.err) == (0, "qdel: no job ids on stdin; nothing to do\n")


@pytest.mark.e2e
def test_hold_of_a_finished_job_exits_non_zero(host: LocalHost) -> None:
    host.script("quick.sh", "echo\n")
    job_id = host.ok("qsub", "quick.sh").strip()
    host.wait_finished(job_id)
    result = host.sh("qhold", job_id)
    assert result.code == 1
    assert "cannot be held in its state" in result.err


@pytest.mark.e2e
def test_torque_array_tasks_find_their_index_in_pbs_arrayid(host: LocalHost) -> None:
    """Torque (qsub -t): "Each 1098[x] job has an environment variable called PBS_ARRAYID,
    which is set to the value of the array index of the job"."""
    host.script("torque.sh", '#PBS -t 2-3\n#PBS -N torque\necho "index $PBS_ARRAYID"\n')
    array_id = host.ok("qsub", "torque.sh").strip()
    assert host.wait_finished(array_id)["status"] == "Successful"
    out = [line for line in host.ok("qlog", array_id).splitlines() if "==>" not in line]
    assert out == ["index 2", "index 3"]
    assert (host.cwd / f"torque.o{array_id}-2").read_text() == "index 2\n"


@pytest.mark.e2e
def test_qlog_of_an_array_shows_each_task(host: LocalHost) -> None:
    host.script(
        "arr.sh", '#SBATCH -a 1-2\n#SBATCH -o /dev/null\necho "task $SLURM_ARRAY_TASK_ID"\n'
    )
    array_id = host.ok("qsub", "arr.sh").strip()
    host.wait_finished(array_id)
    out = host.ok("qlog", array_id).splitlines()
    assert [line for line in out if not line.startswith("==>")] == ["task 1", "task 2"]
    assert out[0].startswith("==> task 1 (job ")


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["qsub", "qstat", "qlog", "qdel", "qhold", "qrls"])
def test_every_command_has_a_version(host: LocalHost, command: str) -> None:
    assert host.ok(command, "--version").startswith(f"{command} (hyper) ")


@pytest.mark.e2e
def test_interrupting_wait_says_the_job_goes_on(host: LocalHost) -> None:
    host.script("long.sh", "sleep 30\n")
    process = subprocess.Popen(
        [str(BIN / "qsub"), "--wait", "long.sh"],
        cwd=host.cwd,
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches it as at a terminal, even when these tests run in the background
        # (where a shell leaves SIGINT ignored, and Python then never raises KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    job_id = process.stdout.readline().strip()
    host.wait_for(lambda: host.job(job_id)["status"] in ("Waiting", "Running"), 30)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert f"job {job_id} goes on" in err
    assert f"qdel {job_id}" in err
    host.ok("qdel", job_id)
    assert host.wait_finished(job_id)["status"] == "Cancelled"


@pytest.mark.parametrize("limit", ["UNLIMITED", "INFINITE", "unlimited"])
def test_a_slurm_time_limit_of_unlimited_is_none_of_the_jobs_own(
    tmp_path: Path, limit: str
) -> None:
    """sbatch(1), --time: "A time limit of ... "INFINITE" or "UNLIMITED" ... no limit"."""
    job = _job(tmp_path, f"#!/bin/bash\n#SBATCH -t {limit}\n#SBATCH -c 2\necho\n")
    assert "time_limit" not in job and job["resources"] == {"cpus": 2}


def test_a_slurm_memory_of_zero_asks_no_memory_of_its_own(tmp_path: Path) -> None:
    """sbatch(1), --mem: "a memory size specification of zero ... grants the job access
    to all of the memory on each node"."""
    job = _job(tmp_path, "#!/bin/bash\n#SBATCH --mem=0\n#SBATCH -c 2\necho\n")
    assert job["resources"] == {"cpus": 2}
    assert "resources" not in _job(tmp_path, "#!/bin/bash\n#SBATCH --mem=0G\necho\n")


def test_a_dialects_job_name_with_a_slash_runs_with_an_underscore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Snakemake's --job-name=smk-{rule}-{wildcards} holds its wildcards' paths: Slurm
    takes any name, hyper's go into file names; one warning line says the name it has."""
    job = _job(tmp_path, "#!/bin/sh\n#SBATCH -J smk-part-sample=batch1/s1\ntrue\n")
    assert job["name"] == "smk-part-sample=batch1_s1"
    assert capsys.readouterr().err == (
        "qsub: warning: job name 'smk-part-sample=batch1/s1' is 'smk-part-sample=batch1_s1'"
        " here (names go into file names, %x: no '/')\n"
    )
    with pytest.raises(UsageError, match="no '/'"):  # hyper's own lines keep hyper's rule
        _job(tmp_path, "#!/bin/sh\n#HYPER -n a/b\ntrue\n")


def test_torques_working_directory_leaves_relative_output_where_qsub_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qsub(1B): a relative -o is the directory qsub ran in, whatever -d says."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    job = _job(tmp_path, "#!/bin/bash\n#PBS -N n\n#PBS -d run\n#PBS -o logs/n.out\necho\n")
    assert job["submit_dir"] == str(tmp_path / "run")
    assert job["output"]["stdout"] == str(tmp_path / "logs" / "n.out")


@pytest.mark.parametrize(
    ("flags", "compat"),
    [(["-l", "ncpus=1"], ["pbs"]), (["-j", "oe"], ["pbs"]), (["-A", "acct"], ["pbs"]),
     ([], None), (["-j", "name"], None)],
)  # fmt: skip
def test_pbs_forms_on_the_command_line_make_a_pbs_job(
    tmp_path: Path, flags: list[str], compat: list[str] | None
) -> None:
    """Snakemake's PBS profiles pass -l and -j oe on a script with no #PBS line: the job
    finds PBS_JOBID, NCPUS... as a #PBS script's does; Cyclone's forms make none."""
    assert _job(tmp_path, "#!/bin/bash\necho\n", *flags).get("compat") == compat


@pytest.mark.parametrize(
    ("flags", "output"),
    [
        (["-l", "walltime=1:00:00"], {"stdout": "%x.o%j", "stderr": "%x.e%j", "join": False}),
        (["-j", "oe"], {"stdout": "%x.o%j", "stderr": None, "join": True}),
        (["-t", "1-3"], {"stdout": "%x.o%A-%a", "stderr": "%x.e%A-%a", "join": False}),
        (["-q", "sample-queue-1"], None),  # Cyclone's forms: hyper's job, its log only
    ],
)
def test_pbs_forms_on_the_command_line_write_pbss_output_files(
    tmp_path: Path, flags: list[str], output: dict | None
) -> None:
    """qsub(1B): "the default ... job_name.oSEQ"; myqueue and Snakemake's PBS profiles
    submit scripts without #PBS lines and read those files (none were written)."""
    assert _job(tmp_path, "#!/bin/bash\necho\n", *flags).get("output") == output


def test_a_byte_order_mark_before_the_shebang_is_removed_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script saved with a BOM: its shebang and directives are read (they were all
    silently skipped: a 1,000-task array ran as one job)."""
    script = tmp_path / "job.sh"
    script.write_bytes("\ufeff#!/bin/bash\n#SBATCH --array=0-999%16\necho\n".encode())
    job = build_job(build_parser().parse_args([str(script)]))
    assert job["array"] == {"spec": "0-999%16"} and job["script"].startswith("#!/bin/bash\n")
    assert "byte order mark (BOM) before its first line was removed" in capsys.readouterr().err
