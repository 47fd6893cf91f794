"""The jobs resource over HTTP: ``POST /jobs``, ``GET /jobs/{jobId}``, ``DELETE /jobs/{jobId}``,
``GET /jobs``; and `submit_job`, which ``POST /invocations`` with an asynchronous body shares.

Answers: a new job 202 with its status document; a repeated jobId 200 with the existing job's
(the jobId is the idempotency key); a malformed body 400; a missing or unknown key or a bad value
422 naming them; a location outside the allowed input prefixes 400; an unknown jobId 404. Every
refusal is ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from vitalflow.errors import one_line
from vitalflow.errors import redact
from vitalflow.serve.jobs import InputRefused, AsyncJobRequest, input_location, status_doc
from vitalflow.serve.queue import STATUSES, JobQueue
from vitalflow.serve.settings import ServeSettings


def submit_job(settings: ServeSettings, queue: JobQueue, body: Any) -> tuple[int, dict[str, Any]]:
    """Validate and queue an asynchronous job request (a parsed JSON body): (HTTP status, document).

    202 and the new job's status document; 200 and the existing job's for a known jobId; 422 for
    a body that is not a valid request (naming the keys); 400 for a location the service may not read.
    """
    if not isinstance(body, dict):
        return 422, {"error": f"a job request is a JSON object, not {type(body).__name__}"}
    try:
        request = AsyncJobRequest.model_validate(body)
    except ValidationError as exc:
        return 422, {"error": redact(one_line(exc))}
    existing = queue.get(request.jobId)
    if existing is not None:
        return 200, status_doc(existing)
    try:
        input_location(settings, request)
    except InputRefused as exc:
        return 400, {"error": str(exc)}
    job, created = queue.submit(request.jobId, request.model_dump(mode="json", exclude_none=True))
    return (202 if created else 200), status_doc(job)


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, allow_nan=False).encode(), status_code=status,
                    media_type="application/json")


def jobs_router(settings: ServeSettings, queue: JobQueue | Callable[[], JobQueue] | None = None) -> APIRouter:
    """The ``/jobs`` routes over ``queue`` (a `JobQueue`, a factory of one, or by default the
    queue at ``settings.database``, opened at the first request)."""
    router = APIRouter(tags=["jobs"])
    opened: list[JobQueue] = []

    def the_queue() -> JobQueue:
        if not opened:
            if isinstance(queue, JobQueue):
                opened.append(queue)
            elif callable(queue):
                opened.append(queue())
            else:
                opened.append(JobQueue(settings.database, settings.lease_s, settings.max_attempts))
        return opened[0]

    @router.post("/jobs")
    async def post_job(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _json({"error": f"the body is not valid JSON ({exc})"}, 400)
        status, doc = await asyncio.to_thread(submit_job, settings, the_queue(), body)
        return _json(doc, status)

    @router.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> Response:
        job = await asyncio.to_thread(the_queue().get, job_id)
        if job is None:
            return _json({"error": f"no job {job_id!r}"}, 404)
        return _json(status_doc(job))

    @router.delete("/jobs/{job_id}")
    async def cancel_job(job_id: str) -> Response:
        job = await asyncio.to_thread(the_queue().cancel, job_id)
        if job is None:
            return _json({"error": f"no job {job_id!r}"}, 404)
        return _json(status_doc(job))  # Cancelled, or the status it finished with

    @router.get("/jobs")
    async def list_jobs(limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0),
                        status: str | None = Query(None)) -> Response:
        if status is not None and status not in STATUSES:
            return _json({"error": f"status {status!r}: one of {', '.join(STATUSES)}"}, 422)
        q = the_queue()
        jobs = await asyncio.to_thread(q.list, limit + 1, offset, status)
        page = [status_doc(j) for j in jobs[:limit]]
        counts = await asyncio.to_thread(q.counts)
        return _json({"jobs": page, "offset": offset, "limit": limit,
                      "next_offset": offset + limit if len(jobs) > limit else None, "counts": counts})

    return router
