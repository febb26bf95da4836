"""API Gateway REST proxy events, as API Gateway sends them to the host's function."""

from __future__ import annotations

import base64
from typing import Any

KEY = "test-key"


def proxy_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    base64_body: bool = False,
    key: str | None = KEY,
    query: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event as API Gateway's REST API sends it for a `{proxy+}` resource."""
    sent = {
        "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        "User-Agent": "hyper-test",
        **({"x-api-key": key} if key is not None else {}),
        **(headers or {}),
    }
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    raw = body.encode() if isinstance(body, str) else body
    query = query or {}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {name: [value] for name, value in sent.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "identity": {"sourceIp": "203.0.113.7", "apiKey": key},
        },
        "body": (
            None if raw is None else base64.b64encode(raw).decode() if base64_body else raw.decode()
        ),
        "isBase64Encoded": base64_body,
    }
