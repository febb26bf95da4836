"""``hyper dashboard``: the selected host's dashboard, in the browser.

The command asks the host for a single-use login token (an API call with the key) and
opens the browser on a link that carries only that token. A host the browser cannot
reach itself (a local host) gets its page served on 127.0.0.1 by this command, for as
long as it runs; an AWS host serves the page at its own URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from html import escape
from pathlib import Path

import typer

from hyper import hosts
from hyper.config import load_host

HostOption = typer.Option(None, "--host", envvar="HYPER_HOST", help="the saved host to use")
PRINTED_TOKEN_SECONDS = 300.0  # a printed link is copied by hand: it lives longer
OPENED_TOKEN_SECONDS = 60.0


def command(
    host: str = HostOption,
    no_browser: bool = typer.Option(
        False, "--no-browser", help="print the login link instead of opening a browser"
    ),
    port: int = typer.Option(
        0, "--port", min=0, max=65535, help="loopback port for a local host (0: any free one)"
    ),
    minutes: float = typer.Option(
        480.0, "--minutes", min=0.1, help="a local host's page stops after this long"
    ),
) -> None:
    """Open the host's dashboard in the browser (or print its login link). For a local
    host the page is served on 127.0.0.1 until Ctrl-C or --minutes."""
    client = hosts.connect(host)
    local = load_host(hosts.default_host_name(host)).provider == "local"
    browser = not no_browser and _has_browser()
    seconds = OPENED_TOKEN_SECONDS if browser else PRINTED_TOKEN_SECONDS
    server = None
    opened: Path | None = None
    try:
        if local:
            from hyper.host.dashboard.proxy import LoopbackServer

            server = LoopbackServer(client, port)
            server.start()
            base = server.url
        else:
            base = client.url.rstrip("/")
        token = client.dashboard_token(seconds=seconds)["token"]
        link = f"{base}/dashboard/login?token={token}"
        typer.echo(f"dashboard of host {client.host_name!r}: {base}/dashboard/")
        opened = _open(link) if browser else None
        if opened is None:
            typer.echo(f"log in within {int(seconds / 60)} minutes, once, at: {link}")
        if server is None:
            return
        typer.echo("serving it here until Ctrl-C", err=True)
        deadline = time.monotonic() + minutes * 60
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline and server.thread.is_alive():
                time.sleep(0.5)
    finally:
        if server is not None:
            server.stop()
            if opened is not None:
                shutil.rmtree(opened, ignore_errors=True)
        # an AWS host's command ends at once: its browser may not have read the page yet,
        # which stays in its private folder (the token in it works once, for a minute)
        client.close()


def _has_browser() -> bool:
    """Whether a graphical browser can open here (not a headless machine, not a pipe)."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _open(link: str) -> Path | None:
    """Open `link` through a private file that redirects to it, so that the token is not
    on the browser's command line for other users to read; the file's folder, or None
    when no browser opened."""
    import webbrowser

    folder = Path(tempfile.mkdtemp(prefix="hyper-dashboard-"))  # mode 0700
    page = folder / "open.html"
    page.write_text(
        f'<!doctype html><meta http-equiv="refresh" content="0;url={escape(link)}">'
        f'<a href="{escape(link)}">open the dashboard</a>\n'
    )
    page.chmod(0o600)
    try:
        if webbrowser.open(page.as_uri()):
            return folder
    except webbrowser.Error:
        pass
    shutil.rmtree(folder, ignore_errors=True)
    return None
