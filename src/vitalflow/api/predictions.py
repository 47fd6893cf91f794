"""Predictions: batch prediction outputs (``vitalflow predict``: folders with a prediction card) and
the inference service's asynchronous job results (``<results>/<jobId>/`` with ``summary.json`` and
``timeline.parquet``) below the app's roots.

Pages: ``/predictions`` (both lists), ``/predictions/{id}`` (a batch output's model and cases, or a
job's timeline), ``/predictions/{id}/cases/{case_id}`` (a case's predicted against recorded
targets over time). JSON under ``/api/predictions``: the timelines are the Parquet columns.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from vitalflow.api import data
from vitalflow.api.pages import templates

router = APIRouter()

#: A batch output (a prediction card) or a job result (summary and timeline).
_MARKERS = (data.PREDICTION_CARD, [data.JOB_SUMMARY, data.JOB_TIMELINE])


def _roots(request: Request) -> tuple[str, ...]:
    return request.app.state.settings.roots


def _folder(request: Request, prediction_id: str):
    last: Exception | None = None
    for marker in _MARKERS:
        try:
            return data.decode_id(prediction_id, _roots(request), marker)
        except data.BadId as exc:
            raise HTTPException(400, str(exc)) from None
        except data.NotFound as exc:
            last = exc
    raise HTTPException(404, str(last))


def _summary(request: Request, prediction_id: str) -> tuple:
    folder = _folder(request, prediction_id)
    try:
        return folder, data.prediction_summary(folder)
    except (OSError, ValueError) as exc:
        from vitalflow.errors import redact

        raise HTTPException(404, f"the prediction output does not load: {redact(str(exc))}") from None


def _timeline(request: Request, prediction_id: str, case_id: int | None) -> tuple:
    folder, summary = _summary(request, prediction_id)
    if (summary["kind"] == "job") != (case_id is None):
        raise HTTPException(404, "a job result has one timeline, a batch output one per case")
    try:
        path = data.case_timeline_path(folder, case_id)
    except data.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return folder, summary, data.timeline(path)


# --- JSON ------------------------------------------------------------------------------------------

@router.get("/api/predictions", tags=["predictions"], summary="Batch outputs and job results below the roots")
def api_predictions(request: Request) -> dict:
    return data.list_predictions(_roots(request))


@router.get("/api/predictions/{prediction_id}", tags=["predictions"],
            summary="A batch output's card (model, cases) or a job result's summary")
def api_prediction(request: Request, prediction_id: str) -> dict:
    return {"id": prediction_id, **_summary(request, prediction_id)[1]}


@router.get("/api/predictions/{prediction_id}/timeline", tags=["predictions"],
            summary="A job result's timeline (the Parquet columns)")
def api_job_timeline(request: Request, prediction_id: str) -> dict:
    return _timeline(request, prediction_id, None)[2]


@router.get("/api/predictions/{prediction_id}/cases/{case_id}", tags=["predictions"],
            summary="A case's timeline of a batch output (the Parquet columns)")
def api_case_timeline(request: Request, prediction_id: str, case_id: int) -> dict:
    return _timeline(request, prediction_id, case_id)[2]


# --- pages -----------------------------------------------------------------------------------------

@router.get("/predictions", include_in_schema=False)
def predictions_page(request: Request):
    return templates.TemplateResponse(request, "predictions.html", {
        "p": data.list_predictions(_roots(request)), "roots": _roots(request), "depth": data.MAX_DEPTH})


@router.get("/predictions/{prediction_id}", include_in_schema=False)
def prediction_page(request: Request, prediction_id: str):
    folder, summary = _summary(request, prediction_id)
    if summary["kind"] == "job":
        timeline = _timeline(request, prediction_id, None)[2]
        return templates.TemplateResponse(request, "prediction_timeline.html", {
            "id": prediction_id, "s": summary, "title": f"Job {summary['job_id']}", "timeline": timeline,
            "back": ("/predictions", "predictions")})
    return templates.TemplateResponse(request, "prediction.html", {"id": prediction_id, "s": summary})


@router.get("/predictions/{prediction_id}/cases/{case_id}", include_in_schema=False)
def prediction_case_page(request: Request, prediction_id: str, case_id: int):
    folder, summary, timeline = _timeline(request, prediction_id, case_id)
    return templates.TemplateResponse(request, "prediction_timeline.html", {
        "id": prediction_id, "s": summary, "title": f"Case {case_id}", "timeline": timeline,
        "back": (f"/predictions/{prediction_id}", f"predictions in {summary['path']}")})
