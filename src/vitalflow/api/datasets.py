"""Datasets: the outputs of ``vitalflow preprocess`` below the app's roots, seen through their cards.

Pages: ``/datasets`` (the list), ``/datasets/{id}`` (counts per split, excluded and failed cases,
observed/filled/defaulted fractions per feature, value histograms, split balance, the cases),
``/datasets/{id}/cases/{case_id}`` (one case's signals over time, imputed stretches shaded).
The same data as JSON under ``/api/datasets``. Ids and reading: `vitalflow.api.data`.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from vitalflow.api import data
from vitalflow.api.pages import templates

router = APIRouter()


def _roots(request: Request) -> tuple[str, ...]:
    return request.app.state.settings.roots


def _open(request: Request, dataset_id: str):
    """The dataset folder and its card, or 400 (not an id) / 404 (no such dataset below the roots)."""
    try:
        folder = data.decode_id(dataset_id, _roots(request), data.DATASET_CARD)
    except data.BadId as exc:
        raise HTTPException(400, str(exc)) from None
    except data.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        return folder, data.read_dataset_card(folder)
    except (OSError, ValueError) as exc:  # a card that does not load: a 404 with the reason
        from vitalflow.errors import redact

        raise HTTPException(404, f"the dataset's card does not load: {redact(str(exc))}") from None


def _case(request: Request, dataset_id: str, case_id: int) -> dict:
    folder, card = _open(request, dataset_id)
    try:
        return data.case_series(folder, card, case_id)
    except data.NotFound as exc:
        raise HTTPException(404, str(exc)) from None


# --- JSON ------------------------------------------------------------------------------------------

@router.get("/api/datasets", tags=["datasets"], summary="Datasets below the app's roots")
def api_datasets(request: Request) -> list[dict]:
    return data.list_datasets(_roots(request))


@router.get("/api/datasets/{dataset_id}", tags=["datasets"], summary="A dataset's card, as the page shows it")
def api_dataset(request: Request, dataset_id: str) -> dict:
    folder, card = _open(request, dataset_id)
    return {"id": dataset_id, **data.dataset_summary(folder, card)}


@router.get("/api/datasets/{dataset_id}/histograms", tags=["datasets"],
            summary="Value histograms per feature, from a bounded sample of windows")
def api_histograms(request: Request, dataset_id: str) -> dict:
    folder, card = _open(request, dataset_id)
    return data.value_histograms(folder, card)


@router.get("/api/datasets/{dataset_id}/cases/{case_id}", tags=["datasets"],
            summary="One case's signals per second (clinical units) and imputed stretches")
def api_case(request: Request, dataset_id: str, case_id: int) -> dict:
    return _case(request, dataset_id, case_id)


# --- pages -----------------------------------------------------------------------------------------

@router.get("/datasets", include_in_schema=False)
def datasets_page(request: Request):
    return templates.TemplateResponse(request, "datasets.html", {
        "datasets": data.list_datasets(_roots(request)), "roots": _roots(request), "depth": data.MAX_DEPTH})


@router.get("/datasets/{dataset_id}", include_in_schema=False)
def dataset_page(request: Request, dataset_id: str):
    folder, card = _open(request, dataset_id)
    summary = data.dataset_summary(folder, card)
    return templates.TemplateResponse(request, "dataset.html", {"id": dataset_id, "d": summary})


@router.get("/datasets/{dataset_id}/cases/{case_id}", include_in_schema=False)
def case_page(request: Request, dataset_id: str, case_id: int):
    series = _case(request, dataset_id, case_id)
    folder = data.decode_id(dataset_id, _roots(request), data.DATASET_CARD)
    return templates.TemplateResponse(request, "dataset_case.html",
                                      {"id": dataset_id, "path": str(folder), "case": series})
