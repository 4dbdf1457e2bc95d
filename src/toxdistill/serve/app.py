"""The web app: an HTML page that works without JavaScript, and a JSON API with an OpenAPI schema.

Endpoints that run a model are plain ``def`` so Starlette runs them in its thread pool and the event
loop stays free for /healthz and other requests; each model's lock (see ``models.ServedModel``) keeps
two threads off the same model at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxdistill import __version__
from toxdistill.data.readers import safe_obj, safe_text
from toxdistill.serve.batch import MAX_ROWS, MAX_UPLOAD_BYTES, BatchError, download_name, read_texts, write_csv
from toxdistill.serve.models import ServedModel, default_model
from toxdistill.serve.schemas import MAX_TEXTS, ClassifyRequest, ClassifyResponse, ErrorResponse, Health, ModelsResponse

HERE = Path(__file__).parent
MAX_BODY_BYTES = 1024 * 1024
# Multipart framing adds a little to the file itself; the file's own limit is checked after parsing.
MAX_UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
# Occluded variants one request may ask for: 256 tweets of ~16 words each.
MAX_EXPLAIN_VARIANTS = 4096
BATCH_CHUNK = 256

# Class colours by label meaning, not position, so a run with other label order still reads right.
COLOURS = {"hate": (220, 53, 69), "offensive": (253, 126, 20), "neither": (25, 135, 84)}
NEGATIVE = (13, 110, 253)


class ApiError(Exception):
    def __init__(self, status: int, detail: str, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


class BodyLimit:
    """Refuse request bodies over the limit with 413, whatever Content-Length claims.

    The header is checked first (cheap, no reading); the body is then read up to the limit and
    replayed to the app, which also covers chunked uploads that send no Content-Length.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, upload_paths: tuple[str, ...] = ("/batch",)):
        self.app = app
        self.limit = limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = MAX_UPLOAD_BODY_BYTES if path in self.upload_paths else self.limit
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False  # the server rejects a malformed header itself
            if too_big:
                await _too_large(path, limit, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > limit:
                await _too_large(path, limit, send)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(path: str, limit: int, send: Send) -> None:
    msg = f"request body is larger than {limit // 1024} KiB"
    if path.startswith("/api"):
        body, ctype = json.dumps({"detail": msg}).encode(), b"application/json"
    else:
        body = (
            f"<!doctype html><title>Too large</title><h1>413 Too large</h1><p>{msg}. <a href='/'>Back</a></p>".encode()
        )
        ctype = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def label_colour(name: str) -> tuple[int, int, int]:
    n = name.lower()
    if "hate" in n:
        return COLOURS["hate"]
    if "offens" in n:
        return COLOURS["offensive"]
    return COLOURS["neither"]


def label_css(name: str) -> str:
    n = name.lower()
    return "hate" if "hate" in n else "offensive" if "offens" in n else "neither"


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


_UNION_TAGS = {"str", "list[str]"}


def summarize(errors: list[dict]) -> str:
    """One readable line for a 422, next to FastAPI's full list in ``detail``."""
    if not errors:
        return "invalid request"
    first = errors[0]
    kind = first.get("type", "")
    # Drop "body" and pydantic's union-branch tags ("list[str]") so the path reads like the JSON.
    loc = [str(p) for p in first.get("loc", ())[1:] if str(p) not in _UNION_TAGS]
    where = ".".join(loc) or "body"
    if kind == "json_invalid":
        return f"body is not valid JSON: {(first.get('ctx') or {}).get('error', 'decode error')}"
    if kind == "model_attributes_type" and where == "body":
        return "body must be a JSON object (send Content-Type: application/json)"
    if where == "texts" and kind in ("list_type", "string_type"):
        return "texts must be a string or a list of strings"
    return f"{where}: {str(first.get('msg', 'invalid')).removeprefix('Value error, ')}"


def offline_docs(spec: dict) -> str:
    """A plain list of the API under Swagger UI, removed once Swagger UI has loaded.

    Swagger UI comes from a CDN; on an offline machine the page would otherwise be blank.
    """
    import html

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


def create_app(models: dict[str, ServedModel], run_name: str = "toxdistill") -> FastAPI:
    """An app over already loaded models (load them with ``models.load_models``)."""
    if not models:
        raise ValueError("create_app needs at least one model")
    default = default_model(models)
    names = list(models)
    app = FastAPI(
        title="toxdistill",
        version=__version__,
        description=(
            f"Toxic-comment classifier ({run_name}). Classes: {', '.join(next(iter(models.values())).label_names)}. "
            f"Up to {MAX_TEXTS} texts per request, 1 MiB per body."
        ),
        docs_url=None,  # replaced below by a page that still says something when the CDN is unreachable
        redoc_url=None,
    )
    app.add_middleware(BodyLimit)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(fmt=_fmt, label_css=label_css)
    app.state.models = models

    def get_model(name: str | None) -> ServedModel:
        # Names are only ever dictionary keys: a name is never joined onto a path.
        m = models.get(name or default)
        if m is None:
            raise ApiError(404, f"unknown model {name!r}; valid models: {', '.join(names)}", valid_models=names)
        return m

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers an undecodable body (not UTF-8, not JSON) with 400; to clients that is just
        # malformed JSON, which the API documents as 422.
        if exc.status_code == 400 and request.url.path.startswith("/api/"):
            msg = 'malformed JSON body: send UTF-8 JSON like {"texts": ["..."]}'
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}], "message": msg}, status_code=422
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The errors echo the input, which may hold lone surrogates that no UTF-8 response can carry.
        errors = safe_obj(jsonable_encoder(exc.errors(), custom_encoder={Exception: str}))
        return JSONResponse({"detail": errors, "message": summarize(errors)}, status_code=422)

    # ------------------------------------------------------------------ JSON API
    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness check (runs no model)")
    def healthz() -> Health:
        return Health()

    @app.get(
        "/api/models", response_model=ModelsResponse, tags=["api"], summary="The served models and their test metrics"
    )
    def api_models() -> dict:
        return {"default": default, "models": [m.info() for m in models.values()]}

    @app.post(
        "/api/classify",
        response_model=ClassifyResponse,
        response_model_exclude_none=True,
        tags=["api"],
        summary="Classify one or more comments",
        responses={
            404: {"model": ErrorResponse, "description": "Unknown model"},
            413: {"model": ErrorResponse, "description": "Too many texts or body too large"},
        },
    )
    def api_classify(req: ClassifyRequest) -> dict:
        """Labels use the model's tuned decision offsets; probabilities are calibrated
        (temperature and class bias fitted on validation).
        With ``explain``, each word gets the drop in the predicted class's probability when it is removed."""
        texts = req.text_list()
        if len(texts) > MAX_TEXTS:
            raise ApiError(413, f"{len(texts)} texts in one request; the limit is {MAX_TEXTS}")
        m = get_model(req.model)
        if req.explain:
            cost = sum(m.explain_budget(t) for t in texts)
            if cost > MAX_EXPLAIN_VARIANTS:
                raise ApiError(
                    413,
                    f"explaining these texts needs {cost} model passes; the limit is {MAX_EXPLAIN_VARIANTS}: send fewer texts",
                )
        return {"model": m.name, "results": m.classify(texts, explain=req.explain)}

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        swagger = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="toxdistill API").body).decode()
        return HTMLResponse(swagger.replace("</body>", offline_docs(app.openapi()) + "</body>"))

    # ------------------------------------------------------------------ HTML
    options = [
        {
            "name": n,
            "label": f"{n} — macro F1 {_fmt(m.f1_macro)} · {_fmt(m.throughput, ',.0f')} texts/s",
            "info": m.info(),
        }
        for n, m in models.items()
    ]

    def page(request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        base = {
            "run_name": run_name,
            "options": options,
            "default": default,
            "selected": default,
            "text": "",
            "compare": False,
            "max_upload_mb": MAX_UPLOAD_BYTES // (1024 * 1024),
            "max_rows": MAX_ROWS,
            "labels": next(iter(models.values())).label_names,
        }
        return templates.TemplateResponse(request, "index.html", {**base, **ctx}, status_code=status)

    def result_view(m: ServedModel, text: str) -> dict:
        res, scores = m.explain(text)
        # The floor keeps near-zero scores pale: when no word moves the probability by five points,
        # no word should look decisive just because it is the largest of the small ones.
        peak = max(max((abs(s["score"]) for s in scores), default=0.0), 0.05)
        colour = label_colour(res["label"])
        words = []
        for s in scores:
            rgb = colour if s["score"] >= 0 else NEGATIVE
            alpha = min(1.0, abs(s["score"]) / peak) * 0.85
            words.append({**s, "style": f"background-color: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.2f})"})
        probs = [{"name": n, "p": p, "css": label_css(n)} for n, p in res["probabilities"].items()]
        return {**res, "model": m.name, "css": label_css(res["label"]), "probs": probs, "words": words}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        return page(request)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    def index_post(
        request: Request, text: str = Form(""), model: str = Form(""), compare: str = Form("")
    ) -> HTMLResponse:
        text = safe_text(text)  # a form field can carry what UTF-8 cannot encode, too
        ctx: dict[str, Any] = {"text": text, "selected": model or default, "compare": bool(compare)}
        if model and model not in models:
            return page(request, 404, error=f"unknown model {model!r}; pick one of: {', '.join(names)}", **ctx)
        if not text.strip():
            return page(request, 422, error="type a comment first: the text is empty", **ctx)
        m = models[model or default]
        ctx["result"] = result_view(m, text)
        if compare:
            rows = []
            for other in models.values():
                r = other.classify([text])[0]
                rows.append(
                    {
                        **r,
                        "model": other.name,
                        "css": label_css(r["label"]),
                        "f1_macro": other.f1_macro,
                        "speed": other.throughput,
                    }
                )
            ctx["rows"] = rows
        return page(request, **ctx)

    @app.post("/batch", include_in_schema=False)
    def batch(
        request: Request, file: UploadFile | None = File(None), model: str = Form(""), column: str = Form("")
    ) -> Response:
        ctx: dict[str, Any] = {"batch_selected": model or default, "batch_column": column}
        if model and model not in models:
            return page(request, 404, batch_error=f"unknown model {model!r}; pick one of: {', '.join(names)}", **ctx)
        if file is None or not file.filename:
            return page(request, 422, batch_error="choose a .csv or .txt file to upload", **ctx)
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        try:
            texts, _ = read_texts(file.filename, data, column.strip() or None)
        except BatchError as e:
            return page(request, e.status, batch_error=str(e), **ctx)
        m = models[model or default]
        results: list[dict] = []
        # Chunks take the model lock one at a time, so interactive requests are not stuck behind a big file.
        for i in range(0, len(texts), BATCH_CHUNK):
            results += m.results(*m.logits(texts[i : i + BATCH_CHUNK]))
        body = write_csv(texts, results, m.label_names)
        fname = download_name(file.filename, m.name)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{fname}"'},
        )

    @app.get("/models/{name}", response_class=HTMLResponse, include_in_schema=False)
    def model_card(request: Request, name: str) -> HTMLResponse:
        m = models.get(name)
        if m is None:
            return templates.TemplateResponse(
                request,
                "error.html",
                {"run_name": run_name, "message": f"No model named {name!r}. Models: {', '.join(names)}."},
                status_code=404,
            )
        meta = m.meta
        ctx = {
            "run_name": run_name,
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

    @app.get("/models/{name}/confusion.png", include_in_schema=False)
    def confusion(name: str) -> Response:
        m = models.get(name)
        png = m.confusion_png if m is not None else None
        if png is None:
            return JSONResponse({"detail": f"no confusion image for model {name!r}"}, status_code=404)
        return FileResponse(png, media_type="image/png")

    return app
