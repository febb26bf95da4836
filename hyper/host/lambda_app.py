"""The host app as the AWS Lambda functions run it: the DynamoDB store, the AWS provider,
workers on AWS Batch, settings from the function's environment (set by the host stack)
and the API key from Secrets Manager.

Two functions of the host stack run it. The API function answers requests and runs the
scheduler ticks; a request must end within API Gateway's 29 s, so it hands each resource
change to the deploy function (``HYPER_DEPLOY_FUNCTION``), invoked asynchronously, which
alone may make stacks, roles and compute environments. After a submit, the API function
asks itself for a tick the same way, so workers start at once rather than at the next
scheduled tick; ticks in several containers take turns (a lease in the store). A change
whose invocation was lost is handed off again by a tick once it has been unsettled longer
than the deploy function may run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from hyper import messages
from hyper.host.lambda_adapter import ASGIApp, LambdaApp, Message, Receive, Scope, Send
from hyper.lambda_events import TICK_EVENT, deploy_event
from hyper.providers.aws.templates import DEPLOY_TIMEOUT_SECONDS, FUNCTION_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

DEPLOY_STALE_SECONDS = DEPLOY_TIMEOUT_SECONDS + 60


class SelfInvoker:
    """Asynchronous invocations of one of the host's functions (its events are queued by
    Lambda; a failure is logged: the scheduled tick makes up for it)."""

    def __init__(self, function: str, region: str, client: Any = None) -> None:
        self.function = function
        self.region = region
        self._client = client

    def __call__(self, event: dict[str, Any]) -> None:
        if self._client is None:
            self._client = boto3.client("lambda", region_name=self.region)
        try:
            self._client.invoke(
                FunctionName=self.function,
                InvocationType="Event",
                Payload=json.dumps(event).encode(),
            )
        except Exception as error:
            log.warning("invoking %s with %s failed: %s", self.function, event, error)


# An AWS host's timings (a local host keeps HostSettings' defaults: 0.5 s heartbeats, 30 s
# leases, 20 s long-polls). Every worker request is a Lambda invocation under the workers'
# usage plan (1,000 requests/s, template_parts.WORKER_THROTTLE) and the account's
# concurrency, so workers report every 30 s (10,000
# workers: 333 requests/s), a lease outlives four missed reports, and a long-poll holds
# its container (and its share of concurrency) 10 s at most, well under API Gateway's
# 29 s. qdel reaches a running job within a heartbeat (30 s). docs/aws.md.
AWS_TIMINGS: dict[str, Any] = {
    "heartbeat_seconds": messages.AWS_TIMINGS.heartbeat_seconds,
    "lease_seconds": messages.AWS_TIMINGS.lease_seconds,
    "max_wait_seconds": messages.AWS_TIMINGS.max_wait_seconds,
    "worker_idle_seconds": messages.AWS_TIMINGS.idle_seconds,
}


class TickAfterSubmit:
    """ASGI middleware: after a successful submit, `ask` for a tick (at most once per
    `gap` seconds per container: a burst of submits needs one tick, not one each)."""

    def __init__(
        self,
        app: ASGIApp,
        ask: Callable[[], None],
        *,
        gap: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.ask, self.gap, self.clock = app, ask, gap, clock
        self._asked = -float("inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        submit = scope["type"] == "http" and (scope["method"], scope["path"]) == ("POST", "/jobs")
        if not submit:
            await self.app(scope, receive, send)
            return
        status = 0

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, noting)
        if status == 200 and self.clock() - self._asked >= self.gap:
            self._asked = self.clock()
            self.ask()


def make_app(*, lambda_client: Any = None) -> LambdaApp:
    """Built once per Lambda container (the adapter calls it on the first event)."""
    from hyper.host.app import create_app
    from hyper.host.service import HostService
    from hyper.host_settings import HostSettings
    from hyper.launchers.base import Launcher
    from hyper.launchers.batch import BatchLauncher
    from hyper.models import ResourceKind
    from hyper.providers.aws.provider import AwsProvider
    from hyper.store.dynamodb import DynamoDBStore
    from hyper.worker_tokens import WorkerTokens

    env = os.environ
    region = env["HYPER_REGION"]
    secrets = boto3.client("secretsmanager", region_name=region)
    key = secrets.get_secret_value(SecretId=env["HYPER_SECRET_ARN"])["SecretString"]
    # workers, and so jobs, get the worker key and their launch's token (hyper/host/auth.py):
    # they open only that launch's workers' routes, and job roles read no secret (a stack
    # made before it had no worker key: its workers read the host's key, as they did)
    worker_secret_arn = env.get("HYPER_WORKER_SECRET_ARN") or env["HYPER_SECRET_ARN"]
    worker_key = ""
    if worker_secret_arn != env["HYPER_SECRET_ARN"]:
        worker_key = secrets.get_secret_value(SecretId=worker_secret_arn)["SecretString"]
    read_by_jobs = None if worker_key else env["HYPER_SECRET_ARN"]
    settings = HostSettings(
        data_dir=Path(tempfile.gettempdir()),  # the only place a function may write
        api_key=key,
        worker_key=worker_key,
        name=env["HYPER_HOST_NAME"],
        url=env["HYPER_API_URL"],
        **AWS_TIMINGS,
    )
    store = DynamoDBStore(env["HYPER_TABLE_PREFIX"], region, env.get("HYPER_BUCKET"),
                          bucket_owner=env.get("HYPER_BUCKET_OWNER"))  # fmt: skip
    provider = AwsProvider(
        store,
        host_name=settings.name,
        secret_arn=read_by_jobs,
        worker_secret_arn=worker_secret_arn if worker_key else None,
        host_vpc=env.get("HYPER_HOST_VPC"),
        host_subnets=[s for s in env.get("HYPER_HOST_SUBNETS", "").split(",") if s],
        permissions_boundary=env.get("HYPER_PERMISSIONS_BOUNDARY"),
        allowed_policies=env.get("HYPER_ALLOWED_POLICIES", "").split(","),
        allowed_vpcs=env.get("HYPER_ALLOWED_VPCS", "").split(","),
        allowed_container_options=env.get("HYPER_ALLOWED_CONTAINER_OPTIONS", "").split(","),
    )

    def launchers(service: HostService) -> dict[str, Launcher]:
        batch = BatchLauncher(
            store,
            url=settings.url,
            names=provider.names,
            idle_seconds=settings.worker_idle_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            worker_key=worker_key,
            tokens=WorkerTokens(key) if worker_key else None,
        )
        return {"aws": batch}

    app = create_app(settings, store, provider=provider, local_defaults=False, launchers=launchers)
    deployer = app.state.service.deployer
    asgi: ASGIApp = app
    # in Lambda (not when the app is served some other way, as in tests)
    this_function = env.get("AWS_LAMBDA_FUNCTION_NAME")
    if this_function:
        deploy_function = env.get("HYPER_DEPLOY_FUNCTION") or this_function
        to_deployer = SelfInvoker(deploy_function, region, lambda_client)
        deployer.hand_off(
            lambda kind, name: to_deployer(deploy_event(kind.value, name)),
            stale_after=DEPLOY_STALE_SECONDS,
        )
        to_self = SelfInvoker(this_function, region, lambda_client)
        asgi = TickAfterSubmit(app, lambda: to_self(dict(TICK_EVENT)))

    def tick() -> dict[str, Any]:
        # ticks may overlap (the schedule's, and those submits ask for, in other
        # containers): one at a time, or workers and workflow jobs would start twice
        me = uuid.uuid4().hex
        if not store.claim_tick(me, time.time(), FUNCTION_TIMEOUT_SECONDS):
            return {"skipped": "another tick is under way"}
        try:
            report = dataclasses.asdict(app.state.tick())
            # served otherwise, changes run in this process and a restart takes them up
            taken = deployer.resume() if this_function else []
        finally:
            store.release_tick(me)
        return {**report, "deploys_taken_up": taken}

    async def deploy(kind: str, name: str) -> dict[str, Any]:
        try:
            resource_kind = ResourceKind(kind)
        except ValueError:
            return {"kind": kind, "name": name, "status": None, "error": "no such kind"}
        return {"kind": kind, "name": name, "status": await deployer.run(resource_kind, name)}

    return LambdaApp(asgi, tick=tick, deploy=deploy)
