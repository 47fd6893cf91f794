"""Where a model reference points: ``NAME@ALIAS``, ``NAME/VERSION`` or a model directory.

A registry reference is downloaded once into ``$VITALFLOW_CACHE/models/<name>/<version>/``
(default ``~/.cache/vitalflow``), with a marker naming the registry, run and source it came
from; a cached copy of another registry's version of the same number is replaced. A local folder
holding a model card wins over the registry (``./vitalflow/3`` is always the folder).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from vitalflow.errors import ModelError
from vitalflow.model.card import CARD_NAME, read_model_card
from vitalflow.locations import cache_dir
from vitalflow.registry.tracking import tracking_uri
from vitalflow.registry.versions import ModelReference, VersionInfo, find_version

MARKER = ".vitalflow-registry.json"


def model_cache_dir(name: str, version: str) -> Path:
    return cache_dir() / "models" / name / str(version)


def _marker(info: VersionInfo) -> dict:
    return {"tracking_uri": tracking_uri(), "name": info.name, "version": info.version, "run_id": info.run_id,
            "source": info.source}


def _cached(path: Path, expected: dict) -> bool:
    try:
        return json.loads((path / MARKER).read_text()) == expected and (path / CARD_NAME).is_file()
    except (OSError, ValueError):
        return False


def download_version(info: VersionInfo) -> Path:
    """The version's model directory in the cache, downloaded if it is not there (or is another
    registry's); safe when several processes ask at once."""
    target = model_cache_dir(info.name, info.version)
    expected = _marker(info)
    if _cached(target, expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{info.version}-", dir=target.parent))
    try:
        from mlflow.artifacts import download_artifacts

        try:
            got = Path(download_artifacts(artifact_uri=info.source, dst_path=str(staging),
                                          tracking_uri=expected["tracking_uri"]))
        except Exception as exc:
            raise ModelError(f"{info.name}/{info.version}: downloading {info.source} failed ({exc})") from exc
        if not (got / CARD_NAME).is_file():
            raise ModelError(f"{info.name}/{info.version}: {info.source} holds no {CARD_NAME} (not a model "
                             "directory logged by vitalflow)")
        (got / MARKER).write_text(json.dumps(expected))
        if target.exists() and not _cached(target, expected):
            shutil.rmtree(target, ignore_errors=True)  # a stale copy (another registry, or half-removed)
        try:
            os.rename(got, target)
        except OSError:
            if not _cached(target, expected):  # not another process's identical copy: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    read_model_card(str(target))  # complete
    return target


def _is_local_model_dir(reference: str) -> bool:
    return "://" not in reference and (Path(reference).expanduser() / CARD_NAME).is_file()


def resolve_model(reference: str) -> str:
    """The model directory (local path or URI) that ``reference`` names; a registry reference
    that names no registered model, alias or version is a `ModelError`.

    ``NAME@ALIAS`` / ``NAME/VERSION``: the version's directory in the local cache (downloaded once).
    Anything else (a folder, an ``s3://`` prefix) is returned as it is: loading it checks it.
    """
    reference = str(reference)
    parsed = ModelReference.parse(reference)
    if parsed is None or _is_local_model_dir(reference):
        return reference
    return str(download_version(find_version(parsed)))
