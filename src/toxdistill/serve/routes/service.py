"""The service's own routes: the liveness check and the API docs page."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from toxdistill.serve.schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["service"], summary="Liveness check (runs no model)")
def healthz() -> Health:
    return Health()


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
