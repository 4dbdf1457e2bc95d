"""A real uvicorn server for an app, on a free loopback port, in a background thread (conftest's ``server``
fixture, and the fuzz, browser and limit tests that need one of their own)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def live_server(app, limits=None, lifecycle=None, handle: list | None = None) -> Iterator[str]:
    """Serve ``app`` until the block ends. With ``limits`` (a ``ServeLimits``), it is served as
    ``toxdistill serve`` serves it (``serve.server``: read deadlines, connection cap, draining stop), and
    ``handle`` receives the server object, for a test that stops it itself."""
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here so there is no race for the port
    port = sock.getsockname()[1]
    if limits is None:
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    else:
        from toxdistill.serve.lifecycle import Lifecycle
        from toxdistill.serve.server import DrainingServer, make_config

        sock.listen(128)
        srv = DrainingServer(make_config(app, limits), lifecycle or app.state.lifecycle or Lifecycle())
    if handle is not None:
        handle.append(srv)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()
