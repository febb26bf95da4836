"""How a job runs in a container: the `docker run` (or podman) command for a definition.

The job's own variables pass by name (`--env NAME`), their values through the
environment of the docker client, so no secret or value lands on a command line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hyper.messages import ClaimedJob

CONTAINER_TOOLS = ("docker", "podman")


def container_tool() -> str | None:
    """The container tool on this machine, if any (docker first, then podman)."""
    return next((tool for tool in CONTAINER_TOOLS if shutil.which(tool)), None)


def container_name(job: ClaimedJob) -> str:
    return f"hyper-{job.id}-{job.attempt}"


def container_command(
    tool: str,
    job: ClaimedJob,
    script: Path,
    cwd: Path,
    variables: list[str],
    region: str = "",
) -> list[str]:
    spec = job.definition_spec
    image = str(job.image).replace("_REGION_", region)
    command = [
        tool, "run", "--rm", "--init", "--name", container_name(job),
        "--memory", f"{spec.get('memory_limit_mib', 1024)}m",
        "--cpus", str(spec.get("vcpus", 1)),
        "--volume", f"{cwd}:{cwd}", "--volume", f"{script}:{script}:ro", "--workdir", str(cwd),
    ]  # fmt: skip
    for name in variables:
        command += ["--env", name]
    if spec.get("user"):
        command += ["--user", spec["user"]]
    if spec.get("privileged"):
        command.append("--privileged")
    if spec.get("gpu_count"):
        command += ["--gpus", str(spec["gpu_count"])]
    # AWS Batch shapes; malformed entries are skipped rather than stopping the worker
    volumes = {
        v.get("name"): (v.get("host") or {}).get("sourcePath")
        for v in spec.get("host_volumes") or []
        if isinstance(v, dict)
    }
    for mount in [m for m in spec.get("mount_points") or [] if isinstance(m, dict)]:
        source = volumes.get(mount.get("sourceVolume")) or mount.get("sourceVolume")
        target = mount.get("containerPath")
        if source and target:
            mode = ":ro" if mount.get("readOnly") else ""
            command += ["--volume", f"{source}:{target}{mode}"]
    for limit in [u for u in spec.get("ulimits") or [] if isinstance(u, dict)]:
        if {"name", "softLimit", "hardLimit"} <= limit.keys():
            command += ["--ulimit", f"{limit['name']}={limit['softLimit']}:{limit['hardLimit']}"]
    if spec.get("log_driver"):
        command += ["--log-driver", spec["log_driver"].lower().replace("_", "-")]
        for key, value in (spec.get("log_options") or {}).items():
            command += ["--log-opt", f"{key}={value}"]
    command.append(image)
    runner = [str(script)] if (job.script or "").startswith("#!") else ["/bin/bash", str(script)]
    return command + runner
