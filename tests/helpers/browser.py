"""Headless Chromium from Debian (``.ci/install-browser``), driven with Selenium, and
``hyper dashboard`` running as a user runs it.

Nothing is downloaded: the browser is /usr/bin/chromium and its driver
/usr/bin/chromedriver, started with a fresh profile and without any of Chromium's own
network traffic (updates, sync, safe browsing)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
LINK = re.compile(r"(http://127\.0\.0\.1:\d+)/dashboard/login\?token=\S+")
T = TypeVar("T")


def missing() -> str | None:
    """Why the browser tests cannot run here, if they cannot."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is not installed (run .ci/install-browser)"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium with a profile of its own, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hyper-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(check: Callable[[], T], timeout: float = 60, what: str = "") -> T:
    """The first true value `check` gives, asked every 0.2 s within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.2)


class Dashboard:
    """``hyper dashboard --no-browser`` in a process of its own: its address and the
    login link it printed."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        command = [str(Path(sys.executable).parent / "hyper"), "dashboard", "--no-browser",
                   "--minutes", "10"]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while True:
            line = self.process.stdout.readline()
            if not line:
                error = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"hyper dashboard stopped: {error}")
            self.lines.append(line)
            found = LINK.search(line)
            if found:
                self.base, self.link = found.group(1), found.group(0)
                return
            assert time.monotonic() < deadline, self.lines

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # our own child, by its pid
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def dashboard(env: dict[str, str], cwd: Path) -> Iterator[Dashboard]:
    running = Dashboard(env, cwd)
    try:
        yield running
    finally:
        running.close()
