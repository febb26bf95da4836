"""qsub: submit a job script, an array of tasks, or a list of work items.

    qsub [options] [FILE|- [ARG ...]]

Options on the command line override ``#HYPER`` lines, which override
``#SBATCH``/``#PBS``/``#BSUB`` lines. Words after FILE are the script's arguments
(``$1``...), as sbatch passes them; ``--`` ends the options. Without FILE the script is
read from stdin (``qsub < job.sh``), as PBS's qsub does. Only the job id goes to stdout,
so ``id=$(qsub job.sh)`` works; notes and warnings go to stderr, before the id is printed.

PBS Pro / Torque options are taken beside Cyclone's: ``-N -l -A -m -M -S -j oe|eo|n -J
-W -V -v -o -e -h -p -r``. Where a PBS option and a Cyclone one share a letter, the value
tells them apart (see ``pbs_forms``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import time

from hyper import jobspec
from hyper.errors import UsageError, is_utf8, one_line
from hyper.jobs import SECRET_VARIABLES, UMASK_VARIABLE, wait_exit_code
from qtools.command_line import REMAINDER
from qtools.common import (
    ArgumentParser,
    add_host_option,
    as_pathlib_reads,
    connect,
    file_name,
    read_script_bytes,
    run,
)
from qtools.directives import (
    JobOptions,
    Translation,
    add_job_options,
    leading_block,
    parse_directives,
)
from qtools.qsub_forms import (
    dialect_request,
    output_paths,
    pbs_command_line,
    pbs_forms,
    slurm_array_variables,
    with_dialect_variables,
)
from qtools.script_text import before_first_command, program_of, shell_of

UNLIMITED = ("UNLIMITED", "INFINITE")  # time limits that are none (sbatch(1), --time)
# the jobs a dependency by name may mean: LSF forgets a finished job after its CLEAN_PERIOD
NAMED_DEPENDENCY_SECONDS = 3600
TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a submit's start 3 ms
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

    from hyper.client import HostClient

WAIT_POLL_SECONDS = 20.0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="qsub", description="Submit a job script to a hyper queue.", add_help=False
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="the job script, or - for stdin (the default)"
    )
    parser.add_argument(
        "script_args",
        nargs=REMAINDER,
        metavar="ARG",
        help="arguments for the script ($1...), as sbatch passes them",
    )
    add_job_options(parser)
    add = parser.add_argument
    add(
        "-c",
        "--commands",
        metavar="COMMANDS",
        help="run these commands instead of the script's body (directives kept)",
    )
    add(
        "-p",
        "--params",
        metavar="JSON",
        help='literal text replacements applied to the script first, e.g. \'{"X": "1"}\';'
        " a whole number is PBS's -p PRIORITY",
    )
    add(
        "-l",
        dest="resources",
        action="append",
        default=[],
        metavar="RESOURCES",
        help="PBS resources: walltime=HH:MM:SS, select=1:ncpus=N:mem=SIZE:ngpus=N,"
        " nodes=1:ppn=N, ncpus=N, mem=SIZE (bytes unless a unit is given), ngpus=N",
    )
    add("-A", dest="account", metavar="ACCOUNT", help="PBS account (accepted, not used)")
    add("-m", dest="mail_events", metavar="EVENTS", help="PBS mail events (accepted, not used)")
    add("-M", dest="mail_users", metavar="USERS", help="PBS mail users (accepted, not used)")
    add("-S", dest="shell", metavar="SHELL", help="PBS shell: sh, bash... (the shebang rules)")
    add(
        "--workitems",
        metavar="ITEMS",
        help="one task per work item: 01-16 (a range) or a,b,c (as given)",
    )
    add("--workitem-file", metavar="FILE", help="work items one a line, - for stdin")
    add("--prefix", default="", help="put before every work item (e.g. Dam001/Period)")
    add("--padding", type=int, default=3, help="zero-fill numeric work items to this width")
    add(
        "--directives",
        choices=("hyper", "all", "none"),
        default="all",
        help="which directive lines to read: #HYPER only, also #SBATCH/#PBS/#BSUB (default), none",
    )
    add("--dry-run", action="store_true", help="print what would be submitted; submit nothing")
    add(
        "--wait",
        action="store_true",
        help="wait for the job (every task of an array) to end; exit with its exit code",
    )
    add_host_option(parser)
    return parser


def read_script(file: str | None, notes: list[str], given: bytes | None = None) -> tuple[str, str]:
    """The script's text and the default job name; what the user should know goes to `notes`.
    `given`: the script's bytes when the caller has them (a dialect's command), taken as
    the file `file` names would be."""
    if file is None:
        return "", "wrap"
    if given is not None:
        data, name = given, file_name(file)
    elif file == "-":
        data = sys.stdin.buffer.read()
        name = "stdin"
    else:
        data = read_script_bytes(file)
        name = file_name(file)
    check_size(len(data), source(file))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source(file)} is not a text script (invalid UTF-8)") from None
    if "\x00" in text:
        raise UsageError(f"{source(file)} is not a text script (it has NUL bytes)")
    if "\r\n" in text:
        # a script saved on Windows would fail in bash at its first line ending
        text = text.replace("\r\n", "\n")
        notes.append("the script's DOS line endings (CRLF) were converted to LF")
    if text.startswith("\ufeff"):  # an editor's mark: it hid the shebang and every directive
        text = text[1:]
        notes.append("the script's byte order mark (BOM) before its first line was removed")
    return text, name


def source(file: str | None) -> str:
    """How messages name where the script came from."""
    return "stdin" if file == "-" else "-c COMMANDS" if file is None else file


def check_size(size: int, where: str) -> None:
    """Refuse a script over MAX_SCRIPT_BYTES (4 MiB, Slurm's default max_script_size)."""
    if size > jobspec.MAX_SCRIPT_BYTES:
        mib = size / 2**20
        amount = f"{mib:.1f} MiB" if round(mib, 1) > 4 else f"{size:,} bytes"
        raise UsageError(f"{where} is {amount}; scripts are limited to 4 MiB")


def apply_params(text: str, params: str) -> str:
    try:
        replacements = json.loads(params)
    except ValueError as exc:
        raise UsageError(f"-p/--params is not valid JSON: {exc}") from None
    if not isinstance(replacements, dict) or not all(
        k and isinstance(v, str) for k, v in replacements.items()
    ):
        raise UsageError(
            '-p/--params must be a JSON object of text replacements (strings), e.g. {"X": "1"}'
        )
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def replace_body(text: str, commands: str) -> str:
    lines = text.splitlines()
    block = leading_block(text)
    kept = (
        lines[: block[-1][0]] if block else lines[:1] if lines and lines[0].startswith("#!") else []
    )
    return "\n".join([*kept, commands]) + "\n"


def script_options(
    text: str, directives: str, dialect: str = "pbs"
) -> tuple[JobOptions, Translation | None]:
    """The options a script's #HYPER lines give, and the translation of its other
    schedulers' lines (None when it has none, or they are not read): of a script written
    for several, the lines of the command's own `dialect` (qsub's is PBS's)."""
    if directives == "none":
        return JobOptions(), None
    own = parse_directives(text)
    if directives == "hyper":
        return own, None
    if not any(prefix in text for prefix in ("#SBATCH", "#PBS", "#BSUB")):
        return own, None
    from qtools.foreign import translate  # only for scripts written for another scheduler

    return own, translate(text, prefer=dialect)


def job_name(name: str, foreign: Translation | None, said: list[str]) -> str:
    """The job's name, checked. Slurm, PBS and LSF take any name (Snakemake's hold its
    wildcards' paths); hyper's go into file names (%x): a '/' of theirs is a '_', said."""
    if foreign is not None and foreign.schedulers and "/" in name:
        said.append(f"warning: job name {name!r} is {name.replace('/', '_')!r} here (names go into"
                    " file names, %x: no '/')")  # fmt: skip
        name = name.replace("/", "_")
    return jobspec.check_job_name(name)


def working_directory(path: str) -> str:
    """A job's working directory as given (relative to this one), made absolute; one
    that is not a directory here is refused."""
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    except OSError as exc:
        raise UsageError(
            f"cannot use {one_line(path)} as the working directory: {exc.strerror}"
        ) from None
    return os.path.abspath(path)


def with_arguments(text: str, arguments: list[str], where: str) -> str:
    """The script, with its arguments set before its first command (`set -- ARG...`), so
    that `$1`... are what `qsub FILE ARG...` was given, as sbatch does."""
    if shell_of(text) is None:
        raise UsageError(
            f"{where} runs {program_of(text) or 'an unknown program'}: script arguments are"
            " given to shell scripts only (sh, bash, ksh, zsh); use -v NAME=VALUE"
        )
    import shlex  # only for script arguments

    words = " ".join(shlex.quote(a) for a in arguments)
    return before_first_command(text, f"set -- {words}  # qsub's script arguments")


def environment(options: JobOptions, notes: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    if options.export_all:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        # a job's variables are text with plain names: exported bash functions
        # (BASH_FUNC_f%%) and values that are not UTF-8 stay behind, said once
        left = [k for k, v in env.items() if not (jobspec.ENV_NAME.fullmatch(k) and is_utf8(v))]
        for name in left:
            del env[name]
        if left:
            names = ", ".join(one_line(name) for name in sorted(left))
            notes.append(f"warning: -V: not passed (not a plain name, or not UTF-8): {names}")
    for item in options.env:
        if "=" in item:
            name, value = jobspec.parse_env_pair(item)
        else:  # NAME alone: its value in the submitting shell, as Slurm's --export=NAME
            name = jobspec.check_env_name(item)
            if name not in os.environ:
                raise UsageError(f"-v {name}: no such variable in this shell; use NAME=VALUE")
            value = os.environ[name]
        env[name] = value
    return env


def shell_umask() -> str:
    """This shell's umask, in octal: the job runs and makes its files with it (as sbatch
    records SLURM_UMASK and slurmd applies it)."""
    umask = os.umask(0o077)  # a umask is read only by setting one: then it is put back
    os.umask(umask)
    return f"{umask:04o}"


def array_body(options: JobOptions, args: Namespace) -> dict[str, Any] | None:
    items = None
    if args.workitems is not None:
        items = jobspec.expand_work_items(args.workitems, args.prefix, args.padding)
    if args.workitem_file is not None:
        if items is not None:
            raise UsageError("give --workitems or --workitem-file, not both")
        lines = read_lines(args.workitem_file, "--workitem-file")
        items = [f"{args.prefix}{line}" for _, line in lines]
        if not items:
            raise UsageError("--workitem-file has no work items")
    if items is not None:
        if options.array:
            raise UsageError("give -a/--array or work items, not both")
        tasks = [
            {
                "name": jobspec.check_job_name(item.replace("/", "_"), "work item"),
                "env": {"HYPER_WORK_ITEM": item, "WORK_ITEM": item},
            }
            for item in items
        ]
        return {"tasks": tasks}
    if options.array is None:
        return None
    if os.path.isfile(as_pathlib_reads(options.array)):  # the original tool's array file
        tasks = []
        for number, line in read_lines(options.array, "-a"):
            try:
                replacements = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{options.array} line {number}: not JSON: {exc}") from None
            if not isinstance(replacements, dict) or "" in replacements:
                raise UsageError(
                    f"{options.array} line {number}: use a JSON object of replacements"
                )
            tasks.append({"replacements": {k: str(v) for k, v in replacements.items()}})
        if not tasks:
            raise UsageError(f"array file {options.array} has no lines")
        return {"tasks": tasks}
    jobspec.parse_array(options.array)  # refuse a bad spec before anything is sent
    return {"spec": options.array}


def read_lines(source: str, flag: str) -> list[tuple[int, str]]:
    """The non-blank lines of a file (or stdin), stripped, with their line numbers."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(as_pathlib_reads(source)) as file:
                text = file.read()
    except OSError as exc:
        raise UsageError(f"{flag} {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {source}: not a text file") from None
    numbered = enumerate(text.splitlines(), start=1)
    return [(number, line.strip()) for number, line in numbered if line.strip()]


def build_job(
    args: Namespace,
    notes: list[str] | None = None,
    *,
    script: bytes | None = None,
    workdir: str | None = None,
) -> dict[str, Any]:
    """The job to submit. Its queue and definition are None when nothing named them:
    `complete_target` fills them from the host's defaults. Notes for the user (CRLF
    converted, one warning naming what hyper ignores) are written once the job is built,
    or added to `notes` for the caller to write before the job id: a refused job gets one
    line, its error. `script`: the script's bytes, when the caller has them rather than
    the file `args.file` names (which still names it in messages and gives its name).
    `workdir`: where the job runs, as a command line said it (over the script's)."""
    file = args.file
    if file is None and args.commands is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("give a script FILE, - or a pipe for stdin (qsub < job.sh), or -c")
        file = "-"  # PBS's qsub reads the script from stdin when no file is named
    if file == "-" and args.workitem_file == "-":
        raise UsageError("the script and the work items cannot both come from stdin")
    said: list[str] = []
    text, default_name = read_script(file, said, script)
    if args.params is not None and not re.fullmatch(r"\s*[+-]?[0-9]+\s*", args.params):
        text = apply_params(text, args.params)
    if args.commands is not None:
        text = replace_body(text, args.commands)
    check_size(len(text.encode()), source(file))
    if not text.strip():
        raise UsageError(f"{source(file)} is empty: nothing to run")
    own, foreign = script_options(text, args.directives, getattr(args, "dialect", "pbs"))
    ignored: list[str] = []
    torque = bool(foreign and foreign.torque_array)
    line, from_l = pbs_forms(args, ignored, torque=torque)
    options = line.merged_over(own.merged_over(dialect_request(from_l, foreign)))
    torque = torque or args.torque_array
    # the schedulers whose variables and files the job gets: its script's, or PBS's where
    # only the command line has PBS's forms (Snakemake's and myqueue's PBS submits)
    compat = (foreign.schedulers if foreign else []) or (["pbs"] if pbs_command_line(args) else [])
    arguments = getattr(args, "script_args", None) or []
    if arguments:
        text = with_arguments(text, arguments, source(file))
    if foreign is not None or torque:
        text = with_dialect_variables(text, foreign, options, torque=torque)
    check_size(len(text.encode()), source(file))
    submit_dir = os.getcwd()
    workdir = workdir if workdir is not None else options.workdir
    if workdir is not None:
        submit_dir = working_directory(workdir)
    if not is_utf8(submit_dir):
        raise UsageError(f"the current directory {one_line(submit_dir)} is not UTF-8; cd elsewhere")
    for flag, value in (("-q", options.queue), ("-d", options.definition)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: the name is empty")
    array = array_body(options, args)
    options = output_paths(options, compat, array is not None, submit_dir, torque=torque)
    job: dict[str, Any] = {
        "name": job_name(default_name if options.name is None else options.name, foreign, said),
        "queue": options.queue,
        "definition": options.definition,
        "retries": options.retries or 0,
        "script": text,
        "submit_dir": submit_dir,
        "env": {**environment(options, said), UMASK_VARIABLE: shell_umask()},
        "priority": options.priority or 0,
        "hold": bool(options.hold),
        "depends": [
            {"kind": d.kind, "target": d.target}
            for spec in options.depends
            for d in jobspec.parse_dependencies(spec)
        ],
    }
    if options.named_depends:  # by id once the host says which jobs have those names
        job["named_depends"] = list(options.named_depends)
    if options.task_depends:  # by id once the host says which job each task is
        job["task_depends"] = list(options.task_depends)
    if options.singleton:  # after the jobs of its name the host has unfinished
        job["singleton"] = True
    # Slurm's UNLIMITED and INFINITE: no limit of the job's own (its definition's applies)
    if options.time_limit is not None and options.time_limit.upper() not in UNLIMITED:
        job["time_limit"] = jobspec.parse_time_limit(options.time_limit)
    resources = request_body(options)
    if resources:
        job["resources"] = resources
    if options.stdout or options.stderr:
        job["output"] = {
            "stdout": options.stdout,
            "stderr": options.stderr,
            "join": bool(options.join),
        }
    if compat:  # what each scheduler sets, the job finds
        job["compat"] = compat
    if array is not None:
        job["array"] = array
        if "slurm" in job.get("compat", []) and array.get("spec"):
            job["env"].update(slurm_array_variables(array["spec"]))
    said += args.notes + ignored_warning(foreign, ignored)
    if notes is None:
        sys.stderr.write("".join(f"qsub: {note}\n" for note in said))
    else:
        notes += said
    return job


def ignored_warning(foreign: Translation | None, ignored: list[str]) -> list[str]:
    """One warning naming all hyper ignored, of the script's lines and of the command line."""
    parts = []
    if foreign and foreign.warnings:
        parts.append(foreign.warnings[0].removeprefix("ignored (not supported): "))
    if ignored:
        parts.append(f"{', '.join(ignored)} (command line)")
    return ["warning: ignored (not supported): " + "; ".join(parts)] if parts else []


def request_body(options: JobOptions) -> dict[str, int]:
    """The job's request as the host takes it (--cpus, --mem, --gpus, or a dialect's)."""
    body: dict[str, int] = {}
    if options.cpus is None and options.mem is None and options.gpus is None:
        return body
    from hyper import capacity

    if options.cpus is not None:
        body["cpus"] = capacity.parse_count(options.cpus, "--cpus", capacity.MAX_CPUS)
        if body["cpus"] < 1:
            raise UsageError("--cpus must be 1 or more")
    if options.mem is not None:
        body["mem_mib"] = capacity.parse_size(options.mem, "M", "--mem")
    if options.gpus is not None:
        body["gpus"] = capacity.parse_count(options.gpus, "--gpus", capacity.MAX_GPUS)
    return body


def resolve_targets(client: HostClient, job: dict[str, Any]) -> None:
    """Dependencies the host finds the jobs of: on a task of an array by Slurm's id of it
    (afterok:12_4), and on jobs by name (LSF's -w done(NAME)), as dependencies on each
    job of that name (an array as a whole) that LSF would still know: not ended, or
    ended within its CLEAN_PERIOD (an hour by default); a trailing * is any name it
    begins. A task or a name no such job has is refused, as sbatch and bsub refuse it.
    And Slurm's singleton: after every unfinished job of its name (none: no dependency)."""
    for said in job.pop("task_depends", []):
        kind, _, task = said.partition(":")
        found = client.list_jobs(ids=[task], limit=1)["jobs"]
        if not found:
            raise UsageError(f"dependency {kind}:{task}: there is no such task")
        job["depends"].append({"kind": kind, "target": found[0]["id"]})
    for said in job.pop("named_depends", []):
        from qtools.states import FINISHED  # only here: a submit's start stays lean

        kind, _, name = said.partition(":")
        if not name.rstrip("*"):
            raise UsageError(f"dependency on the jobs named {name!r}: name some")
        where = {"name_prefix": name[:-1]} if name.endswith("*") else {"name": name}
        since = time.time() - NAMED_DEPENDENCY_SECONDS
        ids = [
            found["id"]
            for found in client.iter_jobs(collapse=True, **where)
            if found["status"] not in FINISHED or (found.get("ended") or since) >= since
        ]
        if not ids:
            raise UsageError(f"dependency on the jobs named {name!r}: there is none")
        job["depends"] += [{"kind": kind, "target": job_id} for job_id in ids]
    if job.pop("singleton", False):
        from qtools.states import FINISHED

        # sbatch(1) -d singleton: "after any previously launched jobs sharing the same job
        # name and user have terminated"; none there: it waits for nothing
        job["depends"] += [
            {"kind": "afterany", "target": found["id"]}
            for found in client.iter_jobs(collapse=True, name=job["name"])
            if found["status"] not in FINISHED
        ]


def complete_target(client: HostClient, job: dict[str, Any], *, check: bool = False) -> None:
    """Fill in the queue and definition the job does not name: the host's default queue,
    that queue's default definition. One line names everything still missing. With
    `check`, also make sure both exist (the host checks again when it takes the job).
    A list of queues (Slurm's `-p a,b`, LSF's `-q "a b"`: the job may run in any) is the
    first of them the host has."""
    listed = [name for name in re.split(r"[,\s]+", job["queue"] or "") if name]
    if job["queue"] and job["definition"] and not check and len(listed) < 2:
        return
    queues = {q["name"]: q for q in client.list_resources("queues")}
    if len(listed) > 1:
        job["queue"] = next((name for name in listed if name in queues), job["queue"])
    if job["queue"] and job["queue"] not in queues:
        from hyper.models import ResourceKind
        from hyper.resources import unknown

        raise unknown(ResourceKind.QUEUE, job["queue"], sorted(queues))
    if not job["queue"]:
        default = [name for name, q in queues.items() if q["spec"].get("default")]
        if default:
            job["queue"] = default[0]
    queue = queues.get(job["queue"]) if job["queue"] else None
    if not job["definition"] and queue is not None:
        job["definition"] = queue["spec"].get("default_definition") or None
    missing = []
    if not job["queue"]:
        missing.append("a queue (-q QUEUE; the host has no default queue)")
    if not job["definition"]:
        why = f"queue {job['queue']!r} has no default definition" if job["queue"] else "no queue"
        missing.append(f"a job definition (-d DEFINITION; {why})")
    if missing:
        raise UsageError(
            "give " + " and ".join(missing) + ", or '#HYPER -q/-d' lines; set defaults with"
            " 'hyper queues update-queue QUEUE --default --default-definition DEFINITION'"
        )
    if check:
        from hyper.models import ResourceKind
        from hyper.resources import unknown

        definitions = [d["name"] for d in client.list_resources("definitions")]
        if job["definition"] not in definitions:
            raise unknown(ResourceKind.DEFINITION, job["definition"], sorted(definitions))


def describe(job: dict[str, Any]) -> str:
    """What --dry-run prints: the job as it would be submitted."""
    lines = [f"{key}: {job[key]}" for key in ("name", "queue", "definition", "retries", "priority")]
    for key in ("time_limit", "hold", "submit_dir"):
        if job.get(key):
            lines.append(f"{key}: {job[key]}")
    if job.get("resources"):
        lines.append("resources: " + json.dumps(job["resources"], sort_keys=True))
    if job["depends"]:
        lines.append("depends: " + ", ".join(f"{d['kind']}:{d['target']}" for d in job["depends"]))
    if job.get("output"):
        lines.append("output: " + json.dumps(job["output"]))
    env = job["env"]
    lines.append(f"environment: {len(env)} variables")
    lines += [f"  {name}={value}" for name, value in sorted(env.items())[:20]]
    array = job.get("array")
    if array and array.get("spec"):
        parsed = jobspec.parse_array(array["spec"])
        shown = ", ".join(map(str, parsed.indices[:10])) + (
            " ..." if len(parsed.indices) > 10 else ""
        )
        cap = f", at most {parsed.cap} at once" if parsed.cap else ""
        lines.append(f"tasks: {len(parsed.indices)} (indices {shown}){cap}")
    elif array:
        lines.append(f"tasks: {len(array['tasks'])}")
        for number, task in enumerate(array["tasks"], start=1):
            detail = " ".join(f"{k}={v}" for k, v in task.get("env", {}).items())
            detail += " ".join(f"{k}->{v}" for k, v in task.get("replacements", {}).items())
            lines.append(f"  {number}  {task.get('name') or job['name']}  {detail}".rstrip())
    lines.append("script:")
    lines += [f"  | {line}" for line in job["script"].splitlines()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        notes: list[str] = []
        job = build_job(args, notes)
        said = "".join(f"qsub: {note}\n" for note in notes)
        with connect(args.host) as client:
            resolve_targets(client, job)
            complete_target(client, job, check=args.dry_run)
            if args.dry_run:
                sys.stdout.write(describe(job))
                sys.stderr.write(
                    f"{said}qsub: dry run: queue {job['queue']!r} and definition"
                    f" {job['definition']!r} exist; {what_it_makes(job)} would be"
                    " submitted; nothing was\n"
                )
                return 0
            job_id = client.submit([job])[0]
            # notes first: a tool that merges stderr into stdout reads the id last
            sys.stderr.write(said)
            sys.stderr.flush()
            sys.stdout.write(f"{job_id}\n")
            sys.stdout.flush()
            if not args.wait:
                return 0
            try:
                return wait_for(client, job_id)
            except KeyboardInterrupt:
                sys.stderr.write(
                    f"qsub: stopped waiting; job {job_id} goes on."
                    f" Follow it with 'qstat -i {job_id}', cancel it with 'qdel {job_id}'\n"
                )
                return 130

    return run("qsub", body, whole_process=argv is None)


def what_it_makes(job: dict[str, Any]) -> str:
    array = job.get("array")
    if not array:
        return "1 job"
    if array.get("spec"):
        return f"an array of {len(jobspec.parse_array(array['spec']).indices)} tasks"
    return f"an array of {len(array['tasks'])} tasks"


def wait_for(client: HostClient, job_id: int) -> int:
    """Wait for the job (every task of an array) to end; its exit code, as `qsub --wait`
    exits with it."""
    while True:
        record = client.get_job(job_id, wait=WAIT_POLL_SECONDS)
        counts = record.get("counts") or {record["status"]: 1}
        unfinished = sum(
            n for s, n in counts.items() if s not in ("Successful", "Failed", "Cancelled")
        )
        if not unfinished:
            highest = record.get("highest_exit_code", record.get("exit_code"))
            return wait_exit_code(counts, highest)


if __name__ == "__main__":
    sys.exit(main())
