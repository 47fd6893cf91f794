"""The training configuration: a validated, hashed YAML file (unknown keys are errors).

Every field has a default; the defaults train the demo corpus (about 1,400 windows) on 2 CPU cores
in a couple of minutes. README "Training" shows the whole file.

``task`` chooses what the network predicts: ``decisions`` (the default) the clinician's decisions
(the dataset's ``labels``: events, directions and set-point values per horizon,
`vitalflow.model.heads`), ``values`` the 30 s point values of the spec's targets (the model of
example schema 1, kept for comparison). ``loss`` and ``target_weights`` are of the value model;
``head_weights``, ``event_loss``, ``focal_gamma`` and ``max_positive_weight`` of the decision model.

>>> config = TrainConfig()
>>> config.task, config.network.lstm_units, config.batch_size, TrainConfig(task="values").batch_size
('decisions', (48, 24), 128, 64)
>>> config.head_weights.event, config.head_weights.direction, config.head_weights.value
(1.0, 0.3, 0.3)
>>> train_config_hash(config) == train_config_hash(TrainConfig(seed=0))
True
>>> train_config_hash(config) == train_config_hash(TrainConfig(seed=1))
False
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vitalflow.spec.model import Strict, content_hash, load_validated

#: A registered model name: also a path segment of the model cache and half of ``NAME/VERSION``.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class Network(Strict):
    """The CNN-LSTM-LSTM: Conv1D blocks over the window, two stacked LSTMs, the static features
    joined before the dense head, one tanh output per target (the targets are normalized to [-1, 1])."""

    conv_filters: tuple[int, ...] = Field(default=(32, 32), min_length=1)  # one Conv1D block each
    conv_kernel: int = Field(default=5, ge=1)
    pool: int = Field(default=3, ge=1)  # max-pooling after each block: 300 s -> 100 -> 33 steps
    lstm_units: tuple[int, int] = (48, 24)  # the two stacked LSTMs
    dense_units: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    residual: bool = True  # predict each target's change from its last value (`vitalflow.model.network`)
    use_mask: bool = False  # also read the dataset's 0/1 mask channels (the dataset must have them)

    @field_validator("conv_filters", "lstm_units")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 1 for n in v):
            raise ValueError("every size must be at least 1")
        return v


class EarlyStopping(Strict):
    # epochs without a better validation score before stopping: the mean AUPRC of the event labels
    # (task: decisions, higher is better) or the validation loss (task: values, lower is better)
    patience: int = Field(default=4, ge=1)
    min_delta: float = Field(default=0.0, ge=0)


class DecisionNetwork(Strict):
    """What the decision network adds to the trunk (`vitalflow.model.network`); each part measured
    on validation (bench/quality.py, 60 synthetic cases)."""

    # standardize the window and the history per feature with the train split's mean and variance
    # (stored in the model): the clinician's thresholds (SpO2 94 %, EtCO2 30-42) are narrow slices
    # of the [-1, 1] ranges
    normalize: bool = True
    # sigmoid detectors over the window (Conv1D, kernel 5), each averaged over the last 30, 60,
    # 120, 180 and 300 s: "a condition held for T" (0: none)
    detectors: int = Field(default=32, ge=0)
    head_units: int = Field(default=64, ge=1)  # the dense layer before the outputs
    # the value heads predict the change from the set-point now (``setpoints``), like the value model
    residual_values: bool = True
    # the time since each set-point's last change also as exp(-t / tau) for these taus (s):
    # refractory and reaction times are minutes, a small slice of the 0-1 h input
    since_decays_s: tuple[float, ...] = (60.0, 180.0, 400.0, 900.0)


class HeadWeights(Strict):
    """The decision loss's weight of each head (each head's loss is its mean over the unmasked labels)."""

    event: float = Field(default=1.0, ge=0)
    direction: float = Field(default=0.3, ge=0)
    value: float = Field(default=0.3, ge=0)


#: The example features of the decision context (`TrainConfig.context_inputs`), in input order.
CONTEXT_INPUTS = ("setpoints", "setpoints_known", "context", "history")

#: Fields of the decision model: left out of the hash of a ``task: values`` config, so a value
#: model's config hashes as it did before the decision model existed.
DECISION_FIELDS = frozenset({"task", "head_weights", "event_loss", "focal_gamma", "max_positive_weight",
                             "context_inputs", "decision_network", "stack", "gate_values"})


#: Defaults that depend on ``task`` (a value the file sets wins). The decision model trains with
#: batches of 128: 60 synthetic cases (~31,000 train windows) in under 3 minutes on 2 CPU cores.
TASK_DEFAULTS: dict[str, dict] = {"decisions": {"batch_size": 128, "learning_rate": 3e-3, "epochs": 10}, "values": {}}


class TrainConfig(Strict):
    task: Literal["decisions", "values"] = "decisions"
    network: Network = Network()
    # --- task: decisions
    head_weights: HeadWeights = HeadWeights()
    decision_network: DecisionNetwork = DecisionNetwork()
    # events: binary cross-entropy with a positive-class weight per event label (negatives /
    # positives of the train split, capped at max_positive_weight), or the focal loss (no weights)
    event_loss: Literal["bce", "focal"] = "bce"
    focal_gamma: float = Field(default=2.0, ge=0)
    max_positive_weight: float = Field(default=20.0, ge=1)
    # also read the decision context of the examples (`CONTEXT_INPUTS`: the set-points now, the time
    # since each last changed and since anestart, 30 min of history; spec decisions.context)
    context_inputs: bool = True
    # stack the network with XGBoost classifiers on window summaries and the set-points, blended and
    # Platt-scaled per event on validation (`vitalflow.model.stack`; needs context_inputs): the event
    # probabilities every output reports are the stack's
    stack: bool = True
    # keep each set-point's value now unless its group's event probability reaches a threshold chosen
    # on validation (`vitalflow.model.value_gates`; needs context_inputs): values no worse than persistence there
    gate_values: bool = True
    # --- task: values
    loss: Literal["mse", "huber", "mae"] = "huber"
    # target name -> loss weight (the spec's targets; a target not named weighs 1)
    target_weights: dict[str, float] = {}
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    # defaults per task (`TASK_DEFAULTS`) when the file does not set them
    learning_rate: float = Field(default=2e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)
    epochs: int = Field(default=12, ge=1)
    early_stopping: EarlyStopping | None = EarlyStopping()  # null: always run every epoch
    shuffle_buffer: int = Field(default=4096, ge=1)  # windows; see README "How shuffling mixes cases"
    seed: int = 0
    # the MLflow registered model each training registers a version of (README "Registry")
    registered_model: str = Field(default="vitalflow", min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data):
        if isinstance(data, dict):
            task = data.get("task", "decisions")
            data = {**TASK_DEFAULTS.get(task, {}), **data}
        return data

    @field_validator("registered_model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if not _MODEL_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a registered model name: letters, digits, '_', '-' and '.', "
                             "starting with a letter or digit")
        return v

    @field_validator("target_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for name, w in v.items():
            if not w >= 0:
                raise ValueError(f"target weight of {name} must be >= 0")
        return v

    def weights_for(self, targets: tuple[str, ...]) -> list[float]:
        """Per-target loss weights in ``targets`` order; a name that is not a target is an error."""
        unknown = sorted(set(self.target_weights) - set(targets))
        if unknown:
            raise ValueError(f"target_weights names {', '.join(unknown)}, not targets of the spec "
                             f"({', '.join(targets)})")
        return [float(self.target_weights.get(t, 1.0)) for t in targets]


def load_train_config(path: str | Path | None = None) -> TrainConfig:
    """The config at ``path`` (local or s3://), or the defaults."""
    return TrainConfig() if path is None else load_validated(TrainConfig, path, "train config")


def train_config_hash(config: TrainConfig) -> str:
    """The hash of what makes the model: ``registered_model`` (where it is registered) is left out,
    so naming another registered model neither retrains nor changes the hash of older models.

    >>> train_config_hash(TrainConfig(registered_model="other")) == train_config_hash(TrainConfig())
    True
    >>> train_config_hash(TrainConfig(task="values")) == train_config_hash(TrainConfig(task="values", focal_gamma=1))
    True
    """
    exclude = {"registered_model"} | (DECISION_FIELDS if config.task == "values" else set())
    return content_hash(config.model_dump(mode="json", exclude=exclude))
