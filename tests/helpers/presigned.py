"""S3's check of presigned URLs, in front of a moto server (which does not check them).

A request whose query carries ``X-Amz-Signature`` is checked as S3 checks it, by AWS's
documented Signature Version 4 for query strings (the canonical request of the method,
path, query without the signature, the signed headers as they arrived, and
``UNSIGNED-PAYLOAD``; the key derived from the secret, date, region and service), and
refused with S3's 403 (``SignatureDoesNotMatch``, or ``AccessDenied`` once expired).
``.expire`` makes the next that many presigned requests fail as they do once the
temporary credentials that signed them have expired (403 ``ExpiredToken``, or
``.expired_code``), whatever
their ``X-Amz-Expires`` says: S3 User Guide, "Download and upload objects with
presigned URLs".
Every request then goes on to moto as it came. Written from the algorithm
(https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html), not
with botocore's signer, so that it checks what the client sent, not how it was made.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def problem(method: str, target: str, headers: dict[str, str], secret: str) -> str | None:
    """Why S3 would refuse this presigned request, or None when it would take it."""
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)
    credential = given["X-Amz-Credential"].split("/")  # KEY/DATE/REGION/SERVICE/aws4_request
    stamp = given["X-Amz-Date"]
    signed = given["X-Amz-SignedHeaders"].split(";")
    if "host" not in signed:
        return "SignatureDoesNotMatch: host not signed"
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in signed if name not in lowered]
    if missing:
        return f"SignatureDoesNotMatch: signed headers not sent: {missing}"
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(query)
        if k != "X-Amz-Signature"
    )
    canonical_headers = "".join(f"{name}:{' '.join(lowered[name].split())}\n" for name in signed)
    request = "\n".join([method, parts.path, canonical_query, canonical_headers,
                         ";".join(signed), "UNSIGNED-PAYLOAD"])  # fmt: skip
    scope = "/".join(credential[1:])
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in credential[1:]:
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, given["X-Amz-Signature"]):
        return "SignatureDoesNotMatch: The request signature we calculated does not match"
    made = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    if time.time() > made + int(given["X-Amz-Expires"]):
        return "AccessDenied: Request has expired"
    return None


EXPIRED = {
    "ExpiredToken": "ExpiredToken: The provided token has expired.",
    "AccessDenied": "AccessDenied: Access Denied",
}


@contextmanager
def checking_s3(moto_endpoint: str, secret: str) -> Iterator[Any]:
    """A server on 127.0.0.1 that checks presigned requests and passes every request on
    to moto; its URL is `.url`, how many presigned requests it checked `.checked`, why
    it refused some `.refused`."""
    target = urlsplit(moto_endpoint)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            if "X-Amz-Signature=" in self.path:
                server.checked += 1
                why = problem(self.command, self.path, headers, secret)
                with lock:
                    if why is None and server.expire > 0:  # its signer's session has ended
                        server.expire -= 1
                        why = EXPIRED[server.expired_code]
                if why is not None:
                    server.refused.append(why)
                    code, message = why.split(": ", 1)
                    text = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                    self._answer(403, text.encode(), {"Content-Type": "application/xml"})
                    return
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self._answer(answer.status, data, dict(answer.getheaders()))
            finally:
                connection.close()

        def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            size = str(len(data))
            if self.command == "HEAD":  # the object's length, with no body
                size = next((v for k, v in headers.items() if k.lower() == "content-length"), "0")
            self.send_header("Content-Length", size)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.refused = []
    server.checked = 0
    server.expire = 0
    server.expired_code = "ExpiredToken"  # or AccessDenied, as S3 may answer either
    lock = threading.Lock()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
