"""The service's own routes: the health checks and the API docs page.

The checks are ``async`` and touch only the app's state: they never wait for a thread of the pool or for the
model, so they answer at once however busy the model is.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from toxdistill.serve.lifecycle import Lifecycle
from toxdistill.serve.schemas import Health

router = APIRouter()
_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "Not ready: models loading, or the server is shutting down"}
}


def _readiness(request: Request) -> JSONResponse:
    lifecycle: Lifecycle = request.app.state.lifecycle
    if lifecycle.is_ready:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": lifecycle.state}, status_code=503, headers={"Connection": "close"})


@router.get(
    "/healthz", response_model=Health, tags=["service"], responses=_NOT_READY,
    summary="Readiness check, as /readyz (runs no model)",
)  # fmt: skip
async def healthz(request: Request) -> JSONResponse:
    return _readiness(request)


@router.get(
    "/readyz", response_model=Health, tags=["service"], responses=_NOT_READY,
    summary="Ready for traffic: models loaded and not shutting down (runs no model)",
)  # fmt: skip
async def readyz(request: Request) -> JSONResponse:
    return _readiness(request)


@router.get("/livez", response_model=Health, tags=["service"], summary="The process is alive (runs no model)")
async def livez() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    # Rendered here from the schema rather than by Swagger UI: Swagger UI comes from a CDN, and a third-party
    # script on this origin could read the API key the page keeps in session storage.
    return HTMLResponse(docs_page(request.app.openapi()))


def docs_page(spec: dict) -> str:
    """Every route of the OpenAPI schema with its summary, a link to the schema and an example call."""
    items = "".join(
        f"<li><code>{html.escape(method.upper())} {html.escape(path)}</code> — {html.escape(op.get('summary', ''))}</li>"
        for path, ops in spec.get("paths", {}).items()
        for method, op in ops.items()
    )
    info = spec.get("info", {})
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>toxdistill API</title>'
        '<link rel="stylesheet" href="/static/style.css"></head><body><main><section class="card">'
        f"<h1>toxdistill API {html.escape(str(info.get('version', '')))}</h1>"
        f"<p>{html.escape(str(info.get('description', '')))}</p>"
        f'<p>The full schema, with every request and response body, is at <a href="/openapi.json">/openapi.json</a>'
        " (load it into any OpenAPI viewer).</p>"
        f'<ul id="routes">{items}</ul>'
        "<pre>curl -s localhost:5000/api/classify -H 'content-type: application/json' \\\n"
        '     -d \'{"texts": ["you are a wonderful person"], "explain": true}\'</pre>'
        '<p><a href="/">Back to the classifier</a></p></section></main></body></html>'
    )
