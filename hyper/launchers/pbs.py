"""PBS Pro pilots: `qsub -J` submits an array of them, `qstat -t -f -F json` lists every one
in one call, `qdel` ends them. Only the commands are tested (a recording `qsub` on PATH);
Slurm is the batch system tested against a real scheduler (docs/slurm.md).
On a host where hyper's own `qsub` comes first on PATH, PBS's must be put first."""

from __future__ import annotations

import json

from hyper.launchers.pilots import BatchSystem, PilotJob, PilotLauncher, PilotState

QSTAT_STATES = {"Q": PilotState.PENDING, "H": PilotState.PENDING, "W": PilotState.PENDING,
                "R": PilotState.RUNNING, "B": PilotState.RUNNING}  # fmt: skip


def hms(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


class PBS(BatchSystem):
    name = "pbs"
    job_id_expression = "${PBS_JOBID}"  # of an array element: 12[3].server

    def submit_command(self, job: PilotJob) -> list[str]:
        select = f"select=1:ncpus={job.vcpus}:mem={job.memory_mib}mb"
        if job.gpus:
            select += f":ngpus={job.gpus}"
        command = [
            "qsub", "-N", job.name, "-J", f"1-{job.count}",
            "-l", f"walltime={hms(job.walltime_minutes)}", "-l", select,
            "-j", "oe", "-o", str(job.output),
        ]  # fmt: skip
        if job.count == 1:  # PBS Pro refuses an array of one element
            command[3:5] = []
        if job.region.partition:
            command += ["-q", job.region.partition]
        if job.region.account:
            command += ["-A", job.region.account]
        return [*command, str(job.script)]

    def submitted_id(self, stdout: str) -> str:
        return stdout.strip().splitlines()[-1]  # 12[].server, or 12.server for one

    def element_id(self, array_id: str, index: int) -> str:
        return array_id.replace("[]", f"[{index}]")

    def status_command(self, user: str) -> list[str]:
        return ["qstat", "-t", "-f", "-F", "json", "-u", user]

    def parse_status(self, stdout: str) -> dict[str, str]:
        jobs = json.loads(stdout or "{}").get("Jobs") or {}
        return {
            job_id: QSTAT_STATES.get(info.get("job_state", ""), PilotState.OTHER)
            for job_id, info in jobs.items()
            if "[]" not in job_id  # the array itself; its elements are listed too
        }

    def cancel_command(self, job_ids: list[str]) -> list[str]:
        return ["qdel", *job_ids]


class PBSLauncher(PilotLauncher):
    kind = "pbs"
    system = PBS()
