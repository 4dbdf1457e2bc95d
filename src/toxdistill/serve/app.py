"""The web app: an HTML page that works without JavaScript, and a JSON API with an OpenAPI schema.

``create_app`` only assembles it: the body limit, the error handlers, the static files and the routers of
``serve.routes``, which find the loaded models through the ``ModelRegistry`` dependency.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from toxdistill import __version__
from toxdistill.serve.errors import add_error_handlers
from toxdistill.serve.limits import BodyLimit
from toxdistill.serve.models import ServedModel
from toxdistill.serve.registry import ModelRegistry
from toxdistill.serve.routes import api, cards, pages, service, upload
from toxdistill.serve.schemas import MAX_TEXTS

HERE = Path(__file__).parent


def create_app(models: dict[str, ServedModel], run_name: str = "toxdistill") -> FastAPI:
    """An app over already loaded models (load them with ``models.load_models``)."""
    registry = ModelRegistry.of(models, run_name)
    app = FastAPI(
        title="toxdistill",
        version=__version__,
        description=(
            f"Toxic-comment classifier ({run_name}). Classes: {', '.join(registry.label_names)}. "
            f"Up to {MAX_TEXTS} texts per request, 1 MiB per body."
        ),
        docs_url=None,  # routes.service serves a /docs page that still says something when the CDN is unreachable
        redoc_url=None,
    )
    app.state.registry = registry
    app.add_middleware(BodyLimit)
    add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # The API's routers first: their order is the order of paths in /openapi.json.
    for router in (service.router, api.router, pages.router, upload.router, cards.router):
        app.include_router(router)
    return app
