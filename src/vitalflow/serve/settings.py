"""The service's settings: one validated object, from command-line options and the environment:
SageMaker's (``SAGEMAKER_BIND_TO_PORT``, ``MODEL_SERVER_TIMEOUT``) and vitalflow's
(``VITALFLOW_SERVE_TOKEN``, ``VITALFLOW_SERVE_INPUT_PREFIXES`` (comma-separated),
``VITALFLOW_SERVE_OUTPUT_PREFIX``, ``VITALFLOW_SERVE_FAILURE_PREFIX``). An option given wins over
its variable. In a SageMaker container the environment is the only way in (the container is
started as ``serve`` alone): ``vitalflow deploy`` sets the prefixes in the model's environment.

Security defaults: the service binds to 127.0.0.1; binding anywhere else needs a bearer token
(every request must then carry ``Authorization: Bearer <token>``); asynchronous jobs may read
recordings only below ``input_prefixes`` and write only below ``output_prefix`` and
``failure_prefix``.

The one exception: ``sagemaker=True`` (``vitalflow serve`` started as SageMaker's hosting
container, the model in ``/opt/ml/model``) may bind 0.0.0.0 without a token. SageMaker's runtime
API authenticates every invocation with IAM (SigV4) and forwards no ``Authorization`` header to the
container (only Content-Type, Accept and custom attributes), and the container's port is reachable
only from SageMaker's own network; a token there would make the endpoint unusable, not safer. A
token given anyway (``VITALFLOW_SERVE_TOKEN``) is still enforced.

Invalid settings are a `ServeSettingsError` naming the field (one line).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitalflow.errors import VitalflowError, one_line

LOOPBACK = ("127.0.0.1", "::1", "localhost")
TOKEN_ENV = "VITALFLOW_SERVE_TOKEN"
INPUT_PREFIXES_ENV = "VITALFLOW_SERVE_INPUT_PREFIXES"  # comma-separated
OUTPUT_PREFIX_ENV = "VITALFLOW_SERVE_OUTPUT_PREFIX"
FAILURE_PREFIX_ENV = "VITALFLOW_SERVE_FAILURE_PREFIX"


class ServeSettingsError(VitalflowError):
    """Settings the service cannot start with (the message names the field)."""


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str  # NAME@ALIAS, NAME/VERSION or a model directory (vitalflow.registry.resolve.resolve_model)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token: str | None = None  # bearer token; required when host is not a loopback address
    workers: int = Field(default=1, ge=1)  # asynchronous job worker processes
    state_dir: Path = Path("vitalflow-serve")  # the job database (jobs.db) and local outputs
    input_prefixes: tuple[str, ...] = ()  # where asynchronous jobs may read (local dirs or s3:// prefixes)
    output_prefix: str | None = None  # where results go (default: <state_dir>/results)
    failure_prefix: str | None = None  # where failure documents go (default: <state_dir>/failures)
    webhook: str | None = None  # POSTed a notification on completion and failure
    sns_success_topic: str | None = None
    sns_error_topic: str | None = None
    job_timeout_s: float = Field(default=3600, gt=0)  # MODEL_SERVER_TIMEOUT
    max_payload_mb: float = Field(default=64, gt=0)  # request bodies over this are refused (413)
    lease_s: float = Field(default=30, gt=0)  # a job whose worker stops heartbeating this long is taken again
    max_attempts: int = Field(default=3, ge=1)
    sagemaker: bool = False  # SageMaker's hosting container: 0.0.0.0 without a token (see the module's doc)

    @model_validator(mode="after")
    def _bind(self) -> ServeSettings:
        if self.host not in LOOPBACK and not self.token and not self.sagemaker:
            raise ValueError(f"binding to {self.host} needs a token (--token or VITALFLOW_SERVE_TOKEN): "
                             "every request must then carry it")
        return self

    @property
    def results(self) -> str:
        return self.output_prefix or str(self.state_dir / "results")

    @property
    def failures(self) -> str:
        return self.failure_prefix or str(self.state_dir / "failures")

    @property
    def database(self) -> Path:
        return self.state_dir / "jobs.db"


def prefixes_from(text: str | None) -> tuple[str, ...] | None:
    """``VITALFLOW_SERVE_INPUT_PREFIXES``: comma-separated, blanks around each and empty items
    dropped; None when unset or empty.

    >>> prefixes_from(" s3://b/ward3, s3://b/ward4/ ,")
    ('s3://b/ward3', 's3://b/ward4/')
    >>> prefixes_from("") is None
    True
    """
    items = tuple(p.strip() for p in (text or "").split(",") if p.strip())
    return items or None


def _number(env, name: str, kind):
    if name not in env:
        return None
    try:
        return kind(env[name])
    except ValueError:
        raise ServeSettingsError(f"{name}: {env[name]!r} is not a number") from None


def from_environment(**options) -> ServeSettings:
    """Settings from options, with SageMaker's and vitalflow's environment variables as defaults
    (an option that is not None wins over its variable; an empty variable counts as unset)."""
    env = os.environ
    defaults = {
        "port": _number(env, "SAGEMAKER_BIND_TO_PORT", int),
        "job_timeout_s": _number(env, "MODEL_SERVER_TIMEOUT", float),
        "token": env.get(TOKEN_ENV) or None,
        "input_prefixes": prefixes_from(env.get(INPUT_PREFIXES_ENV)),
        "output_prefix": env.get(OUTPUT_PREFIX_ENV, "").strip() or None,
        "failure_prefix": env.get(FAILURE_PREFIX_ENV, "").strip() or None,
    }
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update({k: v for k, v in options.items() if v is not None})
    try:
        return ServeSettings(**merged)
    except ValidationError as exc:
        raise ServeSettingsError(one_line(exc)) from None
