"""The web app and REST API: ``create_app(settings)``.

One FastAPI application: the pages (Jinja2, htmx, server-sent events) and the JSON API side by side,
one router per resource: `vitalflow.api.jobs` (start, watch, stop, resume jobs), and, when present,
`vitalflow.api.datasets`, `vitalflow.api.models` and `vitalflow.api.predictions`. Each router reads
the settings from ``request.app.state.settings``. Security (`vitalflow.api.auth`): a token when one is
set, the Host header checked on a loopback binding, cross-site form posts refused.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
from urllib.parse import urlencode
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from vitalflow import __version__
from vitalflow.api.auth import SameOrigin, TokenAuth, session_cookie
from vitalflow.api.commands import ROOTS
from vitalflow.api.pages import STATIC, templates
from vitalflow.api.settings import LOOPBACK, AppSettings

log = logging.getLogger("vitalflow.app")

#: Routers of the data pages, included when their module exists.
OPTIONAL_ROUTERS = ("vitalflow.api.datasets", "vitalflow.api.models", "vitalflow.api.predictions")


class _Roots:
    """Sets `vitalflow.api.commands.ROOTS` for the request: the roots request bodies are checked against."""

    def __init__(self, app, roots: tuple[str, ...]) -> None:
        self.app, self.roots = app, roots

    async def __call__(self, scope, receive, send) -> None:
        token = ROOTS.set(self.roots)
        try:
            await self.app(scope, receive, send)
        finally:
            ROOTS.reset(token)


def _local(target: str) -> str:
    """``target`` if it is a path on this site, else ``/jobs`` (no redirect to another site after login)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/jobs"


def create_app(settings: AppSettings, runner=None) -> FastAPI:
    """The app for ``settings``. ``runner`` (default: a `vitalflow.api.runner.JobRunner` over the
    settings' state directory) is injected by tests."""
    from vitalflow.api import jobs
    from vitalflow.api.runner import JobRunner

    job_runner = runner or JobRunner(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        job_runner.start()
        try:
            yield
        finally:
            job_runner.close()

    app = FastAPI(title="vitalflow app", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  description="Start and watch preprocess, train, evaluate and predict jobs; look at datasets, "
                              "models and predictions.")
    app.state.settings, app.state.runner = settings, job_runner
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    jobs.install(app)
    app.include_router(jobs.router)
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports does not
                raise
            continue
        app.include_router(module.router)

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request, next: str = "/jobs", failed: str | None = None):
        return templates.TemplateResponse(request, "login.html", {"next": _local(next), "failed": bool(failed)})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await request.form()
        target = _local(str(form.get("next") or "/jobs"))
        given = str(form.get("token") or "")
        if settings.token and hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                                  hashlib.sha256(settings.token.encode()).digest()):
            response = RedirectResponse(target, status_code=303)
            response.headers["set-cookie"] = session_cookie(settings.token)
            return response
        return RedirectResponse("/login?" + urlencode({"next": target, "failed": "1"}), status_code=303)

    @app.get("/", include_in_schema=False)
    async def home(request: Request):
        return RedirectResponse("/jobs", status_code=303)

    app.add_middleware(_Roots, roots=settings.roots)
    # outermost last: the Host check, then the token, then the same-origin rule for posts
    app.add_middleware(SameOrigin)
    app.add_middleware(TokenAuth, token=settings.token)
    if settings.host in LOOPBACK:  # a loopback app answers only to loopback names (no DNS rebinding)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]", "testserver"])
    return app
