"""`load_model`: a model directory as a predictor that answers in clinical units.

::

    predictor = load_model("model")             # a model directory, local or s3://
    predictor.predict(timeseries, static)       # [N, 300, 16], [N, 6] normalized -> [N, 8] in units
    predictor.predict_dataset("out", "test")    # every test window: case, second, predicted, actual
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np

from vitalflow.dataset.reference import Dataset, open_dataset
from vitalflow.errors import ModelError
from vitalflow.model.card import MODEL_FILE, ModelCard, read_model_card
from vitalflow.model.inputs import numpy_batches
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


class Predictor:
    def __init__(self, uri: str, card: ModelCard, model: keras.Model) -> None:
        self.uri, self.card, self.model = uri, card, model

    @cached_property
    def spec(self) -> Spec:
        return self.card.spec.load()

    @property
    def targets(self) -> list[str]:
        return [t.name for t in self.card.targets]

    def predict_normalized(self, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None = None,
                           batch_size: int = 256) -> np.ndarray:
        """Normalized inputs (as the dataset holds them) to normalized targets [N, targets]."""
        inputs = {"timeseries": np.asarray(timeseries, np.float32), "static": np.asarray(static, np.float32)}
        if "mask" in self.card.inputs:
            if mask is None:
                raise ModelError(f"{self.uri}: this model reads the mask channels: pass mask")
            inputs["mask"] = np.asarray(mask, np.float32)
        expected = {"timeseries": (self.card.window_s, len(self.card.timeseries)), "static": (len(self.card.static),)}
        for name, shape in expected.items():
            if inputs[name].ndim != len(shape) + 1 or inputs[name].shape[1:] != shape:
                raise ModelError(f"{name}: expected shape [N, {', '.join(map(str, shape))}], got "
                                 f"{list(inputs[name].shape)}")
        if len(inputs["timeseries"]) == 0:
            return np.zeros((0, len(self.card.targets)), np.float32)
        return self.model.predict(inputs, batch_size=batch_size, verbose=0)

    def predict(self, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """A case's (or any) windows, normalized, to the targets in clinical units [N, targets]."""
        return denormalize_targets(self.predict_normalized(timeseries, static, mask), self.spec)

    def check_dataset(self, dataset: Dataset) -> None:
        if dataset.card.spec.hash != self.card.spec.hash:
            raise ModelError(f"{dataset.uri}: made with spec {dataset.card.spec.name} ({dataset.card.spec.hash}), "
                             f"but model {self.uri} was trained with {self.card.spec.name} ({self.card.spec.hash})")

    def predict_dataset(self, dataset: Dataset | str, split: str = "test", batch_size: int = 256) -> DatasetPredictions:
        dataset = open_dataset(dataset) if isinstance(dataset, str) else dataset
        self.check_dataset(dataset)
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
    return Predictor(store.uri, card, model)
