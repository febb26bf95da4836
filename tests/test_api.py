"""The host's HTTP API through FastAPI's TestClient (no scheduler runs here)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hyper.host_settings import HostSettings
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

DEF_ENV = {"A": "def", "B": "def"}
STATUSES = ["Waiting", "Blocked", "Held", "Running", "Successful", "Failed", "Cancelled"]


def make_definition(api: TestClient, name: str, env: dict[str, str]) -> None:
    """A definition made through the API, once its deployment has settled."""
    response = api.post("/resources/definitions", json={"name": name, "environment": env})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 10
    while api.get(f"/resources/definitions/{name}").json()["status"] != "ACTIVE":
        assert time.monotonic() < deadline, "the definition never settled"
        time.sleep(0.01)


def job(api: TestClient, job_id: int) -> dict[str, Any]:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


# authentication -------------------------------------------------------------------------


def every_request(app: Any) -> list[tuple[str, str, str]]:
    """(method, concrete path, route path) for each route the app serves."""
    requests = []
    for route in app.routes:
        assert isinstance(route, APIRoute), f"unexpected route {route!r}"
        if route.path.startswith("/dashboard/"):
            continue  # pages for a browser, behind a session cookie: tests/test_dashboard.py
        for method in sorted(route.methods or ()):
            requests.append((method, concrete(route.path), schema_path(route.path)))
    return requests


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"x-api-key": "test-key "}],
    ids=["missing", "wrong", "empty", "padded"],
)
def test_every_route_refuses_without_the_key(api: TestClient, headers: dict[str, str]) -> None:
    (job_id,) = submit(api)
    requests = every_request(api.app)
    served = {(method, path) for method, _, path in requests}
    # the iteration really covers the API
    assert {
        ("GET", "/openapi.json"),
        ("GET", "/health"),
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", "/jobs/counts"),
        ("POST", "/jobs/cancel"),
        ("POST", "/jobs/hold"),
        ("POST", "/jobs/release"),
        ("GET", "/jobs/{job_id}"),
        ("GET", "/jobs/{job_id}/script"),
        ("GET", "/jobs/{job_id}/log"),
        ("POST", "/workers/{worker_id}/claim"),
        ("POST", "/workers/{worker_id}/jobs/{job_id}/progress"),
        ("POST", "/workers/{worker_id}/jobs/{job_id}/complete"),
        ("POST", "/workers/{worker_id}/exit"),
        ("POST", "/workers/{worker_id}/complete"),
        ("POST", "/workers/{worker_id}/return"),
        ("GET", "/nodes"),
        ("GET", "/resources/{kind}"),
        ("GET", "/resources/{kind}/{name}"),
        ("POST", "/resources/{kind}"),
        ("PATCH", "/resources/{kind}/{name}"),
        ("DELETE", "/resources/{kind}/{name}"),
        ("POST", "/nodes/{node_id}/join"),
        ("POST", "/nodes/{node_id}/poll"),
        ("POST", "/nodes/{node_id}/leave"),
    } <= served

    anonymous = TestClient(api.app, headers=headers)
    try:
        for method, path, template in requests:
            body = BODIES.get(template)
            response = anonymous.request(method, path, json=body)
            assert response.status_code == 401, (method, path, response.text)
            assert "x-api-key" in response.json()["detail"]
    finally:
        anonymous.close()

    # nothing those requests asked for happened
    assert job(api, job_id)["status"] == "Waiting"
    assert api.get("/jobs/counts").json()["Total"] == 1


def test_malformed_body_without_key_is_401(api: TestClient) -> None:
    anonymous = TestClient(api.app)
    try:
        response = anonymous.post(
            "/jobs", content=b"{not json", headers={"content-type": "application/json"}
        )
    finally:
        anonymous.close()
    assert response.status_code == 401, response.text


def test_openapi_served_with_key(api: TestClient) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "hyper host"
    assert "/jobs" in schema["paths"]
    assert "/workers/{worker_id}/claim" in schema["paths"]
    assert "/openapi.json" not in schema["paths"]
    # the built-in documentation pages are not served at all
    assert api.get("/docs").status_code == 404


def test_health(api: TestClient, settings: HostSettings) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["host"] == settings.name
    assert isinstance(body["pid"], int)
    assert body["version"]


# jobs -------------------------------------------------------------------------------------


def test_submit_then_get(api: TestClient) -> None:
    first, second = submit(
        api,
        submission("one", retries=2, env={"A": "1"}, submit_dir="/tmp/d", script="echo 1\n"),
        submission("two"),
    )
    assert second > first
    found = job(api, first)
    assert found["id"] == first
    assert found["name"] == "one"
    assert found["queue"] == Q and found["definition"] == D
    assert found["status"] == "Waiting"
    assert found["retries"] == 2 and found["retries_left"] == 2
    assert found["attempt"] == 0
    assert found["env"] == {"A": "1"}
    assert found["submit_dir"] == "/tmp/d"
    assert found["script"] is None  # not carried in the job record
    script = api.get(f"/jobs/{first}/script")
    assert script.status_code == 200
    assert script.json() == {"id": first, "script": "echo 1\n"}


def test_get_unknown_job_is_404(api: TestClient) -> None:
    for path in ("/jobs/999999", "/jobs/999999/script", "/jobs/999999/log"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "999999" in response.json()["detail"]


def test_list_jobs_pagination_and_filters(api: TestClient) -> None:
    ids = submit(api, *(submission(f"j{i}") for i in range(5)))
    seen: list[int] = []
    after = 0
    pages = []
    while True:
        page = api.get("/jobs", params={"limit": 2, "after": after})
        assert page.status_code == 200
        body = page.json()
        pages.append(body["next"])
        seen.extend(j["id"] for j in body["jobs"])
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == ids
    assert pages == [ids[1], ids[3], None]

    named = api.get("/jobs", params={"name": "j3"}).json()
    assert [j["id"] for j in named["jobs"]] == [ids[3]]
    assert named["next"] is None
    assert api.post("/jobs/cancel", json={"ids": [str(ids[0])]}).json()["cancelled"] == 1
    waiting = api.get("/jobs", params={"status": "waiting"}).json()
    assert [j["id"] for j in waiting["jobs"]] == ids[1:]
    several = api.get("/jobs", params=[("status", "Cancelled"), ("status", "Waiting")]).json()
    assert [j["id"] for j in several["jobs"]] == ids
    assert api.get("/jobs", params={"queue": "other"}).json()["jobs"] == []
    bad = api.get("/jobs", params={"status": "Done"})
    assert bad.status_code == 400
    assert "Waiting" in bad.json()["detail"]
    assert api.get("/jobs", params={"limit": 0}).status_code == 422


def test_counts(api: TestClient) -> None:
    empty = api.get("/jobs/counts")
    assert empty.status_code == 200
    assert empty.json() == {"Total": 0, **dict.fromkeys(STATUSES, 0)}

    ids = submit(api, submission(), submission(), submission(), submission(hold=True))
    assert api.post("/jobs/cancel", json={"ids": [str(ids[0])]}).json()["cancelled"] == 1
    (running,) = claim(api, "w1")
    assert running["id"] == ids[1]
    counts = api.get("/jobs/counts").json()
    assert counts == {
        "Total": 4,
        "Waiting": 1,
        "Blocked": 0,
        "Held": 1,
        "Running": 1,
        "Successful": 0,
        "Failed": 0,
        "Cancelled": 1,
    }
    assert api.get("/jobs/counts", params={"queue": "other"}).json()["Total"] == 0


def test_unknown_queue_is_400_listing_queues(api: TestClient) -> None:
    response = api.post("/jobs", json={"jobs": [submission(queue="no-such-queue")]})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "no-such-queue" in detail
    assert "existing queues" in detail and Q in detail
    assert api.get("/jobs/counts").json()["Total"] == 0


def test_unknown_definition_is_400_with_hint(api: TestClient) -> None:
    # one good job and one bad: the whole request is refused
    response = api.post(
        "/jobs", json={"jobs": [submission(), submission(definition="sample-def-2")]}
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert f"did you mean {D!r}" in detail
    assert api.get("/jobs/counts").json()["Total"] == 0


def test_script_size_limit(api: TestClient, settings: HostSettings) -> None:
    settings.max_script_bytes = 64
    at_limit = api.post("/jobs", json={"jobs": [submission(script="x" * 64)]})
    assert at_limit.status_code == 200, at_limit.text
    over = api.post("/jobs", json={"jobs": [submission("big", script="x" * 65)]})
    assert over.status_code == 400
    assert "64 bytes" in over.json()["detail"]
    # bytes, not characters
    wide = api.post("/jobs", json={"jobs": [submission("wide", script="é" * 33)]})
    assert wide.status_code == 400
    assert api.get("/jobs/counts").json()["Total"] == 1


def test_script_with_nul_is_400(api: TestClient) -> None:
    response = api.post("/jobs", json={"jobs": [submission(script="echo \x00")]})
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"jobs": [submission(colour="red")]},
        {"jobs": [submission()], "priority": 1},
        {"jobs": []},
        {"jobs": [submission(retries=-1)]},
        {"jobs": [submission(name="")]},
    ],
    ids=["extra-job-field", "extra-top-field", "no-jobs", "negative-retries", "empty-name"],
)
def test_invalid_body_is_422(api: TestClient, body: dict[str, Any]) -> None:
    response = api.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert api.get("/jobs/counts").json()["Total"] == 0


# cancelling ---------------------------------------------------------------------------------


def test_cancel_with_unknown_id_is_400_and_cancels_nothing(api: TestClient) -> None:
    (job_id,) = submit(api)
    response = api.post("/jobs/cancel", json={"ids": [str(job_id), "999999"]})
    assert response.status_code == 400
    assert "999999" in response.json()["detail"]
    assert job(api, job_id)["status"] == "Waiting"
    # ids are strings in the selector forms; a bare number or a bad form is refused
    assert api.post("/jobs/cancel", json={"ids": [job_id]}).status_code == 422
    bad_form = api.post("/jobs/cancel", json={"ids": [f"{job_id}x"]})
    assert bad_form.status_code == 400
    assert f"{job_id}x" in bad_form.json()["detail"]
    # an index range on a job that is not an array
    not_array = api.post("/jobs/cancel", json={"ids": [f"{job_id}[1-2]"]})
    assert not_array.status_code == 400
    assert "not an array" in not_array.json()["detail"]
    assert job(api, job_id)["status"] == "Waiting"


def test_cancel_needs_a_selection(api: TestClient) -> None:
    (job_id,) = submit(api)
    response = api.post("/jobs/cancel", json={})
    assert response.status_code == 400
    assert job(api, job_id)["status"] == "Waiting"
    unknown_queue = api.post("/jobs/cancel", json={"queue": "nope"})
    assert unknown_queue.status_code == 400
    assert job(api, job_id)["status"] == "Waiting"


def test_cancel_by_queue(api: TestClient) -> None:
    first, second, third = submit(api, submission(), submission(), submission())
    (running,) = claim(api, "w1")
    assert running["id"] == first
    response = api.post("/jobs/cancel", json={"queue": Q})
    assert response.status_code == 200
    assert response.json() == {"cancelled": 2, "stopping": 1, "finished": [], "more": False}
    assert job(api, second)["status"] == "Cancelled"
    assert job(api, third)["status"] == "Cancelled"
    assert job(api, first)["status"] == "Running"
    assert job(api, first)["cancel_requested"] is True
    assert claim(api, "w2") == []
    again = api.post("/jobs/cancel", json={"queue": Q}).json()
    assert again == {"cancelled": 0, "stopping": 1, "finished": [], "more": False}
    # jobs already over are listed when named by id
    named = api.post("/jobs/cancel", json={"ids": [str(third), str(second)]}).json()
    assert sorted(named["finished"]) == [second, third]
    assert (named["cancelled"], named["stopping"]) == (0, 0)


# arrays, dependencies, hold ---------------------------------------------------------------------


def tasks(api: TestClient, array_id: int, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/jobs", params={"array": array_id, **params})
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def test_array_by_spec(api: TestClient) -> None:
    (array_id,) = submit(api, submission("arr", array={"spec": "1-5%2"}, env={"E": "1"}))
    (after,) = submit(api)
    assert after == array_id + 6  # one id for the array, one per task

    record = job(api, array_id)
    assert record["kind"] == "array"
    assert record["id"] == array_id and record["name"] == "arr"
    assert (record["size"], record["cap"], record["spec"]) == (5, 2, "1-5%2")
    assert record["status"] == "Waiting"
    assert record["counts"] == {**dict.fromkeys(STATUSES, 0), "Waiting": 5}
    assert record["env"] == {"E": "1"}

    listed = tasks(api, array_id)
    assert [t["id"] for t in listed] == [array_id + n for n in range(1, 6)]
    assert [t["array_index"] for t in listed] == [1, 2, 3, 4, 5]
    assert all(t["kind"] == "job" and t["array_id"] == array_id for t in listed)
    assert all(t["array_size"] == 5 for t in listed)
    task = job(api, array_id + 3)
    assert (task["kind"], task["array_id"], task["array_index"]) == ("job", array_id, 3)

    # the cap: two tasks at a time
    claimed = claim(api, "W", limit=10)
    assert [c["id"] for c in claimed] == [array_id + 1, array_id + 2, after]
    assert claim(api, "W", limit=10) == []
    assert complete(api, "W", array_id + 1, 0) == "Successful"
    assert [c["id"] for c in claim(api, "W", limit=10)] == [array_id + 3]

    record = job(api, array_id)
    assert record["status"] == "Running"
    assert record["counts"]["Running"] == 2 and record["counts"]["Successful"] == 1
    counts = api.get("/jobs/counts", params={"array": array_id}).json()
    assert counts == {
        **dict.fromkeys(STATUSES, 0),
        "Total": 5,
        "Running": 2,
        "Waiting": 2,
        "Successful": 1,
    }
    # counts of everything are of tasks and single jobs, not of the array line
    assert api.get("/jobs/counts").json()["Total"] == 6
    assert api.get("/jobs/counts", params={"name_prefix": "ar"}).json()["Total"] == 5
    assert api.get("/jobs/counts", params={"array": 0}).status_code == 422

    only_running = tasks(api, array_id, status="Running")
    assert [t["id"] for t in only_running] == [array_id + 2, array_id + 3]
    # a cap in the body wins over the spec's
    (other,) = submit(api, submission(array={"spec": "0-100:50%1", "cap": 3}))
    found = job(api, other)
    assert (found["size"], found["cap"]) == (3, 3)
    assert [t["array_index"] for t in tasks(api, other)] == [0, 50, 100]


def test_array_by_tasks(api: TestClient) -> None:
    body = submission(
        "items",
        script="process @ITEM@\n",
        array={
            "tasks": [
                {"name": "item-a", "env": {"ITEM": "a"}, "replacements": {"@ITEM@": "a"}},
                {"name": "item-b", "replacements": {"@ITEM@": "b"}},
                {"index": 7},
            ]
        },
    )
    (array_id,) = submit(api, body)
    record = job(api, array_id)
    assert (record["kind"], record["size"], record["cap"]) == ("array", 3, None)
    listed = tasks(api, array_id)
    assert [(t["array_index"], t["name"]) for t in listed] == [
        (1, "item-a"),
        (2, "item-b"),
        (7, "items"),
    ]
    scripts = [api.get(f"/jobs/{t['id']}/script").json()["script"] for t in listed]
    assert scripts == ["process a\n", "process b\n", "process @ITEM@\n"]
    named = api.get("/jobs", params={"name": "item-b"}).json()["jobs"]
    assert [t["id"] for t in named] == [array_id + 2]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        ({"spec": "5-1"}, "empty range"),
        ({"spec": "1-3%0"}, "cap"),
        ({"spec": "a-b"}, "cannot read"),
        ({}, "either"),
        ({"spec": "1-3", "tasks": [{}]}, "either"),
        ({"tasks": []}, "at least one task"),
        ({"tasks": [{"index": 1}, {"index": 1}]}, "unique"),
    ],
    ids=["reversed", "zero-cap", "words", "neither", "both", "no-tasks", "same-index"],
)
def test_bad_array_is_400_with_one_message(
    api: TestClient, array: dict[str, Any], expected: str
) -> None:
    response = api.post("/jobs", json={"jobs": [submission(), submission(array=array)]})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert expected in detail
    if "spec" in array and "tasks" not in array:
        assert array["spec"] in detail
    assert api.get("/jobs/counts").json()["Total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        submission(env={"1BAD": "x"}),
        submission(env={"A-B": "x"}),
        submission(array={"tasks": [{"env": {"OK": "1"}}, {"env": {"NO WAY": "1"}}]}),
    ],
    ids=["leading-digit", "dash", "task-env"],
)
def test_invalid_env_name_is_400(api: TestClient, body: dict[str, Any]) -> None:
    response = api.post("/jobs", json={"jobs": [body]})
    assert response.status_code == 400, response.text
    assert "not a valid environment variable name" in response.json()["detail"]
    assert api.get("/jobs/counts").json()["Total"] == 0


def test_get_array_and_its_tasks_in_listings(api: TestClient) -> None:
    (single,) = submit(api, submission("one"))
    (array_id,) = submit(api, submission("arr", array={"spec": "1-3"}))
    (last,) = submit(api, submission("two"))

    flat = api.get("/jobs").json()["jobs"]
    assert [j["id"] for j in flat] == [single, array_id + 1, array_id + 2, array_id + 3, last]
    lines = api.get("/jobs", params={"collapse": "true"}).json()
    assert [(j["kind"], j["id"]) for j in lines["jobs"]] == [
        ("job", single),
        ("array", array_id),
        ("job", last),
    ]
    assert lines["jobs"][1]["counts"]["Waiting"] == 3
    assert lines["jobs"][1]["status"] == "Waiting"
    page = api.get("/jobs", params={"collapse": "true", "limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == [single, array_id]
    assert page["next"] == array_id
    rest = api.get("/jobs", params={"collapse": "true", "after": page["next"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [last]
    # a status filter lists tasks, not array lines
    by_status = api.get("/jobs", params={"collapse": "true", "status": "Waiting"}).json()
    assert [j["id"] for j in by_status["jobs"]] == [j["id"] for j in flat]

    assert [t["id"] for t in tasks(api, array_id)] == [array_id + n for n in (1, 2, 3)]
    assert tasks(api, single) == []
    prefixed = api.get("/jobs", params={"name_prefix": "tw"}).json()["jobs"]
    assert [j["id"] for j in prefixed] == [last]


def test_collapse_with_array_filter_shows_only_that_array(api: TestClient) -> None:
    first, second = submit(api, submission(array={"spec": "1-2"}), submission(array={"spec": "1"}))
    lines = api.get("/jobs", params={"array": first, "collapse": "true"}).json()["jobs"]
    assert second not in [j["id"] for j in lines]


def test_cancel_tasks_by_selector(api: TestClient) -> None:
    (array_id,) = submit(api, submission(array={"spec": "1-5"}))
    response = api.post("/jobs/cancel", json={"ids": [f"{array_id}[2-3]"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"cancelled": 2, "stopping": 0, "finished": [], "more": False}
    response = api.post("/jobs/cancel", json={"ids": [f"{array_id}_4"]})
    assert response.json() == {"cancelled": 1, "stopping": 0, "finished": [], "more": False}
    assert [t["status"] for t in tasks(api, array_id)] == [
        "Waiting",
        "Cancelled",
        "Cancelled",
        "Cancelled",
        "Waiting",
    ]
    # a task by its own id; a finished one named so is listed
    again = api.post("/jobs/cancel", json={"ids": [str(array_id + 4)]}).json()
    assert again == {"cancelled": 0, "stopping": 0, "finished": [array_id + 4], "more": False}
    # the whole array, with filters that must also match
    running_only = api.post("/jobs/cancel", json={"ids": [str(array_id)], "status": "Running"})
    assert running_only.json() == {"cancelled": 0, "stopping": 0, "finished": [], "more": False}
    whole = api.post("/jobs/cancel", json={"ids": [str(array_id)]}).json()
    assert whole == {"cancelled": 2, "stopping": 0, "finished": [], "more": False}
    record = job(api, array_id)
    assert record["status"] == "Cancelled" and record["counts"]["Cancelled"] == 5
    # selectors on an unknown array are refused
    unknown = api.post("/jobs/cancel", json={"ids": ["999999[1-2]"]})
    assert unknown.status_code == 400 and "999999" in unknown.json()["detail"]


def test_hold_and_release_routes(api: TestClient) -> None:
    held, free = submit(api, submission(hold=True), submission())
    assert job(api, held)["status"] == "Held"
    (running,) = claim(api, "W", limit=10)
    assert running["id"] == free
    assert claim(api, "W") == []

    response = api.post("/jobs/release", json={"ids": [str(held)]})
    assert response.status_code == 200, response.text
    assert response.json() == {"changed": 1, "unchanged": [], "more": False}
    assert job(api, held)["status"] == "Waiting"

    response = api.post("/jobs/hold", json={"ids": [str(held), str(free)]})
    assert response.json() == {"changed": 1, "unchanged": [free], "more": False}  # free is running
    assert job(api, held)["status"] == "Held"
    assert claim(api, "W") == []

    (array_id,) = submit(api, submission(array={"spec": "1-3"}))
    response = api.post("/jobs/hold", json={"ids": [f"{array_id}[1-2]"]})
    assert response.json() == {"changed": 2, "unchanged": [], "more": False}
    assert [t["status"] for t in tasks(api, array_id)] == ["Held", "Held", "Waiting"]
    assert job(api, array_id)["counts"]["Held"] == 2
    response = api.post("/jobs/release", json={"queue": Q})
    assert response.json() == {"changed": 3, "unchanged": [], "more": False}
    assert [c["id"] for c in claim(api, "W", limit=10)] == [
        held,
        *range(array_id + 1, array_id + 4),
    ]

    assert api.post("/jobs/hold", json={}).status_code == 400
    assert api.post("/jobs/release", json={"ids": ["999999"]}).status_code == 400
    assert api.post("/jobs/hold", json={"queue": Q, "colour": "red"}).status_code == 422


def test_dependencies_over_the_api(api: TestClient) -> None:
    (first,) = submit(api)
    (after_ok,) = submit(api, submission(depends=[{"kind": "afterok", "target": first}]))
    (after_not,) = submit(api, submission(depends=[{"kind": "afternotok", "target": first}]))
    assert job(api, after_ok)["status"] == "Blocked"
    assert api.get("/jobs/counts").json()["Blocked"] == 2
    (got,) = claim(api, "W", limit=10)
    assert got["id"] == first
    assert complete(api, "W", first, 0) == "Successful"
    assert job(api, after_ok)["status"] == "Waiting"
    failed = job(api, after_not)
    assert failed["status"] == "Failed"
    assert "can never be met" in failed["reason"]


def test_dependency_on_unknown_id_is_400(api: TestClient) -> None:
    (known,) = submit(api)
    response = api.post(
        "/jobs",
        json={
            "jobs": [
                submission(),
                submission(depends=[{"kind": "afterok", "target": known}]),
                submission(depends=[{"kind": "afterany", "target": 999999}]),
            ]
        },
    )
    assert response.status_code == 400, response.text
    assert "999999" in response.json()["detail"]
    assert api.get("/jobs/counts").json()["Total"] == 1


@pytest.mark.parametrize(
    "depends",
    [
        [{"kind": "afterfoo", "target": 1}],
        [{"kind": "afterok", "target": 0}],
        [{"kind": "afterok"}],
        [{"kind": "afterok", "target": 1, "extra": 1}],
    ],
    ids=["unknown-kind", "zero-target", "no-target", "extra-field"],
)
def test_bad_dependency_shape_is_422(api: TestClient, depends: list[dict[str, Any]]) -> None:
    (target,) = submit(api)
    assert target == 1
    response = api.post("/jobs", json={"jobs": [submission(depends=depends)]})
    assert response.status_code == 422, response.text
    assert api.get("/jobs/counts").json()["Total"] == 1


def test_aftercorr_on_a_single_job_is_400(api: TestClient) -> None:
    (array_id,) = submit(api, submission(array={"spec": "1-2"}))
    response = api.post(
        "/jobs",
        json={"jobs": [submission(depends=[{"kind": "aftercorr", "target": array_id}])]},
    )
    assert response.status_code == 400
    assert "aftercorr" in response.json()["detail"]
    (b,) = submit(
        api,
        submission(array={"spec": "1-2"}, depends=[{"kind": "aftercorr", "target": array_id}]),
    )
    assert [t["status"] for t in tasks(api, b)] == ["Blocked", "Blocked"]


def test_priority_time_limit_and_output_options(api: TestClient) -> None:
    low, high = submit(
        api,
        submission(priority=-1),
        submission(
            priority=5,
            time_limit=90,
            output={"stdout": "out-%j.txt", "stderr": None, "join": True},
        ),
    )
    found = job(api, high)
    assert (found["priority"], found["time_limit"]) == (5, 90)
    assert found["options"] == {"stdout": "out-%j.txt", "join": True}
    assert job(api, low)["options"] == {}
    assert [c["id"] for c in claim(api, "W", limit=10)] == [high, low]
    for bad in ({"priority": 10_001}, {"time_limit": 0}, {"output": {"colour": "red"}}):
        response = api.post("/jobs", json={"jobs": [submission(**bad)]})
        assert response.status_code == 422, bad


def test_claimed_task_merges_env_and_applies_replacements(
    api: TestClient, store: SQLiteStore
) -> None:
    make_definition(api, "d-env", DEF_ENV)
    body = submission(
        definition="d-env",
        script="run @ITEM@ with $A $B $C $D\n",
        env={"B": "array", "C": "array"},
        array={
            "tasks": [
                {"env": {"C": "task", "D": "task"}, "replacements": {"@ITEM@": "first"}},
                {"replacements": {"@ITEM@": "second"}},
            ]
        },
    )
    (array_id,) = submit(api, body)
    response = api.post("/workers/W/claim", json={"queue": Q, "definition": "d-env", "limit": 5})
    first, second = response.json()["jobs"]
    assert (first["array_id"], first["array_index"]) == (array_id, 1)
    # definition < array < task
    assert first["env"] == {"A": "def", "B": "array", "C": "task", "D": "task"}
    assert second["env"] == {"A": "def", "B": "array", "C": "array"}
    assert first["script"] == "run first with $A $B $C $D\n"
    assert second["script"] == "run second with $A $B $C $D\n"
    # the stored array keeps only its own variables
    assert job(api, array_id)["env"] == {"B": "array", "C": "array"}


# the worker side ------------------------------------------------------------------------------


def test_output_sent_as_the_body_is_logged_as_progress_output_is(api: TestClient) -> None:
    """/output: one piece of one stream as UTF-8 text (not JSON); it renews the lease,
    answers a cancel, and is refused from a worker that does not hold the attempt."""
    (job_id,) = submit(api, submission("raw"))
    assert claim(api, "W")[0]["id"] == job_id
    path = f"/workers/W/jobs/{job_id}/output"
    text = 'line "one"\\n\té\n' * 5000
    sent = api.post(
        path,
        params={"attempt": 1, "kind": "STDOUT", "process_group": 4242},
        content=text.encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"cancel": False}
    api.post(path, params={"attempt": 1, "kind": "STDERR"}, content=b"bad \xff byte\n")
    entries = api.get(f"/jobs/{job_id}/log", params={"kind": ["STDOUT", "STDERR"]}).json()
    logged = "".join(e["text"] for e in entries["entries"] if e["kind"] == "STDOUT")
    assert logged == text
    assert [e["text"] for e in entries["entries"] if e["kind"] == "STDERR"] == ["bad \ufffd byte\n"]
    api.post("/jobs/cancel", json={"ids": [str(job_id)]})
    again = api.post(path, params={"attempt": 1, "kind": "STDOUT"}, content=b"more\n")
    assert again.json() == {"cancel": True}
    stranger = api.post(
        f"/workers/W2/jobs/{job_id}/output", params={"attempt": 1, "kind": "STDOUT"}, content=b"x"
    )
    assert stranger.status_code == 409
    assert api.post(path, params={"attempt": 1, "kind": "NOPE"}, content=b"x").status_code == 422


def test_worker_flow(api: TestClient) -> None:
    (job_id,) = submit(api, submission("flow", script="echo hello\n", env={"GREETING": "hi"}))
    claimed = claim(api, "W")
    assert len(claimed) == 1
    got = claimed[0]
    assert got["id"] == job_id
    assert got["script"] == "echo hello\n"
    assert got["env"] == {"GREETING": "hi"}
    assert got["attempt"] == 1
    assert got["status"] == "Running"
    assert got["worker_id"] == "W"
    assert claim(api, "W2") == []

    progress = api.post(
        f"/workers/W/jobs/{job_id}/progress",
        json={
            "attempt": 1,
            "output": [{"kind": "STDOUT", "text": "hello\n"}],
            "metrics": {"cpu": 0.5},
        },
    )
    assert progress.status_code == 200, progress.text
    assert progress.json() == {"cancel": False}

    cancel = api.post("/jobs/cancel", json={"ids": [str(job_id)]})
    assert cancel.json() == {"cancelled": 0, "stopping": 1, "finished": [], "more": False}
    progress = api.post(f"/workers/W/jobs/{job_id}/progress", json={"attempt": 1})
    assert progress.json() == {"cancel": True}

    # another worker cannot end it, nor report its attempt
    stranger = api.post(
        f"/workers/W2/jobs/{job_id}/complete",
        json={"attempt": 1, "exit_code": 0, "output": [{"kind": "STDOUT", "text": "stray"}]},
    )
    assert stranger.status_code == 409
    assert "W2" in stranger.json()["detail"]
    stray_progress = api.post(
        f"/workers/W2/jobs/{job_id}/progress",
        json={"attempt": 1, "output": [{"kind": "STDOUT", "text": "stray"}]},
    )
    assert stray_progress.status_code == 409
    wrong_attempt = api.post(
        f"/workers/W/jobs/{job_id}/complete", json={"attempt": 2, "exit_code": 0}
    )
    assert wrong_attempt.status_code == 409
    assert job(api, job_id)["status"] == "Running"

    done = api.post(
        f"/workers/W/jobs/{job_id}/complete",
        json={
            "attempt": 1,
            "exit_code": 143,
            "output": [{"kind": "STDERR", "text": "terminated\n"}],
        },
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"status": "Cancelled", "jobs": []}
    final = job(api, job_id)
    assert final["status"] == "Cancelled"
    assert final["exit_code"] == 143
    assert final["ended"] is not None

    log = api.get(f"/jobs/{job_id}/log")
    assert log.status_code == 200
    page = log.json()
    assert page["finished"] is True
    entries = page["entries"]
    assert page["next"] == entries[-1]["seq"]
    kinds = [e["kind"] for e in entries]
    assert {"STDOUT", "STDERR", "SYSTEM", "METRICS"} <= set(kinds)
    # the strangers' output was refused with their reports
    assert [e["text"] for e in entries if e["kind"] == "STDOUT"] == ["hello\n"]
    assert [e["text"] for e in entries if e["kind"] == "STDERR"] == ["terminated\n"]
    system = [e["text"] for e in entries if e["kind"] == "SYSTEM"]
    assert any("submitted" in t for t in system)
    assert any("started on W" in t for t in system)
    assert any("cancel requested" in t for t in system)
    assert "cancelled" in system[-1]

    # a late report after the end is refused too
    late = api.post(f"/workers/W/jobs/{job_id}/progress", json={"attempt": 1})
    assert late.status_code == 409


def test_complete_with_retries_goes_back_to_waiting(api: TestClient) -> None:
    (job_id,) = submit(api, submission(retries=1))
    claim(api, "W")
    done = api.post(f"/workers/W/jobs/{job_id}/complete", json={"attempt": 1, "exit_code": 3})
    assert done.json() == {"status": "Waiting", "jobs": []}
    (again,) = claim(api, "W")
    assert again["attempt"] == 2
    done = api.post(f"/workers/W/jobs/{job_id}/complete", json={"attempt": 2, "exit_code": 3})
    assert done.json() == {"status": "Failed", "jobs": []}
    assert job(api, job_id)["exit_code"] == 3


def test_log_kind_filter_and_cursor(api: TestClient) -> None:
    (job_id,) = submit(api)
    claim(api, "W")
    api.post(
        f"/workers/W/jobs/{job_id}/progress",
        json={"attempt": 1, "output": [{"kind": "STDOUT", "text": "a"}]},
    )
    system = api.get(f"/jobs/{job_id}/log", params={"kind": "SYSTEM"}).json()
    assert system["entries"]
    assert {e["kind"] for e in system["entries"]} == {"SYSTEM"}
    assert system["finished"] is False
    stdout = api.get(f"/jobs/{job_id}/log", params={"kind": "STDOUT"}).json()
    assert [e["text"] for e in stdout["entries"]] == ["a"]
    after = api.get(f"/jobs/{job_id}/log", params={"after": stdout["next"]}).json()
    assert after["entries"] == []
    assert after["next"] == stdout["next"]
    assert api.get(f"/jobs/{job_id}/log", params={"kind": "BOGUS"}).status_code == 422


def test_claim_long_poll_times_out_empty(api: TestClient) -> None:
    start = time.monotonic()
    assert claim(api, "W", wait=0.3) == []
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 5


def test_claim_long_poll_wakes_on_submit(api: TestClient) -> None:
    result: dict[str, Any] = {}

    def waiting_claim() -> None:
        start = time.monotonic()
        result["jobs"] = claim(api, "W", wait=10)
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=waiting_claim)
    thread.start()
    time.sleep(0.2)
    (job_id,) = submit(api)
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert [j["id"] for j in result["jobs"]] == [job_id]
    assert result["elapsed"] < 5


def test_claim_merges_definition_environment(api: TestClient, store: SQLiteStore) -> None:
    make_definition(api, "d-env", DEF_ENV)
    response = api.post(
        "/jobs",
        json={"jobs": [submission(definition="d-env", env={"B": "job", "C": "job"})]},
    )
    assert response.status_code == 200, response.text
    claimed = api.post("/workers/W/claim", json={"queue": Q, "definition": "d-env"})
    (got,) = claimed.json()["jobs"]
    # the job's own variables win over the definition's
    assert got["env"] == {"A": "def", "B": "job", "C": "job"}
    # the stored job keeps only its own
    assert job(api, got["id"])["env"] == {"B": "job", "C": "job"}


def test_claim_unknown_definition_is_400(api: TestClient) -> None:
    response = api.post("/workers/W/claim", json={"queue": Q, "definition": "nope", "wait": 0})
    assert response.status_code == 400
    assert D in response.json()["detail"]


def test_worker_exit(api: TestClient) -> None:
    response = api.post("/workers/W/exit")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


# resources ---------------------------------------------------------------------------------


def test_resources(api: TestClient) -> None:
    queues = api.get("/resources/queues")
    assert queues.status_code == 200
    assert [r["name"] for r in queues.json()["items"]] == [Q]
    definitions = api.get("/resources/definitions").json()["items"]
    assert [r["name"] for r in definitions] == [D]

    one = api.get(f"/resources/queues/{Q}")
    assert one.status_code == 200
    assert one.json()["name"] == Q
    assert one.json()["status"] == "ACTIVE"
    assert one.json()["spec"]["compute_environment"] == "local-cluster"


def test_unknown_resource(api: TestClient) -> None:
    # an unknown name is a usage error naming what exists (400), not a 404
    missing = api.get("/resources/queues/nosuch")
    assert missing.status_code == 400
    assert "nosuch" in missing.json()["detail"]
    assert Q in missing.json()["detail"]
    assert api.get("/resources/bogus-kind").status_code == 422


def test_completion_claims_the_next_job_in_the_same_round_trip(api: TestClient) -> None:
    first, second = (
        api.post("/jobs", json={"jobs": [submission(name=n)]}).json()["ids"][0] for n in "ab"
    )
    (job,) = claim(api, "W")
    assert job["id"] == first
    done = api.post(
        f"/workers/W/jobs/{first}/complete",
        json={"attempt": 1, "exit_code": 0, "claim_next": 1},
    ).json()
    assert done["status"] == "Successful"
    assert [j["id"] for j in done["jobs"]] == [second]
    assert api.get(f"/jobs/{second}").json()["status"] == "Running"


def test_a_worker_returns_claims_it_will_not_start(api: TestClient) -> None:
    ids = [api.post("/jobs", json={"jobs": [submission(name=n)]}).json()["ids"][0] for n in "ab"]
    claimed = claim(api, "W", limit=2)
    assert [j["id"] for j in claimed] == ids
    refs = [{"job_id": j["id"], "attempt": j["attempt"]} for j in claimed[1:]]
    assert api.post("/workers/W/return", json={"jobs": refs}).json() == {"returned": 1}
    returned = api.get(f"/jobs/{ids[1]}").json()
    assert (returned["status"], returned["attempt"], returned["worker_id"]) == ("Waiting", 0, None)
    # returning twice, or someone else's claim, changes nothing
    assert api.post("/workers/W/return", json={"jobs": refs}).json() == {"returned": 0}
    other = [{"job_id": ids[0], "attempt": 1}]
    assert api.post("/workers/X/return", json={"jobs": other}).json() == {"returned": 0}


def test_batch_completion_claims_nothing_after_a_refused_report(api: TestClient) -> None:
    ids = [api.post("/jobs", json={"jobs": [submission(name=n)]}).json()["ids"][0] for n in "abc"]
    (first,) = claim(api, "W")
    reports = [
        {"job_id": first["id"], "attempt": 1, "exit_code": 0},
        {"job_id": ids[1], "attempt": 1, "exit_code": 0},  # never claimed by W
    ]
    answer = api.post("/workers/W/complete", json={"reports": reports, "claim_next": 2}).json()
    assert answer == {"statuses": ["Successful", None], "jobs": []}
    assert api.get(f"/jobs/{ids[1]}").json()["status"] == "Waiting"


def test_a_stopping_host_refuses_its_long_polls_at_once(api: TestClient) -> None:
    """Once the daemon tells the service it stops (SIGTERM), a job's wait and a worker's
    claim that have nothing to answer are refused with 503 at once, where each would
    have held its connection for 20 s; a request that does not wait is still served."""
    (held,) = submit(api, submission(hold=True))
    with ThreadPoolExecutor(2) as pool:
        job = pool.submit(api.get, f"/jobs/{held}", params={"wait": 60})
        body = {"queue": Q, "definition": D, "limit": 1, "wait": 60}
        claimed = pool.submit(api.post, "/workers/w-stopping/claim", json=body)
        time.sleep(0.5)  # both wait now (or not yet: once it stops, none waits at all)
        api.portal.call(api.app.state.service.stop_waiting)
        for answer in (job.result(timeout=10), claimed.result(timeout=10)):
            assert answer.status_code == 503, answer.text
            assert answer.json()["detail"] == "the host is stopping; send it again once it is back"
    assert api.get(f"/jobs/{held}").json()["status"] == "Held"
