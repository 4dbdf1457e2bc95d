"""Calibration and decision offsets: what is fitted on validation, what is saved, what the Predictor applies."""

import json
import shutil

import numpy as np
import pytest

from toxdistill.evaluation.calibrate import fit_calibration, fit_offsets, fit_temperature
from toxdistill.evaluation.logits import softmax
from toxdistill.evaluation.metrics import ce_loss, ece
from toxdistill.inference.calibration import Calibration
from toxdistill.inference.predict import Predictor

from conftest import SAMPLE_TEXTS


def _shifted_logits(n=6000, seed=0, temperature=2.5, bias=(1.0, -0.8, -0.2)):
    """Labels drawn from softmax(z); the model reports (z - bias) * T: over-confident and prior-shifted,
    as class-weighted training shifts a model's logits by log w_c."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 2.0 + np.array([-1.5, 1.0, 0.0])
    p = softmax(z)
    labels = (rng.random(n)[:, None] > p.cumsum(1)).sum(1)
    return (z - np.asarray(bias)) * temperature, labels


def test_fit_calibration_recovers_temperature_and_prior_shift():
    logits, labels = _shifted_logits()
    t, bias = fit_calibration(logits, labels)
    assert t == pytest.approx(2.5, rel=0.08)
    want = np.array([1.0, -0.8, -0.2])  # undoes the shift, reported with mean 0
    np.testing.assert_allclose(bias, want - want.mean(), atol=0.15)
    assert sum(bias) == pytest.approx(0.0, abs=1e-9)
    # Judged on fresh rows drawn the same way: far better calibrated, and better than temperature alone.
    test, test_labels = _shifted_logits(seed=1)
    t_only = fit_temperature(logits, labels)
    assert ece(softmax(Calibration(t, np.asarray(bias)).calibrated(test)), test_labels) < ece(
        softmax(test / t_only), test_labels
    )
    assert (
        ece(softmax(Calibration(t, np.asarray(bias)).calibrated(test)), test_labels)
        < 0.015
        < 0.1
        < ece(softmax(test), test_labels)
    )
    nll_both = ce_loss(Calibration(t, np.asarray(bias)).calibrated(test), test_labels)
    assert nll_both < ce_loss(test, test_labels, t_only) - 0.01 < ce_loss(test, test_labels)


def test_fit_calibration_leaves_a_calibrated_model_alone():
    logits, labels = _shifted_logits(temperature=1.0, bias=(0.0, 0.0, 0.0))
    t, bias = fit_calibration(logits, labels)
    assert t == pytest.approx(1.0, abs=0.06)
    assert np.abs(bias).max() < 0.1


def test_offsets_never_lower_validation_macro_f1():
    from sklearn.metrics import f1_score

    logits, labels = _shifted_logits(temperature=1.0, bias=(2.0, 0.0, 0.0))  # class 0 under-predicted
    off = fit_offsets(logits, labels)
    before = f1_score(labels, logits.argmax(-1), average="macro")
    after = f1_score(labels, (logits + off).argmax(-1), average="macro")
    assert after > before + 0.01
    assert off[int(np.bincount(labels).argmax())] == 0.0  # the largest class is the reference
    assert off[0] > 0  # the suppressed class is pushed back up


def test_saved_calibration_round_trips_and_the_predictor_applies_it(tmp_path, tiny_model_dir):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    raw = Predictor.load(d, backend="torch")
    logits, _ = raw.logits(SAMPLE_TEXTS)
    cal = {"temperature": 0.5, "bias": [0.3, -0.1, -0.2], "offsets": [0.0, 0.0, 0.0]}
    # Offsets large enough to flip every decision to class 0 for these texts.
    z = logits / 0.5 + np.array(cal["bias"])
    cal["offsets"] = [float((z.max(1) - z[:, 0]).max() + 1.0), 0.0, 0.0]
    meta = json.loads((d / "toxdistill.json").read_text()) | {"calibration": cal}
    (d / "toxdistill.json").write_text(json.dumps(meta))

    p = Predictor.load(d, backend="torch")
    assert p.calibration.temperature == 0.5
    np.testing.assert_allclose(p.calibration.bias, cal["bias"])
    np.testing.assert_allclose(p.probabilities(logits), softmax(z), atol=1e-6)
    assert (p.decide(logits) == 0).all() and not (raw.decide(logits) == 0).all()
    out = p.classify(SAMPLE_TEXTS)
    assert [o["label_id"] for o in out] == [0] * len(SAMPLE_TEXTS)
    for o, probs in zip(out, softmax(z)):
        assert [o["probabilities"][n] for n in p.label_names] == pytest.approx(probs.tolist(), abs=1e-5)
    # A folder calibrated by an older toxdistill (temperature only) still loads, with no bias.
    del meta["calibration"]["bias"]
    (d / "toxdistill.json").write_text(json.dumps(meta))
    old = Predictor.load(d, backend="torch")
    assert old.calibration.bias is None
    np.testing.assert_allclose(old.probabilities(logits), softmax(logits / 0.5), atol=1e-6)
