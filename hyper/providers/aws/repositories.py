"""Images: an ECR repository per region, and building and pushing with docker.
See hyper/providers/aws/batch.py."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hyper.commands import run
from hyper.errors import CommandFailed, DeployFailed, one_line
from hyper.models import ImageSpec
from hyper.providers import Log
from hyper.providers.aws.calls import aws_client, error_code
from hyper.providers.aws.names import Names
from hyper.providers.aws.waiting import ClientFactory, _aws_failed

# ---- images ---------------------------------------------------------------------------------

REGION_PLACEHOLDER = "_REGION_"
# what workers run on: the x86_64 instances of a cluster's default ("optimal") types. An
# image is built for it wherever it is built (an arm64 Mac's docker would build arm64,
# and every worker would end in "exec format error")
WORKER_PLATFORM = "linux/amd64"


UNTAGGED_EXPIRE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "images a newer push left untagged",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)


def deploy_repository(
    region: str, image: ImageSpec, names: Names, log: Log, *, clients: ClientFactory = aws_client
) -> str:
    """The image's ECR repository in `region`, created when absent; returns its URI."""
    ecr = clients("ecr", region)
    name = names.repository(image.name)
    try:
        try:
            found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        except Exception as error:
            if error_code(error) != "RepositoryNotFoundException":
                raise
            found = ecr.create_repository(
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": k, "Value": v} for k, v in names.tags(image=image.name).items()],
            )["repository"]
            log(f"{region}: created repository {name}")
        # each push moves :latest, and the image it leaves untagged was kept (and billed)
        # for good: such images go a day after
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=UNTAGGED_EXPIRE)
    except Exception as error:
        raise _aws_failed(f"image {image.name} in {region}", error) from None
    return str(found["repositoryUri"])


def delete_repository(
    region: str, image: ImageSpec, names: Names, log: Log, *, clients: ClientFactory = aws_client
) -> None:
    """The image's repository in `region`, with every image it holds."""
    name = names.repository(image.name)
    try:
        clients("ecr", region).delete_repository(repositoryName=name, force=True)
        log(f"{region}: deleted repository {name}")
    except Exception as error:
        if error_code(error) != "RepositoryNotFoundException":
            raise _aws_failed(f"deleting image {image.name} in {region}", error) from None


def uri_template(repository_uri: str, region: str, tag: str = "latest") -> str:
    """A repository URI of one region as the image's URI for every region."""
    return f"{repository_uri.replace(f'.{region}.', f'.{REGION_PLACEHOLDER}.')}:{tag}"


def require_docker_engine() -> None:
    """DeployFailed, in one line, unless a docker engine answers on this machine."""
    if shutil.which("docker") is None:
        raise DeployFailed("docker is not installed: images are built and pushed with docker")
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=60)
    except CommandFailed as error:
        said = (error.stderr.strip() or error.stdout.strip()).splitlines()[-1:] or ["no answer"]
        raise DeployFailed(
            one_line(
                f"no docker engine answers on this machine (docker info: {said[0]}): "
                "start one to build and push images"
            )
        ) from None


def _push(
    local: str,
    image: ImageSpec,
    regions: Sequence[str],
    names: Names,
    log: Log,
    clients: ClientFactory,
) -> str:
    """Tag the local image `local` for every region's repository and push it there. The
    registry's token goes into a private docker config folder, never on a command line."""
    if not regions:
        raise DeployFailed(f"image {image.name}: no ACTIVE region to push it to")
    uri = ""
    with tempfile.TemporaryDirectory(prefix="hyper-docker-") as config:
        for region in regions:
            repository = deploy_repository(region, image, names, log, clients=clients)
            token = clients("ecr", region).get_authorization_token()["authorizationData"][0]
            registry = repository.split("/", 1)[0]
            auths = {"auths": {registry: {"auth": token["authorizationToken"]}}}
            Path(config, "config.json").write_text(json.dumps(auths))
            target = f"{repository}:latest"
            try:
                run(["docker", "tag", local, target], timeout=120)
                run(["docker", "--config", config, "push", target], timeout=3600)
            except CommandFailed as error:
                raise DeployFailed(str(error)) from None
            log(f"{region}: pushed {target}")
            uri = uri_template(repository, region)
    return uri


def build_and_push(
    image: ImageSpec,
    regions: Sequence[str],
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> ImageSpec:
    """Build the image from its folder with docker and push it to every region's
    repository; returns it with its URI (``_REGION_`` for the region). The build context
    is the folder's files plus a wheel of this hyper (`worker_build`)."""
    from hyper.providers.aws.worker_build import build_context

    folder = Path(image.local_build_directory or "")
    if not image.local_build_directory or not (folder / "Dockerfile").is_file():
        raise DeployFailed(f"{folder} has no Dockerfile")
    require_docker_engine()
    local = f"hyper/{image.name}:latest".lower()
    log(f"building {local} from {folder} (with a wheel of this hyper)")
    with build_context(folder) as context:  # the folder's files and hyper's wheel
        try:
            build = ["docker", "build", "--platform", WORKER_PLATFORM, "-t", local, str(context)]
            output = run(build, timeout=3600)
        except CommandFailed as error:
            raise DeployFailed(str(error)) from None
    for line in output.strip().splitlines()[-5:]:
        log(line)
    return image.model_copy(update={"uri": _push(local, image, regions, names, log, clients)})


def push_local_image(
    image: ImageSpec,
    regions: Sequence[str],
    names: Names,
    log: Log,
    *,
    clients: ClientFactory = aws_client,
) -> ImageSpec:
    """replace-with-local-image: tag the image's local_docker_image and push it to every
    region given (the ACTIVE ones)."""
    if not image.local_docker_image:
        raise DeployFailed("give the local image to push (repo:tag)")
    require_docker_engine()
    inspect = ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}"]
    try:
        platform = run([*inspect, image.local_docker_image], timeout=60).strip()
    except CommandFailed:
        raise DeployFailed(f"docker has no image {image.local_docker_image!r}") from None
    if platform != WORKER_PLATFORM:
        raise DeployFailed(
            f"image {image.local_docker_image!r} is {platform}; workers run {WORKER_PLATFORM}"
            f" (build it with docker build --platform {WORKER_PLATFORM}, or give an image for"
            " other instance types by URI: --use-image-uri)"
        )
    uri = _push(image.local_docker_image, image, regions, names, log, clients)
    return image.model_copy(update={"uri": uri})
