"""Where the registry lives: ``$MLFLOW_TRACKING_URI``, else an embedded SQLite store.

The embedded store (no server to run)::

    $VITALFLOW_HOME/mlflow/mlflow.db        runs, metrics, params, registered models (SQLite)
    $VITALFLOW_HOME/mlflow/artifacts/       the runs' artifacts (model directories, reports)

``$VITALFLOW_HOME`` defaults to ``~/.vitalflow``. Creating the store (MLflow's alembic migrations)
takes a few seconds once; every later use opens it as it is. Any MLflow tracking server (or another
SQLite file, ``sqlite:////abs/path.db``) works through ``MLFLOW_TRACKING_URI``; with a SQLite URI
the artifacts go into ``artifacts/`` beside the database file, with a server where it says.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from vitalflow.errors import ModelError
from vitalflow.locations import home

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_ENV = "MLFLOW_TRACKING_URI"
STORE_DIR = "mlflow"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "artifacts"

log = logging.getLogger("vitalflow.progress")


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the embedded store's ``sqlite:///.../mlflow/mlflow.db``."""
    uri = os.environ.get(TRACKING_ENV, "").strip()
    return uri or f"sqlite:///{(home() / STORE_DIR / DB_NAME).resolve()}"


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(uri).path)
    return Path(path[1:] if path.startswith("//") else path) if path and path != "/:memory:" else None


def artifact_root(uri: str) -> str | None:
    """Where new experiments keep their artifacts: ``artifacts/`` beside a SQLite file, else the
    server's default (None)."""
    db = _sqlite_file(uri)
    return (db.parent / ARTIFACTS_DIR).resolve().as_uri() if db is not None else None


def _quiet_mlflow() -> None:
    # MLflow and alembic log every migration at INFO on their own handlers: keep them to warnings
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


_CLIENTS: dict[str, MlflowClient] = {}


def client(uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` of the registry (one per URI and process); the embedded store is created
    on first use."""
    uri = uri or tracking_uri()
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    try:
        import mlflow  # noqa: F401  (heavy: only here)
        from mlflow import MlflowClient
    except ImportError as exc:
        raise ModelError(f"the registry needs MLflow ({exc.name} is not installed): "
                         'pip install "vitalflow[train]"') from None
    _quiet_mlflow()
    db = _sqlite_file(uri)
    if db is not None and not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        log.info("creating the MLflow store %s (first use: a few seconds)", db)
    try:
        made = MlflowClient(tracking_uri=uri)
        made.search_experiments(max_results=1)  # opens the store: a new database is migrated here, once
    except Exception as exc:  # MlflowException, SQLAlchemy errors: name the store
        raise ModelError(f"the MLflow registry at {uri} cannot be opened ({_first_line(exc)})") from exc
    _CLIENTS[uri] = made
    return made


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def experiment_id(mlflow_client: MlflowClient, name: str, uri: str | None = None) -> str:
    """The id of the experiment ``name`` (runs of one registered model), created if missing."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(uri or tracking_uri())
    location = f"{root}/{name}" if root else None
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another process
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
