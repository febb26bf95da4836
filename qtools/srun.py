"""srun inside a job: a job step's tasks, on the job's machine.

    srun [-n N] [-o PATTERN] [-e PATTERN] [-i FILE] [-l] [-u] [other options] COMMAND [ARGS...]

Scripts written for Slurm start their work with srun (and tools such as submitit write
it into every job). A hyper job runs on one machine, so srun here starts the step's N
tasks (``-n``, else the job's ``SLURM_NTASKS``, else 1) as processes beside each other,
each with the variables Slurm gives a task (``SLURM_PROCID``, ``SLURM_LOCALID``,
``SLURM_STEP_ID``...), its output where ``-o``/``-e`` say (Slurm's filename patterns,
with ``%t`` the task and ``%s`` the step), and exits with the highest exit code of its
tasks, as Slurm's does. Options that place tasks across machines, bind CPUs or pick an
MPI are taken and have nothing to do; so has ``-l`` (no labels are written). Outside
a job there is no allocation to run a step in: srun says so, and that ``sbatch --wrap``
runs one command as a job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import subprocess
import sys

from hyper.errors import UsageError
from hyper.jobspec import expand_output_pattern
from qtools import dialect

# srun options that take a value (as `-x V`, `-xV`, `--opt V` or `--opt=V`); of them only
# -n, -o, -e, -i and -J change what this srun does
VALUED = {
    "-n": "--ntasks", "-o": "--output", "-e": "--error", "-i": "--input",
    "-J": "--job-name", "-N": "--nodes", "-c": "--cpus-per-task", "-p": "--partition",
    "-t": "--time", "-m": "--distribution", "-w": "--nodelist", "-x": "--exclude",
    "-G": "--gpus", "-C": "--constraint", "-A": "--account", "-D": "--chdir",
    "-W": "--wait",
}  # fmt: skip
LONG_VALUED = set(VALUED.values()) | {
    "--mem", "--mem-per-cpu", "--mem-per-gpu", "--gres", "--gpus-per-task",
    "--gpus-per-node", "--ntasks-per-node", "--cpu-bind", "--mpi", "--export",
    "--signal", "--qos", "--comment", "--open-mode", "--distribution", "--threads-per-core",
    "--hint", "--het-group", "--network", "--reservation", "--tres-per-task", "--cpu-freq",
    "--gpu-bind", "--mem-bind", "--ntasks-per-core", "--ntasks-per-socket", "--cpus-per-gpu",
    "--jobid", "--cores-per-socket", "--sockets-per-node", "--nodefile", "--relative",
    "--switches", "--begin", "--deadline", "--dependency", "--licenses", "--prolog",
    "--epilog", "--task-prolog", "--task-epilog", "--container", "--wckey", "--nice",
}  # fmt: skip
ALIASES = {"--tasks-per-node": "--ntasks-per-node"}  # sbatch(1) and srun(1) name it so too
FLAGS = {
    "-l": "--label", "-u": "--unbuffered", "-Q": "--quiet", "-v": "--verbose",
    "-X": "--disable-status", "-E": "--preserve-env", "-Z": "--no-allocate",
    "-K": "--kill-on-bad-exit",  # its optional value only as -K=N or -K1
    "-k": "--no-kill", "-H": "--hold", "-s": "--oversubscribe",
}  # fmt: skip
LONG_FLAGS = set(FLAGS.values()) | {
    "--exclusive", "--overlap", "--overcommit", "--oversubscribe", "--pty", "--whole",
    "--exact", "--spread-job", "--propagate", "--multi-prog", "--test-only",
}  # fmt: skip
STEP_FILE = "hyper-srun-steps"  # a user's folder in TMPDIR: how many steps each job started


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """srun's options (by long name) and the command with its arguments."""
    options: dict[str, str] = {}
    words = list(argv)
    while words and words[0].startswith("-") and words[0] != "-":
        word = words.pop(0)
        if word == "--":
            break
        name, equals, value = word.partition("=")
        name = ALIASES.get(name, name)
        if name in FLAGS or name in LONG_FLAGS:
            options[FLAGS.get(name, name)] = value
            continue
        if _clustered(word):  # -vv, -lu, -K1
            options.update((FLAGS[f"-{letter}"], "") for letter in word[1:] if letter.isalpha())
            continue
        if name in LONG_VALUED or (name in VALUED and equals):
            long = VALUED.get(name, name)
        elif word[:2] in VALUED:
            long, equals, value = VALUED[word[:2]], word[2:], word[2:]
        else:
            raise UsageError(f"unrecognized option '{word}'")
        if not equals:
            if not words:
                raise UsageError(f"option '{word}' requires an argument")
            value = words.pop(0)
        options[long] = value
    if not words:
        raise UsageError("no command to run (srun [options] COMMAND [ARGS...])")
    return options, words


def _clustered(word: str) -> bool:
    """Short flags written together (-vv, -lu), the last maybe with its number (-K1)."""
    letters = word[1:].rstrip("0123456789")
    return (
        not word.startswith("--")
        and len(word) > 2
        and bool(letters)
        and all(f"-{letter}" in FLAGS for letter in letters)
    )


def _count(options: dict[str, str]) -> int:
    said = (
        options.get("--ntasks")
        or options.get("--ntasks-per-node")  # one node here: the tasks on it
        or os.environ.get("SLURM_NTASKS")
        or "1"
    )
    try:
        tasks = int(said)
    except ValueError:
        raise UsageError(f"invalid number of tasks: {said!r}") from None
    if not 1 <= tasks <= 4096:
        raise UsageError(f"invalid number of tasks: {tasks} (1 to 4096 on one machine)")
    return tasks


def _next_step() -> int:
    """This job's next step number: 0, 1, 2... for its successive sruns, counted in a
    file of this attempt's (its worker, job and attempt in its name) in a folder only this
    user may write, opened without following a link: a shared /tmp is everyone's, and a
    link planted at a name others can guess would have had a job overwrite its target."""
    env = os.environ
    folder = _step_folder()
    attempt = (env.get("HYPER_WORKER_ID", ""), env["SLURM_JOB_ID"], env.get("HYPER_ATTEMPT", ""))
    path = os.path.join(folder, ".".join(attempt))
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as error:  # a link in its place (ELOOP): never followed
        raise UsageError(f"cannot count steps in {path}: {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two sruns started at once take two numbers
        try:
            step = int(os.read(fd, 32) or 0)
        except ValueError:
            step = 0
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(step + 1).encode(), 0)
    finally:
        os.close(fd)
    return step


def _step_folder() -> str:
    """The folder of this user's alone where srun counts steps: in TMPDIR (or /tmp), else,
    where another user took that name first, in the user's own ~/.cache."""
    places = (
        os.path.join(os.environ.get("TMPDIR") or "/tmp", f"{STEP_FILE}-{os.getuid()}"),
        os.path.join(os.path.expanduser("~"), ".cache", "hyper", "srun-steps"),
    )
    for folder in places:
        with contextlib.suppress(OSError):
            os.makedirs(folder, 0o700, exist_ok=True)
        try:
            found = os.lstat(folder)
        except OSError:
            continue
        owner, mode = found.st_uid, found.st_mode
        if stat.S_ISDIR(mode) and owner == os.getuid() and not mode & 0o077:
            return folder
    raise UsageError(f"no folder of this user's alone to count srun's steps in: {places[0]}")


def _output(pattern: str | None, step: int, task: int) -> str | None:
    if not pattern or pattern == "none":
        return None if not pattern else os.devnull
    env = os.environ
    job_id = int(env["SLURM_JOB_ID"])
    index = env.get("SLURM_ARRAY_TASK_ID")
    return expand_output_pattern(
        pattern,
        job_id=job_id,
        array_id=int(env.get("SLURM_ARRAY_JOB_ID") or job_id),
        index=int(index) if index else None,
        name=env.get("SLURM_JOB_NAME", ""),
        user=dialect.user(),
        step=str(step),
        task=task,
    )


def _task_environment(tasks: int, step: int, task: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task), "SLURM_NODEID": "0",
        "SLURM_STEP_ID": str(step), "SLURM_STEPID": str(step),
        "SLURM_NTASKS": str(tasks), "SLURM_NPROCS": str(tasks),
        "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_STEP_NUM_NODES": "1",
        "SLURM_STEP_TASKS_PER_NODE": str(tasks), "SLURM_TASKS_PER_NODE": str(tasks),
    })  # fmt: skip
    return env


def srun(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"], ["--usage"]):
        sys.stdout.write("Usage: srun [-n N] [-o PATTERN] [-e PATTERN] [-i FILE] [options]"
                         " COMMAND [ARGS...]   (inside a job)\n")  # fmt: skip
        return 0
    if not os.environ.get("SLURM_JOB_ID"):
        raise UsageError(
            "no job to run a step in: srun runs inside a job submitted with sbatch (for one"
            " command as a job: sbatch --wrap 'COMMAND')"
        )
    options, command = parse(argv)
    tasks = _count(options)
    step = _next_step()
    cwd = options.get("--chdir")
    processes: list[subprocess.Popen[bytes]] = []
    opened = []
    try:
        for task in range(tasks):
            files = []
            for option, mode in (("--input", "rb"), ("--output", "ab"), ("--error", "ab")):
                path = _output(options.get(option), step, task)
                files.append(open(path, mode) if path else None)  # noqa: SIM115
            opened += [f for f in files if f is not None]
            stdin, stdout, stderr = files
            if stderr is None and stdout is not None:
                stderr = stdout  # as Slurm: without --error, stderr goes with --output
            processes.append(
                subprocess.Popen(
                    command,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=cwd,
                    env=_task_environment(tasks, step, task),
                )
            )
    except FileNotFoundError as error:
        _end(processes)
        sys.stderr.write(f"srun: error: {command[0]}: {error.strerror}\n")
        return 2
    finally:
        for file in opened:
            file.close()
    return _wait(processes)


def _end(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait()


def _wait(processes: list[subprocess.Popen[bytes]]) -> int:
    """The highest exit code of the tasks (128 + N for a task ended by signal N); a
    SIGTERM or SIGINT to srun goes on to every task."""

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    codes = [process.wait() for process in processes]
    return max(code if code >= 0 else 128 - code for code in codes)


srun_main = dialect.entry("srun", srun)
