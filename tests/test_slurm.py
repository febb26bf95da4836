"""Slurm, PBS and LSF pilots without a scheduler: the commands they would run (PBS and LSF
through recording stand-ins on PATH), how their answers are read, the pilot script, and a
pilot's walltime-aware choice of jobs. Against a real Slurm: tests/test_slurm_e2e.py."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from hyper.errors import CommandFailed
from hyper.host_settings import HostSettings
from hyper.launchers.base import LaunchRequest
from hyper.launchers.lsf import LSFLauncher
from hyper.launchers.pbs import PBSLauncher
from hyper.launchers.pilots import PilotJob, PilotState, parse_pilot_id, walltime_limits
from hyper.launchers.slurm import Slurm
from hyper.messages import ClaimedJob
from hyper.models import DefinitionSpec, RegionSpec, ResourceKind
from hyper.store.sqlite import SQLiteStore
from hyper.worker.agent import DEFAULT_TIME_LIMIT_SECONDS, WorkerAgent, WorkerOptions
from tests.helpers import fake_batch


def region(**fields: object) -> RegionSpec:
    return RegionSpec(name="hpc", kind="slurm", **fields)  # type: ignore[arg-type]


def test_sbatch_asks_for_the_definitions_shape_and_the_regions_settings() -> None:
    spec = region(partition="gpu", account="proj1", qos="long", reservation="maint",
                  sbatch_args="--constraint='avx2&ib' --exclusive")  # fmt: skip
    job = PilotJob("hyper-hpc", 5, Path("/d/pilot.sh"), Path("/d"), 90, 4, 8192, 2, spec)
    assert Slurm().submit_command(job) == [
        "sbatch", "--parsable", "--job-name=hyper-hpc", "--array=1-5", "--time=90",
        "--nodes=1", "--ntasks=1", "--cpus-per-task=4", "--mem=8192M",
        "--output=/d/%A_%a.out", "--gpus-per-task=2", "--partition=gpu", "--account=proj1",
        "--qos=long", "--reservation=maint", "--constraint=avx2&ib", "--exclusive",
        "/d/pilot.sh",
    ]  # fmt: skip


def test_squeue_is_read_one_element_per_line() -> None:
    slurm = Slurm()
    out = "7_1|RUNNING|hyper-hpc\n7_2|PENDING|hyper-hpc\n8_1|COMPLETING|hyper-x\n"
    assert slurm.parse_status(out) == {
        "7_1": PilotState.RUNNING, "7_2": PilotState.PENDING, "8_1": PilotState.OTHER,
    }  # fmt: skip
    assert slurm.submitted_id("41;cluster\n") == "41"
    assert slurm.element_id("41", 3) == "41_3"
    assert slurm.status_command("ann")[:4] == ["squeue", "--noheader", "--array", "--user=ann"]


@pytest.mark.parametrize(
    ("worker_id", "found"),
    [
        ("hpc-7_3-a1b2c3", ("hpc", "7_3")),
        ("my-hpc-1-12_10-abcdef", ("my-hpc-1", "12_10")),
        ("pbs1-12[3].server-abcdef", ("pbs1", "12[3].server")),
        ("w-0123456789ab", None),
    ],
)
def test_a_pilots_worker_id_names_its_batch_job(worker_id: str, found: object) -> None:
    assert parse_pilot_id(worker_id) == found


def test_a_pilot_leaves_before_its_walltime() -> None:
    assert walltime_limits(region(pilot_walltime_minutes=60)) == (3600.0, 3480.0)
    assert walltime_limits(region(pilot_walltime_minutes=2)) == (120.0, 108.0)


def test_bad_sbatch_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="quotation"):
        region(sbatch_args="--comment='unclosed")


def put_region(store: SQLiteStore, spec: RegionSpec) -> None:
    store.put_resource("regions", spec.name, spec.model_dump(), "ACTIVE", ["ready"], time.time())


def request(count: int) -> LaunchRequest:
    shape = DefinitionSpec(name="big", vcpus=8, memory_limit_mib=4096, gpu_count=1)
    return LaunchRequest("q1", shape, "hpc", count)


def test_pbs_pilots_are_one_qsub_array(
    tmp_path: Path, store: SQLiteStore, settings: HostSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = fake_batch.install(tmp_path / "pbs", monkeypatch)
    put_region(store, region(partition="workq", account="p1", max_pilots=2))
    launcher = PBSLauncher(settings, store)
    records = launcher.launch(request(5))  # at most 2 at once
    for record in records:
        store.add_worker(record)
    assert [r.id.rsplit("-", 1)[0] for r in records] == [
        "hpc-12[1].pbs-server", "hpc-12[2].pbs-server",
    ]  # fmt: skip
    # a launch asks the batch system first (qstat), and submits only if it answers
    submit = next(call for call in fake_batch.calls(recorded) if call[0] == "-N")
    script = Path(submit[-1])
    assert submit[:-1] == [
        "-N", "hyper-hpc", "-J", "1-2", "-l", "walltime=01:00:00",
        "-l", "select=1:ncpus=8:mem=4096mb:ngpus=1", "-j", "oe",
        "-o", str(settings.data_dir / "pbs" / "hpc"), "-q", "workq", "-A", "p1",
    ]  # fmt: skip
    assert '"hpc-${PBS_JOBID}-' in script.read_text()
    assert launcher.alive(records[0]) is True
    assert launcher.alive(records[1]) is True  # queued: coming capacity
    launcher.stop(records[1])
    assert fake_batch.calls(recorded)[-1] == ["12[2].pbs-server"]  # qdel's argv


def test_lsf_pilots_are_one_bsub_array(
    tmp_path: Path, store: SQLiteStore, settings: HostSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = fake_batch.install(tmp_path / "lsf", monkeypatch)
    put_region(store, region(partition="normal"))
    launcher = LSFLauncher(settings, store)
    records = launcher.launch(request(2))
    submit = next(call for call in fake_batch.calls(recorded) if call[0] == "-J")
    assert submit[:-2] == [
        "-J", "hyper-hpc[1-2]", "-W", "60", "-n", "8", "-R", "span[hosts=1]",
        "-R", "rusage[mem=4096]", "-o", f"{settings.data_dir / 'lsf' / 'hpc'}/%J_%I.out",
        "-gpu", "num=1", "-q", "normal",
    ]  # fmt: skip
    assert submit[-2] == "/bin/bash"
    assert [parse_pilot_id(r.id) for r in records] == [("hpc", "34[1]"), ("hpc", "34[2]")]
    assert '"hpc-${LSB_JOBID}[${LSB_JOBINDEX}]-' in Path(submit[-1]).read_text()
    assert launcher.alive(records[1]) is True  # PEND
    launcher.cancel_region("hpc")
    assert fake_batch.calls(recorded)[-1] == ["-J", "hyper-hpc", "-u", launcher.user, "0"]


def test_the_pilot_script_reads_the_key_from_a_private_file(
    store: SQLiteStore, settings: HostSettings
) -> None:
    spec = region(worker_python="/shared/venv/bin/python", pilot_walltime_minutes=30)
    text = PBSLauncher(settings, store).script(spec, request(1), "hpc-", "abcdef")
    assert settings.api_key not in text
    key = settings.data_dir / "pbs" / "pilot-key"
    assert key.read_text() == settings.api_key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "exec /shared/venv/bin/python -m hyper.worker --url http://127.0.0.1:9" in text
    assert "--walltime-seconds 1680.0" in text


def test_a_failed_submit_fails_the_region_in_the_batch_systems_words(
    tmp_path: Path, store: SQLiteStore, settings: HostSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qsub").write_text("#!/bin/sh\necho 'qsub: Unknown queue' >&2\nexit 170\n")
    (bin_dir / "qstat").write_text("#!/bin/sh\necho '{\"Jobs\": {}}'\n")  # it answers
    for name in ("qsub", "qstat"):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    put_region(store, region(partition="nope"))
    assert PBSLauncher(settings, store).launch(request(1)) == []
    record = store.get_resource(ResourceKind.REGION.value, "hpc")
    assert record is not None and record.status == "FAILED"
    assert record.log[-1] == "failed: qsub: Unknown queue"


def test_a_pilot_starts_only_jobs_that_fit_in_its_walltime(tmp_path: Path) -> None:
    options = WorkerOptions("p", "q", "d", tmp_path, walltime_seconds=100.0)
    agent = WorkerAgent(None, options)  # type: ignore[arg-type]  # no host is asked
    born = time.monotonic()

    def limited(seconds: int | None) -> ClaimedJob:
        return ClaimedJob(1, 1, "j", "q", "d", time_limit=seconds)

    assert agent._fits(limited(10_000), born)  # the first job always runs
    assert not agent._fits(limited(200), born)
    assert agent._fits(limited(90), born)
    assert not agent._fits(limited(90), born - 20)  # 80 s left
    assert not agent._fits(limited(None), born)  # no limit: the default
    assert DEFAULT_TIME_LIMIT_SECONDS > 100


def test_the_region_walkthrough_asks_the_slurm_questions_only_for_slurm() -> None:
    from hyper.cli import questions
    from hyper.cli.walkthrough import walk

    given = {"name": "hpc", "kind": "slurm", "partition": "short", "max_pilots": "4",
             "pilot_pending_minutes": "0.5"}  # fmt: skip
    answers = walk(questions.REGION, given, yes=True, refs=lambda kind: [], prompt=False)
    assert answers["partition"] == "short" and answers["max_pilots"] == 4
    assert answers["pilot_walltime_minutes"] == 60 and "import_vpc" not in answers
    spec = RegionSpec.model_validate(answers)
    assert spec.pilot_pending_minutes == 0.5
    static = walk(questions.REGION, {"name": "pool", "kind": "static"}, yes=True,
                  refs=lambda kind: [], prompt=False)  # fmt: skip
    assert "partition" not in static


@pytest.mark.parametrize("name", ["squeue", "qsub", "bjobs"])
def test_a_batch_systems_command_is_never_one_of_hypers_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A host started with a dialect's folder (or hyper's own bin, with its qsub) first
    on PATH ran itself for its region's Slurm, PBS or LSF, and waited on itself."""
    from hyper.commands import run
    from qtools.dialect_path import folder

    dialects = tmp_path / "dialects"
    for dialect in ("slurm", "pbs", "lsf"):
        folder(dialect, dialects)
    system = tmp_path / "system"
    system.mkdir()
    real = system / name
    real.write_text(f'#!/bin/sh\necho the batch system: {name} "$@"\n')
    real.chmod(0o755)
    found = [str(dialects / d) for d in ("slurm", "pbs", "lsf")]
    monkeypatch.setenv("PATH", ":".join([*found, str(system), "/usr/bin", "/bin"]))
    assert run([name, "-x"]) == f"the batch system: {name} -x\n"
    monkeypatch.setenv("PATH", ":".join(found))  # hyper's own alone: not found, not run
    with pytest.raises(CommandFailed) as failed:
        run([name, "-x"])
    assert failed.value.code == 127 and f"{name}: not found" in str(failed.value)


def _slurm_commands(folder: Path, monkeypatch: pytest.MonkeyPatch, squeue: str) -> None:
    """sbatch and squeue stand-ins first on PATH: sbatch submits array 77, squeue as given."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in (("sbatch", "echo 77"), ("squeue", squeue)):
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")


def test_a_slow_batch_system_never_holds_the_host(
    tmp_path: Path, store: SQLiteStore, settings: HostSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Slurm controller that stopped answering held every scheduler tick on squeue, for up
    to 60 s each: every request to the host waited, and jobs whose leases it could not
    renew meanwhile were ended by their own workers. The poll runs beside the host now;
    no pilot is submitted while it is late (sbatch would wait as long)."""
    from hyper.launchers.slurm import SlurmLauncher

    listed = "echo '77_1|RUNNING|hyper-hpc'"
    _slurm_commands(tmp_path / "bin", monkeypatch, listed)
    put_region(store, region(partition="p"))
    launcher = SlurmLauncher(settings, store)
    (pilot,) = launcher.launch(request(1))
    assert launcher.alive(pilot) is True
    _slurm_commands(tmp_path / "bin", monkeypatch, f"sleep 3\n{listed}")
    time.sleep(2.5)  # the last answer is no longer fresh
    began = time.monotonic()
    assert launcher.launch(request(1)) == []  # no answer within its patience: no submit
    assert launcher.alive(pilot) is True  # judged by the last answer meanwhile
    assert launcher.alive(pilot) is True
    assert time.monotonic() - began < 1.5  # one wait of 1 s at most, not one per question
    deadline = time.monotonic() + 10
    while not launcher.launch(request(1)):
        assert time.monotonic() < deadline, "no pilot once it answered again"
        time.sleep(0.2)


def test_no_pilot_is_submitted_while_the_batch_system_does_not_answer(
    tmp_path: Path, store: SQLiteStore, settings: HostSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor is it refused for good: with no pilot left to watch, a launch asks itself."""
    from hyper.launchers.slurm import SlurmLauncher

    _slurm_commands(tmp_path / "bin", monkeypatch, "echo 'connection refused' >&2\nexit 1")
    put_region(store, region(partition="p"))
    launcher = SlurmLauncher(settings, store)
    assert launcher.launch(request(1)) == []  # its squeue failed: its sbatch is not asked
    _slurm_commands(tmp_path / "bin", monkeypatch, "echo '77_1|PENDING|hyper-hpc'")
    (pilot,) = launcher.launch(request(1))
    assert launcher.alive(pilot) is True


def test_a_pending_pilot_no_job_waits_for_is_cancelled(
    tmp_path: Path, store: SQLiteStore, settings: HostSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`qdel` of the only waiting job left its PENDING pilot in Slurm's queue for the
    region's pending limit (30 min), to hold an allocation for nothing once it started."""
    from dataclasses import replace

    from hyper.launchers.slurm import SlurmLauncher
    from hyper.store.base import JobFilter, NewJob

    bin_dir = tmp_path / "bin"
    _slurm_commands(bin_dir, monkeypatch, "echo '77_1|PENDING|hyper-hpc'")
    (bin_dir / "scancel").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "cancelled"}\n')
    (bin_dir / "scancel").chmod(0o755)
    put_region(store, region(partition="p"))
    launcher = SlurmLauncher(settings, store)
    (pilot,) = launcher.launch(request(1))
    store.add_worker(pilot)
    (waiting,) = store.submit([NewJob("w", "q1", "big", "echo\n")], time.time())
    assert launcher.alive(pilot) is True  # just submitted: its job may still come
    older = replace(pilot, started=time.time() - 60)
    assert launcher.alive(older) is True  # a job waits for it
    assert not (tmp_path / "cancelled").exists()
    store.cancel(JobFilter(ids=(waiting,)), time.time())  # qdel of the only waiting job
    assert launcher.alive(older) is False
    assert (tmp_path / "cancelled").read_text().split() == ["77_1"]
