"""What the PBS, LSF and Slurm commands share: finding the jobs they name, the
user and time words they print, and one way to submit.

Submitting in a dialect goes through qsub's own library: the command-line options
become directive lines of that dialect (``#BSUB -q short``), written after the
script's own directive block so that they win over it, as they do in LSF and
Slurm; qsub then reads the script as it reads any script written for that
scheduler. ``#HYPER`` lines in the script still win over both.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from hyper import jobspec
from hyper.errors import HostRejected, NotFound, UsageError
from qtools.common import file_name, read_script_bytes
from qtools.states import FINISHED, UNFINISHED

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing and pathlib cost a command's start
if TYPE_CHECKING:
    from typing import Any

    from hyper.client import HostClient

SHELLS = ("sh", "bash", "zsh", "ksh", "dash")
WAIT_POLL_SECONDS = 20.0


def host_option(argv: list[str]) -> tuple[list[str], str | None]:
    """`--host NAME` (hyper's own option), taken out of the arguments."""
    host = None
    out: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--host" and index + 1 < len(argv):
            host = argv[index + 1]
            index += 2
            continue
        if word.startswith("--host="):
            host = word.partition("=")[2]
        else:
            out.append(word)
        index += 1
    return out, host


def entry(prog: str, body: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """A command's `main`: its arguments (sys.argv's by default) run through `body`."""
    from qtools.common import run

    def main(argv: list[str] | None = None) -> int:
        words = sys.argv[1:] if argv is None else argv
        return run(prog, lambda: body(words), whole_process=argv is None)

    return main


@functools.cache  # asked once per job listed
def user() -> str:
    """Who the jobs belong to: a host's jobs are its owner's, the user running the command."""
    import getpass  # not on a submit's path

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def is_me(names: str | None) -> bool:
    """Whether a user list (`-u a,b`) names the user running the command (`all` does too)."""
    if names is None:
        return True
    wanted = {word.strip() for word in re.split(r"[,\s]+", names) if word.strip()}
    return bool(wanted & {user(), "all", "ALL"}) or str(os.getuid()) in wanted


def job_word(word: str) -> str:
    """A job id as another scheduler writes it, as hyper reads it: `12.server` is 12,
    `12[3].server` task 3 of array 12, as are LSF's `12[3]` and Slurm's `12_3`. An array
    is named by its id alone: `12[]` is refused (`qdel 12[$I]` with I unset must not
    cancel a whole array)."""
    word = word.strip()
    word = re.sub(r"^([0-9]+(?:\[[0-9,:\-]+\]|_[0-9]+)?)\.[\w.-]+$", r"\1", word)
    word = re.sub(r"^([0-9]+)\+[0-9]+$", r"\1", word)  # a Slurm heterogeneous part
    jobspec.parse_selector(word)  # refuse what is not a job id, before anything is sent
    return word


def display_id(job: dict[str, Any]) -> str:
    """A job's id as qsub printed it; an array task's as ARRAY_INDEX (Slurm's form)."""
    if job.get("array_id") is not None:
        return f"{job['array_id']}_{job['array_index']}"
    return str(job["id"])


def fetch_named(
    client: HostClient, words: Sequence[str], *, collapse: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs these ids name, in one request when they all exist, and the ids that name
    no job (said by the caller in its scheduler's words)."""
    ids = list(dict.fromkeys(words))
    try:
        return _listed(client, ids, collapse), []
    except HostRejected as error:
        if "unknown job id" not in str(error):
            raise
    jobs: list[dict[str, Any]] = []
    missing: list[str] = []
    for word in ids:  # one at a time, to tell which ids are unknown
        try:
            jobs += _listed(client, [word], collapse)
        except (HostRejected, NotFound):
            missing.append(word)
    return jobs, missing


def _listed(client: HostClient, ids: list[str], collapse: bool) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 200):
        found += client.iter_jobs(ids=ids[start : start + 200], collapse=collapse)
    return found


def fetch_all(
    client: HostClient,
    *,
    finished: bool,
    collapse: bool,
    queue: str | None = None,
    name: str | None = None,
    since: float | None = None,
) -> list[dict[str, Any]]:
    """Every job that has not finished, and with `finished` also those that have (those
    that ended after `since`, when given)."""
    statuses = list(UNFINISHED) + (list(FINISHED) if finished else [])
    jobs = []
    for job in client.iter_jobs(status=statuses, queue=queue, name=name, collapse=False):
        if since is not None and job["status"] in FINISHED and (job.get("ended") or 0) < since:
            continue
        jobs.append(job)
    if collapse:
        jobs = collapse_arrays(jobs)
    return jobs


def collapse_arrays(jobs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks of an array as one line: the first task of each array stands for it."""
    seen: set[int] = set()
    out = []
    for job in jobs:
        array = job.get("array_id")
        if array is not None:
            if array in seen:
                continue
            seen.add(array)
        out.append(job)
    return out


# ---- words for times -----------------------------------------------------------------


def requested(job: dict[str, Any]) -> tuple[int, int | None, int]:
    """CPUs, memory (MiB, None when not known) and GPUs of a job: what it gets when the
    host said (`resources`, qstat -i), else what it asked (one CPU when it did not say)."""
    found = job.get("resources") or (job.get("options") or {}).get("request") or {}
    mem = found.get("mem_mib")
    return int(found.get("cpus") or 1), int(mem) if mem else None, int(found.get("gpus") or 0)


def clock(seconds: float | None) -> str:
    """HH:MM:SS (hours may pass 99)."""
    total = int(seconds or 0)
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


def elapsed(job: dict[str, Any], now: float | None = None) -> float:
    started = job.get("started")
    if not started:
        return 0.0
    end = job.get("ended") or (now if now is not None else time.time())
    return max(0.0, float(end) - float(started))


def iso(seconds: float | None) -> str:
    """Slurm's times: 2024-05-01T10:00:00, or Unknown."""
    if not seconds:
        return "Unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(seconds)))


def ctime(seconds: float | None) -> str:
    """PBS's and LSF's times: Fri Nov 11 17:57:05 2016."""
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(float(seconds or 0)))


# ---- submitting ----------------------------------------------------------------------


def with_directives(text: str, lines: Sequence[str]) -> tuple[str, set[int]]:
    """The script with `lines` put at the end of its leading comment block (after its
    own directives, so they win), and the numbers of the lines put there."""
    rows = text.splitlines()
    at = 1 if rows and rows[0].startswith("#!") else 0
    end = at
    for number in range(at, len(rows)):
        stripped = rows[number].strip()
        if stripped and not stripped.startswith("#"):
            break
        if stripped:
            end = number + 1
    rows[end:end] = list(lines)
    added = set(range(end + 1, end + 1 + len(lines)))
    return "\n".join(rows) + "\n", added


def with_arguments(text: str, arguments: Sequence[str], prog: str) -> str:
    """The script given `arguments` as $1, $2...: a `set --` line after its directives.
    Only for shell scripts; another interpreter would not read that line."""
    if not arguments:
        return text
    first = text.splitlines()[0] if text else ""
    if first.startswith("#!"):
        words = first[2:].split()
        program = file_name(words[0]) if words else ""
        if program == "env" and len(words) > 1:
            program = words[1]
        if program not in SHELLS:
            raise UsageError(
                f"script arguments are passed to shell scripts only; this one runs {program!r}"
            )
    line = "set -- " + shlex.join(arguments)
    rows = text.splitlines()
    at = 1 if rows and rows[0].startswith("#!") else 0
    for number in range(at, len(rows)):
        stripped = rows[number].strip()
        if stripped and not stripped.startswith("#"):
            at = number
            break
    else:
        at = len(rows)
    rows[at:at] = [line]
    return "\n".join(rows) + "\n"


def script_name(name: str) -> str:
    """A file name for the script, from which qsub takes the job's default name."""
    cleaned = re.sub(r"[/\x00-\x1f\x7f]", "_", name).strip() or "script"
    if set(cleaned) == {"."}:
        cleaned = "script"
    return cleaned[: jobspec.MAX_NAME_LENGTH]


def submit(
    prog: str,
    prefix: str,
    text: str,
    lines: Sequence[str],
    name: str,
    host: str | None,
    *,
    workdir: str | None = None,
) -> tuple[HostClient, int, str]:
    """Submit `text` with directive `lines` added, through qsub's library; the client (still
    open, for a caller that waits), the job id and its queue. Warnings go to stderr
    before the caller prints the id, so that a tool reading both finds the id last."""
    from qtools import qsub
    from qtools.common import connect

    script, added = with_directives(text, lines)
    notes: list[str] = []
    # qsub takes the text as its script: its name (not an option's) names it in messages
    # and gives the job's default name
    path = script_name(name)
    args = qsub.build_parser().parse_args([f"./{path}" if path.startswith("-") else path])
    args.dialect = {"sbatch": "slurm", "bsub": "lsf"}.get(prog, "pbs")  # its lines, of several
    try:
        job = qsub.build_job(args, notes, script=script.encode(), workdir=workdir)
    except UsageError as error:  # told as the option the user gave, when it was one
        raise UsageError(said_as_option(str(error), prefix, added)) from None
    sys.stderr.write("".join(f"{prog}: {said_as_option(n, prefix, added)}\n" for n in notes))
    sys.stderr.flush()
    client = connect(host)
    try:
        qsub.resolve_targets(client, job)
        # the host's default queue and that queue's default definition, where qsub's
        # library fills them in after building the job
        complete = getattr(qsub, "complete_target", None)
        if complete is not None:
            complete(client, job)
        job_id = client.submit([job])[0]
    except BaseException:
        client.close()
        raise
    return client, job_id, str(job["queue"])


def said_as_option(note: str, prefix: str, added: set[int]) -> str:
    """A qsub note or error as the user should read it: what it says of a line this
    command wrote is told as the command line's, and the script's own line numbers as
    they are in the user's script (the written lines shifted those after them)."""
    last = max(added, default=0)

    def line(number: int) -> str:
        return str(number - len(added) if number > last else number)

    match = re.match(rf"(warning: )?line ([0-9]+): {re.escape(prefix)} (.*)$", note)
    if match and int(match.group(2)) in added:
        return f"{match.group(1) or ''}option {match.group(3)}"
    if match:
        note = f"{match.group(1) or ''}line {line(int(match.group(2)))}: {prefix} {match.group(3)}"

    def group(found: re.Match[str]) -> str:
        numbers = [int(word) for word in found.group(1).split(",")]
        own = [line(n) for n in numbers if n not in added]
        said = ["line " + ", ".join(own)] if own else []
        if len(own) < len(numbers):
            said.append("command line")
        return "(" + "; ".join(said) + ")"

    return re.sub(r"\(line ([0-9][0-9, ]*)\)", group, note)


def wait_for(client: HostClient, job_id: int) -> int:
    """Wait until the job (every task of an array) has ended; the exit code to leave with."""
    from hyper.jobs import wait_exit_code

    while True:
        record = client.get_job(job_id, wait=WAIT_POLL_SECONDS)
        counts = record.get("counts") or {record["status"]: 1}
        if not sum(n for s, n in counts.items() if s not in FINISHED):
            highest = record.get("highest_exit_code", record.get("exit_code"))
            return wait_exit_code(counts, highest)


def read_stdin_script(prog: str) -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"give a script: {prog} FILE, or {prog} < FILE")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the script on stdin is not text (invalid UTF-8)") from None


def read_script_file(path: str) -> str:
    data = read_script_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text script (invalid UTF-8)") from None


def split_words(values: Iterable[str], separators: str = r"[,\s]+") -> list[str]:
    return [w for value in values for w in re.split(separators, value) if w]


Printer = Callable[[str], None]
