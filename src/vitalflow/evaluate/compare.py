"""Two models side by side on the same windows, with the baselines: what ``vitalflow models compare``
prints and the app's compare page shows.

A model is named as everywhere else (``NAME@ALIAS``, ``NAME/VERSION`` or a model directory,
`ModelHandle`). Without a dataset the two stored test evaluations are compared, and only if they
were made on the same windows; with one, both are scored now on its split. Models of datasets of
different specs are refused (`ModelError`); of different datasets of the same spec, a warning.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitalflow.errors import ModelError

METRICS_PATH = "evaluation/{split}/metrics.json"


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric for a table: ``digits`` significant digits, "-" for None.

    >>> fmt(0.123456), fmt(None), fmt(0.123456, 2)
    ('0.1235', '-', '0.12')
    """
    return "-" if value is None else f"{value:.{digits}g}"


def short(text: str, keep: int = 15) -> str:
    """``sha256:0123456789ab`` for a long hash (enough to tell models apart)."""
    return text if len(text) <= keep else text[:keep]


class ModelHandle:
    """A model as the commands see it: its local (or s3://) directory, card, registry version."""

    def __init__(self, reference: str):
        from vitalflow.model.card import read_model_card
        from vitalflow.registry.resolve import download_version
        from vitalflow.registry.versions import ModelReference, find_version

        self.reference = reference
        parsed = ModelReference.parse(reference)
        local = Path(reference).expanduser()
        self.version = None
        if parsed is not None and not (local / "model_card.json").is_file():
            self.version = find_version(parsed)
            self.uri = str(download_version(self.version))
            self.label = self.version.reference
        else:
            self.uri = reference
            self.label = reference
        self.card = read_model_card(self.uri)

    def metrics(self, split: str = "test") -> dict | None:
        """The stored evaluation of ``split`` (``evaluation/<split>/metrics.json``), or None."""
        from vitalflow.store import Store

        store = Store(self.uri)
        name = METRICS_PATH.format(split=split)
        return json.loads(store.read_bytes(name)) if store.exists(name) else None


@dataclass(frozen=True)
class Comparison:
    """The outcome of `compare_models`: a headline, a summary table and the combined metrics
    document (both models' columns, then the baselines of the first)."""

    labels: tuple[str, str]
    dataset: str  # the dataset the windows came from
    combined: dict  # a metrics document (`vitalflow.evaluate.report`) with both models
    summary: list[list[str]]  # first row: the header

    @property
    def headline(self) -> str:
        a, b = self.labels
        return (f"{a} vs {b} on the {self.combined['split']} split of {self.dataset}: "
                f"{self.combined['windows']} windows, the same for both")

    def tables(self) -> list:
        """The combined document's tables (`vitalflow.evaluate.tables.metrics_tables`): the two
        models' columns first, then the baselines of the first."""
        from vitalflow.evaluate.tables import Table, metrics_tables

        tables = metrics_tables(self.combined)
        if self.combined.get("task") == "decisions":
            return tables  # its scorers are already in that order
        out = []
        for t in tables:  # value tables: target, unit, n, then the two models, then the baselines
            head = t.rows[0]
            order = [0, 1, 2] + [head.index(c) for c in self.labels] + \
                [i for i, c in enumerate(head) if i > 2 and c not in self.labels]
            out.append(Table(t.key, t.title, [[row[i] for i in order] for row in t.rows]))
        return out


def _combined_decisions(docs: list[dict], labels: tuple[str, str]) -> dict:
    """Two decision evaluations of the same windows as one document whose scorers are the two
    models (by label), then the first one's baselines; the gap closed is each model's own. A stacked
    model's network alone is left out (whose network would a column of it be?)."""
    first, second = docs
    own = ("model", "network")
    scorers = [*labels, *(s for s in first["scorers"] if s not in own)]
    events = {}
    for key, ev in first["events"].items():
        other = second["events"].get(key, {})
        merged = {label: doc_ev["scorers"].get("model", {}) for label, doc_ev in zip(labels, (ev, other))}
        gaps = {label: doc_ev.get("gap_closed", {}).get("model") for label, doc_ev in zip(labels, (ev, other))}
        events[key] = {**ev, "scorers": {**merged, **{k: v for k, v in ev["scorers"].items() if k not in own}},
                       "gap_closed": {k: v for k, v in gaps.items() if v is not None}}
    return {**first, "scorers": scorers, "events": events,
            "values": _combined_values(first.get("values", {}), second.get("values", {}), labels)}


def _combined_values(a: dict, b: dict, labels: tuple[str, str]) -> dict:
    """Value MAEs: the first model's entries, its ``model_mae`` relabelled, the second's added."""
    out = {}
    for key, entry in a.items():
        out[key] = dict(entry)
        for subset in ("all", "changed"):
            row = {k: v for k, v in entry[subset].items() if k != "model_mae"}
            row[f"{labels[0]}_mae"] = entry[subset].get("model_mae")
            row[f"{labels[1]}_mae"] = b.get(key, {}).get(subset, {}).get("model_mae")
            out[key][subset] = row
    return out


def _evaluate_into(models: list[ModelHandle], dataset: str, split: str, tmp: Path) -> list[dict]:
    from vitalflow.evaluate.run import evaluate_model

    return [evaluate_model(m.uri, dataset, split, output=str(tmp / str(i))).metrics for i, m in enumerate(models)]


def compare_models(a: str | ModelHandle, b: str | ModelHandle, dataset: str | None = None, split: str = "test",
                   warn: Callable[[str], None] | None = None) -> Comparison:
    """Compare two models (references or handles). ``warn`` receives a warning (models of
    different datasets) before any scoring starts."""
    first = a if isinstance(a, ModelHandle) else ModelHandle(a)
    second = b if isinstance(b, ModelHandle) else ModelHandle(b)
    ca, cb = first.card, second.card
    if ca.spec.hash != cb.spec.hash:
        raise ModelError(f"{first.label} and {second.label} were trained on datasets of different specs "
                         f"({ca.spec.name} v{ca.spec.version} {ca.spec.hash} and {cb.spec.name} v{cb.spec.version} "
                         f"{cb.spec.hash}): their metrics are not comparable")
    if ca.dataset.fingerprint != cb.dataset.fingerprint and warn is not None:
        warn(f"Warning: {first.label} and {second.label} were trained on different datasets (fingerprints "
             f"{short(ca.dataset.fingerprint)} and {short(cb.dataset.fingerprint)})"
             + ("" if dataset else ": their stored test windows differ; pass --dataset DS to score both on "
                "the same windows"))
    if dataset:
        tmp = Path(tempfile.mkdtemp(prefix="vitalflow-compare-"))
        try:
            docs = _evaluate_into([first, second], dataset, split, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        docs = [first.metrics(), second.metrics()]
        missing = [m.label for m, d in zip((first, second), docs) if d is None]
        if missing:
            raise ModelError(f"no test evaluation in {' and '.join(missing)}: pass --dataset DS to score both now")
        if docs[0].get("dataset_fingerprint") != docs[1].get("dataset_fingerprint") \
                or docs[0]["windows"] != docs[1]["windows"]:
            raise ModelError(f"{first.label} and {second.label} were evaluated on different test windows "
                             f"({docs[0].get('dataset', '?')}, {docs[1].get('dataset', '?')}): pass --dataset DS "
                             "to score both on the same windows")
    if [d.get("task", "values") for d in docs] != [docs[0].get("task", "values")] * 2:
        raise ModelError(f"{first.label} and {second.label} predict different tasks: their metrics are not comparable")
    label_a, label_b = (first.label, second.label) if first.label != second.label else ("A", "B")
    from vitalflow.registry.log import evaluation_metrics

    rows = [["", label_a, label_b]]
    if docs[0].get("task") == "decisions":
        combined = _combined_decisions(docs, (label_a, label_b))
        means = [evaluation_metrics(d).get(f"{d['split']}.mean_auprc.model") for d in docs]
        rows.append(["mean AUPRC over the events (test)", fmt(means[0]), fmt(means[1])])
        rows.append(["XGBoost's mean AUPRC on the same windows", fmt(evaluation_metrics(docs[0]).get(
            f"{docs[0]['split']}.mean_auprc.xgboost")), ""])
    else:
        combined = {"split": docs[0]["split"], "windows": docs[0]["windows"], "units": docs[0]["units"],
                    "models": {label_a: docs[0]["models"]["model"], label_b: docs[1]["models"]["model"],
                               **{k: v for k, v in docs[0]["models"].items() if k != "model"}}}
        rows.append(["val_loss (normalized, best epoch)", fmt(ca.metrics.get("val_loss"), 5),
                     fmt(cb.metrics.get("val_loss"), 5)])
        for kind in ("all", "changed"):
            ratio = [evaluation_metrics(d).get(f"{d['split']}.{kind}.mae_ratio.model") for d in docs]
            rows.append([f"mean MAE / persistence, {kind} windows", fmt(ratio[0]), fmt(ratio[1])])
    rows.append(["dataset fingerprint", short(ca.dataset.fingerprint), short(cb.dataset.fingerprint)])
    return Comparison(labels=(label_a, label_b), dataset=dataset or docs[0].get("dataset", "?"),
                      combined=combined, summary=rows)
