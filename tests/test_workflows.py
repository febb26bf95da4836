"""Workflows in-process: every check of a jobs file, S3 sources under moto, the API's
refusals, and a cluster that fails or is slow to be made (a provider that behaves as a
cloud's can) in a real app with its scheduler loop. End to end on a local host:
test_workflows_e2e.py."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import moto
import pytest
from fastapi.testclient import TestClient

from hyper.errors import DeployFailed, UsageError
from hyper.host.app import create_app
from hyper.host.service import HostService
from hyper.host_settings import HostSettings
from hyper.models import ResourceKind, Spec
from hyper.providers import Log
from hyper.providers.local import LocalProvider
from hyper.store.sqlite import SQLiteStore
from hyper.workflows import jobsfile
from hyper.workflows.model import Step, Workflow, WorkflowState
from hyper.workflows.packaging import S3Source
from tests.conftest import fake_aws_credentials

# the jobs file ----------------------------------------------------------------------------

GOOD_JOB = "[job a]\nhandler = run.sh\nlocal_path = a\n"


def jobs_file(tmp_path: Path, text: str) -> Path:
    """A jobs file beside a package folder `a` holding run.sh, and a file `b.sh`."""
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "a" / "run.sh").write_text("echo a\n")
    (tmp_path / "b.sh").write_text("echo b\n")
    path = tmp_path / "jobs.ini"
    path.write_text(text)
    return path


BAD_FILES = {
    "both orders": (
        "[order]\nsequential = a\nparallel = a\n" + GOOD_JOB,
        "Must specify sequential or parallel in [order], not both",
    ),
    "no order": ("[order]\n" + GOOD_JOB, "Need to specify sequential or parallel in the [order]"),
    "no [order]": (GOOD_JOB, "jobs.ini: needs an [order] section with sequential or parallel"),
    "a job without a section": (
        "[order]\nsequential = a, b\n" + GOOD_JOB,
        "job 'b' is in the order but there is no [job b] section",
    ),
    "no handler": (
        "[order]\nparallel = a\n[job a]\nlocal_path = a\n",
        "Need to specify handler in job a section",
    ),
    "both sources": (
        "[order]\nsequential = a\n" + GOOD_JOB + "s3_uri = s3://bucket/a\n",
        "Must specify s3_uri or local_path, not both (in job a section)",
    ),
    "no source": (
        "[order]\nsequential = a\n[job a]\nhandler = run.sh\n",
        "Need to specify s3_uri or local_path in job a section",
    ),
    "wait_time not a number": (
        "[order]\nsequential = a\n" + GOOD_JOB + "wait_time = ten\n",
        "wait_time must be a whole number of seconds, not 'ten' (in job a section)",
    ),
    "wait_time 0": (
        "[order]\nsequential = a\n" + GOOD_JOB + "wait_time = 0\n",
        "wait_time must be between 1 and 240 seconds inclusive (in job a section)",
    ),
    "wait_time 241": (
        "[order]\nsequential = a\n" + GOOD_JOB + "wait_time = 241\n",
        "wait_time must be between 1 and 240 seconds inclusive",
    ),
    "a name twice": (
        "[order]\nsequential = a, a\n" + GOOD_JOB,
        "job 'a' is named twice in sequential: a job runs once per workflow",
    ),
    "handler not in the folder": (
        "[order]\nsequential = a\n[job a]\nhandler = src/run.sh\nlocal_path = a\n",
        "handler 'src/run.sh' of [job a] is not a file in its package",
    ),
    "handler not the file": (
        "[order]\nsequential = a\n[job a]\nhandler = a.sh\nlocal_path = b.sh\n",
        "handler 'a.sh' of [job a] is not a file in its package",
    ),
    "handler outside": (
        "[order]\nsequential = a\n[job a]\nhandler = ../b.sh\nlocal_path = a\n",
        "handler '../b.sh' of [job a] must be a path inside its package",
    ),
    "local_path missing": (
        "[order]\nsequential = a\n[job a]\nhandler = run.sh\nlocal_path = nowhere\n",
        "local_path 'nowhere' of [job a] does not exist",
    ),
    "no jobs listed": ("[order]\nparallel =\n" + GOOD_JOB, "parallel in [order] lists no jobs"),
    "an empty name": ("[order]\nparallel = a,,\n" + GOOD_JOB, "has an empty job name"),
    "a bad name": ("[order]\nparallel = a/b\n" + GOOD_JOB, "job name 'a/b' in [order]"),
    "a section twice": (
        "[order]\nparallel = a\n" + GOOD_JOB + GOOD_JOB,
        "jobs.ini line 6: section 'job a' already exists",
    ),
    "not INI": ("sequential = a\n", "jobs.ini line 1: a line before any [section]"),
    "not an s3 URI": (
        "[order]\nsequential = a\n[job a]\nhandler = x\ns3_uri = http://bucket/x\n",
        "s3_uri 'http://bucket/x' is not of the form s3://bucket/key",
    ),
}


@pytest.mark.parametrize(("text", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_every_mistake_in_a_jobs_file_is_one_clear_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        jobsfile.load(jobs_file(tmp_path, text))
    said = str(caught.value)
    assert message in said and "\n" not in said, said


def test_a_jobs_file_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^Must specify a real file for the jobs config"):
        jobsfile.load(tmp_path / "missing.ini")


def test_the_original_format_is_read_as_it_was_written(tmp_path: Path) -> None:
    path = jobs_file(
        tmp_path,
        "[order]\nparallel =  a ,b   ; an inline comment\n\n"
        "[job a]\nhandler = ./run.sh\nlocal_path = a\n\n"
        f"[job b]\nname = b.sh\nlocal_path = {tmp_path / 'b.sh'}\nwait_time = 240\n"
        "colour = blue\n\n[job unused]\nhandler = x\n\n[cluster]\nname = c\n",
    )
    loaded = jobsfile.load(path)
    assert loaded.order == "parallel"
    assert [(j.name, j.handler, j.wait_time) for j in loaded.jobs] == [
        ("a", "run.sh", 10),
        ("b", "b.sh", 240),
    ]
    assert [str(j.source) for j in loaded.jobs] == [str(tmp_path / "a"), str(tmp_path / "b.sh")]
    assert loaded.warnings == [
        "section [cluster] is not one hyper reads: ignored",
        "[job unused] is not in the order: it will not run",
        "[job b]: 'name' read as 'handler', the documented option",
        "option 'colour' of [job b] is not one hyper reads: ignored",
    ]


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_local_folder_is_packed_as_what_it_holds(tmp_path: Path) -> None:
    path = jobs_file(
        tmp_path,
        "[order]\nsequential = a, b\n" + GOOD_JOB + "[job b]\nhandler=b.sh\nlocal_path=b.sh\n",
    )
    (tmp_path / "a" / "data").mkdir()
    (tmp_path / "a" / "data" / "in.txt").write_text("input")
    (tmp_path / "a" / "linked.txt").symlink_to(tmp_path / "b.sh")  # packed as the file
    a, b = (job.source.pack() for job in jobsfile.load(path).jobs)
    assert members(a) == {"data/in.txt": b"input", "linked.txt": b"echo b\n", "run.sh": b"echo a\n"}
    assert members(b) == {"b.sh": b"echo b\n"}


# S3 sources, under moto ---------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_aws_credentials(monkeypatch)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="job-bucket")
        for key, body in {
            "folder/project/src/script.sh": b"echo script\n",
            "folder/project/data/in.txt": b"input",
            "folder/project/": b"",  # a console's folder marker
            "folder/projects-other/x": b"not under the prefix",
            "thejobtouse.sh": b"echo used\n",
        }.items():
            client.put_object(Bucket="job-bucket", Key=key, Body=body)
        yield client


def test_s3_prefixes_and_objects_are_fetched_with_boto3(s3: Any, tmp_path: Path) -> None:
    path = jobs_file(
        tmp_path,
        "[order]\nsequential = p, o\n"
        "[job p]\nhandler = src/script.sh\ns3_uri = s3://job-bucket/folder/project\n"
        "[job o]\nhandler = thejobtouse.sh\ns3_uri = s3://job-bucket/thejobtouse.sh\n",
    )
    prefix, single = (job.source.pack() for job in jobsfile.load(path).jobs)
    assert members(prefix) == {"src/script.sh": b"echo script\n", "data/in.txt": b"input"}
    assert members(single) == {"thejobtouse.sh": b"echo used\n"}


@pytest.mark.parametrize(
    ("uri", "handler", "message"),
    [
        ("s3://job-bucket/folder/project/", "nope.sh", "handler 'nope.sh' of [job a] is not"),
        ("s3://job-bucket/nothing/here", "x", "s3://job-bucket/nothing/here: no object there"),
        ("s3://no-such-bucket/x", "x", "s3://no-such-bucket/x: The specified bucket does not"),
    ],
)
def test_s3_mistakes_are_one_line(
    s3: Any, tmp_path: Path, uri: str, handler: str, message: str
) -> None:
    path = jobs_file(
        tmp_path, f"[order]\nsequential = a\n[job a]\nhandler={handler}\ns3_uri={uri}\n"
    )
    with pytest.raises(UsageError) as caught:
        jobsfile.load(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_s3_uri_is_parsed_as_the_original_wrote_it() -> None:
    assert S3Source.parse("s3://bucket/folder/path/").key == "folder/path/"
    assert S3Source.parse("s3://bucket").key == ""


# the API ----------------------------------------------------------------------------------


def run_body(**extra: Any) -> dict[str, Any]:
    steps = [{"name": "a", "handler": "run.sh", "package": "p/a.tar.gz"}]
    return {"name": "jobs.ini", "order": "sequential", "steps": steps,
            "definition": "sample-def-1", "queue": "sample-queue-1", **extra}  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        {"cluster": {"name": "c"}},  # and a queue
        {"queue": None},  # neither
        {"steps": [{"name": "a", "handler": "run.sh", "package": "p"}] * 2},
        {"steps": [{"name": "a", "handler": "../run.sh", "package": "p"}]},
        {"steps": [{"name": "a", "handler": "run\x00.sh", "package": "p"}]},
        {"steps": [{"name": "a", "handler": "run.sh", "package": "p", "wait_time": 241}]},
        {"queue": None, "cluster": {"name": "bad name"}},
        {"order": "random"},
    ],
)
def test_bad_workflow_requests_are_refused_with_422(api: TestClient, extra: dict[str, Any]) -> None:
    response = api.post("/workflows", json=run_body(**extra))
    assert response.status_code == 422, response.text
    assert api.get("/workflows").json() == {"workflows": []}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"queue": "nope"}, "unknown queue 'nope'"),
        ({"definition": "nope"}, "unknown definition 'nope'"),
        ({"queue": None, "cluster": {"name": "local-cluster"}}, "cluster 'local-cluster' already"),
        ({"queue": None, "cluster": {"name": "sample-queue-1"}}, "queue 'sample-queue-1' already"),
        ({"queue": None, "cluster": {"name": "tiny", "max_vcpus": 1}, "definition": "big"},
         "definition 'big' needs 2 vCPUs; the cluster would have 1"),
    ],
)  # fmt: skip
def test_a_workflow_the_host_cannot_run_is_refused_and_nothing_changes(
    api: TestClient, extra: dict[str, Any], message: str
) -> None:
    assert api.post("/resources/definitions", json={"name": "big", "vcpus": 2}).status_code == 202
    before = {k: api.get(f"/resources/{k.value}").json() for k in ResourceKind}
    response = api.post("/workflows", json=run_body(**extra))
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert api.get("/workflows").json() == {"workflows": []}
    assert api.get("/jobs/counts").json()["Total"] == 0
    assert {k: api.get(f"/resources/{k.value}").json() for k in ResourceKind} == before


def test_an_unknown_workflow_is_404(api: TestClient) -> None:
    assert api.get("/workflows/7").status_code == 404
    response = api.post("/workflows/7/cancel", json={})
    assert response.status_code == 404 and response.json() == {"detail": "unknown workflow 7"}


# a cluster that fails or is slow to be made ---------------------------------------------


class CloudLikeClusters(LocalProvider):
    """Clusters that fail, or take their time, as a cloud's can; the rest as on a local
    host. (Every other part is real: the app, its scheduler loop, deployer and store.)"""

    def __init__(self, *, fail: str | None = None, seconds: float = 0.0) -> None:
        self.fail, self.seconds = fail, seconds

    def deploy(self, kind: ResourceKind, spec: Spec, log: Log) -> Spec:
        if kind is ResourceKind.CLUSTER:
            time.sleep(self.seconds)
            if self.fail:
                raise DeployFailed(self.fail)
        return super().deploy(kind, spec, log)


def run_on_a_new_cluster(
    tmp_path: Path, provider: LocalProvider, timeout: float = 60
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A workflow started on a cluster made for it, followed to its end in a real app
    that schedules; the workflow, and the clusters and queues left afterwards."""
    store = SQLiteStore(tmp_path / "store.db")
    settings = HostSettings(data_dir=tmp_path, api_key="k", url="http://127.0.0.1:9")
    app = create_app(settings, store, schedule=True, provider=provider)
    try:
        with TestClient(app, headers={"x-api-key": "k"}) as api:
            assert api.put("/files/p/a.tar.gz", content=b"").status_code == 204
            cluster = {"name": "run-cluster", "timeout": 0.5}
            started = api.post("/workflows", json=run_body(queue=None, cluster=cluster))
            assert started.status_code == 201, started.text
            assert started.json()["state"] == "Creating cluster"
            path = f"/workflows/{started.json()['id']}"
            deadline = time.monotonic() + timeout
            while (workflow := api.get(path).json())["state"] not in ("Failed", "Successful"):
                assert time.monotonic() < deadline, workflow
                time.sleep(0.05)
            left = {k: [r["name"] for r in api.get(f"/resources/{k}").json()["items"]]
                    for k in ("clusters", "queues")}  # fmt: skip
            assert api.get("/jobs/counts").json()["Total"] == 0  # no job was submitted
            assert api.get("/files/p/a.tar.gz").status_code == 404  # its package is gone
            return workflow, left
    finally:
        store.close()


def test_a_cluster_that_fails_to_create_ends_the_run_and_is_deleted(tmp_path: Path) -> None:
    workflow, left = run_on_a_new_cluster(tmp_path, CloudLikeClusters(fail="no capacity"))
    assert (workflow["state"], workflow["cause"]) == (
        "Failed",
        "Cluster failed to create: no capacity",
    )
    assert workflow["teardown"] == "cluster run-cluster and queue run-cluster deleted"
    assert left == {"clusters": ["local-cluster"], "queues": ["sample-queue-1"]}


@pytest.mark.slow
def test_a_cluster_too_slow_to_create_ends_the_run_and_is_deleted_once_ready(
    tmp_path: Path,
) -> None:
    # the run must see the cluster not ACTIVE 0.5 s in: 5 s leaves a busy machine's ticks
    # room to be late
    workflow, left = run_on_a_new_cluster(tmp_path, CloudLikeClusters(seconds=5), timeout=120)
    assert (workflow["state"], workflow["cause"]) == (
        "Failed",
        "Cluster creation timed out (not ACTIVE after 0.5 s)",
    )
    assert workflow["teardown"] == "cluster run-cluster and queue run-cluster deleted"
    assert left == {"clusters": ["local-cluster"], "queues": ["sample-queue-1"]}


def test_a_run_whose_start_is_still_submitting_is_left_to_it_for_a_while(
    store: SQLiteStore, settings: HostSettings
) -> None:
    """On Lambda a tick in another container can see a new run before its start has
    submitted the jobs: it leaves the run alone for a minute, then judges it."""
    service = HostService(store, settings, LocalProvider())
    step = Step(name="a", handler="a.sh", package="p", wait_time=1)
    new = Workflow(
        name="jobs.ini", order="sequential", queue="q", definition="d",
        state=WorkflowState.RUNNING, steps=[step],
    )  # fmt: skip
    record = store.add_workflow(new.data(), time.time())
    service.workflows.advance(record.created + 5)
    assert Workflow.of(store.get_workflow(record.id)).state is WorkflowState.RUNNING
    service.workflows.advance(record.created + 61)  # "its job is gone": no job was submitted
    assert Workflow.of(store.get_workflow(record.id)).state is not WorkflowState.RUNNING
