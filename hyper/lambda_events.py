"""hyper's own events for the host's Lambda function, besides API Gateway's requests:
the schedule's tick and one resource change's deploy. Plain data, so that the host
template (which schedules the tick) and the function's entry point (which answers
them) share them without importing each other."""

from __future__ import annotations

from typing import Any

TICK_EVENT = {"hyper": "tick"}
DEPLOY = "deploy"


def is_tick(event: Any) -> bool:
    return isinstance(event, dict) and event.get("hyper") == TICK_EVENT["hyper"]


def deploy_event(kind: str, name: str) -> dict[str, str]:
    return {"hyper": DEPLOY, "kind": kind, "name": name}


def is_deploy(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get("hyper") == DEPLOY
        and isinstance(event.get("kind"), str)
        and isinstance(event.get("name"), str)
    )
