"""qsub as other schedulers' users type it: PBS's command-line forms where they share a
letter with Cyclone's, a script's dialect request with the command line's -l over it part
by part, the output files and variables each scheduler gives its jobs."""

from __future__ import annotations

import itertools
import os
import re

from hyper import jobspec
from qtools.directives import JobOptions, names_a_directory, options_from, without_servers
from qtools.script_text import SHELLS, before_first_command, shell_of, without_host

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a submit's start 3 ms
if TYPE_CHECKING:
    from argparse import Namespace

    from qtools.directives import Translation

# Torque's qsub -t array_request: indexes, ranges, a %slot limit (qsub(1), Torque 6)
TORQUE_ARRAY = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*(%[0-9]+)?")
# a -d that is Torque's working directory, not a definition: a path (qsub(1B) -d path)
TORQUE_DIRECTORY = re.compile(r"/|^\.{1,2}$")
# a -t array that Slurm's time format would read as days-hours (1-12)
DAYS_HOURS = re.compile(r"[0-9]+-([01]?[0-9]|2[0-3])")
# a -t that is also a time: minutes (qsub's other times all have a colon)
TIME_WITHOUT_COLON = re.compile(r"[0-9]+")


def dialect_request(resources: JobOptions, foreign: Translation | None) -> JobOptions:
    """The options of the script's other schedulers' lines, with the command line's PBS
    resources (-l) over them part by part: `-l pmem=256mb` takes the place of the
    script's pmem, `-l ncpus=2` gives its pmem to two CPUs (qsub(1B): the command line
    overrides the script's directives)."""
    if foreign is None:
        parts, schedulers = resources, []
    else:
        parts, schedulers = resources.merged_over(foreign.parts), foreign.schedulers
    if resources.cpus is not None:  # PBS's ncpus are all the job's: no tasks to count
        parts = parts._replace(tasks=None, tasks_per_node=None, cpus_per_gpu=None)
    if not parts.has_parts():
        return parts
    from qtools.foreign import combine

    return combine(parts, slots="lsf" in schedulers)


def pbs_forms(
    args: Namespace, ignored: list[str], *, torque: bool = False
) -> tuple[JobOptions, JobOptions]:
    """The options of the command line, reading PBS's forms where they share a letter with
    Cyclone's: -j oe|eo|n joins the output (any other value is the job name); -p N is a
    priority (any other value is --params JSON); -r y|n says rerunnable (a number is
    retries); -W depend=... is a dependency (other attributes are ignored); -l walltime=
    is the time limit; -d PATH (a '/' in it, or . or ..) is Torque's working directory;
    -t is Torque's array where its value is no time of qsub's (1-100,
    1,3, 0-9%2: a time has a colon, or is minutes) or the script is a Torque array
    (`torque`: its #PBS -t), the time limit otherwise. What hyper does not use is added
    to `ignored`, as written. The command line's options, and apart from them those its
    -l resources give."""
    limit = args.time_limit
    args.torque_array = bool(
        limit is not None
        and args.array is None
        and TORQUE_ARRAY.fullmatch(limit)
        and (torque or not TIME_WITHOUT_COLON.fullmatch(limit))
    )
    args.notes = []
    if args.torque_array:
        args.array, args.time_limit = limit, None
        if DAYS_HOURS.fullmatch(limit):  # what the same -t meant before: say it
            args.notes.append(
                f"note: -t {limit} is Torque's array of tasks {limit}; a time limit of days"
                f" and hours is -t {limit}:00"
            )
    j = getattr(args, "j", None)
    join = join_into_error = None
    if j in ("oe", "eo", "n"):
        join, join_into_error = j != "n", j == "eo"
    elif j is not None and args.name is None:
        args.name = j
    params = getattr(args, "params", None)
    if params is not None and re.fullmatch(r"\s*[+-]?[0-9]+\s*", params):
        args.params = None
        args.priority = params.strip()
    if args.retries in ("y", "n"):
        args.retries = "1" if args.retries == "y" else "0"
    depends = []
    for spec in args.depends:
        if "=" in spec and not spec.startswith("depend="):
            ignored.append(f"-W {spec}")
        else:
            depends.append(without_servers(spec))
    args.depends = depends
    resources = getattr(args, "resources", [])
    from_l = JobOptions()
    if resources:
        from qtools.foreign import pbs_resources  # only for PBS's -l

        for value in resources:
            from_l, others = pbs_resources(from_l, value)
            ignored += [f"-l {item}" for item in others]
    for flag, dest in (("-A", "account"), ("-m", "mail_events"), ("-M", "mail_users")):
        if getattr(args, dest, None) is not None:
            ignored.append(f"{flag} {getattr(args, dest)}")
    shell = getattr(args, "shell", None)
    if shell is not None and shell.rsplit("/", 1)[-1] not in SHELLS:
        ignored.append(f"-S {shell}")
    args.env = [pair for value in args.env for pair in split_variables(value)]
    for dest in ("stdout", "stderr"):
        if getattr(args, dest) is not None:
            setattr(args, dest, without_host(getattr(args, dest)))
    options = options_from(args, "")
    if join is not None:
        options = options._replace(join=join, join_into_error=join_into_error)
    if options.definition is not None and TORQUE_DIRECTORY.search(options.definition):
        # Torque's -d: where the job runs (myqueue passes its folder); no definition's name
        # has a '/' or is '.'
        options = options._replace(definition=None, workdir=options.definition)
    return options, from_l


def split_variables(value: str) -> list[str]:
    """PBS's -v takes a comma-separated list (`A=1,B,C=x`); a comma that is not followed
    by a variable name stays in the value (`-v X=a,b`: X is `a,b`)."""
    return [part for part in re.split(r",(?=[A-Za-z_][A-Za-z0-9_]*(?:=|,|$))", value) if part]


def pbs_command_line(args: Namespace) -> bool:
    """Whether qsub's command line has a form only PBS's qsub has (-l, -j oe, -A, -m, -M,
    -S, Torque's -t array): the job is a PBS job, and finds PBS_JOBID, NCPUS... as a #PBS
    script's does."""
    forms = (args.resources, args.account, args.mail_events, args.mail_users, args.shell)
    torque = getattr(args, "torque_array", False)
    return any(forms) or torque or getattr(args, "j", None) in ("oe", "eo", "n")


def output_paths(
    options: JobOptions, compat: list[str], array: bool, submit_dir: str, *, torque: bool
) -> JobOptions:
    """The -o and -e files where the job's scheduler (`compat`: its script's, or PBS's
    where only the command line has PBS's forms) puts them (qtools.foreign; `torque`: a
    Torque array); and qsub's -o naming a folder as PBS reads it."""
    if compat:
        from qtools.foreign import output_files

        options = output_files(compat[0], options, array=array, torque=torque)
        if compat[0] == "pbs" and submit_dir != os.getcwd():  # Torque's -d: qsub(1B)'s
            options = options._replace(  # relative -o and -e are where qsub ran
                stdout=options.stdout and os.path.join(os.getcwd(), options.stdout),
                stderr=options.stderr and os.path.join(os.getcwd(), options.stderr),
            )
    elif any(path and names_a_directory(path) for path in (options.stdout, options.stderr)):
        from qtools.foreign import pbs_directories  # qsub -o logs/, as PBS reads it

        options = pbs_directories(options, array=array)
    return options


def with_dialect_variables(
    text: str, foreign: Translation | None, options: JobOptions, *, torque: bool
) -> str:
    """A shell script given what its scheduler would set beside the worker's variables:
    Torque's PBS_ARRAYID (of a Torque array: `torque`), and Slurm's task count (the worker
    counts CPUs, one task's worth: srun and MPI read the tasks from these), before its
    first command."""
    if shell_of(text) is None:
        return text
    if torque:  # the worker sets PBS Pro's PBS_ARRAY_INDEX
        text = before_first_command(
            text, 'export PBS_ARRAYID="$PBS_ARRAY_INDEX"  # Torque\'s name for the task index'
        )
    tasks = foreign.slurm_tasks if foreign is not None else None
    if tasks and tasks > 1:
        per_task = max(1, int(options.cpus or tasks) // tasks)
        text = before_first_command(
            text,
            f"export SLURM_NTASKS={tasks} SLURM_NPROCS={tasks} SLURM_CPUS_PER_TASK={per_task}"
            "  # the job's Slurm tasks",
        )
    return text


def slurm_array_variables(spec: str) -> dict[str, str]:
    """What every task of a Slurm array finds of the array as a whole (sbatch(1), "Job
    Array Support"): its lowest and highest index, and its step where the indices have
    one (Snakemake's Slurm executor runs the array's commands from the task whose index
    is the lowest)."""
    indices = jobspec.parse_array(spec).indices
    found = {
        "SLURM_ARRAY_TASK_MIN": str(min(indices)),
        "SLURM_ARRAY_TASK_MAX": str(max(indices)),
    }
    steps = {b - a for a, b in itertools.pairwise(indices)}
    if len(steps) <= 1:
        found["SLURM_ARRAY_TASK_STEP"] = str(steps.pop() if steps else 1)
    return found
