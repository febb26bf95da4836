"""The dashboard through FastAPI's TestClient: its login, its pages and its actions.

The browser tests (tests/test_dashboard_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hyper.host.app import create_app
from hyper.host.dashboard import login
from hyper.host_settings import HostSettings
from hyper.jobs import JobStatus, LogKind
from hyper.resources import SAMPLE_DEFINITION, SAMPLE_QUEUE
from hyper.store.sqlite import SQLiteStore

KEY = {"x-api-key": "test-key"}


@pytest.fixture
def app_client(settings: HostSettings, store: SQLiteStore) -> Iterator[TestClient]:
    """The host app in-process, with no key and no cookie: a browser that has not
    logged in."""
    with TestClient(create_app(settings, store)) as client:
        yield client


def submit(client: TestClient, *jobs: dict[str, Any]) -> list[int]:
    body = {"jobs": list(jobs) or [job()]}
    response = client.post("/jobs", json=body, headers=KEY)
    assert response.status_code == 200, response.text
    return list(response.json()["ids"])


def job(name: str = "job", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "queue": SAMPLE_QUEUE,
        "definition": SAMPLE_DEFINITION,
        "script": "echo hi\n",
        **extra,
    }


def token(client: TestClient, seconds: float | None = None) -> str:
    body = {} if seconds is None else {"seconds": seconds}
    response = client.post("/dashboard/tokens", json=body, headers=KEY)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def log_in(client: TestClient) -> None:
    response = client.get(
        "/dashboard/login", params={"token": token(client)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "./"


PAGES = [
    "/dashboard/",
    "/dashboard/?part=overview",
    "/dashboard/throughput.json",
    "/dashboard/jobs",
    "/dashboard/jobs?part=rows",
    "/dashboard/jobs/1",
    "/dashboard/jobs/1?part=fields",
    "/dashboard/jobs/1?part=log",
    "/dashboard/workflows",
    "/dashboard/resources/queues",
    "/dashboard/static/dashboard.css",
    "/dashboard/static/vendor/htmx-2.0.4.min.js",
]


# logging in -------------------------------------------------------------------------


def test_login_sets_a_strict_http_only_expiring_cookie(app_client: TestClient) -> None:
    response = app_client.get(
        "/dashboard/login", params={"token": token(app_client)}, follow_redirects=False
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(login.cookie_name("test-key") + "=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert f"Max-Age={login.SESSION_SECONDS}" in cookie
    assert "test-key" not in cookie


@pytest.mark.parametrize("path", PAGES)
def test_nothing_loads_without_a_login(app_client: TestClient, path: str) -> None:
    submit(app_client)
    response = app_client.get(path)
    assert response.status_code == 401
    assert "hyper dashboard" in response.text
    # nor with the API key: pages take a session, never the key
    assert app_client.get(path, headers=KEY).status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_once_logged_in(app_client: TestClient, path: str) -> None:
    submit(app_client)
    log_in(app_client)
    response = app_client.get(path)
    assert response.status_code == 200, response.text
    if path.endswith((".css", ".js", ".json")):
        return
    assert "text/html" in response.headers["content-type"]
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_a_token_works_once(app_client: TestClient) -> None:
    once = token(app_client)
    first = app_client.get("/dashboard/login", params={"token": once}, follow_redirects=False)
    assert first.status_code == 303
    app_client.cookies.clear()
    again = app_client.get("/dashboard/login", params={"token": once}, follow_redirects=False)
    assert again.status_code == 401
    assert "set-cookie" not in again.headers
    assert app_client.get("/dashboard/").status_code == 401


def test_an_expired_token_logs_nobody_in(app_client: TestClient) -> None:
    late = token(app_client, seconds=1)
    deadline = time.time() + 1.5
    while time.time() < deadline:
        time.sleep(0.1)
    answer = app_client.get("/dashboard/login", params={"token": late}, follow_redirects=False)
    assert answer.status_code == 401
    assert app_client.get("/dashboard/").status_code == 401


@pytest.mark.parametrize("bad", ["", "x", "a" * 101, "../../etc", "token with spaces"])
def test_made_up_tokens_are_refused(app_client: TestClient, bad: str) -> None:
    answer = app_client.get("/dashboard/login", params={"token": bad}, follow_redirects=False)
    assert answer.status_code in (401, 422)
    assert "set-cookie" not in answer.headers


def test_tokens_need_the_api_key(app_client: TestClient) -> None:
    assert app_client.post("/dashboard/tokens", json={}).status_code == 401
    wrong = {"x-api-key": "wrong"}
    assert app_client.post("/dashboard/tokens", json={}, headers=wrong).status_code == 401
    assert app_client.post("/dashboard/session", json={"token": "x"}).status_code == 401
    # a logged-in browser cannot make tokens either: that takes the key
    log_in(app_client)
    assert app_client.post("/dashboard/tokens", json={}).status_code == 401


def test_a_forged_or_expired_session_is_refused(app_client: TestClient) -> None:
    name = login.cookie_name("test-key")
    now = time.time()
    for value in [
        "nonsense",
        login.new_session("another-key", now),  # signed with another host's key
        login.new_session("test-key", now - 10, seconds=5),  # expired
        login.new_session("test-key", now).replace(".", ".x", 1),  # tampered
    ]:
        app_client.cookies.set(name, value)
        assert app_client.get("/dashboard/").status_code == 401, value
    app_client.cookies.set(name, login.new_session("test-key", now))
    assert app_client.get("/dashboard/").status_code == 200


def test_a_server_in_between_trades_a_token_for_a_session(app_client: TestClient) -> None:
    once = token(app_client)
    answer = app_client.post("/dashboard/session", json={"token": once}, headers=KEY)
    assert answer.status_code == 200
    traded = answer.json()
    assert traded["cookie"] == login.cookie_name("test-key")
    assert traded["max_age"] == login.SESSION_SECONDS
    again = app_client.post("/dashboard/session", json={"token": once}, headers=KEY)
    assert again.status_code == 401
    app_client.cookies.set(traded["cookie"], traded["value"])
    assert app_client.get("/dashboard/jobs").status_code == 200


def test_the_api_still_needs_its_key(app_client: TestClient) -> None:
    log_in(app_client)  # a session opens the pages, not the API
    assert app_client.get("/jobs").status_code == 401
    assert app_client.get("/dashboard/../jobs").status_code in (401, 404)


# what the pages show ------------------------------------------------------------------


def test_overview_shows_queues_by_state_and_the_store(app_client: TestClient) -> None:
    submit(app_client, job("a"), job("b", hold=True))
    log_in(app_client)
    html = app_client.get("/dashboard/").text
    assert f'data-queue="{SAMPLE_QUEUE}"' in html
    assert "store size" in html
    assert "KiB" in html or "MiB" in html
    assert 'id="throughput"' in html


def test_throughput_counts_jobs_ended_per_minute(
    app_client: TestClient, store: SQLiteStore
) -> None:
    (job_id,) = submit(app_client)
    now = time.time()
    store.claim("w", SAMPLE_QUEUE, SAMPLE_DEFINITION, 1, 30, now)
    store.complete("w", job_id, 1, 0, None, now)
    log_in(app_client)
    data = app_client.get("/dashboard/throughput.json").json()
    assert len(data["t"]) == len(data["n"]) == 60
    assert sum(data["n"]) == 1
    assert data["n"][-1] == 1


def test_jobs_table_has_one_line_per_array_with_its_progress(app_client: TestClient) -> None:
    (single,) = submit(app_client, job("single"))
    (array,) = submit(app_client, job("arr", array={"spec": "1-5"}))
    log_in(app_client)
    html = app_client.get("/dashboard/jobs").text
    assert f'data-id="{single}"' in html
    assert '<progress value="0" max="5">' in html
    assert html.count("<tr data-id") == 2
    # an array's tasks, when asked
    tasks = app_client.get("/dashboard/jobs", params={"array": array}).text
    assert tasks.count("<tr data-id") == 5


def test_jobs_table_filters_by_state_name_and_queue(app_client: TestClient) -> None:
    submit(app_client, job("alpha"), job("beta", hold=True), job("alphabet"))
    log_in(app_client)
    held = app_client.get("/dashboard/jobs", params={"state": "Held"}).text
    assert held.count("<tr data-id") == 1 and "beta" in held
    named = app_client.get("/dashboard/jobs", params={"name": "alpha"}).text
    assert named.count("<tr data-id") == 1
    prefixed = app_client.get("/dashboard/jobs", params={"name": "alpha*"}).text
    assert prefixed.count("<tr data-id") == 2
    other = app_client.get("/dashboard/jobs", params={"queue": "nowhere"}).text
    assert "No jobs match." in other


def test_jobs_table_pages_by_id(app_client: TestClient) -> None:
    submit(app_client, *[job(f"j{n}") for n in range(120)])
    log_in(app_client)
    first = app_client.get("/dashboard/jobs").text
    assert first.count("<tr data-id") == 50
    following = re.search(r'id="next-page" href="([^"]+)"', first)
    assert following is not None
    assert "after=50" in following.group(1)
    second = app_client.get("/dashboard/jobs", params={"after": 50}).text
    assert 'data-id="51"' in second and 'data-id="50"' not in second


def test_bad_filters_are_refused_with_one_line(app_client: TestClient) -> None:
    log_in(app_client)
    assert app_client.get("/dashboard/jobs", params={"array": "x"}).status_code == 400
    assert app_client.get("/dashboard/jobs", params={"state": "Sleepy"}).status_code == 400
    assert app_client.get("/dashboard/jobs/0").status_code == 422
    assert app_client.get("/dashboard/jobs/999").status_code == 404
    assert app_client.get("/dashboard/resources/nothing").status_code == 404
    assert app_client.get("/dashboard/static/../router.py").status_code == 404


def test_job_page_shows_fields_and_log(app_client: TestClient, store: SQLiteStore) -> None:
    (job_id,) = submit(app_client, job("watched"))
    store.append_log(job_id, 1, [(LogKind.STDOUT, "<b>hello</b> from the job\n")], time.time())
    log_in(app_client)
    page = app_client.get(f"/dashboard/jobs/{job_id}").text
    assert "watched" in page and 'id="log-poll"' in page
    log = app_client.get(f"/dashboard/jobs/{job_id}", params={"part": "log"}).text
    assert "&lt;b&gt;hello&lt;/b&gt; from the job" in log  # escaped, never markup
    last = max(int(seq) for seq in re.findall(r'data-seq="(\d+)"', log))
    later = app_client.get(f"/dashboard/jobs/{job_id}", params={"part": "log", "after": last}).text
    assert "hello" not in later and 'id="log-poll"' in later  # still running: asks again


def test_actions_need_a_confirmation_and_are_logged(
    app_client: TestClient, store: SQLiteStore
) -> None:
    (job_id,) = submit(app_client, job("stoppable"))
    log_in(app_client)
    refused = app_client.post(f"/dashboard/jobs/{job_id}/cancel")
    assert refused.status_code == 400
    assert store.get_job(job_id).status.value == "Waiting"  # type: ignore[union-attr]
    held = app_client.post(f"/dashboard/jobs/{job_id}/hold", data={"confirm": "yes"})
    assert held.status_code == 200 and "1 held" in held.text
    assert store.get_job(job_id).status.value == "Held"  # type: ignore[union-attr]
    app_client.post(f"/dashboard/jobs/{job_id}/release", data={"confirm": "yes"})
    done = app_client.post(f"/dashboard/jobs/{job_id}/cancel", data={"confirm": "yes"})
    assert done.status_code == 200
    assert store.get_job(job_id).status.value == "Cancelled"  # type: ignore[union-attr]
    notes = [e.text for e in store.read_log(job_id, [LogKind.SYSTEM])]
    assert "held from the dashboard" in notes
    assert "released from the dashboard" in notes
    assert "cancelled from the dashboard" in notes
    # what changes nothing is not noted
    app_client.post(f"/dashboard/jobs/{job_id}/cancel", data={"confirm": "yes"})
    notes = [e.text for e in store.read_log(job_id, [LogKind.SYSTEM])]
    assert notes.count("cancelled from the dashboard") == 1
    assert (
        app_client.post(f"/dashboard/jobs/{job_id}/delete", data={"confirm": "yes"}).status_code
        == 404
    )


def test_cancelling_an_array_notes_it_on_each_task(
    app_client: TestClient, store: SQLiteStore
) -> None:
    (array,) = submit(app_client, job("arr", array={"spec": "1-3"}))
    log_in(app_client)
    assert app_client.post(f"/dashboard/jobs/{array}/cancel", data={"confirm": "yes"}).is_success
    tasks = app_client.get("/dashboard/jobs", params={"array": array}).text
    assert tasks.count('data-status="Cancelled"') == 3
    for task_id in range(array + 1, array + 4):
        notes = [e.text for e in store.read_log(task_id, [LogKind.SYSTEM])]
        assert "cancelled from the dashboard" in notes


def test_resource_pages_show_state_and_deployment_log(app_client: TestClient) -> None:
    log_in(app_client)
    for kind in ("regions", "clusters", "queues", "images", "definitions"):
        html = app_client.get(f"/dashboard/resources/{kind}").text
        assert "ACTIVE" in html, kind


def test_job_page_shows_its_dependencies_and_their_states(app_client: TestClient) -> None:
    (first,) = submit(app_client, job("first", hold=True))
    (second,) = submit(app_client, job("second", depends=[{"kind": "afterok", "target": first}]))
    log_in(app_client)
    page = app_client.get(f"/dashboard/jobs/{second}").text
    assert "Blocked" in page
    found = re.search(
        r'<th>afterok</th><td><a href="../jobs/(\d+)">\d+</a></td><td>(.*?)</td>', page
    )
    assert found is not None and found.group(1) == str(first)
    assert "Held" in found.group(2)


def test_workflows_show_as_a_tree_of_states(app_client: TestClient, store: SQLiteStore) -> None:
    from hyper.workflows.model import Step, Workflow, WorkflowState

    steps = [
        Step(name="fetch", handler="run.sh", package="p/1", wait_time=10, job_id=1,
             status=JobStatus.SUCCESSFUL),
        Step(name="crunch", handler="run.sh", package="p/2", wait_time=10, job_id=2,
             status=JobStatus.RUNNING),
        Step(name="<store>", handler="run.sh", package="p/3", wait_time=10),
    ]  # fmt: skip
    run = Workflow(name="nightly", order="sequential", queue=SAMPLE_QUEUE,
                   definition=SAMPLE_DEFINITION, cluster="wf-1",
                   state=WorkflowState.RUNNING, steps=steps)  # fmt: skip
    run.note("started")
    record = store.add_workflow(run.data(), time.time())
    log_in(app_client)
    page = app_client.get("/dashboard/workflows").text
    assert f'data-workflow="{record.id}"' in page
    tree = page[page.index('<ul class="tree">') :]
    for name, state in [
        ("fetch", "Successful"),
        ("crunch", "Running"),
        ("&lt;store&gt;", "not started"),
    ]:
        assert re.search(
            rf'<span class="step">{name}</span> <span class="state [^"]*">{state}</span>', tree
        )
    assert 'href="./jobs/2"' in tree and "cluster wf-1" in tree and "started" in tree
