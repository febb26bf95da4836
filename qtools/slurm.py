"""Slurm's commands over hyper: sbatch, squeue, scancel, sacct, scontrol.

    sbatch [options] [SCRIPT [ARGS...]]      sbatch [options] --wrap "COMMAND"
    squeue [-h] [-o FORMAT | -O FIELDS] [-j IDS] [--me] [-u USERS] [-t STATES]
           [-p PARTITIONS] [-n NAMES] [--json]
    scancel [-Q] [-n NAME] [-u USER] [-t STATE] [-p PARTITION] [--me] [ID...]
    sacct [-j IDS] [-X] [-n] [-P | -p] [-o FIELDS] [-b] [-s STATES] [-S TIME] [--name NAMES]
          [--json]
    scontrol show job [ID]      scontrol hold|release|requeue ID...

sbatch reads the script's ``#SBATCH`` lines; its options become ``#SBATCH`` lines
after them, so they win, and what hyper cannot do (``-n``, ``-c``, ``--mem``, ``-A``...)
is named in a warning on stderr. It prints ``Submitted batch job ID`` (``--parsable``:
the id alone), after any warning. Script arguments reach the script as $1, $2...
(a ``set --`` line after its directives: shell scripts only). ``-D`` is the job's
working directory; ``-W/--wait`` waits for the job and leaves with its exit code.

squeue lists unfinished jobs; ``-t all`` adds those that ended in the last
MIN_JOB_AGE seconds (as Slurm keeps them), and jobs named with ``-j`` are listed
whatever their age. sacct lists the jobs submitted since midnight, or those named
with ``-j``; hyper has no job steps, so every listing is what ``-X`` shows.
States and exit codes: ``qtools.states``; job fields and output formats:
``qtools.slurm_formats``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import time

from hyper.errors import UsageError
from qtools import dialect, sbatch_options, states
from qtools.common import file_name
from qtools.sbatch_options import (
    OPTIONAL_VALUE,
    OWN,
    SBATCH_FLAGS,
    SBATCH_VALUED,
    SCRIPT_OWN,
    SHORT_VALUED,
)
from qtools.slurm_formats import (
    MIN_JOB_AGE,
    PROBE,
    SQUEUE_DEFAULT,
    Fields,
    json_document,
    long_format,
    percent_format,
    render,
    server_name,
    slurm_id,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and pathlib cost a command's start
if TYPE_CHECKING:
    from typing import Any

SLURM_ERROR = 1

# a job step hyper keeps no record of: 12.0, 12_3.1, 12.extern (12.batch is the job)
SLURM_STEP = re.compile(r"[0-9]+(_[0-9]+)?\.([0-9]+|extern|interactive)")


def _usage(prog: str, text: str) -> int:
    sys.stdout.write(f"Usage: {prog} {text}\n")
    return 0


def _options(
    argv: list[str],
    valued: set[str],
    flags: set[str],
    short_valued: set[str],
    names: frozenset[str] = frozenset(),
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(option, value or None) pairs and the words after the options. Long options take
    `--opt=value` or `--opt value`, abbreviated as getopt reads them among `names` (the
    command's every long option) and those it takes; short ones `-J name` or `-Jname`;
    `-hv` is two flags."""
    found: list[tuple[str, str | None]] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return found, argv[index + 1 :]
        if not word.startswith("-") or word == "-":
            return found, argv[index:]
        index += 1
        if word.startswith("--"):
            name, equals, value = word.partition("=")
            name = sbatch_options.resolve(name, names | valued | flags | OPTIONAL_VALUE)
            if equals:
                found.append((name, value))
            elif name in flags or name in OPTIONAL_VALUE:
                found.append((name, None))
            elif name in valued or name not in flags:
                if index >= len(argv):
                    raise UsageError(f"option '{name}' requires an argument")
                found.append((name, argv[index]))
                index += 1
            continue
        letters = word[1:]
        while letters:
            option = f"-{letters[0]}"
            rest = letters[1:]
            if option in flags or letters[0] not in short_valued:
                found.append((option, None))
                letters = rest
                continue
            if rest:
                found.append((option, rest))
            elif index < len(argv):
                found.append((option, argv[index]))
                index += 1
            else:
                raise UsageError(f"option requires an argument -- '{letters[0]}'")
            break
    return found, []


def _command_line(
    argv: list[str], valued: set[str], flags: set[str], short_valued: set[str], words: bool
) -> tuple[list[tuple[str, str | None]], dict[str, str], list[str]]:
    """`_options`' pairs, the same as a dict (a flag's value is "", the last one given wins)
    and the words after the options, which are refused unless the command takes `words`."""
    options, rest = _options(argv, valued, flags, short_valued)
    if rest and not words:
        raise UsageError(f"Unrecognized option: {rest[0]}")
    given = {option: "" if value is None else value for option, value in options}
    return options, given, rest


# ---- sbatch ---------------------------------------------------------------------------


def sbatch(argv: list[str]) -> int:
    argv, host = dialect.host_option(argv)
    if argv[:1] in (["-h"], ["--help"], ["--usage"]):
        return _usage("sbatch", "[options] [SCRIPT [ARGS...]] | --wrap COMMAND")
    options, rest = _options(
        argv, SBATCH_VALUED, SBATCH_FLAGS, SHORT_VALUED, sbatch_options.SBATCH_OPTIONS
    )
    given = dict(options)
    wrap = given.get("--wrap")
    if wrap is not None:
        if rest:
            raise UsageError("give a script or --wrap, not both")
        text = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{wrap}\n"
        name = "wrap"
    elif rest:
        text = dialect.read_script_file(rest[0])
        text = dialect.with_arguments(text, rest[1:], "sbatch")
        name = file_name(rest[0])
    else:
        text = dialect.read_stdin_script("sbatch")
        name = "sbatch"
    if not text.startswith("#!"):
        raise UsageError(
            "This does not look like a batch script.  The first line must start"
            " with #! followed by the path to an interpreter."
        )
    given.update(dict.fromkeys(_own_in_script(text), ""))
    lines = []
    for option, value in options:
        if option in OWN:
            continue
        if value is None:
            lines.append(f"#SBATCH {option}")
        elif option.startswith("--"):
            lines.append(f"#SBATCH {option}={shlex.quote(value)}")
        else:
            lines.append(f"#SBATCH {option} {shlex.quote(value)}")
    if not any(o == "--export" for o, _ in options) and not re.search(
        r"^#(SBATCH|PBS|BSUB)\b", text, re.M
    ):
        lines.append("#SBATCH --export=ALL")  # Slurm's default for any script
    workdir = given.get("-D", given.get("--chdir"))
    client, job_id, _queue = dialect.submit(
        "sbatch", "#SBATCH", text, lines, name, host, workdir=workdir
    )
    with client:
        said = f"{job_id}\n" if "--parsable" in given else f"Submitted batch job {job_id}\n"
        sys.stdout.write(said)
        sys.stdout.flush()
        if "-W" in given or "--wait" in given:
            return dialect.wait_for(client, job_id)
    return 0


def _own_in_script(text: str) -> set[str]:
    """sbatch's flags of its own that a script's #SBATCH lines give: sbatch reads them
    there as on its command line (simple_slurm writes `#SBATCH --parsable`, then reads
    the id alone)."""
    from qtools.directives import directive_lines, directive_words

    found = set()
    for number, rest in directive_lines(text, "#SBATCH"):
        try:
            words = directive_words(rest, "#SBATCH", number)
        except UsageError:
            continue  # the translation refuses the line, in its words
        for word in words:
            if word.startswith("--") and len(word) > 2:
                with contextlib.suppress(UsageError):
                    word = sbatch_options.resolve(
                        word.partition("=")[0], sbatch_options.SBATCH_OPTIONS
                    )
            found.add(word)
    return found & SCRIPT_OWN


# ---- squeue ---------------------------------------------------------------------------


def squeue(argv: list[str]) -> int:
    argv, host = dialect.host_option(argv)
    flags = {
        "-h",
        "--noheader",
        "--me",
        "-r",
        "--array",
        "-a",
        "--all",
        "-l",
        "--long",
        "--json",
        "--yaml",
        "-v",
        "--verbose",
        "-s",
        "--steps",
        "--help",
        "--usage",
    }
    valued = {
        "--format",
        "--Format",
        "--jobs",
        "--user",
        "--states",
        "--partition",
        "--name",
        "--sort",
        "--clusters",
        "--account",
        "--qos",
        "--reservation",
        "--iterate",
        "--licenses",
        "--nodelist",
    }
    _, given, _ = _command_line(argv, valued, flags, set("ojutpnOSMwAiLRqwx"), words=False)
    if "--help" in given or "--usage" in given:
        return _usage("squeue", "[-h] [-o FORMAT] [-j IDS] [--me] [-u USERS] [-t STATES] [--json]")
    ids = dialect.split_words([given[k] for k in ("-j", "--jobs") if k in given], r"[,\s]+")
    words = [dialect.job_word(w) for w in ids]
    state_names = given.get("-t", given.get("--states"))
    wanted = states.slurm_states(state_names) if state_names else set(states.UNFINISHED)
    users = given.get("-u", given.get("--user"))
    partitions = given.get("-p", given.get("--partition"))
    names = given.get("-n", given.get("--name"))
    from qtools.common import connect

    with connect(host) as client:
        if words:
            jobs, _missing = dialect.fetch_named(client, words, collapse=False)
            if _missing and not jobs:
                sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
                return SLURM_ERROR
            if state_names:
                jobs = [job for job in jobs if job["status"] in wanted]
        else:
            finished = bool(wanted & set(states.FINISHED))
            since = time.time() - MIN_JOB_AGE
            one = partitions if partitions and "," not in partitions else None
            jobs = dialect.fetch_all(
                client, finished=finished, collapse=False, queue=one, since=since
            )
            jobs = [job for job in jobs if job["status"] in wanted]
    if users is not None and not dialect.is_me(users):
        jobs = []
    if partitions is not None:
        allowed = set(partitions.split(","))
        jobs = [job for job in jobs if job["queue"] in allowed]
    if names is not None:
        allowed = set(names.split(","))
        jobs = [job for job in jobs if job["name"] in allowed]
    if "--json" in given:
        sys.stdout.write(json.dumps(json_document(jobs, "squeue"), indent=2) + "\n")
        return 0
    header = not ("-h" in given or "--noheader" in given)
    # squeue(1): SQUEUE_FORMAT is -o, SQUEUE_FORMAT2 is -O, where neither option is given
    percent = given.get("-o", given.get("--format", os.environ.get("SQUEUE_FORMAT")))
    fields = given.get("-O", given.get("--Format", os.environ.get("SQUEUE_FORMAT2")))
    if fields is not None and ("-o" not in given and "--format" not in given):
        cells = long_format(fields)
    else:
        cells = percent_format(percent or SQUEUE_DEFAULT)
    sys.stdout.write(render(cells, jobs, header))
    return 0


# ---- scancel --------------------------------------------------------------------------


def scancel(argv: list[str]) -> int:
    argv, host = dialect.host_option(argv)
    flags = {
        "-Q",
        "--quiet",
        "--me",
        "-v",
        "--verbose",
        "-b",
        "--batch",
        "-f",
        "--full",
        "-i",
        "--interactive",
        "--help",
        "--usage",
        "-H",
        "--hurry",
    }
    valued = {
        "--name",
        "--jobname",
        "--user",
        "--state",
        "--partition",
        "--signal",
        "--account",
        "--clusters",
        "--qos",
        "--reservation",
        "--nodelist",
        "--wckey",
    }
    _, given, rest = _command_line(argv, valued, flags, set("nutpsAMqRwc"), words=True)
    if "--help" in given or "--usage" in given:
        return _usage("scancel", "[-Q] [-n NAME] [-u USER] [-t STATE] [--me] [ID...]")
    quiet = "-Q" in given or "--quiet" in given
    signal = given.get("-s", given.get("--signal"))
    if signal is not None and signal.upper().removeprefix("SIG") not in (
        "KILL",
        "TERM",
        "INT",
        "9",
        "15",
        "2",
    ):
        raise UsageError(f"--signal={signal}: hyper stops jobs; it sends no other signal")
    words = [dialect.job_word(w) for w in dialect.split_words(rest)]
    name = given.get("-n", given.get("--name", given.get("--jobname")))
    users = given.get("-u", given.get("--user"))
    state = given.get("-t", given.get("--state"))
    partition = given.get("-p", given.get("--partition"))
    if not (words or name or users or state or partition or "--me" in given):
        raise UsageError("No job identification provided")
    if users is not None and not dialect.is_me(users):
        return 0
    from qtools.common import connect

    code = 0
    with connect(host) as client:
        missing: list[str] = []
        if words:
            jobs, missing = dialect.fetch_named(client, words, collapse=True)
        else:
            jobs = dialect.fetch_all(client, finished=False, collapse=False, queue=partition)
        if name is not None:
            jobs = [job for job in jobs if job["name"] in name.split(",")]
        if partition is not None:
            jobs = [job for job in jobs if job["queue"] in partition.split(",")]
        if state is not None:
            wanted = states.slurm_states(state)
            jobs = [job for job in jobs if job["status"] in wanted]
        chosen = [dialect.display_id(job) for job in jobs if not states.finished(job)]
        if chosen:
            client.change("cancel", {"ids": chosen})
        for said in _already_ended(jobs, words) if not quiet else []:
            sys.stderr.write(
                f"scancel: error: Kill job error on job id {said}:"
                " Job/step already completing or completed\n"
            )
            code = SLURM_ERROR
        for word in missing:
            if not quiet:
                sys.stderr.write(
                    f"scancel: error: Kill job error on job id {word}: Invalid job id specified\n"
                )
            code = SLURM_ERROR
    return code


def _already_ended(jobs: list[dict[str, Any]], words: list[str]) -> list[str]:
    """The ids scancel names as ended: each job named by its own id that had ended, and an
    array named whole whose every task had (its ended tasks are no error while others
    were cancelled, as in Slurm)."""
    if not words:
        return []
    whole: dict[str, bool] = {}  # an array named by its id: whether all its tasks ended
    said = []
    for job in jobs:
        array = str(job.get("array_id") or "")
        if array in words and slurm_id(job) not in words:
            whole[array] = whole.get(array, True) and states.finished(job)
        elif states.finished(job):
            said.append(slurm_id(job))
    return said + [array for array, ended in whole.items() if ended]


# ---- sacct ----------------------------------------------------------------------------

SACCT_DEFAULT = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"
SACCT_BRIEF = "JobID,State,ExitCode"
SACCT_WIDTHS = {
    "jobid": 12,
    "jobidraw": 12,
    "jobname": 10,
    "partition": 10,
    "account": 10,
    "alloccpus": 10,
    "state": 10,
    "exitcode": 8,
    "elapsed": 10,
    "start": 19,
    "end": 19,
    "submit": 19,
    "user": 9,
    "nodelist": 15,
    "workdir": 20,
}


def _parse_time(text: str) -> float:
    """sacct's -S/-E: YYYY-MM-DD[THH:MM[:SS]], HH:MM[:SS], now[-N[units]]."""
    text = text.strip()
    now = time.time()
    match = re.fullmatch(r"now(?:-([0-9]+)(seconds|minutes|hours|days|weeks)?)?", text, re.I)
    if match:
        amount = int(match.group(1) or 0)
        unit = (match.group(2) or "seconds").lower()
        seconds = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
        return now - amount * seconds[unit]
    for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%m/%d/%y"):
        try:
            return time.mktime(time.strptime(text, form))
        except ValueError:
            continue
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?", text)
    if match:
        today = time.localtime(now)
        return time.mktime(
            (
                today.tm_year,
                today.tm_mon,
                today.tm_mday,
                int(match.group(1)),
                int(match.group(2)),
                int(match.group(3) or 0),
                0,
                0,
                -1,
            )
        )
    raise UsageError(f"invalid time specification: {text}")


def sacct(argv: list[str]) -> int:
    argv, host = dialect.host_option(argv)
    flags = {
        "-X",
        "--allocations",
        "-n",
        "--noheader",
        "-P",
        "--parsable2",
        "-p",
        "--parsable",
        "-b",
        "--brief",
        "-a",
        "--allusers",
        "-L",
        "--allclusters",
        "-l",
        "--long",
        "--json",
        "--yaml",
        "-D",
        "--duplicates",
        "-v",
        "--verbose",
        "--help",
        "--usage",
        "-e",
        "--helpformat",
    }
    valued = {
        "--jobs",
        "--format",
        "--state",
        "--starttime",
        "--endtime",
        "--user",
        "--partition",
        "--name",
        "--clusters",
        "--accounts",
        "--delimiter",
        "--gid",
        "--group",
        "--nodelist",
        "--qos",
        "--uid",
        "--wckeys",
    }
    options, given, _ = _command_line(
        argv, valued, flags, set("jorsSEuMAcCfFgiIkKNqTW"), words=False
    )
    formats = [value or "" for option, value in options if option in ("-o", "--format")]
    if "--help" in given or "--usage" in given:
        return _usage("sacct", "[-j IDS] [-X] [-n] [-P] [-o FIELDS] [-S TIME] [--json]")
    if "-e" in given or "--helpformat" in given:
        known = sorted({*SACCT_WIDTHS, "state", "exitcode", "reason", "timelimit"})
        sys.stdout.write(" ".join(known) + "\n")
        return 0
    ids = dialect.split_words([v for k, v in options if k in ("-j", "--jobs") and v], r"[,\s]+")
    # a job's steps: hyper keeps none but the batch step, which is the job (12.batch); sacct
    # prints nothing for a step there is not (Snakemake asks 12.0 to 12.9 of a failed job)
    words = [dialect.job_word(w) for w in ids if not SLURM_STEP.fullmatch(w)]
    state_names = given.get("-s", given.get("--state"))
    names = given.get("--name")
    users = given.get("-u", given.get("--user"))
    partitions = given.get("-r", given.get("--partition"))
    from qtools.common import connect

    with connect(host) as client:
        if ids:
            jobs, _missing = (
                dialect.fetch_named(client, words, collapse=False) if words else ([], [])
            )
            jobs = [job for job in jobs if job.get("kind") != "array"]
        else:
            since_text = given.get("-S", given.get("--starttime"))
            if since_text is not None:
                since = _parse_time(since_text)
            else:
                today = time.localtime()
                since = time.mktime((today.tm_year, today.tm_mon, today.tm_mday, 0, 0, 0, 0, 0, -1))
            jobs = [
                job
                for job in dialect.fetch_all(client, finished=True, collapse=False)
                if float(job.get("created") or 0) >= since
                or float(job.get("ended") or time.time()) >= since
            ]
            end_text = given.get("-E", given.get("--endtime"))
            if end_text is not None:
                until = _parse_time(end_text)
                jobs = [job for job in jobs if float(job.get("created") or 0) <= until]
    if state_names:
        wanted = states.slurm_states(state_names)
        jobs = [job for job in jobs if job["status"] in wanted]
    if names is not None:
        jobs = [job for job in jobs if job["name"] in names.split(",")]
    if partitions is not None:
        jobs = [job for job in jobs if job["queue"] in partitions.split(",")]
    if users is not None and not dialect.is_me(users):
        jobs = []
    if "--json" in given:
        sys.stdout.write(json.dumps(json_document(jobs, "sacct"), indent=2) + "\n")
        return 0
    spec = (
        ",".join(formats)
        if formats
        else (SACCT_BRIEF if "-b" in given or "--brief" in given else SACCT_DEFAULT)
    )
    columns: list[tuple[str, str, int]] = []
    for item in spec.replace(" ", ",").split(","):
        if not item:
            continue
        name, _, width = item.partition("%")
        key = name.lower()
        Fields(PROBE, "").value(key)  # refuses a field it does not know
        size = int(width) if width.isdigit() else SACCT_WIDTHS.get(key, 10)
        columns.append((name, key, size))
    server = server_name()
    rows = [[Fields(job, server).value(key) for _, key, _ in columns] for job in jobs]
    header = not ("-n" in given or "--noheader" in given)
    out = []
    parsable = {"-P", "--parsable2", "-p", "--parsable"} & set(given)
    delimiter = given.get("--delimiter", "|") if parsable else None
    if delimiter is not None:
        trailing = "|" if {"-p", "--parsable"} & set(given) else ""
        lines = ([[name for name, _, _ in columns]] if header else []) + rows
        out = [delimiter.join(row) + trailing + "\n" for row in lines]
    else:
        if header:
            out.append(" ".join(n[:w].rjust(w) for n, _, w in columns) + " \n")
            out.append(" ".join("-" * w for _, _, w in columns) + " \n")
        for row in rows:
            cells = []
            for (_, _, size), text in zip(columns, row, strict=True):
                cut = text if len(text) <= size else text[: size - 1] + "+"
                cells.append(cut.rjust(size))
            out.append(" ".join(cells) + " \n")
    sys.stdout.write("".join(out))
    return 0


# ---- scontrol -------------------------------------------------------------------------


def scontrol(argv: list[str]) -> int:
    argv, host = dialect.host_option(argv)
    oneliner = False
    words = []
    for word in argv:
        if word in ("-o", "--oneliner"):
            oneliner = True
        elif word in ("-d", "--details", "-Q", "--quiet", "-v"):
            continue
        else:
            words.append(word)
    if not words or words[0] in ("-h", "--help", "help"):
        return _usage("scontrol", "show job [ID] | hold ID... | release ID... | requeue ID...")
    verb = words[0].lower()
    from qtools.common import connect

    if verb in ("hold", "uhold", "release", "requeue"):
        targets = [dialect.job_word(w) for w in dialect.split_words(words[1:])]
        if not targets:
            raise UsageError(f"{verb}: give job ids")
        action = {"hold": "hold", "uhold": "hold", "release": "release"}.get(verb)
        if action is None:
            raise UsageError(
                "requeue: hyper retries a failed job by its retries; it does not requeue on demand"
            )
        with connect(host) as client:
            client.change(action, {"ids": targets})
        return 0
    if verb != "show" or len(words) < 2 or words[1].lower() not in ("job", "jobs", "jobid"):
        raise UsageError(
            f"invalid entity: {' '.join(words[:2])} for keyword: {words[0]}"
            " (hyper shows jobs: scontrol show job [ID])"
        )
    targets = [dialect.job_word(w) for w in dialect.split_words(words[2:])]
    with connect(host) as client:
        if targets:
            jobs, missing = dialect.fetch_named(client, targets, collapse=False)
            jobs = [job for job in jobs if job.get("kind") != "array"]
            if missing:
                sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
                return SLURM_ERROR
        else:
            since = time.time() - MIN_JOB_AGE
            jobs = dialect.fetch_all(client, finished=True, collapse=False, since=since)
    if not jobs:
        sys.stdout.write("No jobs in the system\n")
        return 0
    sys.stdout.write("\n".join(_show(job, oneliner) for job in jobs))
    return 0


def _show(job: dict[str, Any], oneliner: bool) -> str:
    fields = Fields(job, server_name())
    v = fields.value
    me = dialect.user()
    uid = v("uid")
    cpus, mem, gpus = dialect.requested(job)
    gres = f",gres/gpu={gpus}" if gpus else ""
    array = ""
    if job.get("array_id") is not None:
        array = f" ArrayJobId={job['array_id']} ArrayTaskId={job['array_index']}"
    groups = [
        [f"JobId={job['id']}{array}", f"JobName={job['name']}"],
        [f"UserId={me}({uid})", f"GroupId={me}({uid})", "MCS_label=N/A"],
        [f"Priority={v('priority')}", "Nice=0", "Account=(null)", "QOS=normal"],
        [f"JobState={v('state')}", f"Reason={v('reason')}", "Dependency=(null)"],
        [
            f"Requeue={1 if job.get('retries') else 0}",
            f"Restarts={max(0, int(job.get('attempt') or 0) - 1)}",
            "BatchFlag=1",
            "Reboot=0",
            f"ExitCode={v('exitcode')}",
        ],
        [f"RunTime={v('elapsed')}", f"TimeLimit={v('timelimit')}", "TimeMin=N/A"],
        [f"SubmitTime={v('submit')}", f"EligibleTime={v('submit')}"],
        [f"StartTime={v('start')}", f"EndTime={v('end')}", "Deadline=N/A"],
        [f"Partition={job['queue']}", f"AllocNode:Sid={fields.server}:0"],
        [f"NodeList={fields.server if job.get('started') else '(null)'}"],
        ["NumNodes=1", f"NumCPUs={cpus}", "NumTasks=1", f"CPUs/Task={cpus}"],
        [
            f"MinMemoryNode={mem or 0}M",
            f"TRES=cpu={cpus},mem={mem or 0}M,node=1{gres}",
        ],
        [f"Command={job['name']}"],
        [f"WorkDir={v('workdir')}"],
        [f"StdErr={v('stderr')}"],
        ["StdIn=/dev/null"],
        [f"StdOut={v('stdout')}"],
    ]
    if job.get("reason"):
        groups.insert(4, [f"Comment={job['reason']}"])
    if oneliner:
        return " ".join(" ".join(group) for group in groups) + "\n"
    first, *others = groups
    return " ".join(first) + "\n" + "".join("   " + " ".join(g) + "\n" for g in others)


# ---- entry points ---------------------------------------------------------------------


sbatch_main = dialect.entry("sbatch", sbatch)
squeue_main = dialect.entry("squeue", squeue)
scancel_main = dialect.entry("scancel", scancel)
sacct_main = dialect.entry("sacct", sacct)
scontrol_main = dialect.entry("scontrol", scontrol)
COMMANDS = {
    "sbatch": sbatch_main,
    "squeue": squeue_main,
    "scancel": scancel_main,
    "sacct": sacct_main,
    "scontrol": scontrol_main,
}
