"""Workers as Slurm pilot jobs: `sbatch --array` submits them, `squeue` watches every one in
one call, `scancel` ends them. The rest is `hyper/launchers/pilots.py`, shared with PBS and
LSF; docs/slurm.md tells how to set up a region and what the cluster's admins see."""

from __future__ import annotations

import shlex

from hyper.launchers.pilots import BatchSystem, PilotJob, PilotLauncher, PilotState

# squeue's states (squeue(1), JOB STATE CODES) as hyper reads them
SQUEUE_STATES = {
    "PENDING": PilotState.PENDING,
    "CONFIGURING": PilotState.RUNNING,
    "RUNNING": PilotState.RUNNING,
}


class Slurm(BatchSystem):
    name = "slurm"
    job_id_expression = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"

    def submit_command(self, job: PilotJob) -> list[str]:
        region = job.region
        command = [
            "sbatch", "--parsable",
            f"--job-name={job.name}",
            f"--array=1-{job.count}",
            f"--time={job.walltime_minutes}",
            "--nodes=1", "--ntasks=1",
            f"--cpus-per-task={job.vcpus}",
            f"--mem={job.memory_mib}M",
            f"--output={job.output}/%A_%a.out",
        ]  # fmt: skip
        if job.gpus:
            command.append(f"--gpus-per-task={job.gpus}")
        for flag, value in (
            ("--partition", region.partition),
            ("--account", region.account),
            ("--qos", region.qos),
            ("--reservation", region.reservation),
        ):
            if value:
                command.append(f"{flag}={value}")
        command += shlex.split(region.sbatch_args)
        return [*command, str(job.script)]

    def submitted_id(self, stdout: str) -> str:
        # --parsable: "JOBID" or "JOBID;CLUSTER"
        return stdout.strip().splitlines()[-1].split(";")[0]

    def element_id(self, array_id: str, index: int) -> str:
        return f"{array_id}_{index}"

    def status_command(self, user: str) -> list[str]:
        # -r: one line per array element, pending ones too
        return ["squeue", "--noheader", "--array", f"--user={user}", "--format=%i|%T|%j"]

    def parse_status(self, stdout: str) -> dict[str, str]:
        states = {}
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0]:
                states[parts[0]] = SQUEUE_STATES.get(parts[1], PilotState.OTHER)
        return states

    def cancel_command(self, job_ids: list[str]) -> list[str]:
        return ["scancel", *job_ids]

    def cancel_by_name_command(self, name: str, user: str) -> list[str] | None:
        return ["scancel", f"--name={name}", f"--user={user}"]


class SlurmLauncher(PilotLauncher):
    kind = "slurm"
    system = Slurm()


def list_pilots(region: str, user: str) -> list[dict[str, str]]:
    """A region's pilots as Slurm lists them (one `squeue` call): job id, state, time used,
    time left, and the node or the reason it waits."""
    from hyper.commands import run
    from hyper.launchers.pilots import pilot_name

    fields = ("job_id", "state", "time", "time_left", "where")
    out = run(["squeue", "--noheader", "--array", f"--user={user}",
               f"--name={pilot_name(region)}", "--format=%i|%T|%M|%L|%R"], timeout=60)  # fmt: skip
    return [
        dict(zip(fields, line.strip().split("|", 4), strict=False))
        for line in out.splitlines()
        if line.strip()
    ]
