"""``vitalflow app``: the web app and REST API (`vitalflow.api`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
TOKEN_ENV = "VITALFLOW_APP_TOKEN"


def app(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; any but loopback needs a token."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port."),
    root: Optional[List[str]] = typer.Option(None, "--root", help="A directory (or s3:// prefix) forms may read and "
                                             "write; repeatable (default: the current directory)."),
    state_dir: Path = typer.Option(Path("vitalflow-app"), "--state-dir", help="The app's database (app.db) and "
                                   "job logs."),
    token: Optional[str] = typer.Option(None, "--token", help=f"Token the API (bearer) and pages (login) need "
                                        f"(better: ${TOKEN_ENV}, which no process listing shows)."),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="MLflow tracking URI for the jobs "
                                         "(default: $MLFLOW_TRACKING_URI or the embedded registry)."),
    max_running: int = typer.Option(1, "--max-running", min=1, help="Local jobs that run at once; the rest wait."),
) -> None:
    """Serve the web app and REST API: start and watch jobs, look at datasets, models, predictions."""
    from vitalflow.api.settings import app_settings

    try:
        import jinja2  # noqa: F401
        import uvicorn
    except ImportError as exc:
        from vitalflow.errors import VitalflowError

        raise VitalflowError(f'the app needs the app extra ({exc.name} is not installed): pip install "vitalflow[app]"')
    from vitalflow.api.app import create_app
    from vitalflow.api.runner import JobRunner

    settings = app_settings(host=host, port=port, roots=tuple(root) if root else None, state_dir=state_dir,
                            token=token or os.environ.get(TOKEN_ENV) or None, mlflow=mlflow)
    application = create_app(settings, runner=JobRunner(settings, max_running=max_running))
    shown = "[::1]" if host == "::1" else host
    out.print(f"vitalflow app on http://{shown}:{port}/ (roots: {', '.join(settings.roots)}; state: "
              f"{settings.state_dir})", markup=False)
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``app`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
    target.command("app")(wrap(app))
