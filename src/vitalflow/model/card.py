"""The model card (``model_card.json``): what a model directory holds and everything it was made
from, so that a prediction can be traced to recordings, spec, dataset and config.

A model directory (laid out as SageMaker expects ``/opt/ml/model``)::

    model.keras          the Keras model (load with ``compile=False``: inference needs no loss)
    export/              the same network as a TensorFlow SavedModel (TF Serving, ``tf.saved_model.load``)
    model_card.json      this card; written last, so a directory with a card is complete

The card pins the whole spec (``spec.content``): predicting transforms recordings with the spec the
model was trained on, never with whatever spec is installed.
"""

from __future__ import annotations

from typing import Any

from vitalflow.dataset.record import Record
from vitalflow.errors import ModelError
from vitalflow.spec.model import Spec
from vitalflow.store import Store

CARD_NAME = "model_card.json"
MODEL_FILE = "model.keras"
EXPORT_DIR = "export"
MODEL_CARD_FORMAT = "vitalflow-model/1"
#: The files (besides the card) a complete model directory holds.
REQUIRED = (MODEL_FILE, f"{EXPORT_DIR}/saved_model.pb")


class Tool(Record):
    name: str
    version: str
    tensorflow: str
    keras: str


class SpecPin(Record):
    name: str
    version: int
    hash: str
    content: dict[str, Any]  # the spec itself (``Spec.model_dump(mode="json")``)

    def load(self) -> Spec:
        return Spec.model_validate(self.content)


class DatasetRef(Record):
    uri: str
    fingerprint: str
    config_hash: str  # the preprocessing config's hash (dataset card)
    windows: dict[str, int]  # per split


class Feature(Record):
    name: str
    unit: str
    range: tuple[float, float]  # normalization: [lo, hi] -> [-1, 1]


class Training(Record):
    epochs_run: int
    best_epoch: int  # 1-based: the weights the model holds
    stopped_early: bool
    resumed: int  # how many times the run resumed from a checkpoint
    seconds: float  # wall time of the epochs, summed over resumes
    history: dict[str, list[float]]  # per epoch: loss, mae, val_loss, val_mae


class ModelCard(Record):
    format: str = MODEL_CARD_FORMAT
    tool: Tool
    created_utc: str
    spec: SpecPin
    dataset: DatasetRef
    timeseries: list[Feature]  # the network's input channels, in order
    static: list[Feature]
    targets: list[Feature]  # the outputs, in order
    inputs: list[str]  # the example features the network reads ("timeseries", "static"[, "mask"])
    window_s: int
    horizon_s: int
    config: dict[str, Any]  # the training config (`TrainConfig`)
    config_hash: str
    parameters: int
    training: Training
    metrics: dict[str, float]  # validation loss and MAE (normalized units) at the best epoch
    files: dict[str, str]  # role -> path in the directory


def read_model_card(uri: str) -> ModelCard:
    """The card of the model directory at ``uri``, after checking the directory is complete."""
    store = Store(uri)
    if not store.exists(CARD_NAME):
        raise ModelError(f"{store.url(CARD_NAME)}: no model card (not a model directory, or its training "
                         "did not finish: rerun the same `vitalflow train` command to resume it)")
    try:
        card = ModelCard.model_validate_json(store.read_bytes(CARD_NAME))
    except ValueError as exc:
        raise ModelError(f"{store.url(CARD_NAME)}: unreadable model card ({str(exc).splitlines()[0]})") from None
    missing = [name for name in REQUIRED if not store.exists(name)]
    if missing:
        raise ModelError(f"{store.uri}: the model directory is missing {', '.join(missing)}")
    return card
