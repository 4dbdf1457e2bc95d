"""The hot path: a valid ``POST /api/classify`` (no explanation) answered without FastAPI's routing.

Under load most of the event loop's time per request went to the framework around the endpoint (routing,
dependency solving, two exception middlewares, the exit stack), not to the endpoint itself
(docs/serving.md, "Load"). ``FastClassify`` sits innermost among the app's middlewares, after the key or
origin check, the admission and the body limit: a request it can answer is validated by the same pydantic
schema (from the JSON bytes at once) and scored by the same ``routes.api.classify_texts``; anything else (an
invalid body, ``explain``, an unknown model, too many texts, another content type) is replayed untouched to
the FastAPI route, which gives the documented answer. /openapi.json is the route's, unchanged.
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxdistill.serve.errors import queue_timeout_error
from toxdistill.serve.metrics import CLIENT_GONE
from toxdistill.serve.models import QueueTimeout
from toxdistill.serve.registry import ModelRegistry
from toxdistill.serve.routes.api import classify_texts
from toxdistill.serve.schemas import MAX_TEXTS, ClassifyRequest

PATH = "/api/classify"


def _is_json(scope: Scope) -> bool:
    for k, v in scope.get("headers") or ():
        if k == b"content-type":
            return v.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class FastClassify:
    def __init__(self, app: ASGIApp, registry: ModelRegistry):
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        first = await receive()  # the body limit ahead has gathered the whole body into one message
        req = self._answerable(first)
        if req is None:
            await self.app(scope, _replay(first, receive), send)
            return
        m = self.registry.models[req.model or self.registry.default]
        try:
            body = await classify_texts(m, req.text_list(), receive)
        except QueueTimeout as e:
            err = queue_timeout_error(e)
            await _send_json(send, err.status, {"detail": err.detail}, err.headers)
            return
        if body is None:
            await send({"type": "http.response.start", "status": CLIENT_GONE, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await _send_json(send, 200, body)

    def _answerable(self, msg: Message) -> ClassifyRequest | None:
        """The request, when this path can answer it; None sends it on to the FastAPI route."""
        if msg["type"] != "http.request" or msg.get("more_body", False):
            return None
        try:
            req = ClassifyRequest.model_validate_json(msg.get("body", b""))
        except (ValidationError, ValueError, RecursionError):
            return None
        if req.explain or self.registry.find(req.model) is None or len(req.text_list()) > MAX_TEXTS:
            return None
        return req


def _replay(first: Message, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


async def _send_json(send: Send, status: int, content: dict, headers: dict[str, str] | None = None) -> None:
    # As Starlette's JSONResponse renders it.
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
