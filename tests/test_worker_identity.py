"""Who a job runs as on its worker (hyper.worker.identity), how it becomes that user
(hyper.worker.asuser), and how the worker reads what such a job leaves it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyper.worker import identity, prepare
from hyper.worker.identity import JOB_UID, JobUser, UnknownUser, job_user, names_root

linux_root = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="root, on Linux"
)


def test_only_a_root_worker_in_its_image_changes_user() -> None:
    assert job_user("", in_image=False, euid=0) is None  # a local host's root worker
    assert job_user("", in_image=True, euid=1000) is None  # it cannot
    # the image's JOB_USER, or its uid and gid where the image has no such user
    found = job_user("", in_image=True, euid=0)
    assert found is not None and (found.uid, found.gid) == (JOB_UID, JOB_UID)


@pytest.mark.parametrize("user", ["root", "0", "root:root", "0:0", " root "])
def test_naming_root_keeps_the_job_root(user: str) -> None:
    assert names_root(user)
    assert job_user(user, in_image=True, euid=0) is None


def test_a_definitions_user_by_name_or_number() -> None:
    nobody = job_user("nobody", in_image=True, euid=0)
    assert nobody is not None and (nobody.uid, nobody.name) == (65534, "nobody")
    assert job_user("4321", in_image=True, euid=0) == JobUser(4321, 4321)
    assert job_user("4321:99", in_image=True, euid=0) == JobUser(4321, 99)
    assert not names_root("nobody") and not names_root("rooter")


@pytest.mark.parametrize(
    ("user", "said"),
    [
        ("no-such-user", "is not in the image"),
        ("nobody:no-such-group", "group 'no-such-group' is not in the image"),
        ("nobody:root", "is root in the image"),  # root's group, without naming root
        ("4321:0", "is root in the image"),
    ],
)
def test_a_user_that_cannot_be_or_is_root_unsaid_is_refused(user: str, said: str) -> None:
    with pytest.raises(UnknownUser, match=said):
        job_user(user, in_image=True, euid=0)


def test_the_worker_reads_a_collected_file_through_no_link(tmp_path: Path) -> None:
    """A job may make any step of a collected path a link to what its worker may read
    and it may not: the worker opens none of them."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.txt").write_text("mine")
    (tmp_path / "secret").write_text("the worker's")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "plain").write_text("ok")
    (tmp_path / "job" / "linked").symlink_to(tmp_path / "secret")
    (tmp_path / "job" / "dir").symlink_to(tmp_path / "out")
    fd = prepare.open_beneath(tmp_path / "job", "plain")
    with os.fdopen(fd, "rb") as file:
        assert file.read() == b"ok"
    for path in ("linked", "dir/result.txt", "../secret", "/etc/passwd", "missing"):
        with pytest.raises(OSError):
            os.close(prepare.open_beneath(tmp_path / "job", path))


@linux_root
def test_asuser_drops_every_way_back_to_root(tmp_path: Path) -> None:
    user = JobUser(JOB_UID, JOB_UID)
    probe = "id -u; id -g; id -G; grep -E '^(NoNewPrivs|CapEff|SigIgn)' /proc/self/status"
    done = subprocess.run(
        user.command(["sh", "-c", probe]), capture_output=True, text=True, timeout=30, check=True
    )
    shown = done.stdout.split("\n")
    assert shown[:3] == [str(JOB_UID)] * 3
    assert "NoNewPrivs:\t1" in shown and "CapEff:\t0000000000000000" in shown
    assert "SigIgn:\t0000000000000000" in shown  # SIGPIPE and SIGXFSZ back at their default
    refused = subprocess.run([*user.command(["true"])[:-3], "--", "true"], timeout=30)
    assert refused.returncode == 2  # no GROUPS: its usage
    root = subprocess.run(JobUser(0, 0).command(["true"]), capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert root.returncode == 126 and "not as root" in root.stderr


@linux_root
def test_asuser_takes_the_memory_limit_on_itself_before_it_drops_root() -> None:
    """Once the job runs as another uid, a worker without CAP_SYS_RESOURCE (a container's
    root) can no longer set its RLIMIT_AS from outside: the switch sets it, as root."""
    limit = 512 * 2**20
    command = JobUser(JOB_UID, JOB_UID).command(
        ["sh", "-c", "id -u; grep 'Max address space' /proc/self/limits"], limit
    )
    # the worker's root without CAP_SYS_RESOURCE, as in a container
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_resource", "--inh-caps", "-sys_resource", *command],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    uid, limits = done.stdout.splitlines()
    assert uid == str(JOB_UID)
    assert limits.split()[3:5] == [str(limit), str(limit)]


@linux_root
def test_a_folder_handed_over_is_the_users_but_not_what_its_links_point_to(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "job"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f").write_text("x")
    (tmp_path / "outside").write_text("root's")
    (folder / "link").symlink_to(tmp_path / "outside")
    JobUser(JOB_UID, JOB_UID).hand_over(folder)
    for path in (folder, folder / "sub", folder / "sub" / "f", folder / "link"):
        assert path.lstat().st_uid == JOB_UID
    assert (tmp_path / "outside").stat().st_uid == 0
    assert identity.JOB_USER == "hyperjob"
