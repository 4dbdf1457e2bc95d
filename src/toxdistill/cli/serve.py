"""``toxdistill serve RUN``: the web page and JSON API over a run's models."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

from toxdistill.cli import options
from toxdistill.errors import ToxdistillError
from toxdistill.files import MODELS_DIR
from toxdistill.runs import find_models, select_models
from toxdistill.serve import shadow as shadow_mod
from toxdistill.serve.auth import ENV_VAR, ApiKeys, keys_from
from toxdistill.serve.build import AppSpec, build
from toxdistill.serve.lifecycle import STARTING, Lifecycle, ServeLimits
from toxdistill.serve.models import DEFAULT_MAX_BATCH, close_models

# pip name -> import names (python-multipart renamed its module; either works for Starlette).
_NEEDS = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "jinja2": ("jinja2",),
    "python-multipart": ("python_multipart", "multipart"),
    "prometheus-client": ("prometheus_client",),
}


NAME = "serve"
HELP = "web page + JSON API over a run's models"
DESCRIPTION = """\
Serve every model of a run (runs/<name>) as a web page (classify a comment, compare models, upload a CSV/TXT
file, model cards) and a JSON API (POST /api/classify, GET /api/models; docs at /docs), with Prometheus
metrics at /metrics. Models load once at start-up. A run's shipped best/ (its chosen model, an export with a
model card) comes first and is the default; RUN/best serves it alone.

With --api-keys FILE (or $TOXDISTILL_API_KEYS naming the file: one key per line, # comments), the API,
/metrics and the page's forms need a key (Authorization: Bearer KEY); /healthz stays open. Without keys the
server listens on a loopback address only, unless --insecure-no-auth says the network is trusted.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run", help="run folder written by 'toxdistill run' (e.g. runs/davidson-minilm), or its models/ folder"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)"
    )
    p.add_argument("--port", type=int, default=5000, help="port (default: 5000; 0: any free port)")
    p.add_argument("--models", default=None, metavar="A,B", help="serve only these models (comma-separated names)")
    options.add_threads(p)
    options.add_backend(p)
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="after the first waiting request, gather more for up to MS ms into one batch (default: 0: batch what "
        "is already waiting, which under load is plenty; measured faster than waiting, docs/serving.md 'Load')",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help="the most texts the model thread gathers from waiting requests into one pass; a request of more runs "
        f"as a pass of its own (default: {DEFAULT_MAX_BATCH}: four 32-text requests, which the pass sorts by "
        "length; it served 17-20%% more texts/s than 32 in 32-text requests, docs/serving.md 'Load')",
    )
    p.add_argument("--no-batching", action="store_true", help="run every request on its own")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes, each with its own models, on one port (default: 1; on a small machine, one per "
        "core with --threads 1 serves the most: docs/serving.md, 'Load')",
    )
    _add_limits(p)
    _add_shadow(p)
    _add_ray(p)
    p.add_argument(
        "--api-keys",
        default=None,
        metavar="FILE",
        help=f"require one of the keys in FILE (one per line, # comments; default: ${ENV_VAR}, if set)",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve a non-loopback --host without API keys: anyone who can reach it can use it",
    )


def _add_limits(p: argparse.ArgumentParser) -> None:
    """The limits that keep the server answering under overload and slow clients (docs/serving.md, "Limits")."""
    d = ServeLimits()
    g = p.add_argument_group("limits (docs/serving.md, 'Limits', gives the reason for each default)")
    g.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=d.max_concurrent_requests,
        metavar="N",
        help=f"model requests in progress at once, per worker; past it 429 with Retry-After (default: "
        f"{d.max_concurrent_requests}: one micro-batch, which keeps the model busy and the admitted p99 low)",
    )
    g.add_argument(
        "--queue-timeout",
        type=float,
        default=d.queue_timeout,
        metavar="S",
        help=f"seconds a request may wait for its batch to start; past it 503 (default: {d.queue_timeout:g})",
    )
    g.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        metavar="N",
        help=f"open connections; past it uvicorn answers 503 and closes (default: {d.max_connections})",
    )
    g.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout,
        metavar="S",
        help=f"seconds for a request's headers to arrive; past it 408 and closed (default: {d.header_timeout:g})",
    )
    g.add_argument(
        "--body-timeout",
        type=float,
        default=d.body_timeout,
        metavar="S",
        help=f"seconds for a request's body to arrive after its headers; past it 408 and closed (default: {d.body_timeout:g})",
    )
    g.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=d.keep_alive_timeout,
        metavar="S",
        help=f"seconds an idle kept-alive connection stays open (default: {d.keep_alive_timeout})",
    )
    g.add_argument(
        "--graceful-timeout", type=int, default=d.graceful_timeout, metavar="S",
        help=f"seconds in-flight requests get to finish after SIGTERM; then they are cancelled (default: {d.graceful_timeout})",
    )  # fmt: skip


def _add_shadow(p: argparse.ArgumentParser) -> None:
    """Fidelity to a reference model, watched while serving (docs/serving.md, "Watching fidelity in production")."""
    g = p.add_argument_group("shadow (docs/serving.md, 'Watching fidelity in production')")
    g.add_argument(
        "--shadow", default=None, metavar="MODEL",
        help="also score a share of the texts with MODEL (a model of this run such as teacher, or a model folder) "
        "on a background thread, and export how often the served models agree with it (default: none: the "
        "reference costs memory and CPU)",
    )  # fmt: skip
    g.add_argument(
        "--shadow-rate", type=float, default=None, metavar="R",
        help=f"share of the texts the reference scores, in (0, 1] (default: {shadow_mod.DEFAULT_RATE:g}: at 10 "
        "texts/s, some 1,800 texts an hour, enough to see agreement move by a few points; the reference adds about "
        "rate x its cost ratio to the served work, 35%% for a teacher export 7 times the student's cost)",
    )  # fmt: skip
    g.add_argument(
        "--shadow-queue", type=int, default=None, metavar="N",
        help=f"sampled texts that may wait for the reference; past it they are dropped and counted, never waited "
        f"for (default: {shadow_mod.DEFAULT_QUEUE}: rides out a burst, and bounds the memory held)",
    )  # fmt: skip
    g.add_argument(
        "--shadow-max-busy", type=float, default=None, metavar="F",
        help=f"share of the time the reference may spend scoring, in (0, 1]; it rests in between, and what it "
        f"cannot take is dropped and counted (default: {shadow_mod.DEFAULT_BUSY:g}: its CPU stays a bounded share "
        "at any traffic, however slow the reference)",
    )  # fmt: skip
    g.add_argument(
        "--shadow-log", default=None, metavar="FILE",
        help="append each disagreement (the text as the served model saw it, both models' probabilities, the "
        "time) to FILE as JSON lines, created readable by its owner only (default: none: the texts are users')",
    )  # fmt: skip
    g.add_argument(
        "--shadow-log-max-mb", type=float, default=None, metavar="MB",
        help=f"past MB, FILE becomes FILE.1 (replacing it) and a new FILE is started (default: "
        f"{shadow_mod.DEFAULT_LOG_MB:g}: tens of thousands of disagreements; at most twice this on disk)",
    )  # fmt: skip


def _shadow_folder(a: argparse.Namespace) -> Path | None:
    """The reference's folder, with every --shadow option checked: one line for each bad value."""
    flags = ("shadow_rate", "shadow_queue", "shadow_max_busy", "shadow_log", "shadow_log_max_mb")
    given = [f for f in flags if getattr(a, f) is not None]
    if a.shadow is None:
        if given:
            raise ToxdistillError(f"--{given[0].replace('_', '-')} needs --shadow MODEL", "name the reference model")
        return None
    if a.shadow_rate is not None and not 0 < a.shadow_rate <= 1:
        raise ToxdistillError(f"--shadow-rate {a.shadow_rate:g} is outside (0, 1]", "e.g. 0.05 for 5% of the texts")
    if a.shadow_max_busy is not None and not 0 < a.shadow_max_busy <= 1:
        raise ToxdistillError(f"--shadow-max-busy {a.shadow_max_busy:g} is outside (0, 1]", "e.g. 0.25")
    options.at_least(a, shadow_queue=1)
    if a.shadow_log_max_mb is not None and not a.shadow_log_max_mb > 0:
        raise ToxdistillError(f"--shadow-log-max-mb {a.shadow_log_max_mb:g} must be more than 0", "e.g. 10")
    return shadow_mod.resolve_reference(a.run, a.shadow)


def _load_shadow(a: argparse.Namespace) -> shadow_mod.Shadow | None:
    if a.shadow_folder is None:
        return None
    return shadow_mod.load_shadow(
        a.shadow_folder,
        a.shadow_rate or shadow_mod.DEFAULT_RATE,
        a.shadow_queue or shadow_mod.DEFAULT_QUEUE,
        a.shadow_log,
        a.shadow_log_max_mb or shadow_mod.DEFAULT_LOG_MB,
        a.shadow_max_busy or shadow_mod.DEFAULT_BUSY,
        threads=a.threads,
        backend=a.backend,
    )


def _limits(a: argparse.Namespace) -> ServeLimits:
    options.at_least(a, max_concurrent_requests=1, max_connections=1, max_batch=1)
    for name in ("queue_timeout", "header_timeout", "body_timeout", "keep_alive_timeout", "graceful_timeout"):
        if not getattr(a, name) > 0:
            raise ToxdistillError(f"--{name.replace('_', '-')} must be more than 0", f"got {getattr(a, name)}")
    return ServeLimits(
        max_concurrent_requests=a.max_concurrent_requests,
        queue_timeout=a.queue_timeout,
        max_connections=a.max_connections,
        header_timeout=a.header_timeout,
        body_timeout=a.body_timeout,
        keep_alive_timeout=a.keep_alive_timeout,
        graceful_timeout=a.graceful_timeout,
    )


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback  # an IPv6 scope ("%eth0") is no address
    except ValueError:
        return False


def _bind(host: str, port: int, open_to_all: bool, reuse_port: bool = False) -> socket.socket:
    """Bind before serving so a busy port is a one-line error, not a uvicorn traceback. Unless
    ``open_to_all`` (keys, or --insecure-no-auth), only a loopback address is accepted. ``reuse_port`` lets the
    workers of ``--workers`` bind the same address afterwards (``_own_socket``)."""
    if not 0 <= port <= 65535:
        raise ToxdistillError(f"--port {port} is out of range", "use 1-65535")
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        raise ToxdistillError(
            f"cannot resolve --host {host!r}", "use an address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    if not open_to_all and not _is_loopback(str(addr[0])):
        raise ToxdistillError(
            f"refusing to serve {host} without API keys: anyone who can reach it could use the models",
            f"give --api-keys FILE (or set ${ENV_VAR}), or --insecure-no-auth on a network you trust",
        )
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ToxdistillError(
            f"cannot listen on {host}:{port}: {e.strerror or e}", "pick another --port or stop what is using it"
        ) from None
    # Not listening yet: until the models are loaded, a connection is refused rather than left waiting.
    sock.set_inheritable(True)
    return sock


def _api_keys(a: argparse.Namespace) -> ApiKeys | None:
    keys = keys_from(a.api_keys)
    if keys is not None and a.insecure_no_auth:
        raise ToxdistillError(
            f"--insecure-no-auth and API keys ({keys.source}) contradict each other", "give one or the other"
        )
    return keys


def main(a: argparse.Namespace) -> int:
    options.at_least(a, threads=1, workers=1)
    limits = _limits(a)
    # Check the folder first: a typo should fail in a second, before any heavy import or model load.
    select_models(find_models(a.run, best=True), a.models)
    keys = _api_keys(a)
    _check_ray(a)
    missing = [pkg for pkg, mods in _NEEDS.items() if not any(importlib.util.find_spec(m) for m in mods)]
    if missing:
        raise ToxdistillError(f"serving needs {', '.join(missing)}, not installed", "pip install 'toxdistill[serve]'")
    a.shadow_folder = _shadow_folder(a)
    if a.ray:
        if a.shadow_folder is not None:
            raise ToxdistillError(
                "--shadow does not apply with --ray: each replica would need its own reference model",
                "watch fidelity on a single-process server beside the Ray deployment, or leave --shadow out",
            )
        return _serve_ray(a, limits, keys)
    sock = _bind(a.host, a.port, open_to_all=keys is not None or a.insecure_no_auth, reuse_port=a.workers > 1)
    try:
        if a.workers == 1:
            return _serve(a, limits, keys, sock)
        return _supervise(a, limits, keys, sock)
    finally:
        sock.close()


def _serve(
    a: argparse.Namespace, limits: ServeLimits, keys: ApiKeys | None, sock: socket.socket, worker: int = 0
) -> int:
    """Load the models, then listen on ``sock`` and serve until a stop signal has drained the server."""
    # heavy optional (the serve extra), imported once main has found it installed
    from toxdistill.serve import server

    models = shadow = None
    try:
        lifecycle = Lifecycle(STARTING)
        shadow = _load_shadow(a)
        models, app = build(_app_spec(a, limits, keys, loopback=_is_loopback(sock.getsockname()[0])), lifecycle, shadow)
        if a.workers > 1:
            sock = _own_socket(sock)
        # The models are loaded: from now on a connection waits in the backlog until uvicorn takes it.
        sock.listen(2048)
        if worker == 0:
            _announce(a, sock, models, keys)
        # The access log (-v) has the method, path and status of each request: no header (so no key),
        # no body (so no text).
        verbose = getattr(a, "verbose", False)
        log = {"log_level": "info" if verbose else "warning", "access_log": verbose}
        server.run(app, sock, limits, lifecycle, parent_pid=os.getppid() if a.workers > 1 else None, **log)
        if a.workers == 1:
            print("toxdistill: server stopped", file=sys.stderr)
    finally:
        if shadow is not None:
            shadow.close()
        if models:
            close_models(models)
    return 0


def _app_spec(
    a: argparse.Namespace, limits: ServeLimits, keys: ApiKeys | None, loopback: bool, threads: int | None = None
) -> AppSpec:
    """The app both servers make (``serve.build``), from the command's flags."""
    run = Path(a.run).resolve()
    return AppSpec(
        run=str(run),
        run_name=run.parent.name if run.name == MODELS_DIR else run.name,
        models=a.models,
        threads=threads or a.threads,
        backend=a.backend,
        # --no-batching keeps the model thread (and so the queue timeout) with one request per pass
        batch_wait_ms=0 if a.no_batching else a.batch_wait_ms,
        max_batch=1 if a.no_batching else a.max_batch,
        queue_timeout=limits.queue_timeout,
        max_concurrent_requests=limits.max_concurrent_requests,
        api_keys=keys,
        loopback_only=loopback,
    )


def _own_socket(shared: socket.socket) -> socket.socket:
    """A worker's own listening socket on the supervisor's address (SO_REUSEPORT): the kernel spreads new
    connections evenly over the workers' sockets, where one shared socket lets whichever worker wakes first
    take most of them. The supervisor's socket is bound but never listens, so it gets none."""
    own = socket.socket(shared.family, socket.SOCK_STREAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    own.bind(shared.getsockname())
    shared.close()
    return own


def _supervise(a: argparse.Namespace, limits: ServeLimits, keys: ApiKeys | None, sock: socket.socket) -> int:
    """``--workers N``: N processes forked here, before anything is loaded, each loading the models and serving
    the one bound socket (the kernel hands each new connection to one of them). A stop signal is passed on
    as one SIGTERM, so each worker drains; a second one kills them. A worker that fails stops the others."""
    pids = []
    for worker in range(a.workers):
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(a, limits, keys, sock, worker))
        pids.append(pid)
    signals = 0

    def forward(sig: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal signals
        signals += 1
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM if signals == 1 else signal.SIGKILL)

    original = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    codes: list[int] = []
    try:
        while len(codes) < len(pids):
            _, status = os.wait()
            codes.append(os.waitstatus_to_exitcode(status))
            if codes[-1] != 0 and not signals:
                forward()
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)
    print("toxdistill: server stopped", file=sys.stderr)
    return next((c for c in codes if c != 0), 0)


class _StoppedEarly(BaseException):
    """SIGTERM reached a worker before its server took over the signal (while its models load). A
    BaseException, so that no loader's ``except Exception`` turns it into a load error."""


def _stop_early(sig: int, frame: object) -> None:
    raise _StoppedEarly


def _worker(a: argparse.Namespace, limits: ServeLimits, keys: ApiKeys | None, sock: socket.socket, n: int) -> int:
    """One forked worker, to its exit status. It leaves the terminal's process group, so Ctrl+C reaches only
    the supervisor, which passes it on once (two signals would force the stop). A stop that arrives while the
    worker still loads (another worker may already serve) ends it cleanly: it holds no request yet."""
    signal.signal(signal.SIGTERM, _stop_early)
    try:
        os.setpgid(0, 0)
        return _serve(a, limits, keys, sock, worker=n)
    except _StoppedEarly:
        return 0
    except ToxdistillError as e:
        print(f"toxdistill: error: {e}", file=sys.stderr)
        return e.exit_code
    except BaseException:  # noqa: BLE001 - a worker must end here, never return into the supervisor's loop
        traceback.print_exc()
        return 1
    finally:
        sys.stderr.flush()
        sys.stdout.flush()


def _announce(a: argparse.Namespace, sock: socket.socket, models: dict, keys: ApiKeys | None) -> None:
    shown = "localhost" if a.host in ("127.0.0.1", "::1") else f"[{a.host}]" if ":" in a.host else a.host
    port = sock.getsockname()[1]  # the real one when --port 0 let the system pick
    print(
        f"toxdistill: serving {len(models)} model(s) ({', '.join(models)}) at http://{shown}:{port}/ — Ctrl+C to stop",
        file=sys.stderr,
    )
    if keys is not None:
        print(f"toxdistill: API keys required ({len(keys)} from {keys.source})", file=sys.stderr)
    elif not _is_loopback(sock.getsockname()[0]):
        print(
            "toxdistill: note: there is no authentication; anyone who can reach this address can use it",
            file=sys.stderr,
        )


# ---------------------------------------------------------------- --ray: the same app on Ray Serve
def _add_ray(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray Serve (docs/serving.md, 'Scale out on Ray Serve')")
    g.add_argument(
        "--ray",
        action="store_true",
        help="serve on Ray Serve: replicas (Ray actors), each with its own models and --threads (default 1 "
        "here: one core per replica), behind Ray's HTTP proxy",
    )
    g.add_argument(
        "--replicas", type=int, default=None, metavar="N",
        help="replicas with --ray (default: 1, as one process; each holds its own models and --threads cores)",
    )  # fmt: skip
    g.add_argument(
        "--autoscale", default=None, metavar="MIN:MAX",
        help="with --ray, let Ray scale the replicas between MIN and MAX on their requests in progress "
        "(instead of --replicas)",
    )  # fmt: skip
    g.add_argument(
        "--ray-address", default=None, metavar="ADDR",
        help="with --ray, join this Ray cluster (HOST:PORT, ray://HOST:PORT or auto; default: start a local "
        "instance, so a cluster is never joined by accident)",
    )  # fmt: skip


# The single-process server's own HTTP limits: under --ray, Ray Serve's proxy reads the requests.
_NOT_ON_RAY = ("header_timeout", "body_timeout", "max_connections")


def _check_ray(a: argparse.Namespace) -> None:
    """The combinations --ray cannot take, each as one line."""
    if not a.ray:
        given = [f for f in ("replicas", "autoscale", "ray_address") if getattr(a, f) is not None]
        if given:
            raise ToxdistillError(f"--{given[0].replace('_', '-')} needs --ray", "add --ray, or leave it out")
        return
    options.at_least(a, replicas=1)
    if a.replicas is not None and a.autoscale is not None:
        raise ToxdistillError("--replicas and --autoscale contradict each other", "give one or the other")
    if a.workers != 1:
        raise ToxdistillError("--workers does not apply with --ray", "use --replicas N (each a process of its own)")
    d = ServeLimits()
    changed = [f for f in _NOT_ON_RAY if getattr(a, f) != getattr(d, f)]
    if changed:
        raise ToxdistillError(
            f"--{changed[0].replace('_', '-')} does not apply with --ray: Ray Serve's proxy reads the requests",
            "leave it out (docs/serving.md, 'Scale out on Ray Serve')",
        )
    if a.ray_address is not None and a.port == 0:
        raise ToxdistillError("--port 0 needs a local Ray instance", "give the port the cluster's proxy listens on")


def _serve_ray(a: argparse.Namespace, limits: ServeLimits, keys: ApiKeys | None) -> int:
    """``--ray``: the replicas load the models themselves; this process deploys them and waits for a stop."""
    from toxdistill.serve import ray_serve

    autoscale = ray_serve.parse_autoscale(a.autoscale) if a.autoscale else None
    open_to_all = keys is not None or a.insecure_no_auth
    if a.ray_address is None:  # the proxy will listen here: a busy port is a one-line error now
        with contextlib.closing(_bind(a.host, a.port, open_to_all)) as probe:
            host, port = probe.getsockname()[:2]
    else:  # the proxies listen on the cluster's nodes, reached from elsewhere: keys, unless said otherwise
        host, port = a.host, a.port
        if not open_to_all:
            raise ToxdistillError(
                "refusing to serve on a Ray cluster without API keys: anyone who can reach a node could use the models",
                f"give --api-keys FILE (or set ${ENV_VAR}), or --insecure-no-auth on a network you trust",
            )
    # One thread per replica: two processes of one thread served the most on 2 cores.
    spec = _app_spec(a, limits, keys, loopback=_is_loopback(host), threads=a.threads or 1)
    scaling = ray_serve.Scaling(replicas=a.replicas or 1, autoscale=autoscale)
    names = select_models(find_models(a.run, best=True), a.models)

    def announce() -> None:
        shown = "localhost" if host in ("127.0.0.1", "::1") else f"[{host}]" if ":" in host else host
        print(
            f"toxdistill: serving {len(names)} model(s) ({', '.join(names)}) on Ray Serve, {scaling.describe()}, "
            f"at http://{shown}:{port}/ — Ctrl+C to stop",
            file=sys.stderr,
        )

    verbose = getattr(a, "verbose", False)
    code = ray_serve.run(spec, scaling, limits, host, port, a.ray_address, announce, verbose)
    print("toxdistill: server stopped", file=sys.stderr)
    return code
