"""The epoch loop: fit one epoch, checkpoint, early-stop; resume from the last complete epoch.

Deterministic on CPU: TensorFlow's op determinism is on, the weights are drawn from the config's
seed, and at the start of epoch ``e`` the data order (`vitalflow.model.inputs`) and every dropout
generator are seeded from ``(seed, e)``. A run resumed at epoch ``e`` from a checkpoint (weights
and optimizer variables restored bit for bit) therefore computes what the uninterrupted run
computes; ``tests/test_train.py`` kills runs with SIGKILL and compares the weights.

A stop request (SIGTERM, SIGINT) ends the epoch at the next batch; the partial epoch is dropped
(the checkpoint of the last complete epoch stays), and the run reports ``stopped``.
"""

from __future__ import annotations

import ctypes
import logging
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from vitalflow.dataset.reference import Dataset
from vitalflow.model.config import TrainConfig
from vitalflow.model.inputs import training_batches
from vitalflow.model.network import input_names
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


def fit(model: keras.Model, config: TrainConfig, dataset: Dataset, checkpoints: Checkpoints, state: TrainState,
        stop: StopRequest) -> tuple[TrainState, bool]:
    """Train from ``state`` until ``config.epochs``, early stopping or a stop request; returns the
    final state and whether the run was stopped. The model holds the last epoch's weights."""
    inputs = input_names(config)
    validation = training_batches(dataset, "validation", inputs, batch_size=max(config.batch_size, 256), cache=True)
    early = config.early_stopping
    while state.epochs_done < config.epochs and not state.stopped_early:
        if stop.requested:
            return state, True
        epoch = state.epochs_done
        started = time.monotonic()
        release_freed_memory()
        reseed_generators(model, config.seed, epoch)
        train = training_batches(dataset, "train", inputs, batch_size=config.batch_size, seed=config.seed,
                                 epoch=epoch, shuffle_buffer=config.shuffle_buffer, cache=True)
        with warnings.catch_warnings():  # Keras warns that a finite dataset "ran out of data": it is the epoch
            warnings.simplefilter("ignore", UserWarning)
            result = model.fit(train, validation_data=validation, epochs=1, verbose=0, shuffle=False,
                               callbacks=[_StopOnRequest(stop)])
        if stop.requested:
            log.warning("epoch %d interrupted: resuming starts it again from the checkpoint of epoch %d",
                        epoch + 1, epoch)
            return state, True
        history = {k: [*state.history.get(k, []), float(v[-1])] for k, v in result.history.items()}
        val_loss = history["val_loss"][-1]
        if not np.isfinite(val_loss):
            raise FloatingPointError(f"epoch {epoch + 1}: the validation loss is {val_loss}; lower learning_rate")
        improved = state.best_val_loss is None or val_loss < state.best_val_loss - (early.min_delta if early else 0)
        wait = 0 if improved else state.epochs_without_improvement + 1
        state = state.model_copy(update={
            "epochs_done": epoch + 1, "history": history, "epochs_without_improvement": wait,
            "best_epoch": epoch + 1 if improved else state.best_epoch,
            "best_val_loss": val_loss if improved else state.best_val_loss,
            "stopped_early": bool(early and wait >= early.patience),
            "seconds": state.seconds + time.monotonic() - started,
        })
        state = checkpoints.save(state, model.get_weights(), [v.numpy() for v in model.optimizer.variables], improved)
        log.info("epoch %d/%d: loss %.4f, val_loss %.4f%s (%.1f s)", epoch + 1, config.epochs, history["loss"][-1],
                 val_loss, " (best)" if improved else "", time.monotonic() - started)
    return state, False
