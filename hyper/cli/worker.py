"""``hyper worker``: run this machine as part of a static region."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import typer

from hyper import config, hosts, machine
from hyper.cli.hosts import read_secret
from hyper.client import HostClient
from hyper.errors import UsageError
from hyper.worker.node import NodeAgent, NodeOptions

app = typer.Typer(help="Machines that join a host's static region.", no_args_is_help=True)


@app.command("join")
def join(
    region: str = typer.Option(..., "--region", help="the static region this machine joins"),
    definition: str = typer.Option(..., "--definition", help="the definition its workers run"),
    slots: int = typer.Option(1, "--slots", min=1, help="how many workers may run here at once"),
    url: str = typer.Option(None, "--url", help="the host's URL (default: the saved host's)"),
    api_key_file: str = typer.Option(
        None, "--api-key-file", help="file holding the host's API key, - for stdin"
    ),
    host: str = typer.Option(None, "--host", envvar="HYPER_HOST", help="a saved host to join"),
    workdir: Path = typer.Option(None, "--workdir", help="where workers keep their files"),
    node_id: str = typer.Option(None, "--node-id", help="this machine's id (default: random)"),
    cpus: int = typer.Option(
        None, "--cpus", min=1, help="CPUs its workers share (default: the machine's)"
    ),
    mem: str = typer.Option(
        None, "--mem", help="memory its workers share, e.g. 64G (default: the machine's)"
    ),
    gpus: str = typer.Option(
        None, "--gpus", help="GPUs its workers share: a count or ids such as 0,1 (default: found)"
    ),
) -> None:
    """Join a static region and run the workers the host assigns here, until stopped.
    The machine's CPUs, memory and GPUs (found, or given by flags) are split evenly between
    its slots; each worker packs jobs by their requests within its share."""
    shape = machine.shape(cpus, mem, gpus)
    if url is not None:
        if api_key_file is None:
            raise UsageError("with --url, give --api-key-file (the key stays off the command line)")
        key = read_secret(api_key_file)
    else:
        saved = config.load_host(hosts.default_host_name(host))
        url, key = saved.url, saved.api_key
        if saved.provider == "local":
            with hosts.connect(saved.name) as started:  # starts the daemon if it is down
                url = started.url
    node = node_id or f"n-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    folder = workdir or config.data_root() / "nodes" / node
    options = NodeOptions(
        node, region, definition, slots, folder, socket.gethostname(), shape=shape
    )
    with HostClient(url, key, timeout=70.0) as client:
        agent = NodeAgent(client, key, options)
        agent.stop_on_signal()
        typer.echo(
            f"machine {node} joined region {region!r} with {slots} slots"
            f" sharing {shape.whole.describe()}",
            err=True,
        )
        agent.run()
