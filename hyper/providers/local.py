"""The local provider: resources of a host that runs on this machine.

Regions: `local` is this machine; `static` is a pool of machines that join with
`hyper worker join`. Clusters, queues and definitions need nothing deployed.
Images other than `native` are built with docker or podman when one works.
"""

from __future__ import annotations

from pathlib import Path

from hyper.commands import run
from hyper.errors import CommandFailed, DeployFailed
from hyper.models import DefinitionSpec, ImageSpec, RegionSpec, ResourceKind, Spec
from hyper.providers import Log
from hyper.worker.container import container_tool as find_container_tool


def container_tool() -> str:
    tool = find_container_tool()
    if tool is None:
        raise DeployFailed(
            "neither docker nor podman is installed: container images cannot be built"
        )
    return tool


def check_slurm_region(spec: RegionSpec, log: Log) -> None:
    """Slurm's own answer to a test submit of a pilot (`sbatch --test-only`): a bad partition,
    account, QOS or reservation fails here, in Slurm's words."""
    from hyper.launchers.pilots import PilotJob, pilot_name, walltime_limits
    from hyper.launchers.slurm import Slurm

    walltime, _ = walltime_limits(spec)
    job = PilotJob(pilot_name(spec.name), 1, Path("/dev/null"), Path("/tmp"),
                   spec.pilot_walltime_minutes, 1, 64, 0, spec)  # fmt: skip
    command = Slurm().submit_command(job)
    command = [command[0], "--test-only", *command[2:-1], "--wrap=true"]
    try:
        said = run(command, timeout=60)
    except CommandFailed as error:
        lines = [line.strip() for line in error.stderr.splitlines() if line.strip()]
        raise DeployFailed("; ".join(lines) or str(error)) from None
    log(f"sbatch --test-only: {said.strip() or 'accepted'}")
    log(f"pilots run hyper's worker for up to {walltime / 60:g} min each, at most"
        f" {spec.max_pilots} at once")  # fmt: skip


def cancel_slurm_pilots(spec: RegionSpec, log: Log) -> None:
    import getpass

    from hyper.launchers.pilots import pilot_name
    from hyper.launchers.slurm import Slurm

    command = Slurm().cancel_by_name_command(pilot_name(spec.name), getpass.getuser())
    try:
        if command:
            run(command, timeout=60)
            log(f"cancelled the region's pilots ({' '.join(command)})")
    except CommandFailed as error:
        log(f"could not cancel the region's pilots: {error}")


class LocalProvider:
    def deploy(self, kind: ResourceKind, spec: Spec, log: Log) -> Spec:
        if isinstance(spec, RegionSpec):
            return self._region(spec, log)
        if isinstance(spec, ImageSpec):
            return self._image(spec, log)
        if isinstance(spec, DefinitionSpec) and not spec.native:
            log(f"jobs run in a container of {spec.image_uri or spec.cyclone_image_name}")
            return spec
        log(f"{kind.singular} ready")
        return spec

    def _region(self, spec: RegionSpec, log: Log) -> Spec:
        if spec.kind == "local":
            log("this machine runs the region's workers")
        elif spec.kind == "static":
            log(f"machines join with: hyper worker join --region {spec.name} ...")
        elif spec.kind == "slurm":
            check_slurm_region(spec, log)
        else:
            raise DeployFailed(f"{spec.kind} regions need a host of that provider, not a local one")
        return spec

    def _image(self, spec: ImageSpec, log: Log) -> Spec:
        if spec.name == "native":
            log("the host machine's own environment")
            return spec
        tag = f"hyper/{spec.name}:latest"
        try:
            if spec.local_docker_image:
                tool = container_tool()
                run([tool, "image", "inspect", spec.local_docker_image], timeout=60)
                run([tool, "tag", spec.local_docker_image, tag], timeout=60)
                log(f"tagged {spec.local_docker_image} as {tag}")
            elif spec.local_build_directory:
                folder = Path(spec.local_build_directory)
                if not (folder / "Dockerfile").is_file():
                    raise DeployFailed(f"{folder} has no Dockerfile")
                tool = container_tool()
                log(f"building {tag} from {folder} with {tool}")
                output = run([tool, "build", "-t", tag, str(folder)], timeout=3600)
                for line in output.strip().splitlines()[-5:]:
                    log(line)
            else:
                raise DeployFailed("give a build directory or a local image")
        except CommandFailed as error:
            raise DeployFailed(str(error)) from None
        return spec.model_copy(update={"uri": tag})

    def teardown(self, kind: ResourceKind, spec: Spec, log: Log) -> None:
        if isinstance(spec, RegionSpec) and spec.kind == "slurm":
            cancel_slurm_pilots(spec, log)
        if isinstance(spec, ImageSpec) and spec.uri:
            try:
                run([container_tool(), "rmi", spec.uri], timeout=120)
                log(f"removed {spec.uri}")
            except (CommandFailed, DeployFailed) as error:
                log(f"left {spec.uri} in place: {error}")
        log(f"{kind.singular} deleted")
