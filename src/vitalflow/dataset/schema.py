"""The example schema: one definition of every feature of a ``tf.train.Example`` (one per window).

From `FEATURES` come the encoder's features and dtypes (`vitalflow.dataset.examples`), what verify
expects of each decoded example (`ExampleSchema.sizes`, `ExampleSchema.dtypes`, value ranges), the
card's ``example_schema``, a TensorFlow parse spec (`ExampleSchema.parse_spec`, as data: this
package never imports TensorFlow; `ExampleSchema.tf_features` builds it with a ``tf`` handed in)
and README's "read it with TensorFlow" snippet (`tensorflow_snippet`).

>>> from vitalflow.spec import load_config
>>> config, spec = load_config()
>>> schema = example_schema(spec, config)
>>> schema.parse_spec()["timeseries"], schema.parse_spec()["subject_id"]
(([4800], 'float32'), ([1], 'string'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
from pydantic import RootModel, model_serializer

from vitalflow.dataset.naming import NAMES
from vitalflow.dataset.record import Record
from vitalflow.spec.model import Config, Spec

Dtype = Literal["float32", "int64", "string"]
_NUMPY = {"float32": np.float32, "int64": np.int64}


@dataclass(frozen=True)
class Dims:
    """The sizes a spec and config give the features."""

    length: int  # seconds per window
    features: int  # time-series features
    static: int
    targets: int
    labels: int = 0  # decision labels (`vitalflow.spec.model.Decisions.labels`)
    events: int = 0  # of which events (group x horizon)
    setpoints: int = 0
    history_steps: int = 0  # the decision context (`vitalflow.spec.model.Context`)
    context: int = 0


@dataclass(frozen=True)
class FeatureDefinition:
    name: str
    dtype: Dtype
    dims: Callable[[Dims], tuple[int, ...]]  # as a model sees it; written flat (C order)
    meaning: str
    per_window: bool  # differs between the windows of a case (else one value for all of them)
    values: Literal["normalized", "0/1"] | None = None  # normalized: finite, in [-1, 1]
    layout: str | None = None
    option: str | None = None  # the `Output` flag that must be on for the feature to be written
    decisions: bool = False  # written only when the spec has decision targets
    context: str | None = None  # ... and its `Context` flag ("history", "time_since") is on

    def cast(self, value: Any) -> Any:
        """A value as the encoder writes this feature: a numpy array of its dtype, or bytes."""
        return [v if isinstance(v, bytes) else str(v).encode() for v in value] if self.dtype == "string" \
            else np.asarray(value, dtype=_NUMPY[self.dtype])


FEATURES: tuple[FeatureDefinition, ...] = (
    FeatureDefinition("timeseries", "float32", lambda d: (d.length, d.features),
                      "normalized time-series features, in spec order", True, "normalized",
                      layout="time-major: value of feature f at second t is at t * n_features + f"),
    FeatureDefinition("static", "float32", lambda d: (d.static,), "normalized static features, in spec order",
                      False, "normalized"),
    FeatureDefinition("target", "float32", lambda d: (d.targets,),
                      "normalized targets at the window's last second + windows.horizon_s", True, "normalized"),
    FeatureDefinition("case_id", "int64", lambda d: (1,), "VitalDB caseid", False),
    FeatureDefinition("subject_id", "string", lambda d: (1,), "VitalDB subjectid (case-<caseid> without one)",
                      False),
    FeatureDefinition("window_start_s", "int64", lambda d: (1,), "seconds from the recording start", True),
    FeatureDefinition("mask", "float32", lambda d: (d.length, d.features), "1 = recorded, 0 = filled or defaulted",
                      True, "0/1", option="write_mask"),
    FeatureDefinition("labels", "float32", lambda d: (d.labels,),
                      "decision labels in the card's `labels` order: event and direction 0/1, value normalized; "
                      "0 where label_mask is 0", True, "normalized", decisions=True),
    FeatureDefinition("label_mask", "float32", lambda d: (d.labels,), "1 = the label is valid, 0 = masked "
                      "(its set-point imputed, in a device gap or after the anaesthesia)", True, "0/1", decisions=True),
    FeatureDefinition("event_onset_s", "float32", lambda d: (d.events,),
                      "seconds from the window's last second to the group's first change (0: none)", True,
                      decisions=True),
    FeatureDefinition("setpoints", "float32", lambda d: (d.setpoints,),
                      "each set-point at the window's last second, normalized with its range (0 where unknown), "
                      "in spec order", True, "normalized", decisions=True),
    FeatureDefinition("setpoints_known", "float32", lambda d: (d.setpoints,),
                      "1 = the set-point is known at the window's last second", True, "0/1", decisions=True),
    FeatureDefinition("history", "float32", lambda d: (d.history_steps, d.features),
                      "the normalized time-series features over the spec's context.history_s before the window's "
                      "end, one mean per history_step_s, oldest first (before the crop: its first second)", True,
                      "normalized", layout="time-major, like timeseries", decisions=True, context="history"),
    FeatureDefinition("context", "float32", lambda d: (d.context,),
                      "seconds since each set-point last changed (0..3600 -> -1..1; never: 1), in spec order, then "
                      "seconds since anestart (0..4 h -> -1..1)", True, "normalized", decisions=True,
                      context="time_since"),
)
DEFINITION = {f.name: f for f in FEATURES}


#: The version of the examples' features: 2 added the decision labels (``labels``, ``label_mask``,
#: ``event_onset_s``) and the set-points' current values (``setpoints``, ``setpoints_known``). A dataset card without ``example_schema_version`` holds version 1.
EXAMPLE_SCHEMA_VERSION = 2


def written_features(write_mask: bool, decisions=None) -> list[FeatureDefinition]:
    """The features an example holds under ``output.write_mask`` and a spec's decisions (a
    `vitalflow.spec.model.Decisions`, or None)."""
    flags = {"write_mask": write_mask}
    context = {"history": bool(decisions and decisions.context.history_steps),
               "time_since": bool(decisions and decisions.context.time_since)}
    return [f for f in FEATURES if (f.option is None or flags[f.option]) and (decisions or not f.decisions)
            and (f.context is None or context[f.context])]


class FeatureSchema(Record):
    """One feature as the card describes it."""

    dtype: Dtype
    shape: list[int]  # as written: a flat list of this many values
    reshape: list[int] | None = None  # the shape a model sees
    layout: str | None = None
    meaning: str | None = None  # None: written by card format 1

    @model_serializer(mode="wrap")
    def _without_none(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class ExampleSchema(RootModel[dict[str, FeatureSchema]]):
    """Feature name -> `FeatureSchema`, in `FEATURES` order (the card's ``example_schema``)."""

    model_config = {"frozen": True}

    def __getitem__(self, name: str) -> FeatureSchema:
        return self.root[name]

    def __iter__(self):
        return iter(self.root)

    def items(self):
        return self.root.items()

    def sizes(self) -> dict[str, int]:
        """Values per feature."""
        return {name: f.size for name, f in self.root.items()}

    def dtypes(self) -> dict[str, str]:
        return {name: f.dtype for name, f in self.root.items()}

    def with_values(self, kind: str) -> list[str]:
        """The features whose values are ``kind`` ("normalized" or "0/1")."""
        return [n for n in self.root if n in DEFINITION and DEFINITION[n].values == kind]

    def parse_spec(self) -> dict[str, tuple[list[int], str]]:
        """A TensorFlow parse spec as data: name -> (shape, dtype name) of a ``FixedLenFeature``."""
        return {name: (list(f.shape), f.dtype) for name, f in self.root.items()}

    def tf_features(self, tf: Any) -> dict[str, Any]:
        """The ``tf.io.FixedLenFeature`` of each feature, for ``tf.io.parse_single_example``;
        ``tf`` is the tensorflow module (the caller's import, never this package's)."""
        return {name: tf.io.FixedLenFeature(shape, getattr(tf, dtype)) for name, (shape, dtype) in self.parse_spec().items()}


def dims(spec: Spec, config: Config) -> Dims:
    d = spec.decisions
    return Dims(config.windows.length_s, len(spec.timeseries), len(spec.static), len(spec.targets),
                len(d.labels) if d else 0, len(d.events) if d else 0, len(d.setpoints) if d else 0,
                d.context.history_steps if d else 0, len(d.setpoints) + 1 if d else 0)


def example_schema(spec: Spec, config: Config) -> ExampleSchema:
    """The schema of the examples a run with ``spec`` and ``config`` writes."""
    d = dims(spec, config)
    schema = {}
    for f in written_features(config.output.write_mask, spec.decisions):
        shape = f.dims(d)
        schema[f.name] = FeatureSchema(dtype=f.dtype, shape=[int(np.prod(shape))],
                                       reshape=list(shape) if len(shape) > 1 else None, layout=f.layout,
                                       meaning=f.meaning)
    return ExampleSchema(schema)


def tensorflow_snippet(schema: ExampleSchema, compression: str, output: str = "out", split: str = "train") -> str:
    """README's "read it with TensorFlow" code: parse the float features, reshape the time series,
    batch the parts of a split.

    >>> from vitalflow.spec import load_config
    >>> config, spec = load_config()
    >>> print(tensorflow_snippet(example_schema(spec, config), "GZIP").splitlines()[1])
    F = {"timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
    """

    def shape(f: FeatureSchema) -> str:
        return f"[{' * '.join(map(str, f.reshape or f.shape))}]"

    floats = [(name, f) for name, f in schema.items() if f.dtype == "float32"]
    entries = [f'"{name}": tf.io.FixedLenFeature({shape(f)}, tf.{f.dtype})' for name, f in floats]
    series = schema["timeseries"]
    files = f'tf.io.gfile.glob("{output}/{NAMES.part_glob(split, compression)}")'
    compressed = ', compression_type="GZIP"' if compression == "GZIP" else ""
    return "\n".join([
        "import tensorflow as tf",
        "F = {" + ",\n     ".join(entries) + "}",
        "def parse(record):",
        "    ex = tf.io.parse_single_example(record, F)",
        f'    return (tf.reshape(ex["timeseries"], {list(series.reshape or series.shape)}), ex["static"]), ex["target"]',
        f"{split} = tf.data.TFRecordDataset({files}{compressed})",
        f"{split} = {split}.map(parse).batch(64)",
    ]) + "\n"
