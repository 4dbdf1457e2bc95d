"""The quick pipeline under `torchrun --nproc_per_node 2` on CPU (gloo): one valid set of outputs."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

CONFIG = """
name: ddp
data: {quick_rows: 400}
teacher: {model: "packaged:all-MiniLM-L6-v2", train: {epochs: 1, lr: 1.0e-4, batch_size: 16}}
train: {epochs: 1, lr: 1.0e-4, batch_size: 16}
stages:
  - {name: even, kind: distill, layers: even}
"""


def test_quick_pipeline_under_torchrun(tmp_path, real_data_env):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(CONFIG)
    env = {**real_data_env, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "toxdistill.cli",
        "run",
        "--quick",
        "--config",
        str(cfg),
        "--output-dir",
        str(tmp_path / "runs"),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp-quick"
    results = json.loads((run_dir / "results.json").read_text())
    assert sorted(x["name"] for x in results) == ["even", "teacher", "tfidf-lr"]
    assert r.stdout.count("report:") == 1  # only rank 0 reports
    assert len(list((run_dir / "cache").glob("teacher-*.safetensors"))) == 1
    assert not list(run_dir.glob("**/.*.tmp"))  # no half-written files left by either rank
    assert not (run_dir / "work").exists() or not any((run_dir / "work").iterdir())
