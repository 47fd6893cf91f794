"""`log_training`: one MLflow run per training, and a registered model version pointing at it.

The run holds:

- **params**: the training config flattened (``network.lstm_units = [48, 24]``, ...) and its hash;
- **metrics**: the training history per epoch (``loss``, ``mae``, ``val_loss``, ``val_mae``; step =
  epoch, 1-based), the best epoch's validation metrics (``best.val_loss``, ``best.val_mae``,
  ``best.epoch``) and, with an evaluation, every metric of every model per target as
  ``<split>.<all|changed>.<mae|rmse|mdape|r2>.<target>.<model>`` (e.g.
  ``test.all.mae.Propofol_INF.model``, ``test.changed.mae.Propofol_INF.persistence``), the windows
  as ``<split>.<kind>.n.<target>`` and, per model, the mean over targets of its MAE divided by
  persistence's as ``<split>.<kind>.mae_ratio.<model>`` (below 1: better than carrying the last
  value forward);
- **artifacts**: the model directory under ``model/`` (card, ``model.keras``, ``export/``,
  ``evaluation/``; not ``_checkpoints/`` nor any other ``_``-prefixed folder);
- **tags**: the lineage (:func:`lineage_tags`) and, for a tuned model, the study (:func:`tuning_tags`),
  also set on the model version.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vitalflow.errors import ModelError
from vitalflow.model.card import ModelCard, read_model_card
from vitalflow.registry.tracking import client, experiment_id, tracking_uri
from vitalflow.registry.versions import LINEAGE_TAGS
from vitalflow.store import Store

MODEL_ARTIFACT = "model"
#: MLflow's limits per log_batch call.
_BATCH_METRICS, _BATCH_PARAMS = 1000, 100
_METRIC_KINDS = ("mae", "rmse", "mdape", "r2")


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


def lineage_tags(card: ModelCard, model_uri: str) -> dict[str, str]:
    """What a version was made from, as tags (the names are :data:`LINEAGE_TAGS`)."""
    tags = {
        "dataset.fingerprint": card.dataset.fingerprint,
        "dataset.uri": card.dataset.uri,
        "spec.name": card.spec.name,
        "spec.version": str(card.spec.version),
        "spec.hash": card.spec.hash,
        "config.hash": card.config_hash,
        "tool.version": card.tool.version,
        "model.uri": model_uri,
    }
    assert tuple(tags) == LINEAGE_TAGS
    return tags


def tuning_tags(card: ModelCard) -> dict[str, str]:
    """The study that chose the config (`vitalflow tune`; the card's ``tuning``), as ``tuning.*`` tags."""
    t = card.tuning
    if t is None:
        return {}
    return {"tuning.storage": t.storage, "tuning.study": t.study, "tuning.trial": str(t.trial),
            "tuning.value": repr(t.value), "tuning.trials": str(t.trials), "tuning.params": json.dumps(t.params)}


def metric_key(*parts: str) -> str:
    """A metric or param name within MLflow's rules (letters, digits, ``_ - . / :`` and spaces; at
    most 250 characters): any other character becomes ``_``.

    >>> metric_key("test", "all", "mae", "Propofol_INF", "model")
    'test.all.mae.Propofol_INF.model'
    >>> metric_key("test", "all", "mae", "SpO2 (%)", "model")
    'test.all.mae.SpO2 ___.model'
    """
    text = ".".join(parts)
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-./: ") else "_" for c in text)[:250]


def flat_params(config: Mapping, prefix: str = "") -> dict[str, str]:
    """A nested config as ``a.b = value`` strings (lists and empty mappings as JSON).

    >>> flat_params({"network": {"lstm_units": [48, 24], "residual": True}, "target_weights": {}, "x": None})
    {'network.lstm_units': '[48, 24]', 'network.residual': 'true', 'target_weights': '{}', 'x': 'null'}
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[metric_key(name)] = value if isinstance(value, str) else json.dumps(value)
    return flat


_EVENT_METRICS = ("auroc", "auprc", "brier", "ece", "recall_at_budget", "precision_at_budget", "median_lead_s")


def decision_metrics_flat(metrics: Mapping) -> dict[str, float]:
    """A decision evaluation (`vitalflow.evaluate.decisions`) as flat metrics: per event
    ``<split>.<metric>.<group>/<H>.<scorer>`` (e.g. ``test.auprc.hypnotic/300.model``), the fraction of
    the AUPRC gap closed ``<split>.gap_closed.<group>/<H>.<scorer>``, and per scorer the mean over the
    events with positives ``<split>.mean_auprc.<scorer>`` (what ``models list`` and ``compare`` rank on).

    >>> doc = {"task": "decisions", "split": "test", "events": {"oxygen/300": {"positives": 3, "prevalence": 0.1,
    ...     "scorers": {"model": {"auprc": 0.5, "auroc": None}}, "gap_closed": {"model": {"value": 0.4}}}}}
    >>> decision_metrics_flat(doc)
    {'test.prevalence.oxygen/300': 0.1, 'test.auprc.oxygen/300.model': 0.5, 'test.gap_closed.oxygen/300.model': 0.4, 'test.mean_auprc.model': 0.5}
    """
    split = metrics.get("split", "test")
    flat: dict[str, float] = {}
    means: dict[str, list[float]] = {}
    for key, event in metrics.get("events", {}).items():
        if event.get("prevalence") is not None:
            flat[metric_key(split, "prevalence", key)] = float(event["prevalence"])
        for scorer, scores in event.get("scorers", {}).items():
            for name in _EVENT_METRICS:
                value = scores.get(name)
                if value is not None and math.isfinite(value):
                    flat[metric_key(split, name, key, scorer)] = float(value)
            if event.get("positives") and scores.get("auprc") is not None:
                means.setdefault(scorer, []).append(float(scores["auprc"]))
        for scorer, gap in event.get("gap_closed", {}).items():
            if gap.get("value") is not None:
                flat[metric_key(split, "gap_closed", key, scorer)] = float(gap["value"])
    for scorer, values in means.items():
        flat[metric_key(split, "mean_auprc", scorer)] = sum(values) / len(values)
    return flat


def evaluation_metrics(metrics: Mapping) -> dict[str, float]:
    """The flat metrics of an evaluation document (`vitalflow.evaluate.report`, or a decision
    evaluation: `decision_metrics_flat`), None values left out."""
    if metrics.get("task") == "decisions":
        return decision_metrics_flat(metrics)
    split = metrics.get("split", "test")
    models = metrics.get("models", {})
    flat: dict[str, float] = {}
    for model, per_target in models.items():
        for target, entry in per_target.items():
            for kind in ("all", "changed"):
                m = entry.get(kind) or {}
                if "n" in m:
                    flat[metric_key(split, kind, "n", target)] = float(m["n"])
                for name in _METRIC_KINDS:
                    value = m.get(name)
                    if value is not None and math.isfinite(value):
                        flat[metric_key(split, kind, name, target, model)] = float(value)
    persistence = models.get("persistence", {})
    for model, per_target in models.items():
        if model == "persistence":
            continue
        for kind in ("all", "changed"):
            ratios = [(per_target[t][kind]["mae"] / p[kind]["mae"]) for t, p in persistence.items()
                      if t in per_target and per_target[t].get(kind, {}).get("mae") is not None
                      and (p.get(kind) or {}).get("mae")]
            if ratios:
                flat[metric_key(split, kind, "mae_ratio", model)] = sum(ratios) / len(ratios)
    return flat


@contextmanager
def local_copy(model_uri: str) -> Iterator[Path]:
    """The model directory as a local folder: itself, or (s3://) a temporary download without the
    ``_``-prefixed folders."""
    store = Store(model_uri)
    if store.is_local:
        yield store.local_path("")
        return
    tmp = Path(tempfile.mkdtemp(prefix="vitalflow-register-"))
    try:
        for name in store.list():
            if not name.split("/", 1)[0].startswith("_"):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(store.read_bytes(name))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _log_model_dir(mlflow_client, run_id: str, local: Path) -> None:
    for entry in sorted(local.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            mlflow_client.log_artifacts(run_id, str(entry), f"{MODEL_ARTIFACT}/{entry.name}")
        else:
            mlflow_client.log_artifact(run_id, str(entry), MODEL_ARTIFACT)


def _log_values(mlflow_client, run_id: str, card: ModelCard, evaluation: Mapping | None) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    params = {**flat_params(card.config), "config_hash": card.config_hash}
    metrics = [Metric(metric_key(k), float(v), now, epoch) for k, series in card.training.history.items()
               for epoch, v in enumerate(series, start=1) if v is not None and math.isfinite(v)]
    final = {metric_key("best", k): float(v) for k, v in card.metrics.items()}
    final["best.epoch"] = float(card.training.best_epoch)
    final["parameters"] = float(card.parameters)
    if evaluation:
        final.update(evaluation_metrics(evaluation))
    metrics += [Metric(k, v, now, 0) for k, v in final.items() if math.isfinite(v)]
    items = [Param(k, v[:6000]) for k, v in params.items()]
    for i in range(0, max(len(items), 1), _BATCH_PARAMS):
        mlflow_client.log_batch(run_id, params=items[i:i + _BATCH_PARAMS])
    for i in range(0, len(metrics), _BATCH_METRICS):
        mlflow_client.log_batch(run_id, metrics=metrics[i:i + _BATCH_METRICS])


def _ensure_registered_model(mlflow_client, name: str) -> None:
    try:
        mlflow_client.get_registered_model(name)
        return
    except Exception:
        pass
    try:
        mlflow_client.create_registered_model(name, description="vitalflow models (README 'Registry')")
    except Exception:  # created meanwhile by another training
        mlflow_client.get_registered_model(name)


def log_training(model_dir: str, evaluation_metrics: Mapping | None, registered_model: str) -> RegisteredVersion:
    """Log the training in ``model_dir`` as an MLflow run (params, metrics, artifacts, lineage) and
    register it as a new version of ``registered_model``."""
    card = read_model_card(model_dir)
    uri = tracking_uri()
    c = client(uri)
    model_uri = Store(model_dir).uri
    tags = {**lineage_tags(card, model_uri), **tuning_tags(card)}
    run_name = f"{registered_model}-{Path(model_uri.rstrip('/')).name}"
    try:
        run = c.create_run(experiment_id(c, registered_model, uri), tags=tags, run_name=run_name)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the MLflow registry at {uri}: creating a run failed ({exc})") from exc
    run_id = run.info.run_id
    try:
        _log_values(c, run_id, card, evaluation_metrics)
        with local_copy(model_uri) as local:
            _log_model_dir(c, run_id, local)
        _ensure_registered_model(c, registered_model)
        mv = c.create_model_version(registered_model, source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}",
                                    run_id=run_id, tags=tags,
                                    description=f"{card.spec.name} v{card.spec.version}; dataset "
                                                f"{card.dataset.fingerprint}; trained {card.created_utc}")
    except Exception as exc:
        c.set_terminated(run_id, status="FAILED")
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"the MLflow registry at {uri}: logging {model_uri} failed ({exc})") from exc
    c.set_terminated(run_id)
    return RegisteredVersion(registered_model, str(mv.version), run_id)
