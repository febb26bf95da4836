"""API fuzzing with schemathesis: every operation of the schema the host serves, in-process.

With the key, no request schemathesis makes (valid or not) may get a server error; without the
key, or with a wrong one, every request is refused with 401 and changes nothing. One app and
one real SQLite store serve the whole module, seeded with the local defaults (the app's
lifespan makes them), jobs in several states, a worker holding some, and a joined machine.
Runs are deterministic: Hypothesis is derandomized and keeps no example database.
`pytest -s` prints how many requests were made. At the end, what fuzzing found, one by one.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from hyper.errors import DeployFailed
from hyper.host.app import create_app
from hyper.host_settings import HostSettings
from hyper.jobs import LogKind
from hyper.models import ImageSpec, ResourceKind, Spec
from hyper.providers import Log
from hyper.providers.local import LocalProvider
from hyper.resources import DEFAULT_CLUSTER, MAIN_REGION, NATIVE_IMAGE
from hyper.store.base import JobFilter
from hyper.store.sqlite import SQLiteStore
from tests.helpers.api import (
    BODIES,
    D,
    Q,
    claim,
    complete,
    concrete,
    schema_path,
    submission,
    submit,
)

# a few minutes on 2 cores: the slow tier
pytestmark = pytest.mark.slow

KEY = "fuzz-key"
EXAMPLES = 50  # per operation and generation mode (valid requests, then invalid ones)
ANONYMOUS_EXAMPLES = 6  # the same without the key: all the middleware sees is the headers
FLOOR = 400  # requests each fuzzing test must at least make: a run that fuzzed nothing fails
WORKER = "fuzz-worker"
NODE = "fuzz-node"
STATIC_REGION = "fuzz-static"
HELD = 5  # running jobs the worker holds before each operation is fuzzed

# deterministic in CI and locally: derandomized, no example database; no deadline, as a
# request may wait on the store
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ANONYMOUS_SETTINGS = settings(FUZZ_SETTINGS, max_examples=ANONYMOUS_EXAMPLES)

# what the fuzzer puts in place of generated values now and then, so that requests get past
# "unknown queue" to the code behind: existing names and jobs, and values at the edges
KNOWN_NAMES = [Q, D, MAIN_REGION, STATIC_REGION, DEFAULT_CLUSTER, NATIVE_IMAGE]
NAMED = {"queue": Q, "definition": D, "region": STATIC_REGION}
AIMED = ("target", "job_id", "attempt", *NAMED)  # what `_aim` sets
# a valid body per operation, test_api's and two more, to put generated parts into
GOOD = {
    **BODIES,
    "/workers/{worker_id}/complete": {"reports": [{"job_id": 1, "attempt": 1, "exit_code": 0}]},
    "/workers/{worker_id}/return": {"jobs": [{"job_id": 1, "attempt": 1}]},
}
EDGES: dict[type, list[Any]] = {
    # of 32-bit, of JSON's exact integers, of MAX_ID and of SQLite's 64-bit integers
    int: [2**31, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63) - 1],
    # half of a UTF-16 pair (JSON can escape it), NUL, a character outside the BMP
    str: ["\udcff", "a\x00b", "\U0001f600", ""],
}

# requests made, per test; the module prints the total
REQUESTS: collections.Counter[str] = collections.Counter()


class NoContainers(LocalProvider):
    """The local provider without container builds: a fuzzed image must not run docker."""

    def deploy(self, kind: ResourceKind, spec: Spec, log: Log) -> Spec:
        if isinstance(spec, ImageSpec) and spec.name != NATIVE_IMAGE:
            raise DeployFailed("no container images while fuzzing")
        return super().deploy(kind, spec, log)

    def teardown(self, kind: ResourceKind, spec: Spec, log: Log) -> None:
        log(f"{kind.singular} deleted")


class Seeds:
    """Jobs the seeding made, for the fuzzer to aim at besides random ids."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.job_ids: list[int] = []
        self.held: list[int] = []  # running jobs the worker was given

    def top_up(self) -> None:
        """Keep the worker holding running jobs, which fuzzed reports and cancels use up.
        Fuzzing may have broken the sample queue or definition: then it does without."""
        jobs = [self.client.get(f"/jobs/{i}").json() for i in self.held]
        self.held = [
            j["id"]
            for j in jobs
            if j["status"] == "Running" and j["worker_id"] == WORKER and not j["cancel_requested"]
        ]
        if len(self.held) >= HELD:
            return
        more = [submission("fuzz-top-up") for _ in range(HELD)]
        if self.client.post("/jobs", json={"jobs": more}).status_code == 200:
            response = self.client.post(
                f"/workers/{WORKER}/claim", json={"queue": Q, "definition": D, "limit": HELD}
            )
            claimed = [j["id"] for j in response.json().get("jobs", [])]
            self.held += claimed
            self.job_ids += claimed


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "store.db")
    yield db
    db.close()


@pytest.fixture(scope="module")
def app(fuzz_store: SQLiteStore) -> Iterator[Any]:
    """The host app, run by schemathesis' ASGI transport: one event loop for every request,
    the seeding's and the fuzzer's, as in the daemon."""
    settings = HostSettings(
        data_dir=Path(fuzz_store.path).parent,
        api_key=KEY,
        url="http://127.0.0.1:9",
        max_wait_seconds=0.01,  # long-polls (`wait` goes up to 60 s) come back at once
    )
    yield create_app(settings, fuzz_store, provider=NoContainers())
    # the transport starts the app's lifespan on first use; end it before the store closes
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def seeds(app: Any) -> Iterator[Seeds]:
    """Jobs in each state, a worker holding some, a static region with a machine joined.
    test_api's helpers take this requests session as they take a TestClient."""
    with asgi.get_client(app) as client:
        client.headers["x-api-key"] = KEY
        seeded = Seeds(client)
        waiting, held, array, running, done, failed = submit(
            client,
            submission("fuzz-waiting"),
            submission("fuzz-held", hold=True),
            submission("fuzz-array", array={"spec": "1-3"}),
            submission("fuzz-running"),
            submission("fuzz-done"),
            submission("fuzz-failed"),
        )
        (blocked,) = submit(
            client, submission("fuzz-blocked", depends=[{"kind": "afterok", "target": waiting}])
        )
        claimed = [job["id"] for job in claim(client, WORKER, limit=1000)]
        assert {running, done, failed} <= set(claimed)
        response = client.post(
            f"/workers/{WORKER}/jobs/{running}/progress",
            json={"attempt": 1, "output": [{"kind": LogKind.STDOUT.value, "text": "hi\n"}]},
        )
        assert response.status_code == 200, response.text
        assert complete(client, WORKER, done, 0) == "Successful"
        assert complete(client, WORKER, failed, 3) == "Failed"
        rest = [{"job_id": i, "attempt": 1} for i in claimed if i not in (running, done, failed)]
        response = client.post(f"/workers/{WORKER}/return", json={"jobs": rest})
        assert response.json() == {"returned": len(rest)}
        response = client.post("/resources/regions", json={"name": STATIC_REGION, "kind": "static"})
        assert response.status_code == 202, response.text
        response = client.post(
            f"/nodes/{NODE}/join", json={"region": STATIC_REGION, "definition": D, "slots": 2}
        )
        assert response.status_code == 200, response.text
        seeded.job_ids = [waiting, held, array, array + 1, running, done, failed, blocked]
        seeded.held = [running]
        seeded.top_up()
        yield seeded


@pytest.fixture(scope="module")
def fuzz_schema(app: Any, seeds: Seeds) -> Any:
    """The schema the app serves (fetched with the key), with hooks that aim some of the
    generated requests at what exists."""
    # an explicit config: a schemathesis.toml found on the way up must not change the run
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=schemathesis.Config(), headers={"x-api-key": KEY}
    )

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: Any) -> Any:
        operation = context.operation
        if not path_parameters or operation is None or operation.method.upper() == "DELETE":
            # deleting the seeded resources would leave the rest of the run nothing to aim at
            return st.just(path_parameters)
        # a worker's routes are about the jobs it holds
        jobs = seeds.held if "worker_id" in path_parameters and seeds.held else seeds.job_ids
        known = {
            "job_id": st.sampled_from(jobs),
            "worker_id": st.just(WORKER),
            "node_id": st.just(NODE),
            "name": st.sampled_from(KNOWN_NAMES),
        }
        aimed = st.fixed_dictionaries({k: v for k, v in known.items() if k in path_parameters})
        aimed = aimed.map(lambda a: {**path_parameters, **a})
        return st.one_of(st.just(path_parameters), aimed, aimed)  # aimed two times in three

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        def aim(value: Any) -> Any:
            return _aim(value, seeds.job_ids, seeds.held or seeds.job_ids)

        aimed = aim(body)
        variants = [st.just(body), st.just(aimed), _at_edge(aimed)]
        # a valid request with one part of the generated one put in, so that the code behind
        # the checks the rest of the generated request fails judges that part
        good = GOOD.get(context.operation.path) if context.operation else None
        parts = [] if good is None else [p for p in _paths(aimed) if _fits(good, p)]
        if parts:
            grafted = st.sampled_from(parts).map(lambda p: _put(aim(good), p, _get(aimed, p)))
            variants += [grafted, grafted.flatmap(_at_edge)]
        return st.one_of(variants)

    return schema


def _aim(value: Any, job_ids: list[int], held: list[int]) -> Any:
    """`value` with the queues, definitions, regions and jobs it names made existing ones:
    dependencies on any job, reports on the jobs the worker holds (first attempts)."""
    if isinstance(value, list):
        return [_aim(v, job_ids, held) for v in value]
    if not isinstance(value, dict):
        return value
    aimed = {k: _aim(v, job_ids, held) for k, v in value.items()}
    for key, name in NAMED.items():
        if isinstance(aimed.get(key), str):
            aimed[key] = name
    for key, ids in (("target", job_ids), ("job_id", held)):
        if type(aimed.get(key)) is int:
            aimed[key] = ids[aimed[key] % len(ids)]
    if type(aimed.get("attempt")) is int:
        aimed["attempt"] = 1
    return aimed


def _at_edge(value: Any) -> Any:
    """`value` with one of its integers or strings at an edge (one only, so that no other
    one is refused first), but for those `_aim` set."""
    edges = [
        st.tuples(st.just(path), st.sampled_from(EDGES[type(_get(value, path))]))
        for path in _paths(value)
        if type(_get(value, path)) in EDGES and path[-1] not in AIMED
    ]
    return st.one_of(edges).map(lambda e: _put(value, *e)) if edges else st.just(value)


def _paths(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where every part of `value` is, nested ones included."""
    if not isinstance(value, (dict, list)):
        return []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return [path for key, item in items for path in ((*where, key), *_paths(item, (*where, key)))]


def _fits(value: Any, where: tuple[Any, ...]) -> bool:
    """Whether `value` has a place at `where`: a key of an object in it, or an item."""
    *parents, last = where
    for key in parents:
        if not _has(value, key) or not isinstance(value[key], (dict, list)):
            return False
        value = value[key]
    return isinstance(value, dict) or _has(value, last)


def _has(value: dict[str, Any] | list[Any], key: Any) -> bool:
    if isinstance(value, dict):
        return key in value
    return isinstance(key, int) and key < len(value)


def _get(value: Any, where: tuple[Any, ...]) -> Any:
    for key in where:
        value = value[key]
    return value


def _put(value: Any, where: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with `new` at `where`."""
    if not where:
        return new
    head, *rest = where
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = _put(value[head], tuple(rest), new) if rest else new
    return copy


@pytest.fixture(scope="module", autouse=True)
def report_requests(record_testsuite_property: Any) -> Iterator[None]:
    yield
    total = sum(REQUESTS.values())
    print(f"\nfuzzed {total} requests: {dict(REQUESTS)}")
    record_testsuite_property("fuzzed_requests", total)


@pytest.fixture
def counted(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's name in REQUESTS; afterwards, the test must have made its share."""
    name = request.node.name
    yield name
    assert REQUESTS[name] >= FLOOR, f"{name} made only {REQUESTS[name]} requests"


def fuzz(
    schema: Any,
    subtests: pytest.Subtests,
    send: Callable[[Case], None],
    examples: settings = FUZZ_SETTINGS,
    before: Callable[[], None] = lambda: None,
) -> None:
    """Send generated requests to every operation, valid ones then invalid ones; a subtest
    per operation and mode, so that one failing operation does not hide the others."""
    # schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) relies on a
    # pytest internal that pytest 9 removed, so each operation gets a plain Hypothesis test
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            with subtests.test(operation.label, mode=mode.value):
                before()
                try:
                    failures = _fuzz_operation(operation, mode, send, examples)
                except Unsatisfiable:
                    # nothing in a request without a body and with only string parameters
                    # (GET /health, POST .../exit) can be made invalid
                    if mode is GenerationMode.POSITIVE:
                        raise
                    continue
                shown = "\n\n".join(dict.fromkeys(failures))
                assert not failures, f"{len(failures)} failed requests:\n{shown}"


def _fuzz_operation(
    operation: Any, mode: GenerationMode, send: Callable[[Case], None], examples: settings
) -> list[str]:
    """The requests that failed, each with its curl. They are collected rather than raised:
    the store changes with every request, so Hypothesis could not replay nor shrink one."""
    failures: list[str] = []

    @examples
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        try:
            send(case)
        except Exception as error:
            text = f"{type(error).__name__}: {error}"
            if "curl" not in text:
                text += "\n" + case.as_curl_command(headers=dict(case.headers or {}))
            failures.append(text)

    run()
    return failures


def test_no_server_error(
    fuzz_schema: Any, seeds: Seeds, subtests: pytest.Subtests, counted: str
) -> None:
    def send(case: Case) -> None:
        REQUESTS[counted] += 1
        # the schema documents 2xx bodies loosely (free-form objects for jobs and resources)
        # and 422s in FastAPI's shape; conformance is cheap to check and has not been noisy,
        # and catches an answer in a shape other than its response model's
        case.headers = {**(case.headers or {}), "x-api-key": KEY}
        case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

    fuzz(fuzz_schema, subtests, send, before=seeds.top_up)


def _snapshot(store: SQLiteStore) -> tuple[Any, ...]:
    jobs = store.list_jobs(JobFilter(), limit=10_000, after=0, collapse=False)
    return (
        [(j.id, j.status, j.attempt, j.priority, j.cancel_requested) for j in jobs],
        [(r.name, r.status, r.spec) for k in ResourceKind for r in store.list_resources(k.value)],
        store.nodes(),
        [store.read_log(j.id, [], after=0, limit=10_000) for j in jobs],
    )


@pytest.fixture
def untouched(fuzz_store: SQLiteStore, seeds: Seeds) -> Iterator[None]:
    """Nothing the refused requests asked for happened."""
    seeds.top_up()  # before the snapshot: a test may use the jobs the worker holds
    before = _snapshot(fuzz_store)
    yield
    assert _snapshot(fuzz_store) == before


def test_refused_without_the_key(
    fuzz_schema: Any, subtests: pytest.Subtests, counted: str, untouched: None
) -> None:
    def send(case: Case) -> None:
        # each request twice: without the header, then with a wrong key (the generated one
        # when there is one: the schema documents the header, so schemathesis fills it in)
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
        generated = (case.headers or {}).get("x-api-key")
        wrong = generated if isinstance(generated, str) and generated != KEY else "wrong"
        for key in (None, wrong):
            case.headers = headers if key is None else {**headers, "x-api-key": key}
            REQUESTS[counted] += 1
            response = case.call()
            assert response.status_code == 401, (key, response.status_code, response.text)
            assert response.json() == {"detail": "missing or wrong x-api-key"}

    fuzz(fuzz_schema, subtests, send, ANONYMOUS_SETTINGS)


@pytest.mark.parametrize(
    "headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}], ids=["missing", "wrong", "empty"]
)
def test_every_operation_refuses_without_the_key(
    app: Any, fuzz_schema: Any, headers: dict[str, str], untouched: None
) -> None:
    """A plain loop over the schema, so that no operation is missed, and the schema itself."""
    operations = [
        (method.upper(), path)
        for path, item in fuzz_schema.raw_schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    ]
    # the schema shows every route the app serves but its own (and the dashboard's pages,
    # tests/test_dashboard.py)
    served = {
        (method, schema_path(route.path))
        for route in app.routes
        if isinstance(route, APIRoute) and not route.path.startswith("/dashboard/")
        for method in route.methods or ()
    }
    assert served - set(operations) == {("GET", "/openapi.json")}
    with asgi.get_client(app) as anonymous:
        for method, path in [("GET", "/openapi.json"), *operations]:
            REQUESTS["plain"] += 1
            response = anonymous.request(
                method, concrete(path), json=BODIES.get(path), headers=headers
            )
            assert response.status_code == 401, (method, path, response.text)
            assert response.json() == {"detail": "missing or wrong x-api-key"}


# what fuzzing found, or reached and pointed at, each a server error before: now a 4xx that
# says what is wrong. JSON as Python writes it: NaN, and "\udcff" for a lone surrogate
HELD_JOB = f"/workers/{WORKER}/jobs/{{held}}"
JOB = submission("found")
FOUND = {
    "exit code beyond SQLite": (
        HELD_JOB + "/complete",
        {"attempt": 1, "exit_code": 2**64},
        "exit_code",
    ),
    "exit code beyond SQLite, batch": (
        f"/workers/{WORKER}/complete",
        {"reports": [{"job_id": "{held}", "attempt": 1, "exit_code": 2**63}]},
        "exit_code",
    ),
    "process group beyond SQLite": (
        HELD_JOB + "/progress",
        {"attempt": 1, "process_group": 2**63},
        "process_group",
    ),
    "task index beyond SQLite": (
        "/jobs",
        {"jobs": [{**JOB, "array": {"tasks": [{"index": 2**70}]}}]},
        "index",
    ),
    "cap beyond SQLite": (
        "/jobs",
        {"jobs": [{**JOB, "array": {"spec": "1-3", "cap": 2**63}}]},
        "cap",
    ),
    "cap beyond SQLite, in the spec": (
        "/jobs",
        {"jobs": [{**JOB, "array": {"spec": f"1-3%{2**70}"}}]},
        "the cap after %",
    ),
    "NaN": (HELD_JOB + "/progress", {"attempt": 1, "metrics": {"cpu": math.nan}}, "NaN"),
    "Infinity": (
        f"/workers/{WORKER}/claim",
        {"queue": Q, "definition": D, "wait": math.inf},
        "Infinity",
    ),
    "lone surrogate in a name": ("/jobs", {"jobs": [{**JOB, "name": "\udcff"}]}, "surrogate"),
    "lone surrogate in a script": ("/jobs", {"jobs": [{**JOB, "script": "\udcff"}]}, "surrogate"),
    "lone surrogate in a value": (
        "/jobs",
        {"jobs": [{**JOB, "env": {"A": "\udcff"}}]},
        "surrogate",
    ),
    "lone surrogate in a key": ("/jobs", {"jobs": [{**JOB, "env": {"\udcff": "a"}}]}, "surrogate"),
    "lone surrogate in output": (
        HELD_JOB + "/progress",
        {"attempt": 1, "output": [{"kind": "STDOUT", "text": "\udcff"}]},
        "surrogate",
    ),
    "lone surrogate in a machine": (
        f"/nodes/{NODE}/join",
        {"region": STATIC_REGION, "definition": D, "slots": 1, "hostname": "\udcff"},
        "surrogate",
    ),
    "lone surrogate in a resource": (
        "/resources/definitions",
        {"name": "d", "environment": {"A": "\udcff"}},
        "surrogate",
    ),
}


@pytest.mark.parametrize(("path", "body", "detail"), FOUND.values(), ids=FOUND.keys())
def test_what_fuzzing_found(
    seeds: Seeds, untouched: None, path: str, body: dict[str, Any], detail: str
) -> None:
    held = str(seeds.held[0])
    text = json.dumps(body).replace('"{held}"', held)
    response = seeds.client.post(
        path.format(held=held), data=text, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert detail in response.text


def test_a_body_that_is_not_text(seeds: Seeds) -> None:
    """Not JSON, and not UTF-8 either: FastAPI's own 422 failed to show it."""
    response = seeds.client.post("/jobs", data=b"\xff\xfe", headers={"content-type": "text/plain"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body"]
