"""Golden tests of the `docker run` command a worker builds for a job of a definition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hyper.messages import ClaimedJob
from hyper.models import DefinitionSpec
from hyper.worker import prepare
from hyper.worker.container import container_command, container_name

SCRIPT = Path("/work/w/job-7.2.sh")
CWD = Path("/home/u/project")

BASE = [
    "docker", "run", "--rm", "--init", "--name", "hyper-7-2",
    "--memory", "1024m", "--cpus", "1",
    "--volume", f"{CWD}:{CWD}", "--volume", f"{SCRIPT}:{SCRIPT}:ro", "--workdir", str(CWD),
]  # fmt: skip


def job(script: str = "echo hi\n", image: str = "hyper/tools:latest", **spec: Any) -> ClaimedJob:
    """A claimed job as the host hands it out: the definition's spec and the image."""
    definition = DefinitionSpec(name="d1", **spec).model_dump()
    return ClaimedJob(7, 2, "j", "q", "d1", script=script, image=image, definition_spec=definition)


def test_container_name() -> None:
    assert container_name(ClaimedJob(12, 3, "j", "q", "d")) == "hyper-12-3"


def test_defaults() -> None:
    command = container_command("docker", job(), SCRIPT, CWD, [])
    assert command == [*BASE, "hyper/tools:latest", "/bin/bash", str(SCRIPT)]


def test_a_missing_definition_spec_uses_the_defaults() -> None:
    claimed = ClaimedJob.from_wire(
        {"id": 7, "attempt": 2, "name": "j", "queue": "q", "definition": "d", "script": "true",
         "image": "img", "definition_spec": None}
    )  # fmt: skip
    assert container_command("podman", claimed, SCRIPT, CWD, []) == [
        "podman", *BASE[1:], "img", "/bin/bash", str(SCRIPT),
    ]  # fmt: skip


def test_every_option() -> None:
    claimed = job(
        script="#!/usr/bin/env python3\nprint(1)\n",
        image="123.dkr.ecr._REGION_.amazonaws.com/tools:1",
        memory_limit_mib=2048,
        vcpus=4,
        user="1000:1000",
        privileged=True,
        gpu_count=2,
        host_volumes=[{"name": "data", "host": {"sourcePath": "/data"}}],
        mount_points=[{"sourceVolume": "data", "containerPath": "/mnt/data", "readOnly": True}],
        ulimits=[{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
        log_driver="json_file",
        log_options={"max-size": "10m", "max-file": "3"},
        environment={"SECRET": "s3cr3t"},
    )
    command = container_command(
        "docker", claimed, SCRIPT, CWD, ["HOME_DIR", "SECRET"], region="eu-west-1"
    )
    assert command == [
        "docker", "run", "--rm", "--init", "--name", "hyper-7-2",
        "--memory", "2048m", "--cpus", "4",
        "--volume", f"{CWD}:{CWD}", "--volume", f"{SCRIPT}:{SCRIPT}:ro", "--workdir", str(CWD),
        "--env", "HOME_DIR", "--env", "SECRET",
        "--user", "1000:1000",
        "--privileged",
        "--gpus", "2",
        "--volume", "/data:/mnt/data:ro",
        "--ulimit", "nofile=1024:4096",
        "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
        "123.dkr.ecr.eu-west-1.amazonaws.com/tools:1",
        str(SCRIPT),
    ]  # fmt: skip


def test_variables_pass_by_name_only() -> None:
    claimed = job(environment={"TOKEN": "hunter2"})
    command = container_command("docker", claimed, SCRIPT, CWD, ["TOKEN", "A_B"])
    assert command[len(BASE) : len(BASE) + 4] == ["--env", "TOKEN", "--env", "A_B"]
    assert not any("hunter2" in word or "=" in word for word in command)
    assert "-e" not in command


def test_mount_points() -> None:
    claimed = job(
        host_volumes=[
            {"name": "data", "host": {"sourcePath": "/data"}},
            {"name": "scratch"},  # no host path: a named docker volume
        ],
        mount_points=[
            {"sourceVolume": "data", "containerPath": "/mnt/data", "readOnly": False},
            {"sourceVolume": "scratch", "containerPath": "/scratch"},
            {"sourceVolume": "cache", "containerPath": "/cache", "readOnly": True},
            {"sourceVolume": "data"},  # no container path: skipped
        ],
    )
    command = container_command("docker", claimed, SCRIPT, CWD, [])
    extra = command[len(BASE) : -3]
    assert extra == [
        "--volume", "/data:/mnt/data",
        "--volume", "scratch:/scratch",
        "--volume", "cache:/cache:ro",
    ]  # fmt: skip


def test_ulimits_and_several_limits() -> None:
    claimed = job(
        ulimits=[
            {"name": "nofile", "softLimit": 1024, "hardLimit": 4096},
            {"name": "core", "softLimit": 0, "hardLimit": 0},
        ]
    )
    extra = container_command("docker", claimed, SCRIPT, CWD, [])[len(BASE) : -3]
    assert extra == ["--ulimit", "nofile=1024:4096", "--ulimit", "core=0:0"]


def test_log_driver_without_options_and_options_without_a_driver() -> None:
    extra = container_command("docker", job(log_driver="AWSLOGS"), SCRIPT, CWD, [])
    assert extra[len(BASE) : -3] == ["--log-driver", "awslogs"]
    extra = container_command("docker", job(log_options={"tag": "x"}), SCRIPT, CWD, [])
    assert extra[len(BASE) : -3] == []  # options mean nothing without a driver


def test_no_gpus_no_user_not_privileged() -> None:
    claimed = job(gpu_count=0, user="", privileged=False)
    command = container_command("docker", claimed, SCRIPT, CWD, [])
    assert command == [*BASE, "hyper/tools:latest", "/bin/bash", str(SCRIPT)]
    for flag in ("--gpus", "--user", "--privileged", "--ulimit", "--log-driver"):
        assert flag not in command


def test_region_placeholder_in_the_image() -> None:
    claimed = job(image="acct.dkr.ecr._REGION_.amazonaws.com/img:_REGION_")
    command = container_command("docker", claimed, SCRIPT, CWD, [], region="us-east-1")
    assert command[-3] == "acct.dkr.ecr.us-east-1.amazonaws.com/img:us-east-1"
    plain = container_command("docker", job(image="busybox:1"), SCRIPT, CWD, [], region="x")
    assert plain[-3] == "busybox:1"


def test_shebang_scripts_run_directly_others_through_bash() -> None:
    for script in ("#!/bin/sh\necho hi\n", "#!/usr/bin/env python3\n"):
        assert container_command("docker", job(script=script), SCRIPT, CWD, [])[-2:] == [
            "hyper/tools:latest", str(SCRIPT),
        ]  # fmt: skip
    for script in ("echo hi\n", " #!/bin/sh\n", "", "# comment\n#!/bin/sh\n"):
        assert container_command("docker", job(script=script), SCRIPT, CWD, [])[-3:] == [
            "hyper/tools:latest", "/bin/bash", str(SCRIPT),
        ]  # fmt: skip


def test_the_worker_fills_in_the_region_of_an_image_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text("#!/bin/sh\nexit 1\n")  # found on PATH, never run
    (tools / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    claimed = job(image="acct.dkr.ecr._REGION_.amazonaws.com/img:1")
    command, _ = prepare.command(claimed, tmp_path, {}, tmp_path, "us-east-1")
    image = command[-3]
    assert image == "acct.dkr.ecr.us-east-1.amazonaws.com/img:1", image
