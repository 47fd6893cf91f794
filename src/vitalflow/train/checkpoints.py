"""Per-epoch checkpoints: what a training run needs to continue exactly where it stopped.

A checkpoint directory (local or ``s3://``; ``MODEL_DIR/_checkpoints`` by default,
``/opt/ml/checkpoints`` in a SageMaker training job, which SageMaker syncs to S3) holds::

    epoch-0004.npz       the weights and the optimizer's variables after epoch 4
    best-0003.npz        the weights of the best epoch so far (highest validation mean AUPRC of
                         the event labels; a value model: lowest validation loss)
    state.json           `TrainState`: completed epochs, history, early-stopping counters, and
                         which two files above are current; written last

Every file is written whole or not at all (`Store.write_bytes`) and ``state.json`` is written after
the files it names, so a process killed at any instant leaves the previous complete epoch (or
none) as the checkpoint. Files no state names are leftovers of such a kill and are deleted.

Weights and optimizer variables are stored as plain arrays (``numpy.savez``), in the order Keras
lists them for the network the config builds, so a resumed run restores them bit for bit. The
random state needs no saving: the data order and every dropout generator are reseeded from
``(seed, epoch)`` at the start of each epoch (`vitalflow.train.fit`).
"""

from __future__ import annotations

import io

import numpy as np

from vitalflow.dataset.record import Record
from vitalflow.errors import ModelError
from vitalflow.store import Store

STATE_NAME = "state.json"
STATE_FORMAT = "vitalflow-train-state/1"


class TrainState(Record):
    format: str = STATE_FORMAT
    config_hash: str
    dataset_fingerprint: str
    epochs_done: int = 0
    history: dict[str, list[float]] = {}
    best_epoch: int = 0  # 1-based; 0: none yet
    best_val_loss: float | None = None  # the best epoch's (values: what chose it)
    best_val_auprc: float | None = None  # decisions: the best epoch's mean event AUPRC (what chose it)
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    resumed: int = 0
    latest_file: str | None = None
    best_file: str | None = None


def _npz(arrays: dict[str, list[np.ndarray]]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{group}_{i:04d}": a for group, values in arrays.items() for i, a in enumerate(values)})
    return buffer.getvalue()


def _unnpz(data: bytes, where: str) -> dict[str, list[np.ndarray]]:
    try:
        with np.load(io.BytesIO(data)) as z:
            out: dict[str, list[np.ndarray]] = {}
            for key in sorted(z.files):
                group, _, _ = key.rpartition("_")
                out.setdefault(group, []).append(z[key])
            return out
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"{where}: unreadable checkpoint ({exc})") from None


class Checkpoints:
    def __init__(self, uri: str) -> None:
        self.store = Store(uri)
        self.uri = self.store.uri

    def state(self) -> TrainState | None:
        if not self.store.exists(STATE_NAME):
            return None
        return TrainState.load(self.store.read_bytes(STATE_NAME), self.store.url(STATE_NAME), "checkpoint state")

    def arrays(self, name: str) -> dict[str, list[np.ndarray]]:
        return _unnpz(self.store.read_bytes(name), self.store.url(name))

    def save(self, state: TrainState, weights: list[np.ndarray], optimizer: list[np.ndarray],
             improved: bool) -> TrainState:
        """Write the epoch's files, then the state naming them; delete what no state names."""
        latest = f"epoch-{state.epochs_done:04d}.npz"
        self.store.write_bytes(latest, _npz({"weights": weights, "optimizer": optimizer}))
        best = state.best_file
        if improved:
            best = f"best-{state.epochs_done:04d}.npz"
            self.store.write_bytes(best, _npz({"weights": weights}))
        state = state.model_copy(update={"latest_file": latest, "best_file": best})
        self.store.write_bytes(STATE_NAME, state.to_json(indent=1))
        self.remove_leftovers(state)
        return state

    def remove_leftovers(self, state: TrainState | None) -> None:
        keep = {STATE_NAME} | ({state.latest_file, state.best_file} if state else set())
        for name in self.store.list():
            if name not in keep and name.endswith((".npz", ".incomplete")):
                self.store.delete(name)

    def clear(self) -> None:
        for name in self.store.list():
            self.store.delete(name)
