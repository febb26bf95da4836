"""What a job asks for: sizes and their units, each dialect's directives, the defaults
and the refusals (hyper.capacity, qtools.foreign, qsub's own flags)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hyper import capacity
from hyper.capacity import Request, Shape, workers_for
from hyper.errors import UsageError
from hyper.models import DefinitionSpec, RegionSpec, ResourceKind
from hyper.resources import local_defaults
from hyper.store.sqlite import SQLiteStore
from qtools.foreign import translate
from qtools.qsub import build_job, build_parser

# ---- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unit", "mib"),
    [
        ("16G", "M", 16384),
        ("16g", "M", 16384),
        ("16gb", "b", 16384),
        ("16GB", "M", 16384),
        ("16GiB", "M", 16384),
        ("100M", "M", 100),
        ("100mb", "b", 100),
        ("4000", "M", 4000),  # Slurm and LSF: a bare number is MB
        ("1.5G", "M", 1536),
        ("2T", "M", 2 * 2**20),
        ("512K", "M", 1),  # a part of a MiB rounds up
        ("1048576", "b", 1),  # PBS: a bare number is bytes
        ("1024kb", "b", 1),
    ],
)
def test_sizes_in_each_unit(text: str, unit: str, mib: int) -> None:
    assert capacity.parse_size(text, unit) == mib


@pytest.mark.parametrize("text", ["", "G", "lots", "-5M", "16X", "0", "100 TB", "100 PB"])
def test_bad_sizes_are_refused_with_what_to_write(text: str) -> None:
    with pytest.raises(UsageError):
        capacity.parse_size(text, "M", "--mem")


# ---- the defaults ------------------------------------------------------------------

SHAPE = Shape(cpus=4, mem_mib=8192, gpu_ids=("0", "1"))


@pytest.mark.parametrize(
    ("asked", "gets"),
    [
        (None, Request(4, 8192, 2)),  # nothing asked: the whole worker, as before
        ({}, Request(4, 8192, 2)),
        ({"cpus": 1}, Request(1, 2048, 0)),  # memory in proportion to CPUs
        ({"cpus": 2, "mem_mib": 100}, Request(2, 100, 0)),
        ({"mem_mib": 100}, Request(1, 100, 0)),  # memory alone: one CPU
        ({"gpus": 1}, Request(1, 2048, 1)),
    ],
)
def test_what_a_job_gets_from_what_it_asked(asked: dict | None, gets: Request) -> None:
    assert capacity.effective(asked, SHAPE) == gets


def test_shape_from_a_definition_with_declared_or_counted_gpus() -> None:
    assert capacity.shape_of({"vcpus": 2, "memory_limit_mib": 512}) == Shape(2, 512, ())
    assert capacity.shape_of({"gpu_count": 2}).gpu_ids == ("0", "1")
    assert capacity.shape_of({"gpu_count": 2, "gpu_ids": ["3", "5"]}).gpu_ids == ("3", "5")


def test_refusal_says_what_fits() -> None:
    assert capacity.refusal({"cpus": 4}, SHAPE, "d") is None
    message = capacity.refusal({"cpus": 8, "mem_mib": 100}, SHAPE, "d")
    assert message is not None
    assert "8 CPUs, 100M" in message and "4 CPUs, 8G, 2 GPUs" in message and "'d'" in message
    assert capacity.refusal({"gpus": 3}, SHAPE, "d") is not None


# ---- Slurm -------------------------------------------------------------------------


def _asked(text: str) -> tuple[str | None, str | None, str | None]:
    options = translate(text).options
    return options.cpus, options.mem, options.gpus


@pytest.mark.parametrize(
    ("lines", "asked"),
    [
        ("#SBATCH --cpus-per-task=8 --mem=16G --gres=gpu:1", ("8", "16384M", "1")),
        ("#SBATCH -c 2", ("2", None, None)),
        ("#SBATCH -c2", ("2", None, None)),
        ("#SBATCH --mem=4000", (None, "4000M", None)),  # MB by default
        ("#SBATCH --mem=2gb", (None, "2048M", None)),
        ("#SBATCH --ntasks=4", ("4", None, None)),
        ("#SBATCH -n 2 -c 3", ("6", None, None)),  # tasks times CPUs per task
        ("#SBATCH -N 1 --ntasks-per-node=4", ("4", None, None)),
        ("#SBATCH -c 4 --mem-per-cpu=1G", ("4", "4096M", None)),
        ("#SBATCH --mem-per-cpu=500", (None, "500M", None)),
        ("#SBATCH --gres=gpu:a100:2", (None, None, "2")),
        ("#SBATCH --gres=gpu", (None, None, "1")),
        ("#SBATCH --gpus=2", (None, None, "2")),
        ("#SBATCH -G v100:3", (None, None, "3")),
        ("#SBATCH --nodes=1-1", (None, None, None)),
    ],
)
def test_slurm_requests_and_their_units(lines: str, asked: tuple) -> None:
    assert _asked(f"#!/bin/bash\n{lines}\nrun\n") == asked
    assert translate(f"#!/bin/bash\n{lines}\nrun\n").warnings == []


def test_slurm_generic_resources_other_than_gpus_are_warned() -> None:
    result = translate("#SBATCH --gres=gpu:1,craynetwork:1\n")
    assert result.options.gpus == "1"
    assert result.warnings == ["ignored (not supported): --gres=craynetwork:1 (line 1)"]


# ---- PBS -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "asked"),
    [
        ("#PBS -l select=1:ncpus=8:mem=16gb:ngpus=1", ("8", "16384M", "1")),
        ("#PBS -l select=1:ncpus=2:mpiprocs=2:ompthreads=1", ("2", None, None)),
        ("#PBS -l nodes=1:ppn=4", ("4", None, None)),
        ("#PBS -l nodes=1:ppn=4,mem=4gb", ("4", "4096M", None)),
        ("#PBS -l mem=512mb", (None, "512M", None)),
        ("#PBS -l mem=1073741824", (None, "1024M", None)),  # bytes when no unit
        ("#PBS -l ncpus=3", ("3", None, None)),
        ("#PBS -l ngpus=2", (None, None, "2")),
        ("#PBS -l ncpus=2\n#PBS -l mem=1gb,walltime=1:00:00", ("2", "1024M", None)),
    ],
)
def test_pbs_requests_and_their_units(lines: str, asked: tuple) -> None:
    text = f"#!/bin/bash\n{lines}\nrun\n"
    assert _asked(text) == asked
    assert translate(text).warnings == []


# ---- LSF ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "asked"),
    [
        ('#BSUB -n 8 -R "rusage[mem=16000]" -gpu "num=1"', ("8", "16000M", "1")),
        ("#BSUB -n 4", ("4", None, None)),
        ("#BSUB -n 2,8", ("2", None, None)),  # MIN,MAX: the job gets MIN
        ("#BSUB -M 4000", (None, "4000M", None)),  # MB
        ("#BSUB -M 2GB", (None, "2048M", None)),
        ('#BSUB -R "span[hosts=1] rusage[mem=2048]"', (None, "2048M", None)),
        ('#BSUB -R "rusage[mem=1000]"\n#BSUB -M 4000', (None, "1000M", None)),
        ('#BSUB -gpu "num=2:mode=exclusive_process"', (None, None, "2")),
        ("#BSUB -gpu -", (None, None, "1")),
    ],
)
def test_lsf_requests_and_their_units(lines: str, asked: tuple) -> None:
    text = f"#!/bin/bash\n{lines}\nrun\n"
    assert _asked(text) == asked
    assert translate(text).warnings == []


@pytest.mark.parametrize(("unit", "mib"), [("KB", 4), ("MB", 4096), ("GB", 4 * 1024 * 1024)])
def test_lsf_units_follow_the_clusters_lsf_conf(
    unit: str, mib: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lsf.conf").write_text(f"LSF_UNIT_FOR_LIMITS=KB\nLSF_UNIT_FOR_LIMITS={unit}\n")
    monkeypatch.delenv("LSF_UNIT_FOR_LIMITS", raising=False)
    monkeypatch.setenv("LSF_ENVDIR", str(tmp_path))
    assert translate("#BSUB -M 4096\n").options.mem == f"{mib}M"
    assert translate('#BSUB -R "rusage[mem=4096]"\n').options.mem == f"{mib}M"


def test_lsf_resource_sections_hyper_does_not_have_are_warned() -> None:
    result = translate('#BSUB -R "select[mem>100] rusage[mem=200]"\n')
    assert result.options.mem == "200M"
    assert result.warnings == ["ignored (not supported): -R select[mem>100] (line 1)"]


# ---- more than one node ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "#SBATCH --nodes=2",
        "#SBATCH -N 3",
        "#PBS -l select=2:ncpus=4",
        "#PBS -l select=1:ncpus=2+1:ncpus=1",
        "#PBS -l nodes=2:ppn=2",
    ],
)
def test_more_than_one_node_is_refused_with_one_line(line: str) -> None:
    with pytest.raises(UsageError) as caught:
        translate(f"#!/bin/bash\n{line}\nrun\n")
    assert "\n" not in str(caught.value)
    assert "hyper runs each job on one machine" in str(caught.value)


# ---- qsub's own flags and #HYPER lines ---------------------------------------------


def _job(tmp_path: Path, text: str, *flags: str) -> dict:
    script = tmp_path / "job.sh"
    script.write_text(text)
    return build_job(build_parser().parse_args([*flags, str(script)]))


def test_qsub_flags_give_the_request(tmp_path: Path) -> None:
    job = _job(tmp_path, "echo\n", "--cpus", "2", "--mem", "16G", "--gpus", "1")
    assert job["resources"] == {"cpus": 2, "mem_mib": 16384, "gpus": 1}
    assert "resources" not in _job(tmp_path, "echo\n")


def test_hyper_lines_give_the_request_and_the_command_line_wins(tmp_path: Path) -> None:
    text = "#HYPER --cpus 4 --mem 2G\n#SBATCH --gres=gpu:2 -c 8\necho\n"
    assert _job(tmp_path, text)["resources"] == {"cpus": 4, "mem_mib": 2048, "gpus": 2}
    assert _job(tmp_path, text, "--cpus", "1")["resources"]["cpus"] == 1


def test_qsub_pbs_l_on_the_command_line(tmp_path: Path) -> None:
    job = _job(tmp_path, "echo\n", "-l", "select=1:ncpus=2:mem=1gb,walltime=10:00")
    assert job["resources"] == {"cpus": 2, "mem_mib": 1024}
    assert job["time_limit"] == 600


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--cpus", "0"), "--cpus"),
        (("--cpus", "two"), "--cpus"),
        (("--mem", "lots"), "--mem"),
        (("--gpus", "-1"), "--gpus"),
    ],
)
def test_bad_requests_are_refused_with_one_line(tmp_path: Path, flags: tuple, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        _job(tmp_path, "echo\n", *flags)
    assert words in str(caught.value) and "\n" not in str(caught.value)


# ---- the host: kept on the job, refused when too large, claimed by what fits ----------


def _post(api: Any, path: str, body: dict[str, Any]) -> Any:
    return api.post(path, json=body)


def _job_body(name: str, **resources: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "queue": "sample-queue-1",
        "definition": "sample-def-1",
        "script": "echo\n",
    }
    if resources:
        body["resources"] = resources
    return body


def test_the_host_keeps_the_request_and_claims_by_room(api: Any) -> None:
    response = _post(api, "/jobs", {"jobs": [_job_body("small", cpus=1, mem_mib=100)]})
    assert response.status_code == 200, response.text
    (job_id,) = response.json()["ids"]
    shown = api.get(f"/jobs/{job_id}").json()
    assert shown["options"]["request"] == {"cpus": 1, "mem_mib": 100}
    assert shown["resources"] == {"cpus": 1, "mem_mib": 100, "gpus": 0}
    claim = {"queue": "sample-queue-1", "definition": "sample-def-1", "limit": 1}
    tight = {**claim, "room": {"cpus": 1, "mem_mib": 50, "gpus": 0}}
    assert _post(api, "/workers/w1/claim", tight).json()["jobs"] == []  # 100 MiB > 50
    roomy = {**claim, "room": {"cpus": 1, "mem_mib": 100, "gpus": 0}}
    (claimed,) = _post(api, "/workers/w1/claim", roomy).json()["jobs"]
    assert claimed["id"] == job_id and claimed["options"]["request"]["mem_mib"] == 100
    report = {"attempt": 1, "exit_code": 0, "usage": {"peak_rss_mib": 42.5, "cpu_seconds": 1.5}}
    done = _post(api, f"/workers/w1/jobs/{job_id}/complete", report)
    assert done.status_code == 200, done.text
    assert api.get(f"/jobs/{job_id}").json()["used"] == {"peak_rss_mib": 42.5, "cpu_seconds": 1.5}


def test_a_worker_of_its_own_shape_claims_a_job_asking_nothing_by_it(api: Any) -> None:
    (job_id,) = _post(api, "/jobs", {"jobs": [_job_body("plain")]}).json()["ids"]
    claim = {"queue": "sample-queue-1", "definition": "sample-def-1", "limit": 1}
    small = {"cpus": 1, "mem_mib": 512, "gpus": 0}  # less than the definition's 1G
    assert _post(api, "/workers/w1/claim", {**claim, "room": small}).json()["jobs"] == []
    share = {**small, "of_cpus": 1, "of_mem_mib": 512, "of_gpus": 0}  # a machine's share
    (claimed,) = _post(api, "/workers/w1/claim", {**claim, "room": share}).json()["jobs"]
    assert claimed["id"] == job_id


def _sample_worker(store: SQLiteStore) -> Shape:
    definition = store.get_resource("definitions", "sample-def-1")
    assert definition is not None
    return capacity.shape_of(definition.spec)


def test_the_host_refuses_a_request_no_worker_could_hold(api: Any, store: SQLiteStore) -> None:
    worker = _sample_worker(store)
    too_many = worker.cpus + 1
    response = _post(api, "/jobs", {"jobs": [_job_body("big", cpus=too_many)]})
    assert response.status_code in (400, 422)
    assert f"{too_many} CPUs" in response.text and worker.whole.describe() in response.text
    assert api.get("/jobs").json()["jobs"] == []


def test_the_host_takes_a_large_request_where_aws_batch_sizes_a_worker(
    api: Any, store: SQLiteStore
) -> None:
    region = RegionSpec(name="us-east-1", kind="aws")
    store.put_resource("regions", region.name, region.model_dump(), "ACTIVE", [], time.time())
    queue = store.get_resource("queues", "sample-queue-1")
    assert queue is not None
    spec = {**queue.spec, "automate_region_weights": False}
    spec["region_distribution_weights"] = {"us-east-1": 1}
    store.put_resource("queues", queue.name, spec, "ACTIVE", [], time.time())
    worker = _sample_worker(store)
    big = {"cpus": worker.cpus, "mem_mib": worker.mem_mib * 2}
    taken = _post(api, "/jobs", {"jobs": [_job_body("big", **big)]})
    assert taken.status_code == 200, taken.text  # a worker of its own size on Batch
    cluster = store.get_resource("clusters", spec["compute_environment"])
    assert cluster is not None
    too_many = cluster.spec["max_vcpus"] + 1
    refused = _post(api, "/jobs", {"jobs": [_job_body("huge", cpus=too_many)]})
    assert refused.status_code in (400, 422) and worker.whole.describe() in refused.text
    # a store that could not tell the scheduler what jobs asked would leave the job
    # waiting for a worker nothing starts: refused instead
    store.counts_requests = False  # type: ignore[misc]
    unsized = _post(api, "/jobs", {"jobs": [_job_body("big", **big)]})
    assert unsized.status_code in (400, 422) and worker.whole.describe() in unsized.text


# ---- how many workers hold the jobs waiting and running -----------------------------------


def _jobs(**counts: int) -> dict[tuple[tuple[str, int], ...], int]:
    """Jobs by request: `c2=3` is three jobs asking 2 CPUs, `nothing=4` four asking none."""
    found: dict[tuple[tuple[str, int], ...], int] = {}
    for name, count in counts.items():
        key: tuple[tuple[str, int], ...] = ()
        if name.startswith("c"):
            key = (("cpus", int(name[1:])),)
        elif name.startswith("g"):
            key = (("cpus", 1), ("gpus", int(name[1:])))
        found[key] = count
    return found


def test_workers_pack_requests_into_the_definitions_shape() -> None:
    four = Shape(4, 4096, ())
    assert workers_for(_jobs(c1=8), four, 1) == 2  # four 1-CPU jobs a worker
    assert workers_for(_jobs(c3=3), four, 1) == 3  # one 3-CPU job a worker
    assert workers_for(_jobs(c3=3, c1=3), four, 1) == 3  # the 1-CPU jobs fill their gaps
    assert workers_for(_jobs(c2=3, c1=1), four, 1) == 2
    assert workers_for(_jobs(c4=1, c1=1), four, 1) == 2
    assert workers_for({}, four, 1) == 0


def test_jobs_asking_nothing_count_by_the_ratio_as_before() -> None:
    four = Shape(4, 4096, ())
    assert workers_for(_jobs(nothing=5), four, 2) == 3
    assert workers_for(_jobs(nothing=5, c1=4), four, 2) == 4
    assert workers_for(_jobs(nothing=5), four, 1) == 5


def test_a_default_share_packs_jobs_asking_nothing_like_one_cpu_jobs() -> None:
    two = Shape(2, 2048, (), share_cpus=1)
    assert capacity.effective({}, two) == Request(1, 1024, 0)
    assert capacity.effective(None, two) == Request(1, 1024, 0)
    assert capacity.effective({"cpus": 2}, two) == Request(2, 2048, 0)
    assert workers_for(_jobs(nothing=5), two, 3) == 3  # two at once a worker; no ratio
    assert workers_for(_jobs(nothing=1, c2=1), two, 1) == 2
    spec = {"vcpus": 2, "memory_limit_mib": 2048, "default_cpus": 1}
    assert capacity.shape_of(spec) == two


def test_a_definition_may_share_its_worker_among_jobs_asking_nothing() -> None:
    defaults = dict(local_defaults(cores=2))
    sample = defaults[ResourceKind.DEFINITION]
    assert isinstance(sample, DefinitionSpec)
    assert capacity.shape_of(sample.model_dump()) == Shape(1, 1024, ())  # the whole worker
    shared = DefinitionSpec(name="d", vcpus=2, memory_limit_mib=2048, default_cpus=1)
    shape = capacity.shape_of(shared.model_dump())
    assert shape == Shape(2, 2048, (), share_cpus=1)
    assert capacity.refusal({"cpus": 2}, shape, shared.name) is None
    with pytest.raises(ValueError, match="more than the worker's 2 vCPUs"):
        DefinitionSpec(name="d", vcpus=2, default_cpus=3)


def test_gpus_and_memory_bound_what_a_worker_holds() -> None:
    gpus = Shape(8, 8192, ("0", "1"))
    assert workers_for(_jobs(g1=5), gpus, 1) == 3  # two GPUs a worker
    assert workers_for({(("cpus", 1), ("mem_mib", 3000)): 4}, gpus, 1) == 2  # two a worker
    assert workers_for(_jobs(c16=2), gpus, 1) == 0  # can never fit: no worker for it
