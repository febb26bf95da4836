"""srun inside a job (qtools.srun), as a Slurm script calls it: the step's tasks side by
side with the variables Slurm gives each, their output where -o/-e say, the highest
exit code, successive steps numbered, and one line on stderr for what it cannot do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qtools.dialect_path import folder
from qtools.srun import parse

JOB = {"SLURM_JOB_ID": "41", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "1"}


def srun(
    tmp_path: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = folder("slurm", root=tmp_path / "dialects") / "srun"
    environment = {**os.environ, "TMPDIR": str(tmp_path), **JOB, **(env or {})}
    return subprocess.run([str(command), *argv], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_a_steps_tasks_run_side_by_side_with_their_own_variables(tmp_path: Path) -> None:
    report = "echo $SLURM_PROCID $SLURM_LOCALID $SLURM_NTASKS $SLURM_STEP_ID $SLURM_JOB_ID"
    done = srun(tmp_path, "-n", "3", "--output", "out-%j.%s-%t.txt", "--unbuffered",
                "sh", "-c", report)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for task in range(3):
        assert (tmp_path / f"out-41.0-{task}.txt").read_text() == f"{task} {task} 3 0 41\n"
    # the next srun of the job is its step 1; without -o its tasks write to srun's own
    again = srun(tmp_path, "-n2", "-u", "sh", "-c", "echo $SLURM_STEP_ID")
    assert again.stdout == "1\n1\n"


def test_step_numbers_are_kept_where_no_other_user_can_plant_a_link(tmp_path: Path) -> None:
    """They were kept in TMPDIR/hyper-srun-steps-JOBID, a name any user of a shared /tmp
    could guess: a link planted there had a job truncate its target."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "hyper-srun-steps-41").symlink_to(target)  # the old name: not used
    env = {"HYPER_WORKER_ID": "w1", "HYPER_ATTEMPT": "1"}
    assert srun(tmp_path, "sh", "-c", "echo $SLURM_STEP_ID", env=env).stdout == "0\n"
    assert target.read_text() == "keep me\n"
    folder = tmp_path / f"hyper-srun-steps-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "w1.41.1").read_text() == "1"
    # another attempt of the same job counts from 0; a link in its place is never followed
    (folder / "w1.41.2").symlink_to(target)
    planted = srun(tmp_path, "true", env={**env, "HYPER_ATTEMPT": "2"})
    assert planted.returncode != 0 and planted.stderr.count("\n") == 1
    assert "cannot count steps in" in planted.stderr and target.read_text() == "keep me\n"
    folder.chmod(0o777)  # a folder others may write (made first by another user) is passed
    home = tmp_path / "home"  # over for one in the user's own home
    shared = srun(tmp_path, "sh", "-c", "echo $SLURM_STEP_ID", env={**env, "HOME": str(home)})
    assert shared.returncode == 0 and shared.stdout == "0\n", shared
    assert (home / ".cache" / "hyper" / "srun-steps" / "w1.41.1").read_text() == "1"


def test_the_jobs_task_count_is_the_default_and_stderr_follows_output(tmp_path: Path) -> None:
    done = srun(tmp_path, "-o", "all.txt", "sh", "-c", "echo out; echo err >&2",
                env={"SLURM_NTASKS": "2"})  # fmt: skip
    assert done.returncode == 0
    assert sorted((tmp_path / "all.txt").read_text().split()) == ["err", "err", "out", "out"]


def test_the_highest_exit_code_of_the_tasks_is_srun_s(tmp_path: Path) -> None:
    done = srun(tmp_path, "-n", "3", "sh", "-c", "exit $((SLURM_PROCID * 2))")
    assert done.returncode == 4
    killed = srun(tmp_path, "sh", "-c", "kill -TERM $$")
    assert killed.returncode == 128 + 15


def test_placement_options_are_taken_and_the_command_gets_its_own(tmp_path: Path) -> None:
    done = srun(tmp_path, "--mpi=pmix", "--cpu-bind", "cores", "-N1", "--exclusive",
                "-c", "2", "--kill-on-bad-exit", "echo", "-n", "--output", "x")  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "--output x")  # echo's -n, not srun's


def test_binding_verbosity_and_clustered_flags_are_taken_as_slurm_writes_them(
    tmp_path: Path,
) -> None:
    """What submitit (slurm_srun_args=["-vv"]), Parsl's SrunLauncher overrides and GPU
    scripts pass: -vv, -lu, -K1, --gpu-bind, --mem-bind, --ntasks-per-core, --jobid,
    --propagate, --no-kill; --tasks-per-node is --ntasks-per-node, the step's tasks on
    its one node."""
    done = srun(tmp_path, "-vv", "-lu", "-K1", "--gpu-bind=closest", "--mem-bind", "local",
                "--ntasks-per-core=1", "--jobid", "41", "--propagate", "--no-kill",
                "--tasks-per-node=2", "sh", "-c", "echo $SLURM_PROCID")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["0", "1"]


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["echo", "hi"], {"SLURM_JOB_ID": ""}, "srun: no job to run a step in"),
        (["--frobnicate", "echo"], {}, "srun: unrecognized option '--frobnicate'"),
        (["-n"], {}, "srun: option '-n' requires an argument"),
        (["-n", "0", "echo"], {}, "srun: invalid number of tasks: 0"),
        (["-n", "1"], {}, "srun: no command to run"),
        (["no-such-command-here"], {}, "srun: error: no-such-command-here:"),
    ],
)
def test_what_srun_cannot_do_is_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], said: str
) -> None:
    done = srun(tmp_path, *argv, env=env)
    assert done.returncode != 0
    assert done.stderr.startswith(said) and done.stderr.count("\n") == 1, done.stderr


def test_options_are_read_in_every_form() -> None:
    options, command = parse(["-n4", "-o=x.txt", "--error", "e.txt", "-l", "--", "-cmd"])
    assert options == {"--ntasks": "4", "--output": "x.txt", "--error": "e.txt", "--label": ""}
    assert command == ["-cmd"]
