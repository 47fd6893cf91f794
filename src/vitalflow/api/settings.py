"""The app's settings: one validated, frozen object built from ``vitalflow app``'s options.

Security defaults: the app binds to 127.0.0.1; binding anywhere else needs a token (the API then
wants ``Authorization: Bearer <token>``, pages a login with it, which sets an HttpOnly cookie).
Every path a form or the API accepts must lie inside one of ``roots`` (`vitalflow.api.paths`);
``s3://`` URIs only below a root that is itself an ``s3://`` prefix.

Invalid settings are an `AppSettingsError` naming the field (one line).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vitalflow.errors import VitalflowError, one_line

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class AppSettingsError(VitalflowError):
    """Settings the app cannot start with (the message names the field)."""


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    token: str | None = None  # required when host is not a loopback address
    #: where forms may read and write: local directories (resolved) or s3:// prefixes
    roots: tuple[str, ...] = Field(default_factory=lambda: (str(Path.cwd().resolve()),))
    state_dir: Path = Path("vitalflow-app")  # app.db (SQLite, WAL) and one log file per job
    mlflow: str | None = None  # MLflow tracking URI, passed to the jobs (MLFLOW_TRACKING_URI)

    @field_validator("roots")
    @classmethod
    def _roots(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        if not roots:
            raise ValueError("at least one root is needed")
        resolved = []
        for root in roots:
            if root.startswith("s3://"):
                if len(root.rstrip("/")) <= len("s3://"):
                    raise ValueError(f"{root!r} names no bucket")
                resolved.append(root.rstrip("/") + "/")
            elif "://" in root:
                raise ValueError(f"{root!r}: a root is a local directory or an s3:// prefix")
            else:
                path = Path(root).expanduser().resolve()
                if not path.is_dir():
                    raise ValueError(f"{root} is not a directory")
                resolved.append(str(path))
        return tuple(resolved)

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, state_dir: Path) -> Path:
        return Path(state_dir).expanduser().resolve()

    @model_validator(mode="after")
    def _bind(self) -> AppSettings:
        if self.host not in LOOPBACK and not self.token:
            raise ValueError(f"binding to {self.host} needs a token (--token or VITALFLOW_APP_TOKEN)")
        return self

    @property
    def database(self) -> Path:
        return self.state_dir / "app.db"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"


def app_settings(**options) -> AppSettings:
    """`AppSettings` from options (None means the default), or an `AppSettingsError` in one line."""
    try:
        return AppSettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise AppSettingsError(one_line(exc)) from None
