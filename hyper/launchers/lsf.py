"""LSF pilots: `bsub -J name[1-N]` submits an array of them, `bjobs -o` lists every one in
one call, `bkill` ends them. Only the commands are tested (a recording `bsub` on PATH);
Slurm is the batch system tested against a real scheduler (docs/slurm.md)."""

from __future__ import annotations

import re

from hyper.launchers.pilots import BatchSystem, PilotJob, PilotLauncher, PilotState

BJOBS_STATES = {"PEND": PilotState.PENDING, "PSUSP": PilotState.PENDING,
                "RUN": PilotState.RUNNING}  # fmt: skip
SUBMITTED = re.compile(r"Job <([0-9]+)> is submitted")


class LSF(BatchSystem):
    name = "lsf"
    job_id_expression = "${LSB_JOBID}[${LSB_JOBINDEX}]"

    def submit_command(self, job: PilotJob) -> list[str]:
        command = [
            "bsub", "-J", f"{job.name}[1-{job.count}]",
            "-W", str(job.walltime_minutes),
            "-n", str(job.vcpus), "-R", "span[hosts=1]",
            "-R", f"rusage[mem={job.memory_mib}]",
            "-o", f"{job.output}/%J_%I.out",
        ]  # fmt: skip
        if job.gpus:
            command += ["-gpu", f"num={job.gpus}"]
        if job.region.partition:
            command += ["-q", job.region.partition]
        if job.region.account:
            command += ["-P", job.region.account]
        return [*command, "/bin/bash", str(job.script)]

    def submitted_id(self, stdout: str) -> str:
        found = SUBMITTED.search(stdout)
        if found is None:
            raise ValueError(f"bsub said no job id: {stdout.strip()!r}")
        return found[1]

    def element_id(self, array_id: str, index: int) -> str:
        return f"{array_id}[{index}]"

    def status_command(self, user: str) -> list[str]:
        return ["bjobs", "-u", user, "-noheader", "-o", "jobid jobindex stat delimiter='|'"]

    def parse_status(self, stdout: str) -> dict[str, str]:
        states = {}
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0].isdigit():
                job_id = f"{parts[0]}[{parts[1]}]" if parts[1] not in ("", "0") else parts[0]
                states[job_id] = BJOBS_STATES.get(parts[2], PilotState.OTHER)
        return states

    def cancel_command(self, job_ids: list[str]) -> list[str]:
        return ["bkill", *job_ids]

    def cancel_by_name_command(self, name: str, user: str) -> list[str] | None:
        return ["bkill", "-J", name, "-u", user, "0"]


class LSFLauncher(PilotLauncher):
    kind = "lsf"
    system = LSF()
