"""How a browser logs in to the dashboard, without the API key ever in a URL.

1. Whoever holds the API key (``hyper dashboard``) asks the host for a login token: 32
   random bytes, good for one use within `seconds` (60 by default, 300 at most). The
   store keeps only its SHA-256 and when it expires, under a files key of its own, so
   that every process of the host (Lambda's included) can redeem it once.
2. The browser opens ``/dashboard/login?token=...``; the host deletes the token's record
   (whoever deletes it first wins, so a token works once) and answers with a session
   cookie: HttpOnly, SameSite=Strict, expiring with the session.
3. A session is ``expires.nonce.signature``: an HMAC-SHA256 under a secret derived from
   the API key, so any process of the host checks it without the store, and changing the
   key ends every session.

The threat: another user of the machine, or a page on another site, using the
dashboard. They never see the key; a token seen in a process list has likely been used
by the time they try it, and is dead within a minute anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from hyper.store.base import Store

TOKEN_SECONDS = 60.0
MAX_TOKEN_SECONDS = 300.0
SESSION_SECONDS = 8 * 3600
TOKEN_FILES = ".hyper/dashboard-tokens/"
MAX_TOKEN_LENGTH = 100


def _secret(api_key: str) -> bytes:
    return hmac.new(api_key.encode(), b"hyper dashboard sessions", hashlib.sha256).digest()


def _sign(api_key: str, text: str) -> str:
    return hmac.new(_secret(api_key), text.encode(), hashlib.sha256).hexdigest()


def cookie_name(api_key: str) -> str:
    """One name per host: cookies are not kept apart by port, and two dashboards of two
    hosts may run on 127.0.0.1 at once."""
    return "hyper_" + _sign(api_key, "cookie name")[:12]


def _token_key(token: str) -> str:
    return TOKEN_FILES + hashlib.sha256(token.encode()).hexdigest()


def issue_token(store: Store, now: float, seconds: float = TOKEN_SECONDS) -> str:
    """A new login token, good once within `seconds`."""
    seconds = min(max(seconds, 1.0), MAX_TOKEN_SECONDS)
    token = secrets.token_urlsafe(32)
    store.put_file(_token_key(token), json.dumps({"expires": now + seconds}).encode(), now)
    return token


def redeem_token(store: Store, token: str, now: float) -> bool:
    """Whether `token` is a live token nobody has used; it is used up either way."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    key = _token_key(token)
    record = store.get_file(key)
    if record is None:
        return False
    if store.delete_files(key) < 1:  # redeemed by another request meanwhile
        return False
    try:
        expires = float(json.loads(record)["expires"])
    except (ValueError, KeyError, TypeError):
        return False
    return now <= expires


def new_session(api_key: str, now: float, seconds: float = SESSION_SECONDS) -> str:
    body = f"{int(now + seconds)}.{secrets.token_urlsafe(12)}"
    return f"{body}.{_sign(api_key, body)}"


def session_valid(api_key: str, value: str, now: float) -> bool:
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    expires, nonce, signature = parts
    if not hmac.compare_digest(signature, _sign(api_key, f"{expires}.{nonce}")):
        return False
    return now < int(expires)


def key_matches(api_key: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())
