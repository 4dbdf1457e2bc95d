"""The API's errors: one exception for a refused request, and the handlers that give every error a JSON body."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from toxdistill.data.readers import safe_obj


class ApiError(Exception):
    """A refused API request: answered as ``{"detail": ..., **extra}`` with ``status``."""

    def __init__(self, status: int, detail: str, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


_UNION_TAGS = {"str", "list[str]"}


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
    return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status)


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
    # The errors echo the input, which may hold lone surrogates that no UTF-8 response can carry.
    errors = safe_obj(jsonable_encoder(exc.errors(), custom_encoder={Exception: str}))
    return JSONResponse({"detail": errors, "message": summarize(errors)}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)
