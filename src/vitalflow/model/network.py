"""The CNN-LSTM-LSTM (Keras 3) and its losses: the weighted value loss and the masked decision loss.

::

    timeseries [300 x 16]  (+ mask [300 x 16] when network.use_mask)
        |  Conv1D(32, k=5, relu) -> MaxPool(3)      300 -> 100 steps
        |  Conv1D(32, k=5, relu) -> MaxPool(3)      100 -> 33 steps
        |  LSTM(48, sequences)
        |  LSTM(24)                                 -> [24]
        |                static [6]
        +---- concatenate ----+                      -> [30]
              Dense(32, gelu) -> Dropout(0.1)
              Dense(8, tanh)                         -> the change of each target, in [-1, 1]
              + each target's last value in the window, clipped to [-1, 1]
                                                     -> targets, normalized to [-1, 1]

``network.residual: true`` (the default) makes the head predict the change from the target's last
value (the input channel the target is a copy of) rather than the value itself: carrying the
current value forward is right for most windows, so the network starts from persistence and spends
its capacity on when and how far a value changes. ``residual: false`` is the plain head.

``task: decisions`` keeps the trunk (everything up to the dropout), joins the decision context to
the static features (``context_inputs``: ``setpoints`` [10], ``setpoints_known`` [10], ``context``
[11] as they are, ``history`` [60 x 16] flattened through Dense(24, gelu)), and ends in one output, ``labels``, of
one column per decision label (`vitalflow.model.heads`)::

              Dense(32, gelu) -> Dropout(0.1)
              Dense(75) -> DecisionOutput            -> event and direction logits, tanh values

trained with `DecisionLoss` on ``concat(labels, label_mask)``.
"""

from __future__ import annotations

import keras
from keras import layers

from vitalflow.model.config import CONTEXT_INPUTS, TrainConfig
from vitalflow.model.heads import Heads

LOSSES = {"mse": "squared", "huber": "huber", "mae": "absolute"}


@keras.saving.register_keras_serializable(package="vitalflow")
class WeightedLoss(keras.losses.Loss):
    """The per-target loss (squared, Huber or absolute error) averaged with per-target weights
    (weights normalized to sum to 1, so the loss's scale does not depend on them)."""

    def __init__(self, kind: str = "squared", weights=(1.0,), name: str = "weighted_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind = kind
        self.weights = [float(w) for w in weights]

    def call(self, y_true, y_pred):
        ops = keras.ops
        error = y_pred - ops.cast(y_true, y_pred.dtype)
        if self.kind == "squared":
            per_target = ops.square(error)
        elif self.kind == "absolute":
            per_target = ops.abs(error)
        else:  # Huber with delta 1 on normalized targets: squared inside [-1, 1], linear outside
            absolute = ops.abs(error)
            quadratic = ops.minimum(absolute, 1.0)
            per_target = 0.5 * ops.square(quadratic) + (absolute - quadratic)
        weights = ops.convert_to_tensor(self.weights, dtype=per_target.dtype)
        return ops.sum(per_target * weights, axis=-1) / ops.sum(weights)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "weights": self.weights}


@keras.saving.register_keras_serializable(package="vitalflow")
class AddToLastValues(layers.Layer):
    """``clip(change + series[:, -1, channels], -1, 1)``: the residual head's output."""

    def __init__(self, channels=(0,), **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]

    def call(self, change, series):
        last = keras.ops.take(series[:, -1, :], self.channels, axis=-1)
        return keras.ops.clip(change + last, -1.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="vitalflow")
class DecisionLoss(keras.losses.Loss):
    """The decision model's loss on ``y_true = concat(labels, label_mask)`` ([B, 2L]) and the raw
    output ([B, L]: logits of events and directions, tanh values).

    Per label kind (``kinds``: `vitalflow.model.heads.KIND` per column), on the unmasked labels only:

    - event: binary cross-entropy with logits, positives weighted by ``positive_weights`` ``w``, of
      the logit shifted by ``log w``: ``w y softplus(-z') + (1 - y) softplus(z')`` with
      ``z' = z + log w``. The weight makes the rare positives count (its gradients), the shift
      keeps the probabilities honest: the weighted loss is lowest at ``z' = logit(p) + log w``,
      so the output ``z`` is the plain logit, ``logit(p)`` (what the temperatures then fine-tune).
      (The same as the weighted loss on ``z'`` with the output bias lowered by ``log w``.)
      With ``event_loss="focal"``: the focal loss ``(1 - p_t)^gamma`` x the cross-entropy, unweighted.
    - direction: binary cross-entropy with logits
    - value: Huber (delta 1) in normalized units

    Each head's loss is its mean over the batch's unmasked labels of that head (0 when it has
    none), and the loss is ``sum(head_weights[h] x head loss)``: a masked label contributes nothing,
    whatever its value. (Each sample's value is scaled so that Keras' mean over the batch gives that
    sum.)
    """

    def __init__(self, kinds=(0,), positive_weights=None, head_weights=(1.0, 1.0, 1.0), event_loss: str = "bce",
                 gamma: float = 2.0, name: str = "decision_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kinds = [int(k) for k in kinds]
        self.positive_weights = [float(w) for w in (positive_weights or [1.0] * len(self.kinds))]
        self.head_weights = [float(w) for w in head_weights]
        self.event_loss = event_loss
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        ops = keras.ops
        n = len(self.kinds)
        y_true = ops.cast(y_true, y_pred.dtype)
        labels, mask = y_true[:, :n], y_true[:, n:]
        z = y_pred
        # cross-entropy with logits, stable for any z: y softplus(-z) + (1 - y) softplus(z)
        positive, negative = ops.softplus(-z), ops.softplus(z)
        if self.event_loss == "focal":
            p = ops.sigmoid(z)
            p_true = labels * p + (1.0 - labels) * (1.0 - p)
            event = ops.power(1.0 - p_true, self.gamma) * (labels * positive + (1.0 - labels) * negative)
        else:
            weights = ops.convert_to_tensor(self.positive_weights, dtype=z.dtype)
            shifted = z + ops.log(weights)
            event = weights * labels * ops.softplus(-shifted) + (1.0 - labels) * ops.softplus(shifted)
        direction = labels * positive + (1.0 - labels) * negative
        absolute = ops.abs(z - labels)
        quadratic = ops.minimum(absolute, 1.0)
        value = 0.5 * ops.square(quadratic) + (absolute - quadratic)
        batch = ops.cast(ops.shape(z)[0], z.dtype)
        total = ops.zeros_like(z[:, 0])
        for kind, per_label in enumerate((event, direction, value)):
            select = ops.convert_to_tensor([float(k == kind) for k in self.kinds], dtype=z.dtype)
            valid = mask * select
            count = ops.maximum(ops.sum(valid), 1.0)
            # where(): a masked entry adds an exact 0 (no NaN/inf from a label's value can leak in)
            total = total + self.head_weights[kind] * batch * ops.sum(
                ops.where(valid > 0, per_label, 0.0), axis=-1) / count
        return total

    def get_config(self):
        return {**super().get_config(), "kinds": self.kinds, "positive_weights": self.positive_weights,
                "head_weights": self.head_weights, "event_loss": self.event_loss, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="vitalflow")
class DecisionOutput(layers.Layer):
    """The raw ``labels`` output: the logits as they are, tanh on the value columns."""

    def __init__(self, value_columns=(), **kwargs):
        super().__init__(**kwargs)
        self.value_columns = [int(c) for c in value_columns]

    def call(self, x):
        n = x.shape[-1]
        is_value = keras.ops.convert_to_tensor([c in set(self.value_columns) for c in range(n)])
        return keras.ops.where(is_value, keras.ops.tanh(x), x)

    def get_config(self):
        return {**super().get_config(), "value_columns": self.value_columns}


#: The windows over which the detectors are averaged (seconds, the window's last ones).
DETECTOR_SPANS_S = (30, 60, 120, 180, 300)
#: ... and the history conv's outputs (steps of the history, its last ones).
HISTORY_SPANS = (2, 4, 10, 20, 60)
#: The context's scale (`vitalflow.transform.case.time_since_context`): -1..1 is 0..SINCE_CAP_S.
SINCE_CAP_S = 3600.0


@keras.saving.register_keras_serializable(package="vitalflow")
class TailMeans(layers.Layer):
    """``[B, T, C]`` -> ``[B, len(spans) x C]``: the mean over the last ``s`` steps, per span ``s``
    (a span longer than the series is the whole series)."""

    def __init__(self, spans=(1,), **kwargs):
        super().__init__(**kwargs)
        self.spans = [int(s) for s in spans]

    def call(self, x):
        return keras.ops.concatenate([keras.ops.mean(x[:, -s:, :], axis=1) for s in self.spans], axis=-1)

    def get_config(self):
        return {**super().get_config(), "spans": self.spans}


@keras.saving.register_keras_serializable(package="vitalflow")
class SinceDecays(layers.Layer):
    """The ``context`` input ([B, S + 1]: the time since each set-point's last change, 0..1 h, then
    since anestart, 0..4 h, each as -1..1) joined by ``exp(-t / tau)`` of each set-point's time ``t``
    per ``tau`` (s)."""

    def __init__(self, taus_s=(60.0,), **kwargs):
        super().__init__(**kwargs)
        self.taus_s = [float(t) for t in taus_s]

    def call(self, context):
        t = (context[:, :-1] + 1.0) / 2.0 * SINCE_CAP_S
        return keras.ops.concatenate([context] + [keras.ops.exp(-t / tau) for tau in self.taus_s], axis=-1)

    def get_config(self):
        return {**super().get_config(), "taus_s": self.taus_s}


@keras.saving.register_keras_serializable(package="vitalflow")
class ResidualValues(layers.Layer):
    """The ``labels`` output of the decision network with residual values: logits as they are; each
    value column ``clip(tanh(raw) + setpoint now, -1, 1)`` (``setpoints``: 0 where unknown, so the
    value is then the plain tanh head)."""

    def __init__(self, value_columns=(), setpoint_index=(), setpoints: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.value_columns = [int(c) for c in value_columns]
        self.setpoint_index = [int(i) for i in setpoint_index]
        self.setpoints = int(setpoints)

    def call(self, raw, setpoints):
        ops = keras.ops
        n = raw.shape[-1]
        select = [[0.0] * n for _ in range(self.setpoints)]
        for column, j in zip(self.value_columns, self.setpoint_index):
            select[j][column] = 1.0
        shift = ops.matmul(setpoints, ops.convert_to_tensor(select, dtype=raw.dtype))
        is_value = ops.convert_to_tensor([c in set(self.value_columns) for c in range(n)])
        return ops.where(is_value, ops.clip(ops.tanh(raw) + shift, -1.0, 1.0), raw)

    def get_config(self):
        return {**super().get_config(), "value_columns": self.value_columns, "setpoint_index": self.setpoint_index,
                "setpoints": self.setpoints}


def _normalized(x, stats: dict | None, name: str):
    """``x`` standardized per feature with ``stats[name]`` = (mean, variance), or as it is."""
    if not stats or name not in stats:
        return x
    mean, variance = stats[name]
    return layers.Normalization(axis=-1, mean=mean, variance=variance, name=f"{name}_norm")(x)


def _trunk(config: TrainConfig, length: int, features: int, static: int, context: dict | None = None,
           stats: dict | None = None):
    """The inputs and the dropout's output (what both heads start from). ``context``: the decision
    context's inputs, name -> shape (`CONTEXT_INPUTS`): the vectors join the static features, the
    history ([steps, features]) first runs through a small dense layer."""
    net = config.network
    series = keras.Input((length, features), name="timeseries")
    patient = keras.Input((static,), name="static")
    inputs = {"timeseries": series, "static": patient}
    decisions = config.task == "decisions"
    dn = config.decision_network
    x = seen = _normalized(series, stats, "timeseries") if decisions else series
    if net.use_mask:
        inputs["mask"] = keras.Input((length, features), name="mask")
        x = layers.Concatenate(name="with_mask")([x, inputs["mask"]])
    for i, filters in enumerate(net.conv_filters):
        x = layers.Conv1D(filters, net.conv_kernel, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if net.pool > 1:
            x = layers.MaxPooling1D(net.pool, padding="same", name=f"pool{i + 1}")(x)
    x = layers.LSTM(net.lstm_units[0], return_sequences=True, name="lstm1")(x)
    x = layers.LSTM(net.lstm_units[1], name="lstm2")(x)
    joined = [x, patient]
    if decisions and dn.detectors:
        detected = layers.Conv1D(dn.detectors, 5, padding="same", activation="sigmoid", name="detectors")(seen)
        joined += [TailMeans(DETECTOR_SPANS_S, name="held")(detected), TailMeans((1,), name="last_values")(seen)]
    for name, shape in (context or {}).items():
        inputs[name] = keras.Input(tuple(shape), name=name)
        if len(shape) == 2 and decisions and dn.detectors:  # a conv over the history, averaged over spans
            h = layers.Conv1D(16, 3, padding="same", activation="relu", name=f"{name}_conv")(
                _normalized(inputs[name], stats, name))
            joined.append(TailMeans(HISTORY_SPANS, name=f"{name}_held")(h))
        elif len(shape) == 2:  # flattened into a small dense layer: an LSTM over it costs half an epoch more
            flat = layers.Flatten(name=f"{name}_flat")(_normalized(inputs[name], stats, name))
            joined.append(layers.Dense(net.lstm_units[1], activation="gelu", name=f"{name}_dense")(flat))
        elif name == "context" and decisions and dn.since_decays_s:
            joined.append(SinceDecays(dn.since_decays_s, name="since")(inputs[name]))
        else:
            joined.append(inputs[name])
    x = layers.Concatenate(name="with_static")(joined)
    x = layers.Dense(dn.head_units if decisions else net.dense_units, activation="gelu", name="dense")(x)
    if net.dropout > 0:
        x = layers.Dropout(net.dropout, name="dropout")(x)
    return inputs, series, x


def build_network(config: TrainConfig, length: int, features: int, static: int,
                  target_channels: tuple[int, ...]) -> keras.Model:
    """The value network for windows of ``length`` x ``features`` and ``static`` patient features,
    predicting the time-series channels ``target_channels`` (weights drawn from Keras' global
    seed: call `keras.utils.set_random_seed` first)."""
    net = config.network
    inputs, series, x = _trunk(config, length, features, static)
    if net.residual:
        change = layers.Dense(len(target_channels), activation="tanh", kernel_initializer="zeros", name="change")(x)
        outputs = AddToLastValues(target_channels, name="targets")(change, series)
    else:
        outputs = layers.Dense(len(target_channels), activation="tanh", name="targets")(x)
    return keras.Model(inputs, outputs, name="cnn_lstm_lstm")


def build_decision_network(config: TrainConfig, length: int, features: int, static: int, heads: Heads,
                           context: dict | None = None, stats: dict | None = None,
                           setpoint_index: list[int] | None = None) -> keras.Model:
    """The decision network: the value network's trunk (with the decision context's inputs,
    ``context``: name -> shape), one ``labels`` output (`vitalflow.model.heads`). ``stats``: input
    name -> (mean, variance) per feature of the train split (``decision_network.normalize``);
    ``setpoint_index``: per value label its set-point's column in ``setpoints`` (residual values)."""
    inputs, _, x = _trunk(config, length, features, static, context, stats)
    values = heads.indices("value").tolist()
    if config.decision_network.residual_values and "setpoints" in inputs and setpoint_index is not None:
        # the values are the last columns (`vitalflow.spec.model.TASKS` order); their change from the
        # set-point now starts at exactly zero (kernel and bias 0): an untrained value head is persistence
        assert values == list(range(len(heads) - len(values), len(heads))), "value heads must come last"
        logits = layers.Dense(len(heads) - len(values), name="decision_logits")(x)
        change = layers.Dense(len(values), kernel_initializer="zeros", name="value_change")(x)
        raw = layers.Concatenate(name="decision_raw")([logits, change])
        outputs = ResidualValues(values, setpoint_index, inputs["setpoints"].shape[-1], name="labels")(
            raw, inputs["setpoints"])
    else:
        outputs = DecisionOutput(values, name="labels")(layers.Dense(len(heads), name="decision_logits")(x))
    return keras.Model(inputs, outputs, name="cnn_lstm_lstm_decisions")


def optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    kinds = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
             "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return kinds[config.optimizer](learning_rate=config.learning_rate)


def compile_network(model: keras.Model, config: TrainConfig, weights: list[float]) -> keras.Model:
    model.compile(optimizer=optimizer(config), loss=WeightedLoss(LOSSES[config.loss], weights),
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")], jit_compile=False)
    return model


def decision_loss(config: TrainConfig, heads: Heads, positive_weights: list[float]) -> DecisionLoss:
    h = config.head_weights
    return DecisionLoss(heads.kinds, positive_weights, (h.event, h.direction, h.value), config.event_loss,
                        config.focal_gamma)


def compile_decision_network(model: keras.Model, config: TrainConfig, heads: Heads,
                             positive_weights: list[float]) -> keras.Model:
    """``positive_weights``: per label (1 for all but the events), see `DecisionLoss`."""
    model.compile(optimizer=optimizer(config), loss=decision_loss(config, heads, positive_weights),
                  jit_compile=False)
    return model


def input_names(config: TrainConfig) -> tuple[str, ...]:
    """The example features the network reads."""
    names = ("timeseries", "static", "mask") if config.network.use_mask else ("timeseries", "static")
    if config.task == "decisions" and config.context_inputs:
        names += CONTEXT_INPUTS
    return names
