"""Where a server is in its life (for the readiness check and the admission of new work), and its limits.

``starting`` until the models are loaded (the command-line server opens its socket only then, so over HTTP
this state is seen only by apps that are served before their models are ready), ``ready`` while it serves,
``draining`` from the stop signal on: no new model work is admitted, the work already admitted finishes.
Nothing here imports a web framework.
"""

from __future__ import annotations

from dataclasses import dataclass

STARTING = "starting"
READY = "ready"
DRAINING = "draining"


class Lifecycle:
    def __init__(self, state: str = READY):
        self.state = state

    def ready(self) -> None:
        if self.state == STARTING:
            self.state = READY

    def drain(self) -> None:
        self.state = DRAINING

    @property
    def is_ready(self) -> bool:
        return self.state == READY

    @property
    def draining(self) -> bool:
        return self.state == DRAINING


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits; each default is the one ``toxdistill serve`` documents, with its reason."""

    # Model requests in progress at once, per worker (429 past it): as many as one micro-batch holds (32), so
    # the model is kept busy while an admitted request waits at most about two batches. Measured at 200
    # connections on 2 cores: 64 per worker let the admitted p99 reach 245 ms (docs/serving.md, "Load").
    max_concurrent_requests: int = 32
    # Seconds a request may wait for its batch to start (503 past it): the model runs ~1,000 texts/s on
    # 2 cores, so an admitted request normally starts within a few batches; past this it is better refused.
    queue_timeout: float = 0.5
    # Open connections (uvicorn answers 503 and closes past it): well above --max-concurrent-requests, so a
    # busy client hears 429 from the admission first, and under the usual 1,024 open-files limit.
    max_connections: int = 512
    # Seconds for a request's line and headers to arrive, from the connection (or the first byte of the next
    # request on a kept-alive one): a few hundred bytes take milliseconds on any link.
    header_timeout: float = 5.0
    # Seconds for a request's whole body to arrive once its headers have: a 2 MB upload at 2 Mbit/s takes 8 s.
    body_timeout: float = 15.0
    # Seconds an idle kept-alive connection stays open (uvicorn's default).
    keep_alive_timeout: int = 5
    # Seconds in-flight requests get to finish after SIGTERM; past it they are cancelled.
    graceful_timeout: int = 20
