"""Scoring decision predictions the way the clinical literature does, against baselines on the same windows.

Per event (group x horizon), over the windows whose label is valid (`vitalflow.transform.decisions`):
prevalence, AUROC, AUPRC, Brier score, a 10-bin reliability curve and its ECE, recall and precision
at an alert budget (one alert per 10 minutes of case time) and the median lead time of the alerts
that came true, with 95 % bootstrap intervals over cases (`vitalflow.evaluate.bootstrap`). Scorers:

- **model**: the model's calibrated probabilities (a stacked model's: the network with its XGBoost
  classifiers, `vitalflow.model.stack`);
- **network** (stacked models): the network's calibrated probabilities alone;
- **no skill**: the training split's prevalence for every window (AUROC 0.5, AUPRC = prevalence);
- **rules**: the textbook protocol (`vitalflow.evaluate.rules`), a 0/1 score per group;
- **XGBoost**: one binary classifier per event on the window summaries and the set-points now
  (`vitalflow.model.boosted`, the stack's member), fitted on the training split with early
  stopping on validation;
- **oracle** (synthetic data only): the simulated clinician's own probability of acting in
  (t, t + H] given what it had seen up to t, read from the ``<case>.oracle.npz`` files `vitalflow synth`
  writes beside the recordings. It is the best any predictor can do in that world, not a perfect score.

The headline is the fraction of the AUPRC gap closed, (model - no skill) / (oracle - no skill), with
an interval from the same resampled cases for all three scorers (the model's, the network's and
XGBoost's). Value labels are scored by MAE in
the set-point's unit on every valid window (a no-harm check against persistence: the value at t) and
on the windows where the set-point was changed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from vitalflow.dataset.reference import Dataset
from vitalflow.evaluate.bootstrap import bootstrap_over_cases, bootstrap_paired, gap_closed
from vitalflow.scores import auprc, auroc, score_events
from vitalflow.evaluate.rules import RuleProtocol, rule_scores
from vitalflow.model.boosted import EventBoosters, boosted_features
from vitalflow.spec.model import LabelName, Spec
from vitalflow.store import Store
from vitalflow.transform.normalize import denormalize

log = logging.getLogger("vitalflow.progress")

SCORERS = ("model", "network", "no_skill", "rules", "xgboost", "oracle")
SCORER_LABELS = {"model": "model", "network": "network alone", "no_skill": "no skill", "rules": "rules",
                 "xgboost": "XGBoost", "oracle": "oracle"}
ORACLE_SUFFIX = ".oracle.npz"

#: model scorer: a batch of windows ({feature: array}) -> (event probabilities [N, events], values [N, S*H]
#: normalized, the network's own event probabilities [N, events] when the model is a stack, else None)
ModelScores = Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


@dataclass
class DecisionWindows:
    """What evaluation keeps of a split's windows (a few hundred numbers per window, not the series)."""

    case_id: np.ndarray  # [N]
    end_s: np.ndarray  # [N] the window's last second, from the recording start
    labels: np.ndarray  # [N, L]
    mask: np.ndarray  # [N, L] bool
    onset_s: np.ndarray  # [N, events]
    setpoints: np.ndarray  # [N, S] normalized, 0 where unknown
    setpoints_known: np.ndarray  # [N, S]
    summary: np.ndarray  # [N, K] XGBoost's input (`vitalflow.model.boosted.boosted_features`)
    rules: np.ndarray  # [N, groups] 0/1
    model_events: np.ndarray | None  # [N, events] probabilities
    model_values: np.ndarray | None  # [N, S*H] normalized
    network_events: np.ndarray | None  # [N, events] a stacked model's network alone


def read_windows(dataset: Dataset, split: str, spec: Spec, names: list[str], model: ModelScores | None,
                 protocol: RuleProtocol = RuleProtocol()) -> DecisionWindows:
    """Stream a split's windows once and keep what the scorers need."""
    from vitalflow.model.inputs import numpy_batches  # TensorFlow: only when a dataset is read

    assert spec.decisions is not None
    length = dataset.example_schema["timeseries"].reshape[0]
    lo = np.array([f.range[0] for f in spec.timeseries])
    hi = np.array([f.range[1] for f in spec.timeseries])
    groups = list(spec.decisions.groups)
    wanted = sorted({*names, "timeseries", "static", "labels", "label_mask", "event_onset_s", "setpoints",
                     "setpoints_known", "case_id", "window_start_s"}
                    | ({"mask"} if "mask" in dataset.example_schema.root else set()))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in DecisionWindows.__dataclass_fields__}
    for batch in numpy_batches(dataset, split, wanted, batch_size=512):
        ts = batch["timeseries"]
        observed = batch["mask"] if "mask" in batch else np.ones_like(ts)
        by_group = rule_scores(denormalize(ts, lo, hi), observed, list(spec.feature_names), protocol)
        none = np.zeros(len(ts))
        parts["rules"].append(np.stack([by_group.get(g, none) for g in groups], axis=1).astype(np.float32))
        parts["summary"].append(boosted_features(ts, batch["static"], batch["setpoints"], batch["setpoints_known"]))
        parts["case_id"].append(batch["case_id"].reshape(-1))
        parts["end_s"].append(batch["window_start_s"].reshape(-1) + length - 1)
        parts["labels"].append(batch["labels"])
        parts["mask"].append(batch["label_mask"] > 0.5)
        parts["onset_s"].append(batch["event_onset_s"])
        parts["setpoints"].append(batch["setpoints"])
        parts["setpoints_known"].append(batch["setpoints_known"] > 0.5)
        if model is not None:
            events, values, network = model(batch)
            parts["model_events"].append(events)
            parts["model_values"].append(values)
            if network is not None:
                parts["network_events"].append(network)
    return DecisionWindows(**{k: np.concatenate(v) if v else None for k, v in parts.items()})


def oracle_scores(dataset: Dataset, windows: DecisionWindows, events: tuple[LabelName, ...]) -> np.ndarray | None:
    """The synthetic clinician's probabilities at each window's end, or None when the recordings
    the dataset was made from have no oracle files beside them (real data)."""
    inputs = dataset.card.inputs.get("input") or {}
    location, recordings = inputs.get("uri"), inputs.get("recordings") or {}
    if not location or not recordings:
        return None
    store = Store(location)
    out = np.full((len(windows.case_id), len(events)), np.nan)
    for case in np.unique(windows.case_id):
        entry = recordings.get(str(int(case)))
        if not entry:
            return None
        name = entry[0].rsplit(".", 1)[0] + ORACLE_SUFFIX
        if not store.exists(name):
            return None
        with np.load(io.BytesIO(store.read_bytes(name))) as npz:
            times = npz["time_s"]
            rows = np.flatnonzero(windows.case_id == case)
            at = np.clip(np.searchsorted(times, windows.end_s[rows], side="right") - 1, 0, len(times) - 1)
            for j, ev in enumerate(events):
                key = f"p/{ev.of}/{ev.horizon_s}"
                if key not in npz:
                    return None
                out[rows, j] = npz[key][at]
    return out


def _interval(i) -> list[float | None]:
    return [_num(i.lo), _num(i.hi)]


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _event_document(y, mask, case_ids, onset, scores: dict[str, np.ndarray], resamples: int, seed: int) -> dict:
    kept = mask
    doc: dict = {"scorers": {}, "gap_closed": {}}
    yk, ck = y[kept], case_ids[kept]
    for name, p in scores.items():
        s = score_events(y, p, mask, case_ids, onset)
        entry = {"auroc": _num(s.auroc), "auprc": _num(s.auprc), "brier": _num(s.brier), "ece": _num(s.ece),
                 "recall_at_budget": _num(s.recall_at_budget), "precision_at_budget": _num(s.precision_at_budget),
                 "alerts": s.alerts, "median_lead_s": _num(s.median_lead_s),
                 "reliability": {"mean_predicted": [_num(v) for v in s.reliability.mean_predicted],
                                 "observed": [_num(v) for v in s.reliability.observed],
                                 "count": [int(c) for c in s.reliability.count]}}
        if resamples and yk.size:
            entry["auroc_ci"] = _interval(bootstrap_over_cases(auroc, ck, yk, p[kept], n=resamples, seed=seed))
            entry["auprc_ci"] = _interval(bootstrap_over_cases(auprc, ck, yk, p[kept], n=resamples, seed=seed))
        doc["scorers"][name] = entry
        doc.update(n=s.n, cases=s.cases, positives=s.positives, prevalence=_num(s.prevalence))
    if "oracle" in scores and yk.size:
        for name in ("model", "network", "xgboost", "rules"):
            if name not in scores:
                continue
            i = bootstrap_paired(auprc, gap_closed, ck, yk, scores[name][kept], scores["no_skill"][kept],
                                 scores["oracle"][kept], n=resamples or 1, seed=seed)
            doc["gap_closed"][name] = {"value": _num(i.point), "ci": _interval(i) if resamples else [None, None]}
    return doc


def _value_document(spec: Spec, test: DecisionWindows, model_values: np.ndarray | None, xgb_values: np.ndarray | None
                    ) -> dict:
    """MAE in clinical units per set-point x horizon: all valid windows, and those with a change."""
    d = spec.decisions
    assert d is not None
    names = [str(lab) for lab in d.labels]
    out = {}
    sp_index = {sp.name: j for j, sp in enumerate(d.setpoints)}
    for k, lab in enumerate(lab for lab in d.labels if lab.task == "value"):
        col = names.index(str(lab))
        sp = d.setpoints[sp_index[lab.of]]
        j = sp_index[lab.of]
        valid = test.mask[:, col] & test.setpoints_known[:, j]
        if not valid.any():
            continue
        changed_col = names.index(f"event/{d.group_of(lab.of)}/{lab.horizon_s}")
        direction = f"direction/{lab.of}/{lab.horizon_s}"
        changed = valid & (test.mask[:, names.index(direction)] if direction in names else test.labels[:, changed_col] > 0)
        actual = denormalize(test.labels[:, col], *sp.range)
        preds = {"persistence": denormalize(test.setpoints[:, j], *sp.range)}
        if model_values is not None:
            preds["model"] = denormalize(model_values[:, k], *sp.range)
        if xgb_values is not None:
            preds["xgboost"] = denormalize(xgb_values[:, k], *sp.range)
        entry = {"unit": sp.unit}
        for subset, rows in (("all", valid), ("changed", changed)):
            entry[subset] = {"n": int(rows.sum())} | {
                f"{name}_mae": _num(np.abs(p[rows] - actual[rows]).mean()) if rows.any() else None
                for name, p in preds.items()}
        out[str(lab)[len("value/"):]] = entry
    return out


class ValueRegressors:
    """XGBoost: per value label, the change of the set-point from its value at t (so it starts from
    persistence), on the windows where the label and the current value are valid."""

    def __init__(self, rounds: int = 40, max_depth: int = 4):
        self.params = {"objective": "reg:squarederror", "max_depth": max_depth, "eta": 0.2, "subsample": 0.8,
                       "colsample_bytree": 0.8, "tree_method": "hist", "nthread": 2, "max_bin": 64}
        self.rounds = rounds
        self.boosters: list = []

    def fit(self, spec: Spec, train: DecisionWindows, seed: int = 0) -> ValueRegressors:
        import xgboost

        self.columns = _value_columns(spec)
        self.boosters = []
        for col, j in self.columns:
            rows = train.mask[:, col] & train.setpoints_known[:, j]
            if rows.sum() < 10:
                self.boosters.append(None)
                continue
            y = train.labels[rows, col] - train.setpoints[rows, j]
            dtrain = xgboost.DMatrix(train.summary[rows], label=y)
            self.boosters.append(xgboost.train({**self.params, "seed": seed}, dtrain, num_boost_round=self.rounds))
        return self

    def predict(self, windows: DecisionWindows) -> np.ndarray:
        import xgboost

        dm = xgboost.DMatrix(windows.summary)
        out = []
        for (col, j), b in zip(self.columns, self.boosters):
            change = np.zeros(len(windows.case_id)) if b is None else b.predict(dm)
            out.append(np.clip(windows.setpoints[:, j] + change, -1.0, 1.0))
        return np.stack(out, axis=1) if out else np.zeros((len(windows.case_id), 0))


def _value_columns(spec: Spec) -> list[tuple[int, int]]:
    """(column in labels, set-point index) of every value label, in label order."""
    d = spec.decisions
    assert d is not None
    names = [sp.name for sp in d.setpoints]
    return [(i, names.index(lab.of)) for i, lab in enumerate(d.labels) if lab.task == "value"]


@dataclass(frozen=True)
class DecisionScores:
    """A scored split: the metrics document and, per event key (``<group>/<H>``), the valid windows'
    labels and every scorer's scores on them (what the figures draw)."""

    metrics: dict
    y: dict[str, np.ndarray]
    scores: dict[str, dict[str, np.ndarray]]


def decision_metrics(spec: Spec, dataset: Dataset, split: str, test: DecisionWindows, train: DecisionWindows,
                     validation: DecisionWindows | None, resamples: int = 1000, seed: int = 0) -> DecisionScores:
    """Score every event and value label of ``test`` with the model (if ``test`` holds its outputs)
    and the baselines; the metrics document is ``metrics.json`` (README "Evaluation")."""
    d = spec.decisions
    assert d is not None
    events = d.events
    groups = list(d.groups)
    log.info("fitting XGBoost baselines (%d event classifiers, value regressors)", len(events))
    n = len(events)
    valid = (validation.summary, validation.labels[:, :n], validation.mask[:, :n]) if validation is not None else ()
    classifiers = EventBoosters().fit(train.summary, train.labels[:, :n], train.mask[:, :n], *valid, seed=seed)
    xgb_events = classifiers.predict(test.summary)
    xgb_values = ValueRegressors().fit(spec, train, seed=seed).predict(test)
    oracle = oracle_scores(dataset, test, events)
    doc: dict = {"task": "decisions", "split": split, "windows": int(len(test.case_id)),
                 "cases": int(np.unique(test.case_id).size), "horizons_s": list(d.horizons_s),
                 "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "over": "cases"},
                 "scorers": [s for s in SCORERS if (s != "oracle" or oracle is not None)
                             and (s != "model" or test.model_events is not None)
                             and (s != "network" or test.network_events is not None)],
                 "events": {}}
    ys, kept_scores = {}, {}
    for j, ev in enumerate(events):
        rows = train.mask[:, j]
        prevalence = float(train.labels[rows, j].mean()) if rows.any() else 0.0
        scores = {"no_skill": np.full(len(test.case_id), prevalence),
                  "rules": test.rules[:, groups.index(ev.of)],
                  "xgboost": xgb_events[:, j]}
        if test.network_events is not None:
            scores = {"network": test.network_events[:, j], **scores}
        if test.model_events is not None:
            scores = {"model": test.model_events[:, j], **scores}
        if oracle is not None:
            scores["oracle"] = oracle[:, j]
        key = f"{ev.of}/{ev.horizon_s}"
        log.info("scoring %s", key)
        doc["events"][key] = {"group": ev.of, "horizon_s": ev.horizon_s} | _event_document(
            test.labels[:, j], test.mask[:, j], test.case_id, test.onset_s[:, j], scores, resamples, seed)
        valid = test.mask[:, j]
        ys[key] = test.labels[valid, j]
        kept_scores[key] = {name: p[valid] for name, p in scores.items()}
    doc["values"] = _value_document(spec, test, test.model_values, xgb_values)
    return DecisionScores(doc, ys, kept_scores)


def event_table(metrics: dict, metric: str = "auprc") -> list[list[str]]:
    """Group x horizon rows (a header row first): windows, prevalence, then each scorer's ``metric``
    ("auprc" or "auroc") with its 95 % interval; with an oracle, the AUPRC table ends with the fraction
    of the gap closed by the model (XGBoost's when there is no model), then a stacked model's network's. No skill is left out: its AUPRC
    is the prevalence and its AUROC 0.5."""
    scorers = [s for s in metrics["scorers"] if s != "no_skill"]
    label = lambda s: SCORER_LABELS.get(s, s)  # noqa: E731  (compare's columns are model labels)
    gap = metric == "auprc" and "oracle" in scorers
    network_gap = gap and "network" in scorers
    rows = [["event", "n", "prev."] + [f"{label(s)} {metric.upper()}" for s in scorers]
            + (["gap closed"] if gap else []) + (["network gap closed"] if network_gap else [])]
    for key, ev in metrics["events"].items():
        if not ev.get("positives"):
            continue
        s = ev["scorers"]
        row = [key, str(ev["n"]), _fmt(ev["prevalence"])]
        row += [_with_ci(s[name][metric], s[name].get(f"{metric}_ci")) for name in scorers]
        if gap:
            # the model's (or in a comparison, the first model's); XGBoost's without a model
            prefer = [s for s in scorers if s not in ("rules", "oracle")] + ["rules"]
            g = next((ev["gap_closed"][s] for s in prefer if s in ev["gap_closed"]), {})
            row.append(_with_ci(g.get("value"), g.get("ci")))
        if network_gap:
            g = ev["gap_closed"].get("network", {})
            row.append(_with_ci(g.get("value"), g.get("ci")))
        rows.append(row)
    return rows


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _with_ci(x, ci) -> str:
    """``0.42 [0.31-0.55]``.

    >>> _with_ci(0.4234, [0.3111, 0.5549]), _with_ci(None, None), _with_ci(-0.05, [-0.2, 0.1])
    ('0.42 [0.31-0.55]', '-', '-0.05 [-0.20-0.10]')
    """
    if x is None:
        return "-"
    if not ci or ci[0] is None:
        return f"{x:.2f}"
    return f"{x:.2f} [{ci[0]:.2f}-{ci[1]:.2f}]"
