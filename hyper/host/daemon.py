"""The local host daemon: the host app on uvicorn, behind the doors of ``serving``.

Started detached by ``hyper.local_host.start``; one daemon per data directory (an
exclusive lock on ``daemon.lock`` is held while it lives). Its own address on
TCP, when it has one, comes in the environment (HYPER_DAEMON_BIND/PORT), never on
its command line. Before it serves, it checks its store (``SQLiteStore.open``
refuses a damaged or rolled-back one); a refusal is one line in ``daemon.error``,
which the starter shows. Once its doors listen it writes ``daemon.json`` (pid and
URLs). A clean stop (SIGTERM, SIGINT: what ``hyper hosts stop-host`` sends) ends the
scheduler, checkpoints the store into one file, removes ``daemon.json`` and the
socket, and logs "stopped".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

from hyper.local_host import ERROR_FILE, LOCK_FILE, LOG_FILE, STATE_FILE
from hyper.transport import pinned_url, unix_url

BIND_VARIABLE = "HYPER_DAEMON_BIND"
PORT_VARIABLE = "HYPER_DAEMON_PORT"
EXIT_REFUSED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hyper-host-daemon")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument(
        "--detach", action="store_true", help="go to the background once the lock is held"
    )
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.resolve()
    bind = os.environ.pop(BIND_VARIABLE, "")
    port = int(os.environ.pop(PORT_VARIABLE, "0") or 0)

    told = -1
    if args.detach:
        # the starter waits for this parent only, which waits until the child holds the
        # lock (taken by the child, /proc/locks names the daemon itself)
        ready, told = os.pipe()
        if os.fork() > 0:
            os.close(told)
            os.read(ready, 1)
            os._exit(0)
        os.close(ready)
        os.setsid()
    lock = open(data_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"a host daemon already runs for {data_dir}", file=sys.stderr)
        return 0
    finally:
        if told >= 0:
            os.close(told)  # the parent goes

    logging.basicConfig(
        filename=data_dir / LOG_FILE,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("hyper.daemon")
    (data_dir / ERROR_FILE).unlink(missing_ok=True)

    from hyper.errors import HyperError
    from hyper.host_settings import HostSettings
    from hyper.store.sqlite import SQLiteStore

    try:
        settings = HostSettings.load(data_dir)
        store = SQLiteStore.open(settings.database)
    except HyperError as error:
        (data_dir / ERROR_FILE).write_text(str(error) + "\n")
        log.error("refused to start: %s", error)
        return EXIT_REFUSED
    try:
        _serve(settings, store, bind, port, log)
    finally:
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(data_dir / "hyper.sock")
        store.close()  # checkpoints the write-ahead log into the store and empties it
        log.info("host %s stopped", settings.name)
    return 0


def _serve(settings: Any, store: Any, bind: str, port: int, log: logging.Logger) -> None:
    import uvicorn
    from uvicorn.server import ServerState

    from hyper.host import serving
    from hyper.host.app import create_app

    data_dir: Path = settings.data_dir
    serving.raise_file_limit()
    unix = serving.bind_unix(data_dir)
    settings.url = unix_url(data_dir / serving.SOCKET_FILE)  # where local workers come
    tls_url = ""
    if bind:
        tcp = serving.bind_tcp(bind, port)
        cert, key, pin = serving.certificate(data_dir, bind)
        reach = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
        shown = f"[{reach}]" if ":" in reach else reach
        tls_url = pinned_url(f"https://{shown}:{tcp.getsockname()[1]}", pin)

    app = create_app(settings, store, schedule=True)

    def config(cap: int, lifespan: Literal["on", "off"]) -> Any:
        made = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan=lifespan,
            http=serving.GuardedProtocol.limits(cap, settings.header_timeout_seconds),
            timeout_graceful_shutdown=1,  # what still runs; long-polls end at once (stop_waiting)
            timeout_keep_alive=int(settings.idle_timeout_seconds),
        )
        made.load()
        return made

    server = serving.Server(config(settings.max_connections, "on"), app.state.service.stop_waiting)
    # the doors listen already: what connects now waits for the app to start
    _write_state(data_dir, settings.url, tls_url)
    log.info(
        "host %s listening at %s%s (pid %s)",
        settings.name,
        settings.url,
        f" and {tls_url}" if tls_url else "",
        os.getpid(),
    )

    async def run() -> None:
        serving_task = asyncio.create_task(server.serve(sockets=[unix]))
        while not server.started and not serving_task.done():
            await asyncio.sleep(0.01)
        tcp_state = ServerState()
        if bind and server.started:
            tcp_config = config(settings.max_tcp_connections, "off")

            def protocol() -> Any:
                return tcp_config.http_protocol_class(
                    config=tcp_config, server_state=tcp_state, app_state=server.lifespan.state
                )

            door = serving.TlsDoor(
                tcp,
                serving.server_context(cert, key),
                protocol,
                tcp_state.connections,
                cap=settings.max_tcp_connections,
                handshake_seconds=settings.tls_handshake_seconds,
            )
            door_task = asyncio.create_task(door.serve())
            serving_task.add_done_callback(lambda _: door_task.cancel())
        await serving_task
        if bind:
            tcp.close()
        for connection in list(tcp_state.connections):
            connection.shutdown()

    asyncio.run(run())


def _write_state(data_dir: Path, url: str, tls_url: str) -> None:
    state = {"pid": os.getpid(), "url": url, "tls_url": tls_url, "started": time.time()}
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
