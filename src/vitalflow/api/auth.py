"""Who may use the app.

- `TokenAuth`: with a token set (always when the app binds to a non-loopback address), the API wants
  ``Authorization: Bearer <token>``; a browser logs in once at ``/login`` (a form, or ``?token=`` on
  any page, which redirects to the same page without it), which sets an HttpOnly, SameSite=Strict
  cookie holding the token's digest (never the token). Compared in constant time. A page request
  without it is redirected to ``/login``; an API request gets 401 JSON.
- `SameOrigin`: a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` header names
  another site is refused (403): no other web page can start or stop jobs through the browser of
  someone who has the app open, even on 127.0.0.1 without a token.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from vitalflow.serve.auth import send_json

COOKIE = "vitalflow_app"
#: Reachable without a token: the login form and the static files (vendored, public code).
PUBLIC_PREFIXES = ("/login", "/static/")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def digest(token: str) -> str:
    """The cookie's value for ``token``: a digest, so the cookie never carries the token itself."""
    return hashlib.sha256(b"vitalflow-app-cookie:" + token.encode()).hexdigest()


def _header(scope: Scope, name: bytes) -> str:
    return next((v for k, v in scope.get("headers", ()) if k == name), b"").decode("latin-1")


async def _redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    if cookie:
        headers.append((b"set-cookie", cookie.encode()))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def session_cookie(token: str) -> str:
    return f"{COOKIE}={digest(token)}; HttpOnly; SameSite=Strict; Path=/"


class TokenAuth:
    """401 (API) or a redirect to /login (pages) without the token; nothing needed when ``token`` is None."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token
        self._bearer = hashlib.sha256(token.encode()).digest() if token else None
        self._cookie = digest(token) if token else None

    def _bearer_ok(self, scope: Scope) -> bool:
        scheme, _, given = _header(scope, b"authorization").partition(" ")
        ok = hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), self._bearer)
        return ok and scheme.lower() == "bearer"

    def _cookie_ok(self, scope: Scope) -> bool:
        jar = SimpleCookie()
        try:
            jar.load(_header(scope, b"cookie"))
        except Exception:  # a malformed cookie header is no login
            return False
        given = jar[COOKIE].value if COOKIE in jar else ""
        return hmac.compare_digest(given.encode(), self._cookie.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self._bearer_ok(scope) or self._cookie_ok(scope):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["method"] == "GET" and "token" in query:
            rest = urlencode({k: v for k, v in query.items() if k != "token"}, doseq=True)
            location = scope["path"] + (f"?{rest}" if rest else "")
            if hmac.compare_digest(hashlib.sha256(query["token"][0].encode()).digest(), self._bearer):
                await _redirect(send, location, session_cookie(self.token))
            else:
                await _redirect(send, "/login?" + urlencode({"next": location, "failed": "1"}))
            return
        if scope["method"] == "GET" and "text/html" in _header(scope, b"accept"):
            await _redirect(send, "/login?" + urlencode({"next": scope["path"]}))
            return
        await send_json(send, 401, {"error": "missing or wrong bearer token (send Authorization: Bearer <token>)"},
                        [(b"www-authenticate", b"Bearer")])


class SameOrigin:
    """403 for a state-changing request whose Origin is another site than the one it was sent to."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            origin = _header(scope, b"origin")
            if origin and urlsplit(origin).netloc != _header(scope, b"host"):
                await send_json(send, 403, {"error": f"cross-site request from {origin} refused"})
                return
        await self.app(scope, receive, send)
