"""The HTML page: a plain form (it works without JavaScript) that classifies one comment or compares every model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from toxdistill.data.readers import safe_text
from toxdistill.serve.registry import Registry
from toxdistill.serve.views import compare_rows, form_model, render_index, result_view

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, registry: Registry) -> HTMLResponse:
    return render_index(request, registry)


@router.post("/", response_class=HTMLResponse)
def index_post(
    request: Request,
    registry: Registry,
    text: str = Form(""),
    model: str = Form(""),
    compare: str = Form(""),
    api_key: str = Form(""),
) -> HTMLResponse:
    text = safe_text(text)  # a form field can carry what UTF-8 cannot encode, too
    ctx: dict[str, Any] = {"text": text, "selected": model or registry.default, "compare": bool(compare)}
    m = form_model(request, registry, model, api_key, "error", **ctx)
    if isinstance(m, HTMLResponse):
        return m
    if not text.strip():
        return render_index(request, registry, 422, error="type a comment first: the text is empty", **ctx)
    ctx["result"] = result_view(m, text)
    if compare:
        ctx["rows"] = compare_rows(registry, text)
    return render_index(request, registry, **ctx)
