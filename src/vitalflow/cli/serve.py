"""``vitalflow serve``: the inference service (synchronous invocations, durable asynchronous jobs).

Also the container's entry: SageMaker runs the image with the single argument ``serve``. Without
``--model``, a model in ``/opt/ml/model`` (where SageMaker unpacks ``model.tar.gz``) is served on
0.0.0.0, port ``SAGEMAKER_BIND_TO_PORT`` (default 8080), and a token is optional there (see
`vitalflow.serve.settings`: SageMaker authenticates every call with IAM and forwards no token).
Options not given fall back to the environment (`vitalflow.serve.settings.from_environment`):
in a container, ``VITALFLOW_SERVE_INPUT_PREFIXES`` and ``VITALFLOW_SERVE_OUTPUT_PREFIX`` (which
``vitalflow deploy`` sets) say where jobs may read and where their timelines go.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)

#: Where SageMaker unpacks a hosted model's ``model.tar.gz``.
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
CONTAINER_HOST = "0.0.0.0"


def serve_settings(model: Optional[str], host: Optional[str] = None, sagemaker_model_dir: Path = SAGEMAKER_MODEL_DIR,
                   **options):
    """The service's settings from the command's options and the environment (`from_environment`).

    No ``--model``: the container entry, if ``sagemaker_model_dir`` holds a model (binds 0.0.0.0
    unless ``--host`` says otherwise; no token needed); else an error saying what to pass.
    """
    from vitalflow.errors import ModelError
    from vitalflow.model.card import CARD_NAME
    from vitalflow.serve.settings import from_environment

    sagemaker = False
    if model is None:
        if not (sagemaker_model_dir / CARD_NAME).is_file():
            raise ModelError(f"--model is required (NAME@ALIAS, NAME/VERSION or a model directory); no model in "
                             f"{sagemaker_model_dir} either (where a SageMaker container finds it)")
        model, sagemaker = str(sagemaker_model_dir), True
        host = host or CONTAINER_HOST
    return from_environment(model=model, host=host, sagemaker=sagemaker or None, **options)


def check_model(reference: str) -> str:
    """The model directory ``reference`` names, after checking it holds a complete model (its card):
    an unknown model fails here, before the server starts, as one ``Error:`` line."""
    from vitalflow.model.card import read_model_card
    from vitalflow.registry.resolve import resolve_model

    directory = resolve_model(reference)
    read_model_card(directory)
    return directory


def serve(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory (path or s3://), NAME@ALIAS or "
                                        "NAME/VERSION; default: /opt/ml/model when it holds a model (SageMaker)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1; any other needs "
                                       "a token; 0.0.0.0 in a SageMaker container)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="Port (default: $SAGEMAKER_BIND_TO_PORT, else 8080)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1,
                                          help="Asynchronous job worker processes (default 1)."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token every request must carry (better: "
                                        "$VITALFLOW_SERVE_TOKEN, which no process listing shows)."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="Job database and local results "
                                             "(default ./vitalflow-serve)."),
    input_prefix: Optional[List[str]] = typer.Option(None, "--input-prefix", help="Where jobs may read recordings "
                                                     "(folder or s3:// prefix; repeatable)."),
    output_prefix: Optional[str] = typer.Option(None, "--output-prefix", help="Where job results go."),
    failure_prefix: Optional[str] = typer.Option(None, "--failure-prefix", help="Where job failure documents go."),
    webhook: Optional[str] = typer.Option(None, "--webhook", help="URL notified (POST) when a job ends."),
    max_payload_mb: Optional[float] = typer.Option(None, "--max-payload-mb", help="Largest request body, MB "
                                                   "(default 64; larger: 413)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log one line per request."),
) -> None:
    """Serve a model over HTTP: GET /ping, POST /invocations (JSON, .npy, .vital), /jobs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    settings = serve_settings(model, host, port=port, workers=workers, token=token, state_dir=state_dir,
                              input_prefixes=tuple(input_prefix) if input_prefix else None,
                              output_prefix=output_prefix, failure_prefix=failure_prefix, webhook=webhook,
                              max_payload_mb=max_payload_mb)
    check_model(settings.model)

    import uvicorn

    from vitalflow.serve.app import create_app
    from vitalflow.errors import redact

    app = create_app(settings)
    guard = "a bearer token is required" if settings.token else (
        "no token: SageMaker's network" if settings.sagemaker else "no token: loopback only")
    jobs = ("jobs run inside /invocations" if settings.sagemaker else
            f"jobs: {settings.workers} worker{'s' if settings.workers > 1 else ''}")
    reads = ", ".join(settings.input_prefixes) or "nothing (no input prefix)"
    out.print(redact(f"serving {settings.model} on http://{settings.host}:{settings.port} ({guard}; {jobs}, "
                     f"reading {reads}, results to {settings.results}); GET /ping says when the model is loaded",
                     [settings.token]), markup=False)
    logging.getLogger("vitalflow.serve").setLevel(logging.INFO)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=access_log, log_level="warning",
                timeout_graceful_shutdown=10)


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``serve`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
    target.command("serve")(wrap(serve))
