"""Bounded load test of `toxdistill serve` on loopback: N concurrent clients post single tweets.

    python bench/load.py runs/davidson-minilm/export/even-onnx-int8 --duration 60 --clients 32 \\
        --texts-from runs/davidson-minilm -o bench/results/load.json

It starts the server itself on 127.0.0.1 (a free port), with a throwaway API key file (as a team would
deploy it; --no-auth serves without keys), sends only there, and stops after --duration seconds or
--max-requests requests, whichever comes first (plus a drain of at most 30 s). It records requests/s,
p50/p95/p99 latency, status codes, errors, dropped requests (sent but never answered), and the
micro-batch sizes the server reached (scraped from its /metrics). Then, with the server stopped, it times
the same model offline on the same texts and threads (the Predictor, length-sorted batches of 64) and
reports the served rate as a share of that. Texts come from a run's test split, or a .txt file (one per line).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from toxdistill.data.split import load_run_split

HOST = "127.0.0.1"  # loopback only, never configurable
GOALS = {"served_vs_offline": 0.70, "p99_ms": 50.0, "errors": 0}


def _texts(source: Path, limit: int = 2000) -> list[str]:
    if source.is_file():
        texts = [t for t in source.read_text(encoding="utf-8").splitlines() if t.strip()]
    else:
        texts = load_run_split(source).test.texts
    if not texts:
        raise SystemExit(f"no texts in {source}")
    return texts[:limit]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(port: int, path: str, key: str | None, timeout: float = 10) -> tuple[int, bytes]:
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.poll() is not None:
            raise SystemExit(f"server exited ({server.returncode}): {log.read_text()[-2000:]}")
        try:
            if _get(port, "/healthz", None, 2)[0] == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server did not start")


def _start_server(a: argparse.Namespace, port: int, key_file: Path | None, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toxdistill.cli", "serve", a.target, "--host", HOST, "--port", str(port)]
    cmd += ["--threads", str(a.threads), *a.serve_args.split()]
    if key_file is not None:
        cmd += ["--api-keys", str(key_file)]
    env = {k: v for k, v in os.environ.items() if k != "TOXDISTILL_API_KEYS"}
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, env=env)


def _load(a: argparse.Namespace, port: int, key: str | None, texts: list[str]) -> dict:
    """N clients, each on one keep-alive connection, posting one text at a time until time or count runs out."""
    lat: list[float] = []
    status: dict[int, int] = {}
    errors: list[str] = []
    sent = answered = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + a.duration
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

    def client(k: int) -> None:
        nonlocal sent, answered
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        i = k
        while time.monotonic() < stop_at:
            with lock:
                if sent >= a.max_requests:
                    break
                sent += 1
            body = {"texts": texts[i % len(texts)], **({"model": a.model} if a.model else {})}
            i += a.clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/classify", json.dumps(body), headers)
                r = conn.getresponse()
                r.read()
                dt = time.perf_counter() - t0
                with lock:
                    answered += 1
                    lat.append(dt)
                    status[r.status] = status.get(r.status, 0) + 1
            except OSError as e:
                with lock:
                    errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.close()

    workers = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(a.clients)]
    t_start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=a.duration + 30)
    elapsed = time.monotonic() - t_start
    lat.sort()

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    ok = status.get(200, 0)
    return {
        "duration_s": elapsed,
        "sent": sent,
        "answered": answered,
        "ok": ok,
        "status": status,
        "errors": len(errors),  # connection failures; an answer other than 200 counts in non_200
        "non_200": answered - ok,
        "dropped": sent - answered - len(errors),
        "requests_per_s": ok / elapsed,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


def _micro_batches(metrics_text: str) -> dict[str, dict]:
    """Per model: passes, texts, mean size, the smallest bucket every pass fits in, and the share per bucket."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(metrics_text):
        if fam.name != "toxdistill_microbatch_size":
            continue
        for s in fam.samples:
            m = out.setdefault(s.labels["model"], {"buckets": {}})
            if s.name.endswith("_count"):
                m["batches"] = int(s.value)
            elif s.name.endswith("_sum"):
                m["texts"] = int(s.value)
            elif s.name.endswith("_bucket"):
                m["buckets"][s.labels["le"]] = int(s.value)
    for m in out.values():
        n = m.get("batches", 0)
        m["mean_size"] = m.get("texts", 0) / n if n else None
        le = [(float(k), v) for k, v in m.pop("buckets").items()]
        m["max_size_at_most"] = next((b for b, v in sorted(le) if v == n), None) if n else None
        prev, shares = 0, {}
        for b, v in sorted(le):
            if v > prev:
                shares[f"<={b:g}"] = round((v - prev) / n, 4)
            prev = v
        m["share_by_size"] = shares
    return out


def _served_model(a: argparse.Namespace, port: int, key: str | None) -> str:
    if a.model:
        return a.model
    return json.loads(_get(port, "/api/models", key)[1])["default"]


def _offline(a: argparse.Namespace, model: str, texts: list[str]) -> dict:
    """The same model on the same texts and threads, with nothing else running: the ceiling for serving."""
    from toxdistill.inference.predict import load_scorer
    from toxdistill.runs import find_models, select_models

    folder = select_models(find_models(a.target), model)[model]
    scorer = load_scorer(folder, threads=a.threads)
    clean = scorer.prepare(texts)
    scorer.logits(clean[:64])  # warm-up
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < a.offline_seconds:
        scorer.logits(clean, 64)
        n += len(clean)
    sps = n / (time.perf_counter() - t0)
    return {"model": model, "folder": str(folder), "offline_sps": sps, "batch_size": 64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="run folder, export folder or model folder to serve")
    ap.add_argument("--texts-from", required=True, help="run folder whose test split supplies the tweets, or a .txt")
    ap.add_argument("--model", default=None, help="model name to request (default: the server's default)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (at most 600)")
    ap.add_argument("--max-requests", type=int, default=500_000, help="stop after this many requests")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="server (and offline) inference threads")
    ap.add_argument("--serve-args", default="", help="extra arguments for toxdistill serve")
    ap.add_argument("--no-auth", action="store_true", help="serve without API keys (default: a throwaway key)")
    ap.add_argument("--offline-seconds", type=float, default=10.0, help="seconds of offline timing (0: skip)")
    ap.add_argument("-o", "--out", default="bench/results/load.json")
    a = ap.parse_args()
    if not 0 < a.duration <= 600 or a.max_requests < 1 or a.clients < 1:
        raise SystemExit("--duration must be in (0, 600], --max-requests and --clients at least 1")

    texts = _texts(Path(a.texts_from))
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="toxdistill-load-") as tmp:
        key = None if a.no_auth else secrets.token_urlsafe(24)
        key_file = None
        if key is not None:
            key_file = Path(tmp) / "keys"
            key_file.write_text(f"# bench/load.py, deleted after the run\n{key}\n")
        log = Path(tmp) / "server.log"
        server = _start_server(a, port, key_file, log)
        try:
            _wait_ready(port, server, log)
            model = _served_model(a, port, key)
            res = _load(a, port, key, texts)
            res["micro_batches"] = _micro_batches(_get(port, "/metrics", key)[1].decode())
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    res = {"target": a.target, "model": model, "clients": a.clients, "auth": key is not None, **res}
    if a.offline_seconds > 0:
        res["offline"] = _offline(a, model, texts)
        res["served_vs_offline"] = res["requests_per_s"] / res["offline"]["offline_sps"]
        got = {"served_vs_offline": res["served_vs_offline"], "p99_ms": res["p99_ms"], "errors": res["errors"]}
        res["goals_met"] = {
            "served_vs_offline": got["served_vs_offline"] >= GOALS["served_vs_offline"],
            "p99_ms": not math.isnan(got["p99_ms"]) and got["p99_ms"] < GOALS["p99_ms"],
            "errors": got["errors"] == 0 and res["non_200"] == 0 and res["dropped"] == 0,
        }
    res["server_threads"] = a.threads
    res["machine"] = f"{os.cpu_count()} CPU cores"
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
