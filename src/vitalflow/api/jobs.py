"""Jobs: pages and API (skeleton)."""
from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request

from vitalflow.api.pages import templates

router = APIRouter()


def install(app: FastAPI) -> None:
    pass


@router.get("/jobs", include_in_schema=False)
async def jobs_page(request: Request):
    return templates.TemplateResponse(request, "jobs.html", {"jobs": []})
