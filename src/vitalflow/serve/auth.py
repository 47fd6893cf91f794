"""Who may call the service, and how much they may send: two ASGI middlewares that wrap the whole
app (the synchronous routes and the jobs router alike). The redaction every error text goes through
before it reaches a log or a response is `vitalflow.errors.redact` (the app uses it too).

- `BearerAuth`: with a token configured, every request must carry ``Authorization: Bearer <token>``
  (compared in constant time, on digests, so neither content nor length leaks); otherwise 401.
  ``GET /ping`` is exempt: SageMaker's health check (and any load balancer's) carries no token,
  and ``/ping`` reveals only whether the model is loaded.
- `BodyLimit`: a body over the limit is refused with 413 before it is read: at once when its
  ``Content-Length`` says so, else as soon as the bytes received pass the limit (chunked bodies).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths answered without a token (SageMaker's health check carries none).
PUBLIC_PATHS = ("/ping",)
async def send_json(send: Send, status: int, document: dict, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerAuth:
    """401 for a request without the right bearer token (none needed when ``token`` is None)."""

    def __init__(self, app: ASGIApp, token: str | None, public_paths: Iterable[str] = PUBLIC_PATHS) -> None:
        self.app, self.public = app, frozenset(public_paths)
        self._expected = _digest(token.encode()) if token else None

    def allowed(self, scope: Scope) -> bool:
        if self._expected is None or scope.get("path") in self.public:
            return True
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        scheme, _, given = header.partition(b" ")
        # Always compare (a digest of nothing when the scheme is wrong): no early answer to time.
        match = hmac.compare_digest(_digest(given.strip()), self._expected)
        return match and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, {"error": "missing or wrong bearer token (send Authorization: Bearer <token>)"},
                        [(b"www-authenticate", b"Bearer")])


class PayloadTooLarge(HTTPException):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"request body over the limit of {limit_bytes / 1e6:g} MB (--max-payload-mb)")


class BodyLimit:
    """413 for a body over ``max_bytes``, before it is read whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, {"error": PayloadTooLarge(self.max_bytes).detail})
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:
            if started:
                raise
            await send_json(send, 413, {"error": exc.detail})
