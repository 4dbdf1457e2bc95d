"""``toxdistill serve RUN --ray``: the same app, replicated on Ray Serve.

Each replica is a Ray actor that loads the run's models itself and serves the app ``create_app`` makes (the
FastAPI ingress, with its keys, metrics, page, JSON API, body limit and admission), so an answer through Ray
is the answer of the single-process server. Ray Serve's HTTP proxy takes the connections and hands each
request to a replica with room; Ray restarts a replica that dies or fails its health check.

The admission limits map onto Ray's own: a replica is sent at most ``max_concurrent_requests`` requests at
once (``max_ongoing_requests``), each proxy holds as many more while every replica is full
(``max_queued_requests``), and past that the request is refused at once: 429 with ``Retry-After`` as the
single-process server answers (Ray's own default is a 503 without it).

Nothing here imports Ray at module level: ``ray`` is an optional extra, imported only by a server started
with ``--ray``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxdistill.errors import ToxdistillError
from toxdistill.files import MODELS_DIR
from toxdistill.serve.auth import ApiKeys
from toxdistill.serve.build import AppSpec, build
from toxdistill.serve.lifecycle import ServeLimits
from toxdistill.serve.limits import RETRY_AFTER_S
from toxdistill.serve.models import close_models

APP = "toxdistill"  # the Ray Serve application's name, and its one deployment's
INSTALL_HINT = "pip install 'ray[serve]>=2.60'"
# A replica that cannot load its models (a path missing on a node, a broken folder) fails the same way again:
# three tries ride out a passing fault without minutes of Ray's default 20 retries.
CONSTRUCTOR_RETRIES = 3


@dataclass(frozen=True)
class Scaling:
    """A fixed number of replicas, or autoscaling between ``autoscale = (min, max)``."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None

    def describe(self) -> str:
        if self.autoscale:
            return f"{self.autoscale[0]} to {self.autoscale[1]} replicas, autoscaled"
        return f"{self.replicas} replica{'s' if self.replicas != 1 else ''}"


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MIN:MAX`` (``1:4``) as two counts, 1 <= MIN <= MAX; anything else is a one-line error."""
    low, sep, high = text.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ToxdistillError(f"--autoscale {text!r} is not MIN:MAX", "e.g. --autoscale 1:4")
    lo, hi = int(low), int(high)
    if not 1 <= lo <= hi:
        raise ToxdistillError(f"--autoscale {text} needs 1 <= MIN <= MAX", "e.g. --autoscale 1:4")
    return lo, hi


def deployment_options(
    spec: AppSpec, scaling: Scaling, limits: ServeLimits, verbose: bool = False, backpressure: bool = True
) -> dict[str, Any]:
    """The deployment's options for ``serve.deployment``. ``backpressure``: the installed Ray can set the
    status of its refusals (``BackpressureConfig``, Ray 2.60); without it Ray refuses with 503."""
    cap = limits.max_concurrent_requests
    opts: dict[str, Any] = {
        "name": APP,
        # The single-process server's cap per worker: Ray sends a replica no more than its admission admits.
        "max_ongoing_requests": cap,
        # While every replica is full, each proxy holds one more micro-batch of requests (a wait of about one
        # batch); past it a request is refused at once instead of queueing without bound (Ray's default).
        "max_queued_requests": cap,
        "graceful_shutdown_timeout_s": limits.graceful_timeout,
        # Ray places a replica where its threads have cores: two replicas of one thread fill two cores.
        "ray_actor_options": {"num_cpus": spec.threads or 1},
        "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
        "logging_config": _logging(verbose),
    }
    if backpressure:
        opts["backpressure_config"] = {"status_code": 429, "retry_after_s": RETRY_AFTER_S}
    if scaling.autoscale is None:
        opts["num_replicas"] = scaling.replicas
    else:
        low, high = scaling.autoscale
        opts["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            # Half a replica's cap: a replica is asked for while the others still have room for a burst,
            # before Ray starts refusing.
            "target_ongoing_requests": max(1, cap // 2),
        }
    return opts


def _logging(verbose: bool) -> dict[str, Any]:
    # Ray logs every request in the proxy and in the replica by default: CPU spent under load, and what -v asks.
    return {"enable_access_log": verbose, "log_level": "INFO" if verbose else "WARNING"}


def build_app(spec: AppSpec) -> Any:
    """In a replica: the models loaded and the app made over them, as ``toxdistill serve`` makes its own."""
    return build(spec)[1]


def _replica_class(spec: AppSpec) -> type:
    """The ingress class: Ray Serve builds the app in each replica (``build``), so the loaded models never
    travel, and asks the replica's health every few seconds."""
    from ray import serve

    def build() -> Any:
        return build_app(spec)

    @serve.ingress(build)
    class Replica:
        async def check_health(self) -> None:
            # A replica whose model thread has stopped would answer every request with a queue timeout:
            # failing the check has Ray replace it.
            app = getattr(self, "app", None)
            if app is None:
                return
            stopped = [m.name for m in app.state.registry.models.values() if m.batcher and not m.batcher.alive]
            if stopped:
                raise RuntimeError(f"the model thread of {', '.join(stopped)} has stopped")

        def __del__(self) -> None:
            app = getattr(self, "_asgi_app", None)
            if app is not None:
                close_models(app.state.registry.models)

    return Replica


def application(spec: AppSpec, scaling: Scaling, limits: ServeLimits, verbose: bool = False) -> Any:
    """The Ray Serve application (``Deployment.bind()``), ready for ``serve.run``."""
    from ray import serve
    from ray.serve import config

    options = deployment_options(spec, scaling, limits, verbose, backpressure=hasattr(config, "BackpressureConfig"))
    return serve.deployment(**options)(_replica_class(spec)).bind()


BUILDER_ARGS = ("run", "models", "threads", "backend", "api_keys", "insecure_no_auth", "replicas")


def builder(args: dict[str, Any]) -> Any:
    """The application for a Serve config file (``serve run``, KubeRay's RayService): ``import_path:
    toxdistill.serve.ray_serve:builder``, with ``args``: ``run`` (the run or export folder, at that path on every
    node), and optionally ``models``, ``threads`` (per replica, default 1), ``backend``, ``replicas`` (default 1;
    the config's ``deployments`` section may set ``num_replicas`` or ``autoscaling_config`` instead) and
    ``api_keys`` (a key file on the nodes). The proxies of a cluster are reached from elsewhere, so without
    ``api_keys`` the builder refuses unless ``insecure_no_auth: true`` says the network is trusted."""
    unknown = sorted(set(args) - set(BUILDER_ARGS))
    if unknown or "run" not in args:
        raise ValueError(f"toxdistill's builder takes {', '.join(BUILDER_ARGS)} ('run' required); got {sorted(args)}")
    keys = ApiKeys.from_file(args["api_keys"], "args.api_keys") if args.get("api_keys") else None
    if keys is None and not args.get("insecure_no_auth"):
        raise ValueError("toxdistill's builder needs api_keys (a key file), or insecure_no_auth: true")
    run = Path(args["run"])
    spec = AppSpec(
        run=str(run),
        run_name=run.parent.name if run.name == MODELS_DIR else run.name,
        models=args.get("models"),
        threads=int(args.get("threads", 1)),
        backend=str(args.get("backend", "auto")),
        api_keys=keys,
        loopback_only=False,
    )
    return application(spec, Scaling(replicas=int(args.get("replicas", 1))), ServeLimits())


def deploy(spec: AppSpec, scaling: Scaling, limits: ServeLimits, host: str, port: int, verbose: bool = False) -> None:
    """Start Serve's proxy on ``host:port`` (when Serve is not running yet on the cluster: a running Serve keeps
    its own address) and run the app on it; returns once every replica is ready."""
    from ray import serve

    http = {"host": host, "port": port, "keep_alive_timeout_s": limits.keep_alive_timeout}
    serve.start(http_options=http, logging_config=_logging(verbose))
    try:
        serve.run(application(spec, scaling, limits, verbose), name=APP, route_prefix="/", blocking=False)
    except Exception as e:  # noqa: BLE001 - Ray's deploy failures come as several classes; each is one line here
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise ToxdistillError(f"Ray Serve could not start the replicas: {first[:200]}", "run with -v") from None


def undeploy(stop_serve: bool) -> None:
    """Delete the app (each replica drains within ``graceful_timeout``) and, with ``stop_serve``, Serve itself."""
    from ray import serve

    serve.delete(APP)
    if stop_serve:
        serve.shutdown()


def require_serve() -> Any:
    """The ``ray`` module with Ray Serve, or a one-line error naming the install command."""
    try:
        import ray
        from ray import serve  # noqa: F401 - ray without its serve extra has no Ray Serve
    except ImportError:
        raise ToxdistillError("--ray needs Ray Serve, which is not installed", INSTALL_HINT) from None
    return ray


def run(
    spec: AppSpec,
    scaling: Scaling,
    limits: ServeLimits,
    host: str,
    port: int,
    address: str | None,
    announce: Callable[[], None],
    verbose: bool = False,
) -> int:
    """Join the cluster at ``address`` (None: start a local Ray instance), deploy, ``announce``, and serve until
    SIGTERM or Ctrl+C; then delete the app, which drains the replicas. A local instance is stopped as well; a
    cluster keeps running."""
    from toxdistill.inference.ray_scoring import connect

    ray = require_serve()
    started = connect(ray, address or "local", verbose, flag="--ray-address")
    if not verbose:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        deploy(spec, scaling, limits, host, port, verbose)
        announce()
        _wait_for_stop()
        undeploy(stop_serve=address is None)
    finally:
        if started:
            ray.shutdown()
    return 0


def _wait_for_stop() -> None:
    """Until SIGTERM or Ctrl+C. The handlers are restored at once, so a second Ctrl+C interrupts the drain."""
    stop = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    original = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in handled}
    try:
        while not stop.wait(0.5):  # a timed wait: the handler runs between two waits on every platform
            pass
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)
