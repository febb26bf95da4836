"""The load test of bench/load.py, shortened: batched submits at 2,000 jobs/s and 200
status queries/s against a fresh local host while its workers run the jobs. No request
may fail and no accepted job may be missing. (bench/load runs it for 2 minutes and
writes the latencies to bench/results/.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.alone]


def test_load_on_loopback_loses_nothing_and_fails_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--seconds", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures = json.loads(done.stdout)
    print(f"\nload for 20 s: {figures}")
    assert figures["submit"]["errors"] == 0, figures["submit"]["first_error"]
    assert figures["query"]["errors"] == 0, figures["query"]["first_error"]
    assert figures["jobs_accepted"] == 40_000
    assert figures["jobs_stored"] == figures["jobs_unique"] == figures["jobs_accepted"]
    assert figures["jobs_run_meanwhile"] > 0
