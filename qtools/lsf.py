"""LSF's commands over hyper: bsub, bjobs, bkill, bpeek, bhist.

    bsub [options] [COMMAND [ARGS...] | SCRIPT [ARGS...]]    bsub [options] < SCRIPT
    bjobs [-a] [-d] [-p] [-r] [-noheader] [-o "FIELDS [delimiter='C']"] [-json] [-w] [-l]
          [-J NAME] [-u USER|all] [-q QUEUE] [ID...]
    bkill [-J NAME] [-q QUEUE] [-u USER|all] [-s SIGNAL] [ID... | 0]
    bpeek [-f] [-J NAME | -q QUEUE | ID]
    bhist [-a] [-d] [-l] [-J NAME] [ID...]

bsub reads ``#BSUB`` lines from a script given on stdin, and from a script given as
a file (as LSF does with LSB_BSUB_PARSE_SCRIPT=Y); any other COMMAND runs as a
one-line shell script. Its options become ``#BSUB`` lines after the script's own,
so they win; what hyper cannot do (``-n``, ``-M``, ``-R``, ``-P``...) is named in one
warning on stderr. It prints ``Job <ID> is submitted to queue <QUEUE>.``; ``-K``
waits for the job and leaves with its exit code; interactive jobs (``-I``...) are
refused. States and exit codes: ``qtools.states``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable

from hyper.errors import UsageError
from qtools import dialect, states
from qtools.common import as_pathlib_reads, file_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and pathlib cost a command's start
if TYPE_CHECKING:
    from typing import Any

LSF_ERROR = 255  # what LSF's commands exit with when a job is not found or has finished
FLAGS = {"-B", "-H", "-K", "-N", "-r", "-rn", "-ti", "-x", "-hl", "-ul", "-Zs", "-XF"}
INTERACTIVE = {"-I", "-Ip", "-Is", "-IS", "-ISp", "-ISs", "-IX", "-tty"}
DEFAULT_FIELDS = (
    "jobid",
    "user",
    "stat",
    "queue",
    "from_host",
    "exec_host",
    "job_name",
    "submit_time",
)
WIDTHS = {
    "jobid": 7,
    "user": 7,
    "stat": 5,
    "queue": 10,
    "from_host": 11,
    "exec_host": 11,
    "job_name": 10,
    "submit_time": 12,
}
ALIASES = {"id": "jobid", "name": "job_name", "state": "stat", "proj": "proj_name"}


def _usage(prog: str, text: str) -> int:
    sys.stdout.write(f"usage: {prog} {text}\n")
    return 0


def _words(
    argv: list[str], prog: str, usage: str, flags: set[str], valued: set[str]
) -> tuple[str | None, dict[str, str], list[str]] | None:
    """`--host`, the options given (a flag's value is "") and the other words of a command
    line; None when help was asked for and printed."""
    argv, host = dialect.host_option(argv)
    given: dict[str, str] = {}
    words: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word in ("-h", "--help"):
            _usage(prog, usage)
            return None
        if word in flags:
            given[word] = ""
        elif word in valued:
            if index >= len(argv):
                raise UsageError(f"{word} needs a value")
            given[word] = argv[index]
            index += 1
        elif word.startswith("-"):
            raise UsageError(f"{word}: Illegal option")
        else:
            words.append(word)
    return host, given, words


def _listed(
    client: Any, ids: list[str], given: dict[str, str], name: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs named by `ids` and the ids not found; with no ids, those of the queue (-q)
    given and `name`, finished ones too with -a or -d."""
    if ids:
        return dialect.fetch_named(client, ids, collapse=False)
    finished = "-a" in given or "-d" in given
    jobs = dialect.fetch_all(
        client, finished=finished, collapse=False, queue=given.get("-q"), name=name
    )
    return jobs, []


def _unfinished(client: Any, given: dict[str, str]) -> list[dict[str, Any]]:
    """The unfinished jobs of the queue (-q) and name (-J) given."""
    jobs = dialect.fetch_all(client, finished=False, collapse=False, queue=given.get("-q"))
    if "-J" in given:
        jobs = [job for job in jobs if _name_matches(job["name"], given["-J"])]
    return jobs


# ---- bsub -----------------------------------------------------------------------------


def parse_bsub(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """The options as (option, value or None for a flag), and the command with its args."""
    options: list[tuple[str, str | None]] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return options, argv[index + 1 :]
        if not word.startswith("-") or word == "-":
            return options, argv[index:]
        index += 1
        if word in INTERACTIVE:
            raise UsageError(f"{word}: interactive jobs are not supported by hyper")
        if word in FLAGS:
            options.append((word, None))
            continue
        if index >= len(argv):
            raise UsageError(f"{word} needs a value")
        options.append((word, argv[index]))
        index += 1
    return options, []


def _script_text(word: str) -> str | None:
    """The text of a script named as bsub's command; None when the command is a program
    (`bsub /bin/bash job.sh`) or not a file."""
    path = as_pathlib_reads(word)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as file:
            data = file.read()[: 4 * 2**20 + 1]
    except OSError:
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def bsub(argv: list[str]) -> int:
    argv, host = dialect.host_option(argv)
    if argv[:1] in (["-h"], ["--help"]):
        return _usage("bsub", "[options] [COMMAND [ARGS...]] | bsub [options] < SCRIPT")
    options, command = parse_bsub(argv)
    wait = any(option == "-K" for option, _ in options)
    workdir = next((value for option, value in options if option == "-cwd"), None)
    script = _script_text(command[0]) if command else None
    if script is not None:
        text = dialect.with_arguments(script, command[1:], "bsub")
        name = file_name(command[0])
    elif command:
        # one word is a command line for the shell, as LSF runs it (bsub "a | b; c");
        # several are a program and its arguments, each kept whole
        line = command[0] if len(command) == 1 else shlex.join(command)
        text = "#!/bin/sh\n" + line + "\n"
        name = " ".join(command)
    else:
        text = dialect.read_stdin_script("bsub")
        name = "stdin"
    lines = [
        f"#BSUB {option}" if value is None else f"#BSUB {option} {shlex.quote(value)}"
        for option, value in options
        if option not in ("-K", "-cwd", "-Zs")
    ]
    client, job_id, queue = dialect.submit(
        "bsub", "#BSUB", text, lines, name, host, workdir=workdir
    )
    with client:
        sys.stdout.write(f"Job <{job_id}> is submitted to queue <{queue}>.\n")
        sys.stdout.flush()
        if not wait:
            return 0
        sys.stderr.write("<<Waiting for dispatch ...>>\n")
        code = dialect.wait_for(client, job_id)
        sys.stderr.write("<<Job is finished>>\n")
        return code


# ---- bjobs ----------------------------------------------------------------------------


def lsf_time(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return time.strftime("%b %d %H:%M", time.localtime(float(seconds)))


def lsf_id(job: dict[str, Any]) -> str:
    if job.get("array_id") is not None:
        return f"{job['array_id']}[{job['array_index']}]"
    return str(job["id"])


def field_value(job: dict[str, Any], field: str, server: str) -> str:
    return job_fields(job, server)(field)


def job_fields(job: dict[str, Any], server: str) -> Callable[[str], str]:
    """A job's field by name (made once per job: bjobs asks for several)."""
    said = states.words(job)
    values: dict[str, Callable[[], str]] = {
        "jobid": lambda: lsf_id(job),
        "jobindex": lambda: str(job.get("array_index") or 0),
        "stat": lambda: said.lsf,
        "user": dialect.user,
        "queue": lambda: job["queue"],
        "job_name": lambda: job["name"],
        "job_description": lambda: "",
        "proj_name": lambda: "default",
        "exit_code": lambda: states.lsf_exit_code(job),
        "exit_reason": lambda: "",
        "kill_reason": lambda: "",
        "suspend_reason": lambda: "",
        "pend_reason": lambda: (job.get("reason") or "") if said.lsf == "PEND" else "",
        "submit_time": lambda: lsf_time(job.get("created")),
        "start_time": lambda: lsf_time(job.get("started")),
        "finish_time": lambda: lsf_time(job.get("ended")),
        "run_time": lambda: f"{int(dialect.elapsed(job))} second(s)",
        "cpu_used": lambda: dialect.clock(dialect.elapsed(job)),
        "from_host": lambda: server,
        "exec_host": lambda: server if job.get("started") else "",
        "nexec_host": lambda: "1" if job.get("started") else "0",
        "priority": lambda: str(job.get("priority") or 0),
        "command": lambda: job["name"],
        "sub_cwd": lambda: job.get("submit_dir") or "",
        "output_file": lambda: (job.get("options") or {}).get("stdout") or "",
        "error_file": lambda: (job.get("options") or {}).get("stderr") or "",
        "runtimelimit": lambda: str(round((job.get("time_limit") or 0) / 60, 1)),
    }

    def value(field: str) -> str:
        if field not in values:
            raise UsageError(f"{field}: Illegal field")
        return values[field]()

    return value


def parse_fields(spec: str) -> tuple[list[tuple[str, int | None, bool]], str | None]:
    """`-o "jobid stat:8 job_name:-20 delimiter='|'"`: fields with widths (negative: right
    aligned) and the delimiter, if any."""
    delimiter = None
    match = re.search(r"\s*delimiter=(['\"])(.*?)\1\s*$", spec)
    if match:
        delimiter = match.group(2)
        spec = spec[: match.start()]
    fields = []
    for word in spec.replace(",", " ").split():
        name, _, width = word.partition(":")
        name = ALIASES.get(name.lower(), name.lower())
        field_value({"status": "Waiting", "name": "", "queue": "", "id": 0}, name, "")
        number = int(width) if re.fullmatch(r"-?[0-9]+", width) else None
        fields.append((name, abs(number) if number else None, bool(number and number < 0)))
    if not fields:
        raise UsageError("-o: no fields given")
    return fields, delimiter


def bjobs(argv: list[str]) -> int:
    parsed = _words(
        argv,
        "bjobs",
        "[-a] [-noheader] [-o FIELDS] [-json] [-J NAME] [-u USER] [ID...]",
        flags={"-a", "-d", "-p", "-r", "-s", "-noheader", "-json", "-w", "-l", "-W", "-A", "-X"},
        valued={"-o", "-J", "-u", "-q", "-m", "-P", "-G", "-g"},
    )
    if parsed is None:
        return 0
    host, given, args = parsed
    ids = [dialect.job_word(word) for word in args]
    fields, delimiter = parse_fields(given["-o"]) if "-o" in given else (None, None)
    server = _server()
    from qtools.common import connect

    with connect(host) as client:
        jobs, missing = _listed(client, ids, given, name=given.get("-J"))
    if "-J" in given:
        jobs = [job for job in jobs if _name_matches(job["name"], given["-J"])]
    if "-q" in given:
        jobs = [job for job in jobs if job["queue"] == given["-q"]]
    if not dialect.is_me(given.get("-u")):
        jobs = []
    # each state flag adds its jobs: `bjobs -p -r` lists the pending and the running ones
    # (FireWorks counts a queue's jobs so), not those that are both
    wanted = {"-d": ("DONE", "EXIT"), "-p": ("PEND", "PSUSP"), "-r": ("RUN",)}
    in_states = [word for flag, words in wanted.items() if flag in given for word in words]
    if in_states and not ids:
        jobs = [job for job in jobs if states.words(job).lsf in in_states]
    if "-json" in given:
        chosen = fields or [(f, None, False) for f in DEFAULT_FIELDS]
        records: list[dict[str, str]] = [
            {name.upper(): value_of(name) for name, _, _ in chosen}
            for value_of in (job_fields(job, server) for job in jobs)
        ]
        records += [{"JOBID": word, "ERROR": f"Job <{word}> is not found"} for word in missing]
        document = {"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return LSF_ERROR if missing else 0
    for word in missing:
        sys.stderr.write(f"Job <{word}> is not found\n")
    if not jobs:
        if not missing:
            sys.stderr.write("No unfinished job found\n" if "-a" not in given else "No job found\n")
        return LSF_ERROR if missing else 0
    if "-l" in given:
        sys.stdout.write(_long(jobs, server))
        return LSF_ERROR if missing else 0
    columns = fields or [(f, WIDTHS[f], False) for f in DEFAULT_FIELDS]
    rows = [
        [value_of(name) for name, _, _ in columns]
        for value_of in (job_fields(job, server) for job in jobs)
    ]
    if delimiter is not None:
        lines = [[name.upper() for name, _, _ in columns], *rows]
        if "-noheader" in given:
            lines = lines[1:]
        sys.stdout.write("".join(delimiter.join(row) + "\n" for row in lines))
        return LSF_ERROR if missing else 0
    titles = [name.upper() for name, _, _ in columns]
    table = ([titles] if "-noheader" not in given else []) + rows
    out = []
    for row in table:
        cells = []
        for (_, width, right), cell in zip(columns, row, strict=True):
            if width is None:
                cells.append(cell)
            else:
                cell = cell if "-w" in given or len(cell) <= width else "*" + cell[-(width - 1) :]
                cells.append(cell.rjust(width) if right else cell.ljust(width))
        out.append(" ".join(cells).rstrip() + "\n")
    sys.stdout.write("".join(out))
    return LSF_ERROR if missing else 0


def _name_matches(name: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _server() -> str:
    import _socket  # socket.gethostname itself; the socket module costs 2 ms to import

    return _socket.gethostname().split(".")[0] or "localhost"


def _long(jobs: list[dict[str, Any]], server: str) -> str:
    out = []
    for job in jobs:
        said = states.words(job)
        out.append(
            f"\nJob <{lsf_id(job)}>, Job Name <{job['name']}>, User <{dialect.user()}>, "
            f"Project <default>, Status <{said.lsf}>, Queue <{job['queue']}>, "
            f"Command <{job['name']}>\n"
            f"{dialect.ctime(job.get('created'))}: Submitted from host <{server}>, "
            f"CWD <{job.get('submit_dir') or ''}>;\n"
        )
        if job.get("started"):
            out.append(f"{dialect.ctime(job['started'])}: Started on <{server}>;\n")
        if job.get("ended"):
            code = states.lsf_exit_code(job)
            ended = f"Exited with exit code {code}" if said.lsf == "EXIT" else "Done successfully"
            out.append(f"{dialect.ctime(job['ended'])}: {ended}.\n")
        if job.get("reason"):
            out.append(f" {job['reason']}\n")
    return "".join(out)


# ---- bkill ----------------------------------------------------------------------------


def bkill(argv: list[str]) -> int:
    parsed = _words(
        argv,
        "bkill",
        "[-J NAME] [-q QUEUE] [-u USER] [-s SIGNAL] [ID... | 0]",
        flags={"-r", "-d", "-b", "-l", "-stat"},
        valued={"-J", "-q", "-u", "-s", "-m", "-app", "-g", "-sla", "-C"},
    )
    if parsed is None:
        return 0
    host, given, ids = parsed
    signal = given.get("-s", "KILL").upper().removeprefix("SIG")
    if signal not in ("KILL", "TERM", "INT", "9", "15", "2"):
        raise UsageError(f"-s {given['-s']}: hyper stops jobs; it sends no other signal")
    everything = "0" in ids
    ids = [dialect.job_word(w) for w in ids if w != "0"]
    if not (ids or everything or "-J" in given or "-q" in given):
        raise UsageError("job ID or one of -J, -q or 0 must be specified")
    if not dialect.is_me(given.get("-u")):
        sys.stderr.write("No matching job found\n")
        return LSF_ERROR
    from qtools.common import connect

    code = 0
    with connect(host) as client:
        missing: list[str] = []
        if ids:
            jobs, missing = dialect.fetch_named(client, ids, collapse=True)
            chosen = [dialect.display_id(job) for job in jobs]
        else:
            jobs = _unfinished(client, given)
            chosen = [dialect.display_id(job) for job in jobs]
            if not chosen:
                sys.stderr.write("No unfinished job found\n")
                return LSF_ERROR
        finished: set[int] = set()
        if chosen:
            result = client.change("cancel", {"ids": chosen})
            finished = {int(n) for n in result["finished"]}
        for job in jobs:
            if int(job["id"]) in finished or states.finished(job):
                sys.stderr.write(f"Job <{lsf_id(job)}>: Job has already finished\n")
                code = LSF_ERROR
            else:
                sys.stdout.write(f"Job <{lsf_id(job)}> is being terminated\n")
        for word in missing:
            sys.stderr.write(f"Job <{word}>: No matching job found\n")
            code = LSF_ERROR
    return code


# ---- bpeek ----------------------------------------------------------------------------


def bpeek(argv: list[str]) -> int:
    parsed = _words(
        argv, "bpeek", "[-f] [-J NAME | -q QUEUE | ID]", flags={"-f"}, valued={"-J", "-q", "-m"}
    )
    if parsed is None:
        return 0
    host, given, words = parsed
    follow = "-f" in given
    ids = [dialect.job_word(word) for word in words]
    if len(ids) > 1:
        raise UsageError("give one job ID")
    from hyper.jobs import LogKind
    from qtools.common import connect, job_id_of
    from qtools.qlog import write_entries

    with connect(host) as client:
        if ids:
            from hyper import jobspec

            job = client.get_job(job_id_of(client, jobspec.parse_selector(ids[0])))
        else:
            jobs = [job for job in _unfinished(client, given) if job.get("started")]
            if not jobs:
                sys.stderr.write("No unfinished job found\n")
                return LSF_ERROR
            job = jobs[-1]
        if not job.get("started"):
            sys.stderr.write(f"Job <{lsf_id(job)}> : Not yet started.\n")
            return LSF_ERROR
        sys.stdout.write("<< output from stdout >>\n")
        kinds = [LogKind.STDOUT.value, LogKind.STDERR.value]
        after = 0
        while True:
            page = client.read_log(
                int(job["id"]), kinds=kinds, after=after, wait=10.0 if follow else None
            )
            write_entries(page["entries"], raw=True)
            after = page["next"]
            if page["entries"]:
                continue
            if not follow or page["finished"]:
                return 0


# ---- bhist ----------------------------------------------------------------------------


def bhist(argv: list[str]) -> int:
    parsed = _words(
        argv,
        "bhist",
        "[-a] [-d] [-l] [-J NAME] [ID...]",
        flags={"-a", "-d", "-l", "-b", "-w", "-p", "-r", "-s"},
        valued={"-J", "-q", "-u"},
    )
    if parsed is None:
        return 0
    host, given, words = parsed
    ids = [dialect.job_word(word) for word in words]
    from qtools.common import connect

    with connect(host) as client:
        jobs, missing = _listed(client, ids, given, name=None)
        if "-d" in given:
            jobs = [job for job in jobs if states.finished(job)]
        if "-J" in given:
            jobs = [job for job in jobs if _name_matches(job["name"], given["-J"])]
        if not dialect.is_me(given.get("-u")):
            jobs = []
        for word in missing:
            sys.stderr.write(f"{word}: No matching job found\n")
        if not jobs:
            if not missing:
                sys.stderr.write("No matching job found\n")
            return LSF_ERROR if missing else 0
        if "-l" in given:
            for job in jobs:
                sys.stdout.write(_history(client, job))
            return LSF_ERROR if missing else 0
    now = time.time()
    titles = (
        "JOBID",
        "USER",
        "JOB_NAME",
        "PEND",
        "PSUSP",
        "RUN",
        "USUSP",
        "SSUSP",
        "UNKWN",
        "TOTAL",
    )
    sys.stdout.write("Summary of time in seconds spent in various states:\n")
    rows = [titles]
    for job in jobs:
        created = float(job.get("created") or now)
        started = job.get("started")
        ended = float(job.get("ended") or now)
        pend = (float(started) if started else ended) - created
        ran = ended - float(started) if started else 0.0
        rows.append(
            (
                lsf_id(job),
                dialect.user()[:7],
                job["name"][:9],
                str(int(pend)),
                "0",
                str(int(ran)),
                "0",
                "0",
                "0",
                str(int(pend + ran)),
            )
        )
    for row in rows:
        sys.stdout.write("  ".join(cell.ljust(7) for cell in row).rstrip() + "\n")
    return LSF_ERROR if missing else 0


def _history(client: Any, job: dict[str, Any]) -> str:
    page = client.read_log(int(job["id"]), kinds=["SYSTEM"])
    lines = [
        f"\nJob <{lsf_id(job)}>, Job Name <{job['name']}>, User <{dialect.user()}>, "
        f"Status <{states.words(job).lsf}>, Queue <{job['queue']}>\n"
    ]
    for entry in page["entries"]:
        lines.append(f"{dialect.ctime(entry['time'])}: {entry['text'].rstrip()};\n")
    return "".join(lines)


# ---- entry points ---------------------------------------------------------------------


bsub_main = dialect.entry("bsub", bsub)
bjobs_main = dialect.entry("bjobs", bjobs)
bkill_main = dialect.entry("bkill", bkill)
bpeek_main = dialect.entry("bpeek", bpeek)
bhist_main = dialect.entry("bhist", bhist)
COMMANDS = {
    "bsub": bsub_main,
    "bjobs": bjobs_main,
    "bkill": bkill_main,
    "bpeek": bpeek_main,
    "bhist": bhist_main,
}
