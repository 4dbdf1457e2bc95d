"""Multi-label tasks (one sigmoid per label): the losses and metrics against hand computations, the calibration
record, and `toxdistill run` end to end on a tiny teacher with labels derived from vote counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from toxdistill.cli import main
from toxdistill.evaluation import multilabel as ml
from toxdistill.training.losses import bce_loss, distillation_loss, kd_bce_loss
from toxdistill.training.trainer import class_weight_tensor

from conftest import tiny_dataset


def _bce(z: float, y: float, w: float = 1.0) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(w * y * math.log(p) + (1 - y) * math.log(1 - p))


def test_bce_with_pos_weight_matches_a_hand_computation():
    z = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([1.0, 3.0])
    want = (_bce(2.0, 1) + _bce(-1.0, 0, 3) + _bce(0.5, 0) + _bce(0.0, 1, 3)) / 4
    assert bce_loss(z, y, w).item() == pytest.approx(want, rel=1e-6)


def test_kd_bce_is_t_squared_bce_against_the_tempered_teacher_sigmoid():
    s, t, temp = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.0]]), 2.0
    q = [1 / (1 + math.exp(-x / temp)) for x in (3.0, 0.0)]
    want = temp**2 * (_bce(0.5, q[0]) + _bce(-1.0, q[1])) / 2
    assert kd_bce_loss(s, t, temp).item() == pytest.approx(want, rel=1e-6)
    # The student's full loss picks the sigmoid terms for a multi-label model.
    y = torch.tensor([[1.0, 0.0]])
    loss, parts = distillation_loss(s, t, y, s, s, temperature=temp, w_cos=0.0, multi_label=True)
    assert parts["kd"] == pytest.approx(want, rel=1e-6) and parts["ce"] == pytest.approx(bce_loss(s, y).item())


def test_pos_weight_balances_each_label():
    labels = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], dtype=np.float32)  # each label 1 positive of 4
    assert class_weight_tensor("balanced", labels, 2).tolist() == pytest.approx([3.0, 3.0])
    assert class_weight_tensor("sqrt-balanced", labels, 2).tolist() == pytest.approx([math.sqrt(3)] * 2)


def test_metrics_macro_means_skip_a_label_without_both_values():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    z = np.array([[2.0, 0.1], [-1.0, -0.3], [0.5, -2.0], [1.0, 0.2]])
    m = ml.multilabel_metrics(y, z, ["a", "b"])
    assert m["roc_auc_per_label"] == {"a": 0.75, "b": None} and m["roc_auc_macro"] == 0.75
    # Decisions at logit 0: label a tp 2 fp 1 (F1 0.8), label b: 2 false alarms (F1 0); rows 2 and 3 exact.
    assert m["f1_per_class"] == {"a": pytest.approx(0.8), "b": 0.0} and m["accuracy"] == 0.5


def test_threshold_maximises_f1_and_ties_go_to_the_cut_nearest_a_half():
    y = np.array([1, 1, 0, 0, 0])
    assert ml.fit_threshold(np.array([0.30, 0.25, 0.2, 0.1, 0.05]), y) == pytest.approx(0.25)
    # Every cut in (0.2, 0.9] separates the classes: 0.5 itself is one of them.
    assert ml.fit_threshold(np.array([0.95, 0.9, 0.2, 0.1, 0.05]), y) == 0.5


def test_calibration_record_has_a_temperature_bias_and_threshold_per_label():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < [0.1, 0.5]).astype(np.float32)
    z = 3.0 * (2 * y - 1) + rng.normal(0, 3, (400, 2))  # over-confident scores: T > 1
    cal = ml.fit_calibration(z, y)
    assert {k: len(v) for k, v in cal.items()} == {"temperature": 2, "bias": 2, "thresholds": 2}
    assert all(t > 1 for t in cal["temperature"]) and all(0 < c < 1 for c in cal["thresholds"])


CONFIG = """
name: ml
data: {source: file, path: DATA, sha256: null, max_length: 32, task: multi_label,
       label_names: [hate, offensive], label_cols: [hate_speech, offensive_language], label_min_votes: 1}
teacher: {model: TEACHER, train: {epochs: 1, lr: 1.0e-3, batch_size: 16}}
train: {epochs: 1, lr: 1.0e-3, batch_size: 16, perturb: 0.5}
threads: 2
stages:
  - {name: one, kind: distill, layers: [4], distill: {augment: 1}}
  - {name: cnn, kind: distill, arch: cnn}
"""


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("multilabel")
    ds = tiny_dataset(120, seed=3)
    rng = np.random.default_rng(3)
    votes = [(int(y == 0) * rng.integers(1, 3), int(y != 2) * rng.integers(1, 3)) for y in ds.labels]
    rows = [f'"{t}",{h},{o}' for t, (h, o) in zip(ds.texts, votes)]
    (tmp / "tweets.csv").write_text("tweet,hate_speech,offensive_language\n" + "\n".join(rows) + "\n")
    cfg = tmp / "c.yaml"
    cfg.write_text(CONFIG.replace("DATA", str(tmp / "tweets.csv")).replace("TEACHER", str(tiny_model_dir)))
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp / "runs")]) == 0
    return tmp / "runs" / "ml"


def test_run_writes_multilabel_heads_calibration_and_report(multilabel_run):
    run_dir = multilabel_run
    for name in ("teacher", "one", "cnn"):
        folder = run_dir / "models" / name
        assert json.loads((folder / "config.json").read_text())["problem_type"] == "multi_label_classification"
        meta = json.loads((folder / "toxdistill.json").read_text())
        assert meta["task"] == "multi_label" and meta["label_names"] == ["hate", "offensive"]
        cal = meta["calibration"]
        assert set(cal) == {"temperature", "bias", "thresholds"} and all(len(v) == 2 for v in cal.values())
        assert np.load(folder / "test_logits.npy").shape[1] == 2
    by = {r["name"]: r for r in json.loads((run_dir / "results.json").read_text())}
    assert set(by) == {"teacher", "one", "cnn"} and 0 <= by["one"]["pr_auc_macro"] <= 1
    report = (run_dir / "report.md").read_text()
    assert "## Per label (test): ROC AUC / PR AUC / F1@t" in report and "| one |" in report
