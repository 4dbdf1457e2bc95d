"""The API's errors: one exception for a refused request, and the handlers that give every error a JSON body."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from toxdistill.data.readers import safe_text
from toxdistill.serve.limits import RETRY_AFTER_S
from toxdistill.serve.models import QueueTimeout


class ApiError(Exception):
    """A refused API request: answered as ``{"detail": ..., **extra}`` with ``status``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


_UNION_TAGS = {"str", "list[str]"}
# A 422 echoes this many of the validation errors (and says how many there were): the first few say what is
# wrong, and 50,000 bad items would otherwise make the answer tens of times bigger than the request.
MAX_ECHOED_ERRORS = 5
# Characters of an offending string (or of a path part, which can be a client's key) that an error echoes.
MAX_ECHOED_CHARS = 100
# Integers that any JSON client can read back: a 5,000-digit integer cannot even be turned into text.
MAX_ECHOED_INT = 2**53
_OMIT = object()


def _short(text: str) -> str:
    return safe_text(text[:MAX_ECHOED_CHARS] + ("..." if len(text) > MAX_ECHOED_CHARS else ""))


def _short_input(value: Any) -> Any:
    """What an error may echo of the input: a short string, a finite number or a literal; never a container
    (it may be nested 50,000 deep) and never NaN or infinity (JSON has no such values)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _short(value)
    if isinstance(value, int):
        return value if abs(value) <= MAX_ECHOED_INT else _OMIT
    if isinstance(value, float):
        return value if math.isfinite(value) else _OMIT
    return _OMIT


def short_errors(errors: Sequence[dict]) -> list[dict]:
    """The first ``MAX_ECHOED_ERRORS`` errors, each with its type, location, message and a short echo of its input."""
    out = []
    for e in errors[:MAX_ECHOED_ERRORS]:
        loc = [p if isinstance(p, int) else _short(str(p)) for p in e.get("loc", ())][: MAX_ECHOED_ERRORS * 2]
        item: dict[str, Any] = {"type": str(e.get("type", "")), "loc": loc, "msg": _short_msg(e)}
        value = _short_input(e.get("input"))
        if value is not _OMIT:
            item["input"] = value
        ctx = e.get("ctx") or {}
        if isinstance(ctx, dict) and "error" in ctx:
            item["ctx"] = {"error": _short(str(ctx["error"]))}
        out.append(item)
    return out


def _short_msg(e: dict) -> str:
    # A message is short, but a validator's may quote the input; a sentence fits in a few hundred characters.
    msg = str(e.get("msg", "invalid"))
    return safe_text(msg[: MAX_ECHOED_CHARS * 4])


def summarize(errors: list[dict]) -> str:
    """One readable line for a 422, next to FastAPI's full list in ``detail``."""
    if not errors:
        return "invalid request"
    first = errors[0]
    error_type = first.get("type", "")
    # Drop "body" and pydantic's union-branch tags ("list[str]") so the path reads like the JSON.
    loc = [str(p) for p in first.get("loc", ())[1:] if str(p) not in _UNION_TAGS]
    where = ".".join(loc) or "body"
    if error_type == "json_invalid":
        return f"body is not valid JSON: {(first.get('ctx') or {}).get('error', 'decode error')}"
    if error_type == "model_attributes_type" and where == "body":
        return "body must be a JSON object (send Content-Type: application/json)"
    if where == "texts" and error_type in ("list_type", "string_type"):
        return "texts must be a string or a list of strings"
    return f"{where}: {str(first.get('msg', 'invalid')).removeprefix('Value error, ')}"


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=exc.headers)


def queue_timeout_error(exc: QueueTimeout) -> ApiError:
    """503 for a request that waited too long for the model: the server is behind, another try may find room."""
    return ApiError(
        503, f"the model is overloaded: the request {exc}; retry later", headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _queue_timeout(request: Request, exc: QueueTimeout) -> Response:
    err = queue_timeout_error(exc)
    if request.url.path.startswith("/api"):
        return await _api_error(request, err)
    page = f"<!doctype html><title>Busy</title><h1>503 Busy</h1><p>{html.escape(err.detail)}. <a href='/'>Back</a></p>"
    return HTMLResponse(page, status_code=503, headers=err.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers an undecodable body (not UTF-8, not JSON) with 400; to clients that is just
    # malformed JSON, which the API documents as 422.
    if exc.status_code == 400 and request.url.path.startswith("/api/"):
        msg = 'malformed JSON body: send UTF-8 JSON like {"texts": ["..."]}'
        return JSONResponse(
            {"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}], "message": msg}, status_code=422
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Only a short echo of the input: it may hold lone surrogates, NaN, huge numbers or deep nesting, none of
    # which a JSON response can carry, and a count instead of every error when there are many.
    all_errors = exc.errors()
    errors = short_errors(all_errors)
    body: dict[str, Any] = {"detail": errors, "message": summarize(errors)}
    if len(all_errors) > len(errors):
        body["errors_total"] = len(all_errors)
    return JSONResponse(body, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(QueueTimeout)(_queue_timeout)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)
