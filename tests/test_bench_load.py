"""bench/load.py on a tiny run for two seconds: keys on and off, micro-batch sizes from /metrics, the offline ceiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, SAMPLE_TEXTS

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")


@pytest.mark.parametrize("auth", [True, False], ids=["keys", "no-auth"])
def test_load_script_is_bounded_and_reports_batches_and_the_offline_ceiling(tiny_run, tmp_path, auth):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SAMPLE_TEXTS) + "\n")
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(REPO / "bench" / "load.py"), str(tiny_run), "--texts-from", str(texts)]
    cmd += ["--model", "odd", "--serve-args", "--models odd", "--duration", "2", "--clients", "4"]
    # The offline ceiling once, with keys; the run without them skips it (--offline-seconds 0), a model load less.
    cmd += ["--max-requests", "60", "--threads", "1", "--offline-seconds", "0.5" if auth else "0", "-o", str(out)]
    if not auth:
        cmd.append("--no-auth")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["auth"] is auth and res["model"] == "odd"
    assert res["status"] == {"200": res["ok"]} and res["errors"] == res["non_200"] == res["dropped"] == 0
    assert 0 < res["sent"] <= 60  # bounded by count as well as by time
    assert res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"]
    batches = res["micro_batches"]["odd"]
    assert batches["texts"] == res["ok"]  # every single-text request went through the micro-batcher
    assert 1 <= batches["batches"] <= batches["texts"] and batches["max_size_at_most"] <= 4  # 4 clients
    assert abs(sum(batches["share_by_size"].values()) - 1) < 1e-3
    if not auth:
        assert "offline" not in res and "served_vs_offline" not in res and "goals_met" not in res
        return
    assert res["offline"]["offline_sps"] > 0
    assert res["served_vs_offline"] == pytest.approx(res["requests_per_s"] / res["offline"]["offline_sps"])
    assert set(res["goals_met"]) == {"served_vs_offline", "p99_ms", "errors"} and res["goals_met"]["errors"]
    # The model alone on batches of the sizes the server made: the share of it the server kept.
    assert res["model_at_served_batches_sps"] > 0
    assert res["vs_served_batches"] == pytest.approx(res["requests_per_s"] / res["model_at_served_batches_sps"])


def test_the_replayed_batch_sizes_follow_the_servers_histogram_between_two_scrapes():
    sys.path.insert(0, str(REPO / "bench"))
    from load import _step_sizes

    def scrape(counts: dict[str, int], texts: int) -> str:
        rows = [f'toxdistill_microbatch_size_bucket{{le="{le}",model="m"}} {v}' for le, v in counts.items()]
        rows += [
            f'toxdistill_microbatch_size_sum{{model="m"}} {texts}',
            f'toxdistill_microbatch_size_count{{model="m"}} {counts["+Inf"]}',
        ]
        rows.append('toxdistill_microbatch_size_bucket{le="4.0",model="other"} 99')
        return "# TYPE toxdistill_microbatch_size histogram\n" + "\n".join(rows) + "\n"

    before = scrape({"1.0": 5, "28.0": 5, "32.0": 5, "+Inf": 5}, 5)
    # Then 10 single-text passes and 30 of 32 texts (a 32-text request each): their bucket is 29-32.
    after = scrape({"1.0": 15, "28.0": 15, "32.0": 45, "+Inf": 45}, 5 + 10 + 30 * 32)
    sizes = _step_sizes(before, after, "m", n=400)
    assert len(sizes) == 400 and sizes.count(1) == 100 and set(sizes) == {1, 32}  # the step's mean says 32
    mixed = scrape({"1.0": 15, "28.0": 15, "32.0": 45, "+Inf": 45}, 5 + 10 + 30 * 30)  # 30 on average
    assert set(_step_sizes(before, mixed, "m", n=400)) == {1, 30}
    assert _step_sizes(after, after, "m") == []  # no passes between the scrapes


def test_load_script_refuses_an_unbounded_run(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "load.py"),
            str(tmp_path),
            "--texts-from",
            str(tmp_path),
            "--duration",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "--duration must be in (0, 600]" in r.stderr
