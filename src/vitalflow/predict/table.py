"""A case's prediction timeline: one row per window, as Parquet, CSV and a PNG figure.

Columns (units of each output in the prediction card, and in the Parquet field metadata); a model's
outputs are `output_columns`:

- ``time_s``: a value model: the second the prediction is for (the window's target second); a
  decision model: the window's last second, when the prediction is made (it is about (t, t + H]);
  seconds from the recording start;
- ``time_utc``: the same moment as wall-clock time (UTC; Parquet timestamp, ISO 8601 in the CSV);
- ``<output>_pred``: the model's prediction, in the output's unit: a value model's targets in their
  clinical units; a decision model's calibrated probability that the group's set-points change within
  H seconds (``<group>_<H>s``, unit ``probability``) and each set-point's value at t + H
  (``<setpoint>_<H>s``, in its unit);
- ``<output>_recorded``: what happened: a value recorded at that second (plausible, converted to the
  unit), or whether the group did change (1/0) and the set-point at t + H; NaN (empty in the CSV)
  where nothing was recorded or the label is masked: never an imputed value.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import re
from dataclasses import dataclass

import numpy as np

PARQUET, CSV, PNG = "parquet", "csv", "png"
PROBABILITY = "probability"  # the unit of a decision model's event outputs


def output_name(label: str) -> str:
    """A decision label's output column name: ``event/hypnotic/300`` -> ``hypnotic_300s``.

    >>> output_name("event/hypnotic/300"), output_name("value/PPF_CT/60")
    ('hypnotic_300s', 'PPF_CT_60s')
    """
    _, of, horizon = label.split("/")
    return f"{of}_{horizon}s"


def prediction_labels(card) -> tuple[str, ...]:
    """A decision model's labels that predictions carry: each event, then each value (head order);
    () for a value model."""
    if getattr(card, "task", "values") != "decisions":
        return ()
    return tuple([h.name for h in card.heads if h.task == "event"] + [h.name for h in card.heads if h.task == "value"])


def context_inputs(card) -> tuple[str, ...]:
    """The decision context features a model reads (``setpoints``, ``context``, ...; in its card's inputs)."""
    from vitalflow.model.config import CONTEXT_INPUTS

    return tuple(n for n in card.inputs if n in CONTEXT_INPUTS)


def output_columns(card) -> list[tuple[str, str]]:
    """(name, unit) of what a model predicts per window (a `vitalflow.model.card.ModelCard`): a value
    model's targets; a decision model's event probabilities and set-point values (`output_labels`)."""
    labels = prediction_labels(card)
    if not labels:
        return [(t.name, t.unit) for t in card.targets]
    units = {h.name: h.unit for h in card.heads}
    return [(output_name(n), PROBABILITY if n.startswith("event/") else units[n]) for n in labels]


class _CaseFiles:
    """One object formats and parses a case's file names: ``cases/<caseid>.<parquet|csv|png>``."""

    prefix = "cases"
    _name = re.compile(r"^cases/([0-9]+)\.(parquet|csv|png)$")

    def name(self, case_id: int, kind: str) -> str:
        """A case's file of one kind.

        >>> case_files.name(17, "parquet")
        'cases/17.parquet'
        """
        return f"{self.prefix}/{case_id}.{kind}"

    def parse(self, name: str) -> int | None:
        """The case id of a case file's name (None: not a case file).

        >>> case_files.parse("cases/0017.csv"), case_files.parse("cases/x.parquet")
        (17, None)
        """
        m = self._name.match(name)
        return int(m.group(1)) if m else None


case_files = _CaseFiles()


def iso_utc(unix: float) -> str:
    """Seconds since the epoch as an ISO 8601 UTC time, to the millisecond.

    >>> iso_utc(1700000000.25)
    '2023-11-14T22:13:20.250Z'
    """
    t = _dt.datetime.fromtimestamp(round(unix * 1000) / 1000, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _number(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


@dataclass(frozen=True)
class CaseTable:
    case_id: int
    start_unix: float
    time_s: np.ndarray  # int64 [rows]
    predicted: np.ndarray  # float64 [rows, targets], clinical units
    recorded: np.ndarray  # float64 [rows, targets], NaN where not recorded
    targets: list[tuple[str, str]]  # (name, unit) in the model's order

    @property
    def rows(self) -> int:
        return int(self.time_s.shape[0])

    def columns(self) -> list[str]:
        names = [t for t, _ in self.targets]
        return ["time_s", "time_utc", *(f"{t}_pred" for t in names), *(f"{t}_recorded" for t in names)]

    def parquet(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        millis = np.round((self.start_unix + self.time_s.astype(np.float64)) * 1000).astype(np.int64)
        fields = [pa.field("time_s", pa.int64(), metadata={"unit": "s from the recording start"}),
                  pa.field("time_utc", pa.timestamp("ms", tz="UTC"))]
        arrays = [pa.array(self.time_s.astype(np.int64)), pa.array(millis, pa.timestamp("ms", tz="UTC"))]
        for block, suffix in ((self.predicted, "pred"), (self.recorded, "recorded")):
            for j, (name, unit) in enumerate(self.targets):
                fields.append(pa.field(f"{name}_{suffix}", pa.float64(), metadata={"unit": unit}))
                arrays.append(pa.array(block[:, j], pa.float64()))  # NaN stays NaN (not null)
        schema = pa.schema(fields, metadata={"vitalflow.case_id": str(self.case_id),
                                             "vitalflow.recording_start_utc": iso_utc(self.start_unix)})
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buffer, compression="zstd")
        return buffer.getvalue()

    def csv(self) -> bytes:
        lines = [",".join(self.columns())]
        for i in range(self.rows):
            t = int(self.time_s[i])
            values = [*map(_number, self.predicted[i]), *map(_number, self.recorded[i])]
            lines.append(",".join([str(t), iso_utc(self.start_unix + t), *values]))
        return ("\n".join(lines) + "\n").encode()

    def _panels(self, rows: int, height_in: float):
        """A figure of ``rows`` panels stacked over one hours axis: (figure, axes, hours)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, height_in * rows + 0.8), dpi=80)
        FigureCanvasAgg(fig)
        return fig, fig.subplots(max(rows, 1), 1, sharex=True, squeeze=False)[:, 0], self.time_s / 3600.0

    def _png(self, fig, axes, title: str) -> bytes:
        """Title, the hours axis's label, and the figure as PNG bytes."""
        axes[0].set_title(title, fontsize=9)
        axes[-1].set_xlabel(f"hours from the recording start ({iso_utc(self.start_unix)})", fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()

    def png(self, title: str) -> bytes:
        """Predicted (line) against recorded (dots), one panel per target, hours on the x axis; a
        decision model: `decisions_png`."""
        if any(unit == PROBABILITY for _, unit in self.targets):
            return self.decisions_png(title)
        fig, axes, hours = self._panels(len(self.targets), 1.6)
        for j, (ax, (name, unit)) in enumerate(zip(axes, self.targets)):
            ax.plot(hours, self.predicted[:, j], color="tab:blue", linewidth=1.2, label="predicted")
            seen = ~np.isnan(self.recorded[:, j])
            ax.plot(hours[seen], self.recorded[seen, j], ".", color="tab:orange", markersize=3, label="recorded")
            ax.set_ylabel(f"{name}\n[{unit}]", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0].legend(loc="upper right", fontsize=7, ncols=2)
        return self._png(fig, axes, title)

    def decisions_png(self, title: str) -> bytes:
        """Per group, the alert probabilities at each horizon with the true decisions marked (a tick
        where the group changed within the shortest horizon); below, each set-point's curve (its value
        at t + H for the shortest H, dots) with the predicted value at the longest horizon (line)."""
        names = [n for n, _ in self.targets]
        groups = list(dict.fromkeys(n.rsplit("_", 1)[0] for n, u in self.targets if u == PROBABILITY))
        setpoints = [sp for sp in dict.fromkeys(n.rsplit("_", 1)[0] for n, u in self.targets if u != PROBABILITY)
                     if np.isfinite(self.recorded[:, [j for j, n in enumerate(names) if n.rsplit("_", 1)[0] == sp]]).any()]
        fig, axes, hours = self._panels(len(groups) + len(setpoints), 1.4)
        for ax, group in zip(axes, groups):
            cols = [j for j, n in enumerate(names) if n.rsplit("_", 1)[0] == group]
            for j in cols:
                ax.plot(hours, self.predicted[:, j], linewidth=1.0, label=f"P(change within {names[j].rsplit('_', 1)[1]})")
            first = cols[0]
            decided = self.recorded[:, first] == 1
            ax.plot(hours[decided], np.full(decided.sum(), 1.02), "|", color="black", markersize=8,
                    label=f"changed within {names[first].rsplit('_', 1)[1]}")
            ax.set_ylim(0, 1.08)
            ax.set_ylabel(group, fontsize=8)
            ax.legend(loc="upper right", fontsize=6, ncols=4)
        for ax, sp in zip(axes[len(groups):], setpoints):
            cols = [j for j, n in enumerate(names) if n.rsplit("_", 1)[0] == sp]
            unit = self.targets[cols[0]][1]
            seen = np.isfinite(self.recorded[:, cols[0]])
            ax.plot(hours[seen], self.recorded[seen, cols[0]], ".", color="tab:orange", markersize=2,
                    label=f"set at t + {names[cols[0]].rsplit('_', 1)[1]}")
            ax.plot(hours, self.predicted[:, cols[-1]], color="tab:blue", linewidth=1.0,
                    label=f"predicted for t + {names[cols[-1]].rsplit('_', 1)[1]}")
            ax.set_ylabel(f"{sp}\n[{unit}]", fontsize=8)
            ax.legend(loc="upper right", fontsize=6, ncols=2)
        for ax in axes:
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        return self._png(fig, axes, title)

    def files(self, csv: bool, plots: bool, model_label: str) -> dict[str, bytes]:
        """Output name -> bytes, the Parquet table last (it is what says a case's files exist)."""
        out = {}
        if csv:
            out[case_files.name(self.case_id, CSV)] = self.csv()
        if plots:
            out[case_files.name(self.case_id, PNG)] = self.png(f"case {self.case_id}: {model_label}")
        out[case_files.name(self.case_id, PARQUET)] = self.parquet()
        return out
