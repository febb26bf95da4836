"""The local host daemon: the host app on uvicorn, bound to loopback.

Started detached by ``hyper.local_host.start``; one daemon per data
directory (an exclusive lock on ``daemon.lock`` is held while it lives).
Writes ``daemon.json`` (pid and URL) once its socket listens.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from hyper.hosts import is_loopback
from hyper.local_host import LOCK_FILE, LOG_FILE, STATE_FILE


def _bind(address: str, port: int) -> socket.socket:
    """Listen on `port` when it is free (saved URLs stay valid), else on any free port."""
    for candidate in (port, 0) if port else (0,):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(1024)
        return sock
    raise OSError(f"cannot listen on {address}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hyper-host-daemon")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--detach", action="store_true", help="go to the background once the lock is held"
    )
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.resolve()

    lock = open(data_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"a host daemon already runs for {data_dir}", file=sys.stderr)
        return 0
    if args.detach:
        # the starter waits for this parent only; the lock stays with the child
        if os.fork() > 0:
            os._exit(0)
        os.setsid()

    logging.basicConfig(
        filename=data_dir / LOG_FILE,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("hyper.daemon")

    import uvicorn

    from hyper.host.app import create_app
    from hyper.host.settings import HostSettings
    from hyper.store.sqlite import SQLiteStore

    settings = HostSettings.load(data_dir)
    sock = _bind(args.bind, args.port)
    port = sock.getsockname()[1]
    reach = "127.0.0.1" if args.bind in ("0.0.0.0", "::") else args.bind
    settings.url = f"http://{'[' + reach + ']' if ':' in reach else reach}:{port}"
    if not is_loopback(args.bind):
        log.warning(
            "serving on %s without TLS: the API key crosses the network in clear", args.bind
        )

    store = SQLiteStore(settings.database)
    app = create_app(settings, store, schedule=True)
    state = {"pid": os.getpid(), "url": settings.url, "started": time.time()}
    state_path = data_dir / STATE_FILE
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_path)
    log.info("host %s listening at %s (pid %s)", settings.name, settings.url, os.getpid())

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,  # long-polls are cut short, clients retry
        timeout_keep_alive=30,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if json.loads(state_path.read_text()).get("pid") == os.getpid():
                state_path.unlink()
        store.close()
        log.info("host %s stopped", settings.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
