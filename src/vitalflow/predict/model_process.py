"""The model in a process of its own: TensorFlow never runs in a forked process, and never in the
process that forks.

The case runner forks its workers from the main process (``WorkerPool``: the ``fork`` context,
at the first case, and again whenever a worker dies and the pool is rebuilt). TensorFlow is not
fork-safe: its thread pools and locks do not survive a fork, and a forked copy of a process that
holds TensorFlow also carries its memory into every worker's resident size and address-space
limit. So the main process never imports TensorFlow: `ModelProcess` starts one fresh interpreter
with the ``spawn`` context (fork + exec), which loads the model once and answers requests over a
pipe, case by case. Workers read and transform (numpy only) and return each case's per-second
normalized series (~1 MB for a 4-h case, not its ~9 MB of overlapping windows); the model process
cuts the windows from it and runs `Predictor.predict`.

The model process ignores SIGINT and SIGTERM (the main process decides when the run stops) and
dies with the main process (Linux ``PR_SET_PDEATHSIG``), so a killed run leaves no model behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from vitalflow.errors import ModelError
from vitalflow.runtime.pool import peak_rss_mb


@dataclass(frozen=True)
class WindowRequest:
    """One case's model inputs, as compact as the transform produces them."""

    case_id: int
    series: np.ndarray  # float32 [seconds of the crop, features], normalized
    mask: np.ndarray | None  # uint8, same shape: 1 = recorded (only for a model that reads it)
    static: np.ndarray  # float32 [static features], normalized
    first: np.ndarray  # int64 [windows]: each window's first row in ``series``
    length: int  # seconds per window
    # a decision model that reads the decision context: its per-window example features by name
    # (`vitalflow.model.config.CONTEXT_INPUTS`: setpoints, setpoints_known, context, history)
    context: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the model process says once the model is loaded."""

    uri: str
    card_json: bytes  # the model card as loaded (the main process parses it without TensorFlow)
    load_s: float


def windows_of(a: np.ndarray, first: np.ndarray, length: int) -> np.ndarray:
    """The windows [N, length, features] of a per-second array starting at rows ``first`` (a view).

    >>> windows_of(np.arange(10.0).reshape(5, 2), np.array([0, 2]), 3)[:, :, 0].tolist()
    [[0.0, 2.0, 4.0], [4.0, 6.0, 8.0]]
    """
    if first.size == 0:
        return np.empty((0, length, a.shape[1]), dtype=a.dtype)
    return np.lib.stride_tricks.sliding_window_view(a, length, axis=0)[first].transpose(0, 2, 1)


def predict_request(predictor, request: WindowRequest) -> np.ndarray:
    """A case's predictions in clinical units [windows, targets] (float64) by ``predictor``
    (a `vitalflow.model.predictor.Predictor`), in this process: the windows are cut here."""
    ts = windows_of(request.series, request.first, request.length)
    mask = None if request.mask is None else windows_of(request.mask, request.first, request.length)
    static = np.broadcast_to(request.static, (len(request.first), request.static.shape[0]))
    raw = predictor.predict_normalized(ts, static, mask, context=request.context)
    return outputs_of(predictor, raw, predictor.boosted_probabilities(ts, static, request.context)
                      if predictor.card.task == "decisions" else None, request.context)


def outputs_of(predictor, raw: np.ndarray, boosted: np.ndarray | None = None, context=None) -> np.ndarray:
    """The network's raw output [N, outputs] as the columns `vitalflow.predict.table.output_columns`
    names (float64): a value model's targets in clinical units; a decision model's calibrated event
    probabilities (``boosted``: a stacked model's `Predictor.boosted_probabilities` of the windows),
    then its set-point values in their units (``context``: the windows' decision context)."""
    if getattr(predictor.card, "task", "values") == "decisions":
        d = predictor.decisions_from_raw(raw, boosted, context)
        return np.concatenate([d.event_probability, d.value], axis=1).astype(np.float64)
    from vitalflow.transform.normalize import denormalize_targets

    return np.asarray(denormalize_targets(raw, predictor.spec), np.float64)


def _serve(model_uri: str, conn) -> None:
    """The model process: load, say so (or why not), then answer requests until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from vitalflow.runtime.pool import _die_with_parent

    _die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notes are not our log
    t = time.perf_counter()
    try:
        from vitalflow.model.card import CARD_NAME
        from vitalflow.model.predictor import load_model

        predictor = load_model(model_uri)
        from vitalflow.store import Store

        card_json = Store(predictor.uri).read_bytes(CARD_NAME)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the run's error, said in one line
        conn.send(("error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, ModelError) else str(exc)))
        return
    conn.send(("ready", ModelInfo(predictor.uri, card_json, time.perf_counter() - t)))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            t = time.perf_counter()
            predicted = predict_request(predictor, request)
            conn.send(("ok", (predicted, time.perf_counter() - t, peak_rss_mb())))
        except Exception as exc:  # noqa: BLE001 - this case fails with the reason; the run goes on
            conn.send(("error", f"{type(exc).__name__}: {' '.join(str(exc).split())}"))


class ModelProcess:
    """``predict(request)`` -> (predicted targets in clinical units [N, targets], seconds)."""

    def __init__(self, model_uri: str):
        self.model_uri = model_uri
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(model_uri, child), name="vitalflow-model", daemon=True)
        self._process.start()
        child.close()
        self._info: ModelInfo | None = None
        self.peak_rss_mb = 0.0

    def _receive(self):
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._process.join(5)
            code = self._process.exitcode
            how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
            raise ModelError(f"the model process ({self.model_uri}) died ({how}; out of memory?)") from None

    @property
    def loaded(self) -> bool:
        return self._info is not None

    def ready(self) -> ModelInfo:
        """Wait until the model is loaded; a model that does not load is a `ModelError`."""
        if self._info is None:
            kind, value = self._receive()
            if kind == "error":
                self.close()
                raise ModelError(value)
            self._info = value
        return self._info

    def predict(self, request: WindowRequest) -> tuple[np.ndarray, float]:
        """The case's predictions; a case the model cannot take is a `ModelError` for that case."""
        self.ready()
        self._conn.send(request)
        kind, value = self._receive()
        if kind == "error":
            raise ModelError(f"case {request.case_id}: the model failed: {value}")
        predicted, seconds, rss = value
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        return predicted, seconds

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                pass
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._conn.close()

    def __enter__(self) -> ModelProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
