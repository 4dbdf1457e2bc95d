"""Running an app under uvicorn: the limits on slow clients, and a stop that drains and exits cleanly.

``run`` serves an app on a socket that is already bound (the CLI binds it before loading the models, so a
busy port fails fast, and starts listening only once they are loaded). uvicorn itself has no timeout for a
request that arrives slowly: a connection that sends nothing, or trickles its headers or body a byte at a
time, stays open for ever and holds a graceful shutdown. ``timed_protocol`` adds the two read deadlines;
``DrainingServer`` turns SIGTERM and Ctrl+C into a drain (readiness goes to 503, new model requests get 503,
in-flight ones finish within ``graceful_timeout``) and returns normally, where uvicorn re-raises the signal
and the process dies with status 143 before its clean-up runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from toxdistill.serve.lifecycle import Lifecycle, ServeLimits

REQUEST_TIMEOUT = 408


def _answer(transport: asyncio.BaseTransport, status: int, reason: str, detail: str) -> None:
    body = ('{"detail": "' + detail + '"}').encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(Exception):  # the client may be gone already
        transport.write(head + body)  # type: ignore[attr-defined]
    transport.close()


def timed_protocol(base: type, header_timeout: float, body_timeout: float) -> type:
    """uvicorn's HTTP protocol class ``base`` (h11 or httptools) with read deadlines: the request's head within
    ``header_timeout`` s (counted from the connection, or from the first byte after the last answer on a
    kept-alive one), its body within ``body_timeout`` s of the head. A request past either gets 408 and the
    connection is closed, which also ends its ASGI task (its ``receive`` reports the disconnect). A silent
    connection is closed without an answer. On shutdown, a request whose body has not all arrived is not yet
    admitted: it gets 503 and its connection is closed, so it cannot hold the drain."""

    class TimedProtocol(base):
        _deadline: asyncio.TimerHandle | None = None
        _phase = ""  # "head" or "body": what the deadline is waiting for
        _seen = False  # bytes of the next request have arrived

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm("head", header_timeout)

        def data_received(self, data: bytes) -> None:
            self._seen = True
            super().data_received(data)
            self._follow()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._seen = False
            self._follow()

        def shutdown(self) -> None:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and cycle.more_body and not cycle.response_started:
                self._disarm()
                _answer(self.transport, 503, "Service Unavailable", "the server is shutting down")
                return
            super().shutdown()

        def _follow(self) -> None:
            """Point the deadline at what the connection is waiting for now."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                if not self._seen and cycle is not None:
                    self._disarm()  # kept alive and silent: uvicorn's keep-alive timer covers it
                elif self._seen and self._phase != "head":
                    self._arm("head", header_timeout)  # the next request has begun
            elif cycle.more_body:
                if self._phase != "body":
                    self._arm("body", body_timeout)
            else:
                self._disarm()  # the request is all here: the app's time is not the client's

        def _arm(self, phase: str, seconds: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._phase = ""

        def _expired(self) -> None:
            self._deadline = None
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            cycle = self.cycle
            answered = cycle is not None and cycle.response_started and not cycle.response_complete
            if (self._phase == "head" and not self._seen) or answered:
                transport.close()  # nothing to answer, or an answer already under way
            else:
                what = "headers" if self._phase == "head" else "body"
                _answer(transport, REQUEST_TIMEOUT, "Request Timeout", f"the request {what} took too long to arrive")
            self._phase = ""

    TimedProtocol.__name__ = f"Timed{base.__name__}"
    return TimedProtocol


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopped by SIGTERM or Ctrl+C through a drain that ends normally.

    The signal marks ``lifecycle`` as draining at once (so /readyz and new model requests get 503), then uvicorn
    stops accepting, lets in-flight requests finish within ``timeout_graceful_shutdown`` and cancels the rest.
    Unlike uvicorn's own handling, the signal is not raised again afterwards, so the caller's clean-up runs and
    the process exits 0. A second Ctrl+C still forces the stop."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, parent_pid: int | None = None):
        super().__init__(config)
        self.lifecycle = lifecycle
        self.parent_pid = parent_pid

    async def on_tick(self, counter: int) -> bool:
        # A worker whose supervisor has died (its parent changed) drains and stops rather than serve alone.
        if self.parent_pid is not None and not self.should_exit and os.getppid() != self.parent_pid:
            self.lifecycle.drain()
            self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.lifecycle.drain()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.lifecycle.ready()


def make_config(app: Any, limits: ServeLimits, log_level: str = "warning", access_log: bool = False) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` under ``limits``, with its fastest installed loop and HTTP parser."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=limits.graceful_timeout,
        lifespan="off",  # the models are loaded before the app is made, and closed by the caller
    )
    config.load()
    config.http_protocol_class = timed_protocol(config.http_protocol_class, limits.header_timeout, limits.body_timeout)
    return config


def run(
    app: Any,
    sock: socket.socket,
    limits: ServeLimits,
    lifecycle: Lifecycle,
    parent_pid: int | None = None,
    **log: Any,
) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGTERM or Ctrl+C has drained it; returns normally.
    ``parent_pid``: a worker's supervisor, whose death stops the worker too."""
    DrainingServer(make_config(app, limits, **log), lifecycle, parent_pid).run(sockets=[sock])
