"""Bounded load test of `toxdistill serve` on loopback: N concurrent clients post single tweets.

    python bench/load.py runs/davidson-minilm/export/even-onnx-int8 --duration 60 --clients 32 \
        --texts-from runs/davidson-minilm -o bench/results/load.json

It starts the server itself on 127.0.0.1 (a free port), sends only there, stops after --duration
seconds (plus a drain of at most 30 s), and records requests/s, p50/p99 latency, errors and dropped
requests (sent but never answered). Texts come from the run's test split.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from toxdistill.data.split import load_run_split


def _test_texts(run_dir: Path, limit: int = 2000) -> list[str]:
    return load_run_split(run_dir).test.texts[:limit]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="run folder or model folder to serve")
    ap.add_argument("--texts-from", required=True, help="run folder whose test split supplies the tweets")
    ap.add_argument("--model", default=None, help="model name to request (default: the server's default)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="server inference threads")
    ap.add_argument("--serve-args", default="", help="extra arguments for toxdistill serve")
    ap.add_argument("-o", "--out", default="bench/results/load.json")
    a = ap.parse_args()

    texts = _test_texts(Path(a.texts_from))
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "toxdistill.cli",
        "serve",
        a.target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(a.threads),
        *a.serve_args.split(),
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        _wait_ready(port)
        lat: list[float] = []
        status: dict[int, int] = {}
        errors: list[str] = []
        sent = answered = 0
        lock = threading.Lock()
        stop_at = time.monotonic() + a.duration

        def client(k: int) -> None:
            nonlocal sent, answered
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            i = k
            while time.monotonic() < stop_at:
                body = {"texts": texts[i % len(texts)]}
                if a.model:
                    body["model"] = a.model
                i += a.clients
                with lock:
                    sent += 1
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/api/classify", json.dumps(body), {"Content-Type": "application/json"})
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
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.close()

        workers = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(a.clients)]
        t_start = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=a.duration + 30)
        elapsed = time.monotonic() - t_start
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    lat.sort()

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    ok = status.get(200, 0)
    res = {
        "target": a.target,
        "clients": a.clients,
        "duration_s": elapsed,
        "sent": sent,
        "answered": answered,
        "ok": ok,
        "status": status,
        "errors": len(errors),
        "dropped": sent - answered - len(errors),
        "requests_per_s": ok / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "server_threads": a.threads,
        "machine": f"{os.cpu_count()} CPU cores",
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
