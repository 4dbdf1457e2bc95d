"""`toxdistill run --quick` end to end on the real Davidson CSV (a few minutes on 2 cores)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import DAVIDSON

pytestmark = pytest.mark.integration

REQUIRED_KEYS = {
    "name",
    "kind",
    "layers",
    "accuracy",
    "f1_weighted",
    "f1_macro",
    "f1_per_class",
    "train_loss",
    "val_loss",
    "test_loss",
    "params",
    "trainable_params",
    "size_mb",
    "throughput_sps",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, real_data_env):
    out = tmp_path_factory.mktemp("runs")
    env = real_data_env
    cmd = [
        sys.executable,
        "-m",
        "toxdistill.cli",
        "run",
        "--quick",  # no --config: the default config shipped in the package
        "--output-dir",
        str(out),
        # 400 rows, not the 2,400 of --quick: every stage of the default config still runs, at a sixth of the CI
        # cost (--seeds, the repeats of the distill stages, runs on a tiny teacher in tests/test_seeds.py).
        "--set",
        "data.quick_rows=400",
        # The frontier in ONNX Runtime int8 on the 40 test texts: the same step at a CI's cost (NNCF's calibration
        # per model would add minutes; tests/test_frontier.py covers the engines on tiny models).
        "--set",
        "frontier.target=onnx-int8",
        "--set",
        "frontier.limit=40",
        # 40 validation rows with 2 or 3 hate tweets swing macro F1 by many points: no tolerance, so the fastest model
        # whose export passed its gates is shipped, and best/ is there to check.
        "--set",
        "select.max_drop_f1_weighted=null",
        "--set",
        "select.max_drop_f1_macro=null",
        # Nor a behaviour bound, for the same reason; 10 perturbed validation texts per kind keep its set small.
        "--set",
        "select.min_agreement_behaviour=null",
        "--set",
        "frontier.behaviour_texts=180",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "davidson-minilm-quick", cmd, env


def test_quick_run_writes_everything(quick_run):
    run_dir, _, _ = quick_run
    results = json.loads((run_dir / "results.json").read_text())
    names = {r["name"] for r in results}
    assert {
        "tfidf-lr",
        "teacher",
        "odd",
        "even",
        "lora-student",
        "distill-lora",
        "cnn",
    } <= names
    # Off in the default config, to keep the run within 45 minutes (each with its reason in the config)
    assert not names & {"even-llrd", "lora-teacher", "shallow-1", "shallow-1-llrd"}
    for r in results:
        assert set(r) >= REQUIRED_KEYS, r["name"]
        assert 0 <= r["accuracy"] <= 1 and r["throughput_sps"] > 0
    by = {r["name"]: r for r in results}
    assert by["odd"]["layers"] == [1, 3, 5] and by["even"]["layers"] == [2, 4, 6]
    assert by["cnn"]["layers"] is None
    assert by["lora-student"]["layers"] == [2, 4, 6]
    assert by["lora-student"]["trainable_params"] / by["lora-student"]["params"] <= 0.02
    report = (run_dir / "report.md").read_text()
    assert "| Model | Train Loss | Validation Loss | Test Accuracy | Test F1 |" in report
    # Each trained model records the precision train.bf16 "auto" chose on this CPU, and the report names it.
    from toxdistill.cpu import native_bf16
    from toxdistill.runs import read_meta

    precision = "bf16" if native_bf16() else "fp32"
    trained = names - {"tfidf-lr"}
    assert {read_meta(run_dir / "models" / n)["train"]["precision"] for n in trained} == {precision}
    assert {by[n]["train_precision"] for n in trained} == {precision} and by["tfidf-lr"]["train_precision"] is None
    assert f"{'bf16 autocast' if precision == 'bf16' else 'fp32'}: " in report
    split = json.loads((run_dir / "split.json").read_text())
    assert split["source_sha256"].startswith("fcb8bc7c")
    assert (run_dir / "config.yaml").is_file()
    for name in names:
        assert (run_dir / "models" / name / "confusion.png").stat().st_size > 1000
        assert (run_dir / "models" / name / "reliability.png").stat().st_size > 1000
    assert not (run_dir / "seeds.json").exists() and not (run_dir / "seeds").exists()  # no --seeds: no repeats
    for r in results:  # calibrated on validation: temperature, a class bias, and decision offsets
        assert r["temperature"] > 0 and len(r["calibration_bias"]) == 3, r["name"]
        assert 0 <= r["ece_calibrated"] <= 1 and r["tuned"]["f1_macro"] > 0
        assert 0 <= r["val"]["f1_macro"] <= 1, r["name"]  # validation scores sit beside the test ones
    assert "## Validation beside test" in report
    # The frontier: every transformer model exported and benched side by side, and the winner shipped.
    frontier = json.loads((run_dir / "frontier.json").read_text())
    assert {r["model"] for r in frontier["rows"]} == names - {"tfidf-lr"}
    assert all(r["samples_per_s"] > 0 and r["x_naive_teacher"] > 0 for r in frontier["rows"])
    chosen = frontier["selection"]["model"]
    assert chosen in names and "## Compression frontier" in report
    card = (run_dir / "best" / "README.md").read_text()
    assert card.startswith("---\n") and "## How to load" in card and "## Speed on this machine" in card
    assert json.loads((run_dir / "best" / "selection.json").read_text())["selection"]["model"] == chosen
    # Each candidate's fidelity to the teacher on the behaviour set, beside its scores.
    assert all(r["behaviour"]["overall"]["texts"] > 321 for r in frontier["rows"] if r["model"] != "teacher")


def test_saved_model_loads_with_plain_transformers_and_agrees(quick_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from toxdistill.config import load_config
    from toxdistill.data.dataset import load_dataset
    from toxdistill.data.split import make_or_load_split

    run_dir, _, _ = quick_run
    cfg = load_config(run_dir / "config.yaml")
    split = make_or_load_split(load_dataset(DAVIDSON, cfg.data), run_dir / "split.json", cfg.data, cfg.seed)
    for name in ("even", "lora-student", "cnn"):
        d = run_dir / "models" / name
        # The CNN's class ships in its folder (auto_map), which plain transformers runs only when asked to.
        model = AutoModelForSequenceClassification.from_pretrained(d, trust_remote_code=name == "cnn").eval()
        tok = AutoTokenizer.from_pretrained(d)
        texts = split.test.texts[:64]
        with torch.no_grad():
            logits = model(**tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
        saved = np.load(d / "test_logits.npy")[:64]
        np.testing.assert_allclose(logits.numpy(), saved, atol=1e-4)


def test_rerun_skips_finished_stages(quick_run, monkeypatch, capsys):
    from toxdistill.cli import main

    run_dir, cmd, env = quick_run
    # The same command in this process: a second interpreter would spend its time importing, not skipping.
    monkeypatch.setenv("TOXDISTILL_DATA", env["TOXDISTILL_DATA"])
    capsys.readouterr()
    assert main(cmd[cmd.index("run") :]) == 0
    assert capsys.readouterr().out.count("done already") == 7  # tfidf-lr, the teacher and the 5 enabled stages
