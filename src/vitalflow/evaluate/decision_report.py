"""The decision evaluation's report: the event table, PR / ROC / reliability curves, report.md and .html.

``metrics.json`` is the document `vitalflow.evaluate.decisions.decision_metrics` builds; the figures
need the scores themselves (not in the document), so they are drawn from the scored windows here.
Figures follow `vitalflow.evaluate.report` (matplotlib's object API, files renamed into place).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vitalflow.evaluate.decisions import SCORER_LABELS, event_table
from vitalflow.evaluate.report import _figure, _grid, _html, _markdown, _save, _write_text, learning_curves_png

ANCHORS = (
    "Published anchors (real patients, other tasks; ours are synthetic unless the dataset is real VitalDB): "
    "Miyaguchi et al., Sci Rep 2021, remifentanil increase within 1 min, AUROC 0.753 (LSTM); "
    "HiRID-ICU-Benchmark (Yeche et al. 2021): LightGBM AUPRC 0.389 against 0.322-0.368 for LSTM, GRU, TCN "
    "and Transformer on circulatory failure."
)


def pr_roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(recall, precision, false positive rate, true positive rate) at every distinct threshold,
    highest first (tied scores move together).

    >>> r, pr, fpr, tpr = pr_roc_points(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.8, 0.1]))
    >>> r.tolist(), pr.tolist(), fpr.tolist(), tpr.tolist()
    ([0.5, 1.0, 1.0], [1.0, 0.6666666666666666, 0.5], [0.0, 0.5, 1.0], [0.5, 1.0, 1.0])
    """
    order = np.argsort(-p, kind="stable")
    y, p = y[order].astype(np.float64), p[order]
    last = np.r_[np.flatnonzero(np.diff(p) != 0), y.size - 1]  # the last window of each tie group
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    pos, neg = max(y.sum(), 1.0), max((1 - y).sum(), 1.0)
    return tp / pos, tp / (tp + fp), fp / neg, tp / pos


def curves_png(path: Path, events: Sequence[str], y: Mapping[str, np.ndarray], scores: Mapping[str, Mapping[str, np.ndarray]],
               kind: str) -> Path:
    """One panel per event: the PR curve (``kind="pr"``) or ROC curve (``"roc"``) of every scorer."""
    rows, cols = _grid(len(events), 3)
    fig = _figure(4.2 * cols, 3.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, events):
        for name, p in scores[key].items():
            if y[key].size == 0 or y[key].min() == y[key].max():
                continue
            recall, precision, fpr, tpr = pr_roc_points(y[key], p)
            if kind == "pr":
                ax.step(recall, precision, where="post", label=SCORER_LABELS.get(name, name))
            else:
                ax.plot(np.r_[0, fpr], np.r_[0, tpr], label=SCORER_LABELS.get(name, name))
        if kind == "pr":
            ax.axhline(float(y[key].mean()) if y[key].size else 0, color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("recall"), ax.set_ylabel("precision")
        else:
            ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate")
        ax.set_title(key, fontsize=9)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    for ax in axes[len(events):]:
        ax.set_visible(False)
    return _save(fig, path)


def reliability_png(path: Path, metrics: dict, events: Sequence[str]) -> Path:
    """Observed fraction of decisions against the mean predicted probability, 10 bins, per event."""
    rows, cols = _grid(len(events), 3)
    fig = _figure(4.2 * cols, 3.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, events):
        for name, s in metrics["events"][key]["scorers"].items():
            if name in ("rules", "no_skill"):
                continue
            rel = s["reliability"]
            pts = [(m, o) for m, o, c in zip(rel["mean_predicted"], rel["observed"], rel["count"]) if c and m is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=f"{SCORER_LABELS.get(name, name)} (ECE "
                        f"{s['ece']:.3f})" if s.get("ece") is not None else SCORER_LABELS.get(name, name))
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("predicted probability"), ax.set_ylabel("observed fraction")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    for ax in axes[len(events):]:
        ax.set_visible(False)
    return _save(fig, path)


def value_table(metrics: dict) -> list[list[str]]:
    values = metrics.get("values", {})
    found = dict.fromkeys(k[:-4] for v in values.values() for k in v["all"] if k.endswith("_mae"))
    scorers = [s for s in dict.fromkeys(("model", *found)) if s in found]  # the model first, then as found
    rows = [["set-point/H", "unit", "n all"] + [f"{s} MAE all" for s in scorers] + ["n changed"] +
            [f"{s} MAE changed" for s in scorers]]
    for key, v in values.items():
        row = [key, v["unit"], str(v["all"]["n"])]
        row += [_f(v["all"].get(f"{s}_mae")) for s in scorers]
        row += [str(v["changed"]["n"])] + [_f(v["changed"].get(f"{s}_mae")) for s in scorers]
        rows.append(row)
    return rows


def _f(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def write_decision_report(out_dir: Path, metrics: dict, y: Mapping[str, np.ndarray],
                          scores: Mapping[str, Mapping[str, np.ndarray]],
                          history: Mapping[str, Sequence[float]] | None = None) -> list[Path]:
    """The figures, ``report.md``, ``report.html`` and ``metrics.json`` (NaN refused) in ``out_dir``.

    ``y[event]`` and ``scores[event][scorer]`` are the valid windows of each event key
    (``<group>/<H>``) of ``metrics["events"]``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    shown = [k for k, ev in metrics["events"].items() if ev.get("positives")]
    middle = sorted(metrics["horizons_s"])[len(metrics["horizons_s"]) // 2]
    at_middle = [k for k in shown if metrics["events"][k]["horizon_s"] == middle]
    written, images = [], []
    if at_middle:
        written.append(curves_png(out_dir / "pr_curves.png", at_middle, y, scores, "pr"))
        images.append((written[-1].name, f"Precision-recall curves at {middle} s"))
        written.append(curves_png(out_dir / "roc_curves.png", at_middle, y, scores, "roc"))
        images.append((written[-1].name, f"ROC curves at {middle} s"))
        written.append(reliability_png(out_dir / "reliability.png", metrics, at_middle))
        images.append((written[-1].name, f"Reliability at {middle} s"))
    if history:
        written.append(learning_curves_png(out_dir / "learning_curves.png", history))
        images.append((written[-1].name, "Learning curves"))
    b = metrics["bootstrap"]
    blocks = [
        ("h1", f"vitalflow decision evaluation: split {metrics['split']}"),
        ("p", f"{metrics['windows']} windows of {metrics['cases']} cases. An event is a change of a set-point of "
              "the group within the horizon; windows whose label is masked (imputed set-point, device gap, past "
              f"the anaesthesia) are left out. Intervals: {int(b['level'] * 100)} % bootstrap over cases "
              f"({b['resamples']} resamples, seed {b['seed']}). Gap closed: (model - no skill) / (oracle - no skill) "
              "on AUPRC."),
        ("table", event_table(metrics, "auprc")),
        ("table", event_table(metrics, "auroc")),
        ("h2", "Alerts at a budget of one per 10 minutes"),
        ("table", budget_table(metrics)),
        ("h2", "Set-point values (MAE in the set-point's unit)"),
        ("p", "all: every window with a valid value label; changed: the windows where the set-point changed "
              "within the horizon. Persistence predicts the set-point's value at the window's end."),
        ("table", value_table(metrics)),
        ("p", ANCHORS),
    ]
    for file, title in images:
        blocks += [("h2", title), ("img", file, title)]
    written.append(_write_text(out_dir / "report.md", _markdown(blocks)))
    written.append(_write_text(out_dir / "report.html", _html(blocks)))
    written.append(_write_text(out_dir / "metrics.json", text))
    return written


def budget_table(metrics: dict) -> list[list[str]]:
    scorers = [s for s in metrics["scorers"] if s != "no_skill"]
    rows = [["event"] + [f"{SCORER_LABELS.get(s, s)} recall / precision / lead s" for s in scorers]]
    for key, ev in metrics["events"].items():
        if not ev.get("positives"):
            continue
        row = [key]
        for s in scorers:
            e = ev["scorers"][s]
            row.append(f"{_f(e['recall_at_budget'])} / {_f(e['precision_at_budget'])} / {_f(e['median_lead_s'])}")
        rows.append(row)
    return rows
