"""`toxdistill serve` under load and at its edges: the cap on model requests (429), the queue timeout (503),
work of a client that hung up, health checks while the model is busy, readiness, slow clients (408) and the
drain on SIGTERM. A fake model blocks on an Event, so every state is reached without timing anything."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402
from live_server import live_server  # noqa: E402

from toxdistill.cli import main  # noqa: E402
from toxdistill.serve.app import create_app  # noqa: E402
from toxdistill.serve.lifecycle import STARTING, Lifecycle, ServeLimits  # noqa: E402
from toxdistill.serve.models import MicroBatcher  # noqa: E402

from conftest import REPO  # noqa: E402

# Short read deadlines so the slow-client tests end quickly; the rest as served by default.
LIMITS = ServeLimits(header_timeout=0.5, body_timeout=0.5, graceful_timeout=5)
WAIT = 10  # seconds any single wait in these tests may take before it fails


@pytest.fixture(scope="module")
def odd(served_models):
    return served_models["odd"]


class Gate:
    """A model run that holds its first batch until ``release`` is set, and records every batch it ran."""

    def __init__(self, model):
        self.model = model
        self.entered = threading.Event()
        self.release = threading.Event()
        self.ran: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[dict]:
        self.ran.append(list(texts))
        self.entered.set()
        self.release.wait(WAIT)
        return self.model.batch_results(texts)


@pytest.fixture
def gated(odd):
    """The odd model behind a ``Gate``, with a 0.2 s queue timeout; the gate is opened and the batcher closed
    at the end whatever the test did."""
    gate = Gate(odd)
    model = replace(odd, batcher=MicroBatcher(gate, wait_ms=0, max_batch=32, name="gated", queue_timeout_s=0.2))
    yield model, gate
    gate.release.set()
    model.batcher.close()


def wait_until(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def request(url: str, method: str, path: str, body=None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection(url.split("//")[1], timeout=WAIT)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        c.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def classify(url: str, text: str) -> tuple[int, dict, bytes]:
    return request(url, "POST", "/api/classify", {"texts": text})


def raw(url: str) -> socket.socket:
    host, port = url.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


# ---------------------------------------------------------------- admission
def test_past_the_cap_a_model_request_gets_429_with_retry_after(gated):
    model, gate = gated
    app = create_app({"odd": model}, max_concurrent_requests=2)
    with live_server(app, LIMITS) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(classify, url, "first")
        wait_until(gate.entered.is_set, "the first request to reach the model")
        second = pool.submit(classify, url, "second")
        wait_until(lambda: model.batcher.waiting == 1, "the second request to queue")
        status, headers, body = classify(url, "third")
        assert status == 429 and headers["retry-after"] == "1" and "busy" in json.loads(body)["detail"]
        status, _, body = request(url, "POST", "/", None)  # the page's form runs a model too
        assert status == 429 and b"429" in body
        assert request(url, "GET", "/healthz")[0] == 200  # the checks are never refused by the cap
        gate.release.set()
        assert first.result()[0] == second.result()[0] == 200
    assert gate.ran == [["first"], ["second"]]  # the refused ones never reached the model


def test_a_request_that_waited_past_the_queue_timeout_gets_503(gated):
    model, gate = gated
    with live_server(create_app({"odd": model}), LIMITS) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(classify, url, "first")
        wait_until(gate.entered.is_set, "the first request to reach the model")
        late = pool.submit(classify, url, "late")
        wait_until(lambda: model.batcher.waiting == 1, "the second request to queue")
        time.sleep(0.3)  # past the 0.2 s queue timeout while the model is held
        gate.release.set()
        assert first.result()[0] == 200
        status, headers, body = late.result()
    assert status == 503 and headers["retry-after"] == "1" and "overloaded" in json.loads(body)["detail"]
    assert gate.ran == [["first"]] and model.batcher.timed_out == 1


def test_the_work_of_a_client_that_hung_up_is_dropped(gated):
    model, gate = gated
    with live_server(create_app({"odd": model}), LIMITS) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(classify, url, "first")
        wait_until(gate.entered.is_set, "the first request to reach the model")
        s = raw(url)
        body = json.dumps({"texts": "abandoned"}).encode()
        s.sendall(b"POST /api/classify HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n")
        s.sendall(b"content-length: %d\r\n\r\n%s" % (len(body), body))
        wait_until(lambda: model.batcher.waiting == 1, "the request to queue")
        s.close()
        metric = 'toxdistill_requests_total{method="POST",route="/api/classify",status="499"} 1.0'
        wait_until(lambda: metric in request(url, "GET", "/metrics")[2].decode(), "the server to see the hang-up")
        gate.release.set()
        assert first.result()[0] == 200
        assert classify(url, "after")[0] == 200  # the batcher moved on
    assert gate.ran == [["first"], ["after"]] and model.batcher.skipped == 1


def test_health_checks_answer_while_the_model_is_held_by_more_requests_than_threads(gated):
    """45 requests wait for the held model: more than Starlette's 40 pool threads, which would all be taken
    if waiting held a thread; the checks still answer, and so does the page."""
    model, gate = gated
    model = replace(model, batcher=MicroBatcher(gate, wait_ms=0, max_batch=64, name="held"))  # no queue timeout
    n = 45
    try:
        with live_server(create_app({"odd": model}), LIMITS) as url, ThreadPoolExecutor(n) as pool:
            waiting = [pool.submit(classify, url, f"t{i}") for i in range(n)]
            # Some may have joined the held first batch; the rest wait in the queue.
            held = lambda: len(gate.ran[0]) if gate.ran else 0  # noqa: E731
            wait_until(lambda: held() + model.batcher.waiting == n, "every request to wait for the model")
            for path in ("/healthz", "/livez", "/readyz", "/"):
                assert request(url, "GET", path)[0] == 200, path
            assert not any(f.done() for f in waiting)
            gate.release.set()
            assert [f.result()[0] for f in waiting] == [200] * n
    finally:
        model.batcher.close()


# ---------------------------------------------------------------- readiness
def test_readiness_follows_the_lifecycle(odd):
    lifecycle = Lifecycle(STARTING)
    client = TestClient(create_app({"odd": odd}, lifecycle=lifecycle), base_url="http://localhost")
    assert client.get("/readyz").status_code == 503 and client.get("/readyz").json() == {"status": "starting"}
    assert client.get("/livez").json() == {"status": "ok"}
    lifecycle.ready()
    assert client.get("/readyz").json() == client.get("/healthz").json() == {"status": "ok"}
    assert client.post("/api/classify", json={"texts": "x"}).status_code == 200
    lifecycle.drain()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "draining"}
    assert client.get("/healthz").status_code == 503
    r = client.post("/api/classify", json={"texts": "x"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "shutting down" in r.json()["detail"]
    assert client.get("/livez").status_code == 200 and client.get("/models/odd").status_code == 200


# ---------------------------------------------------------------- slow clients
def test_slow_clients_get_408_and_are_closed(odd):
    with live_server(create_app({"odd": odd}), LIMITS) as url:
        kept = raw(url)  # a kept-alive connection: answered, then its next request stalls in the headers
        kept.sendall(b"GET /livez HTTP/1.1\r\nhost: localhost\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:
            first += kept.recv(4096)
        silent, trickle, partial = raw(url), raw(url), raw(url)  # all four deadlines run at once
        trickle.sendall(b"POST /api/classify HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{")
        partial.sendall(b"POST /api/classify HTTP/1.1\r\nhost: local")
        kept.sendall(b"GET /livez HTTP/1.1\r\n")
        assert read_all(silent) == b""  # a connection that never sends is closed, with nothing to answer
        answer = read_all(trickle)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"body took too long" in answer
        assert read_all(partial).startswith(b"HTTP/1.1 408 ")
        assert first.startswith(b"HTTP/1.1 200 ") and read_all(kept).startswith(b"HTTP/1.1 408 ")
        assert classify(url, "still serving")[0] == 200
        for s in (silent, trickle, partial, kept):
            s.close()


def test_a_trickled_body_cannot_hold_the_drain(odd):
    slow = replace(LIMITS, body_timeout=WAIT * 3)  # the body deadline is far: only the drain ends it
    handle: list = []
    with live_server(create_app({"odd": odd}), slow, handle=handle) as url:
        s = raw(url)
        s.sendall(b"POST /api/classify HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{")
        wait_until(lambda: any(c.cycle is not None for c in handle[0].server_state.connections), "the request")
        handle[0].should_exit = True
        assert read_all(s).startswith(b"HTTP/1.1 503 ")
        s.close()


# ---------------------------------------------------------------- the command: open late, drain on SIGTERM
# Runs `toxdistill serve` with a slow load (so the closed port can be seen) and a model that takes half a
# second over any text containing "slow" (so a request is in flight when SIGTERM comes), and says when
# close_models ran.
SCRIPT = r"""
import pathlib, sys, time
import toxdistill.cli.serve as cli
from toxdistill.serve import build, models

flags = pathlib.Path(sys.argv[1])
real_batch, real_load, real_close = models.ServedModel.batch_results, build.load_models, cli.close_models

def batch_results(self, texts):
    if any("slow" in t for t in texts):
        (flags / "running").touch()
        time.sleep(0.5)
    return real_batch(self, texts)

def load_models(*a, **k):
    import os
    (flags / "loading").touch()
    time.sleep(0.5)
    loaded = real_load(*a, **k)
    (flags / f"loaded-{os.getpid()}").touch()
    return loaded

def close_models(ms):
    real_close(ms)
    print("close_models ran", file=sys.stderr, flush=True)

models.ServedModel.batch_results = batch_results
build.load_models, cli.close_models = load_models, close_models
from toxdistill.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_in_flight_work_and_exits_0(tiny_run, tmp_path, workers):
    """With --workers 2 the signal goes to the supervisor, which passes it on to both workers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", SCRIPT, str(tmp_path), "serve", str(tiny_run), "--models", "odd"]
    cmd += ["--port", str(port), "--threads", "1", "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: (tmp_path / "loading").exists() or proc.poll() is not None, "the models to load")
        with pytest.raises(ConnectionRefusedError):  # no connection is taken before the models are loaded
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        log = ""
        while not re.search(r"serving 1 model\(s\) .* at http://localhost:\d+/", log):
            log += lines.get(timeout=60)
        assert request(url, "GET", "/readyz")[0] == 200  # answered at once: the models are in
        # Every worker has its models (each drains and closes them); the announcement is the first one's.
        wait_until(lambda: len(list(tmp_path.glob("loaded-*"))) == workers, "every worker's models")
        with ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(classify, url, "a slow one")
            wait_until(lambda: (tmp_path / "running").exists(), "the request to reach the model")
            proc.send_signal(signal.SIGTERM)
            status, _, body = inflight.result()
        assert status == 200 and json.loads(body)["results"][0]["label"]
        assert proc.wait(timeout=WAIT * 2) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
    while not lines.empty():
        log += lines.get()
    assert log.count("close_models ran") == workers and "server stopped" in log and "Traceback" not in log


def test_sigterm_while_the_workers_load_stops_them_cleanly(tiny_run, tmp_path):
    """A stop during start-up (a rolling restart that changes its mind) ends every worker with 0: none holds a
    request yet, and none is killed by the signal's default action."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", SCRIPT, str(tmp_path), "serve", str(tiny_run), "--models", "odd"]
    cmd += ["--port", str(port), "--threads", "1", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "loading").exists() or proc.poll() is not None, "the models to load")
        proc.send_signal(signal.SIGTERM)  # the loads take 0.5 s more: both workers are still in them
        _, err = proc.communicate(timeout=WAIT * 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "error" not in err and not list(tmp_path.glob("loaded-*"))


@pytest.mark.parametrize(
    "flag, value",
    [("--max-concurrent-requests", "0"), ("--queue-timeout", "0"), ("--body-timeout", "-1"), ("--workers", "0")],
)
def test_bad_limits_are_a_one_line_error(tiny_run, capsys, flag, value):
    assert main(["serve", str(tiny_run), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err
