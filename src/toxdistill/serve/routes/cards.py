"""Model cards: one page per model (metrics, calibration, training record) and its confusion image."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from toxdistill.serve.registry import Registry
from toxdistill.serve.views import templates

router = APIRouter(include_in_schema=False)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_card(request: Request, registry: Registry, name: str) -> HTMLResponse:
    # Looked up in the loaded models only: a name that is a path ("../..") is just an unknown name.
    m = registry.models.get(name)
    if m is None:
        message = f"No model named {name!r}. Models: {', '.join(registry.names)}."
        return templates.TemplateResponse(
            request, "error.html", {"run_name": registry.run_name, "message": message}, status_code=404
        )
    meta = m.meta
    ctx = {
        "run_name": registry.run_name,
        "m": m,
        "info": m.info(),
        "metrics": m.metrics,
        "train": meta.get("train") or {},
        "stage": json.dumps(meta.get("stage"), indent=2) if meta.get("stage") else None,
        "calibration": meta.get("calibration") or {},
        "has_png": m.confusion_png is not None,
        "labels": m.label_names,
    }
    return templates.TemplateResponse(request, "model.html", ctx)


@router.get("/models/{name}/confusion.png")
def confusion(registry: Registry, name: str) -> Response:
    m = registry.models.get(name)
    png = m.confusion_png if m is not None else None
    if png is None:
        return JSONResponse({"detail": f"no confusion image for model {name!r}"}, status_code=404)
    return FileResponse(png, media_type="image/png")
