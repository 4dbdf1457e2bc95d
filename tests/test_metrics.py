"""The metrics by their definitions, on hand-computed cases: ECE over the shared reliability bins, the NLL of
temperature scaling as ``ce_loss``, the Trainer's metrics, and the class of interest read by name or id."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from toxdistill.evaluation import stats
from toxdistill.evaluation.logits import log_softmax
from toxdistill.evaluation.metrics import TRAINER_METRICS, ce_loss, ece, hate_f1, reliability_bins, trainer_metrics
from toxdistill.inference import calibration

NAMES = ["hate speech", "offensive", "neither"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ece_by_hand_with_confidences_on_the_bin_edges(dtype):
    # Four bins (0, .25], (.25, .5], (.5, .75], (.75, 1]: a confidence on an edge falls in the lower bin.
    # (.25, .5]: conf 0.5 (right) and 0.4 (wrong): mean 0.45, accuracy 0.5. (.5, .75]: 0.75 (wrong).
    # (.75, 1]: 1.0 (right). ECE = 2/4 * |0.5 - 0.45| + 1/4 * |0 - 0.75| + 1/4 * 0 = 0.2125.
    probs = np.array([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0], [0.4, 0.35, 0.25]], dtype=dtype)
    labels = np.array([0, 0, 2, 1])
    bins = reliability_bins(probs, labels, 4)
    assert bins["count"].tolist() == [0, 2, 1, 1]
    assert bins["confidence"][1] == pytest.approx(0.45) and bins["accuracy"].tolist()[1:] == [0.5, 0.0, 1.0]
    assert ece(probs, labels, 4) == pytest.approx(0.2125)


def test_ece_by_hand():
    # Two rows in (0.8, 0.9] (mean confidence 0.85, one right) and one in (0.5, 0.6] (0.55, right):
    # ECE = 2/3 * |0.5 - 0.85| + 1/3 * |1 - 0.55|.
    probs = np.array([[0.82, 0.1, 0.08], [0.05, 0.88, 0.07], [0.55, 0.3, 0.15]])
    labels = np.array([0, 0, 0])
    bins = reliability_bins(probs, labels, 10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 2, 0]
    assert bins["confidence"][8] == pytest.approx(0.85) and bins["accuracy"][8] == 0.5
    assert np.isnan(bins["accuracy"][0])
    assert ece(probs, labels, 10) == pytest.approx(2 / 3 * 0.35 + 1 / 3 * 0.45)


def test_ce_loss_with_a_temperature_is_the_tempered_nll(rng):
    logits = (rng.normal(size=(200, 3)) * 2).astype(np.float32)
    labels = rng.integers(0, 3, 200)
    for t in (0.5, 1.0, 2.7):
        nll = float(-log_softmax(logits.astype(np.float64) / t)[np.arange(200), labels].mean())
        assert ce_loss(logits, labels, t) == nll
    # At T = 1 it is the plain cross-entropy: equal logits cost log K.
    assert ce_loss(np.zeros((4, 3)), np.array([0, 1, 2, 0])) == pytest.approx(np.log(3))


def test_trainer_metrics_are_accuracy_and_f1_by_their_definitions(rng):
    """The keys and values ``_metrics_for_trainer`` reported, so ``train.best_metric`` picks the same epoch."""
    labels = np.tile([0, 1, 2], 40)  # every class in validation, as a stratified split has
    logits = rng.normal(size=(120, 3)) + 1.5 * np.eye(3)[labels]
    got = trainer_metrics(NAMES)((logits, labels))
    preds = logits.argmax(-1)
    assert tuple(got) == TRAINER_METRICS == ("accuracy", "f1_macro", "f1_weighted")
    assert got["accuracy"] == float((preds == labels).mean())
    assert got["f1_macro"] == float(f1_score(labels, preds, average="macro"))
    assert got["f1_weighted"] == float(f1_score(labels, preds, average="weighted"))
    assert all(isinstance(v, float) for v in got.values())


def test_the_class_of_interest_by_name_or_id():
    m = {"f1_per_class": {"hate speech": 0.3, "offensive": 0.9, "neither": 0.8}}
    assert hate_f1(m) == 0.3  # none named: the first class
    assert hate_f1(m, "neither") == hate_f1(m, 2) == 0.8
    cm = stats.confusion_batch(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
    # f1_hate keeps its key and follows the focus class: class 2 has F1 2/3, class 0 has 1.
    assert stats.metric_table(2)["f1_hate"](cm)[0] == pytest.approx(2 / 3)
    assert stats.metric_table()["f1_hate"](cm)[0] == 1.0


def test_the_served_calibration_is_softmax_of_logits_over_t_plus_b(rng):
    """What the Predictor and serve apply, computed by hand: p = softmax(z / T + b), decided with offsets."""
    logits = (rng.normal(size=(50, 3)) * 2).astype(np.float32)
    bias = np.array([0.3, -0.1, -0.2], dtype=np.float32)
    offsets = np.array([0.5, 0.0, 0.0], dtype=np.float32)
    cal = calibration.Calibration(1.7, bias, offsets)
    z = logits.astype(np.float64) / 1.7 + bias
    e = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(cal.probabilities(logits), e / e.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(cal.decide(logits), (z + offsets).argmax(-1))
