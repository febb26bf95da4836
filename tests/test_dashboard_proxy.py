"""``hyper dashboard``'s loopback server for a local host, over real HTTP: it passes on
the dashboard's pages and nothing else, and adds no power of its own."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import LocalHost
from tests.helpers import browser

pytestmark = pytest.mark.e2e


def request(
    base: str, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode()
    finally:
        connection.close()


def test_the_loopback_server_passes_on_pages_and_nothing_else(local: LocalHost) -> None:
    with browser.dashboard(local.env, local.cwd) as served:
        base, link = served.base, served.link
        assert request(base, "GET", "/dashboard/jobs")[0] == 401
        status, headers, _ = request(base, "GET", link.removeprefix(base))
        assert status == 303 and headers["location"] == "./"
        cookie = headers["set-cookie"]
        assert re.match(r"hyper_[0-9a-f]{12}=", cookie)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie
        session = {"Cookie": cookie.split(";")[0]}
        status, headers, page = request(base, "GET", "/dashboard/jobs", session)
        assert status == 200 and "<h1>Jobs</h1>" in page
        assert headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in headers["content-security-policy"]
        script = request(base, "GET", "/dashboard/static/vendor/htmx-2.0.4.min.js", session)
        assert script[0] == 200 and script[1]["content-type"].startswith("text/javascript")
        # the link worked once
        assert request(base, "GET", link.removeprefix(base))[0] == 401
        # nothing but the pages: not the API, not the routes that take the key
        for path in ("/jobs", "/health", "/dashboard/tokens", "/dashboard/session",
                     "/dashboard/../jobs", "/dashboard/%2e%2e/jobs"):  # fmt: skip
            for method in ("GET", "POST"):
                assert request(base, method, path, session)[0] == 404, (method, path)
        assert request(base, "DELETE", "/dashboard/jobs", session)[0] == 405
        # another name for 127.0.0.1 (a rebinding page) is refused
        other = {**session, "Host": "attacker.example:80"}
        assert request(base, "GET", "/dashboard/jobs", other)[0] == 421
        # other cookies of 127.0.0.1 do not reach the host; a forged session opens nothing
        forged = {"Cookie": "hyper_000000000000=1.2.3; other=secret"}
        assert request(base, "GET", "/dashboard/jobs", forged)[0] == 401


def test_hyper_dashboard_opens_the_browser_on_a_private_page(local: LocalHost) -> None:
    """The browser (here a script named by BROWSER) gets a file that redirects to the
    login link: the token is not on its command line, and the file goes with the command."""
    seen = local.cwd / "browser-was-given"
    fake = local.script(
        "browser.sh", f'#!/bin/sh\necho "$1" > {seen}\ncat "${{1#file://}}" >> {seen}\n'
    )
    fake.chmod(0o755)
    env = {**local.env, "BROWSER": str(fake)}
    started = time.monotonic()
    done = local.sh("hyper", "dashboard", "--minutes", "0.1", env=env, timeout=120)
    assert done.code == 0, done.err
    assert time.monotonic() - started < 60  # it stopped by itself
    assert "log in" not in done.out  # the link was opened, not printed
    given = seen.read_text().splitlines()
    assert given[0].startswith("file:///") and given[0].endswith("/open.html")
    assert re.search(r'url=http://127\.0\.0\.1:\d+/dashboard/login\?token=[\w-]+"', given[1])
    assert local.config.api_key not in seen.read_text()
    assert not Path(given[0].removeprefix("file://")).exists()  # removed afterwards
