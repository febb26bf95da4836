"""The two headers a host's key travels in: API Gateway's, and the host's own.

An AWS host's API Gateway lets a request through only with one of its API keys in
``x-api-key``, which picks the usage plan that throttles it. Any principal of the account
allowed ``apigateway:GET`` (AWS's ReadOnlyAccess is) can read those keys' values, so the
value there is not the key: it is `gateway_key`, an HMAC of the key that only picks the
plan. The key itself goes in ``x-hyper-key``, and the host checks that one
(hyper/host/auth.py): a request carrying only the gateway's value is refused (401).

A client sends both to every host but a local one on its Unix socket, which gets the
key in ``x-api-key`` alone, as before (and no hashlib is loaded for its commands). A
host checks ``x-hyper-key`` when given, else ``x-api-key`` (`given_key`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays off the q-commands' path
if TYPE_CHECKING:
    from typing import AnyStr

GATEWAY_HEADER = "x-api-key"  # API Gateway's: the gateway key, which picks the usage plan
KEY_HEADER = "x-hyper-key"  # the host's: the key itself
_GATEWAY_LABEL = b"apigw"


def gateway_key(key: str) -> str:
    """The API Gateway key value of `key`: 64 hex digits (API Gateway takes 20 to 128
    letters and digits), from which `key` cannot be found."""
    import hashlib  # not on a local host's commands' path: they send the key alone
    import hmac

    return hmac.new(key.encode(), _GATEWAY_LABEL, hashlib.sha256).hexdigest()


def key_headers(key: str) -> dict[str, str]:
    """The headers a request made with `key` carries."""
    return {GATEWAY_HEADER: gateway_key(key), KEY_HEADER: key}


def given_key(hyper_key: AnyStr | None, api_key: AnyStr | None) -> AnyStr | None:
    """The key a request gives: its ``x-hyper-key``, or (from a client that sends only
    that) its ``x-api-key``; None when it gives neither."""
    return hyper_key or api_key
