"""`load_model`: a model directory as a predictor that answers in clinical units.

A value model (card ``task: values``)::

    predictor = load_model("model")             # a model directory, local or s3://
    predictor.predict(timeseries, static)       # [N, 300, 16], [N, 6] normalized -> [N, 8] in units
    predictor.predict_dataset("out", "test")    # every test window: case, second, predicted, actual

A decision model (card ``task: decisions``)::

    d = predictor.predict_decisions(timeseries, static)   # -> DecisionPredictions
    d.event_probability                         # [N, events] calibrated P(the group changes within H)
    d["event/hypnotic/300"]                     # [N], any label by name
    d.direction_probability                     # [N, directions] calibrated P(up | a change)
    d.value                                     # [N, values] set-points at t + H, in their units
    predictor.predict_dataset("out", "test")    # -> DecisionDatasetPredictions: the above per window
                                                #    with case_id, window_start_s and the truth

Probabilities are ``sigmoid(logit / T)`` with the label's temperature from the card's calibration;
a stacked model's (card ``stack``) event probabilities are the stack's (`vitalflow.model.stack`): the
network's blended with its XGBoost classifiers' on the window summaries and the set-points, so they
need the windows, not only the network's output (`boosted_probabilities`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np

from vitalflow.dataset.reference import Dataset, open_dataset
from vitalflow.errors import ModelError
from vitalflow.model.boosted import BOOSTED_DIR, EventBoosters, boosted_inputs
from vitalflow.model.calibration import apply_temperatures
from vitalflow.model.card import MODEL_FILE, ModelCard, read_model_card
from vitalflow.model.config import CONTEXT_INPUTS
from vitalflow.model.heads import Heads
from vitalflow.model.inputs import numpy_batches
from vitalflow.model.stack import stacked
from vitalflow.model.value_gates import gated, value_pairs
from vitalflow.spec.model import Spec
from vitalflow.store import Store
from vitalflow.transform.normalize import denormalize_targets

#: Importing the network module registers its loss with Keras, which the saved model names.
from vitalflow.model import network as _network  # noqa: F401


@dataclass(frozen=True)
class DatasetPredictions:
    """A split's windows in dataset order: what the model said and what happened (clinical units)."""

    case_id: np.ndarray  # [N]
    window_start_s: np.ndarray  # [N]
    predicted: np.ndarray  # [N, targets]
    actual: np.ndarray  # [N, targets]
    last_value: np.ndarray  # [N, targets]: each target's value at the window's last second (persistence)


@dataclass(frozen=True)
class DecisionPredictions:
    """What a decision model says about N windows (names in the card's head order)."""

    event_names: tuple[str, ...]  # "event/<group>/<H>"
    event_probability: np.ndarray  # [N, events]: calibrated P(a set-point of the group changes within H s)
    direction_names: tuple[str, ...]  # "direction/<setpoint>/<H>"
    direction_probability: np.ndarray  # [N, directions]: calibrated P(its first change goes up | it changes)
    value_names: tuple[str, ...]  # "value/<setpoint>/<H>"
    value: np.ndarray  # [N, values]: the set-point at t + H in its clinical unit (`value_units`)
    value_units: tuple[str, ...]
    value_normalized: np.ndarray  # [N, values]: the values normalized as the dataset holds them
    raw: np.ndarray  # [N, labels]: the network's output (logits, normalized values) in head order
    network_event_probability: np.ndarray  # [N, events]: the network's alone (= event_probability unless stacked)

    def __getitem__(self, name: str) -> np.ndarray:
        """One label's column [N] by name: a probability (event, direction) or a value in units."""
        for names, values in ((self.event_names, self.event_probability),
                              (self.direction_names, self.direction_probability), (self.value_names, self.value)):
            if name in names:
                return values[:, names.index(name)]
        raise KeyError(name)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Every label name -> its column [N], in head order of the tasks (events, directions, values)."""
        return {n: self[n] for n in (*self.event_names, *self.direction_names, *self.value_names)}


@dataclass(frozen=True)
class DecisionDatasetPredictions(DecisionPredictions):
    """A split's windows in dataset order: the predictions and the truth to score them with."""

    case_id: np.ndarray = None  # [N]
    window_start_s: np.ndarray = None  # [N]
    label_names: tuple[str, ...] = ()  # the columns of labels and label_mask (the heads' order)
    labels: np.ndarray = None  # [N, labels]: event/direction 0/1, value normalized (as the dataset holds them)
    label_mask: np.ndarray = None  # [N, labels]: 1 = valid
    event_onset_s: np.ndarray = None  # [N, events]: seconds from the window's end to the group's first change


class Predictor:
    def __init__(self, uri: str, card: ModelCard, model: keras.Model, boosters: EventBoosters | None = None) -> None:
        self.uri, self.card, self.model, self.boosters = uri, card, model, boosters

    @cached_property
    def spec(self) -> Spec:
        return self.card.spec.load()

    @property
    def targets(self) -> list[str]:
        return [t.name for t in self.card.targets]

    @property
    def task(self) -> str:
        return self.card.task

    @cached_property
    def heads(self) -> Heads:
        """The decision model's outputs (`vitalflow.model.heads`)."""
        if self.card.task != "decisions":
            raise ModelError(f"{self.uri}: a value model (task: values) has no decision heads: use predict")
        return Heads.from_card(self.card.heads)

    @cached_property
    def temperatures(self) -> np.ndarray:
        """Per logit column (`Heads.calibrated` order): its temperature (1 without a calibration)."""
        fitted = self.card.calibration.temperatures if self.card.calibration else {}
        return np.array([fitted.get(self.heads.names[i], 1.0) for i in self.heads.calibrated], dtype=np.float64)

    def _outputs(self) -> int:
        return len(self.card.heads) if self.card.task == "decisions" else len(self.card.targets)

    @cached_property
    def context_shapes(self) -> dict[str, tuple[int, ...]]:
        """The decision context's inputs this model reads (``CONTEXT_INPUTS`` in its card's ``inputs``):
        name -> the shape of one window's values (its input layer's)."""
        return {n: tuple(self.model.get_layer(n).output.shape[1:]) for n in self.card.inputs if n in CONTEXT_INPUTS}

    def network_inputs(self, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None = None,
                       context: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The network's input dict of normalized windows (as the dataset holds them), checked:
        ``mask`` when the model reads it, ``context`` (the decision context's example features by
        name, flat or shaped) when it reads that."""
        inputs = {"timeseries": np.asarray(timeseries, np.float32), "static": np.asarray(static, np.float32)}
        if "mask" in self.card.inputs:
            if mask is None:
                raise ModelError(f"{self.uri}: this model reads the mask channels: pass mask")
            inputs["mask"] = np.asarray(mask, np.float32)
        missing = [n for n in self.context_shapes if n not in (context or {})]
        if missing:
            raise ModelError(f"{self.uri}: this model reads the decision context: pass context with "
                             f"{', '.join(missing)} (the example features of that name)")
        for name, shape in self.context_shapes.items():
            inputs[name] = np.asarray(context[name], np.float32)
            if inputs[name].shape[1:] != shape:
                inputs[name] = inputs[name].reshape(-1, *shape)
        expected = {"timeseries": (self.card.window_s, len(self.card.timeseries)), "static": (len(self.card.static),)}
        for name, shape in expected.items():
            if inputs[name].ndim != len(shape) + 1 or inputs[name].shape[1:] != shape:
                raise ModelError(f"{name}: expected shape [N, {', '.join(map(str, shape))}], got "
                                 f"{list(inputs[name].shape)}")
        return inputs

    def predict_normalized(self, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None = None,
                           batch_size: int = 256, context: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Normalized inputs (`network_inputs`) to the raw output: normalized targets [N, targets]
        (values), or logits and normalized values [N, labels] (decisions)."""
        inputs = self.network_inputs(timeseries, static, mask, context)
        if len(inputs["timeseries"]) == 0:
            return np.zeros((0, self._outputs()), np.float32)
        return self.model.predict(inputs, batch_size=batch_size, verbose=0)

    def predict(self, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """A case's (or any) windows, normalized, to the targets in clinical units [N, targets]."""
        if self.card.task == "decisions":
            raise ModelError(f"{self.uri}: a decision model (task: decisions) predicts no 30 s values: use "
                             "predict_decisions")
        return denormalize_targets(self.predict_normalized(timeseries, static, mask), self.spec)

    def boosted_probabilities(self, timeseries: np.ndarray, static: np.ndarray,
                              context: Mapping[str, np.ndarray] | None) -> np.ndarray | None:
        """A stacked model's XGBoost event probabilities [N, events] of the windows (normalized, with
        the decision context's ``setpoints`` and ``setpoints_known``); None for any other model."""
        if self.boosters is None:
            return None
        return self.boosters.predict(boosted_inputs(timeseries, static, self._setpoints_now(context, "a stacked model")))

    @cached_property
    def _stack(self) -> tuple[list[float], list[tuple[float, float]]]:
        """The stack's per event network weights and Platt ``(a, b)`` (card ``stack``)."""
        return [e.network_weight for e in self.card.stack.events], [e.platt for e in self.card.stack.events]

    @cached_property
    def _value_gates(self) -> tuple[list[int], list[int], list[float]] | None:
        """Per value label its set-point's column, its group's event column and its threshold (card
        ``value_gates``), or None."""
        gates = self.card.value_gates
        if gates is None:
            return None
        index, event = value_pairs(self.spec, self.heads)
        return index, event, [gates.thresholds[n] for n in self.heads.names_of("value")]

    def _setpoints_now(self, context: Mapping[str, np.ndarray] | None, who: str) -> Mapping[str, np.ndarray]:
        """``context``, checked to hold the windows' ``setpoints`` and ``setpoints_known``."""
        if not context or any(n not in context for n in ("setpoints", "setpoints_known")):
            raise ModelError(f"{self.uri}: {who} reads the set-points now: pass context with setpoints and "
                             "setpoints_known")
        return context

    def decisions_from_raw(self, raw: np.ndarray, boosted: np.ndarray | None = None,
                           context: Mapping[str, np.ndarray] | None = None) -> DecisionPredictions:
        """The network's raw output [N, labels] as calibrated probabilities and values in units;
        ``boosted``: a stacked model's `boosted_probabilities` of the same windows (required then);
        ``context``: their ``setpoints`` and ``setpoints_known`` (required by a model with value gates)."""
        heads = self.heads
        raw = np.asarray(raw, np.float32)
        probability = apply_temperatures(raw, heads.calibrated, self.temperatures)
        by_column = {int(c): j for j, c in enumerate(heads.calibrated)}
        events, directions, values = heads.indices("event"), heads.indices("direction"), heads.indices("value")
        network = probability[:, [by_column[int(c)] for c in events]]
        event_probability = network
        if self.boosters is not None:
            if boosted is None or boosted.shape != network.shape:
                raise ModelError(f"{self.uri}: a stacked model's events need its boosters' probabilities of the same "
                                 "windows (boosted_probabilities)")
            event_probability = stacked(network, boosted, *self._stack)
        value = raw[:, values].astype(np.float64)
        if self._value_gates is not None:
            context = self._setpoints_now(context, "a model with value gates")
            index, event, thresholds = self._value_gates
            value = gated(value, np.asarray(context["setpoints"], np.float64)[:, index],
                          np.asarray(context["setpoints_known"])[:, index] > 0.5, event_probability[:, event],
                          thresholds)
        return DecisionPredictions(
            event_names=heads.names_of("event"),
            event_probability=event_probability,
            direction_names=heads.names_of("direction"),
            direction_probability=probability[:, [by_column[int(c)] for c in directions]],
            value_names=heads.names_of("value"),
            value=heads.denormalize_values(value),
            value_normalized=value,
            value_units=tuple(heads.units[i] or "" for i in values),
            raw=raw, network_event_probability=network)

    def predict_decisions(self, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None = None,
                          context: dict[str, np.ndarray] | None = None) -> DecisionPredictions:
        """A case's (or any) windows, normalized as the dataset holds them ([N, 300, 16], [N, 6] and,
        for a model that reads it, the decision context: ``setpoints``, ``setpoints_known``,
        ``context``, ``history`` by name), to the decision model's calibrated probabilities and
        set-point values in clinical units."""
        raw = self.predict_normalized(timeseries, static, mask, context=context)
        return self.decisions_from_raw(raw, self.boosted_probabilities(timeseries, static, context), context)

    def check_dataset(self, dataset: Dataset) -> None:
        if dataset.card.spec.hash != self.card.spec.hash:
            raise ModelError(f"{dataset.uri}: made with spec {dataset.card.spec.name} ({dataset.card.spec.hash}), "
                             f"but model {self.uri} was trained with {self.card.spec.name} ({self.card.spec.hash})")

    def predict_dataset(self, dataset: Dataset | str, split: str = "test", batch_size: int = 256
                        ) -> DatasetPredictions | DecisionDatasetPredictions:
        """Every window of ``split`` in the dataset's order, with the truth: `DatasetPredictions` of
        a value model, `DecisionDatasetPredictions` of a decision model."""
        dataset = open_dataset(dataset) if isinstance(dataset, str) else dataset
        self.check_dataset(dataset)
        if self.card.task == "decisions":
            return self._predict_decisions_dataset(dataset, split, batch_size)
        names = [*self.card.inputs, "target", "case_id", "window_start_s"]
        indices = list(self.spec.target_indices)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("case_id", "window_start_s", "predicted", "actual",
                                                               "last_value")}
        for batch in numpy_batches(dataset, split, names, batch_size):
            parts["predicted"].append(self.predict_normalized(batch["timeseries"], batch["static"], batch.get("mask")))
            parts["actual"].append(batch["target"])
            parts["last_value"].append(batch["timeseries"][:, -1, indices])
            parts["case_id"].append(batch["case_id"])
            parts["window_start_s"].append(batch["window_start_s"])
        if not parts["actual"]:
            raise ModelError(f"{dataset.uri}: the {split} split has no windows")
        joined = {k: np.concatenate(v) for k, v in parts.items()}
        for k in ("predicted", "actual", "last_value"):
            joined[k] = denormalize_targets(joined[k], self.spec)
        return DatasetPredictions(**joined)

    def _predict_decisions_dataset(self, dataset: Dataset, split: str, batch_size: int) -> DecisionDatasetPredictions:
        truth = ("labels", "label_mask", "event_onset_s")
        missing = [n for n in truth if n not in dataset.example_schema.root]
        if missing:
            raise ModelError(f"{dataset.uri}: its examples hold no decision labels ({', '.join(missing)}; example "
                             f"schema version {dataset.card.get('example_schema_version', 1)}): preprocess the "
                             "recordings again")
        names = [*self.card.inputs, *truth, "case_id", "window_start_s"]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("raw", "boosted", "setpoints", "setpoints_known", *truth,
                                                               "case_id", "window_start_s")}
        for batch in numpy_batches(dataset, split, names, batch_size):
            context = {n: batch[n] for n in self.card.inputs if n in CONTEXT_INPUTS}
            parts["raw"].append(self.predict_normalized(batch["timeseries"], batch["static"], batch.get("mask"),
                                                        context=context))
            if self.boosters is not None:
                parts["boosted"].append(self.boosted_probabilities(batch["timeseries"], batch["static"], context))
            for k in ("setpoints", "setpoints_known"):
                if k in context:
                    parts[k].append(context[k])
            for k in (*truth, "case_id", "window_start_s"):
                parts[k].append(batch[k])
        if not parts["raw"]:
            raise ModelError(f"{dataset.uri}: the {split} split has no windows")
        joined = {k: np.concatenate(v) for k, v in parts.items() if v}
        context = {k: joined.pop(k) for k in ("setpoints", "setpoints_known") if k in joined}
        predicted = self.decisions_from_raw(joined.pop("raw"), joined.pop("boosted", None), context)
        return DecisionDatasetPredictions(**vars(predicted), label_names=self.heads.names, **joined)


def load_model(uri: str | os.PathLike) -> Predictor:
    """The model directory at ``uri`` (local or s3://) as a `Predictor`."""
    uri = str(uri)
    card = read_model_card(uri)
    store = Store(uri)
    try:
        if store.is_local:
            model = keras.models.load_model(store.local_path(MODEL_FILE), compile=False)
        else:
            with tempfile.TemporaryDirectory(prefix="vitalflow-model-") as temp:
                path = Path(temp) / MODEL_FILE
                path.write_bytes(store.read_bytes(MODEL_FILE))
                model = keras.models.load_model(path, compile=False)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{store.url(MODEL_FILE)}: unreadable Keras model ({str(exc).splitlines()[0]})") from None
    boosters = None
    if card.stack is not None:
        saved = [e.booster for e in card.stack.events]
        try:
            boosters = EventBoosters.load(store, saved)
        except (ValueError, OSError) as exc:  # a corrupt file: xgboost's XGBoostError is a ValueError
            raise ModelError(f"{store.uri}: unreadable XGBoost booster in {BOOSTED_DIR}/ "
                             f"({str(exc).splitlines()[0]})") from None
    return Predictor(store.uri, card, model, boosters)
