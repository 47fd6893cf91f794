"""Jobs: the pages (list, new job forms, a job with its live log) and the REST API (``/api/jobs``).

API (JSON; errors are ``{"error": "<one line>"}``):

- ``GET /api/jobs``: every job, newest first;
- ``POST /api/jobs/{preprocess,train,evaluate,predict}``: start one (201; 422 naming the field for
  bad input: the CLI's messages; a path outside the roots is such an error);
- ``GET /api/jobs/{id}``, ``GET /api/jobs/{id}/log?lines=N`` (text);
- ``POST /api/jobs/{id}/stop`` (SIGTERM: the graceful stop), ``POST /api/jobs/{id}/resume``;
- ``GET /jobs/{id}/events``: server-sent events (``log``: new log lines, ``status``: the job's
  status panel as HTML, ``done`` once the job has ended).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import time
from typing import Optional

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from vitalflow.errors import one_line
from vitalflow.api.commands import (
    KINDS,
    REQUESTS,
    EvaluateRequest,
    PredictRequest,
    PreprocessRequest,
    TrainRequest,
    validate_request,
)
from vitalflow.api.pages import dataset_href, templates
from vitalflow.api.runner import ACTIVE, AppJob, JobError, JobRunner

router = APIRouter()

#: The form of each kind: (field, label, input type, hint).
FORMS: dict[str, list[tuple[str, str, str, str]]] = {
    "preprocess": [
        ("input", "Recordings", "text", "Folder of <caseid>.vital files (relative to the first root, or absolute)"),
        ("clinical", "Clinical table", "text", "CSV, e.g. recordings/clinical.csv"),
        ("output", "Output", "text", "Dataset folder to write (resumes what is there)"),
        ("cases", "Cases", "text", 'e.g. "1-10,17,0022"; empty: all files'),
        ("config", "Run config", "text", "YAML (optional)"),
        ("workers", "Workers", "number", "Worker processes"),
        ("merge", "Merge split files", "checkbox", ""),
        ("retry_failed", "Retry failed cases", "checkbox", ""),
        ("overwrite", "Overwrite", "checkbox", "Delete what is in the output first"),
    ],
    "train": [
        ("dataset", "Dataset", "text", "A verified preprocess output"),
        ("output", "Model directory", "text", "Where the model goes (resumes from its checkpoints)"),
        ("config", "Train config", "text", "YAML (optional; default: built-in)"),
        ("register_model", "Evaluate and register", "checkbox", "In the MLflow registry"),
        ("overwrite", "Overwrite", "checkbox", "Discard checkpoints and model"),
    ],
    "evaluate": [
        ("model", "Model", "text", "NAME@ALIAS, NAME/VERSION or a model directory"),
        ("dataset", "Dataset", "text", "A verified preprocess output made with the model's spec"),
        ("split", "Split", "select:test,validation,train", ""),
        ("output", "Output", "text", "Optional; default: <model>/evaluation/<split>"),
    ],
    "predict": [
        ("model", "Model", "text", "NAME@ALIAS, NAME/VERSION or a model directory"),
        ("input", "Recordings", "text", "Folder of <caseid>.vital files"),
        ("clinical", "Clinical table", "text", "CSV"),
        ("output", "Output", "text", "Predictions folder"),
        ("cases", "Cases", "text", 'e.g. "1-10"; empty: all files'),
        ("config", "Run config", "text", "YAML (optional)"),
        ("workers", "Workers", "number", "Worker processes"),
        ("csv", "CSV tables", "checkbox", ""),
        ("plots", "PNG plots", "checkbox", ""),
        ("overwrite", "Overwrite", "checkbox", ""),
    ],
}
SAGEMAKER_FIELDS = [("target", "Run on", "select:local,sagemaker", "sagemaker: vitalflow launch (s3:// paths)"),
                    ("instance_type", "Instance type", "text", "SageMaker only, e.g. ml.m5.xlarge"),
                    ("instance_count", "Instances", "number", "SageMaker only"),
                    ("spot", "Spot", "checkbox", "SageMaker only")]


def _runner(request: Request) -> JobRunner:
    return request.app.state.runner


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def install(app: FastAPI) -> None:
    """The app-wide error answers the jobs API relies on: ``{"error": ...}`` with the status."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, _runner(request).redact(one_line(exc)))

    @app.exception_handler(JobError)
    async def _job_error(request: Request, exc: JobError) -> Response:
        if "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/"):
            return templates.TemplateResponse(request, "job_error.html", {"message": str(exc)}, status_code=exc.status)
        return _error(exc.status, str(exc))


# -- API -----------------------------------------------------------------------------------------


def _started(request: Request, body) -> JSONResponse:
    job = _runner(request).submit(body)
    return JSONResponse(job.document(), status_code=201, headers={"location": f"/api/jobs/{job.id}"})


@router.get("/api/jobs", tags=["jobs"], summary="Every job, newest first")
def list_jobs(request: Request, limit: int = Query(200, ge=1, le=10_000)) -> dict:
    return {"jobs": [j.document() for j in _runner(request).list(limit)]}


@router.post("/api/jobs/preprocess", tags=["jobs"], status_code=201, summary="Start a preprocessing job")
def start_preprocess(request: Request, body: PreprocessRequest) -> JSONResponse:
    return _started(request, body)


@router.post("/api/jobs/train", tags=["jobs"], status_code=201, summary="Start a training job")
def start_train(request: Request, body: TrainRequest) -> JSONResponse:
    return _started(request, body)


@router.post("/api/jobs/evaluate", tags=["jobs"], status_code=201, summary="Start an evaluation job")
def start_evaluate(request: Request, body: EvaluateRequest) -> JSONResponse:
    return _started(request, body)


@router.post("/api/jobs/predict", tags=["jobs"], status_code=201, summary="Start a batch prediction job")
def start_predict(request: Request, body: PredictRequest) -> JSONResponse:
    return _started(request, body)


@router.get("/api/jobs/{job_id}", tags=["jobs"], summary="One job: status, progress, command")
def get_job(request: Request, job_id: str) -> dict:
    return _runner(request).get(job_id).document()


@router.get("/api/jobs/{job_id}/log", tags=["jobs"], summary="The end of a job's log (text; kept after it ends)",
            response_class=PlainTextResponse)
def job_log(request: Request, job_id: str, lines: int = Query(200, ge=1, le=100_000)) -> PlainTextResponse:
    return PlainTextResponse("\n".join(_runner(request).log_tail(job_id, lines)) + "\n")


@router.post("/api/jobs/{job_id}/stop", tags=["jobs"], summary="Stop a job (SIGTERM: the graceful stop, exit 75)")
def stop_job(request: Request, job_id: str) -> dict:
    return _runner(request).stop(job_id).document()


@router.post("/api/jobs/{job_id}/resume", tags=["jobs"], summary="Run a stopped, failed or interrupted job again")
def resume_job(request: Request, job_id: str) -> dict:
    return _runner(request).resume(job_id).document()


# -- pages ---------------------------------------------------------------------------------------


def _view(job: AppJob, request: Request) -> dict:
    """What the templates show of a job."""
    settings = request.app.state.settings
    link = None
    if job.kind == "preprocess" and job.status == "succeeded" and job.output:
        link = dataset_href(job.output, settings.roots)
    cases = job.progress.get("cases") or {}
    epoch = job.progress.get("epoch") or {}
    if cases.get("total"):
        fraction = cases["done"] / cases["total"]
        text = f"{cases['done']}/{cases['total']} cases, {cases.get('windows') or 0} windows"
        if cases.get("eta_s") is not None and job.status == "running":
            text += f", ETA {time.strftime('%H:%M:%S', time.gmtime(cases['eta_s']))}"
    elif epoch:
        fraction = epoch["epoch"] / max(epoch["epochs"], 1)
        text = f"epoch {epoch['epoch']}/{epoch['epochs']}: loss {epoch['loss']:.4f}, val_loss {epoch['val_loss']:.4f}"
    else:
        fraction, text = None, ""
    redact = _runner(request).redact
    return {"job": job, "command": redact(job.command()), "error": redact(job.error) if job.error else None,
            "dataset_link": link, "fraction": fraction, "progress_text": text,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created)),
            "history": job.progress.get("history", [])}


@router.get("/jobs", include_in_schema=False)
def jobs_page(request: Request):
    jobs = [_view(j, request) for j in _runner(request).list()]
    return templates.TemplateResponse(request, "jobs.html", {"jobs": jobs, "kinds": KINDS})


@router.get("/jobs/rows", include_in_schema=False)
def jobs_rows(request: Request):
    jobs = [_view(j, request) for j in _runner(request).list()]
    return templates.TemplateResponse(request, "jobs_rows.html", {"jobs": jobs})


def _form_page(request: Request, kind: str, values: dict, error: Optional[str] = None, status: int = 200):
    if kind not in REQUESTS:
        raise JobError(f"no job kind {kind!r}: one of {', '.join(KINDS)}", 404)
    defaults = {name: f.default for name, f in REQUESTS[kind].model_fields.items()
                if f.default is not None and not callable(f.default)}
    return templates.TemplateResponse(
        request, "job_new.html",
        {"kind": kind, "kinds": KINDS, "fields": FORMS[kind], "sagemaker_fields": SAGEMAKER_FIELDS,
         "values": {**defaults, **values}, "error": error, "roots": request.app.state.settings.roots},
        status_code=status)


@router.get("/jobs/new", include_in_schema=False)
def new_job_page(request: Request, kind: str = "preprocess"):
    return _form_page(request, kind, {})


@router.post("/jobs/new/{kind}", include_in_schema=False)
async def new_job(request: Request, kind: str):
    if kind not in REQUESTS:
        raise JobError(f"no job kind {kind!r}: one of {', '.join(KINDS)}", 404)
    form = await request.form()
    model = REQUESTS[kind]
    data: dict = {}
    for name, f in model.model_fields.items():
        if name == "kind":
            continue
        if f.annotation is bool:
            data[name] = form.get(name) in ("on", "true", "1")
        elif form.get(name) not in (None, ""):
            data[name] = str(form.get(name))
    try:
        job_request = validate_request(kind, data, request.app.state.settings.roots)
    except ValidationError as exc:
        message = _runner(request).redact(one_line(exc))
        return _form_page(request, kind, data, message, status=422)
    job = _runner(request).submit(job_request)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/jobs/{job_id}", include_in_schema=False)
def job_page(request: Request, job_id: str):
    return templates.TemplateResponse(request, "job.html", _view(_runner(request).get(job_id), request))


@router.post("/jobs/{job_id}/stop", include_in_schema=False)
def stop_from_page(request: Request, job_id: str):
    _runner(request).stop(job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/resume", include_in_schema=False)
def resume_from_page(request: Request, job_id: str):
    _runner(request).resume(job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _event(name: str, data: str) -> str:
    """One server-sent event; every line of ``data`` its own ``data:`` field."""
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


@router.get("/jobs/{job_id}/events", tags=["jobs"], summary="Live log lines and status (server-sent events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Events `log` (new log lines, HTML-escaped), `status` (the status "
                                            "panel, HTML) and `done` (the job has ended; the stream closes)."}})
async def job_events(request: Request, job_id: str, tail: int = Query(64 * 1024, ge=0, le=1 << 20)):
    runner = _runner(request)
    runner.get(job_id)  # 404 for an unknown job
    path = runner.log_path(job_id)

    async def events():
        offset = max(0, path.stat().st_size - tail) if path.exists() else 0
        skip_partial = offset > 0
        last_status = None
        while True:
            if await request.is_disconnected():
                return
            lines = []
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read(1 << 20)
                end = data.rfind(b"\n")
                if end >= 0:
                    offset += end + 1
                    lines = data[: end + 1].decode("utf-8", "replace").splitlines()
                    if skip_partial:
                        lines, skip_partial = lines[1:], False
            if lines:
                yield _event("log", "\n".join(html.escape(runner.redact(line)) for line in lines) + "\n")
            job = runner.get(job_id)
            status = templates.get_template("job_status.html").render({"request": request, **_view(job, request)})
            if status != last_status:
                last_status = status
                yield _event("status", status)
            if job.status not in ACTIVE and not lines:
                yield _event("done", job.status)
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
