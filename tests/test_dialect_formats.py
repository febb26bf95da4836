"""The PBS, LSF and Slurm formats as each scheduler documents them, on job records as the
host returns them: no host needed. Each test quotes the documented format it pins."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hyper.errors import UsageError
from qtools import dialect, pbs_formats, slurm_formats, states
from qtools.qstat import pbs_argv
from tests.conftest import BIN

NOW = 1_700_000_000.0


def job(status: str, **fields: Any) -> dict[str, Any]:
    """A job record shaped as GET /jobs returns it."""
    started = status not in ("Waiting", "Blocked", "Held")
    finished = status in ("Successful", "Failed", "Cancelled")
    record: dict[str, Any] = {
        "id": 12,
        "name": "my job",
        "queue": "batch",
        "definition": "d",
        "status": status,
        "retries": 0,
        "retries_left": 0,
        "attempt": 1 if started else 0,
        "exit_code": None,
        "reason": None,
        "created": NOW - 60,
        "started": NOW - 30 if started else None,
        "ended": NOW if finished else None,
        "submit_dir": "/home/ann",
        "env": {},
        "options": {},
        "array_id": None,
        "array_index": None,
        "priority": 0,
        "time_limit": None,
        "kind": "job",
        "worker_id": "w-1" if status == "Running" else None,
    }
    record.update(fields)
    return record


def test_one_table_of_states() -> None:
    """PBS Pro's job states ("Q Queued, H Held, R Running, F Finished"), LSF's stat
    ("PEND", "PSUSP", "RUN", "DONE", "EXIT") and Slurm's long and compact states
    ("PENDING (PD)", "RUNNING (R)", "COMPLETED (CD)", "FAILED (F)", "CANCELLED (CA)",
    "TIMEOUT (TO)", "OUT_OF_MEMORY (OOM)")."""
    said = {status: states.words(job(status)) for status in states.TABLE}
    assert {s: w.pbs for s, w in said.items()} == {
        "Waiting": "Q", "Blocked": "H", "Held": "H", "Running": "R",
        "Successful": "F", "Failed": "F", "Cancelled": "F",
    }  # fmt: skip
    assert {s: w.lsf for s, w in said.items()} == {
        "Waiting": "PEND", "Blocked": "PEND", "Held": "PSUSP", "Running": "RUN",
        "Successful": "DONE", "Failed": "EXIT", "Cancelled": "EXIT",
    }  # fmt: skip
    assert {s: (w.slurm, w.slurm_compact) for s, w in said.items()} == {
        "Waiting": ("PENDING", "PD"), "Blocked": ("PENDING", "PD"), "Held": ("PENDING", "PD"),
        "Running": ("RUNNING", "R"), "Successful": ("COMPLETED", "CD"),
        "Failed": ("FAILED", "F"), "Cancelled": ("CANCELLED", "CA"),
    }  # fmt: skip
    timed_out = job("Failed", exit_code=143, reason="time limit of 60 s reached")
    assert states.words(timed_out).slurm == "TIMEOUT"
    assert states.slurm_exit_code(timed_out) == "0:15"
    assert states.words(job("Failed", exit_code=1, reason="out of memory")).slurm_compact == "OOM"


def test_exit_codes_in_each_dialect() -> None:
    """Slurm's ExitCode: "The exit code returned by the job script ... Following the colon
    is the signal that caused the process to terminate if it was terminated by a signal."
    PBS's Exit_status: over 256 for a job killed by a signal (256 + the signal)."""
    failed = job("Failed", exit_code=3)
    assert (states.slurm_exit_code(failed), states.pbs_exit_status(failed)) == ("3:0", 3)
    assert states.lsf_exit_code(failed) == "3"
    ok = job("Successful", exit_code=0)
    assert (states.slurm_exit_code(ok), states.pbs_exit_status(ok), states.lsf_exit_code(ok)) == (
        "0:0", 0, "")  # fmt: skip
    cancelled = job("Cancelled", exit_code=143)
    assert states.slurm_exit_code(cancelled) == "0:15"
    assert states.pbs_exit_status(cancelled) == 265
    assert states.pbs_exit_status(job("Running")) is None
    lost = job("Failed", exit_code=None, reason="worker lost")
    assert states.slurm_exit_code(lost) == "1:0"


def test_pbs_pro_json() -> None:
    """PBS Pro's `qstat -f -F json`, as its design document shows it:
    {"timestamp":1479277336, "pbs_version":"14.1", "pbs_server":"vbox",
     "Jobs":{"1.vbox":{"Job_Name":"STDIN", "Job_Owner":"root@vbox", "job_state":"Q",
     "queue":"workq", ...}}}; a finished job has "Exit_status"."""
    jobs = [job("Waiting", id=1), job("Failed", id=2, exit_code=4, time_limit=3600)]
    document = json.loads(pbs_formats.full_json(jobs))
    assert {"timestamp", "pbs_version", "pbs_server", "Jobs"} <= set(document)
    first, second = document["Jobs"]["1"], document["Jobs"]["2"]
    assert (first["job_state"], first["queue"], first["Job_Name"]) == ("Q", "batch", "my job")
    assert "Exit_status" not in first
    assert (second["job_state"], second["Exit_status"]) == ("F", 4)
    assert second["Resource_List"]["walltime"] == "01:00:00"
    assert second["Job_Owner"].startswith(dialect.user() + "@")
    assert json.loads(pbs_formats.full_json([]))["Jobs"] == {}


def test_pbs_full_text_and_dsv() -> None:
    """`qstat -f`: "Job Id: 1.server" then indented "attribute = value" lines, resources
    as Resource_List.walltime; `-F dsv`: one line a job, fields joined by the delimiter."""
    text = pbs_formats.full_text([job("Running", time_limit=90)])
    lines = text.splitlines()
    assert lines[0] == "Job Id: 12"
    assert "    job_state = R" in lines
    assert "    Resource_List.walltime = 00:01:30" in lines
    assert text.endswith("\n\n")
    dsv = pbs_formats.full_dsv([job("Held")], delimiter=";")
    assert dsv.startswith("Job Id: 12;") and ";job_state=H;" in dsv and dsv.count("\n") == 1


def test_torque_table_reads_as_tools_read_it() -> None:
    """Torque's qstat: "the job id, the job name, the job owner, the cpu time used, the job
    state, the queue", under the titles `Job ID Name User Time Use S Queue`; Parsl reads
    the state as the fifth whitespace-separated word of each line."""
    out = pbs_formats.table([job("Running"), job("Successful", id=13, name="a very long job name")])
    lines = out.splitlines()
    assert lines[0].split() == ["Job", "ID", "Name", "User", "Time", "Use", "S", "Queue"]
    assert set(lines[1]) == {"-", " "}
    rows = [line.split() for line in lines[2:]]
    assert [(row[0], row[4], row[5]) for row in rows] == [
        ("12", "R", "batch"),
        ("13", "F", "batch"),
    ]
    assert rows[0][1] == "my_job" and len(rows[1][1]) == 16


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-f", "Running"], ["--filter-status=Running"]),  # Cyclone's filter
        (["-fFailed"], ["--filter-status=Failed"]),
        (["-f", "NotAState"], ["--filter-status=NotAState"]),  # refused later, as before
        (["-f"], ["--full"]),  # PBS's full output
        (["-f", "12"], ["--full", "12"]),
        (["-f", "-F", "json", "-x", "1"], ["--full", "-F", "json", "-x", "1"]),
        (["-fx", "3"], ["--full", "-x", "3"]),
        (["-xf", "-F", "json"], ["-x", "--full", "-F", "json"]),
        (["-q", "-f", "-f", "Held"], ["-q", "-f", "--filter-status=Held"]),  # a queue named -f
        (["--limit", "-1"], ["--limit", "-1"]),
    ],
)
def test_qstat_tells_cyclone_from_pbs(argv: list[str], expected: list[str]) -> None:
    assert pbs_argv(argv) == expected


def test_job_words_from_other_schedulers() -> None:
    """PBS: "sequence_number[.server_name][@server]"; PBS Pro subjobs `12[3]`; Slurm
    array tasks `12_3`."""
    assert dialect.job_word("12.server") == "12"
    assert dialect.job_word("12.pbs.example.org") == "12"
    assert dialect.job_word("12[3].server") == "12[3]"
    with pytest.raises(UsageError):
        dialect.job_word("12[]")  # `qdel 12[$I]` with I unset must not cancel a whole array
    assert dialect.job_word("12[3]") == "12[3]"
    assert dialect.job_word("12_3") == "12_3"
    with pytest.raises(UsageError):
        dialect.job_word("server.12")


def test_squeue_formats() -> None:
    """squeue -o: "%[[.]size]type ... The optional . (period) is used to right justify",
    the default "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"; "%i Job or job step id. In the
    case of job arrays, the job ID format will be of the form <base_job_id>_<index>";
    "%t Job state in compact form". -O: "Field[:[.][size]]", 20 characters by default."""
    jobs = [job("Running"), job("Waiting", id=14, array_id=13, array_index=2)]
    out = slurm_formats.render(slurm_formats.percent_format("%i %t"), jobs, header=False)
    assert out == "12 R\n13_2 PD\n"
    default = slurm_formats.render(
        slurm_formats.percent_format(slurm_formats.SQUEUE_DEFAULT), jobs, header=True
    )
    titles = default.splitlines()[0].split()
    assert titles == ["JOBID", "PARTITION", "NAME", "USER", "ST", "TIME", "NODES",
                      "NODELIST(REASON)"]  # fmt: skip
    assert default.splitlines()[2].endswith("(Priority)")
    assert default.splitlines()[1].startswith(" " * 16 + "12 ")
    long = slurm_formats.render(
        slurm_formats.long_format("JobArrayID,StateCompact,Reason"), jobs, header=True
    )
    assert [line.split() for line in long.splitlines()] == [
        ["JOBID", "ST", "REASON"], ["12", "R", "None"], ["13_2", "PD", "Priority"]]  # fmt: skip
    with pytest.raises(UsageError):
        slurm_formats.percent_format("%y")


def test_squeue_time_left_memory_and_gres_as_simple_slurm_asks_them() -> None:
    """simple_slurm's squeue wrapper asks "%i","%j","%t","%M","%L","%D","%C","%m","%b","%R":
    squeue(1) "%L Time left for the job to execute in days-hours:minutes:seconds ... or
    UNLIMITED", "%m Minimum size of memory (in MB) requested by the job", "%b Generic
    resources (gres) required by the job" (it was refused: invalid output format: %L)."""
    now = time.time()
    jobs = [
        job("Running", started=now - 65, time_limit=600, resources={"mem_mib": 512, "gpus": 1}),
        job("Waiting", id=14),
    ]
    spec = '"%i","%j","%t","%M","%L","%D","%C","%m","%b","%R"'
    out = slurm_formats.render(slurm_formats.percent_format(spec), jobs, header=True)
    lines = out.splitlines()
    assert lines[0] == (
        '"JOBID","NAME","ST","TIME","TIME_LEFT","NODES","CPUS","MIN_MEMORY","TRES_PER_NODE",'
        '"NODELIST(REASON)"'
    )
    assert lines[1].split(",")[4] in ('"8:55"', '"8:54"')
    assert lines[1].split(",")[7:9] == ['"512M"', '"gres/gpu:1"']
    assert lines[2].split(",")[4] == '"UNLIMITED"' and lines[2].split(",")[8] == '"N/A"'


def test_squeue_json() -> None:
    """squeue --json / sacct --json: {"jobs": [{"job_id": N, "job_state": ["RUNNING"],
    "exit_code": {"status": [...], "return_code": {"set": ..., "number": N}}, ...}]}."""
    document = slurm_formats.json_document([job("Failed", exit_code=2)], "sacct")
    (one,) = document["jobs"]
    assert (one["job_id"], one["job_state"], one["partition"]) == (12, ["FAILED"], "batch")
    assert one["exit_code"]["return_code"] == {"set": True, "infinite": False, "number": 2}
    assert document["errors"] == []


def test_slurm_state_names() -> None:
    """squeue -t: "a comma separated list of states ... in extended or compact form",
    "all" for every state."""
    assert states.slurm_states("PD,R") == {"Waiting", "Blocked", "Held", "Running"}
    assert states.slurm_states("completed") == {"Successful"}
    assert states.slurm_states("all") == set(states.TABLE)
    with pytest.raises(UsageError):
        states.slurm_states("SLEEPING")


def test_option_lines_go_after_the_script_s_own() -> None:
    """Command-line options win over the script's directives, as in LSF and Slurm: they
    are written after them, before the first command."""
    script = "#!/bin/bash\n#SBATCH -p a\n\n#SBATCH -J x\necho hi\n#SBATCH -p late\n"
    text, added = dialect.with_directives(script, ["#SBATCH -p b"])
    assert text.splitlines() == ["#!/bin/bash", "#SBATCH -p a", "", "#SBATCH -J x",
                                 "#SBATCH -p b", "echo hi", "#SBATCH -p late"]  # fmt: skip
    assert added == {5}
    with_args = dialect.with_arguments(script, ["a b", "c"], "sbatch")
    assert with_args.splitlines()[4] == "set -- 'a b' c"
    with pytest.raises(UsageError):
        dialect.with_arguments("#!/usr/bin/env python3\nprint(1)\n", ["x"], "sbatch")
    assert (
        dialect.said_as_option(
            "warning: line 5: #SBATCH -n 2 is not supported by hyper; ignored", "#SBATCH", {5}
        )
        == "warning: option -n 2 is not supported by hyper; ignored"
    )
    grouped = "warning: ignored (not supported): -c 2, -n 2 (line 2, 5)"
    assert dialect.said_as_option(grouped, "#SBATCH", {5}) == (
        "warning: ignored (not supported): -c 2, -n 2 (line 2; command line)"
    )
    # the script's own lines after the written ones are numbered as in the user's script
    assert dialect.said_as_option("line 8: #SBATCH -t x: bad", "#SBATCH", {5, 6}) == (
        "line 6: #SBATCH -t x: bad"
    )


def test_dialect_commands_live_in_folders_of_their_own(tmp_path: Path) -> None:
    """`hyper dialect-path` prints each dialect's folder; hyper's own bin holds none of
    LSF's or Slurm's commands, so a real LSF or Slurm on the machine is never shadowed."""
    from qtools.dialect_path import COMMANDS, folder

    env = {**os.environ, "HYPER_HOME": str(tmp_path)}
    done = subprocess.run([str(BIN / "hyper"), "dialect-path", "slurm"], capture_output=True,
                          text=True, env=env, check=True)  # fmt: skip
    assert Path(done.stdout.strip()) == tmp_path / "data" / "dialects" / "slurm"
    for name, commands in COMMANDS.items():
        made = folder(name, tmp_path / "data" / "dialects")
        assert sorted(p.name for p in made.iterdir()) == sorted(commands)
        if name != "pbs":
            assert not any((BIN / command).exists() for command in commands)
    with pytest.raises(UsageError):
        folder("sge", tmp_path)
