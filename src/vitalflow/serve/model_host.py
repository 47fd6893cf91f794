"""The served model: loaded once in a background thread, then called through a micro-batcher.

`ModelHost.start()` resolves and loads the model (``load_model(resolve_model(reference))``) in a
thread, so the HTTP server answers ``/ping`` (503, "loading") at once; the load ends with a warm-up
that traces Keras' predict function for the batch sizes it will see, so the first request is as
fast as the rest. ``state`` is then ``ready``, or ``failed`` with the reason.

Synchronous requests do not call ``keras.Model.predict`` (~50 ms of per-call overhead: a data
adapter, callbacks and a progress loop around a 2 ms network) but ``predict_on_batch`` (the
same compiled function, without that overhead). Requests that arrive while the model is busy are
grouped: one model call answers every window queued since the last call (up to `max_windows`),
so concurrent clients share calls instead of queueing one by one, and a lone request is never
delayed by waiting for company. Model calls run one at a time in one thread (TensorFlow uses both
cores inside a call).

Small batches run XLA-compiled. ``predict_on_batch`` of one window costs ~4.4 ms on 2 cores, most of
it TensorFlow's per-op dispatch around the LSTMs' 75 steps; the same network compiled by XLA
(``tf.function(jit_compile=True)``) answers in ~1.7 ms (bench/serve_sync.py, README "Serving").
XLA compiles per input shape (~1.2 s each), so batches of up to 8 windows are padded with zero rows
to 1, 2, 4 or 8 and the larger ones keep ``predict_on_batch`` (where the two are equally fast). The
four shapes compile after the service is ready, in a low-priority thread, so ``/ping`` is never
delayed: until a shape is compiled its batches take ``predict_on_batch``. A model XLA cannot compile
keeps ``predict_on_batch`` for every batch (logged once). Outputs agree with ``predict_on_batch``
to float32 rounding (~2e-6).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from vitalflow.errors import VitalflowError, one_line

if TYPE_CHECKING:
    from vitalflow.model.predictor import Predictor

log = logging.getLogger("vitalflow.serve")

LOADING, READY, FAILED = "loading", "ready", "failed"
XLA_BATCHES = (1, 2, 4, 8)  # batch sizes compiled by XLA; a smaller batch is padded up to the next one


class ModelUnavailable(VitalflowError):
    """The model is still loading, or its load failed (the message says which and why)."""


@dataclass
class _Pending:
    timeseries: np.ndarray
    static: np.ndarray
    mask: np.ndarray | None
    future: asyncio.Future
    context: dict[str, np.ndarray] | None = None  # a decision model's context inputs


def _load(reference: str) -> Predictor:
    from vitalflow.model.predictor import load_model
    from vitalflow.registry.resolve import resolve_model

    return load_model(resolve_model(reference))


class ModelHost:
    def __init__(self, reference: str, loader: Callable[[str], Predictor] = _load,
                 redact: Callable[[str], str] = lambda text: text, max_windows: int = 256) -> None:
        self.reference, self._loader, self._redact, self.max_windows = reference, loader, redact, max_windows
        self.state, self.error, self.predictor = LOADING, None, None
        self.load_seconds: float | None = None
        self._ready = threading.Event()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._consumer: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vitalflow-model")
        self._compiled: dict[int, Callable] = {}  # batch size -> the XLA-compiled network (filled once ready)

    # -- loading -------------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._load_now, name="vitalflow-model-load", daemon=True).start()

    def _load_now(self) -> None:
        t = time.perf_counter()
        try:
            predictor = self._loader(self.reference)
            self._warm_up(predictor)
        except Exception as exc:  # any failure is the service's state, reported by /ping
            message = str(exc) if isinstance(exc, VitalflowError) else f"{type(exc).__name__}: {exc}"
            self.error = self._redact(" ".join(message.split()))
            self.state = FAILED
            log.error("model %s did not load: %s", self.reference, self.error)
        else:
            self.predictor, self.load_seconds = predictor, time.perf_counter() - t
            self.state = READY
            log.warning("model %s loaded in %.1f s", self.reference, self.load_seconds)
            threading.Thread(target=self._compile_small_batches, args=(predictor,), name="vitalflow-xla",
                             daemon=True).start()
        finally:
            self._ready.set()

    def _warm_up(self, predictor: Predictor) -> None:
        """Trace the predict function for one window, then for a varying batch (Keras retraces once
        per new shape until it relaxes the batch dimension)."""
        for n in (1, 2, 3):
            self._call(predictor, *self._zeros(predictor, n))

    @staticmethod
    def _zeros(predictor: Predictor, n: int) -> tuple:
        """``n`` windows of zeros as `_call`'s arguments after the predictor (timeseries, static, mask, context)."""
        card = predictor.card
        window = np.zeros((n, card.window_s, len(card.timeseries)), np.float32)
        return (window, np.zeros((n, len(card.static)), np.float32), window if "mask" in card.inputs else None,
                {name: np.zeros((n, *shape), np.float32) for name, shape in predictor.context_shapes.items()} or None)

    @property
    def compiled_batches(self) -> list[int]:
        """The batch sizes whose XLA compilation has finished (all of `XLA_BATCHES` once warm)."""
        return sorted(self._compiled)

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def require(self) -> Predictor:
        if self.state == READY:
            return self.predictor  # type: ignore[return-value]
        if self.state == FAILED:
            raise ModelUnavailable(f"the model did not load: {self.error}")
        raise ModelUnavailable("the model is still loading (GET /ping says when it is ready)")

    # -- predicting ----------------------------------------------------------------------------
    def _call(self, predictor: Predictor, timeseries: np.ndarray, static: np.ndarray, mask: np.ndarray | None,
              context: dict[str, np.ndarray] | None = None) -> np.ndarray:
        inputs = predictor.network_inputs(timeseries, static, mask, context)
        n = len(timeseries)
        size = next((b for b in XLA_BATCHES if b >= n), None)
        compiled = self._compiled.get(size) if size else None
        if compiled is None:
            return np.asarray(predictor.model.predict_on_batch(inputs))
        if size > n:
            inputs = {name: np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
                      for name, x in inputs.items()}
        return np.asarray(compiled(inputs))[:n]

    def _compile_small_batches(self, predictor: Predictor) -> None:
        """XLA-compile the network for each of `XLA_BATCHES` (one function per size, so a request
        never waits on another size's compilation), at low priority; see the module's doc."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except OSError:
            pass
        import tensorflow as tf

        model = predictor.model
        for size in XLA_BATCHES:
            compiled = tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)
            try:
                compiled(predictor.network_inputs(*self._zeros(predictor, size)))
            except Exception as exc:  # noqa: BLE001 - any XLA failure leaves predict_on_batch in place
                log.warning("model %s: XLA could not compile it (%s: %s); every batch uses predict_on_batch",
                            self.reference, type(exc).__name__, one_line(exc)[:300])
                return
            self._compiled[size] = compiled

    async def predict_normalized(self, timeseries: np.ndarray, static: np.ndarray,
                                 mask: np.ndarray | None = None,
                                 context: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Normalized inputs ``[N, window, features]``, ``[N, static]`` (and a decision model's
        ``context``) -> the network's raw output ``[N, outputs]``."""
        self.require()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.get_running_loop().create_task(self._consume())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(timeseries, static, mask, future, context))
        return await future

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            windows = len(batch[0].timeseries)
            while not queue.empty() and windows < self.max_windows:
                item = queue.get_nowait()
                batch.append(item)
                windows += len(item.timeseries)
            await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        predictor = self.predictor
        ts = np.concatenate([p.timeseries for p in group]) if len(group) > 1 else group[0].timeseries
        st = np.concatenate([p.static for p in group]) if len(group) > 1 else group[0].static
        mask = None
        if group[0].mask is not None:
            mask = np.concatenate([p.mask for p in group]) if len(group) > 1 else group[0].mask
        context = None
        if group[0].context is not None:
            context = {name: np.concatenate([p.context[name] for p in group]) for name in group[0].context}
        try:
            out = await loop.run_in_executor(self._executor, self._call, predictor, ts, st, mask, context)
        except Exception as exc:
            for p in group:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        start = 0
        for p in group:
            n = len(p.timeseries)
            if not p.future.done():
                p.future.set_result(out[start:start + n])
            start += n

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
