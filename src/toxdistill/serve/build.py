"""The one way a server makes its app: the run's models loaded, then ``create_app`` over them. ``toxdistill serve``
does it in its process (each ``--workers`` process alike), and every Ray Serve replica in its own actor."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

from toxdistill.serve.auth import ApiKeys
from toxdistill.serve.lifecycle import Lifecycle, ServeLimits
from toxdistill.serve.models import DEFAULT_MAX_BATCH, ServedModel, close_models, load_models


@dataclass(frozen=True)
class AppSpec:
    """What a server needs to load the models and make the app: plain values, so that Ray can send them to every
    replica. The run folder is read where the app is made: on a cluster, at the same path on every node."""

    run: str
    run_name: str
    models: str | None = None
    threads: int | None = None
    """The engine's threads per model; None: the engine's default."""
    backend: str = "auto"
    batch_wait_ms: float = 0.0
    max_batch: int = DEFAULT_MAX_BATCH
    queue_timeout: float = ServeLimits.queue_timeout
    max_concurrent_requests: int = ServeLimits.max_concurrent_requests
    api_keys: ApiKeys | None = None
    loopback_only: bool = True


def build(spec: AppSpec, lifecycle: Lifecycle | None = None, shadow: Any = None) -> tuple[dict[str, ServedModel], Any]:
    """The loaded models and the app over them; the models are closed again if the app cannot be made."""
    from toxdistill.serve.app import create_app  # heavy optional: FastAPI

    models = load_models(
        spec.run,
        spec.models,
        threads=spec.threads,
        backend=spec.backend,
        batch_wait_ms=spec.batch_wait_ms,
        max_batch=spec.max_batch,
        queue_timeout_s=spec.queue_timeout,
    )
    try:
        app = create_app(
            models,
            run_name=spec.run_name,
            api_keys=spec.api_keys,
            loopback_only=spec.loopback_only,
            max_concurrent_requests=spec.max_concurrent_requests,
            lifecycle=lifecycle,
            shadow=shadow,
        )
    except BaseException:
        close_models(models)
        raise
    # What is loaded now lives as long as the server: kept out of the garbage collector's full passes, which
    # otherwise walk every object of the models and tokenizers (measured: p99 58 -> 38 ms).
    gc.freeze()
    return models, app
