"""The epoch loop: fit one epoch, checkpoint, early-stop; resume from the last complete epoch.

Deterministic on CPU: TensorFlow's op determinism is on, the weights are drawn from the config's
seed, and at the start of epoch ``e`` the data order (`vitalflow.model.inputs`) and every dropout
generator are seeded from ``(seed, e)``. A run resumed at epoch ``e`` from a checkpoint (weights
and optimizer variables restored bit for bit) therefore computes what the uninterrupted run
computes; ``tests/test_train.py`` kills runs with SIGKILL and compares the weights.

A stop request (SIGTERM, SIGINT) ends the epoch at the next batch; the partial epoch is dropped
(the checkpoint of the last complete epoch stays), and the run reports ``stopped``.

What picks the best epoch (and stops early): a value model's validation loss (lowest); a decision
model's **validation mean AUPRC** over the event labels (highest; `vitalflow.train.metrics`): after
each epoch the network predicts the validation split once (in the dataset's order), and from those
outputs come the validation loss (`DecisionLoss` over the whole split), each event label's average
precision on its unmasked windows and their mean over the labels with both classes there.
"""

from __future__ import annotations

import ctypes
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from vitalflow.dataset.reference import Dataset
from vitalflow.errors import OutputError
from vitalflow.model.config import TrainConfig
from vitalflow.model.heads import Heads
from vitalflow.model.inputs import training_batches
from vitalflow.model.network import input_names
from vitalflow.train.metrics import event_average_precision, mean_auprc, scoreable_events
from vitalflow.runtime.stop import StopRequest
from vitalflow.train.checkpoints import Checkpoints, TrainState

log = logging.getLogger("vitalflow.progress")


def make_deterministic() -> None:
    tf.config.experimental.enable_op_determinism()


def release_freed_memory() -> None:
    """Give memory freed by the last epoch's pipeline threads back to the system (glibc's
    ``malloc_trim``): each epoch builds a new tf.data pipeline, and without this the freed blocks
    stay scattered over glibc's per-thread arenas, so peak memory grew with epochs x windows
    (bench/train.py: 1,270 MB for 100 cases against 922 MB with one arena). No-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0] & 0x7FFFFFFF)


def reseed_generators(model: keras.Model, seed: int, epoch: int) -> None:
    """Set every random generator of the network (dropout) to a state derived from (seed, epoch)."""
    generators = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    for i, state in enumerate(generators):
        state.assign(np.array([_epoch_seed(seed, epoch, i + 1), 0], dtype=state.dtype))


def restore(model: keras.Model, checkpoints: Checkpoints, state: TrainState) -> None:
    arrays = checkpoints.arrays(state.latest_file)
    model.set_weights(arrays["weights"])
    model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, arrays["optimizer"], strict=True):
        variable.assign(value)


class _StopOnRequest(keras.callbacks.Callback):
    def __init__(self, stop: StopRequest) -> None:
        super().__init__()
        self.stop = stop

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.stop.requested:
            self.model.stop_training = True


@dataclass(frozen=True)
class Split:
    """A split read once in the dataset's order: the network's inputs (a tf.data pipeline) and the
    truth as numpy (``labels`` and ``label_mask`` [N, L])."""

    inputs: tf.data.Dataset
    labels: np.ndarray
    label_mask: np.ndarray


def read_split(dataset: Dataset, split: str, config: TrainConfig, batch_size: int = 256) -> Split:
    """A decision model's view of ``split`` (from the parsed-window cache: the features training reads)."""
    batches = training_batches(dataset, split, input_names(config), task="decisions", batch_size=batch_size,
                               cache=True)
    truth = np.concatenate([y for y in batches.map(lambda x, y: y).as_numpy_iterator()])
    n = truth.shape[1] // 2
    return Split(batches.map(lambda x, y: x), truth[:, :n], truth[:, n:])


def positive_weights(dataset: Dataset, config: TrainConfig, heads: Heads) -> tuple[list[float], dict[str, float]]:
    """The loss's weight of each label's positives (events: negatives / positives among the train
    split's unmasked windows, capped at ``max_positive_weight``, 1 without a positive; every other
    label 1), and the event labels' weights by name (empty for the focal loss, which has none)."""
    if config.event_loss != "bce":
        return [1.0] * len(heads), {}
    train = read_split(dataset, "train", config)
    valid = train.label_mask > 0
    weights = [1.0] * len(heads)
    for i in heads.indices("event"):
        positive = int(np.sum(valid[:, i] & (train.labels[:, i] > 0)))
        negative = int(np.sum(valid[:, i])) - positive
        weights[i] = round(min(config.max_positive_weight, negative / positive), 6) if positive else 1.0
    return weights, {heads.names[i]: weights[i] for i in heads.indices("event")}


#: The inputs ``decision_network.normalize`` standardizes (per feature, the last axis).
NORMALIZED_INPUTS = ("timeseries", "history")


def input_stats(dataset: Dataset, config: TrainConfig) -> dict[str, tuple[list[float], list[float]]]:
    """Per input of `NORMALIZED_INPUTS` the network reads: the train split's mean and variance of
    each feature (over windows and steps; float64 sums in the dataset's order, so the same every
    run; the variance floored at 1e-4, a constant feature)."""
    names = [n for n in NORMALIZED_INPUTS if n in input_names(config)]
    if not names:
        return {}
    sums: dict[str, list] = {}
    for batch in training_batches(dataset, "train", input_names(config), task=config.task, batch_size=1024,
                                  cache=True).map(lambda x, y: x).as_numpy_iterator():
        for n in names:
            v = batch[n].reshape(-1, batch[n].shape[-1]).astype(np.float64)
            s = sums.setdefault(n, [0, np.zeros(v.shape[1]), np.zeros(v.shape[1])])
            s[0] += v.shape[0]
            s[1] += v.sum(axis=0)
            s[2] += np.square(v).sum(axis=0)
    out = {}
    for n, (count, total, squares) in sums.items():
        mean = total / count
        variance = np.maximum(squares / count - np.square(mean), 1e-4)
        out[n] = ([round(float(m), 6) for m in mean], [round(float(v), 6) for v in variance])
    return out


def predict_split(model: keras.Model, split: Split) -> np.ndarray:
    """The raw output [N, L] on the split's windows, in order."""
    with warnings.catch_warnings():  # Keras warns that a finite dataset "ran out of data": it is the split
        warnings.simplefilter("ignore", UserWarning)
        return model.predict(split.inputs, verbose=0)


def validation_scores(model: keras.Model, validation: Split, heads: Heads) -> dict[str, float]:
    """``val_loss``, ``val_auprc`` and ``val_ap/<label>`` of the model on the validation split."""
    raw = predict_split(model, validation)
    truth = np.concatenate([validation.labels, validation.label_mask], axis=1)
    per_label = event_average_precision(validation.labels, validation.label_mask, raw, heads)
    return {"val_loss": float(model.loss(truth, raw)), "val_auprc": mean_auprc(per_label),
            **{f"val_ap/{name}": v for name, v in per_label.items()}}


def fit(model: keras.Model, config: TrainConfig, dataset: Dataset, checkpoints: Checkpoints, state: TrainState,
        stop: StopRequest, heads: Heads | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> tuple[TrainState, bool]:
    """Train from ``state`` until ``config.epochs``, early stopping or a stop request; returns the
    final state and whether the run was stopped. The model holds the last epoch's weights.
    ``heads``: the decision model's (``task: decisions``). ``on_epoch(epoch, scores)``: called after
    each epoch is checkpointed (1-based epoch; the epoch's scores, e.g. ``val_auprc``); what it raises
    ends the training (`vitalflow.tune` prunes a trial so), the checkpoint of that epoch kept."""
    inputs = input_names(config)
    decisions = config.task == "decisions"
    early = config.early_stopping
    if decisions:
        validation = read_split(dataset, "validation", config, max(config.batch_size, 256))
        if not scoreable_events(validation.labels, validation.label_mask, heads):
            raise OutputError(f"{dataset.uri}: no event label has both classes among the validation windows, so "
                              "there is no validation AUPRC to pick the best epoch by: more cases or another "
                              "split seed")
    else:
        validation = training_batches(dataset, "validation", inputs, batch_size=max(config.batch_size, 256),
                                      cache=True)
    while state.epochs_done < config.epochs and not state.stopped_early:
        if stop.requested:
            return state, True
        epoch = state.epochs_done
        started = time.monotonic()
        release_freed_memory()
        reseed_generators(model, config.seed, epoch)
        train = training_batches(dataset, "train", inputs, task=config.task, batch_size=config.batch_size,
                                 seed=config.seed, epoch=epoch, shuffle_buffer=config.shuffle_buffer, cache=True)
        with warnings.catch_warnings():  # Keras warns that a finite dataset "ran out of data": it is the epoch
            warnings.simplefilter("ignore", UserWarning)
            result = model.fit(train, validation_data=None if decisions else validation, epochs=1, verbose=0,
                               shuffle=False, callbacks=[_StopOnRequest(stop)])
        if stop.requested:
            log.warning("epoch %d interrupted: resuming starts it again from the checkpoint of epoch %d",
                        epoch + 1, epoch)
            return state, True
        scores = {k: float(v[-1]) for k, v in result.history.items()}
        if decisions:
            scores.update(validation_scores(model, validation, heads))
        history = {k: [*state.history.get(k, []), v] for k, v in scores.items()}
        val_loss = scores["val_loss"]
        if not np.isfinite(val_loss):
            raise FloatingPointError(f"epoch {epoch + 1}: the validation loss is {val_loss}; lower learning_rate")
        delta = early.min_delta if early else 0
        if decisions:
            auprc = scores["val_auprc"]
            improved = state.best_val_auprc is None or auprc > state.best_val_auprc + delta
        else:
            improved = state.best_val_loss is None or val_loss < state.best_val_loss - delta
        wait = 0 if improved else state.epochs_without_improvement + 1
        best = {"best_epoch": epoch + 1, "best_val_loss": val_loss,
                "best_val_auprc": scores["val_auprc"] if decisions else None} if improved else {}
        state = state.model_copy(update={
            "epochs_done": epoch + 1, "history": history, "epochs_without_improvement": wait, **best,
            "stopped_early": bool(early and wait >= early.patience),
            "seconds": state.seconds + time.monotonic() - started,
        })
        state = checkpoints.save(state, model.get_weights(), [v.numpy() for v in model.optimizer.variables], improved)
        log.info("epoch %d/%d: loss %.4f, val_loss %.4f%s%s (%.1f s)", epoch + 1, config.epochs, history["loss"][-1],
                 val_loss, f", val_auprc {scores['val_auprc']:.4f}" if decisions else "", " (best)" if improved else "",
                 time.monotonic() - started,
                 extra={"epoch": {"epoch": epoch + 1, "epochs": config.epochs, "loss": float(history["loss"][-1]),
                                  "val_loss": float(val_loss)}})
        if on_epoch is not None:
            on_epoch(epoch + 1, scores)
    return state, False
