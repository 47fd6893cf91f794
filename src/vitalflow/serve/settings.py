"""The service's settings: one validated object, from command-line options and SageMaker's
environment (``SAGEMAKER_BIND_TO_PORT``, ``MODEL_SERVER_TIMEOUT``, ...).

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

from vitalflow.errors import VitalflowError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


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


def from_environment(**options) -> ServeSettings:
    """Settings from options, with SageMaker's and vitalflow's environment variables as defaults."""
    env = os.environ
    defaults = {
        "port": int(env["SAGEMAKER_BIND_TO_PORT"]) if "SAGEMAKER_BIND_TO_PORT" in env else None,
        "job_timeout_s": float(env["MODEL_SERVER_TIMEOUT"]) if "MODEL_SERVER_TIMEOUT" in env else None,
        "token": env.get("VITALFLOW_SERVE_TOKEN"),
    }
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update({k: v for k, v in options.items() if v is not None})
    try:
        return ServeSettings(**merged)
    except ValidationError as exc:
        raise ServeSettingsError(settings_error(exc)) from None


def settings_error(exc: ValidationError) -> str:
    """pydantic's errors as one line naming each field (a value-error's own message as it is)."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)
