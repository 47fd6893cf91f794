"""Models: the MLflow registry (`vitalflow.registry`) as pages and JSON, what ``vitalflow models
list|show|compare|promote`` print.

Pages: ``/models`` (every version: aliases, val_loss, test MAE against persistence, lineage; the
promote form), ``/models/{name}/{version}`` (card, lineage, test metrics against the baselines,
the evaluation report's images), ``/models/compare?a=REF&b=REF``. ``POST /models/promote`` (form)
and ``POST /api/models/promote`` (JSON) point an alias at a version. Images come only from the
version's own ``evaluation/<split>/`` folder (the registry's copy of the model directory).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict

from vitalflow.api import data
from vitalflow.api.pages import templates
from vitalflow.errors import ModelError

router = APIRouter()


def _roots(request: Request) -> tuple[str, ...]:
    return request.app.state.settings.roots


def _http(exc: Exception) -> HTTPException:
    from vitalflow.errors import redact

    status = 404 if isinstance(exc, data.NotFound) else 400
    return HTTPException(status, redact(str(exc)))


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str  # NAME/VERSION (or NAME@ALIAS)
    alias: str = "champion"


# --- JSON ------------------------------------------------------------------------------------------

@router.get("/api/models", tags=["models"], summary="Registered model versions with metrics and lineage")
def api_models(request: Request) -> dict:
    return data.list_models(_roots(request))


@router.get("/api/models/compare", tags=["models"], summary="Two versions side by side on the same test windows")
def api_compare(a: str, b: str) -> dict:
    try:
        return data.compare_versions(a, b)
    except (data.BadId, data.NotFound, ModelError) as exc:
        raise _http(exc) from None


@router.post("/api/models/promote", tags=["models"], summary="Point an alias at a version")
def api_promote(promotion: Promotion) -> dict:
    try:
        return data.promote_version(promotion.reference, promotion.alias)
    except ModelError as exc:
        raise _http(exc) from None


@router.get("/api/models/{name}/{version}", tags=["models"], summary="A version: card, lineage, test metrics")
def api_model(request: Request, name: str, version: str) -> dict:
    try:
        return data.model_detail(name, version, _roots(request))
    except (data.BadId, data.NotFound) as exc:
        raise _http(exc) from None


@router.get("/models/{name}/{version}/evaluation/{split}/{filename}", tags=["models"],
            summary="An image of the version's evaluation report")
def evaluation_image(name: str, version: str, split: str, filename: str):
    try:
        return FileResponse(data.evaluation_image(name, version, split, filename), media_type="image/png")
    except (data.BadId, data.NotFound) as exc:
        raise _http(exc) from None


# --- pages -----------------------------------------------------------------------------------------

@router.get("/models", include_in_schema=False)
def models_page(request: Request, promoted: str | None = None):
    return templates.TemplateResponse(request, "models.html", {"m": data.list_models(_roots(request)),
                                                               "promoted": promoted, "form_error": None})


@router.post("/models/promote", include_in_schema=False)
async def promote_form(request: Request):
    form = await request.form()
    reference, alias = str(form.get("reference") or "").strip(), str(form.get("alias") or "champion").strip()
    try:
        done = data.promote_version(reference, alias)
    except ModelError as exc:
        from vitalflow.errors import redact

        return templates.TemplateResponse(request, "models.html", {
            "m": data.list_models(_roots(request)), "promoted": None, "form_error": redact(str(exc)),
            "form": {"reference": reference, "alias": alias}}, status_code=400)
    text = f"{done['name']}@{alias} -> {done['reference']}" + (
        "" if done["before"] is None else " (it was already)" if done["before"] == done["version"]
        else f" (was {done['name']}/{done['before']})")
    return RedirectResponse("/models?" + urlencode({"promoted": text}), status_code=303)


@router.get("/models/compare", include_in_schema=False)
def compare_page(request: Request, a: str = "", b: str = ""):
    listing = data.list_models(_roots(request))
    result, error = None, None
    if a and b:
        try:
            result = data.compare_versions(a, b)
        except (data.BadId, data.NotFound, ModelError) as exc:
            error = _http(exc).detail
    return templates.TemplateResponse(request, "model_compare.html", {
        "a": a, "b": b, "c": result, "error": error, "versions": listing["versions"]},
        status_code=400 if error else 200)


@router.get("/models/{name}/{version}", include_in_schema=False)
def model_page(request: Request, name: str, version: str):
    try:
        detail = data.model_detail(name, version, _roots(request))
    except (data.BadId, data.NotFound) as exc:
        raise _http(exc) from None
    return templates.TemplateResponse(request, "model.html", {"v": detail})
