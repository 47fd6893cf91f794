"""The model card (``model_card.json``): what a model directory holds and everything it was made
from, so that a prediction can be traced to recordings, spec, dataset and config.

A model directory (laid out as SageMaker expects ``/opt/ml/model``)::

    model.keras          the Keras model (load with ``compile=False``: inference needs no loss)
    export/              the same network as a TensorFlow SavedModel (TF Serving, ``tf.saved_model.load``)
    boosted/             a stacked decision model's XGBoost classifiers, one UBJSON file per event
    model_card.json      this card; written last, so a directory with a card is complete

The card pins the whole spec (``spec.content``): predicting transforms recordings with the spec the
model was trained on, never with whatever spec is installed.
"""

from __future__ import annotations

from typing import Any, Literal

from vitalflow.dataset.record import Record, Tool
from vitalflow.errors import ModelError
from vitalflow.spec.model import Spec
from vitalflow.store import Store

CARD_NAME = "model_card.json"
MODEL_FILE = "model.keras"
EXPORT_DIR = "export"
# 2 added the decision model (task, heads, calibration, class_weights); a card of format 1 is a
# value model and reads as one (the new fields' defaults)
MODEL_CARD_FORMAT = "vitalflow-model/2"
#: The files (besides the card) a complete model directory holds.
REQUIRED = (MODEL_FILE, f"{EXPORT_DIR}/saved_model.pb")


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


class Head(Record):
    """One column of the decision model's ``labels`` output (`vitalflow.model.heads`), in order."""

    name: str  # "event/<group>/<H>", "direction/<setpoint>/<H>", "value/<setpoint>/<H>"
    task: Literal["event", "direction", "value"]
    of: str  # the group (event) or set-point
    horizon_s: int
    output: Literal["logit", "tanh"]  # logit: P = sigmoid(logit / T); tanh: the normalized value
    unit: str | None = None  # the set-point's (direction, value)
    range: tuple[float, float] | None = None  # value: normalization of the set-point, [lo, hi] -> [-1, 1]


class Calibration(Record):
    """Temperature scaling of the logit heads, fitted on ``split`` after training
    (`vitalflow.model.calibration`)."""

    method: Literal["temperature"] = "temperature"
    split: str = "validation"
    temperatures: dict[str, float]  # label -> T (every event and direction label; 1: not fitted)
    # per label with unmasked windows on the split: expected calibration error before and after
    ece_before: dict[str, float]
    ece_after: dict[str, float]
    bins: int  # of the ECE
    mean_ece_before: float | None = None  # over the event labels with windows
    mean_ece_after: float | None = None


class StackedEvent(Record):
    """One event of the stacked model (`vitalflow.model.stack`): ``sigmoid(a z + b)`` with
    ``z = w logit(network) + (1 - w) logit(booster)``."""

    name: str  # "event/<group>/<H>"
    network_weight: float  # w
    platt: tuple[float, float]  # (a, b)
    booster: str | float  # the booster's file in the directory, or its constant probability
    # on the validation split (what chose w): AUPRC of the network, the booster and the stack
    validation_auprc: dict[str, float | None]


class Stack(Record):
    """The network stacked with gradient-boosted classifiers on window summaries, fitted on
    ``split`` after training (`vitalflow.model.stack`, `vitalflow.model.boosted`)."""

    split: str = "validation"
    features: list[str]  # the boosters' input columns (`vitalflow.model.boosted.boosted_feature_names`)
    events: list[StackedEvent]  # in the event heads' order
    ece_after: dict[str, float] = {}  # per event with validation windows: the stack's ECE there


class ValueGates(Record):
    """Per value label, the event probability from which the network's value replaces the set-point
    now, fitted on ``split`` (`vitalflow.model.value_gates`)."""

    split: str = "validation"
    thresholds: dict[str, float]  # value label -> threshold (0: always the network; > 1: always persistence)
    # value label -> validation MAE (normalized units) of the network, persistence and the gated values
    mae: dict[str, dict[str, float | None]]


class Tuning(Record):
    """The hyper-parameter study (`vitalflow tune`) whose best trial's config trained this model."""

    storage: str  # the Optuna storage URL (sqlite:///<study dir>/study.db)
    study: str  # the study name
    trial: int  # the best trial's number
    value: float  # its objective: the best epoch's validation mean event AUPRC
    trials: int  # trials finished (complete or pruned) when the model was trained
    params: dict[str, Any]  # the best trial's sampled values, by dotted config path


class Training(Record):
    epochs_run: int
    best_epoch: int  # 1-based: the weights the model holds
    stopped_early: bool
    resumed: int  # how many times the run resumed from a checkpoint
    seconds: float  # wall time of the epochs, summed over resumes
    # per epoch: loss, mae, val_loss, val_mae (values); loss, val_loss, val_auprc and val_ap/<event
    # label> per event label with both classes on the validation split (decisions)
    history: dict[str, list[float]]
    monitor: str = "val_loss"  # what chose the best epoch: val_loss (lowest) or val_auprc (highest)


class ModelCard(Record):
    format: str = MODEL_CARD_FORMAT
    task: Literal["decisions", "values"] = "values"  # what the network predicts (cards of format 1: values)
    tool: Tool
    created_utc: str
    spec: SpecPin
    dataset: DatasetRef
    timeseries: list[Feature]  # the network's input channels, in order
    static: list[Feature]
    targets: list[Feature]  # the outputs, in order (values; empty for a decision model)
    heads: list[Head] = []  # the outputs, in order (decisions)
    inputs: list[str]  # the example features the network reads ("timeseries", "static"[, "mask"])
    window_s: int
    horizon_s: int
    config: dict[str, Any]  # the training config (`TrainConfig`)
    config_hash: str
    parameters: int
    training: Training
    # at the best epoch: validation loss and MAE (normalized units) of a value model; validation
    # loss, mean AUPRC of the event labels (val_auprc) and each one's AP (val_ap/<label>) of a decision model
    metrics: dict[str, float]
    class_weights: dict[str, float] = {}  # event label -> weight of its positives in the loss (decisions, bce)
    calibration: Calibration | None = None  # decisions
    stack: Stack | None = None  # decisions with config stack: true: what the event probabilities are
    value_gates: ValueGates | None = None  # decisions with config gate_values: true
    tuning: Tuning | None = None  # the study that chose the config (`vitalflow tune`); None: not tuned
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
