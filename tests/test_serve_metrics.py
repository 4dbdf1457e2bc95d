"""/metrics: scraped after real requests and parsed as Prometheus text, per app registry."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
parser = pytest.importorskip("prometheus_client.parser")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.serve.app import create_app  # noqa: E402
from toxdistill.serve.metrics import ModelStats, attach  # noqa: E402
from toxdistill.serve.models import close_models, load_models  # noqa: E402


@pytest.fixture
def models(tiny_run):
    """Fresh models per test: a model's counters live as long as the model."""
    ms = load_models(tiny_run, "odd,even", batch_wait_ms=20.0)
    yield ms
    close_models(ms)


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in parser.text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_by_route_template_and_status(models):
    client = TestClient(create_app(models), base_url="http://localhost")
    assert client.post("/api/classify", json={"texts": ["a", "b", "c"], "model": "odd"}).status_code == 200
    assert client.post("/api/classify", json={"texts": "x", "model": "nope"}).status_code == 404
    assert client.post("/api/classify", json={"texts": ""}).status_code == 422
    for name in ("odd", "even", "nope"):
        client.get(f"/models/{name}")
    for path in ("/nope", "/nope/2", "/wp-admin.php"):
        assert client.get(path).status_code == 404
    client.get("/static/style.css")
    m = scrape(client)
    req = "toxdistill_requests_total"
    assert value(m, req, route="/api/classify", method="POST", status="200") == 1
    assert value(m, req, route="/api/classify", method="POST", status="404") == 1
    assert value(m, req, route="/api/classify", method="POST", status="422") == 1
    # the template, not the name: model names (or path probes) do not make new series
    assert value(m, req, route="/models/{name}", method="GET", status="200") == 2
    assert value(m, req, route="/models/{name}", method="GET", status="404") == 1
    assert value(m, req, route="unmatched", method="GET", status="404") == 3
    assert value(m, req, route="/static", method="GET", status="200") == 1
    assert value(m, "toxdistill_request_seconds_count", route="/api/classify", method="POST") == 3
    assert not any(labels and dict(labels).get("route") in ("/models/odd", "/nope") for _, labels in m)
    # a 405 (the path exists, the method does not) is counted under its route
    assert client.delete("/api/models").status_code == 405
    assert value(scrape(client), req, route="/api/models", method="DELETE", status="405") == 1


def test_models_loaded_texts_scored_and_latency_per_model(models):
    client = TestClient(create_app(models), base_url="http://localhost")
    m0 = scrape(client)
    assert value(m0, "toxdistill_models_loaded") == 2
    assert value(m0, "toxdistill_model_info", model="odd", backend="torch", kind="student") == 1
    client.post("/api/classify", json={"texts": ["a", "b", "c"], "model": "odd"})
    client.post("/api/classify", json={"texts": "one", "model": "even"})
    client.post("/", data={"text": "two words", "model": "even"})  # the page: the text and 2 occluded variants
    m = scrape(client)
    assert value(m, "toxdistill_texts_scored_total", model="odd") == 3
    assert value(m, "toxdistill_texts_scored_total", model="even") == 1 + 3
    assert value(m, "toxdistill_model_seconds_count", model="odd") == 1
    assert value(m, "toxdistill_model_seconds_count", model="even") == 2
    assert 0 < value(m, "toxdistill_model_seconds_sum", model="even") < 60
    # histogram buckets are cumulative and end with every observation
    assert value(m, "toxdistill_model_seconds_bucket", model="even", le="+Inf") == 2


def test_micro_batch_sizes(models, monkeypatch):
    client = TestClient(create_app(models), base_url="http://localhost")
    odd = models["odd"]
    batcher = odd.batcher
    assert batcher is not None
    waiting = []
    submit = batcher.submit_async

    def counted(texts):
        waiting.append(texts)
        return submit(texts)

    monkeypatch.setattr(batcher, "submit_async", counted)
    # Hold the model until all eight requests wait in the batcher: it must then run them in fewer passes.
    # (The lock is let go first, then the pool waits for the answers.)
    with ThreadPoolExecutor(8) as pool, odd.lock:
        futures = [
            pool.submit(client.post, "/api/classify", json={"texts": f"text {i}", "model": "odd"}) for i in range(8)
        ]
        deadline = time.monotonic() + 20
        while len(waiting) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert all(f.result().status_code == 200 for f in futures)
    m = scrape(client)
    batches = value(m, "toxdistill_microbatch_size_count", model="odd")
    assert value(m, "toxdistill_microbatch_size_sum", model="odd") == 8  # every text in some micro-batch
    assert batches == batcher.batches < 8  # fewer passes than requests
    assert value(m, "toxdistill_microbatch_size_bucket", model="odd", le="1.0") < batches  # some had 2 or more
    assert value(m, "toxdistill_microbatch_size_bucket", model="odd", le="8.0") == batches
    assert value(m, "toxdistill_model_seconds_count", model="odd") == 8  # latency per request, queueing included


def test_each_app_has_its_own_registry_and_a_model_one_set_of_counters(models):
    a = TestClient(create_app({"odd": models["odd"]}, run_name="a"), base_url="http://localhost")
    b = TestClient(
        create_app(models, run_name="b"), base_url="http://localhost"
    )  # no "Duplicated timeseries" for a second app
    a.get("/healthz")
    a.post("/api/classify", json={"texts": "x"})
    ma, mb = scrape(a), scrape(b)
    assert value(ma, "toxdistill_requests_total", route="/healthz", method="GET", status="200") == 1
    assert value(mb, "toxdistill_requests_total", route="/healthz", method="GET", status="200") == 0
    assert value(ma, "toxdistill_models_loaded") == 1 and value(mb, "toxdistill_models_loaded") == 2
    # what the model did is the model's, whichever app asked
    assert (
        value(ma, "toxdistill_texts_scored_total", model="odd")
        == value(mb, "toxdistill_texts_scored_total", model="odd")
        == 1
    )
    assert "toxdistill_texts_scored_total" not in {n for n, labels in ma if dict(labels).get("model") == "even"}
    assert attach(models["odd"]) is models["odd"].observer and isinstance(models["odd"].observer, ModelStats)


def test_metrics_are_not_in_the_api_schema(models):
    spec = TestClient(create_app(models), base_url="http://localhost").get("/openapi.json").json()
    assert "/metrics" not in spec["paths"]


def test_every_sample_is_a_number(models):
    client = TestClient(create_app(models), base_url="http://localhost")
    client.post("/api/classify", json={"texts": "x"})
    assert all(math.isfinite(v) for v in scrape(client).values())
