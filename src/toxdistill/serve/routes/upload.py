"""Batch files from the page: upload a CSV or TXT of comments, download the predictions as CSV."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from toxdistill.serve.batch import MAX_UPLOAD_BYTES, BatchError, download_name, read_texts, write_csv
from toxdistill.serve.registry import Registry
from toxdistill.serve.views import form_model, render_index

# Rows per model call: each chunk takes the model lock on its own, so interactive requests are not stuck
# behind a big file.
BATCH_CHUNK = 256

router = APIRouter(include_in_schema=False)


@router.post("/batch")
def batch(
    request: Request,
    registry: Registry,
    file: UploadFile | None = File(None),
    model: str = Form(""),
    column: str = Form(""),
    api_key: str = Form(""),
) -> Response:
    ctx: dict[str, Any] = {"batch_selected": model or registry.default, "batch_column": column}
    m = form_model(request, registry, model, api_key, "batch_error", **ctx)
    if isinstance(m, Response):
        return m
    if file is None or not file.filename:
        return render_index(request, registry, 422, batch_error="choose a .csv or .txt file to upload", **ctx)
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    try:
        texts, _ = read_texts(file.filename, data, column.strip() or None)
    except BatchError as e:
        return render_index(request, registry, e.status, batch_error=str(e), **ctx)
    results: list[dict] = []
    for i in range(0, len(texts), BATCH_CHUNK):
        results += m.results(*m.logits(texts[i : i + BATCH_CHUNK]))
    body = write_csv(texts, results, m.label_names)
    fname = download_name(file.filename, m.name)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{fname}"'},
    )
