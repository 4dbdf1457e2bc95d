"""How big a request body may be: an ASGI middleware that answers 413 before any route reads the body."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxdistill.serve.batch import MAX_UPLOAD_BYTES

MAX_BODY_BYTES = 1024 * 1024
# Multipart framing adds a little to the file itself; the file's own limit is checked after parsing.
MAX_UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024


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
        if _declares_too_much(scope, limit):
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


def _declares_too_much(scope: Scope, limit: int) -> bool:
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is None:
        return False
    try:
        return int(declared) > limit
    except ValueError:
        return False  # the server rejects a malformed header itself


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
