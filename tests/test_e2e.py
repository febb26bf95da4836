"""End to end: a real daemon, real worker processes, the shell tools as a user runs them."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyper import config, local_host
from hyper.errors import EXIT_CANCELLED, EXIT_UNREACHABLE
from tests.conftest import BIN, ROOT, LocalHost, running_local_host

pytestmark = pytest.mark.e2e

Q = ["-q", "sample-queue-1", "-d", "sample-def-1"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # it ended and was reaped as we looked
        return False


@pytest.mark.smoke
def test_example_job_runs_and_prints(local: LocalHost) -> None:
    example = str(ROOT / "qsub-example-file.sh")
    job_id = local.ok("qsub", "--wait", "-p", '{"${SECONDS_TO_RUN:-10}": "2"}', example).strip()
    assert job_id.isdigit()
    output = local.ok("qlog", job_id)
    assert f"hello from job {job_id} (example-job-name)" in output
    assert "2 seconds\ndone\n" in output
    record = local.job(job_id)
    assert (record["status"], record["exit_code"], record["retries_left"]) == ("Successful", 0, 2)


def test_qlog_gives_a_jobs_characters_back_whatever_the_locale(local: LocalHost) -> None:
    """A job printing a euro sign and a Latin-1 byte (kept as U+FFFD), read with qlog
    whose locale cannot encode either: the job's UTF-8 comes back, not a traceback."""
    local.script("euro.sh", 'printf "caf\\xe9\\n"\necho "price: 5 €"\n')
    job_id = local.ok("qsub", "--wait", *Q, "euro.sh").strip()
    for encoding in ("ascii", "latin-1"):
        env = {**local.env, "PYTHONIOENCODING": encoding}
        assert local.ok("qlog", job_id, env=env) == "caf�\nprice: 5 €\n"


def test_an_output_file_that_cannot_be_written_leaves_the_job_and_its_log_whole(
    local: LocalHost,
) -> None:
    """-o /dev/full (a full disk, a FIFO whose reader left): the job runs to its end,
    qlog keeps all it printed and says once that the file could not be written. A FIFO
    no process reads is refused at the job's start, at once, instead of holding it."""
    local.script("chat.sh", 'echo "line one"\necho "an error" >&2\nsleep 0.2\necho "last"\n')
    job_id = local.ok("qsub", "--wait", *Q, "-o", "/dev/full", "chat.sh").strip()
    record = local.job(job_id)
    assert (record["status"], record["exit_code"], record["attempt"]) == ("Successful", 0, 1)
    log = local.ok("qlog", job_id)
    assert log.startswith("line one\nhyper: cannot write /dev/full: No space left on device")
    assert log.endswith("an error\nlast\n")
    os.mkfifo(local.cwd / "nobody-reads")
    started = time.monotonic()
    job_id = local.sh("qsub", "--wait", *Q, "-o", "nobody-reads", "chat.sh").out.strip()
    record = local.job(job_id)
    assert time.monotonic() - started < 20
    assert record["status"] == "Failed"
    assert "cannot open its output file" in (record["reason"] or "")


def test_output_files_in_a_folder_every_user_may_write_are_never_another_users(
    local: LocalHost, tmp_path: Path
) -> None:
    """A sticky folder all may write (/tmp) on a machine without the kernel's
    protected_symlinks: another user's link there, at a job's -o path, had a root-run
    host overwrite its target (/etc's files); another user's file there got the job's
    stderr. Both are refused now, as that kernel setting would; the user's own link is
    followed, and a new file is made."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim.conf"
    victim.write_text("keep\n")
    (shared / "planted.out").symlink_to(victim)
    os.chown(shared / "planted.out", 65534, 65534, follow_symlinks=False)  # nobody's
    theirs = shared / "theirs.err"
    theirs.write_text("their own\n")  # refused before anything of it is cut
    theirs.chmod(0o666)
    os.chown(theirs, 65534, 65534)
    local.script("secret.sh", "echo secret\necho secret-error >&2\n")
    for flags in (["-o", str(shared / "planted.out")],
                  ["-o", str(shared / "ok.out"), "-e", str(theirs)]):  # fmt: skip
        job_id = local.sh("qsub", "--wait", *Q, *flags, "secret.sh").out.strip()
        record = local.job(job_id)
        assert record["status"] == "Failed", record
        assert "another user's" in record["reason"], record
        assert "in a folder all may write" in record["reason"], record
    assert victim.read_text() == "keep\n" and theirs.read_text() == "their own\n"
    job_id = local.sh("qsub", "--wait", *Q, "-o", str(theirs), "secret.sh").out.strip()
    assert local.job(job_id)["status"] == "Failed" and theirs.read_text() == "their own\n"
    mine = tmp_path / "mine.txt"
    (shared / "mine.out").symlink_to(mine)  # the user's own link: followed
    local.ok("qsub", "--wait", *Q, "-o", str(shared / "mine.out"), "secret.sh")
    local.ok("qsub", "--wait", *Q, "-o", str(shared / "new.out"), "secret.sh")
    assert mine.read_text() == (shared / "new.out").read_text() == "secret\nsecret-error\n"


def test_stdout_carries_only_the_id_and_the_job_sees_its_environment(local: LocalHost) -> None:
    local.script(
        "env.sh",
        '#HYPER -n envjob\necho "$HYPER_JOB_ID|$HYPER_JOB_NAME|$HYPER_QUEUE|'
        '$HYPER_ATTEMPT|$HYPER_SUBMIT_DIR|$PWD|${HYPER_API_KEY:-nokey}"\necho oops >&2\n',
    )
    result = local.sh("qsub", "--wait", *Q, "env.sh")
    assert result.code == 0, result.err
    job_id = result.out.strip()
    assert result.out == f"{job_id}\n"
    line = local.ok("qlog", "-t", "STDOUT", job_id).strip()
    assert line == f"{job_id}|envjob|sample-queue-1|1|{local.cwd}|{local.cwd}|nokey"
    assert local.ok("qlog", "-t", "STDERR", job_id) == "oops\n"


def test_jobs_find_hypers_commands_and_python(
    hyper_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the daemon was started with a PATH that lacks them (the venv not
    activated), after the job's own PATH."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with running_local_host(hyper_home, tmp_path / "work") as local:
        local.script("which.sh", 'echo "$(command -v hyper)|$HYPER_WORKER_PYTHON|$PATH"\n')
        job_id = local.ok("qsub", "--wait", *Q, "which.sh").strip()
        hyper, python, path = local.ok("qlog", "-t", "STDOUT", job_id).strip().split("|")
    assert hyper == str(BIN / "hyper") and Path(python).parent == BIN
    assert path == f"/usr/bin:/bin:{BIN}"


def test_shebang_is_respected(local: LocalHost) -> None:
    local.script(
        "py.sh", "#!/usr/bin/env python3\nimport sys\nprint('python', sys.version_info[0])\n"
    )
    job_id = local.ok("qsub", "--wait", *Q, "py.sh").strip()
    assert local.ok("qlog", job_id) == "python 3\n"


@pytest.mark.smoke
def test_failure_is_retried_then_fails_with_its_code(local: LocalHost) -> None:
    local.script("fail.sh", "echo attempt $HYPER_ATTEMPT\nexit 3\n")
    result = local.sh("qsub", "--wait", "-r", "2", *Q, "fail.sh")
    assert result.code == 3
    job_id = result.out.strip()
    record = local.job(job_id)
    assert (record["status"], record["exit_code"], record["attempt"]) == ("Failed", 3, 3)
    system = local.ok("qlog", "-t", "SYSTEM", job_id)
    assert [n for n in (1, 2, 3, 4) if f"attempt {n} started" in system] == [1, 2, 3]
    assert "attempt 3 exited with code 3; failed" in system
    assert local.ok("qlog", job_id) == "attempt 1\nattempt 2\nattempt 3\n"


def test_retry_then_success(local: LocalHost) -> None:
    local.script("flaky.sh", '[ "$HYPER_ATTEMPT" -ge 2 ] || exit 9\necho ok\n')
    result = local.sh("qsub", "--wait", "-r", "1", *Q, "flaky.sh")
    assert result.code == 0
    assert local.job(result.out.strip())["attempt"] == 2


@pytest.mark.smoke
def test_qdel_stops_a_running_job_within_two_seconds(local: LocalHost) -> None:
    local.script("sleep.sh", "sleep 600 &\necho $! > sleep.pid\necho $$ > shell.pid\nwait\n")
    job_id = local.ok("qsub", *Q, "sleep.sh").strip()
    local.wait_for(
        lambda: (
            (local.cwd / "sleep.pid").exists()
            and (local.cwd / "shell.pid").exists()
            and local.job(job_id)["status"] == "Running"
        ),
        what="the job to start",
    )
    pids = [int((local.cwd / f).read_text()) for f in ("sleep.pid", "shell.pid")]
    assert all(alive(p) for p in pids)
    started = time.monotonic()
    local.ok("qdel", job_id)
    while any(alive(p) for p in pids):
        assert time.monotonic() - started < 2.0, "the job outlived qdel by 2 s"
        time.sleep(0.02)
    record = local.wait_finished(job_id)
    assert record["status"] == "Cancelled"


def test_qdel_of_waiting_jobs_means_they_never_start(local: LocalHost) -> None:
    cores = os.cpu_count() or 1
    local.script("block.sh", "touch started.$HYPER_JOB_ID\nsleep 600\n")
    blockers = [local.ok("qsub", *Q, "block.sh").strip() for _ in range(cores)]
    local.wait_for(
        lambda: all((local.cwd / f"started.{b}").exists() for b in blockers),
        what="the blockers to fill the cluster",
    )
    waiting = [local.ok("qsub", *Q, "block.sh").strip() for _ in range(2)]
    ids = local.ok("qstat", "-q", "sample-queue-1", "-f", "waiting", "-o")
    assert ids.split() == waiting
    local.ok("qdel", ids)  # newline separated, as `qdel "$(qstat -o)"` passes them
    local.ok("qdel", *blockers)
    for job_id in waiting + blockers:
        assert local.wait_finished(job_id)["status"] == "Cancelled"
    time.sleep(1.0)
    assert not any((local.cwd / f"started.{w}").exists() for w in waiting)
    assert all(local.job(w)["attempt"] == 0 for w in waiting)


def test_wait_exit_codes(local: LocalHost) -> None:
    local.script("seven.sh", "exit 7\n")
    assert local.sh("qsub", "--wait", *Q, "seven.sh").code == 7
    local.script("long.sh", "sleep 30\n")
    with subprocess.Popen(
        [str(BIN / "qsub"), "--wait", *Q, "long.sh"],
        cwd=local.cwd,
        env=local.env,
        stdout=subprocess.PIPE,
        text=True,
    ) as waiter:
        assert waiter.stdout is not None
        job_id = waiter.stdout.readline().strip()
        local.wait_for(lambda: local.job(job_id)["status"] == "Running", what="the job to run")
        local.ok("qdel", job_id)
        assert waiter.wait(timeout=15) == EXIT_CANCELLED


def test_follow_streams_output_while_the_job_runs(local: LocalHost) -> None:
    local.script("slow.sh", "for i in 1 2 3; do echo line $i; sleep 0.7; done\n")
    job_id = local.ok("qsub", *Q, "slow.sh").strip()
    with local.follow(job_id) as follower:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert first == "line 1\n"
        assert local.job(job_id)["status"] == "Running"  # it arrived before the job ended
        rest = follower.stdout.read()
        assert follower.wait(timeout=15) == 0
    assert rest == "line 2\nline 3\n"
    assert local.job(job_id)["status"] == "Successful"


def test_two_hundred_jobs_in_a_loop(local: LocalHost) -> None:
    local.script("tiny.sh", "echo $HYPER_JOB_ID\n")
    qsub = f"{BIN}/qsub -q sample-queue-1 -d sample-def-1 tiny.sh"
    loop = f"for i in $(seq 200); do {qsub} || exit 1; done"
    done = subprocess.run(
        ["bash", "-c", loop],
        cwd=local.cwd,
        env=local.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    ids = done.stdout.split()
    assert len(set(ids)) == 200

    def totals() -> str:
        return local.ok("qstat", "-q", "sample-queue-1").splitlines()[-1]

    local.wait_for(lambda: "Successful: 200" in totals(), timeout=120, what="200 successes")
    assert totals() == (
        "Total: 200  Waiting: 0  Blocked: 0  Held: 0  Running: 0  Successful: 200  Failed: 0"
        "  Cancelled: 0"
    )


def test_daemon_killed_with_jobs_in_flight(local: LocalHost) -> None:
    local.script("mid.sh", "echo start $HYPER_JOB_ID\nsleep 2\necho end $HYPER_JOB_ID\n")
    ids = [local.ok("qsub", *Q, "mid.sh").strip() for _ in range(4)]
    local.wait_for(lambda: local.job(ids[0])["status"] == "Running", what="a job to run")
    os.kill(local.daemon_pid(), signal.SIGKILL)
    listing = local.ok("qstat")  # finds the daemon down and starts it again
    assert all(i in listing.split() for i in ids)
    for job_id in ids:
        record = local.wait_finished(job_id, timeout=60)
        assert record["status"] == "Successful"
        assert local.ok("qlog", job_id) == f"start {job_id}\nend {job_id}\n"


def test_stopping_the_host_ends_its_workers_long_poll_instead_of_cutting_it(
    local: LocalHost,
) -> None:
    local.script("x.sh", "true\n")
    local.ok("qsub", "--wait", *Q, "x.sh")  # its worker now waits for more in a long-poll
    assert local_host.stop(local.config)
    log = (local.data_dir / local_host.LOG_FILE).read_text()
    assert "host local stopped" in log
    assert " ERROR " not in log and "graceful shutdown exceeded" not in log, log[-3000:]


def test_a_worker_that_left_while_the_host_was_stopped_is_forgotten_at_its_start(
    local: LocalHost,
) -> None:
    """It could not tell the host it left: its slot is freed at the first tick, not
    after a lease of silence, so the next job starts at once."""
    local.script("x.sh", "true\n")
    local.ok("qsub", "--wait", *Q, "x.sh")
    assert local_host.stop(local.config)
    (pid,) = local.worker_pids()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # it would leave by itself, after its patience
    local.wait_for(lambda: not alive(pid), 10, "the worker to be gone")
    local_host.start(config.load_host("local"))

    def state() -> str:
        with contextlib.closing(sqlite3.connect(local.data_dir / "hyper.db")) as db:
            (row,) = db.execute("SELECT state FROM workers WHERE pid = ?", (pid,))
        return str(row[0])

    local.wait_for(lambda: state() == "EXITED", 10, "the worker to be forgotten")


def test_bad_input_gets_one_line_and_changes_nothing(local: LocalHost) -> None:
    local.script("noqueue.sh", "echo hi\n")
    cases = [
        (["qsub", "-q", "nosuch", "noqueue.sh"], "existing queues: sample-queue-1"),
        (
            ["qsub", "-q", "nosuch", "-d", "sample-def-1", "noqueue.sh"],
            "existing queues: sample-queue-1",
        ),
        (
            ["qsub", "-q", "sample-queue-1", "-d", "sample-def", "noqueue.sh"],
            "did you mean 'sample-def-1'",
        ),
        (["qsub", "-q"], "expected one argument"),
        (["qsub", *Q, "missing.sh"], "no such file"),
        (["qdel", "12x"], "not a job id"),
        (["qdel", "999999"], "unknown job id"),
        (["qdel"], "say which jobs"),
        (["qstat", "-f", "bogus"], "unknown status"),
        (["qstat", "-i", "999999"], "unknown job id"),
        (["qlog", "999999"], "unknown job id"),
        (["qlog", "1", "-t", "NOPE"], "unknown log type"),
    ]
    for argv, message in cases:
        result = local.sh(*argv)
        assert result.code == 2, (argv, result)
        assert result.err.count("\n") == 1 and message in result.err, (argv, result.err)
        assert result.out == ""
    assert local.ok("qstat").strip() == (
        "Total: 0  Waiting: 0  Blocked: 0  Held: 0  Running: 0  Successful: 0  Failed: 0"
        "  Cancelled: 0"
    )


def test_unreachable_host_is_one_line_with_its_own_code(local: LocalHost) -> None:
    local.ok(
        "hyper",
        "hosts",
        "import-deployment",
        "--name",
        "gone",
        "--url",
        "http://127.0.0.1:9",
        "--api-key-file",
        "-",
        input="some-key\n",
    )
    result = local.sh("qstat", "--host", "gone")
    assert result.code == EXIT_UNREACHABLE
    assert result.err.count("\n") == 1 and "unreachable" in result.err


def test_wrong_key_is_refused(local: LocalHost) -> None:
    local.ok(
        "hyper",
        "hosts",
        "import-deployment",
        "--name",
        "badkey",
        "--url",
        local.config.url,
        "--api-key-file",
        "-",
        input="wrong\n",
    )
    result = local.sh("qstat", "--host", "badkey")
    assert result.code == 77 and "refused the API key" in result.err


@contextlib.contextmanager
def first_use(
    hyper_home: Path, cwd: Path, argv: list[str]
) -> Iterator[tuple[subprocess.CompletedProcess[str], dict[str, str]]]:
    """`argv` run where no host exists yet (its first command starts the local host),
    with the environment it ran in; the host deleted afterwards."""
    env = {**os.environ, "HYPER_HOME": str(hyper_home)}
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    try:
        yield done, env
    finally:
        subprocess.run([str(BIN / "hyper"), "hosts", "delete-host", "--yes"], env=env, timeout=30)


def test_first_use_creates_the_local_host(hyper_home: Path, tmp_path: Path) -> None:
    qsub = [str(BIN / "qsub"), "--wait", "-p", '{"${SECONDS_TO_RUN:-10}": "1"}',
            str(ROOT / "qsub-example-file.sh")]  # fmt: skip
    with first_use(hyper_home, tmp_path, qsub) as (done, env):
        assert done.returncode == 0, done.stderr
        assert "created the local host 'local'" in done.stderr
        out = subprocess.run(
            [str(BIN / "qlog"), done.stdout.strip()],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert out.endswith("1 seconds\ndone\n")


def test_jobs_start_with_no_signal_ignored(hyper_home: Path, tmp_path: Path) -> None:
    """A host first started from a script's background job, where SIGINT and SIGQUIT are
    ignored, still starts its jobs with every signal at its default (`qsig -s INT`)."""
    (tmp_path / "signals.sh").write_text("grep SigIgn /proc/self/status\n")
    started_ignoring = f"trap '' INT QUIT; exec {BIN}/qsub --wait -o signals.out signals.sh"
    with first_use(hyper_home, tmp_path, ["bash", "-c", started_ignoring]) as (done, _):
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "signals.out").read_text() == "SigIgn:\t0000000000000000\n"
