"""Images of an AWS host, built and pushed from the user's machine.

The host's functions run in Lambda, where there is no docker: an image is built (or a
local one tagged) here, with this machine's docker and the user's AWS credentials, and
pushed to the image's ECR repository in every ACTIVE region of the host. The resource
then carries the image's URI (``_REGION_`` for the region) and nothing the deploy
function would have to build; it only keeps the repositories. A definition may also
name any image by URI (`--image-uri`), built wherever the user likes (CodeBuild...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hyper.config import HostConfig
from hyper.errors import UsageError
from hyper.models import ImageSpec
from hyper.providers.aws import batch
from hyper.providers.aws.host import worker_names

Log = Callable[[str], None]
LOCAL_FIELDS = ("local_build_directory", "local_docker_image")


def needs_push(spec: dict[str, Any]) -> bool:
    """Whether an image's spec asks for something built or tagged on this machine."""
    return any(spec.get(field) for field in LOCAL_FIELDS)


def push_from_here(
    host: HostConfig, spec: dict[str, Any], regions: list[str], log: Log
) -> dict[str, Any]:
    """Build (or take) the image on this machine and push it to its repository in each of
    `regions` (the host's ACTIVE AWS regions); the spec to send the host, with its URI."""
    if not regions:
        raise UsageError(f"host {host.name!r} has no ACTIVE AWS region to push images to")
    image = ImageSpec.model_validate(spec)
    names = worker_names(host.name)
    if image.local_docker_image:
        pushed = batch.push_local_image(image, regions, names, log)
    else:
        pushed = batch.build_and_push(image, regions, names, log)
    return {**spec, "uri": pushed.uri}
