"""The web app: an HTML page that works without JavaScript, and a JSON API with an OpenAPI schema.

``create_app`` only assembles it: the metrics, the API keys (when given), the body limit, the error handlers,
the static files and the routers of ``serve.routes``, which find the loaded models through the
``ModelRegistry`` dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount, Route

from toxdistill import __version__
from toxdistill.serve import metrics
from toxdistill.serve.auth import ApiKeys, RequireKey
from toxdistill.serve.errors import add_error_handlers
from toxdistill.serve.fastpath import FastClassify
from toxdistill.serve.lifecycle import Lifecycle
from toxdistill.serve.limits import Admission, BodyLimit
from toxdistill.serve.models import ServedModel
from toxdistill.serve.registry import ModelRegistry
from toxdistill.serve.routes import api, cards, pages, service, upload
from toxdistill.serve.schemas import MAX_TEXTS, ErrorResponse
from toxdistill.serve.security import SameOriginOnly, SecurityHeaders
from toxdistill.serve.shadow import Shadow

HERE = Path(__file__).parent


# Only documents the scheme in /openapi.json: RequireKey, ahead of every
# route, is what enforces it.
_BEARER = HTTPBearer(auto_error=False, description="A key from the server's --api-keys file")
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"}
}


def create_app(
    models: dict[str, ServedModel],
    run_name: str = "toxdistill",
    api_keys: ApiKeys | None = None,
    loopback_only: bool = True,
    max_concurrent_requests: int | None = None,
    lifecycle: Lifecycle | None = None,
    shadow: Shadow | None = None,
) -> FastAPI:
    """An app over already loaded models (load them with ``models.load_models``). With ``api_keys``, the API,
    /metrics and the page's forms need one of them (``serve.auth``). Without keys, cross-site requests that
    change anything are refused, and so, with ``loopback_only`` (the default, as a keyless server listens on
    loopback only), is any ``Host`` that is not a loopback name (``serve.security``).

    ``max_concurrent_requests`` caps the model requests in progress (429 past it; None: no cap), and
    ``lifecycle`` (default: ready) is what /readyz reports and what stops admitting work while draining
    (``serve.limits.Admission``). ``shadow`` (``serve.shadow``) rescores a share of the texts with a reference
    model, off the request path, and adds its metrics."""
    registry = ModelRegistry.of(models, run_name)
    app = FastAPI(
        title="toxdistill",
        version=__version__,
        description=(
            f"Toxic-comment classifier ({run_name}). Classes: {', '.join(registry.label_names)}. "
            f"Up to {MAX_TEXTS} texts per request, 1 MiB per body. /docs lists the routes; this schema is the reference."
        ),
        docs_url=None,  # routes.service serves /docs itself: a plain page that loads no third-party script
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.api_keys = api_keys
    app.state.lifecycle = lifecycle = lifecycle or Lifecycle()
    app.state.metrics = metrics.ServeMetrics(models)
    if shadow is not None:
        shadow.watch(models)
        app.state.metrics.registry.register(shadow)
    add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # The API's routers first: their order is the order of paths in /openapi.json.
    app.include_router(service.router)
    if api_keys is None:
        app.include_router(api.router)
    else:
        app.include_router(api.router, dependencies=[Depends(_BEARER)], responses=_UNAUTHORIZED)
    routers = (service.router, api.router, pages.router, upload.router, cards.router, metrics.router)
    for router in routers[2:]:
        app.include_router(router)
    # Every route the app answers, for the metrics' route templates: the app's own (/openapi.json and the
    # /static mount) and each router's.
    routes = [r for r in app.router.routes if isinstance(r, Route | Mount)] + [r for rt in routers for r in rt.routes]
    # Added innermost first: every answer gets the security headers and is counted; the key and origin checks
    # run before admission (a request without a key takes no place), and both before the body is read; the
    # hot path (serve.fastpath) answers valid classify requests without the framework's routing.
    app.add_middleware(FastClassify, registry=registry)
    app.add_middleware(BodyLimit)
    app.add_middleware(Admission, limit=max_concurrent_requests, lifecycle=lifecycle)
    if api_keys is not None:
        app.add_middleware(RequireKey, keys=api_keys)
    else:
        app.add_middleware(SameOriginOnly, check_host=loopback_only)
    app.add_middleware(metrics.RecordRequests, metrics=app.state.metrics, routes=routes)
    app.add_middleware(SecurityHeaders)
    return app
