"""The dashboard in a real browser: headless Chromium against a real local host, logged
in by ``hyper dashboard`` as a user would be. Screenshots of each page are saved in the
test's tmp_path (``*.png``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hyper import hosts
from tests.conftest import LocalHost
from tests.helpers import browser

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing())),
]


@pytest.fixture
def page(local: LocalHost) -> Iterator[tuple[Any, browser.Dashboard]]:
    """A browser, and hyper dashboard serving the local host's page."""
    with browser.dashboard(local.env, local.cwd) as served, browser.chromium() as driver:
        yield driver, served


def shoot(driver: Any, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))


def log_in(driver: Any, served: browser.Dashboard) -> None:
    driver.get(served.link)
    browser.wait_until(lambda: driver.current_url == f"{served.base}/dashboard/", what="login")
    browser.wait_until(lambda: "Overview" in driver.title, what="the overview")


def attribute(driver: Any, selector: str, name: str) -> str | None:
    """An attribute (or property) of the element `selector` finds, read in one script."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const e = document.querySelector(arguments[0]);"
        " return e ? (e.getAttribute(arguments[1]) ?? e[arguments[1]]) : null;",
        selector,
        name,
    )


def body(driver: Any) -> str:
    """The page's text; "" while a refresh replaces the body found, or a page between
    two documents has none (a waiter asks again)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("tag name", "body").text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_array_progress_advances_to_done(
    local: LocalHost, page: tuple[Any, browser.Dashboard], tmp_path: Path
) -> None:
    driver, served = page
    log_in(driver, served)
    script = local.script("task.sh", "#!/bin/bash\necho task $HYPER_ARRAY_INDEX\nsleep 1\n")
    out = local.ok("qsub", "-q", "sample-queue-1", "-d", "sample-def-1", "-a", "1-12%3",
                   "-j", "watched", str(script))  # fmt: skip
    array = out.strip().split("[")[0]
    driver.get(f"{served.base}/dashboard/jobs")
    row = f'tr[data-id="{array}"]'

    def progress() -> tuple[int, int]:
        # read in one script: htmx swaps the rows under a reader's feet
        found = driver.execute_script(
            "const p = document.querySelector(arguments[0]);"
            " return p ? [p.value, p.max] : [-1, 12];",
            f"{row} progress",
        )
        return int(found[0]), int(found[1])

    seen = {progress()[0]}
    # htmx refreshes the rows every 2 s: the bar moves without a reload
    marker = driver.find_element("css selector", "h1")
    deadline = time.monotonic() + 120
    while progress()[0] < 12:
        assert time.monotonic() < deadline, f"progress stuck at {progress()}"
        seen.add(progress()[0])
        if 0 < progress()[0] < 12 and not (tmp_path / "jobs-running.png").exists():
            shoot(driver, tmp_path, "jobs-running")
        time.sleep(0.2)
    assert progress() == (12, 12)
    assert len(seen - {-1, 12}) >= 1, f"never saw the bar part-way: {seen}"
    assert marker.is_displayed()  # the same page all along, not reloaded
    browser.wait_until(
        lambda: attribute(driver, row, "data-status") == "Successful",
        what="the array to be shown Successful",
    )
    shoot(driver, tmp_path, "jobs-done")
    driver.set_window_size(1280, 1150)  # the whole overview, chart and all
    driver.get(f"{served.base}/dashboard/")
    browser.wait_until(
        lambda: driver.find_element("id", "throughput").get_attribute("data-total") == "12",
        what="the throughput chart to count the 12 tasks",
    )
    shoot(driver, tmp_path, "overview")
    driver.get(f"{served.base}/dashboard/jobs/{array}")
    browser.wait_until(lambda: "12/12 tasks ended" in body(driver), what="the array's page")
    shoot(driver, tmp_path, "array")


def test_job_log_line_appears_live(
    local: LocalHost, page: tuple[Any, browser.Dashboard], tmp_path: Path
) -> None:
    driver, served = page
    go = local.cwd / "go"
    script = local.script(
        "live.sh",
        "#!/bin/bash\necho first line\n"
        f"for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.1; done\n"
        "echo second line, live\n",
    )
    job_id = local.ok("qsub", "-q", "sample-queue-1", "-d", "sample-def-1", "-j", "live",
                      str(script)).strip()  # fmt: skip
    log_in(driver, served)
    driver.get(f"{served.base}/dashboard/jobs/{job_id}")
    log = driver.find_element("id", "log")
    browser.wait_until(lambda: "first line" in log.text, what="the first line")
    assert "second line" not in log.text
    shoot(driver, tmp_path, "job-running")
    go.touch()
    browser.wait_until(lambda: "second line, live" in log.text, what="the live line")
    browser.wait_until(lambda: "(the job has ended)" in log.text, what="the end of the log")
    browser.wait_until(
        lambda: attribute(driver, "#job-state", "textContent") == "Successful",
        what="the job's state to follow",
    )
    assert log.text.count("first line") == 1  # appended, never repeated
    shoot(driver, tmp_path, "job")


def test_filter_the_jobs_table(
    local: LocalHost, page: tuple[Any, browser.Dashboard], tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import Select

    driver, served = page
    script = local.script("hold.sh", "#!/bin/bash\necho held\n")
    for name, held in [("kept-a", True), ("kept-b", True), ("other", True), ("free", False)]:
        extra = ["-h"] if held else []
        local.ok("qsub", "-q", "sample-queue-1", "-d", "sample-def-1", "-j", name, *extra,
                 str(script))  # fmt: skip
    log_in(driver, served)
    driver.get(f"{served.base}/dashboard/jobs")
    browser.wait_until(lambda: len(rows(driver)) == 4, what="the four jobs")
    Select(driver.find_element("name", "state")).select_by_visible_text("Held")
    driver.find_element("css selector", "form.filters button").click()
    browser.wait_until(lambda: "state=Held" in driver.current_url, what="the filtered page")
    assert sorted(r.get_attribute("data-status") for r in rows(driver)) == ["Held"] * 3
    field = driver.find_element("name", "name")
    field.clear()
    field.send_keys("kept*")
    driver.find_element("css selector", "form.filters button").click()
    browser.wait_until(lambda: "name=kept" in driver.current_url, what="the name filter")
    names = sorted(r.find_elements("css selector", "td")[1].text for r in rows(driver))
    assert names == ["kept-a", "kept-b"]
    shoot(driver, tmp_path, "jobs-filtered")
    local.ok("qdel", *[r.get_attribute("data-id") for r in rows(driver)])


def rows(driver: Any) -> list[Any]:
    return list(driver.find_elements("css selector", "#rows tr[data-id]"))


REFUSED = [
    "/dashboard/",
    "/dashboard/jobs",
    "/dashboard/jobs/1",
    "/dashboard/workflows",
    "/dashboard/static/vendor/htmx-2.0.4.min.js",
    "/dashboard/throughput.json",
]


def test_nothing_loads_without_a_live_login(
    local: LocalHost, page: tuple[Any, browser.Dashboard], tmp_path: Path
) -> None:
    driver, served = page
    for path in REFUSED:
        driver.get(served.base + path)
        assert "Log in first" in body(driver), path
        assert driver.find_element("tag name", "h1").text == "Log in first", path  # a page
        if path == "/dashboard/jobs":
            shoot(driver, tmp_path, "refused")
    # an expired token
    with hosts.connect() as client:
        late = client.dashboard_token(seconds=1)["token"]
    time.sleep(1.5)  # the token's whole life, once
    driver.get(f"{served.base}/dashboard/login?token={late}")
    assert "expired or was used" in body(driver)
    driver.get(f"{served.base}/dashboard/jobs")
    assert "Log in first" in body(driver)
    # the printed link works once
    log_in(driver, served)
    assert driver.get_cookies() and all(c["httpOnly"] for c in driver.get_cookies())
    assert all(c.get("sameSite") == "Strict" for c in driver.get_cookies())
    driver.delete_all_cookies()
    driver.get(served.link)
    assert "expired or was used" in body(driver)
    driver.get(f"{served.base}/dashboard/")
    assert "Log in first" in body(driver)
    # a page whose session ends says so at its next refresh
    with hosts.connect() as client:
        fresh = client.dashboard_token()["token"]
    driver.get(f"{served.base}/dashboard/login?token={fresh}")
    browser.wait_until(lambda: "Overview" in driver.title, what="the overview")
    driver.delete_all_cookies()
    browser.wait_until(lambda: "Log in first" in body(driver), what="the page to say so")


def test_every_page_renders(
    local: LocalHost, page: tuple[Any, browser.Dashboard], tmp_path: Path
) -> None:
    driver, served = page
    log_in(driver, served)
    errors = []
    for name, path in [
        ("workflows", "/dashboard/workflows"),
        ("regions", "/dashboard/resources/regions"),
        ("clusters", "/dashboard/resources/clusters"),
        ("queues", "/dashboard/resources/queues"),
        ("images", "/dashboard/resources/images"),
        ("definitions", "/dashboard/resources/definitions"),
    ]:
        driver.get(served.base + path)
        browser.wait_until(lambda: driver.find_elements("css selector", "main h1"), what=name)
        if name != "workflows":
            assert "ACTIVE" in body(driver), name
        shoot(driver, tmp_path, name)
        errors += [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_cancel_asks_first_and_is_logged(
    local: LocalHost, page: tuple[Any, browser.Dashboard], tmp_path: Path
) -> None:
    driver, served = page
    script = local.script("long.sh", "#!/bin/bash\necho started\nsleep 120\n")
    job_id = local.ok("qsub", "-q", "sample-queue-1", "-d", "sample-def-1", "-j", "long",
                      str(script)).strip()  # fmt: skip
    log_in(driver, served)
    driver.get(f"{served.base}/dashboard/jobs/{job_id}")
    log = driver.find_element("id", "log")
    browser.wait_until(lambda: "started" in log.text, what="the job to start")
    # dismissed: nothing happens
    driver.find_element("css selector", "button.cancel").click()
    alert = browser.wait_until(lambda: _alert(driver), what="the confirmation")
    assert alert.text == f"Cancel job {job_id}?"
    alert.dismiss()
    assert local.job(job_id)["status"] == "Running"
    # accepted: cancelled, and said so in the job's SYSTEM log, which the page follows
    driver.find_element("css selector", "button.cancel").click()
    browser.wait_until(lambda: _alert(driver), what="the confirmation").accept()
    browser.wait_until(
        lambda: "cancelled from the dashboard" in log.text, what="the SYSTEM log line"
    )
    browser.wait_until(
        lambda: attribute(driver, "#job-state", "textContent") == "Cancelled",
        what="the job to be cancelled",
    )
    shoot(driver, tmp_path, "job-cancelled")


def _alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        alert.text  # noqa: B018  (raises when there is none)
        return alert
    except NoAlertPresentException:
        return None
