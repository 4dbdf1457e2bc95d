"""Bounded load tests of `toxdistill serve` on loopback.

    python bench/load.py RUN/export/even-onnx-int8 --texts-from RUN --suite -o bench/results/load-wrk-x/load.json

``--suite`` drives the server with ``wrk`` (a Lua script posts real tweets) through five steps, each bounded
in time and connections: single-text requests at 32 connections; 32-text requests at 8; overload, 200
connections for 20 s (every answer counted by status; the latency of admitted requests sampled by two probe
clients; /healthz timed every 100 ms; the server's RSS sampled), then how fast throughput comes back once
the overload stops; and SIGTERM under load (exit status, time to exit, whether any in-flight request was
cancelled). With the server stopped, it then times the same model offline on the same texts and threads
(the Predictor, length-sorted batches of 64), and the model alone on batches of random texts of the sizes the
server's passes had in each steady step (what no server could beat with those passes), and states each goal
as met or not, with the CPU's name.

Without ``--suite``, one step is measured by N Python clients (``--clients``), each on one keep-alive
connection posting one text at a time, bounded by ``--duration`` and ``--max-requests``: a quick check that
needs no wrk. Either way the server is started here on 127.0.0.1 (a free port), with a throwaway API key
file (as a team would deploy it; --no-auth serves without keys), and only that address is sent to.
Texts come from a run's test split, or a .txt file (one per line).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from toxdistill.data.readers import detect_format, open_input, read_chunks
from toxdistill.data.split import load_run_split

HOST = "127.0.0.1"  # loopback only, never configurable
GOALS = {"served_vs_offline": 0.70, "p99_ms": 50.0, "errors": 0}


def _texts(source: Path, limit: int = 2000) -> list[str]:
    """Up to ``limit`` non-blank texts: a run folder's test split, or any input file ``toxdistill predict`` reads
    (a .txt, one text per line; a .csv or .jsonl with a text column), read by the same reader."""
    if source.is_dir():
        texts = load_run_split(source).test.texts
    else:
        src = open_input(source, "texts file")
        try:
            texts = []
            for chunk, _ in read_chunks(src, detect_format(src), None, limit):
                texts += [t for t in chunk if t.strip()]
                if len(texts) >= limit:
                    break
        finally:
            src.close()
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


def _batch_histograms(metrics_text: str) -> dict[str, dict]:
    """Per model, the micro-batch size histogram of /metrics: ``buckets`` (bucket bound, passes of at most that
    size, ascending), ``batches`` (passes) and ``texts`` (texts of all passes)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(metrics_text):
        if fam.name != "toxdistill_microbatch_size":
            continue
        for s in fam.samples:
            m = out.setdefault(s.labels["model"], {"buckets": [], "batches": 0, "texts": 0})
            if s.name.endswith("_count"):
                m["batches"] = int(s.value)
            elif s.name.endswith("_sum"):
                m["texts"] = int(s.value)
            elif s.name.endswith("_bucket"):
                m["buckets"].append((float(s.labels["le"]), int(s.value)))
    for m in out.values():
        m["buckets"].sort()
    return out


def _micro_batches(metrics_text: str) -> dict[str, dict]:
    """Per model: passes, texts, mean size, the smallest bucket every pass fits in, and the share per bucket."""
    out = _batch_histograms(metrics_text)
    for m in out.values():
        n, le = m["batches"], m.pop("buckets")
        m["mean_size"] = m["texts"] / n if n else None
        m["max_size_at_most"] = next((b for b, v in le if v == n), None) if n else None
        prev, shares = 0, {}
        for b, v in le:
            if v > prev:
                shares[f"<={b:g}"] = round((v - prev) / n, 4)
            prev = v
        m["share_by_size"] = shares
    return out


SHADOW_FIGURES = frozenset({"sampled", "compared", "agree", "dropped", "errors", "queue", "tv_distance_sum"})


def _shadow_counts(metrics_text: str) -> dict[str, float]:
    """``serve --shadow``'s figures summed over the served models (texts sampled, compared, agreeing, dropped;
    the mean total-variation distance; the queue at the scrape); {} for a server without a shadow."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(metrics_text):
        for s in fam.samples:
            name = s.name.removeprefix("toxdistill_shadow_").removesuffix("_total")
            if s.name.startswith("toxdistill_shadow_") and name in SHADOW_FIGURES:
                out[name] = out.get(name, 0.0) + s.value
    if out.get("compared"):
        out["agreement"] = round(out["agree"] / out["compared"], 4)
        out["mean_tv_distance"] = round(out.pop("tv_distance_sum") / out["compared"], 4)
    return out


def _served_model(a: argparse.Namespace, port: int, key: str | None) -> str:
    if a.model:
        return a.model
    return json.loads(_get(port, "/api/models", key)[1])["default"]


def _rate(work, seconds: float, barrier=None) -> float:
    """Texts/s of ``work()`` (which returns the texts it scored) called until ``seconds`` have passed; with a
    ``barrier`` (one of several processes), started with the others."""
    if barrier is not None:
        barrier.wait()
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        n += work()
    return n / (time.perf_counter() - t0)


def _offline_rates(folder: str, threads: int, texts: list[str], seconds: float, barrier=None, out=None) -> dict:
    """Samples/s of the model in ``folder`` with ``threads`` on ``texts``: raw texts cleaned and scored, in batches
    of 32 and of 64, and texts cleaned beforehand at 64. With a ``barrier`` (one of several processes), each
    timing starts with the others' and the result goes to the ``out`` queue."""
    from toxdistill.inference.predict import load_scorer

    scorer = load_scorer(Path(folder), threads=threads)
    clean = scorer.prepare(texts)
    scorer.logits(clean[:64])  # warm-up

    def rate(batch: int, raw: bool) -> float:
        def work() -> int:
            scorer.logits(scorer.prepare(texts) if raw else clean, batch)
            return len(texts)

        return _rate(work, seconds / 3, barrier)

    res = {"sps_by_batch": {batch: rate(batch, raw=True) for batch in (32, 64)}, "precleaned_sps": rate(64, False)}
    if out is not None:
        out.put(res)
    return res


def _serve_workers(serve_args: str) -> int:
    """``--workers N`` of the server's arguments (1 without it)."""
    args = serve_args.split()
    for i, x in enumerate(args):
        if x == "--workers" and i + 1 < len(args):
            return int(args[i + 1])
        if x.startswith("--workers="):
            return int(x.split("=", 1)[1])
    return 1


def _model_folder(a: argparse.Namespace, model: str) -> str:
    from toxdistill.runs import find_models, select_models

    return str(select_models(find_models(a.target), model)[model])


def _laid_out_as_served(a: argparse.Namespace, target, *args) -> list[dict]:
    """``target(*args, barrier, out)`` in as many processes as the server's ``--workers``, timed at once (2
    processes of 1 thread outrun 1 process of 2 threads on 2 cores, so a one-process ceiling would flatter a
    2-worker server); each process's result."""
    import multiprocessing

    procs = a.offline_workers or _serve_workers(a.serve_args)
    if procs == 1:
        return [target(*args)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(procs, timeout=300), ctx.Queue()
    workers = [ctx.Process(target=target, args=(*args, barrier, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    parts = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    return parts


def _offline(a: argparse.Namespace, model: str, texts: list[str]) -> dict:
    """The same model on the same texts, with nothing else running: the ceiling for serving. Raw texts are
    cleaned and scored, as ``toxdistill predict`` (and the server) does, with the Predictor's length-sorted
    batches of 32 and of 64; the faster is the reference. The speed on texts cleaned beforehand is kept too.
    Laid out as the server is (``_laid_out_as_served``)."""
    folder = _model_folder(a, model)
    threads = a.offline_threads or a.threads
    parts = _laid_out_as_served(a, _offline_rates, folder, threads, texts, a.offline_seconds)
    by_batch = {b: sum(p["sps_by_batch"][b] for p in parts) for b in (32, 64)}
    best = max(by_batch, key=by_batch.__getitem__)
    return {
        "model": model,
        "folder": folder,
        "threads": threads,
        "processes": len(parts),
        "offline_sps": by_batch[best],
        "batch_size": best,
        "sps_by_batch": by_batch,
        "precleaned_sps": sum(p["precleaned_sps"] for p in parts),
    }


def _step_sizes(before: str, after: str, model: str, n: int = 600) -> list[int]:
    """``n`` micro-batch sizes in the mix the server formed between two /metrics scrapes: each histogram bucket
    (lo, hi] gets its share of them, each at the same point of its bucket, the one that gives the step's mean
    (its texts over its passes: 32-text requests make passes of exactly 32, 64, 96...)."""
    empty: dict = {"buckets": [], "texts": 0}
    was, now = _batch_histograms(before).get(model, empty), _batch_histograms(after).get(model, empty)
    was_at = dict(was["buckets"])
    cum = [(le, v - was_at.get(le, 0)) for le, v in now["buckets"]]
    total = cum[-1][1] if cum else 0
    if not total:
        return []
    spans, lo, prev = [], 0, 0
    for le, v in cum:
        hi = int(le) if math.isfinite(le) else 2 * lo
        if v > prev:
            spans.append((lo + 1, max(lo + 1, hi), round(n * (v - prev) / total)))
        lo, prev = hi, v
    drawn = max(1, sum(k for *_, k in spans))
    low = sum(k * a for a, _, k in spans) / drawn
    width = sum(k * (b - a) for a, b, k in spans) / drawn
    at = min(1.0, max(0.0, ((now["texts"] - was["texts"]) / total - low) / width)) if width else 0.0
    sizes = [round(a + at * (b - a)) for a, b, k in spans for _ in range(k)]
    random.Random(0).shuffle(sizes)
    return sizes


def _served_batch_rates(
    folder: str, threads: int, texts: list[str], seconds: float, sizes_by_step: dict, barrier=None, out=None
) -> dict:
    """Samples/s of the model alone (``_offline_rates``' calls, no server) on batches of random texts of the
    sizes the server's micro-batches had in each step, its pass cost measured as the server measures it."""
    from toxdistill.inference.predict import Predictor, load_scorer

    scorer = load_scorer(Path(folder), threads=threads)
    if isinstance(scorer, Predictor):  # as the server does (serve.models.load_models)
        scorer.measure_pass_cost()
    rnd = random.Random(os.getpid())

    def score(batch: list[str]) -> int:
        scorer.logits(scorer.prepare(batch), 64)
        return len(batch)

    res = {}
    for step, sizes in sizes_by_step.items():
        batches = [rnd.sample(texts, min(k, len(texts))) for k in sizes] or [texts[:1]]
        for b in batches:  # warm-up: the engine compiles each new input shape once, as a warm server has
            score(b)
        turn = itertools.cycle(batches)
        res[step] = _rate(lambda turn=turn: score(next(turn)), seconds, barrier)
    if out is not None:
        out.put(res)
    return res


def _served_batches(a: argparse.Namespace, model: str, texts: list[str], sizes_by_step: dict) -> dict:
    """Per step, the model's samples/s on batches made as the server made them: what a server of no cost at
    all would reach with the same micro-batches, so the served share splits into what the batches cost (this
    against ``offline_sps``) and what the server costs (the served rate against this)."""
    seconds = max(1.0, a.offline_seconds / 2)
    parts = _laid_out_as_served(
        a, _served_batch_rates, _model_folder(a, model), a.offline_threads or a.threads, texts, seconds, sizes_by_step
    )
    return {step: sum(p[step] for p in parts) for step in sizes_by_step}


# ---------------------------------------------------------------- the wrk suite
# Goals of the suite (docs/serving.md, "Load"): single-text requests near the offline speed with a low p99;
# 32-text requests nearer still; under 4x overload every request answered fast, the admitted ones within
# 100 ms, /healthz within 50 ms, memory bounded and throughput back within 2 s; SIGTERM loses nothing.
SUITE_GOALS = {
    "single_vs_offline": 0.70,
    "single_p99_ms": 50.0,
    "batch_vs_offline": 0.90,
    "overload_max_ms": 1000.0,
    "overload_admitted_p99_ms": 100.0,
    "overload_healthz_max_ms": 50.0,
    "overload_rss_growth_mb": 200.0,
    "recovery_vs_single": 0.90,
}
WRK_LUA = r"""
-- Posts the JSON bodies of args[1] (one per line) in turn, each thread from its own start; counts answers by
-- status and prints one JSON line at the end.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  bodies = {}
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  counts = {}
  i = math.random(#bodies)
  headers = {["Content-Type"] = "application/json"}
  if args[2] and args[2] ~= "" then headers["Authorization"] = "Bearer " .. args[2] end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/api/classify", headers, bodies[i])
end
function response(status, hdrs, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = string.format('"%d": %d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"status": {%s}, "responses": %d, "duration_s": %.3f, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d}, "latency_ms": {"mean": %.2f, "p50": %.2f, "p90": %.2f, "p99": %.2f, "max": %.2f}}\n',
    table.concat(parts, ", "), summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def _cpu_name() -> str:
    """The CPU's model name and its widest vector extension, from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    extra = [f for f in ("avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name} with {isa}" + (f" ({', '.join(extra)})" if extra else "") + f", {os.cpu_count()} cores"


def _wrk(port: int, bodies: Path, lua: Path, key: str | None, connections: int, seconds: float) -> dict:
    """One wrk run (one thread: the client takes as little of the two cores as it can), its JSON line parsed."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(lua)]
    cmd += [f"http://{HOST}:{port}/api/classify", "--", str(bodies), key or ""]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    res = json.loads(line.removeprefix("WRKJSON "))
    res["connections"] = connections
    res["requests_per_s"] = res["responses"] / res["duration_s"]
    return res


def _rss_mb(pid: int) -> float:
    """Resident memory of the server: the process and its workers, if any (``--workers``)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for ln in Path(f"/proc/{p}/status").read_text().splitlines():
                if ln.startswith("VmRSS:"):
                    total += int(ln.split()[1]) / 1024
    return total


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


class _Sampler:
    """Background samples while a step runs: /healthz latency every 100 ms, the server's RSS every 0.5 s, and
    the latency of admitted single-text requests from ``probes`` clients posting in a loop."""

    def __init__(self, port: int, key: str | None, pid: int, bodies: list[str], probes: int = 2):
        self.port, self.key, self.pid, self.bodies = port, key, pid, bodies
        self.stop = threading.Event()
        self.healthz: list[float] = []
        self.healthz_status: dict[int, int] = {}
        self.rss: list[float] = []
        self.admitted: list[float] = []
        self.probe_status: dict[int, int] = {}
        self.threads = [threading.Thread(target=self._health, daemon=True)]
        self.threads += [threading.Thread(target=self._probe, args=(k,), daemon=True) for k in range(probes)]

    def __enter__(self) -> _Sampler:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)

    def _health(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        k = 0
        while not self.stop.wait(0.1):
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                self.healthz.append(1000 * (time.perf_counter() - t0))
                self.healthz_status[r.status] = self.healthz_status.get(r.status, 0) + 1
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
            k += 1
            if k % 5 == 0:
                self.rss.append(_rss_mb(self.pid))

    def _probe(self, k: int) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        i = k
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/classify", self.bodies[i % len(self.bodies)], headers)
                r = conn.getresponse()
                r.read()
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                continue
            i += 2
            self.probe_status[r.status] = self.probe_status.get(r.status, 0) + 1
            if r.status == 200:
                self.admitted.append(1000 * (time.perf_counter() - t0))
            else:
                self.stop.wait(0.01)  # a refused probe backs off briefly, as Retry-After asks (scaled down)


def _pct(xs: list[float], p: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else None


def _step_overload(a: argparse.Namespace, port: int, key: str | None, pid: int, files: dict, single_rps: float) -> dict:
    bodies = files["single"].read_text().splitlines()
    rss_before = _rss_mb(pid)
    with _Sampler(port, key, pid, bodies) as s:
        res = _wrk(port, files["single"], files["lua"], key, a.overload_connections, a.overload_seconds)
    res["admitted_probe"] = {
        "status": s.probe_status,
        "samples": len(s.admitted),
        "p50_ms": _pct(s.admitted, 0.5),
        "p99_ms": _pct(s.admitted, 0.99),
    }
    res["healthz"] = {
        "status": s.healthz_status,
        "samples": len(s.healthz),
        "p50_ms": _pct(s.healthz, 0.5),
        "p99_ms": _pct(s.healthz, 0.99),
        "max_ms": round(max(s.healthz), 2) if s.healthz else None,
    }
    res["rss_mb"] = {"before": round(rss_before, 1), "max": round(max(s.rss, default=rss_before), 1)}
    # Right after the overload: the same single-text load as the first step, for 2 s.
    rec = _wrk(port, files["single"], files["lua"], key, a.connections, 2)
    res["recovery"] = {
        "requests_per_s": rec["requests_per_s"],
        "vs_single": rec["requests_per_s"] / single_rps if single_rps else None,
        "status": rec["status"],
        "p99_ms": rec["latency_ms"]["p99"],
    }
    return res


def _step_sigterm(a: argparse.Namespace, port: int, key: str | None, server: subprocess.Popen, files: dict) -> dict:
    """Single-text load; SIGTERM after 2 s; how the server ends and what the clients got."""
    out: dict = {}

    def load() -> None:
        out["wrk"] = _wrk(port, files["single"], files["lua"], key, a.connections, 5)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(2)
    t0 = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        code = server.wait()
    exit_s = time.monotonic() - t0
    t.join(timeout=30)
    log = files["log"].read_text()
    return {
        **out,
        "exit_code": code,
        "exit_s": round(exit_s, 3),
        "cancelled_in_flight": "timeout graceful shutdown exceeded" in log,
        "traceback": "Traceback" in log,
    }


def _suite_goals(res: dict) -> dict:
    g, single, batch, over = SUITE_GOALS, res["single"], res["batch32"], res["overload"]
    answered = set(over["status"]) <= {"200", "429", "503"} and not any(over["errors"].values())
    term = res["sigterm"]
    return {
        "single_vs_offline": single["vs_offline"] >= g["single_vs_offline"],
        "single_p99_ms": single["latency_ms"]["p99"] < g["single_p99_ms"],
        "single_errors": set(single["status"]) == {"200"} and not any(single["errors"].values()),
        "batch_vs_offline": batch["vs_offline"] >= g["batch_vs_offline"],
        "overload_all_answered": answered and over["latency_ms"]["max"] < g["overload_max_ms"],
        "overload_admitted_p99_ms": (over["admitted_probe"]["p99_ms"] or 1e9) < g["overload_admitted_p99_ms"],
        "overload_healthz_max_ms": (over["healthz"]["max_ms"] or 1e9) < g["overload_healthz_max_ms"],
        "overload_rss_bounded": over["rss_mb"]["max"] - over["rss_mb"]["before"] < g["overload_rss_growth_mb"],
        "recovery_within_2s": (over["recovery"]["vs_single"] or 0) >= g["recovery_vs_single"],
        "sigterm_clean": term["exit_code"] == 0 and not term["cancelled_in_flight"] and not term["traceback"],
    }


def _suite_files(tmp: Path, texts: list[str], model: str | None) -> dict:
    extra = {"model": model} if model else {}
    single = tmp / "single.jsonl"
    single.write_text("\n".join(json.dumps({"texts": t, **extra}) for t in texts) + "\n")
    groups = [texts[i : i + 32] for i in range(0, len(texts) - 31, 32)] or [texts[:32]]
    batch = tmp / "batch32.jsonl"
    batch.write_text("\n".join(json.dumps({"texts": g, **extra}) for g in groups) + "\n")
    lua = tmp / "post.lua"
    lua.write_text(WRK_LUA)
    return {"single": single, "batch": batch, "lua": lua, "log": tmp / "server.log"}


def _suite(a: argparse.Namespace, texts: list[str]) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("--suite needs wrk (apt-get install wrk)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="toxdistill-load-") as tmp:
        key, key_file = _key_file(a, Path(tmp))
        files = _suite_files(Path(tmp), texts, a.model)
        server = _start_server(a, port, key_file, files["log"])
        res: dict = {}
        try:
            _wait_ready(port, server, files["log"])
            model = _served_model(a, port, key)
            before = _offline(a, model, texts)  # the server idle; once more at the end, stopped
            _wrk(port, files["single"], files["lua"], key, a.connections, 3)  # warm-up, not recorded
            scrapes = [_get(port, "/metrics", key)[1].decode()]
            res["single"] = _wrk(port, files["single"], files["lua"], key, a.connections, a.step_seconds)
            scrapes.append(_get(port, "/metrics", key)[1].decode())
            res["batch32"] = _wrk(port, files["batch"], files["lua"], key, a.batch_connections, a.step_seconds)
            scrapes.append(_get(port, "/metrics", key)[1].decode())
            res["batch32"]["samples_per_s"] = 32 * res["batch32"]["requests_per_s"]
            res["overload"] = _step_overload(a, port, key, server.pid, files, res["single"]["requests_per_s"])
            res["micro_batches"] = _micro_batches(_get(port, "/metrics", key)[1].decode())
            res["shadow"] = _shadow_counts(_get(port, "/metrics", key)[1].decode())
            res["sigterm"] = _step_sigterm(a, port, key, server, files)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=15)
    after = _offline(a, model, texts)
    # The faster of the two timings is the reference: this machine's speed varies from one to the next, and
    # the higher ceiling makes the served share the stricter figure.
    offline = max(before, after, key=lambda o: o["offline_sps"])
    offline["timings_sps"] = [before["offline_sps"], after["offline_sps"]]
    res["single"]["vs_offline"] = res["single"]["requests_per_s"] / offline["offline_sps"]
    res["batch32"]["vs_offline"] = res["batch32"]["samples_per_s"] / offline["offline_sps"]
    sizes = {step: _step_sizes(scrapes[k], scrapes[k + 1], model) for k, step in enumerate(("single", "batch32"))}
    ceiling = _served_batches(a, model, texts, sizes)
    for step, rate in ceiling.items():
        served = res[step]["requests_per_s"] if step == "single" else res[step]["samples_per_s"]
        res[step]["model_at_served_batches_sps"] = rate
        res[step]["vs_served_batches"] = served / rate
        res[step]["served_batches_vs_offline"] = rate / offline["offline_sps"]
    head = {"target": a.target, "model": model, "auth": key is not None, "server_threads": a.threads}
    head |= {"serve_args": a.serve_args, "cpu": _cpu_name(), "offline": offline, "goals": SUITE_GOALS}
    res = {**head, **res}
    res["goals_met"] = _suite_goals(res)
    return res


def _key_file(a: argparse.Namespace, tmp: Path) -> tuple[str | None, Path | None]:
    if a.no_auth:
        return None, None
    key = secrets.token_urlsafe(24)
    key_file = tmp / "keys"
    key_file.write_text(f"# bench/load.py, deleted after the run\n{key}\n")
    return key, key_file


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
    ap.add_argument(
        "--offline-threads", type=int, default=None, help="threads of the offline timing (default: --threads)"
    )
    ap.add_argument(
        "--offline-workers",
        type=int,
        default=None,
        help="processes of the offline timing, summed (default: the server's --workers in --serve-args, else 1)",
    )
    ap.add_argument("-o", "--out", default="bench/results/load.json")
    suite = ap.add_argument_group("the wrk suite")
    suite.add_argument("--suite", action="store_true", help="run the wrk suite instead of the Python clients")
    suite.add_argument("--step-seconds", type=float, default=20.0, help="seconds of each steady step (at most 120)")
    suite.add_argument("--connections", type=int, default=32, help="connections of the single-text steps")
    suite.add_argument("--batch-connections", type=int, default=8, help="connections of the 32-text step")
    suite.add_argument("--overload-connections", type=int, default=200, help="connections of the overload (<= 1000)")
    suite.add_argument("--overload-seconds", type=float, default=20.0, help="seconds of overload (at most 120)")
    a = ap.parse_args()
    if not 0 < a.duration <= 600 or a.max_requests < 1 or a.clients < 1:
        raise SystemExit("--duration must be in (0, 600], --max-requests and --clients at least 1")
    if not (0 < a.step_seconds <= 120 and 0 < a.overload_seconds <= 120 and 0 < a.overload_connections <= 1000):
        raise SystemExit("--step-seconds and --overload-seconds must be in (0, 120], --overload-connections <= 1000")

    texts = _texts(Path(a.texts_from))
    if a.suite:
        _write(Path(a.out), _suite(a, texts))
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="toxdistill-load-") as tmp:
        key, key_file = _key_file(a, Path(tmp))
        log = Path(tmp) / "server.log"
        server = _start_server(a, port, key_file, log)
        try:
            _wait_ready(port, server, log)
            model = _served_model(a, port, key)
            res = _load(a, port, key, texts)
            scrape = _get(port, "/metrics", key)[1].decode()
            res["micro_batches"] = _micro_batches(scrape)
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
        res["model_at_served_batches_sps"] = _served_batches(a, model, texts, {"all": _step_sizes("", scrape, model)})[
            "all"
        ]
        res["vs_served_batches"] = res["requests_per_s"] / res["model_at_served_batches_sps"]
        got = {"served_vs_offline": res["served_vs_offline"], "p99_ms": res["p99_ms"], "errors": res["errors"]}
        res["goals_met"] = {
            "served_vs_offline": got["served_vs_offline"] >= GOALS["served_vs_offline"],
            "p99_ms": not math.isnan(got["p99_ms"]) and got["p99_ms"] < GOALS["p99_ms"],
            "errors": got["errors"] == 0 and res["non_200"] == 0 and res["dropped"] == 0,
        }
    res["server_threads"] = a.threads
    res["machine"] = _cpu_name()
    _write(Path(a.out), res)


def _write(out: Path, res: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
