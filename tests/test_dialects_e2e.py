"""The PBS, LSF and Slurm commands against a real local host, as tools type them."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import LocalHost
from tests.helpers.dialects import DEF, ok, sh, unfinished

pytestmark = pytest.mark.e2e


def test_lsf_commands(local: LocalHost) -> None:
    """bsub prints "Job <1234> is submitted to queue <normal>." (LSF's bsub reference);
    bjobs -o "jobid stat" and -json as LSF documents them; bkill, bpeek, bhist."""
    local.script("ok.sh", f"#!/bin/bash\n#BSUB -q sample-queue-1\n{DEF}echo out $LSB_JOBID\n")
    local.script("bad.sh", f"#!/bin/bash\n#BSUB -q sample-queue-1\n{DEF}exit 6\n")
    said = ok(local, "bsub < ok.sh")
    match = re.fullmatch(r"Job <([0-9]+)> is submitted to queue <sample-queue-1>\.\n", said)
    assert match, said
    good = match.group(1)
    # options on the command line win over the script's #BSUB lines; -K waits
    waited = sh(local, "bsub -K -J named -q sample-queue-1 -u a@b.c bad.sh")
    assert waited.code == 6, waited
    bad = re.findall(r"Job <([0-9]+)>", waited.out)[0]
    assert "-u a@b.c" in waited.err and "line 6" not in waited.err  # the option, not a line
    local.wait_finished(good)
    lines = ok(local, f"bjobs -noheader -o 'jobid stat exit_code' {good} {bad}").split("\n")
    assert [line.split() for line in lines if line] == [[good, "DONE"], [bad, "EXIT", "6"]]
    assert local.job(bad)["name"] == "named"
    document = json.loads(ok(local, f"bjobs -o 'JOBID STAT EXIT_REASON' -json -a {good}"))
    assert document["RECORDS"] == [{"JOBID": good, "STAT": "DONE", "EXIT_REASON": ""}]
    assert "Done successfully" in ok(local, f"bjobs -l {good}")
    unknown = sh(local, "bjobs 999999")
    assert (unknown.code, unknown.err) == (255, "Job <999999> is not found\n")
    # a running job: bpeek shows its output; bkill stops it; a second bkill is refused
    local.script("long.sh", f"#!/bin/bash\n#BSUB -q sample-queue-1\n{DEF}echo started\nsleep 60\n")
    long = re.findall(r"Job <([0-9]+)>", ok(local, "bsub long.sh"))[0]
    local.wait_for(lambda: "started" in sh(local, f"bpeek {long}").out, 60, "bpeek output")
    assert ok(local, f"bpeek {long}").startswith("<< output from stdout >>\nstarted\n")
    assert "RUN" in ok(local, "bjobs -noheader")
    assert ok(local, f"bkill {long}") == f"Job <{long}> is being terminated\n"
    local.wait_finished(long)
    again = sh(local, f"bkill {long}")
    assert again.code == 255 and "Job has already finished" in again.err
    assert ok(local, f"bjobs -noheader -o stat {long}").strip() == "EXIT"
    assert "Summary of time in seconds" in ok(local, f"bhist {good}")
    assert unfinished(local) == []


def test_slurm_commands(local: LocalHost) -> None:
    """sbatch prints "Submitted batch job N" (--parsable: "N"); squeue -h -o "%i %t";
    sacct -X -P -n -o JobID,State,ExitCode ("|" delimited without a "|" at the end);
    scancel; scontrol show job."""
    body = "echo got $1 $2 $SLURM_JOB_ID\nexit ${3:-0}\n"
    local.script("args.sh", f"#!/bin/bash\n#SBATCH -p sample-queue-1\n{DEF}{body}")
    first = ok(local, "sbatch args.sh 'a b' c")
    assert re.fullmatch(r"Submitted batch job [0-9]+\n", first)
    good = first.split()[-1]
    # warnings come before the id, so a tool reading both streams finds the id last
    merged = ok(local, "sbatch --parsable -J failing --mail-user=a@b.c args.sh x y 5 2>&1")
    assert merged.splitlines()[-1].isdigit() and "--mail-user=a@b.c" in merged
    bad = merged.splitlines()[-1]
    local.wait_finished(good)
    local.wait_finished(bad)
    assert "got a b c" in local.ok("qlog", good)
    rows = ok(local, f"sacct -X -n -P -o JobID,State,ExitCode,JobName -j {good},{bad}")
    assert rows == f"{good}|COMPLETED|0:0|args.sh\n{bad}|FAILED|5:0|failing\n"
    assert ok(local, f"sacct -X --noheader --format=jobid,state%20 --job '{bad}'").split() == [
        bad, "FAILED"]  # fmt: skip
    assert ok(local, f"squeue -h -t all -o '%i %t' -j {good},{bad}") == f"{good} CD\n{bad} F\n"
    # a waiting job, held: squeue sees it pending; scancel ends it
    held = ok(local, "sbatch --parsable -H args.sh").strip()
    assert ok(local, f"squeue -h -o '%i %t %r' -j {held}") == f"{held} PD JobHeldUser\n"
    assert held in ok(local, "squeue --me -h -o %i")
    # -p: one partition is asked of the host, several are filtered here; the same lines
    assert ok(local, "squeue -h -o %i -p sample-queue-1") == f"{held}\n"
    assert ok(local, "squeue -h -o %i -p elsewhere,sample-queue-1") == f"{held}\n"
    assert ok(local, "squeue -h -o %i --partition elsewhere") == ""
    listed = json.loads(ok(local, f"squeue --json -j {held}"))["jobs"]
    assert [(j["job_id"], j["job_state"]) for j in listed] == [(int(held), ["PENDING"])]
    shown = ok(local, f"scontrol show job {held}")
    assert shown.startswith(f"JobId={held} ") and "JobState=PENDING Reason=JobHeldUser" in shown
    ok(local, f"scancel {held}")
    local.wait_finished(held)
    assert ok(local, f"sacct -n -X -P -o State -j {held}") == "CANCELLED\n"
    refused = sh(local, f"scancel {held}")
    assert refused.code == 1 and "already completing or completed" in refused.err
    assert sh(local, f"scancel -Q {held}").code == 0
    assert unfinished(local) == []


def test_a_slurm_script_runs_its_steps_with_srun(local: LocalHost) -> None:
    """A Slurm script as written for a cluster: srun starts its steps, their tasks write
    per-task files, and a failing step fails the job with the step's exit code."""
    steps = (
        "srun hostname > host.txt\n"
        "srun -n 2 --output=rank-%t.txt bash -c 'echo $SLURM_PROCID of $SLURM_NTASKS'\n"
        "srun --ntasks=1 --cpus-per-task=1 bash -c 'exit 7'\n"
    )
    local.script("steps.sh", f"#!/bin/bash\n#SBATCH -p sample-queue-1\n{DEF}set -e\n{steps}")
    job = ok(local, "sbatch --parsable steps.sh").strip()
    assert local.wait_finished(job)["exit_code"] == 7
    assert (local.cwd / "host.txt").read_text().strip()
    for task in (0, 1):
        assert (local.cwd / f"rank-{task}.txt").read_text() == f"{task} of 2\n"
    assert ok(local, f"sacct -X -P -n -o State,ExitCode -j {job}") == "FAILED|7:0\n"


def test_pbs_forms(local: LocalHost) -> None:
    """qstat ID... (Torque's table), qstat -x -f -F json ID... (PBS Pro's shape), qdel with
    PBS ids; Cyclone's `qstat -f STATUS` and `qstat -i` keep working beside them."""
    local.script("ok.sh", f"#!/bin/bash\n#PBS -q sample-queue-1\n{DEF}echo hi\n")
    local.script("bad.sh", f"#!/bin/bash\n#PBS -q sample-queue-1\n{DEF}exit 9\n")
    good = local.ok("qsub", "ok.sh").strip()
    bad = local.ok("qsub", "bad.sh").strip()
    held = local.ok("qsub", "-h", "ok.sh").strip()
    local.wait_finished(good)
    local.wait_finished(bad)
    table = ok(local, f"qstat {good} {bad} {held}").splitlines()
    assert table[0].split()[:3] == ["Job", "ID", "Name"]
    assert [(row.split()[0], row.split()[4]) for row in table[2:]] == [
        (good, "F"), (bad, "F"), (held, "H")]  # fmt: skip
    document = json.loads(ok(local, f"qstat -x -f -F json {good} {bad} {held}"))
    found = {key: (v["job_state"], v.get("Exit_status")) for key, v in document["Jobs"].items()}
    assert found == {good: ("F", 0), bad: ("F", 9), held: ("H", None)}
    assert f"Job Id: {bad}\n" in ok(local, f"qstat -fx {bad}")
    missing = sh(local, "qstat 999999")
    assert missing.code == 153 and missing.err == "qstat: Unknown Job Id 999999\n"
    assert ok(local, "qstat -u nobody-here") == ""
    listed = ok(local, "qstat -u root,$(id -un)").splitlines()  # PBS's alternative format
    assert listed[1].split()[:3] == ["Job", "ID", "Username"] and set(listed[2]) == {"-", " "}
    assert [line.split()[0] for line in listed[3:]] == [held]
    # Cyclone's forms, unchanged
    cyclone = ok(local, "qstat -f Failed")
    assert cyclone.splitlines()[0].split()[:2] == ["ID", "NAME"] and f"\n{bad} " in cyclone
    fields = ok(local, f"qstat -i {good} -i {bad}")
    assert "exit_code        9" in fields and "'" not in fields and "{" not in fields
    ok(local, f"qdel {held}.server")
    local.wait_finished(held)
    assert json.loads(ok(local, f"qstat -x -f -F json {held}"))["Jobs"][held]["Exit_status"] == 265
    assert unfinished(local) == []


def test_lsf_dependency_on_a_job_name_waits_for_every_job_of_that_name(local: LocalHost) -> None:
    """bsub -w "done(NAME)" (hh-suite's database scripts chain their steps so): the job
    waits for every job of that name, an array as a whole; a name no job has is refused
    with one line, and nothing is submitted."""
    local.script("step.sh", f"#!/bin/bash\n#BSUB -q sample-queue-1\n{DEF}sleep 1\n")
    first = re.findall(r"Job <([0-9]+)>", ok(local, "bsub -J prepare step.sh"))[0]
    array = re.findall(r"Job <([0-9]+)>", ok(local, "bsub -J 'prepare[1-3]' step.sh"))[0]
    local.script(
        "after.sh",
        f'#!/bin/bash\n#BSUB -q sample-queue-1\n#BSUB -w "done(prepare)"\n{DEF}echo after\n',
    )
    after = re.findall(r"Job <([0-9]+)>", ok(local, "bsub < after.sh"))[0]
    depends = local.job(after)["options"]["depends"]
    assert sorted(depends) == sorted([f"afterok:{first}", f"afterok:{array}"])
    ended = local.wait_finished(after)
    assert ended["status"] == "Successful"
    listed = json.loads(local.ok("qstat", "--json", "--expand", "--limit", "0"))["jobs"]
    before_it = [j for j in listed if str(j["id"]) == first or str(j["array_id"]) == array]
    assert len(before_it) == 4
    assert all(j["ended"] <= ended["started"] for j in before_it)
    before = ok(local, "bjobs -a -noheader -o jobid")
    refused = sh(local, "bsub -w 'ended(no-such-step)' step.sh")
    assert refused.code != 0 and refused.out == ""
    assert refused.err == "bsub: dependency on the jobs named 'no-such-step': there is none\n"
    everything = sh(local, "bsub -w 'done(*)' step.sh")  # not every job on the host
    assert everything.err == "bsub: dependency on the jobs named '*': name some\n"
    assert ok(local, "bjobs -a -noheader -o jobid") == before


def test_a_scripts_working_directory_and_slurm_tasks_reach_the_job(local: LocalHost) -> None:
    """#SBATCH -D (rnaproject's salmon_index.sh) runs the job there, its relative -o
    too; --ntasks=2 gives the job SLURM_NTASKS=2 as Slurm does (srun starts that many);
    sbatch -D on the command line wins over the script's."""
    (local.cwd / "run-here").mkdir()
    (local.cwd / "or-here").mkdir()
    local.ok("hyper", "definitions", "add-definition", "--name", "two", "--vcpus", "2",
             "--memory-limit-mib", "1024", "--yes")  # fmt: skip
    body = "pwd\necho tasks=$SLURM_NTASKS per=$SLURM_CPUS_PER_TASK\nsrun echo step\n"
    local.script(
        "where.sh",
        f"#!/bin/bash\n#SBATCH -p sample-queue-1\n#SBATCH -D run-here\n#SBATCH --ntasks=2\n"
        f"#SBATCH -o out.txt\n#HYPER -d two\n{body}",
    )
    job = ok(local, "sbatch --parsable where.sh").strip()
    assert local.wait_finished(job)["status"] == "Successful"
    said = (local.cwd / "run-here" / "out.txt").read_text().splitlines()
    assert said[:2] == [str(local.cwd / "run-here"), "tasks=2 per=1"]
    assert sorted(said[2:]) == ["step", "step"]
    job = ok(local, "sbatch --parsable -D or-here where.sh").strip()
    assert local.wait_finished(job)["status"] == "Successful"
    assert (local.cwd / "or-here" / "out.txt").read_text().startswith(f"{local.cwd}/or-here\n")
    missing = sh(local, "sbatch -D no-such-dir where.sh")
    assert missing.code != 0 and len(missing.err.splitlines()) == 1
    assert "cannot use no-such-dir as the working directory" in missing.err


def test_what_workflow_tools_type_runs_as_each_scheduler_runs_it(local: LocalHost) -> None:
    """bsub "a; b" is a command line for the shell (LSF's form for one-line jobs); qsub -o
    logs/ on a script with no #PBS line writes job_name.oSEQ in that folder (Snakemake's
    PBS profiles); scancel of an array one task of which has ended cancels the rest with
    no error (submitit's cancel(check=True))."""
    said = ok(local, "bsub -q sample-queue-1 -o line.%J.out 'echo one; echo two'")
    line = re.findall(r"Job <([0-9]+)>", said)[0]
    assert local.wait_finished(line)["status"] == "Successful"
    assert (local.cwd / f"line.{line}.out").read_text().split() == ["one", "two"]
    (local.cwd / "logs").mkdir()
    local.script("plain.sh", "#!/bin/bash\necho plain\n")
    job = local.ok("qsub", "-q", "sample-queue-1", "-d", "sample-def-1", "-o", "logs/",
                   "-j", "oe", "plain.sh").strip()  # fmt: skip
    assert local.wait_finished(job)["status"] == "Successful"
    assert (local.cwd / "logs" / f"plain.sh.o{job}").read_text() == "plain\n"
    local.script(
        "tasks.sh",
        f"#!/bin/bash\n#SBATCH -p sample-queue-1\n{DEF}"
        '[ "$SLURM_ARRAY_TASK_ID" = 0 ] || sleep 60\n',
    )
    array = ok(local, "sbatch --parsable --array=0-2 tasks.sh").strip()
    local.wait_for(lambda: local.job(f"{array}[0]")["status"] == "Successful", 60, "task 0")
    cancel = sh(local, f"scancel {array}")
    assert (cancel.code, cancel.err) == (0, "")
    local.wait_finished(array)
    assert sh(local, f"scancel {array}_0").code != 0  # a task named on its own had ended


def test_a_slurm_dependency_on_one_task_of_an_array(local: LocalHost) -> None:
    """sbatch -d afterok:ARRAY_INDEX (Slurm's id of one task): the job waits for that
    task alone; a task the array does not have is refused with one line."""
    local.script(
        "tasks.sh",
        f"#!/bin/bash\n#SBATCH -p sample-queue-1\n{DEF}"
        '[ "$SLURM_ARRAY_TASK_ID" = 1 ] && sleep 1\ntrue\n',
    )
    array = ok(local, "sbatch --parsable --array=0-2 tasks.sh").strip()
    local.script("after.sh", f"#!/bin/bash\n#SBATCH -p sample-queue-1\n{DEF}echo after\n")
    after = ok(local, f"sbatch --parsable -d afterok:{array}_1 after.sh").strip()
    task = local.job(f"{array}[1]")
    assert local.job(after)["options"]["depends"] == [f"afterok:{task['id']}"]
    ended = local.wait_finished(after)
    assert ended["status"] == "Successful"
    assert local.job(f"{array}[1]")["ended"] <= ended["started"]
    missing = sh(local, f"sbatch -d afterok:{array}_7 after.sh")
    assert missing.code != 0
    assert missing.err == f"sbatch: dependency afterok:{array}_7: there is no such task\n"


def test_scontrol_shows_a_tasks_output_files_as_its_patterns_make_them(local: LocalHost) -> None:
    """scontrol show job: StdOut and StdErr as the task writes them, under its folder."""
    local.script("named.sh", f"#!/bin/bash\n#SBATCH -p sample-queue-1\n{DEF}true\n")
    array = ok(local, "sbatch --parsable --array=0-1 -o out-%A_%a.txt named.sh").strip()
    local.wait_finished(array)
    shown = ok(local, f"scontrol show job {array}_1")
    assert f"StdOut={local.cwd}/out-{array}_1.txt" in shown
    assert f"StdErr={local.cwd}/out-{array}_1.txt" in shown  # stderr joins stdout


def test_a_list_of_queues_is_the_first_of_them_the_host_has(local: LocalHost) -> None:
    """sbatch(1) -p: "If the job can use more than one partition, specify their names in a
    comma separate list"; bsub -q "queue_name ...": one of the queues. Stanford Sherlock's
    `#SBATCH --partition=hns,normal` was refused as one unknown queue."""
    local.script("listed.sh", f"#!/bin/bash\n#SBATCH --partition=hns,sample-queue-1\n{DEF}echo\n")
    ids = [
        ok(local, "sbatch --parsable listed.sh").strip(),
        ok(local, "sbatch --parsable -p nope,sample-queue-1 --wrap true").strip(),
        re.findall(r"Job <([0-9]+)>", ok(local, "bsub -q 'nope sample-queue-1' true"))[0],
    ]
    assert [local.job(i)["queue"] for i in ids] == ["sample-queue-1"] * 3
    refused = sh(local, "sbatch -p nope,none --wrap true")
    assert refused.code != 0 and refused.err.count("\n") == 1
    assert "unknown queue 'nope,none'" in refused.err
    for job_id in ids:
        local.wait_finished(job_id)


@pytest.mark.parametrize("umask", ["077", "027", "002"])
def test_a_job_runs_and_makes_its_files_with_the_umask_it_was_submitted_with(
    local: LocalHost, umask: str
) -> None:
    """sbatch records the submitting shell's umask (SLURM_UMASK) and the job runs with it;
    here jobs ran with the daemon's 022, and a user of umask 077 found their -o file and
    the job's own files readable by every other user."""
    local.script("files.sh", f"#!/bin/bash\n{DEF}umask\necho secret > made.txt\necho out\n")
    mode = 0o666 & ~int(umask, 8)
    for submit in ("qsub -o out-%j.txt files.sh", "sbatch --parsable -o out-%j.txt files.sh"):
        (local.cwd / "made.txt").unlink(missing_ok=True)
        job_id = ok(local, f"umask {umask}; {submit}").strip()
        assert local.wait_finished(job_id)["status"] == "Successful"
        assert local.ok("qlog", job_id) == f"0{umask}\nout\n"
        for made in (local.cwd / "made.txt", local.cwd / f"out-{job_id}.txt"):
            assert made.stat().st_mode & 0o777 == mode, (submit, made)


def test_sbatchs_own_options_in_a_scripts_lines_are_sbatchs(local: LocalHost) -> None:
    """sbatch(1): #SBATCH lines take "any of the CLI options"; simple_slurm writes every
    option there, `--parsable` among them, then reads the id alone (it was warned about
    and ignored, and the tool failed on "Submitted batch job N", its job orphaned)."""
    local.script("parsable.sh", f"#!/bin/bash\n#SBATCH --parsable\n#SBATCH -J p\n{DEF}exit 3\n")
    done = sh(local, "sbatch parsable.sh")
    assert done.code == 0 and done.err == "", done
    assert re.fullmatch(r"[0-9]+\n", done.out), done.out
    local.script("waits.sh", f"#!/bin/bash\n#SBATCH --pars\n#SBATCH --wait\n{DEF}exit 3\n")
    waited = sh(local, "sbatch waits.sh")  # abbreviated as getopt reads it; and -W
    assert waited.code == 3 and re.fullmatch(r"[0-9]+\n", waited.out), waited
    assert local.wait_finished(done.out.strip())["status"] == "Failed"
    assert sh(local, "qsub parsable.sh").err == ""  # qsub takes the lines as sbatch's


def test_bjobs_state_flags_add_their_jobs_up(local: LocalHost) -> None:
    """FireWorks' LSF adapter counts a queue's jobs with `bjobs -p -r`: the pending and the
    running ones (each flag filtered in turn, it counted none, and would submit on past
    the queue's limit)."""
    local.script("long.sh", f"#!/bin/bash\n{DEF}sleep 30\n")
    running = re.findall(r"Job <([0-9]+)>", ok(local, "bsub -q sample-queue-1 long.sh"))[0]
    held = re.findall(r"Job <([0-9]+)>", ok(local, "bsub -H -q sample-queue-1 long.sh"))[0]
    local.wait_for(lambda: local.job(running)["status"] == "Running", 60, "a running job")
    listed = ok(local, "bjobs -p -r -noheader -o 'jobid stat'").split("\n")
    assert sorted(line.split() for line in listed if line) == [[running, "RUN"], [held, "PSUSP"]]
    assert ok(local, "bjobs -r -noheader -o jobid").split() == [running]
    ok(local, f"bkill {running} {held}")


def test_a_slurm_arrays_tasks_find_the_arrays_lowest_highest_index_and_step(
    local: LocalHost,
) -> None:
    """sbatch(1), "Job Array Support": SLURM_ARRAY_TASK_MIN, _MAX, _STEP and _COUNT.
    Snakemake's Slurm executor runs the array's commands from the task whose index is
    _MIN: without it, every task of its arrays failed."""
    body = 'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_MIN $SLURM_ARRAY_TASK_MAX'
    body += ' ${SLURM_ARRAY_TASK_STEP-none} $SLURM_ARRAY_TASK_COUNT"\n'
    for spec, expected in (
        ("3-11:4", ["3 3 11 4 3", "7 3 11 4 3", "11 3 11 4 3"]),
        ("2,5,9", ["2 2 9 none 3", "5 2 9 none 3", "9 2 9 none 3"]),
    ):
        local.script("arr.sh", f"#!/bin/bash\n#SBATCH -a {spec}\n#SBATCH -o /dev/null\n{DEF}{body}")
        array_id = ok(local, "sbatch --parsable --wait arr.sh").strip()
        said = [line for line in local.ok("qlog", array_id).splitlines() if "==>" not in line]
        assert said == expected, spec


def test_squeue_reads_its_format_from_the_environment(local: LocalHost) -> None:
    """squeue(1), ENVIRONMENT VARIABLES: "SQUEUE_FORMAT Same as -o", "SQUEUE_FORMAT2 Same
    as -O"; an option given wins."""
    local.script("wait.sh", f"#!/bin/bash\n#SBATCH -t 5\n{DEF}sleep 30\n")
    job_id = ok(local, "sbatch --parsable wait.sh").strip()
    assert ok(local, "SQUEUE_FORMAT='%i|%L|%b' squeue -h").startswith(f"{job_id}|")
    assert ok(local, "SQUEUE_FORMAT2='JobID:10,Name' squeue -h").split() == [job_id, "wait.sh"]
    assert ok(local, "SQUEUE_FORMAT='%L' squeue -h -o %i").split() == [job_id]
    ok(local, f"scancel {job_id}")


def test_sacct_prints_nothing_for_a_step_hyper_has_no_record_of(local: LocalHost) -> None:
    """Snakemake's Slurm executor asks `sacct -j ID.0` to `ID.9` of a failed job, and read
    ten steps, each with the job's state; Slurm prints a step only where there is one. The
    batch step (ID.batch) is the job itself here."""
    local.script("fails.sh", f"#!/bin/bash\n{DEF}exit 3\n")
    job_id = sh(local, "sbatch --parsable --wait fails.sh").out.strip()
    fields = "-n -P -o JobID,State"
    assert ok(local, f"sacct -j {job_id}.0,{job_id}.9,{job_id}.extern {fields}") == ""
    assert ok(local, f"sacct -j {job_id}.batch {fields}").split() == [f"{job_id}|FAILED"]
    assert ok(local, f"sacct -j {job_id}.0,{job_id} {fields}").split() == [f"{job_id}|FAILED"]


def test_a_job_ended_at_its_time_limit_says_so_as_its_scheduler_would(local: LocalHost) -> None:
    """slurmstepd writes "*** JOB N ON NODE CANCELLED AT TIME DUE TO TIME LIMIT ***" into the
    job's stderr, which myqueue reads to tell a timeout (it showed such jobs as running
    for 30 more minutes); PBS writes "=>> PBS: job killed: walltime ... exceeded limit"."""
    local.script("slurm.sh", f"#!/bin/bash\n#SBATCH -t 0:02\n#SBATCH -o s-%j.out\n{DEF}sleep 30\n")
    job_id = sh(local, "sbatch --parsable --wait slurm.sh").out.strip()
    said = (local.cwd / f"s-{job_id}.out").read_text()
    assert re.fullmatch(
        rf"slurmstepd: error: \*\*\* JOB {job_id} ON \S+ CANCELLED AT "
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8} DUE TO TIME LIMIT \*\*\*\n",
        said,
    ), said
    assert local.ok("qlog", "-t", "STDERR", job_id) == said
    assert ok(local, f"sacct -j {job_id} -X -n -P -o State").strip() == "TIMEOUT"
    local.script("pbs.sh", f"#!/bin/bash\n#PBS -l walltime=00:00:02\n#PBS -N w\n{DEF}sleep 30\n")
    job_id = sh(local, "qsub --wait pbs.sh").out.strip()
    assert (local.cwd / f"w.e{job_id}").read_text().startswith("=>> PBS: job killed: walltime")


def test_a_slurm_singleton_runs_after_the_unfinished_jobs_of_its_name(local: LocalHost) -> None:
    """sbatch(1) -d singleton: "This job can begin execution after any previously launched
    jobs sharing the same job name and user have terminated" (it was refused). A chain
    of singletons runs one at a time; with none of its name unfinished, it waits for none."""
    local.script("one.sh", f"#!/bin/bash\n#SBATCH -J chain\n#SBATCH -d singleton\n{DEF}"
                 'echo "start $SLURM_JOB_ID $(date +%s.%N)" >> order.txt\nsleep 1\n'
                 'echo "end $SLURM_JOB_ID $(date +%s.%N)" >> order.txt\n')  # fmt: skip
    first = ok(local, "sbatch --parsable one.sh").strip()
    second = ok(local, "sbatch --parsable one.sh").strip()
    third = ok(local, "sbatch --parsable one.sh").strip()
    for job_id in (first, second, third):
        assert local.wait_finished(job_id)["status"] == "Successful"
    events = [line.split() for line in (local.cwd / "order.txt").read_text().splitlines()]
    assert [(what, job) for what, job, _ in events] == [
        ("start", first), ("end", first), ("start", second), ("end", second),
        ("start", third), ("end", third),
    ]  # fmt: skip


def test_qstat_u_shows_pbss_alternative_format(local: LocalHost) -> None:
    """qstat(1B): -u lists a user's jobs in the alternative format ("Job ID Username Queue
    Jobname SessID NDS TSK Memory Time S Time"); FireWorks' PBS adapter counts a queue's
    jobs from its heading's words (it failed with IndexError on the default table)."""
    local.script("w.sh", f"#!/bin/bash\n{DEF}sleep 30\n")
    running = ok(local, "qsub -q sample-queue-1 -N fw -l walltime=00:05:00 w.sh").strip()
    held = ok(local, "qsub -h -q sample-queue-1 -N fw w.sh").strip()
    local.wait_for(lambda: local.job(running)["status"] == "Running", 60, "a running job")
    user = ok(local, "id -un").strip()
    lines = ok(local, f"qstat -u {user}").splitlines()
    (heading,) = [line.split() for line in lines if line.lower().startswith("job")]
    state_at, queue_at = heading.index("S") - 1, heading.index("Queue") - 1  # "Job ID"
    rows = {row.split()[0]: row.split() for row in lines if row.split()[0] in (running, held)}
    assert [rows[running][state_at], rows[held][state_at]] == ["R", "H"]
    assert rows[running][queue_at] == "sample-queue-1"
    assert all(len(row) == len(heading) - 1 for row in rows.values())
    ok(local, f"qdel {running} {held}")
