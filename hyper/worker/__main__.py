"""``python -m hyper.worker``: run a worker agent against a host.

The API key comes from the environment (``HYPER_API_KEY``), never from the
command line, where other users of the machine could read it. On AWS Batch it is the
host's worker key, with the token of this launch (``HYPER_WORKER_TOKEN``, see
hyper/worker_tokens.py), both given by the host when it submitted the job (a host made
before worker tokens gives instead the ARN of a Secrets Manager secret, whose value is
the key); and a child of an array job is worker
``$HYPER_WORKER_ID_PREFIX-$AWS_BATCH_JOB_ARRAY_INDEX``.

A launch with a token starts itself again at once without the key and the token in its
environment (`hide_secrets`): a process's initial environment stays readable in
``/proc/PID/environ`` whatever ``os.environ.pop`` does, and on Batch the worker is the
container's PID 1, which its jobs (the same user) can read. The new process gets them
through an inherited pipe, read and closed before anything else (`take_secrets`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from hyper import machine
from hyper.client import HostClient
from hyper.messages import TIMINGS
from hyper.worker.agent import WorkerAgent, WorkerOptions
from hyper.worker.asuser import signals_at_their_default
from hyper.worker_tokens import ENVIRONMENT as TOKEN_ENVIRONMENT

# The worker's retry policy, in this one place: what it asks again, backing off (up to
# 2 s a try, about 20 s in all) before a failure reaches the agent. Through API Gateway
# and Lambda a host says 429 (the usage plan), 500 (Lambda throttled), 502 (the
# function failed), 503 and 504 (the integration timed out) of requests it may be
# asked again; the worker's calls are safe to repeat (claims and reports are by job
# and attempt).
RETRIES = 12
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def api_key(value: str) -> str:
    """The key itself, or the value of the Secrets Manager secret whose ARN is given."""
    if not (value.startswith("arn:") and ":secretsmanager:" in value):
        return value
    import boto3  # only workers on AWS get here

    region = value.split(":")[3]
    secrets = boto3.session.Session().client("secretsmanager", region_name=region)
    return str(secrets.get_secret_value(SecretId=value)["SecretString"])


# what a launch's worker keeps out of its environment, and where it finds them instead
SECRETS = ("HYPER_API_KEY", TOKEN_ENVIRONMENT)
SECRETS_FD = "HYPER_WORKER_SECRETS_FD"


def hide_secrets(command: list[str]) -> None:
    """Exec `command` (this worker again) with SECRETS out of its environment and a pipe
    holding them, when this is a launch with a token on Linux (where /proc shows a
    process's initial environment); otherwise return."""
    if SECRETS_FD in os.environ or not os.environ.get(TOKEN_ENVIRONMENT):
        return
    if not sys.platform.startswith("linux"):
        return
    held = {name: os.environ[name] for name in SECRETS if name in os.environ}
    read, write = os.pipe()  # a few hundred bytes: well within a pipe's buffer
    os.write(write, json.dumps(held).encode())
    os.close(write)
    os.set_inheritable(read, True)
    environment = {k: v for k, v in os.environ.items() if k not in SECRETS}
    environment[SECRETS_FD] = str(read)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, environment)


def take_secrets() -> dict[str, str]:
    """What `hide_secrets` passed on (nothing when it did not run); the pipe is closed."""
    fd = os.environ.pop(SECRETS_FD, None)
    if fd is None:
        return {}
    with os.fdopen(int(fd), "rb") as pipe:
        return dict(json.loads(pipe.read() or b"{}"))


def jobs_get_default_signals() -> None:
    """A worker started with signals ignored (its host started from a script's background
    job ignores SIGINT and SIGQUIT) would pass them on to every job, which `qsig -s INT`
    then could not reach: they go back to their default here, as slurmstepd does for its
    tasks. SIGPIPE and SIGXFSZ stay as Python sets them; the jobs' start restores them."""
    signals_at_their_default(keep=frozenset({signal.SIGPIPE, signal.SIGXFSZ}))


def main(argv: list[str] | None = None) -> int:
    secrets = take_secrets()
    jobs_get_default_signals()
    parser = argparse.ArgumentParser(prog="python -m hyper.worker")
    parser.add_argument("--url", default=os.environ.get("HYPER_URL"))
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--definition", required=True)
    parser.add_argument("--workdir", type=Path, default=Path.cwd())
    parser.add_argument("--idle-seconds", type=float, default=TIMINGS.idle_seconds)
    parser.add_argument("--heartbeat-seconds", type=float, default=TIMINGS.heartbeat_seconds)
    parser.add_argument("--lifetime-seconds", type=float, default=None)
    parser.add_argument(
        "--walltime-seconds",
        type=float,
        default=None,
        help="a pilot's time left: start only jobs whose time limit fits in it",
    )
    parser.add_argument("--region", default="", help="the region it runs in (for image URIs)")
    parser.add_argument(
        "--patience-seconds",
        type=float,
        default=TIMINGS.patience_seconds,
        help="how long to keep trying while the host does not answer",
    )
    parser.add_argument(
        "--host-fences",
        action="store_true",
        help="the host ends this worker's jobs if it falls silent (a worker on the host's"
        " machine): do not stop a job when its lease cannot be renewed",
    )
    parser.add_argument(
        "--no-cgroups",
        action="store_true",
        help="never put a job in a cgroup of its own (its leftovers end by subreapers alone)",
    )
    parser.add_argument(
        "--capacity",
        default=os.environ.pop("HYPER_CAPACITY", None) or None,
        help="what this worker has, CPUS:MEM_MIB:GPU,IDS (default: its definition's shape)",
    )
    args = parser.parse_args(argv)
    # a Batch array child: its jobs must not inherit the prefix (a worker they start
    # would take this worker's id)
    prefix = os.environ.pop("HYPER_WORKER_ID_PREFIX", None)
    index = os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX")
    worker_id = f"{prefix}-{index}" if prefix and index else args.worker_id
    key = secrets.get("HYPER_API_KEY") or os.environ.get("HYPER_API_KEY")
    token = secrets.get(TOKEN_ENVIRONMENT) or os.environ.pop(TOKEN_ENVIRONMENT, "")  # not jobs
    if not args.url or not key:
        print("worker: set --url (or HYPER_URL) and HYPER_API_KEY", file=sys.stderr)
        return 2
    try:
        key = api_key(key)
    except Exception as error:
        print(f"worker: cannot read the API key from {key}: {error}", file=sys.stderr)
        return 1
    in_image = bool(os.environ.get("AWS_BATCH_JOB_ID"))  # Batch ran it in the image
    if in_image and os.geteuid() != 0:
        print(
            "worker: not root in its image (a USER line?): its jobs run as its own user,"
            " and could act as it",
            file=sys.stderr,
        )
    options = WorkerOptions(
        worker_id=worker_id,
        queue=args.queue,
        definition=args.definition,
        workdir=args.workdir,
        idle_seconds=args.idle_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        lifetime_seconds=args.lifetime_seconds,
        patience_seconds=args.patience_seconds,
        region=args.region or os.environ.get("AWS_REGION", ""),
        in_image=in_image,
        self_fence=not args.host_fences,
        walltime_seconds=args.walltime_seconds,
        machine_shape=machine.parse(args.capacity) if args.capacity else None,
        cgroups=not args.no_cgroups,
    )
    with HostClient(
        args.url,
        key,
        timeout=70.0,
        retries=RETRIES,
        retry_statuses=RETRY_STATUSES,
        worker_token=token,
    ) as client:
        agent = WorkerAgent(client, options)
        agent.stop_on_signal()
        return agent.run()


if __name__ == "__main__":
    hide_secrets([sys.executable, *sys.orig_argv[1:]])
    sys.exit(main())
