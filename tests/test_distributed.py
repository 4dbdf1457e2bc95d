"""The quick pipeline under `torchrun` and `accelerate launch` with 2 processes on CPU (gloo):
DDP really trains across both, and exactly one valid set of outputs comes out."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

CONFIG = """
name: ddp
data: {quick_rows: 400}
teacher: {model: TEACHER, train: {epochs: 1, lr: 1.0e-4, batch_size: 16}}
train: {epochs: 1, lr: 1.0e-4, batch_size: 16}
AFTER_TRAINING
stages:
  - {name: even, kind: distill, layers: even}
  - {name: small, kind: distill, student: STUDENT}   # another family and hidden size: the projection under DDP
"""


# The steps after training run on rank 0 alone, whichever launcher started the ranks: under torchrun, the checks, the
# eval sets and the frontier in ONNX Runtime's int8 on 50 texts (no NNCF calibration per model); under accelerate,
# none of them, a few seconds less.
AFTER_TRAINING = {
    "torchrun": "frontier: {target: onnx-int8, limit: 50}",
    "accelerate": "robustness: {enabled: false}\neval_sets: []\nfrontier: {enabled: false}",
}

LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"],
    # On a machine without GPUs --multi_gpu still means "DDP through torch.distributed.run"; the
    # processes pick gloo because there is no CUDA device.
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29534",
    ],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_quick_pipeline_under_ddp_launcher(tmp_path, real_data_env, launcher, tiny_model_dir):
    from toxdistill.models.teacher import load_tokenizer, resolve_model_path

    from conftest import tiny_family

    student = tmp_path / "tiny-mpnet"
    tiny_family("mpnet", n_layers=2, hidden=48).save_pretrained(student)
    load_tokenizer(resolve_model_path("packaged:all-MiniLM-L6-v2")).save_pretrained(student)
    cfg = tmp_path / "ddp.yaml"
    # Tiny models: the launchers, the ranks and the outputs are what is tested, not what a model learns.
    cfg.write_text(
        CONFIG.replace("STUDENT", str(student))
        .replace("TEACHER", str(tiny_model_dir))
        .replace("AFTER_TRAINING", AFTER_TRAINING[launcher])
    )
    env = {**real_data_env, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        *LAUNCHERS[launcher],
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
    assert sorted(x["name"] for x in results) == ["even", "small", "teacher", "tfidf-lr"]
    assert r.stdout.count("report:") == 1  # only rank 0 reports
    assert len(list((run_dir / "cache").glob("teacher-*.safetensors"))) == 1
    assert not list(run_dir.glob("**/.*.tmp"))  # no half-written files left by either rank
    assert not (run_dir / "work").exists() or not any((run_dir / "work").iterdir())
    for model in ("teacher", "even", "small"):  # every training stage ran as one 2-process DDP job
        meta = json.loads((run_dir / "models" / model / "toxdistill.json").read_text())
        assert meta["train"]["world_size"] == 2
