"""Registered model versions: what a reference names, the versions of a name, aliases, tags.

A reference is ``NAME@ALIAS`` (``vitalflow@champion``) or ``NAME/VERSION`` (``vitalflow/3``);
:class:`ModelReference` both parses and formats it. Every lookup that finds nothing is a
`ModelError` naming what exists instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vitalflow.errors import ModelError
from vitalflow.registry.tracking import client, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

_REFERENCE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>[0-9]+))")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")

#: The lineage tags of a version (and its run), from the model card: see :func:`lineage_tags`.
LINEAGE_TAGS = ("dataset.fingerprint", "dataset.uri", "spec.name", "spec.version", "spec.hash", "config.hash",
                "tool.version", "model.uri")
#: The version tag that keeps the SageMaker model package a push created.
PACKAGE_TAG = "sagemaker.model_package_arn"


@dataclass(frozen=True)
class ModelReference:
    """``NAME@ALIAS`` or ``NAME/VERSION``.

    >>> ModelReference.parse("vitalflow@champion"), ModelReference.parse("vitalflow/12")
    (ModelReference(name='vitalflow', alias='champion', version=None), ModelReference(name='vitalflow', alias=None, version='12'))
    >>> str(ModelReference("vitalflow", version="3")), ModelReference.parse("runs/model-a") is None
    ('vitalflow/3', True)
    >>> ModelReference.parse("s3://bucket/model") is None
    True
    """

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelReference | None:
        match = _REFERENCE.fullmatch(str(text).strip())
        if match is None:
            return None
        return cls(match["name"], match["alias"], match["version"])

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version as the CLI shows it."""

    name: str
    version: str
    run_id: str
    source: str  # the artifact URI of the model directory
    created_ms: int
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the run's final metrics

    @property
    def reference(self) -> str:
        return f"{self.name}/{self.version}"


def check_alias(alias: str) -> str:
    """An alias: a letter, then letters, digits, ``_`` or ``-`` (not ``latest``, nor ``v<digits>``,
    which MLflow reserves)."""
    if not _ALIAS.fullmatch(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV][0-9]+", alias):
        raise ModelError(f"{alias!r} cannot be an alias: a letter, then letters, digits, '_' or '-' "
                         "('latest' and 'v<number>' are reserved)")
    return alias


def _missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower() \
        or "does not exist" in str(exc).lower()


def _registered(mlflow_client: MlflowClient, name: str):
    try:
        return mlflow_client.get_registered_model(name)
    except Exception as exc:
        if not _missing(exc):
            raise ModelError(f"the MLflow registry at {tracking_uri()}: reading {name!r} failed ({exc})") from exc
    names = sorted(m.name for m in mlflow_client.search_registered_models(max_results=1000))
    known = f"registered models: {', '.join(names)}" if names else "it holds no models: train one first"
    raise ModelError(f"no registered model {name!r} in the registry at {tracking_uri()} ({known})")


def _versions_text(mlflow_client: MlflowClient, name: str) -> str:
    versions = sorted((int(v.version) for v in mlflow_client.search_model_versions(f"name='{name}'")))
    return ", ".join(map(str, versions)) or "none"


def find_version(reference: ModelReference | str) -> VersionInfo:
    """The version a reference names (with its aliases, tags and run metrics)."""
    ref = reference if isinstance(reference, ModelReference) else ModelReference.parse(reference)
    if ref is None:
        raise ModelError(f"{reference!r} is not a registry reference: NAME@ALIAS or NAME/VERSION")
    c = client()
    registered = _registered(c, ref.name)
    aliases = dict(registered.aliases or {})  # alias -> version
    if ref.alias is not None:
        if ref.alias not in aliases:
            known = ", ".join(f"@{a} -> {ref.name}/{v}" for a, v in sorted(aliases.items())) or "none"
            raise ModelError(f"{ref.name} has no alias {ref.alias!r} (aliases: {known}; versions: "
                             f"{_versions_text(c, ref.name)}); set one with `vitalflow models promote "
                             f"{ref.name}/VERSION --alias {ref.alias}`")
        number = str(aliases[ref.alias])
    else:
        number = ref.version
    try:
        mv = c.get_model_version(ref.name, number)
    except Exception as exc:
        if not _missing(exc):
            raise ModelError(f"the MLflow registry at {tracking_uri()}: reading {ref.name}/{number} failed "
                             f"({exc})") from exc
        raise ModelError(f"{ref.name} has no version {number} (versions: {_versions_text(c, ref.name)})") from None
    return _info(c, mv, aliases)


def _info(mlflow_client: MlflowClient, mv, aliases: dict[str, str]) -> VersionInfo:
    metrics = {}
    if mv.run_id:
        try:
            metrics = dict(mlflow_client.get_run(mv.run_id).data.metrics)
        except Exception:  # a deleted run: the version stays usable, without metrics
            metrics = {}
    return VersionInfo(name=mv.name, version=str(mv.version), run_id=mv.run_id or "", source=mv.source,
                       created_ms=int(mv.creation_timestamp or 0),
                       aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version))),
                       tags=dict(mv.tags or {}), metrics=metrics)


def list_versions(name: str | None = None) -> list[VersionInfo]:
    """Every version of ``name`` (or of every registered model), by name then version."""
    c = client()
    models = [_registered(c, name)] if name else list(c.search_registered_models(max_results=1000))
    found = []
    for registered in sorted(models, key=lambda m: m.name):
        aliases = dict(registered.aliases or {})
        versions = c.search_model_versions(f"name='{registered.name}'")
        found += [_info(c, mv, aliases) for mv in sorted(versions, key=lambda v: int(v.version))]
    return found


def promote(reference: str, alias: str) -> tuple[VersionInfo, str | None]:
    """Point ``alias`` at the version ``reference`` names; returns it and the version the alias
    named before (None if new)."""
    check_alias(alias)
    info = find_version(reference)
    c = client()
    before = dict(c.get_registered_model(info.name).aliases or {}).get(alias)
    c.set_registered_model_alias(info.name, alias, info.version)
    return find_version(ModelReference(info.name, version=info.version)), \
        (None if before is None else str(before))


def set_version_tag(name: str, version: str, key: str, value: str) -> None:
    client().set_model_version_tag(name, version, key, value)
