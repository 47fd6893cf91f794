"""The evaluation report: comparison tables, PNG figures, ``report.md``, ``report.html``, ``metrics.json``.

The metrics document (built by :func:`metrics_document`, written as ``metrics.json``, read by every
function here) is::

    {
      "split": "test",                       # the evaluated split
      "windows": 1234,                       # N, windows evaluated
      "units": {"Propofol_INF": "mg/kg/h", ...},   # every target, in the spec's order
      "models": {                            # "model" first, then the baselines that were run
        "model":        {target: per-target metrics},
        "persistence":  {...},
        "train_median": {...},
        "xgboost":      {...},
      },
    }

where ``{target: per-target metrics}`` is exactly what :func:`vitalflow.evaluate.metrics.target_metrics`
returns: ``{"tolerance": float, "all": m, "changed": m}`` with
``m = {"n": int, "mae": float|None, "rmse": float|None, "mdape": float|None, "r2": float|None}``,
clinical units (``mdape`` in %). Other top-level keys (a dataset URI, a model id) are kept and
ignored. A model missing from ``models`` is a missing column, not an error.

Figures use matplotlib's object API (``Figure``, never ``pyplot``): no global state, thread-safe,
the Agg renderer behind ``savefig``. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitalflow.evaluate.metrics import target_metrics

MODEL_LABELS = {
    "model": "model",
    "persistence": "persistence",
    "train_median": "train median",
    "xgboost": "XGBoost",
}
"""Known models in column order, with their display names; others follow in the document's order."""

PLOT_POINTS = 4000
"""At most this many windows per model in a scatter panel (evenly spaced, deterministic)."""

DPI = 100


@dataclass(frozen=True)
class CaseTimeline:
    """One test case's targets over time (clinical units), for :func:`timeline_png`."""

    case_id: str
    seconds: np.ndarray  # [N] second of each target from the case start
    actual: np.ndarray  # [N, T]
    predicted: np.ndarray  # [N, T]


def metrics_document(
    split: str,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    persistence: np.ndarray,
    names: Sequence[str],
    infusion_names: Sequence[str],
    ranges: Sequence[tuple[float, float]],
    units: Sequence[str],
) -> dict:
    """The metrics document (module docstring) of every model in ``predictions`` (clinical ``[N, T]``).

    ``persistence`` (clinical units) defines the change windows of all models alike.

    >>> a = np.array([[1.0], [3.0]])
    >>> doc = metrics_document("test", a, {"model": a, "persistence": np.ones((2, 1))}, np.ones((2, 1)),
    ...                        ["HR"], [], [(20.0, 200.0)], ["bpm"])
    >>> doc["windows"], doc["units"], doc["models"]["persistence"]["HR"]["changed"]["mae"]
    (2, {'HR': 'bpm'}, 2.0)
    """
    return {
        "split": split,
        "windows": int(np.shape(actual)[0]),
        "units": dict(zip(names, units, strict=True)),
        "models": {
            name: target_metrics(actual, pred, persistence, names, infusion_names, ranges)
            for name, pred in _ordered(predictions).items()
        },
    }


def _ordered(models: Mapping) -> dict:
    """``models`` with the known ones first, in :data:`MODEL_LABELS` order."""
    known = [m for m in MODEL_LABELS if m in models]
    return {m: models[m] for m in known + [m for m in models if m not in MODEL_LABELS]}


def _label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def _fmt(x) -> str:
    """A metric for a table: 4 significant digits, "-" for None.

    >>> _fmt(0.123456), _fmt(1234.5), _fmt(None), _fmt(3)
    ('0.1235', '1234', '-', '3')
    """
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    return f"{x:.4g}"


def target_names(metrics: dict) -> list[str]:
    """The targets of a metrics document, in order."""
    return list(metrics["units"])


def comparison_table(metrics: dict, kind: str = "all") -> list[list[str]]:
    """MAE of every model per target on ``kind`` ("all" or "changed") windows, as strings.

    The first row is the header: ``target, unit, n, <model>...``; the report and the CLI's printed
    table both use it.

    >>> m = {"n": 4, "mae": 0.5, "rmse": 1.0, "mdape": None, "r2": None}
    >>> doc = {"split": "test", "windows": 4, "units": {"HR": "bpm"},
    ...        "models": {"persistence": {"HR": {"all": m, "changed": m}},
    ...                   "model": {"HR": {"all": {**m, "mae": 0.25}, "changed": m}}}}
    >>> comparison_table(doc)
    [['target', 'unit', 'n', 'model', 'persistence'], ['HR', 'bpm', '4', '0.25', '0.5']]
    """
    if kind not in ("all", "changed"):
        raise ValueError(f"kind must be 'all' or 'changed', got {kind!r}")
    models = _ordered(metrics["models"])
    rows = [["target", "unit", "n"] + [_label(m) for m in models]]
    for name in target_names(metrics):
        cells = [models[m].get(name, {}).get(kind, {}) for m in models]
        n = next((c["n"] for c in cells if "n" in c), None)
        rows.append([name, metrics["units"][name], _fmt(n)] + [_fmt(c.get("mae")) for c in cells])
    return rows


def model_table(metrics: dict, model: str = "model") -> list[list[str]]:
    """Every metric of one model: a row per target and window kind, header first.

    >>> m = {"n": 4, "mae": 0.5, "rmse": 1.0, "mdape": 12.5, "r2": 0.75}
    >>> doc = {"units": {"Propofol_INF": "mg/kg/h"},
    ...        "models": {"model": {"Propofol_INF": {"all": m, "changed": {**m, "n": 1, "r2": None}}}}}
    >>> model_table(doc)[2]
    ['Propofol_INF', 'mg/kg/h', 'changed', '1', '0.5', '1', '12.5', '-']
    """
    rows = [["target", "unit", "windows", "n", "MAE", "RMSE", "MdAPE %", "R²"]]
    per_target = metrics["models"][model]
    for name in target_names(metrics):
        for kind in ("all", "changed"):
            m = per_target[name][kind]
            rows.append(
                [name, metrics["units"][name], kind]
                + [_fmt(m[k]) for k in ("n", "mae", "rmse", "mdape", "r2")]
            )
    return rows


# --- figures ---------------------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    os.replace(tmp, path)
    return path


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return math.ceil(max(n, 1) / cols), cols


def predicted_vs_actual_png(
    path: Path,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    names: Sequence[str],
    units: Sequence[str],
) -> Path:
    """One scatter panel per target: each model's prediction against the actual value, identity line.

    ``actual`` and every prediction are clinical ``[N, T]``; at most :data:`PLOT_POINTS` windows are
    drawn per model. Image size: ``320 * cols`` x ``300 * rows`` pixels (``cols = min(4, T)``).
    """
    actual = np.asarray(actual, dtype=np.float64)
    n = actual.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, PLOT_POINTS)).astype(np.int64)) if n else np.arange(0)
    rows, cols = _grid(len(names))
    fig = _figure(3.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for j, (name, unit) in enumerate(zip(names, units, strict=True)):
        ax = axes[j]
        a = actual[idx, j]
        ordered = _ordered(predictions)
        for k, (model, pred) in enumerate(ordered.items()):  # the first ("model") drawn on top
            ax.scatter(
                a, np.asarray(pred)[idx, j], s=4, alpha=0.4, label=_label(model), zorder=2 + len(ordered) - k
            )
        if a.size:
            lo, hi = float(a.min()), float(a.max())
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="identity")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"actual ({unit})", fontsize=8)
        ax.set_ylabel(f"predicted ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    if len(names):
        axes[0].legend(fontsize=7, markerscale=2)
    fig.suptitle(f"Predicted vs actual ({idx.size} of {n} windows)", fontsize=10)
    return _save(fig, path)


def learning_curves_png(path: Path, history: Mapping[str, Sequence[float]]) -> Path:
    """Every history series (``loss``, ``val_loss``, ...) per epoch; log scale when all positive.

    Image size: 600 x 400 pixels.
    """
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    values = []
    for key, series in history.items():
        y = np.asarray(series, dtype=np.float64)
        ax.plot(np.arange(1, y.size + 1), y, marker="o", markersize=3, label=key)
        values.append(y)
    finite = np.concatenate(values) if values else np.array([])
    finite = finite[np.isfinite(finite)]
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    ax.set_title("Learning curves")
    if history:
        ax.legend()
    return _save(fig, path)


def timeline_png(
    path: Path,
    seconds: np.ndarray,
    actual: np.ndarray,
    predicted: np.ndarray,
    names: Sequence[str],
    units: Sequence[str],
    case_id: str,
) -> Path:
    """One case's targets over time: true values and the model's predictions, a panel per target.

    ``seconds`` [N] is when each target value occurs (from the case start, shown in minutes).
    Image size: 1000 x ``180 * T`` pixels.
    """
    minutes = np.asarray(seconds, dtype=np.float64) / 60.0
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    fig = _figure(10.0, 1.8 * max(len(names), 1))
    axes = fig.subplots(max(len(names), 1), 1, sharex=True, squeeze=False).ravel()
    for j, (name, unit) in enumerate(zip(names, units, strict=True)):
        ax = axes[j]
        ax.plot(minutes, actual[:, j], color="black", linewidth=1.0, label="actual")
        ax.plot(minutes, predicted[:, j], color="tab:red", linewidth=1.0, alpha=0.8, label="model")
        ax.set_ylabel(f"{name}\n({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("minutes from case start")
    fig.suptitle(f"Case {case_id}: targets, actual and predicted", fontsize=10)
    return _save(fig, path)


# --- report.md and report.html ----------------------------------------------------------------------


def _blocks(metrics: dict, images: Sequence[tuple[str, str]]) -> list[tuple]:
    """The report's content once, as ``("h1"|"h2"|"p", text)``, ``("table", rows)``, ``("img", file, alt)``."""
    models = _ordered(metrics["models"])
    tol = {
        name: next((models[m][name].get("tolerance") for m in models if name in models[m]), None)
        for name in target_names(metrics)
    }
    tol_text = ", ".join(f"{n} {_fmt(t)} {u}" for (n, t), u in zip(tol.items(), metrics["units"].values()))
    blocks = [
        ("h1", f"vitalflow evaluation: split {metrics['split']}"),
        (
            "p",
            f"{metrics['windows']} windows; models: {', '.join(_label(m) for m in models)}. "
            "Mean absolute error (MAE) in clinical units, lower is better. Persistence predicts the "
            "target's last value in the window; train median, the median of the training targets; "
            "XGBoost, boosted trees on summaries of the window (last values, recent means and slopes, statics).",
        ),
        ("h2", "MAE, all windows"),
        ("table", comparison_table(metrics, "all")),
        ("h2", "MAE, change windows"),
        (
            "p",
            "Windows whose target moves within the horizon by more than a per-target tolerance "
            f"(a small fraction of the target's range): {tol_text}.",
        ),
        ("table", comparison_table(metrics, "changed")),
    ]
    if "model" in metrics["models"]:
        blocks += [
            ("h2", "Model: all metrics"),
            ("p", "MdAPE: median absolute percentage error over windows with a positive infusion rate."),
            ("table", model_table(metrics, "model")),
        ]
    for file, title in images:
        blocks += [("h2", title), ("img", file, title)]
    return blocks


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            rows = [[c.replace("|", "\\|") for c in row] for row in block[1]]
            lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


def _html(blocks: list[tuple]) -> str:
    e = html.escape
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "table":
            rows = block[1]
            head = "".join(f"<th>{e(c)}</th>" for c in rows[0])
            trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        elif kind == "img":
            body.append(f'<p><img src="{e(block[1])}" alt="{e(block[2])}"></p>')
    title = e(blocks[0][1]) if blocks else "vitalflow evaluation"
    style = (
        "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:3px 8px}"
        "td{text-align:right}td:first-child,td:nth-child(2){text-align:left}th{background:#eee}"
        "img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{style}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_report(
    out_dir: Path,
    metrics: dict,
    actual: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    history: Mapping[str, Sequence[float]] | None = None,
    timeline: CaseTimeline | None = None,
) -> list[Path]:
    """Write the figures, ``report.md``, ``report.html`` and ``metrics.json`` into ``out_dir``.

    ``actual`` and ``predictions`` (model name -> ``[N, T]``) are clinical units, targets in the
    order of ``metrics["units"]``. ``predicted_vs_actual.png`` is always written,
    ``learning_curves.png`` with a ``history``, ``timeline.png`` with a ``timeline``. Returns the
    paths written. ``metrics.json`` refuses NaN (``allow_nan=False``): the document holds None instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = target_names(metrics)
    units = [metrics["units"][n] for n in names]
    metrics_json = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    written = [predicted_vs_actual_png(out_dir / "predicted_vs_actual.png", actual, predictions, names, units)]
    images = [(written[0].name, "Predicted vs actual")]
    if history:
        written.append(learning_curves_png(out_dir / "learning_curves.png", history))
        images.append((written[-1].name, "Learning curves"))
    if timeline is not None:
        written.append(
            timeline_png(
                out_dir / "timeline.png",
                timeline.seconds,
                timeline.actual,
                timeline.predicted,
                names,
                units,
                timeline.case_id,
            )
        )
        images.append((written[-1].name, f"Timeline of case {timeline.case_id}"))
    blocks = _blocks(metrics, images)
    written.append(_write_text(out_dir / "report.md", _markdown(blocks)))
    written.append(_write_text(out_dir / "report.html", _html(blocks)))
    written.append(_write_text(out_dir / "metrics.json", metrics_json))
    return written
