"""Scripts written for Slurm, PBS and LSF: what their directive lines become in hyper,
what is warned about, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyper import jobspec
from hyper.errors import UsageError
from qtools.directives import JobOptions, Translation
from qtools.foreign import translate


def _only(text: str) -> JobOptions:
    """The options of a script that must translate without any warning."""
    result = translate(text)
    assert result.warnings == []
    return result.options


# ---- Slurm -------------------------------------------------------------------------

SLURM_SCRIPT = """\
#!/bin/bash
#SBATCH -J sim
#SBATCH -p short
#SBATCH -a 1-100%10
#SBATCH -d afterok:1:2,afterany:3
#SBATCH -t 1:00:00
#SBATCH --export=ALL,X=1
#SBATCH -o logs/%x_%A_%a.out
#SBATCH -e logs/%x_%A_%a.err
#SBATCH --requeue
#SBATCH -H

srun ./simulate --task "$SLURM_ARRAY_TASK_ID"
"""


def test_slurm_script() -> None:
    result = translate(SLURM_SCRIPT)
    assert result.warnings == []
    assert result.schedulers == ["slurm"]
    assert result.options == JobOptions(
        name="sim",
        queue="short",
        retries=1,
        array="1-100%10",
        depends=("afterok:1:2,afterany:3",),
        time_limit="1:00:00",
        env=("X=1",),
        export_all=True,
        stdout="logs/%x_%A_%a.out",
        stderr="logs/%x_%A_%a.err",
        hold=True,
    )


def test_slurm_values_are_ones_hyper_reads() -> None:
    options = translate(SLURM_SCRIPT).options
    assert options.array and jobspec.parse_array(options.array).cap == 10
    assert options.time_limit and jobspec.parse_time_limit(options.time_limit) == 3600
    assert [(d.kind, d.target) for d in jobspec.parse_dependencies(options.depends[0])] == [
        ("afterok", 1),
        ("afterok", 2),
        ("afterany", 3),
    ]


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("-J sim", "name", "sim"),
        ("-Jsim", "name", "sim"),
        ("--job-name=sim", "name", "sim"),
        ("--job-name sim", "name", "sim"),
        ("--job-name='my sim'", "name", "my sim"),
        ('-J "my sim"', "name", "my sim"),
        ("-p gpu", "queue", "gpu"),
        ("--partition=gpu", "queue", "gpu"),
        ("-a 0-100:5%4", "array", "0-100:5%4"),
        ("--array=1,3,5-9", "array", "1,3,5-9"),
        ("-t 90", "time_limit", "90"),
        ("--time=1-2:00:00", "time_limit", "1-2:00:00"),
        ("-t60", "time_limit", "60"),
        ("-o out.%j", "stdout", "out.%j"),
        ("--output=out.%j", "stdout", "out.%j"),
        ("-e err.%j", "stderr", "err.%j"),
        ("--error=err.%j", "stderr", "err.%j"),
        ("--requeue", "retries", 1),
        ("--no-requeue", "retries", 0),
        ("-H", "hold", True),
        ("--hold", "hold", True),
    ],
)
def test_slurm_options(line: str, field: str, value: object) -> None:
    options = _only(f"#!/bin/bash\n#SBATCH {line}\nrun\n")
    assert getattr(options, field) == value


@pytest.mark.parametrize(
    ("value", "export_all", "env"),
    [
        ("ALL", True, ()),
        ("all", True, ()),
        ("NONE", False, ()),
        ("ALL,X=1", True, ("X=1",)),
        ("X=1,Y", False, ("X=1", "Y")),
        ("NONE,X=1", False, ("X=1",)),
        ("X=1,,Y", False, ("X=1", "Y")),
    ],
)
def test_slurm_export(value: str, export_all: bool, env: tuple[str, ...]) -> None:
    options = _only(f"#SBATCH --export={value}\n")
    assert (options.export_all, options.env) == (export_all, env)


@pytest.mark.parametrize(
    ("lines", "asks"),
    [
        # altrove-ai/toy-example-gpu, 4process_4gpu.sh: 4 tasks of a GPU each, 4 CPUs a GPU
        (["--nodes=1", "--ntasks=4", "--gpus-per-task=1", "--cpus-per-gpu=4", "--mem=32G"],
         ("16", "32768M", "4")),
        # AMReX on Perlmutter's GPU nodes: --tasks-per-node is sbatch's --ntasks-per-node
        (["--nodes=1", "--tasks-per-node=4", "--cpus-per-task=16", "--gpus-per-task=1"],
         ("64", None, "4")),
        (["--tasks-per-node=8", "--cpus-per-task=16"], ("128", None, None)),
        (["--gpus=2", "--mem-per-gpu=10G"], (None, "20480M", "2")),
        (["--gpus-per-task=a100:2"], (None, None, "2")),  # one task unless told
        (["--gpus=2", "--cpus-per-gpu=8", "--mem-per-cpu=1G"], ("16", "16384M", "2")),
        (["--gpus=4", "--gpus-per-task=1"], ("4", None, "4")),  # sbatch(1): four tasks
        (["--ntasks=2", "--ntasks-per-node=4"], ("2", None, None)),  # per node: a most
        (["--mem=4G", "--mem=0"], (None, None, None)),  # the last line (the command line)
        (["--mem-per-cpu=2G", "-c 2", "--mem=0"], ("2", None, None)),
    ],
)  # fmt: skip
def test_slurm_per_task_and_per_gpu_requests_multiply_out(
    lines: list[str], asks: tuple[str | None, str | None, str | None]
) -> None:
    """sbatch(1): --gpus-per-task "requires the --ntasks option" (the GPUs are per task),
    --cpus-per-gpu and --mem-per-gpu are per allocated GPU."""
    options = _only("#!/bin/bash\n" + "".join(f"#SBATCH {line}\n" for line in lines) + "run\n")
    assert (options.cpus, options.mem, options.gpus) == asks


def test_slurm_task_count_is_kept_for_the_jobs_environment() -> None:
    result = translate("#SBATCH --ntasks=4 -c 2\n")
    assert (result.slurm_tasks, result.options.cpus) == (4, "8")
    assert translate("#SBATCH --gpus=4 --gpus-per-task=1\n").slurm_tasks == 4
    assert translate("#SBATCH --ntasks=2 --ntasks-per-node=4\n").slurm_tasks == 2
    assert translate("#SBATCH -c 2\n").slurm_tasks is None
    assert translate("#PBS -l ncpus=2\n").slurm_tasks is None


def test_working_directory_lines_take_a_directory_here(tmp_path: Path) -> None:
    """rnaproject's salmon_index.sh (#SBATCH -D), Sanger's workshop scripts (#BSUB -cwd),
    Torque's #PBS -d: where the job runs. A path this machine does not have is named in
    the warning (Slurm and LSF would run the job in /tmp): the job runs where submitted."""
    for line in (f"#SBATCH -D {tmp_path}", f"#SBATCH --chdir={tmp_path}",
                 f"#BSUB -cwd {tmp_path}", f"#PBS -d {tmp_path}"):  # fmt: skip
        assert _only(f"{line}\n").workdir == str(tmp_path)
    missing = tmp_path / "elsewhere"
    result = translate(f"#!/bin/bash\n#BSUB -cwd {missing}\nrun\n")
    assert result.options.workdir is None
    assert result.warnings == [
        f"ignored (not supported): -cwd {missing} (no such directory here) (line 2)"
    ]


def test_a_slurm_dependency_on_a_task_is_found_by_the_host() -> None:
    """afterok:12_4 is Slurm's id of task 4 of array 12: kept for the host to find."""
    options = _only("#SBATCH -d afterok:12_4:13,afterany:14_0\n")
    assert options.depends == ("afterok:13",)
    assert options.task_depends == ("afterok:12_4", "afterany:14_0")


def test_slurm_dependencies_on_several_lines_add_up() -> None:
    options = _only("#SBATCH -d afterok:1\n#SBATCH --dependency=afternotok:2\n")
    assert options.depends == ("afterok:1", "afternotok:2")


def test_slurm_later_line_wins() -> None:
    assert _only("#SBATCH -J a\n#SBATCH --job-name=b\n").name == "b"


@pytest.mark.parametrize(
    ("lines", "warnings"),
    [
        (["--exclusive"], [(2, "--exclusive")]),
        (["--mem=4G", "-N 1", "--exclusive"], [(4, "--exclusive")]),
        (["-N 1 --exclusive -p q"], [(2, "--exclusive")]),
    ],
)
def test_slurm_unsupported_options_each_warn_once(lines: list[str], warnings: list[str]) -> None:
    text = "#!/bin/bash\n" + "".join(f"#SBATCH {line}\n" for line in lines) + "run\n"
    result = translate(text)
    assert result.ignored == warnings


def test_slurm_unsupported_options_do_not_hide_the_supported_ones() -> None:
    result = translate("#SBATCH -N 1 --exclusive -p q --mem=4G -J n\n")
    assert (result.options.queue, result.options.name, result.options.mem) == ("q", "n", "4096M")
    assert result.warnings == ["ignored (not supported): --exclusive (line 1)"]


@pytest.mark.parametrize("line", ["-N 2", "-N2", "--nodes=2", "--nodes=2-4"])
def test_slurm_more_than_one_node_is_refused_with_one_line(line: str) -> None:
    with pytest.raises(UsageError) as caught:
        translate(f"#!/bin/bash\n#SBATCH {line}\nrun\n")
    assert str(caught.value).startswith("line 2: #SBATCH ")
    assert "hyper runs each job on one machine" in str(caught.value)


def test_slurm_singleton_is_kept_for_the_host_to_find_the_jobs_of_its_name() -> None:
    text = "#!/bin/bash\n#SBATCH -J chain\n#SBATCH --dependency=afterok:7,singleton\nrun\n"
    options = translate(text).options
    assert (options.singleton, options.depends) == (True, ("afterok:7",))


@pytest.mark.parametrize("value", ["afterburstbuffer:3", "afterok:1+60"])
def test_slurm_dependencies_hyper_cannot_keep_are_refused_with_the_line(value: str) -> None:
    text = f"#!/bin/bash\n#SBATCH -J x\n#SBATCH --dependency={value}\nrun\n"
    with pytest.raises(UsageError) as caught:
        translate(text)
    message = str(caught.value)
    assert message.startswith("line 3: #SBATCH ")
    assert repr(value) in message
    assert "hyper takes afterok, afterany, afternotok, aftercorr" in message


# what Slurm 22.05's sbatch --test-only made of each line (one processor per task):
# getopt_long takes any prefix that only one of sbatch's long options has
@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("--tasks=2", "cpus", "2"),  # --tasks-per-node
        ("--tasks 2", "cpus", "2"),
        ("--ntasks-per-n=2", "cpus", "2"),
        ("--job=x", "name", "x"),
        ("--part=short", "queue", "short"),
        ("--requ", "retries", 1),
        ("--mem=2G", "mem", "2048M"),  # whole: never --mem-per-cpu
        ("--gpus-per-t=1", "gpus", "1"),
    ],
)
def test_slurm_long_options_may_be_abbreviated_as_sbatch_reads_them(
    line: str, field: str, value: object
) -> None:
    options = _only(f"#!/bin/bash\n#SBATCH {line}\nrun\n")
    assert getattr(options, field) == value


@pytest.mark.parametrize(
    ("line", "possibilities"),
    [
        ("--mem-per=1G", "--mem-per-cpu --mem-per-gpu"),
        ("--cpus=4", "--cpus-per-gpu --cpus-per-task"),
        ("--tim=10", "--time --time-min"),
    ],
)
def test_slurm_ambiguous_abbreviation_is_refused_as_sbatch_refuses_it(
    line: str, possibilities: str
) -> None:
    with pytest.raises(UsageError) as raised:
        translate(f"#!/bin/bash\n#SBATCH {line}\nrun\n")
    option = line.partition("=")[0]
    expected = f"line 2: #SBATCH option '{option}' is ambiguous; possibilities: {possibilities}"
    assert str(raised.value) == expected


def test_slurm_abbreviated_option_hyper_does_not_take_is_warned_as_written() -> None:
    result = translate("#!/bin/bash\n#SBATCH --mail-u=a@b.c\nrun\n")
    assert result.warnings == ["ignored (not supported): --mail-u=a@b.c (line 2)"]


def test_slurm_option_without_its_value_is_not_silently_dropped() -> None:
    try:
        result = translate("#!/bin/bash\n#SBATCH -t\nrun\n")
    except UsageError:
        return
    assert result.warnings


# ---- PBS ---------------------------------------------------------------------------

PBS_SCRIPT = """\
#!/bin/bash
#PBS -N assemble
#PBS -q workq
#PBS -J 1-100:2%10
#PBS -W depend=afterok:123.server:124
#PBS -l walltime=01:00:00
#PBS -v A=1,B=2
#PBS -o run.out
#PBS -e run.err
#PBS -j oe
#PBS -r y
#PBS -h
#PBS -p 5

cd "$PBS_O_WORKDIR"
./assemble "$PBS_ARRAY_INDEX"
"""


def test_pbs_script() -> None:
    result = translate(PBS_SCRIPT)
    assert result.warnings == []
    assert result.schedulers == ["pbs"]
    assert result.options == JobOptions(
        name="assemble",
        queue="workq",
        retries=1,
        array="1-100:2%10",
        depends=("depend=afterok:123:124",),
        time_limit="1:00:00",
        env=("A=1", "B=2"),
        export_all=False,  # PBS's default: the submitting shell's environment is not passed
        stdout="run.out",
        stderr="run.err",
        join=True,
        hold=True,
        priority=5,
        join_into_error=False,
    )


def test_pbs_values_are_ones_hyper_reads() -> None:
    options = translate(PBS_SCRIPT).options
    assert options.array is not None
    array = jobspec.parse_array(options.array)
    assert (len(array.indices), list(array.indices[:3]), array.indices[-1], array.cap) == (
        50,
        [1, 3, 5],
        99,
        10,
    )
    assert [(d.kind, d.target) for d in jobspec.parse_dependencies(options.depends[0])] == [
        ("afterok", 123),
        ("afterok", 124),
    ]
    assert options.time_limit and jobspec.parse_time_limit(options.time_limit) == 3600


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("-N job", "name", "job"),
        ("-q long", "queue", "long"),
        ("-J 0-9", "array", "0-9"),
        ("-V", "export_all", True),
        ("-v A=1", "env", ("A=1",)),
        ("-v A=1,B=2", "env", ("A=1", "B=2")),
        ("-v 'A=1, B'", "env", ("A=1", "B")),
        ("-o o.txt", "stdout", "o.txt"),
        ("-e e.txt", "stderr", "e.txt"),
        ("-j oe", "join", True),
        ("-j eo", "join", True),
        ("-j n", "join", False),
        ("-r y", "retries", 1),
        ("-r n", "retries", 0),
        ("-h", "hold", True),
        ("-p 5", "priority", 5),
        ("-l walltime=2:00:00", "time_limit", "2:00:00"),
        ("-W depend=afterany:7.pbs-server.example.org", "depends", ("depend=afterany:7",)),
        (
            "-W depend=afterok:123.server:124.server,afternotok:125.s2",
            "depends",
            ("depend=afterok:123:124,afternotok:125",),
        ),
    ],
)
def test_pbs_options(line: str, field: str, value: object) -> None:
    options = translate(f"#!/bin/bash\n#PBS {line}\nrun\n").options
    assert getattr(options, field) == value


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [
        ("3600", 3600),  # azurehpc's run_opm.sh: one hour, where Slurm would read 60 hours
        ("600", 600),
        ("90:00", 5400),
        ("1:00:00", 3600),
        ("48:00:00", 172800),
        ("0:00:30.5", 31),
    ],
)
def test_pbs_walltime_is_hours_minutes_seconds_and_a_bare_number_is_seconds(
    walltime: str, seconds: int
) -> None:
    """qsub(1B): walltime is a duration, [[hours:]minutes:]seconds[.milliseconds]."""
    options = _only(f"#!/bin/bash\n#PBS -l walltime={walltime}\nrun\n")
    assert options.time_limit is not None
    assert jobspec.parse_time_limit(options.time_limit) == seconds


def test_pbs_walltime_that_is_not_a_duration_is_refused_with_the_line() -> None:
    with pytest.raises(UsageError, match=r"^line 2: #PBS .*walltime=1h: use \[\[HH:\]MM:\]SS$"):
        translate("#!/bin/bash\n#PBS -l walltime=1h\nrun\n")


def test_pbs_pro_array_index_in_output_paths_is_each_tasks_index() -> None:
    """raghavst/fluid, FEMNIST/client_array.pbs: -J 0-7, -o output_^array_index^.txt."""
    options = _only("#PBS -J 0-7\n#PBS -o output_^array_index^.txt\n#PBS -e e^array_index^\n")
    assert (options.stdout, options.stderr) == ("output_%a.txt", "e%a")


def test_pbs_walltime_and_the_select_chunk_are_both_taken() -> None:
    result = translate("#!/bin/bash\n#PBS -l select=1:ncpus=4,walltime=2:00:00\nrun\n")
    assert (result.options.time_limit, result.options.cpus) == ("2:00:00", "4")
    assert result.ignored == []


def test_pbs_resources_hyper_does_not_have_are_warned_beside_walltime() -> None:
    result = translate("#!/bin/bash\n#PBS -l software=abaqus,walltime=2:00:00\nrun\n")
    assert result.options.time_limit == "2:00:00"
    assert result.ignored == [(2, "-l software=abaqus")]


def test_pbs_walltime_on_its_own_line_beside_other_resources() -> None:
    result = translate("#PBS -l select=1:ncpus=4\n#PBS -l walltime=2:00:00\n")
    assert (result.options.time_limit, result.options.cpus) == ("2:00:00", "4")
    assert result.ignored == []


def test_pbs_negative_priority() -> None:
    assert translate("#PBS -p -3\n").options.priority == -3


def test_pbs_nodes_and_memory_are_taken() -> None:
    result = translate("#PBS -l nodes=1:ppn=4,mem=4gb\n")
    assert (result.options.cpus, result.options.mem) == ("4", "4096M")
    assert result.ignored == []


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        ("-M me@example.org", "#PBS -M me@example.org"),
        ("-m abe", "#PBS -m abe"),
        ("-W group_list=lab", "#PBS -W group_list=lab"),
        ("-A project", "#PBS -A project"),
    ],
)
def test_pbs_unsupported_options_warn(line: str, warning: str) -> None:
    result = translate(f"#!/bin/sh\n#PBS -N n\n#PBS {line}\nrun\n")
    assert result.options.name == "n"
    assert result.ignored == [(3, warning.removeprefix("#PBS "))]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-j x", "line 2: #PBS -j 'x': use oe, eo or n"),
        ("-r maybe", "line 2: #PBS -r 'maybe': use y or n"),
        ("-p high", "line 2: #PBS -p high: not a number"),
    ],
)
def test_pbs_bad_values_are_refused_with_the_line(line: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        translate(f"#!/bin/sh\n#PBS {line}\nrun\n")
    assert str(caught.value).startswith(message)


def test_pbs_export_of_the_environment_is_off_unless_asked() -> None:
    assert translate("#PBS -N x\n").options.export_all is False
    assert translate("#PBS -N x\n#PBS -V\n").options.export_all is True


# ---- LSF ---------------------------------------------------------------------------

LSF_SCRIPT = """\
#!/bin/bash
#BSUB -J "render[1-100:2]%10"
#BSUB -q normal
#BSUB -w 'done(1) && ended(2) && exit(3)'
#BSUB -W 1:30
#BSUB -o out.%J.%I
#BSUB -e err.%J.%I
#BSUB -r
#BSUB -H
#BSUB -env "all, A=1"
#BSUB -sp 20

./render "$LSB_JOBINDEX"
"""


def test_lsf_script() -> None:
    result = translate(LSF_SCRIPT)
    assert result.warnings == []
    assert result.schedulers == ["lsf"]
    assert result.options == JobOptions(
        name="render",
        queue="normal",
        retries=1,
        array="1-100:2%10",
        depends=("afterok:1", "afterany:2", "afternotok:3"),
        time_limit="1:30:00",
        env=("A=1",),
        export_all=True,
        stdout="out.%A.%a",
        stderr="err.%A.%a",
        hold=True,
        priority=20,
    )


@pytest.mark.parametrize(
    ("value", "seconds"), [("90", 5400), ("1:30", 5400), ("0:05", 300), ("2:00", 7200)]
)
def test_lsf_run_limit_is_hours_and_minutes(value: str, seconds: int) -> None:
    options = _only(f"#BSUB -W {value}\n")
    assert options.time_limit is not None
    assert jobspec.parse_time_limit(options.time_limit) == seconds


@pytest.mark.parametrize(
    ("value", "name", "array"),
    [
        ("plain", "plain", None),
        ("render[1-100:2]%10", "render", "1-100:2%10"),
        ("render[1-5]", "render", "1-5"),
        ("r[1,3,5-9]", "r", "1,3,5-9"),
        ("[1-3]", None, "1-3"),
        ("odd[name", "odd[name", None),
    ],
)
def test_lsf_job_name_may_carry_an_array(value: str, name: str | None, array: str | None) -> None:
    options = _only(f"#BSUB -J '{value}'\n")
    assert (options.name, options.array) == (name, array)


@pytest.mark.parametrize(
    ("value", "depends"),
    [
        ("done(1)", ("afterok:1",)),
        ("ended(2)", ("afterany:2",)),
        ("exit(3)", ("afternotok:3",)),
        ("done(1)&&done( 2 )", ("afterok:1", "afterok:2")),
        ("done(1) && ended(2) && exit(3)", ("afterok:1", "afterany:2", "afternotok:3")),
    ],
)
def test_lsf_dependency_conditions(value: str, depends: tuple[str, ...]) -> None:
    assert _only(f"#BSUB -w '{value}'\n").depends == depends


def test_lsf_slots_on_more_hosts_than_one_are_refused() -> None:
    """soedinglab/uniclust-pipeline's run_main.sh: -n 160 with span[ptile=16] is ten
    hosts; -n 16 with span[ptile=16] (or fewer slots) is one."""
    with pytest.raises(UsageError, match="asks for 10 nodes; hyper runs each job on one"):
        translate('#BSUB -n 160\n#BSUB -R "span[ptile=16]"\n')
    for slots in (16, 4):
        assert _only(f'#BSUB -R "span[ptile=16]"\n#BSUB -n {slots}\n').cpus == str(slots)


@pytest.mark.parametrize(
    ("lines", "gpus"),
    [
        (["-n 4", '-gpu "num=1/task:mode=shared"'], "4"),  # bsub -gpu: "/task" is per task
        (['-gpu "num=2/task"', "-n 3"], "6"),
        (["-n 4", '-gpu "num=2/host"'], "2"),
        (["-n 4", '-gpu "num=2"'], "2"),  # "By default, the number is per host"
        (['-gpu "num=1/task"'], "1"),
    ],
)
def test_lsf_gpus_per_task_are_times_the_slots(lines: list[str], gpus: str) -> None:
    assert _only("".join(f"#BSUB {line}\n" for line in lines)).gpus == gpus


@pytest.mark.parametrize(
    ("value", "named"),
    [
        # hh-suite's cif70_hhblits (soedinglab): #BSUB -w "done(cif70_prepare_input)"
        ('"done(cif70_prepare_input)"', ("afterok:cif70_prepare_input",)),
        # bsub: "Use double quotes (") around job names that begin with a number"
        ("'ended(\"3dprep\") && done(12)'", ("afterany:3dprep",)),
        ("'exit(prep*)'", ("afternotok:prep*",)),
    ],
)
def test_lsf_dependency_on_a_job_name_is_kept_by_name(value: str, named: tuple[str, ...]) -> None:
    options = _only(f"#BSUB -w {value}\n")
    assert options.named_depends == named
    assert options.depends == (("afterok:12",) if "12" in value else ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("done(1) || done(2)", "hyper takes conditions joined by && only"),
        ("!done(1)", "hyper takes conditions joined by && only"),
        ("started(1)", "use done(ID), ended(ID) or exit(ID), joined by &&"),
        ("done()", "use done(ID), ended(ID) or exit(ID)"),
        ("done(1) && 2", "use done(ID), ended(ID) or exit(ID)"),
        ("done(1) done(2)", "use done(ID), ended(ID) or exit(ID)"),
    ],
)
def test_lsf_dependency_conditions_refused(value: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        translate(f"#!/bin/bash\n#BSUB -w '{value}'\nrun\n")
    assert str(caught.value).startswith(f"line 2: #BSUB -w {value!r}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize("value", ["1.5", "1:30:00", "abc", "10/hostA"])
def test_lsf_bad_run_limit_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match=r"line 1: #BSUB -W '.*': use \[HH:\]MM"):
        translate(f"#BSUB -W {value}\n")


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("-oo o.%J", "stdout", "o.%A"),
        ("-eo e.%J_%I", "stderr", "e.%A_%a"),
        ("-env none", "export_all", False),
        ("-env 'all'", "env", ()),
        ("-env 'A=1,B=2'", "env", ("A=1", "B=2")),
    ],
)
def test_lsf_options(line: str, field: str, value: object) -> None:
    assert getattr(_only(f"#BSUB {line}\n"), field) == value


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        ("-R 'select[type==X86_64]'", "#BSUB -R select[type==X86_64]"),
        ("-B", "#BSUB -B"),
    ],
)
def test_lsf_unsupported_options_warn(line: str, warning: str) -> None:
    result = translate(f"#!/bin/bash\n#BSUB {line}\nrun\n")
    assert result.ignored == [(2, warning.removeprefix("#BSUB "))]


def test_lsf_never_rerunnable_is_not_read_as_rerunnable() -> None:
    result = translate("#!/bin/bash\n#BSUB -rn\nrun\n")
    assert result.options.retries in (None, 0)


# ---- all schedulers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "export_all"),
    [
        ("#SBATCH -J x\n", True),
        ("#BSUB -J x\n", True),
        ("#PBS -N x\n", False),
        ("#SBATCH --export=NONE\n", False),
        ("#SBATCH --export=NONE,X=1\n", False),
        ("#BSUB -env none\n", False),
        ("#PBS -V\n", True),
        ("#!/bin/sh\necho no directives\n", None),
        ("#HYPER -q q\n", None),
        ("#SBATCH\n", True),  # an empty directive still marks a Slurm script
        ("#PBS -N x\n#SBATCH -J y\n", False),  # the first scheduler's default
        ("#SBATCH -J y\n#PBS -N x\n", True),
    ],
)
def test_environment_export_default(text: str, export_all: bool | None) -> None:
    assert translate(text).options.export_all is export_all


def test_no_foreign_directives() -> None:
    assert translate("#!/bin/bash\n#HYPER -q q\n# SBATCH -J x\necho\n") == Translation()


def test_directives_after_the_first_command_are_ignored() -> None:
    text = "#!/bin/bash\n#SBATCH -J early\n\n# comment\necho go\n#SBATCH -J late\n#PBS -q x\n"
    result = translate(text)
    assert result.options.name == "early"
    assert result.options.queue is None
    assert result.schedulers == ["slurm"]


def test_prefix_must_stand_alone_and_start_the_line() -> None:
    text = "#SBATCHX -J a\n #SBATCH -J b\n"  # an indented #SBATCH is a comment to sbatch
    result = translate(text)
    assert (result.options, result.schedulers) == (JobOptions(), [])
    assert result.ignored == [(2, "indented #SBATCH (a comment to its scheduler)")]


def test_crlf_and_trailing_spaces() -> None:
    result = translate("#!/bin/bash\r\n#SBATCH -J n  \r\n#SBATCH -p q\t\r\necho\r\n")
    assert (result.options.name, result.options.queue, result.warnings) == ("n", "q", [])


def test_unreadable_quoting_is_refused_with_the_line() -> None:
    with pytest.raises(UsageError, match="line 2: cannot read #SBATCH directive"):
        translate("#!/bin/bash\n#SBATCH -J 'open\n")


def test_schedulers_listed_once_each_in_order_of_appearance() -> None:
    text = (
        "#!/bin/bash\n#BSUB -q a\n#SBATCH -J b\n#BSUB -n 1\n#PBS -N c\n#SBATCH -p d\n#PBS -V\nrun\n"
    )
    result = translate(text)
    assert result.schedulers == ["lsf", "slurm", "pbs"]
    assert (result.options.name, result.options.queue) == ("c", "d")  # later lines win
    assert (result.ignored, result.options.cpus) == ([], "1")


def test_a_bare_word_is_warned_about() -> None:
    result = translate("#SBATCH stray\n")
    assert result.ignored == [(1, "stray")]


def test_an_indented_sbatch_line_is_a_comment_and_said_so() -> None:
    """sbatch reads "#SBATCH" at the start of a line; PBS's qsub(1B) reads a directive
    from "the first non white space character on the line"."""
    slurm = translate("#!/bin/bash\n    #SBATCH --job-name=x\n#SBATCH -t 5\necho\n")
    assert (slurm.options.name, slurm.options.time_limit) == (None, "5")
    assert slurm.warnings == [
        "ignored (not supported): indented #SBATCH (a comment to its scheduler) (line 2)"
    ]
    pbs = translate("#!/bin/bash\n    #PBS -N x\necho\n")
    assert (pbs.options.name, pbs.warnings) == ("x", [])


def test_a_script_for_several_schedulers_is_read_as_the_commands_own_reads_it() -> None:
    """NCAR's goesbufr submit.csh carries a #PBS header and a #BSUB one: qsub(1B) reads
    only #PBS lines (the others are comments to it), bsub only #BSUB ones."""
    text = ("#!/bin/csh\n#PBS -N test\n#PBS -l select=1:ncpus=36\n#PBS -l walltime=00:10:00\n"
            '#BSUB -J hybrid\n#BSUB -n 128\n#BSUB -R "span[ptile=16]"\n#BSUB -W 0:15\n'
            "echo\n")  # fmt: skip
    pbs = translate(text, prefer="pbs")
    assert (pbs.options.name, pbs.options.cpus, pbs.schedulers) == ("test", "36", ["pbs"])
    assert pbs.warnings == []
    lsf = translate(text.replace('#BSUB -R "span[ptile=16]"\n', ""), prefer="lsf")
    assert (lsf.options.name, lsf.options.cpus, lsf.schedulers) == ("hybrid", "128", ["lsf"])
    slurm = translate("#SBATCH -J s\n#PBS -N p\n", prefer="slurm")
    assert slurm.options.name == "s"
    assert translate("#SBATCH -J s\n", prefer="pbs").options.name == "s"  # the only ones


@pytest.mark.parametrize("word", ["hetjob", "packjob"])
def test_a_slurm_heterogeneous_job_is_refused_with_its_line(word: str) -> None:
    """A het job's components are allocations of their own (several nodes)."""
    text = f"#!/bin/bash\n#SBATCH -n 68\n#SBATCH {word}\n#SBATCH -n 2\nsrun a : b\n"
    with pytest.raises(UsageError, match=f"^line 3: #SBATCH {word}: a heterogeneous job"):
        translate(text)


def test_lsf_nodes_and_gpus_in_rusage_are_taken() -> None:
    """Summit's #BSUB -nnodes 2000 is 2,000 nodes; rusage[ngpus_excl_p=1] is a GPU."""
    with pytest.raises(UsageError, match="asks for 2000 nodes"):
        translate("#BSUB -nnodes 2000\n")
    assert _only("#BSUB -nnodes 1\n").cpus is None
    options = _only('#BSUB -n 6\n#BSUB -R "rusage[mem=2048, ngpus_excl_p=1]"\n')
    assert (options.cpus, options.mem, options.gpus) == ("6", "2048M", "1")


def test_slurm_tasks_per_gpu_are_times_the_gpus() -> None:
    """sbatch(1), --ntasks-per-gpu: "ntasks tasks invoked for every GPU"."""
    result = translate("#SBATCH --gpus-per-node=4 --ntasks-per-gpu=1 -c 32\n")
    assert (result.options.cpus, result.options.gpus, result.slurm_tasks) == ("128", "4", 4)
