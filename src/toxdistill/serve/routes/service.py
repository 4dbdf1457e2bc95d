"""The service's own routes: the liveness check and the API docs page."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from toxdistill.serve.schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["service"], summary="Liveness check (runs no model)")
def healthz() -> Health:
    return Health()


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    swagger = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="toxdistill API").body).decode()
    return HTMLResponse(swagger.replace("</body>", offline_docs(request.app.openapi()) + "</body>"))


def offline_docs(spec: dict) -> str:
    """A plain list of the API under Swagger UI, removed once Swagger UI has loaded.

    Swagger UI comes from a CDN; on an offline machine the page would otherwise be blank.
    """
    items = "".join(
        f"<li><code>{html.escape(method.upper())} {html.escape(path)}</code> — {html.escape(op.get('summary', ''))}</li>"
        for path, ops in spec.get("paths", {}).items()
        for method, op in ops.items()
    )
    return (
        '<div id="offline-docs" style="font-family: sans-serif; max-width: 50rem; margin: 2rem auto">'
        "<h1>toxdistill API</h1><p>The interactive docs need cdn.jsdelivr.net, which this browser cannot reach. "
        f'The full schema is at <a href="/openapi.json">/openapi.json</a>.</p><ul>{items}</ul>'
        "<pre>curl -s localhost:5000/api/classify -H 'content-type: application/json' \\\n"
        '     -d \'{"texts": ["you are a wonderful person"], "explain": true}\'</pre></div>'
        "<script>if (window.SwaggerUIBundle) document.getElementById('offline-docs').remove();</script>"
    )
