"""``toxdistill serve RUN --ray``: the app on Ray Serve, two replicas on one local Ray instance (loopback only),
answers as the single-process app does, keys and /metrics included; a replica killed under load costs no
request that the client retries, and Ray starts another. The flag combinations --ray refuses, in one line."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.cli import main  # noqa: E402
from toxdistill.serve import ray_serve  # noqa: E402
from toxdistill.serve.auth import ApiKeys  # noqa: E402
from toxdistill.serve.build import AppSpec  # noqa: E402
from toxdistill.serve.lifecycle import ServeLimits  # noqa: E402

from conftest import SAMPLE_TEXTS  # noqa: E402

KEY = "k-ray-serve-test-0001"
AUTH = {"Authorization": f"Bearer {KEY}"}
# A retry after a connection error, or a 500/502/503 from a replica that died with the request: what a client
# of any replicated service does. 429 (full) is retried too, after its pause.
RETRIED = {429, 500, 502, 503}


@dataclass
class Served:
    url: str
    reference: TestClient  # the same model and keys in the single-process app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tiny_export) -> Path:
    # An ONNX export: a replica loads it without importing torch, in a fraction of a torch folder's time.
    return tiny_export("onnx-fp32")


@pytest.fixture(scope="module")
def served(model_dir) -> Iterator[Served]:
    """One local Ray instance and one deployment of two replicas for the module: starting them costs seconds."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ray[serve]'")
    pytest.importorskip("ray.serve", reason="Ray Serve is missing: pip install 'ray[serve]'")
    from ray import serve

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    keys = ApiKeys([KEY])
    spec = AppSpec(run=str(model_dir), run_name=model_dir.name, api_keys=keys)
    ray.init(
        num_cpus=2,
        object_store_memory=128 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    port = _free_port()
    models = load_models(model_dir, batch_wait_ms=0.0, queue_timeout_s=spec.queue_timeout)
    try:
        ray_serve.deploy(spec, ray_serve.Scaling(replicas=2), ServeLimits(), "127.0.0.1", port)
        with TestClient(create_app(models, run_name=model_dir.name, api_keys=keys)) as reference:
            yield Served(f"http://127.0.0.1:{port}", reference)
    finally:
        close_models(models)
        serve.shutdown()
        ray.shutdown()


def _same_json(got, ref, tol: float = 1e-6) -> None:
    """Equal JSON, numbers to float tolerance (the replicas run the same model in another process)."""
    if isinstance(ref, dict):
        assert isinstance(got, dict) and got.keys() == ref.keys()
        for k in ref:
            _same_json(got[k], ref[k], tol)
    elif isinstance(ref, list):
        assert isinstance(got, list) and len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            _same_json(g, r, tol)
    elif isinstance(ref, float):
        assert got == pytest.approx(ref, abs=tol)
    else:
        assert got == ref


def test_answers_keys_and_metrics_are_the_single_process_servers(served):
    ref = served.reference
    with httpx.Client(base_url=served.url, timeout=30) as c:
        body = {"texts": SAMPLE_TEXTS[:5]}
        got, want = c.post("/api/classify", json=body, headers=AUTH), ref.post("/api/classify", json=body, headers=AUTH)
        assert got.status_code == want.status_code == 200
        _same_json(got.json(), want.json())
        got, want = c.get("/api/models", headers=AUTH), ref.get("/api/models", headers=AUTH)
        assert got.status_code == 200 and got.json() == want.json()
        # Keys: the same refusals, before any model runs.
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            got, want = (
                c.post("/api/classify", json=body, headers=headers),
                ref.post("/api/classify", json=body, headers=headers),
            )
            assert got.status_code == want.status_code == 401
            assert got.json() == want.json() and got.headers["www-authenticate"] == want.headers["www-authenticate"]
        assert c.get("/metrics").status_code == 401
        # The app's own answers to a bad request and an unknown model, not Ray's.
        for bad in ({"texts": []}, {"texts": ["x"], "model": "nope"}):
            got, want = (
                c.post("/api/classify", json=bad, headers=AUTH),
                ref.post("/api/classify", json=bad, headers=AUTH),
            )
            assert got.status_code == want.status_code != 200 and got.json() == want.json()
        page = c.get("/")
        assert page.status_code == 200 and page.text == ref.get("/").text
        assert page.headers["content-security-policy"] == ref.get("/").headers["content-security-policy"]
        metrics = c.get("/metrics", headers=AUTH)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'toxdistill_requests_total{method="POST",route="/api/classify",status=' in metrics.text
        assert "toxdistill_models_loaded 1.0" in metrics.text


def _replicas(ray) -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]}


def _post_retrying(c, body: dict, tries: int = 30) -> tuple[int, dict | None, int]:
    """The final status and answer of one request, and how many tries it took."""
    for n in range(1, tries + 1):
        try:
            r = c.post("/api/classify", json=body, headers=AUTH)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if r.status_code not in RETRIED:
            return r.status_code, r.json(), n
        time.sleep(0.05)
    return -1, None, tries


def test_a_killed_replica_costs_no_retried_request_and_ray_starts_another(served):
    import ray
    from ray import serve

    before = _replicas(ray)
    assert len(before) == 2
    texts = SAMPLE_TEXTS[:4]
    want = {t: served.reference.post("/api/classify", json={"texts": t}, headers=AUTH).json() for t in texts}
    outcomes: list[tuple[str, int, dict | None, int]] = []
    started = threading.Barrier(len(texts) + 1)

    def client(text: str) -> None:
        # A small bounded load: 4 clients, 25 requests each, one at a time on a keep-alive connection.
        with httpx.Client(base_url=served.url, timeout=10) as c:
            started.wait()
            for _ in range(25):
                outcomes.append((text, *_post_retrying(c, {"texts": text})))

    threads = [threading.Thread(target=client, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.2)  # the load is running
    victim = sorted(before)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 100
    assert [(t, s) for t, s, _, _ in outcomes if s != 200] == []
    for text, _, answer, _ in outcomes:
        _same_json(answer, want[text])
    # Ray replaces the dead replica: two running again, one of them new.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _replicas(ray)
        states = serve.status().applications[ray_serve.APP].deployments[ray_serve.APP].replica_states
        if victim not in now and len(now) == 2 and states.get("RUNNING") == 2:
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"Ray did not replace the killed replica: {sorted(_replicas(ray))}")
    with httpx.Client(base_url=served.url, timeout=10) as c:
        assert _post_retrying(c, {"texts": texts[0]})[:2] == (200, want[texts[0]])


# ---------------------------------------------------------------- options (no Ray needed)
def test_limits_map_onto_rays_options():
    spec = AppSpec(run="r", run_name="r", threads=2)
    limits = ServeLimits(max_concurrent_requests=8, graceful_timeout=7)
    fixed = ray_serve.deployment_options(spec, ray_serve.Scaling(replicas=3), limits)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == fixed["max_queued_requests"] == 8
    assert fixed["backpressure_config"] == {"status_code": 429, "retry_after_s": 1}
    assert fixed["graceful_shutdown_timeout_s"] == 7 and fixed["ray_actor_options"] == {"num_cpus": 2}
    auto = ray_serve.deployment_options(spec, ray_serve.Scaling(autoscale=(1, 4)), limits, backpressure=False)
    assert "num_replicas" not in auto and "backpressure_config" not in auto
    assert auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4}
    assert ray_serve.parse_autoscale("2:5") == (2, 5)


def test_the_serve_config_builder_needs_keys_and_builds_the_deployment(model_dir, tmp_path):
    pytest.importorskip("ray.serve", reason="Ray Serve is missing: pip install 'ray[serve]'")
    with pytest.raises(ValueError, match="needs api_keys"):
        ray_serve.builder({"run": str(model_dir)})
    with pytest.raises(ValueError, match="'run' required"):
        ray_serve.builder({"run": str(model_dir), "replica": 2})
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    deployment = ray_serve.builder({"run": str(model_dir), "api_keys": str(keys), "replicas": 3})._bound_deployment
    assert deployment.name == ray_serve.APP and deployment.num_replicas == 3
    assert deployment.max_ongoing_requests == ServeLimits().max_concurrent_requests


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--replicas", "2"], "--replicas needs --ray"),
        (["--ray-address", "auto"], "--ray-address needs --ray"),
        (["--ray", "--replicas", "2", "--autoscale", "1:2"], "contradict"),
        (["--ray", "--replicas", "0"], "--replicas 0 must be at least 1"),
        (["--ray", "--autoscale", "3:1"], "1 <= MIN <= MAX"),
        (["--ray", "--autoscale", "four"], "is not MIN:MAX"),
        (["--ray", "--workers", "2"], "--workers does not apply with --ray"),
        (["--ray", "--header-timeout", "2"], "--header-timeout does not apply with --ray"),
        (["--ray", "--ray-address", "10.0.0.9:6379", "--port", "8000"], "without API keys"),
    ],
)
def test_bad_ray_combinations_are_one_line_errors(model_dir, args, fragment, capsys):
    assert main(["serve", str(model_dir), "--port", "0", *args]) != 0
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_shadow_with_ray_is_a_one_line_error(model_dir, capsys):
    assert main(["serve", str(model_dir), "--port", "0", "--ray", "--shadow", str(model_dir)]) != 0
    err = capsys.readouterr().err.strip()
    assert "--shadow does not apply with --ray" in err and len(err.splitlines()) == 1
