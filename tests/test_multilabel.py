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
# fp32 on every CPU kind (train.bf16 auto is bf16 on some): the tiny models' int8 exports pass their parity
# gates only narrowly, and this run checks the multi-label path, not the training precision.
teacher: {model: TEACHER, train: {epochs: 1, lr: 1.0e-3, batch_size: 16, bf16: false}}
train: {epochs: 1, lr: 1.0e-3, batch_size: 16, perturb: 0.5, bf16: false}
threads: 2
# No behaviour bound: a tiny model learns nothing, and best/ is there to be checked.
frontier: {target: onnx-int8, limit: 24, behaviour_texts: 24}
select: {min_agreement_behaviour: null}
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
    # The frontier holds the exports to the teacher in macro PR AUC and ships one to best/, calibration and all.
    frontier = json.loads((run_dir / "frontier.json").read_text())
    assert all(r["val"]["pr_auc_macro"] is not None for r in frontier["rows"])
    assert "macro PR AUC" in frontier["selection"]["reason"] and "## Compression frontier" in report
    best = json.loads((run_dir / "best" / "toxdistill.json").read_text())
    assert best["task"] == "multi_label" and len(best["calibration"]["thresholds"]) == 2
    assert "probs = 1 / (1 + np.exp(" in (run_dir / "best" / "README.md").read_text()


def test_multilabel_tolerance_reads_macro_pr_auc_not_f1():
    from toxdistill.config import SelectConfig
    from toxdistill.evaluation.frontier import within_tolerance

    teacher = {"model": "teacher", "val": {"pr_auc_macro": 0.80, "f1_macro": 0.9, "f1_weighted": 0.9}}
    close = {"val": {"pr_auc_macro": 0.795, "f1_macro": 0.5, "f1_weighted": 0.5}}  # F1 far off: not read
    far = {"val": {"pr_auc_macro": 0.78, "f1_macro": 0.9, "f1_weighted": 0.9}}
    rule = SelectConfig(max_drop_pr_auc_macro=0.01)
    assert within_tolerance(close, teacher, rule) and not within_tolerance(far, teacher, rule)


def test_multilabel_pareto_is_drawn_on_macro_pr_auc():
    from toxdistill.evaluation.frontier import pareto

    rows = [
        {"model": "slow", "samples_per_s": 10, "val": {"pr_auc_macro": 0.80, "f1_macro": 0.1, "f1_weighted": 0.1}},
        {"model": "fast", "samples_per_s": 99, "val": {"pr_auc_macro": 0.70, "f1_macro": 0.9, "f1_weighted": 0.9}},
    ]
    assert pareto(rows) == {"pr_auc_macro": ["slow", "fast"]}


def _ml_data(**kw):
    from toxdistill.config import DataConfig

    base = {"source": "file", "sha256": None, "task": "multi_label", "label_names": ["hate", "offensive"]}
    return DataConfig.model_validate({**base, "label_cols": ["h", "o"], **kw})


def test_vote_counts_become_multi_hot_labels_and_the_split_keeps_each_combination(tmp_path):
    from toxdistill.data.dataset import load_dataset
    from toxdistill.data.split import make_or_load_split, strata

    combos = [(0, 3), (2, 1), (1, 0), (0, 0)]  # counts: both, hate only... as vote counts
    rows = [f"text number {i},{combos[i % 4][0]},{combos[i % 4][1]}" for i in range(80)]
    (tmp_path / "d.csv").write_text("tweet,h,o\n" + "\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "d.csv", _ml_data(label_min_votes=2))
    assert ds.labels.shape == (80, 2) and ds.labels[:4].tolist() == [[0, 1], [1, 0], [0, 0], [0, 0]]
    assert strata(ds.labels[:2]).tolist() == [2, 1]
    split = make_or_load_split(ds, tmp_path / "split.json", _ml_data(label_min_votes=2), seed=0)
    assert split.test.labels.sum(0).tolist() == [2, 2]  # 20 rows of each label, a tenth in test


def test_multilabel_config_needs_one_column_per_label_and_keeps_old_fingerprints():
    from pydantic import ValidationError

    from toxdistill.config import Config, DataConfig

    with pytest.raises(ValidationError, match="one per label_names"):
        _ml_data(label_cols=["h"])
    with pytest.raises(ValidationError, match="for task: multi_label"):
        DataConfig(label_cols=["h", "o", "n"])
    # The new keys at their defaults name the same training as before they existed.
    assert Config(data=DataConfig(task="single_label")).fingerprint() == Config().fingerprint()
    assert Config(data=_ml_data()).fingerprint() != Config().fingerprint()


def test_a_given_teacher_must_fit_the_task(tiny_model_dir):
    from toxdistill.errors import ToxdistillError
    from toxdistill.models.teacher import check_task

    check_task(str(tiny_model_dir), multi_label=False)
    with pytest.raises(ToxdistillError, match="single-label classifier"):
        check_task(str(tiny_model_dir), multi_label=True)


def test_multilabel_fidelity_is_per_label_decision_agreement_and_probability_gap():
    from toxdistill.evaluation.behaviour import fidelity

    s = np.array([[2.0, -1.0], [0.0, 1.0]])
    t = np.array([[1.0, 1.0], [0.0, 1.0]])  # one of four decisions differs (row 0, label 1)
    f = fidelity(s, t, multi_label=True)
    gap = abs(1 / (1 + math.exp(-2)) - 1 / (1 + math.exp(-1))) + abs(1 / (1 + math.exp(1)) - 1 / (1 + math.exp(-1)))
    assert f["agreement"] == 0.75 and f["tvd"] == pytest.approx(gap / 4)


def test_perturbations_aim_at_a_multilabel_rows_first_label():
    from toxdistill.data.perturb import aim_classes

    assert aim_classes(np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])) == [1, 0, 0]
    assert aim_classes(np.array([2, 0])) == [2, 0]


def test_check_and_evaluate_refuse_a_multilabel_run_in_one_line(multilabel_run, tmp_path, capsys):
    ext = tmp_path / "ext.csv"
    ext.write_text("text,label\nyou are great,neither\n")
    for argv in (["check", str(multilabel_run)], ["evaluate", str(multilabel_run), "--data", str(ext)]):
        capsys.readouterr()
        assert main(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert any("multi-label" in line for line in err) and "Traceback" not in "\n".join(err)
