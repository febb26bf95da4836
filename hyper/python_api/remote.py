"""``python -m hyper.python_api.remote``: what a job of hyper's Python API runs, in its
unpacked package (its working directory).

A job of calls runs the calls of its array task (``$HYPER_ARRAY_INDEX``, 0 for a single
job) and leaves their outcomes in ``result.pickle``, which its worker collects; it exits
1 when a call raised. A pool's worker connects back to the program, proves itself with
the pool's secret, and runs the calls it is sent until it is released (exit 0).
Either way it first checks that this Python can run what the program pickled, and
says which Python to use when it cannot.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

from hyper.python_api import payload, sources, wire

CONNECT_SECONDS = 30.0


def _versions_problem(manifest: dict[str, Any]) -> str | None:
    try:
        here = payload.Versions.here()
    except ImportError as error:
        return f"cloudpickle is not installed for {sys.executable} ({error}): set HYPER_PYTHON"
    return payload.incompatibility(payload.Versions(**manifest["versions"]), here)


def run_calls(workdir: Path, manifest: dict[str, Any]) -> int:
    result = workdir / payload.RESULT
    problem = _versions_problem(manifest)
    if problem is None:
        index = int(os.environ.get("HYPER_ARRAY_INDEX") or 0)
        try:
            sources.register(pickle.loads((workdir / payload.SOURCES).read_bytes()))
            fn = pickle.loads((workdir / payload.FUNCTION).read_bytes())
            calls = pickle.loads(pickle.loads((workdir / payload.CALLS).read_bytes())[index])
        except Exception as error:  # a module missing here, most often
            problem = f"cannot load the function or its arguments here: {error!r}"
    if problem is not None:
        print(f"hyper: {problem}", file=sys.stderr)
        result.write_bytes(payload.result_file(failure=problem))
        return 1
    outcomes = [payload.run_call(fn, args, kwargs) for args, kwargs in calls]
    result.write_bytes(payload.result_file(outcomes))
    return 0 if all("value" in pickle.loads(o) for o in outcomes) else 1


def serve_pool(workdir: Path, manifest: dict[str, Any]) -> int:
    secret_file = workdir / payload.POOL_SECRET
    secret = bytes.fromhex(secret_file.read_text())
    secret_file.unlink()  # on disk no longer than needed
    problem = _versions_problem(manifest)
    if problem is not None:
        print(f"hyper: {problem}", file=sys.stderr)
        return 1
    hello = {
        "job_id": int(os.environ.get("HYPER_JOB_ID") or 0),
        "index": int(os.environ.get("HYPER_ARRAY_INDEX") or 0),
        "python": sys.version.split()[0],
    }
    address = (manifest["address"], int(manifest["port"]))
    try:
        with socket.create_connection(address, timeout=CONNECT_SECONDS) as sock:
            wire.join_pool(sock, secret, hello)
            sock.settimeout(None)
            wire.keep_alive(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while (call := wire.receive_frame(sock)) != wire.RELEASE:
                wire.send_frame(sock, payload.run_pickled_call(call))
    except OSError as error:  # the pool is gone, or it is closed to late workers
        print(f"hyper: the pool at {address[0]}:{address[1]}: {error}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    workdir = Path.cwd()
    try:
        manifest = json.loads((workdir / payload.MANIFEST).read_text())
    except (OSError, ValueError) as error:
        print(f"hyper: no package of hyper's Python API here ({error})", file=sys.stderr)
        return 2
    if manifest.get("kind") == "pool":
        return serve_pool(workdir, manifest)
    return run_calls(workdir, manifest)


if __name__ == "__main__":
    sys.exit(main())
