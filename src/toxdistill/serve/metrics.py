"""``/metrics`` in the Prometheus text format: requests, latency, micro-batch sizes, texts scored, models loaded.

Each app has its own ``CollectorRegistry`` (never prometheus-client's global one), so several apps in one
process, as in the tests, never collide. What a model did (texts, latency, micro-batches) is counted by
the model itself (``ModelStats``, its ``observer``) and read by every app that serves it; what the app
answered (requests by route template, method and status) is counted by ``RecordRequests``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxdistill.serve.models import ServedModel

# Seconds: a tiny model answers in a millisecond, a big batch or an explanation in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Texts per micro-batch: MicroBatcher's max_batch is 128 by default; a single request may bring up to 256. Steps
# of 4 up to 32, where most passes fall under load: a pass's cost per text depends on its size (bench/load.py
# replays the sizes to time the model alone on them).
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32, 48, 64, 96, 128, 192, 256)
UNMATCHED = "unmatched"  # one label for every unknown path, so a scan of random URLs cannot grow the series
# HTTP's standard methods; any other word a client sends counts as OTHER, so invented methods cannot grow the
# series either.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
OTHER = "other"
# The status counted for a request whose client hung up before it was answered (nginx's convention).
CLIENT_GONE = 499

router = APIRouter(include_in_schema=False)


class ModelStats:
    """One model's counters (a ``serve.models.ModelObserver``), labelled with its name, in no registry."""

    def __init__(self, name: str):
        texts = Counter(
            "toxdistill_texts_scored",
            "Texts through the model, by model (an explanation counts each occluded variant)",
            ["model"],
            registry=None,
        )
        seconds = Histogram(
            "toxdistill_model_seconds",
            "Seconds a caller waited for its texts to be scored, by model (micro-batch wait included)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        batch = Histogram(
            "toxdistill_microbatch_size",
            "Texts per micro-batched model pass, by model",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=None,
        )
        self._metrics = (texts, seconds, batch)
        self._texts, self._seconds, self._batch = texts.labels(name), seconds.labels(name), batch.labels(name)

    def scored(self, texts: int) -> None:
        self._texts.inc(texts)

    def waited(self, seconds: float) -> None:
        self._seconds.observe(seconds)

    def micro_batch(self, texts: int) -> None:
        self._batch.observe(texts)

    def collect(self) -> Iterator[Metric]:
        for m in self._metrics:
            yield from m.collect()


def attach(model: ServedModel) -> ModelStats:
    """The model's stats, made on first use: a model shared by several apps keeps one set."""
    if not isinstance(model.observer, ModelStats):
        model.observer = ModelStats(model.name)
    if model.batcher is not None:
        model.batcher.observer = model.observer
    return model.observer


class _ModelsCollector:
    """Every served model's families merged by name, so each metric appears once with a series per model."""

    def __init__(self, stats: Sequence[ModelStats]):
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for s in self.stats:
            for fam in s.collect():
                out = merged.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type))
                out.samples.extend(fam.samples)
        return merged.values()


class ServeMetrics:
    """One app's registry and its request metrics."""

    def __init__(self, models: dict[str, ServedModel]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "toxdistill_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "toxdistill_request_seconds",
            "Seconds from request to the end of the response, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        Gauge("toxdistill_models_loaded", "Models this server holds", registry=self.registry).set(len(models))
        info = Gauge(
            "toxdistill_model_info", "1 for each served model, with its engine and kind",
            ["model", "backend", "kind"], registry=self.registry,
        )  # fmt: skip
        for m in models.values():
            info.labels(m.name, m.scorer.backend_name, str(m.meta.get("kind") or "")).set(1)
        self.registry.register(_ModelsCollector([attach(m) for m in models.values()]))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.seconds.labels(route, method).observe(seconds)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template a request is for (``/models/{name}``, not the name), as the router will match it."""
    partial = None
    for r in routes:
        match, _ = r.matches(scope)
        if match == Match.FULL:
            return str(getattr(r, "path", UNMATCHED))
        if match == Match.PARTIAL and partial is None:
            partial = str(getattr(r, "path", UNMATCHED))  # the path exists, the method does not (405)
    return partial or UNMATCHED


class RecordRequests:
    """ASGI middleware, outermost: every answer is counted, the 401s, 413s and 500s included."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: Sequence[BaseRoute]):
        self.app = app
        self.metrics = metrics
        self.routes = routes
        # (method, path) -> template for paths that are a route's own fixed path (/api/classify, /healthz):
        # matching every route costs more than the rest of this middleware. Only those, with a standard method,
        # are kept, so the cache never outgrows the app's fixed routes, whatever paths and methods clients invent.
        self._fixed: dict[tuple[str, str], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Matched before the app runs: mounting /static rewrites the scope's paths on the way in.
        key = (scope["method"], scope["path"])
        route = self._fixed.get(key)
        if route is None:
            route = route_template(self.routes, scope)
            if route == scope["path"] and scope["method"] in KNOWN_METHODS:
                self._fixed[key] = route
        status = 500  # what the client gets when the app raises before answering
        started = False
        t0 = time.perf_counter()

        async def send_and_note(msg: Message) -> None:
            nonlocal status, started
            if msg["type"] == "http.response.start":
                status, started = msg["status"], True
            await send(msg)

        try:
            await self.app(scope, receive, send_and_note)
            if not started:
                status = CLIENT_GONE  # the app returned without answering: its client had hung up
        finally:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER
            self.metrics.observe(route, method, status, time.perf_counter() - t0)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
