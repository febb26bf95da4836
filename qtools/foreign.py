"""Scripts from Slurm, PBS and LSF run unchanged: their directives, translated.

Understood: job name, queue (partition), array, dependency, time limit,
environment export, output and error files, working directory, requeue (one
retry), hold, priority, and the job's request (CPUs, memory, GPUs on one node, in each
dialect's units: docs/resources.md); more than one node is refused. Anything
else is named in a warning, never silently dropped.

When a script carries a scheduler's directives and says nothing about the
environment, that scheduler's default applies: Slurm and LSF pass the
submitting shell's environment, PBS does not. Its jobs also find the
variables that scheduler sets (SLURM_JOB_ID, PBS_ARRAY_INDEX, LSB_JOBINDEX...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator

from hyper import capacity
from hyper.errors import UsageError
from qtools import sbatch_options
from qtools.directives import (
    REQUEST_PARTS,
    JobOptions,
    Translation,
    directive_lines,
    directive_words,
    indented_lines,
    names_a_directory,
    without_servers,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing costs a dialect's submit 3 ms
if TYPE_CHECKING:
    from typing import Any

Handler = Callable[[JobOptions, str], JobOptions]


def _with(options: JobOptions, field: str, value: Any) -> JobOptions:
    changes: dict[str, Any] = {field: value}
    return options._replace(**changes)


def _set(field: str) -> Handler:
    return lambda options, value: _with(options, field, value)


def _flag(field: str, value: object) -> Handler:
    return lambda options, _: _with(options, field, value)


def _workdir(written: str) -> Handler:
    """Where the job runs: a directory here, relative to the submission's. One that is not
    (a path on the cluster the script came from) is named in the warning, and the job
    runs where it was submitted (where Slurm and LSF fall back to /tmp)."""

    def handler(options: JobOptions, value: str) -> JobOptions:
        if not os.path.isdir(value):
            raise _Unsupported(f"{written} {value} (no such directory here)", options)
        return options._replace(workdir=os.path.abspath(value))

    return handler


# ---- Slurm ----------------------------------------------------------------------


def _slurm_export(options: JobOptions, value: str) -> JobOptions:
    export_all = False
    env = list(options.env)
    for part in value.split(","):
        part = part.strip()
        if part.upper() == "ALL":
            export_all = True
        elif part.upper() == "NONE" or not part:
            continue
        else:
            env.append(part)
    return options._replace(export_all=export_all, env=tuple(env))


SLURM_TASK_ID = re.compile(r"[0-9]+_[0-9]+")  # 12_4: task 4 of array 12


def _slurm_dependency(options: JobOptions, value: str) -> JobOptions:
    """afterok:12:13_4,afterany:14,singleton: a task of an array (12_4, Slurm's id of it)
    is found by the host at submit (qsub.resolve_targets), as are the jobs of its name a
    singleton waits for; the rest as hyper reads it."""
    if "afterburstbuffer" in value or "+" in value:
        raise UsageError(
            f"dependency {value!r}: hyper takes afterok, afterany, afternotok, aftercorr, singleton"
        )
    clauses, tasks = [], list(options.task_depends)
    for clause in value.split(","):
        if clause.strip() == "singleton":
            options = options._replace(singleton=True)
            continue
        kind, *targets = clause.strip().split(":")
        ids = [t for t in targets if not SLURM_TASK_ID.fullmatch(t)]
        tasks += [f"{kind}:{t}" for t in targets if t not in ids]
        if ids or not targets:  # (no target at all: hyper's reading refuses it)
            clauses.append(":".join([kind, *ids]))
    depends = (*options.depends, ",".join(clauses)) if clauses else options.depends
    return options._replace(depends=depends, task_depends=tuple(tasks))


def _mib(value: str, unit: str, written: str) -> str:
    """A size in a dialect's default unit, as a count of MiB (what qsub's --mem reads)."""
    return f"{capacity.parse_size(value, unit, written)}M"


def _zero(size: str) -> bool:
    """--mem=0: sbatch(1) "grants the job access to all of the memory on each node": the
    job asks no memory of its own (it gets its worker's, or its share with its CPUs)."""
    return re.fullmatch(r"0+[KMGT]?B?", size.strip(), re.IGNORECASE) is not None


def _count(value: str, written: str) -> str:
    text = value.strip()
    if not text.isdigit():
        raise UsageError(f"{written} {value!r}: use a whole number")
    return text


def _slurm_nodes(options: JobOptions, value: str) -> JobOptions:
    """-N 1 (or 1-1) is one node; more is refused."""
    low = value.split("-", 1)[0].split(":", 1)[0].strip()
    capacity.check_nodes(int(_count(low, "--nodes")), f"--nodes={value}")
    return options


def _slurm_gpus(options: JobOptions, value: str) -> JobOptions:
    """--gpus/-G [type:]N."""
    return options._replace(gpus=_count(value.rsplit(":", 1)[-1], "--gpus"))


def _slurm_gpus_per_task(options: JobOptions, value: str) -> JobOptions:
    """--gpus-per-task [type:]N: times the tasks (combine)."""
    return options._replace(gpus_per_task=_count(value.rsplit(":", 1)[-1], "--gpus-per-task"))


def _slurm_gres(options: JobOptions, value: str) -> JobOptions:
    """--gres gpu[:type]:N (gpu alone is 1); other generic resources are not something
    hyper has."""
    count = 0
    others = []
    for item in (part.strip() for part in value.split(",")):
        parts = item.split(":")
        if parts[0] == "gpu":
            count += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
        elif item:
            others.append(item)
    if count:
        options = options._replace(gpus=str(count))
    if others:
        raise _Unsupported(f"--gres={','.join(others)}", options)
    return options


def _same(options: JobOptions, value: str) -> JobOptions:
    return options


SLURM: dict[str, Handler] = {
    "-J": _set("name"), "--job-name": _set("name"),
    "-p": _set("queue"), "--partition": _set("queue"),
    "-a": _set("array"), "--array": _set("array"),
    "-d": _slurm_dependency, "--dependency": _slurm_dependency,
    "-t": _set("time_limit"), "--time": _set("time_limit"),
    "--export": _slurm_export,
    "-o": _set("stdout"), "--output": _set("stdout"),
    "-e": _set("stderr"), "--error": _set("stderr"),
    "-D": _workdir("-D"), "--chdir": _workdir("--chdir"),
    "--requeue": _flag("retries", 1), "--no-requeue": _flag("retries", 0),
    "-H": _flag("hold", True), "--hold": _flag("hold", True),
    "-c": lambda o, v: o._replace(cpus=_count(v, "--cpus-per-task")),
    "--cpus-per-task": lambda o, v: o._replace(cpus=_count(v, "--cpus-per-task")),
    "-n": lambda o, v: o._replace(tasks=_count(v, "--ntasks")),
    "--ntasks": lambda o, v: o._replace(tasks=_count(v, "--ntasks")),
    "--ntasks-per-node": lambda o, v: o._replace(tasks_per_node=_count(v, "--ntasks-per-node")),
    "--tasks-per-node": lambda o, v: o._replace(tasks_per_node=_count(v, "--tasks-per-node")),
    "--ntasks-per-gpu": lambda o, v: o._replace(tasks_per_gpu=_count(v, "--ntasks-per-gpu")),
    "--mem": lambda o, v: (o._replace(mem=None, mem_per_cpu=None, mem_per_gpu=None) if _zero(v)
                           else o._replace(mem=_mib(v, "M", "--mem"))),
    "--mem-per-cpu": lambda o, v: o._replace(mem_per_cpu=_mib(v, "M", "--mem-per-cpu")),
    "--gres": _slurm_gres, "--gpus": _slurm_gpus, "-G": _slurm_gpus,
    "--gpus-per-node": _slurm_gpus, "--gpus-per-task": _slurm_gpus_per_task,
    "--cpus-per-gpu": lambda o, v: o._replace(cpus_per_gpu=_count(v, "--cpus-per-gpu")),
    "--mem-per-gpu": lambda o, v: o._replace(mem_per_gpu=_mib(v, "M", "--mem-per-gpu")),
    "-N": _slurm_nodes, "--nodes": _slurm_nodes,
    # sbatch's own (qtools.slurm.SCRIPT_OWN): how it answers, nothing of the job's
    "--parsable": _same, "-W": _same, "--wait": _same,
}  # fmt: skip
SLURM_FLAGS = {"--requeue", "--no-requeue", "-H", "--hold", "--parsable", "-W", "--wait"}


# ---- PBS --------------------------------------------------------------------------


# a PBS size with no unit is in bytes (qsub(1B), "size"); ngpus and ncpus are counts
_PBS_AMOUNTS = {
    "ncpus": lambda o, v: o._replace(cpus=_count(v, "ncpus")),
    "mem": lambda o, v: o._replace(mem=_mib(v, "b", "mem")),
    "ngpus": lambda o, v: o._replace(gpus=_count(v, "ngpus")),
    "ppn": lambda o, v: o._replace(cpus=_count(v, "ppn")),
    "gpus": lambda o, v: o._replace(gpus=_count(v, "gpus")),
    "pmem": lambda o, v: o._replace(mem_per_cpu=_mib(v, "b", "pmem")),
}


def pbs_resources(options: JobOptions, value: str) -> tuple[JobOptions, list[str]]:
    """-l walltime=1:00:00, select=1:ncpus=8:mem=16gb:ngpus=1, nodes=1:ppn=4, mem=16gb,
    ncpus=8, ngpus=1: the options they give, and the items hyper does not take. More than
    one chunk or node is refused."""
    others = []
    for item in (part.strip() for part in value.split(",")):
        key, _, amount = item.partition("=")
        key, amount = key.strip(), amount.strip()
        if key == "walltime":
            options = options._replace(time_limit=pbs_walltime(amount))
        elif key in ("select", "nodes"):
            if "+" in amount:
                capacity.check_nodes(2, f"-l {item}")
            count, *chunk = amount.split(":")
            nodes = int(count) if count.isdigit() else 1  # nodes=host01:ppn=4 is one node
            capacity.check_nodes(nodes, f"-l {item}")
            for part in chunk:
                name, _, number = part.partition("=")
                if name in _PBS_AMOUNTS and number:
                    options = _PBS_AMOUNTS[name](options, number)
                elif name not in ("mpiprocs", "ompthreads") or not number:
                    others.append(f"{key}=...:{part}")
        elif key in _PBS_AMOUNTS and key not in ("ppn",) and amount:
            options = _PBS_AMOUNTS[key](options, amount)
        elif item:
            others.append(item)
    return options, others


def pbs_walltime(value: str) -> str:
    """PBS's walltime, `[[hours:]minutes:]seconds[.fraction]` (qsub(1B), "duration"), as
    hyper's HH:MM:SS: a bare number is seconds in PBS, where Slurm reads minutes."""
    match = re.fullmatch(r"(?:(?:([0-9]+):)?([0-9]+):)?([0-9]+)(?:\.([0-9]*))?", value)
    if not match:
        raise UsageError(f"walltime={value}: use [[HH:]MM:]SS")
    hours, minutes, seconds, fraction = match.groups()
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds)
    total += 1 if fraction and int(fraction) else 0  # a part of a second is one more
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def _pbs_resources(options: JobOptions, value: str) -> JobOptions:
    options, others = pbs_resources(options, value)
    if others:
        raise _Unsupported(f"-l {','.join(others)}", options)
    return options


def pbs_path(value: str) -> str:
    """A PBS output path as hyper writes it: PBS's `[hostname:]path` loses its host (the
    job writes where it runs), a `%` is only a percent sign, and PBS Pro's `^array_index^`
    is the subjob's index (hyper's %a; the only pattern PBS expands)."""
    match = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*:(.+)", value)
    if match and not match.group(1).startswith("//"):
        value = match.group(1)
    return value.replace("%", "%%").replace("^array_index^", "%a")


def _pbs_file(field: str) -> Handler:
    setter = _set(field)
    return lambda options, value: setter(options, pbs_path(value))


SHELLS = {"sh", "bash", "ksh", "zsh", "dash"}  # what hyper's default (bash or the shebang) serves


def _pbs_shell(options: JobOptions, value: str) -> JobOptions:
    """-S /bin/bash: hyper runs the script with its shebang, or bash; another shell is
    not something hyper can give."""
    if value.rsplit("/", 1)[-1] not in SHELLS:
        raise _Unsupported(f"-S {value}", options)
    return options


def _pbs_env(options: JobOptions, value: str) -> JobOptions:
    return options._replace(env=(*options.env, *(v.strip() for v in value.split(",") if v.strip())))


def _pbs_depend(options: JobOptions, value: str) -> JobOptions:
    return options._replace(depends=(*options.depends, without_servers(value)))


def _pbs_join(options: JobOptions, value: str) -> JobOptions:
    """-j oe: stderr into the stdout file; eo: stdout into the stderr file; n: apart."""
    if value not in ("oe", "eo", "n"):
        raise UsageError(f"-j {value!r}: use oe, eo or n")
    return options._replace(join=value != "n", join_into_error=value == "eo")


def _pbs_rerun(options: JobOptions, value: str) -> JobOptions:
    if value not in ("y", "n"):
        raise UsageError(f"-r {value!r}: use y or n")
    return options._replace(retries=1 if value == "y" else 0)


def _pbs_w(options: JobOptions, value: str) -> JobOptions:
    if not value.startswith("depend="):
        raise _Unsupported(f"-W {value}", options)
    return _pbs_depend(options, value)


PBS: dict[str, Handler] = {
    "-N": _set("name"), "-q": _set("queue"), "-J": _set("array"), "-t": _set("array"),
    "-W": _pbs_w, "-l": _pbs_resources, "-V": _flag("export_all", True), "-v": _pbs_env,
    "-o": _pbs_file("stdout"), "-e": _pbs_file("stderr"), "-j": _pbs_join, "-r": _pbs_rerun,
    "-S": _pbs_shell, "-d": _workdir("-d"),  # Torque's working directory
    "-h": _flag("hold", True),
    "-p": lambda options, value: options._replace(priority=int(value)),
}  # fmt: skip
PBS_FLAGS = {"-V", "-h"}


# ---- LSF -----------------------------------------------------------------------------


def _lsf_name(options: JobOptions, value: str) -> JobOptions:
    """-J "name[1-100:2]%10" names an array."""
    match = re.fullmatch(r"(.*?)\[([0-9,:\-]+)\](%[0-9]+)?", value)
    if not match:
        return options._replace(name=value)
    name = match.group(1) or None
    return options._replace(name=name, array=match.group(2) + (match.group(3) or ""))


QUOTES = "\"'"


def _lsf_depend(options: JobOptions, value: str) -> JobOptions:
    """-w 'done(12) && ended(prep) && exit("3d*")': on a job by id, or on every job of a
    name (a trailing * is any name it begins: LSF's wildcard), quoted or not."""
    kinds = {"done": "afterok", "ended": "afterany", "exit": "afternotok"}
    if "||" in value or "!" in value:
        raise UsageError(f"-w {value!r}: hyper takes conditions joined by && only")
    terms = [re.fullmatch(r"(\w+)\(\s*([^()]*?)\s*\)", t.strip()) for t in value.split("&&")]
    if not all(terms) or any(t.group(1) not in kinds or not t.group(2) for t in terms if t):
        raise UsageError(
            f"-w {value!r}: use done(ID), ended(ID) or exit(ID), joined by && (ID: a job's id"
            " or name)"
        )
    depends, named = list(options.depends), list(options.named_depends)
    for term in (t for t in terms if t):
        kind, target = kinds[term.group(1)], term.group(2)
        if target.isdigit():
            depends.append(f"{kind}:{target}")
        else:
            named.append(f"{kind}:{target.strip(QUOTES)}")
    return options._replace(depends=tuple(depends), named_depends=tuple(named))


def _lsf_walltime(options: JobOptions, value: str) -> JobOptions:
    """LSF's -W is [HH:]MM (Slurm's MM:SS would read it wrong)."""
    match = re.fullmatch(r"(?:([0-9]+):)?([0-9]+)", value.strip())
    if not match:
        raise UsageError(f"-W {value!r}: use [HH:]MM")
    hours, minutes = int(match.group(1) or 0), int(match.group(2))
    return options._replace(time_limit=f"{hours}:{minutes:02d}:00")


def lsf_path(value: str) -> str:
    """An LSF output path in hyper's patterns. LSF's %J is the job id, which every task of
    an array shares (the array's id, hyper's %A); %I is the task's index (%a, 0 outside an
    array, as LSF's); any other % is itself."""
    codes = {"J": "%A", "I": "%a", "": "%%"}
    return re.sub(r"%([JI]?)", lambda m: codes[m.group(1)], value)


def _lsf_file(field: str) -> Handler:
    setter = _set(field)
    return lambda options, value: setter(options, lsf_path(value))


def _lsf_env(options: JobOptions, value: str) -> JobOptions:
    export_all = options.export_all
    env = list(options.env)
    for part in (p.strip() for p in value.split(",")):
        if part.lower() == "all":
            export_all = True
        elif part.lower() == "none":
            export_all = False
        elif part:
            env.append(part)
    return options._replace(export_all=export_all, env=tuple(env))


def lsf_unit() -> str:
    """The unit of LSF's memory limits (-M, rusage[mem]) without a unit of their own: the
    cluster's LSF_UNIT_FOR_LIMITS (the variable, or lsf.conf in $LSF_ENVDIR, $LSF_CONFDIR
    or /etc, as LSF and dask-jobqueue look for it); MB when none says (what LSF's
    installer sets)."""
    said = os.environ.get("LSF_UNIT_FOR_LIMITS", "")
    if not said:
        folder = os.environ.get("LSF_ENVDIR") or os.environ.get("LSF_CONFDIR") or "/etc"
        try:
            with open(os.path.join(folder, "lsf.conf"), errors="replace") as file:
                lines = file.read().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            if line.strip().startswith("LSF_UNIT_FOR_LIMITS"):
                said = line.partition("=")[2].strip()
                break
    unit = said[:1].upper()
    return unit if unit in ("K", "M", "G", "T") else "M"


def _lsf_slots(options: JobOptions, value: str) -> JobOptions:
    """-n N (or MIN,MAX: the job gets MIN) slots on one host: N CPUs."""
    return options._replace(cpus=_count(value.split(",", 1)[0], "-n"))


def _lsf_nodes(options: JobOptions, value: str) -> JobOptions:
    """-nnodes N (CSM machines such as Summit): more than one node is refused."""
    capacity.check_nodes(int(_count(value, "-nnodes")), f"-nnodes {value}")
    return options


def _lsf_requirement(options: JobOptions, value: str) -> JobOptions:
    """-R "rusage[mem=16000] span[hosts=1]": memory in MB; span[hosts=1] is what hyper
    does anyway, span[ptile=N] too while -n is at most N; other sections are not taken."""
    others = []
    for section in re.findall(r"(\w+)\[([^\]]*)\]", value):
        name, body = section
        if name == "rusage":
            found = re.search(r"(?:^|[,:\s])mem\s*=\s*([0-9.]+\s*[A-Za-z]*)", body)
            if found:
                options = options._replace(mem=_mib(found.group(1), lsf_unit(), "rusage[mem]"))
            # GPUs as LSF's older form asks them: ngpus_excl_p=1, ngpus_shared=2...
            gpus = re.search(r"(?:^|[,:\s])ngpus\w*\s*=\s*([0-9]+)", body)
            if gpus:
                options = options._replace(gpus=gpus.group(1))
            rest = re.sub(r"(?:^|[,:\s])(?:mem|ngpus\w*)\s*=\s*[^,:\s]+", "", body)
            if rest.strip(" ,:"):
                others.append(f"rusage[{body}]")
        elif name == "span" and body.replace(" ", "") == "hosts=1":
            continue
        elif name == "span" and re.fullmatch(r"\s*ptile\s*=\s*[0-9]+\s*", body):
            options = options._replace(slots_per_host=body.partition("=")[2].strip())
        else:
            others.append(f"{name}[{body}]")
    if not re.findall(r"\w+\[", value) and value.strip():
        others.append(value.strip())
    if others:
        raise _Unsupported(f"-R {' '.join(others)}", options)
    return options


def _lsf_gpu(options: JobOptions, value: str) -> JobOptions:
    """-gpu "num=2:mode=shared" (or -gpu -, LSF's default of one GPU); num=N/task is N
    for each slot (-n), num=N/host N on the one host."""
    if value.strip() == "-":
        return options._replace(gpus="1")
    found = re.search(r"(?:^|:)num=([0-9]+)(/task|/host)?", value)
    if found and found.group(2) == "/task":
        return options._replace(gpus_per_task=found.group(1))
    return options._replace(gpus=found.group(1) if found else "1")


LSF: dict[str, Handler] = {
    "-J": _lsf_name, "-q": _set("queue"), "-w": _lsf_depend, "-W": _lsf_walltime,
    "-o": _lsf_file("stdout"), "-oo": _lsf_file("stdout"),
    "-e": _lsf_file("stderr"), "-eo": _lsf_file("stderr"),
    "-r": _flag("retries", 1), "-rn": _flag("retries", 0), "-H": _flag("hold", True),
    "-env": _lsf_env, "-cwd": _workdir("-cwd"),
    "-sp": lambda options, value: options._replace(priority=int(value)),
    "-n": _lsf_slots, "-R": _lsf_requirement, "-gpu": _lsf_gpu, "-nnodes": _lsf_nodes,
    "-M": lambda o, v: o._replace(mem=o.mem or _mib(v, lsf_unit(), "-M")),
}  # fmt: skip
LSF_FLAGS = {"-r", "-rn", "-H"}

# options of several letters that must not be read as a known one with its value glued on
# (LSF's -We is not -W e); every other unknown word is named in the warning as written
LSF_WORDS = {"-We", "-Ep", "-Ip", "-Is", "-IS", "-ISp", "-ISs", "-IX", "-Jd", "-Lp", "-Ne",
             "-app", "-ar", "-cwd", "-data", "-datagrp", "-env", "-eptl", "-gpu", "-hl",
             "-hostfile", "-jsdl", "-jsm", "-kill", "-list", "-mig", "-network", "-nnodes",
             "-notify", "-outdir", "-pack", "-ptl", "-rcacct", "-rn", "-rnc", "-sla", "-smt",
             "-stage", "-ti", "-tty", "-ul", "-wa", "-wt", "-xf", "-yaml", "-zs",
             "-alloc_flags", "-core_isolation", "-csm", "-cn_cu", "-cn_mem", "-freq",
             "-clusters", "-json", "-K", "-B", "-N", "-x", "-I"}  # fmt: skip
LSF_FLAGS |= {"-B", "-N", "-x", "-K", "-I", "-Ip", "-Is", "-tty", "-rn", "-ul", "-hl"}

NO_WORDS: set[str] = set()
NO_NAMES: frozenset[str] = frozenset()  # no long options to abbreviate
SCHEDULERS = (
    ("#SBATCH", "slurm", SLURM, SLURM_FLAGS, NO_WORDS, sbatch_options.SBATCH_OPTIONS, True),
    ("#PBS", "pbs", PBS, PBS_FLAGS, NO_WORDS, NO_NAMES, False),
    ("#BSUB", "lsf", LSF, LSF_FLAGS, LSF_WORDS, NO_NAMES, True),
)


class _Unsupported(Exception):
    """A directive hyper understands in part: what it took, and the part it did not."""

    def __init__(self, part: str, options: JobOptions) -> None:
        super().__init__(part)
        self.options = options


def _options(
    words: list[str],
    table: dict[str, Handler],
    flags: set[str],
    whole: set[str],
    names: frozenset[str],
) -> Iterator[tuple[str, str | None, str]]:
    """(option, value, as written) from directive words: `-J x`, `-Jx`, `--job-name=x`,
    a long one abbreviated as its scheduler's getopt reads it among `names`. An option
    hyper knows takes the next word as its value even when it starts with `-` (`-p -3`);
    for one it does not know, a next word that is not an option."""
    index = 0
    while index < len(words):
        written = word = words[index]
        index += 1
        if not word.startswith("-") or word == "-":
            yield word, None, word
            continue
        if word.startswith("--") and len(word) > 2 and names:
            option, equals, value = word.partition("=")
            word = sbatch_options.resolve(option, names) + equals + value
        if word.startswith("--") and "=" in word:
            option, _, value = word.partition("=")
            yield option, value, written
            continue
        if word in flags:
            yield word, "", written
            continue
        known = word in table
        glued = not known and not word.startswith("--") and len(word) > 2 and word not in whole
        if glued and word[:2] in table and word[:2] not in flags:
            yield word[:2], word[2:], word  # -Jname, -W30, -lwalltime=1:00:00
            continue
        if index < len(words) and (known or not words[index].startswith("-")):
            yield word, words[index], f"{written} {words[index]}"
            index += 1
            continue
        if known:
            raise UsageError(f"{written} needs a value")
        yield word, "", written


def ignored_warning(ignored: list[tuple[int, str]]) -> str | None:
    """One line for everything a script's directives asked that hyper does not do:
    `ignored (not supported): --mail-user=a@b.c, --constraint=x (line 4, 5)`."""
    if not ignored:
        return None
    parts = ", ".join(dict.fromkeys(written for _, written in ignored))
    lines = ", ".join(str(n) for n in sorted({number for number, _ in ignored}))
    return f"ignored (not supported): {parts} (line {lines})"


def translate(text: str, *, prefer: str | None = None) -> Translation:
    """Options from a script's #SBATCH, #PBS and #BSUB lines, each read where and as its
    scheduler reads them (see qtools.directives.RULES), and one warning for the rest. A
    script with lines for several schedulers, one of them `prefer` (the command's own:
    sbatch's Slurm), is read as that one reads it: the others' lines are comments to it."""
    result = Translation()
    found_lines = sorted(
        (number, rest, entry)
        for entry in SCHEDULERS
        for number, rest in directive_lines(text, entry[0])
    )
    if any(entry[1] == prefer for _, _, entry in found_lines):
        found_lines = [line for line in found_lines if line[2][1] == prefer]
    defaults: list[bool] = []
    for number, rest, (prefix, scheduler, table, flags, whole, names, exports) in found_lines:
        words = directive_words(rest, prefix, number)
        defaults.append(exports)
        if scheduler not in result.schedulers:
            result.schedulers.append(scheduler)
        try:
            found = list(_options(words, table, flags, whole, names))
        except UsageError as error:
            raise UsageError(f"line {number}: {prefix} {error}") from None
        for option, value, written in found:
            if scheduler == "pbs" and option == "-t":
                result.torque_array = True
            if scheduler == "slurm" and option in ("hetjob", "packjob"):
                raise UsageError(
                    f"line {number}: {prefix} {option}: a heterogeneous job is several"
                    " allocations; hyper runs each job on one machine (submit each part)"
                )
            handler = table.get(option)
            if handler is None or value is None:
                result.ignored.append((number, written))
                continue
            try:
                result.options = handler(result.options, value)
            except _Unsupported as part:
                result.options = part.options
                result.ignored.append((number, str(part)))
            except UsageError as error:
                raise UsageError(f"line {number}: {prefix} {error}") from None
            except ValueError:
                raise UsageError(f"line {number}: {prefix} {written}: not a number") from None
    if defaults and result.options.export_all is None:
        result.options = result.options._replace(export_all=defaults[0])
    result.slurm_tasks = task_count(result.options) if "slurm" in result.schedulers else None
    result.parts = result.options
    result.options = combine(result.options, slots="lsf" in result.schedulers)
    for prefix, *_ in SCHEDULERS:
        for number in indented_lines(text, prefix):
            result.ignored.append((number, f"indented {prefix} (a comment to its scheduler)"))
    result.ignored.sort(key=lambda item: item[0])
    warning = ignored_warning(result.ignored)
    result.warnings = [warning] if warning else []
    return result


def combine(options: JobOptions, *, slots: bool = False) -> JobOptions:
    """The request from its dialect's parts, as Slurm counts them: CPUs are tasks times
    CPUs per task (or GPUs times --cpus-per-gpu), GPUs --gpus-per-task times the tasks
    unless the script said its GPUs (LSF's num=N/task times its slots, its CPUs:
    `slots`), memory --mem-per-cpu times CPUs (or --mem-per-gpu times GPUs)."""
    tasks, per_node, per_task = options.tasks, options.tasks_per_node, options.cpus
    if tasks is not None and per_node is not None and int(tasks) > int(per_node):
        nodes = -(-int(tasks) // max(1, int(per_node)))
        capacity.check_nodes(nodes, f"#SBATCH --ntasks={tasks} --ntasks-per-node={per_node}")
    count = task_count(options)
    asked, per_host = int(options.cpus or 1), options.slots_per_host
    if per_host is not None and asked > int(per_host):
        hosts = -(-asked // max(1, int(per_host)))
        capacity.check_nodes(hosts, f"#BSUB -n {asked} -R span[ptile={per_host}]")
    if options.gpus_per_task is not None and options.gpus is None:
        times = count if count is not None else options.cpus if slots else None
        options = options._replace(gpus=str(int(options.gpus_per_task) * int(times or 1)))
    if options.cpus_per_gpu is not None and options.gpus is not None:
        options = options._replace(cpus=str(int(options.cpus_per_gpu) * int(options.gpus)))
    elif count is not None:
        options = options._replace(cpus=str(count * int(per_task or 1)))
    if options.mem is None and options.mem_per_cpu is not None:
        options = options._replace(mem=_times(options.mem_per_cpu, options.cpus or "1"))
    elif options.mem is None and options.mem_per_gpu is not None and options.gpus is not None:
        options = options._replace(mem=_times(options.mem_per_gpu, options.gpus))
    parts: dict[str, Any] = dict.fromkeys(REQUEST_PARTS)
    return options._replace(**parts)


def _times(mib: str, count: str) -> str:
    """A size in MiB (`_mib`'s "NM") times a count."""
    return f"{int(mib.rstrip('M')) * int(count)}M"


def task_count(options: JobOptions) -> int | None:
    """Slurm's number of tasks, as the script said it (before combine): --ntasks (with
    --ntasks-per-node its most on the one node), else --ntasks-per-node, else
    --ntasks-per-gpu times its GPUs, else its GPUs over --gpus-per-task (sbatch(1):
    --gpus=4 --gpus-per-task=1 is four tasks)."""
    tasks, per_node = options.tasks, options.tasks_per_node
    if tasks is not None and per_node is not None:
        return min(int(tasks), int(per_node))
    if tasks is not None:
        return int(tasks)
    if per_node is not None:
        return int(per_node)
    if options.tasks_per_gpu is not None and options.gpus is not None:
        return int(options.tasks_per_gpu) * int(options.gpus)
    if options.gpus_per_task is not None and options.gpus is not None:
        return max(1, int(options.gpus) // max(1, int(options.gpus_per_task)))
    return None


def output_files(
    scheduler: str, options: JobOptions, *, array: bool, torque: bool = False
) -> JobOptions:
    """The files a job's output goes to, where its source scheduler puts them: when the
    script names none (Slurm: slurm-%j.out, slurm-%A_%a.out for an array; PBS:
    NAME.oID and NAME.eID), and when it names a directory (PBS: a directory that exists
    or a path ending in '/'; LSF: a path ending in '/', which gets job_ID.out/.err)."""
    out, err = options.stdout, options.stderr
    if scheduler == "slurm":
        if out is None:
            out = "slurm-%A_%a.out" if array else "slurm-%j.out"
        return options._replace(stdout=out)
    if scheduler == "pbs":
        # qsub(1B): "the default ... is used: job_name.oSEQ" (Torque arrays: SEQ-INDEX,
        # PBS Pro subjobs: SEQ.INDEX)
        seq = ("%A-%a" if torque else "%A.%a") if array else "%j"
        out = _in_directory(out, f"%x.o{seq}", names_a_directory)
        err = _in_directory(err, f"%x.e{seq}", names_a_directory)
        if options.join_into_error:  # -j eo: both streams into the error file
            return options._replace(stdout=err, stderr=None, join=True)
        if options.join:
            return options._replace(stdout=out, stderr=None)
        return options._replace(stdout=out, stderr=err)
    if scheduler == "lsf":
        seq = "%A_%a" if array else "%A"
        if out is not None:
            out = _in_directory(out, f"{seq}.out", lambda p: p.endswith("/"))
        if err is not None:
            err = _in_directory(err, f"{seq}.err", lambda p: p.endswith("/"))
        return options._replace(stdout=out, stderr=err)
    return options


def pbs_directories(options: JobOptions, *, array: bool) -> JobOptions:
    """qsub's -o and -e naming a directory (a path ending in '/', or one that is), as PBS
    reads them: the job's default file in it (job_name.oSEQ). Others are left as given."""
    seq = "%A.%a" if array else "%j"
    out, err = options.stdout, options.stderr
    if out is not None:
        out = _in_directory(out, f"%x.o{seq}", names_a_directory)
    if err is not None:
        err = _in_directory(err, f"%x.e{seq}", names_a_directory)
    return options._replace(stdout=out, stderr=err)


def _in_directory(path: str | None, name: str, is_directory: Callable[[str], bool]) -> str:
    if path is None:
        return name
    if is_directory(path.replace("%%", "%")):
        return f"{path.rstrip('/')}/{name}"
    return path
