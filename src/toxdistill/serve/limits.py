"""What a request may cost: how big its body may be (``BodyLimit``, 413) and how many model requests may be
in progress at once (``Admission``, 429; 503 while the server drains). Both are ASGI middlewares that answer
before any route reads the body."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxdistill.serve.batch import MAX_UPLOAD_BYTES
from toxdistill.serve.lifecycle import Lifecycle

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
    await refuse(send, path, 413, "Too large", f"request body is larger than {limit // 1024} KiB")


async def refuse(send: Send, path: str, status: int, title: str, msg: str, headers: tuple = ()) -> None:
    """Answer ``status`` without running the app: ``{"detail": msg}`` for the API, a short page otherwise."""
    if path.startswith("/api"):
        body, ctype = json.dumps({"detail": msg}).encode(), b"application/json"
    else:
        body = (
            f"<!doctype html><title>{title}</title><h1>{status} {title}</h1><p>{msg}. <a href='/'>Back</a></p>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


# The requests that run a model: the API, and the page's two forms. Everything else (the page itself, the
# cards, /healthz, /metrics) is cheap and always answered.
MODEL_ROUTES = frozenset({("POST", "/api/classify"), ("POST", "/"), ("POST", "/batch")})
# Seconds a refused client is told to wait: a micro-batch takes tens of milliseconds, so within a second the
# requests ahead of it have been answered and new room has opened.
RETRY_AFTER_S = 1
# Seconds a 429 is held before it is sent: nothing to a client that waits Retry-After anyway, and a cap on how
# fast one that does not can make the server refuse it.
REFUSAL_PAUSE_S = 0.05


class Admission:
    """At most ``limit`` model requests in progress (None: no limit); the next one gets 429 with Retry-After
    at once, instead of waiting in a queue that only grows. While the server drains, a new model request gets
    503 (and the connection is closed) while the ones admitted before finish.

    The count covers a request from admission to the end of its answer, its body and its queueing included,
    so ``limit`` bounds the memory held by waiting requests and the latency of the admitted ones."""

    def __init__(self, app: ASGIApp, limit: int | None, lifecycle: Lifecycle):
        self.app = app
        self.limit = limit
        self.lifecycle = lifecycle
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) not in MODEL_ROUTES:
            await self.app(scope, receive, send)
            return
        retry = (b"retry-after", str(RETRY_AFTER_S).encode())
        if self.lifecycle.draining:
            msg = "the server is shutting down; retry on another instance"
            await refuse(send, scope["path"], 503, "Shutting down", msg, (retry, (b"connection", b"close")))
            return
        if self.limit is not None and self.in_flight >= self.limit:
            msg = f"the server is busy: {self.in_flight} requests in progress; retry after {RETRY_AFTER_S} s"
            # A client that retries at once, ignoring Retry-After, would otherwise keep the event loop busy with
            # refusals (measured: 7,000 a second at 200 connections, a third of the throughput lost).
            await asyncio.sleep(REFUSAL_PAUSE_S)
            await refuse(send, scope["path"], 429, "Busy", msg, (retry,))
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
