"""The CNN-LSTM-LSTM (Keras 3) and its weighted loss.

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
"""

from __future__ import annotations

import keras
from keras import layers

from vitalflow.model.config import TrainConfig

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


def build_network(config: TrainConfig, length: int, features: int, static: int,
                  target_channels: tuple[int, ...]) -> keras.Model:
    """The network for windows of ``length`` x ``features`` and ``static`` patient features,
    predicting the time-series channels ``target_channels`` (weights drawn from Keras' global
    seed: call `keras.utils.set_random_seed` first)."""
    net = config.network
    series = keras.Input((length, features), name="timeseries")
    patient = keras.Input((static,), name="static")
    inputs = {"timeseries": series, "static": patient}
    x = series
    if net.use_mask:
        inputs["mask"] = keras.Input((length, features), name="mask")
        x = layers.Concatenate(name="with_mask")([series, inputs["mask"]])
    for i, filters in enumerate(net.conv_filters):
        x = layers.Conv1D(filters, net.conv_kernel, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if net.pool > 1:
            x = layers.MaxPooling1D(net.pool, padding="same", name=f"pool{i + 1}")(x)
    x = layers.LSTM(net.lstm_units[0], return_sequences=True, name="lstm1")(x)
    x = layers.LSTM(net.lstm_units[1], name="lstm2")(x)
    x = layers.Concatenate(name="with_static")([x, patient])
    x = layers.Dense(net.dense_units, activation="gelu", name="dense")(x)
    if net.dropout > 0:
        x = layers.Dropout(net.dropout, name="dropout")(x)
    if net.residual:
        change = layers.Dense(len(target_channels), activation="tanh", kernel_initializer="zeros", name="change")(x)
        outputs = AddToLastValues(target_channels, name="targets")(change, series)
    else:
        outputs = layers.Dense(len(target_channels), activation="tanh", name="targets")(x)
    return keras.Model(inputs, outputs, name="cnn_lstm_lstm")


def optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    kinds = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
             "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return kinds[config.optimizer](learning_rate=config.learning_rate)


def compile_network(model: keras.Model, config: TrainConfig, weights: list[float]) -> keras.Model:
    model.compile(optimizer=optimizer(config), loss=WeightedLoss(LOSSES[config.loss], weights),
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")], jit_compile=False)
    return model


def input_names(config: TrainConfig) -> tuple[str, ...]:
    """The example features the network reads."""
    return ("timeseries", "static", "mask") if config.network.use_mask else ("timeseries", "static")
