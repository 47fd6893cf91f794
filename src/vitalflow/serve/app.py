"""The HTTP service: SageMaker's container contract (``GET /ping``, ``POST /invocations``) and,
when the asynchronous job modules are installed, the jobs API (``/jobs``).

``POST /invocations`` by ``Content-Type``:

- ``application/json`` ``{"timeseries", "static", "units"[, "mask"]}`` -> the 8 targets per window
  (`vitalflow.serve.inputs`); a JSON object with ``"jobId"`` is an asynchronous job (FeMo format);
- ``application/x-npy`` a NumPy array ``[300, 16]`` or ``[N, 300, 16]``, with ``static`` and
  ``units`` in the query -> the same answer (JSON, or ``.npy`` ``[N, 8]`` with
  ``Accept: application/x-npy``);
- ``application/x-vital`` or ``application/octet-stream``: a ``.vital`` recording, the patient's
  features in the query (``age``, ``sex``, ``weight``, ...) -> its prediction timeline (JSON, or
  CSV / Parquet by ``Accept``).

Every refusal is ``{"error": "<one line>"}`` with a 4xx status; the service stays healthy.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from vitalflow import __version__
from vitalflow.errors import CaseDataError, VitalflowError, VitalReadError, one_line, redact
from vitalflow.serve import jobs_api
from vitalflow.serve.auth import BearerAuth, BodyLimit
from vitalflow.serve.inputs import (
    CLINICAL,
    InputRejected,
    context_input,
    mask_input,
    model_inputs,
    parse_static_query,
    parse_windows_request,
    read_npy,
)
from vitalflow.serve.jobs import InputRefused, AsyncJobRequest, run_job, status_doc
from vitalflow.serve.model_host import READY, ModelHost, ModelUnavailable
from vitalflow.serve.queue import ServiceJob, JobQueue
from vitalflow.serve.settings import ServeSettings
from vitalflow.serve.worker import WorkerSupervisor
from vitalflow.predict.model_process import outputs_of
from vitalflow.predict.table import context_inputs, output_columns

log = logging.getLogger("vitalflow.serve")

JSON, NPY, VITAL, OCTETS = "application/json", "application/x-npy", "application/x-vital", "application/octet-stream"
CSV, PARQUET = "text/csv", "application/vnd.apache.parquet"
CONTENT_TYPES = (JSON, NPY, VITAL, OCTETS)
#: Query parameters of an .npy request; a .vital request's are the patient's features.
NPY_QUERY = ("static", "units")


class Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, allow_nan=False).encode(), status_code=status, media_type=JSON)


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepts(request: Request, media_type: str) -> bool:
    return any(_media_type(part) == media_type for part in request.headers.get("accept", "").split(","))


class AsyncJobs:
    """The asynchronous jobs: one queue (opened at the first use) serves both the ``/jobs`` router
    and ``/invocations``; the lifespan starts and stops the workers. In a SageMaker container
    (``settings.sagemaker``) SageMaker's asynchronous endpoint is the queue: it posts each request
    object to ``/invocations`` and stores what the call returns, so there a job runs inside the
    call (`run_here`) and no workers start."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.supervisor = None
        self._queue = None
        self.submit = jobs_api.submit_job
        self.router = jobs_api.jobs_router(settings, self.queue)

    def queue(self) -> JobQueue:
        if self._queue is None:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            self._queue = JobQueue(self.settings.database, self.settings.lease_s, self.settings.max_attempts)
        return self._queue

    def start(self) -> None:
        if self.settings.sagemaker:
            return
        self.queue()
        self.supervisor = WorkerSupervisor(self.settings)
        self.supervisor.start()

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()

    def run_here(self, predictor, document: dict) -> tuple[int, dict]:
        """Run a job in this call (SageMaker's asynchronous endpoint): 200 and the Completed
        status document, or 4xx with the Failed one (SageMaker writes it to the failure path)."""
        try:
            request = AsyncJobRequest.model_validate(document)
        except ValidationError as exc:
            return 422, {"jobId": document.get("jobId"), "status": "Failed", "error": one_line(exc)}
        now = time.time()
        job = ServiceJob(job_id=request.jobId, request=document, status="InProgress", attempts=1, lease_owner=None,
                  lease_expires=None, heartbeat_at=None, submitted_at=now, started_at=now, finished_at=None,
                  result=None, error=None, completions=0, notified=False)
        try:
            result = run_job(self.settings, predictor, job)
        except (VitalflowError, InputRefused) as exc:
            failed = replace(job, status="Failed", finished_at=time.time(), error=redact(str(exc)))
            return (400 if isinstance(exc, InputRefused) else 422), status_doc(failed)
        return 200, status_doc(replace(job, status="Completed", finished_at=time.time(), result=result))


def create_app(settings: ServeSettings, host: ModelHost | None = None,
               jobs: Callable[[ServeSettings], AsyncJobs] = AsyncJobs) -> FastAPI:
    """The service for ``settings``. ``host`` (default: a `ModelHost` loading ``settings.model``)
    and ``jobs`` are injected by tests; the lifespan starts the model's load and the job workers."""
    secrets = (settings.token,)
    model = host or ModelHost(settings.model, redact=lambda text: redact(text, secrets))
    async_jobs = jobs(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        model.start()
        async_jobs.start()
        try:
            yield
        finally:
            async_jobs.stop()
            model.close()

    app = FastAPI(title="vitalflow", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.model, app.state.jobs, app.state.settings = model, async_jobs, settings

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return _json({"error": redact(one_line(exc.message), secrets)}, exc.status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _json({"error": redact(one_line(exc.detail), secrets)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _json({"error": redact(one_line(exc), secrets)}, 422)

    @app.get("/ping")
    async def ping() -> Response:
        """200 when the model is loaded (with the batch sizes XLA has compiled so far: `model_host`);
        503 while it loads, or after its load failed (with the reason)."""
        if model.state == READY:
            return _json({"status": "ready", "compiled_batches": model.compiled_batches})
        document = {"status": model.state}
        if model.error:
            document["error"] = model.error
        return _json(document, 503)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        """A synchronous prediction (JSON, .npy or a .vital recording), or an asynchronous job (JSON with jobId)."""
        media_type = _media_type(request.headers.get("content-type"))
        if media_type not in CONTENT_TYPES:
            raise Refused(415, f"Content-Type {media_type or '(none)'!r} is not one of {', '.join(CONTENT_TYPES)}")
        body = await request.body()
        try:
            if media_type == JSON:
                document = _parse_json(body)
                if "jobId" in document:
                    return await _submit(document)
                return await _windows_json(request, document)
            if media_type == NPY:
                return await _windows_npy(request, body)
            return await _recording(request, body)
        except InputRejected as exc:
            raise Refused(422, str(exc)) from None
        except ModelUnavailable as exc:
            raise Refused(503, str(exc)) from None

    async def _submit(document: dict) -> Response:
        if settings.sagemaker:
            status, doc = await asyncio.to_thread(async_jobs.run_here, model.require(), document)
        else:
            status, doc = await asyncio.to_thread(async_jobs.submit, settings, async_jobs.queue(), document)
        return _json(doc, status)

    async def _windows_json(request: Request, document: dict) -> Response:
        if request.query_params:
            raise Refused(422, f"query: unknown parameter(s) {', '.join(sorted(request.query_params))} "
                               "(a JSON request carries everything in its body)")
        predictor = model.require()
        parsed = parse_windows_request(document)
        length = predictor.card.window_s
        ts, st = model_inputs(parsed.timeseries, parsed.static, parsed.units, predictor.spec, length)
        mask = _mask(predictor, parsed.mask, len(ts))
        context = context_input(parsed.context, context_inputs(predictor.card), len(ts), predictor.spec)
        return await _answer(request, predictor, ts, st, mask, context)

    async def _windows_npy(request: Request, body: bytes) -> Response:
        unknown = sorted(set(request.query_params) - set(NPY_QUERY))
        if unknown:
            raise Refused(422, f"query: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(NPY_QUERY)})")
        if "static" not in request.query_params:
            raise Refused(422, "query: static missing (the 6 static features, comma-separated, e.g. "
                               "?static=63,F,160,58,22.7,2)")
        predictor = model.require()
        array = read_npy(body)
        units = request.query_params.get("units", CLINICAL)
        static = parse_static_query(request.query_params["static"])
        ts, st = model_inputs(array, static, units, predictor.spec, predictor.card.window_s)
        if context_inputs(predictor.card):
            raise Refused(422, "this model reads the decision context, which a .npy request cannot carry: send JSON "
                               "with \"context\", or the .vital recording")
        return await _answer(request, predictor, ts, st, _mask(predictor, None, len(ts)))

    def _mask(predictor, mask: Any, windows: int) -> np.ndarray | None:
        if "mask" not in predictor.card.inputs:
            return None
        if mask is None:
            raise Refused(422, "mask: this model reads the mask channels: send \"mask\" (0/1, the shape of "
                               "timeseries) in a JSON request")
        return mask_input(mask, windows, predictor.spec, predictor.card.window_s)

    async def _answer(request: Request, predictor, ts: np.ndarray, st: np.ndarray, mask, context=None) -> Response:
        network = model.predict_normalized(ts, st, mask, context)
        if predictor.card.task == "decisions":  # a stacked model's XGBoost member (None otherwise), beside the network
            normalized, boosted = await asyncio.gather(
                network, asyncio.to_thread(predictor.boosted_probabilities, ts, st, context))
        else:
            normalized, boosted = await network, None
        predictions = outputs_of(predictor, normalized, boosted, context)
        names, units = (list(x) for x in zip(*output_columns(predictor.card)))
        if _accepts(request, NPY):
            buffer = io.BytesIO()
            np.save(buffer, predictions.astype(np.float32), allow_pickle=False)
            return Response(buffer.getvalue(), media_type=NPY,
                            headers={"x-targets": ",".join(names), "x-units": ",".join(units)})
        return _json({"targets": names, "units": units, "predictions": predictions.tolist()})

    async def _recording(request: Request, body: bytes) -> Response:
        from vitalflow.predict.recording import predict_recording

        predictor = model.require()
        if not body:
            raise Refused(400, "body: empty (send the .vital recording's bytes)")
        patient = dict(request.query_params)
        try:
            table = await asyncio.to_thread(predict_recording, body, patient, predictor)
        except VitalReadError as exc:
            raise Refused(400, str(exc)) from None
        except CaseDataError as exc:
            raise Refused(422, str(exc)) from None
        if _accepts(request, CSV):
            return Response(table.csv(), media_type=CSV)
        if _accepts(request, PARQUET):
            return Response(table.parquet(), media_type=PARQUET)
        return _json(timeline_document(table))

    app.include_router(async_jobs.router)

    app.add_middleware(BodyLimit, max_bytes=int(settings.max_payload_mb * 1e6))
    app.add_middleware(BearerAuth, token=settings.token)  # outermost: no body is read without the token
    return app


def _parse_json(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise Refused(400, "malformed JSON: the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Refused(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(document, dict):
        raise Refused(422, f"expected a JSON object, got {type(document).__name__}")
    return document


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def timeline_document(table) -> dict:
    """A `CaseTable` as JSON: one entry per window's target second; ``recorded`` is null where
    nothing was recorded."""
    from vitalflow.predict.table import iso_utc

    return {
        "targets": [name for name, _ in table.targets],
        "units": [unit for _, unit in table.targets],
        "recording_start_utc": iso_utc(table.start_unix),
        "rows": table.rows,
        "time_s": table.time_s.astype(int).tolist(),
        "predictions": table.predicted.tolist(),
        "recorded": [[_number(v) for v in row] for row in table.recorded],
    }
