"""Bootstrap intervals, paired tests and the vectorised metrics behind them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from toxdistill.evaluation import stats
from toxdistill.evaluation.metrics import ece, reliability_bins


def _noisy(y: np.ndarray, p_right: float, rng: np.random.Generator, k: int = 3) -> np.ndarray:
    return np.where(rng.random(len(y)) < p_right, y, rng.integers(0, k, len(y)))


@pytest.fixture
def data(rng):
    y = rng.choice(3, 600, p=[0.1, 0.7, 0.2])
    return y, _noisy(y, 0.8, rng)


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    y = rng.integers(0, 3, (6, n))
    # Sparse predictions so that some rows miss a class entirely (the zero-division branch).
    p = rng.choice(3, (6, n), p=[0.05, 0.8, 0.15])
    cm = stats.confusion_batch(y, p, 3)
    for b in range(6):
        labels = [0, 1, 2]
        assert stats.accuracy(cm)[b] == pytest.approx(accuracy_score(y[b], p[b]))
        assert stats.f1_macro(cm)[b] == pytest.approx(
            f1_score(y[b], p[b], labels=labels, average="macro", zero_division=0)
        )
        assert stats.f1_weighted(cm)[b] == pytest.approx(
            f1_score(y[b], p[b], labels=labels, average="weighted", zero_division=0)
        )
        per = f1_score(y[b], p[b], labels=labels, average=None, zero_division=0)
        assert stats.metric_table()["f1_hate"](cm)[b] == pytest.approx(per[0])
        assert stats.metric_table(focus=2)["f1_hate"](cm)[b] == pytest.approx(per[2])
        np.testing.assert_allclose(stats.f1_per_class(cm)[b], per)


def test_confusion_batch_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="0..2"):
        stats.confusion_batch(np.array([0, 1]), np.array([0, 3]), 3)


def test_bootstrap_ci_contains_point_and_is_seeded(data):
    y, p = data
    ci = stats.bootstrap_ci(y, p, n_boot=300, seed=1)
    assert set(ci) == {"accuracy", "f1_weighted", "f1_macro", "f1_hate"}
    # The interval is the 2.5/97.5% quantiles of the metric over the same resamples, computed here by hand.
    idx = np.concatenate(list(stats.resample_indices(len(y), 300, 1)))
    by_hand = {
        "accuracy": [accuracy_score(y[i], p[i]) for i in idx],
        "f1_macro": [f1_score(y[i], p[i], labels=[0, 1, 2], average="macro", zero_division=0) for i in idx],
    }
    for name, values in by_hand.items():
        lo, hi = np.quantile(values, [0.025, 0.975])
        assert (ci[name]["low"], ci[name]["high"]) == pytest.approx((lo, hi)), name
    assert ci["accuracy"]["point"] == pytest.approx(accuracy_score(y, p))
    assert ci["f1_macro"]["point"] == pytest.approx(f1_score(y, p, average="macro"))
    assert stats.bootstrap_ci(y, p, n_boot=300, seed=1) == ci
    other = stats.bootstrap_ci(y, p, n_boot=300, seed=2)
    assert other["f1_macro"]["point"] == ci["f1_macro"]["point"]
    assert (other["f1_macro"]["low"], other["f1_macro"]["high"]) != (ci["f1_macro"]["low"], ci["f1_macro"]["high"])


def test_bootstrap_ci_width_shrinks_with_more_rows(rng):
    y_small = rng.integers(0, 3, 100)
    y_big = rng.integers(0, 3, 2000)
    small = stats.bootstrap_ci(y_small, _noisy(y_small, 0.7, rng), ["accuracy"], n_boot=300)["accuracy"]
    big = stats.bootstrap_ci(y_big, _noisy(y_big, 0.7, rng), ["accuracy"], n_boot=300)["accuracy"]
    assert big["high"] - big["low"] < small["high"] - small["low"]


def test_custom_metric_and_table_share_resamples(data):
    y, p = data
    fn = {"acc": stats.accuracy}
    one = stats.bootstrap_ci(y, p, fn, n_boot=200, seed=3)
    table = stats.bootstrap_table(y, {"m": p, "copy": p.copy()}, fn, n_boot=200, seed=3)
    assert table["m"] == one and table["copy"] == one


def test_perfect_predictions_give_a_degenerate_interval(data):
    y, _ = data
    ci = stats.bootstrap_ci(y, y, n_boot=100)
    for r in ci.values():
        assert r["low"] == r["point"] == r["high"] == 1.0


def test_paired_pvalue_identical_is_one(data):
    y, p = data
    r = stats.paired_bootstrap_pvalue(y, p, p.copy(), "f1_macro", n_boot=200)
    assert r == {"diff": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    assert stats.paired_bootstrap_pvalue(y, p, p, "accuracy", n_boot=200, method="shift")["p_value"] == 1.0


def test_paired_pvalue_small_for_a_clearly_better_model(rng):
    y = rng.choice(3, 1000, p=[0.1, 0.7, 0.2])
    good, bad = _noisy(y, 0.9, rng), _noisy(y, 0.5, rng)
    for method in ("percentile", "shift"):
        r = stats.paired_bootstrap_pvalue(y, good, bad, "f1_macro", n_boot=400, seed=0, method=method)
        assert r["diff"] > 0.2
        assert r["low"] > 0  # the whole interval is above zero: the better model is better on every resample
        # The +1 correction: the smallest p a 400-resample test can report.
        assert r["p_value"] == pytest.approx((2 if method == "percentile" else 1) / 401)
    rev = stats.paired_bootstrap_pvalue(y, bad, good, "f1_macro", n_boot=400, seed=0)
    assert rev["diff"] < 0 and rev["high"] < 0


def test_paired_pvalue_large_for_two_equally_noisy_models(rng):
    y = rng.choice(3, 800, p=[0.1, 0.7, 0.2])
    r = stats.paired_bootstrap_pvalue(y, _noisy(y, 0.8, rng), _noisy(y, 0.8, rng), "accuracy", n_boot=400)
    assert r["low"] < 0 < r["high"]
    assert r["p_value"] > 0.05


def test_compare_models_matches_single_tests_and_adjusts(rng):
    y = rng.choice(3, 500, p=[0.1, 0.7, 0.2])
    preds = {"teacher": _noisy(y, 0.9, rng), "odd": _noisy(y, 0.8, rng), "even": _noisy(y, 0.85, rng)}
    pairs = [("odd", "even"), ("odd", "teacher"), ("even", "teacher")]
    rows = stats.compare_models(y, preds, pairs, metrics=["f1_macro", "accuracy"], n_boot=200, seed=5)
    assert len(rows) == 6 and [r["metric"] for r in rows] == ["f1_macro"] * 3 + ["accuracy"] * 3
    single = stats.paired_bootstrap_pvalue(y, preds["odd"], preds["teacher"], "f1_macro", n_boot=200, seed=5)
    r = rows[1]
    assert (r["a"], r["b"]) == ("odd", "teacher")
    assert {k: r[k] for k in single} == pytest.approx(single)
    for r in rows:
        assert r["p_value"] <= r["p_holm"] <= 1.0
    with pytest.raises(ValueError, match="no predictions for lora"):
        stats.compare_models(y, preds, [("lora", "teacher")])


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert stats.holm([]) == []


def _m(name, kind, layers=None, student_model=None):
    return {"name": name, "kind": kind, "layers": layers, "student_model": student_model}


def test_default_pairs_follow_kind_and_layers_not_names():
    models = [
        _m("tfidf-lr", "baseline"),
        _m("teacher", "teacher", [1, 2, 3, 4, 5, 6]),
        _m("even", "student", [2, 4, 6]),
        _m("odd", "student", [1, 3, 5]),
        _m("even-llrd", "student", [2, 4, 6]),
        _m("lora-teacher", "lora", [1, 2, 3, 4, 5, 6]),
        _m("lora-student", "lora", [2, 4, 6]),
        _m("minilm", "student", [1, 2, 3, 4, 5, 6], student_model="packaged:all-MiniLM-L6-v2"),
    ]
    assert stats.default_pairs(models) == [
        ("odd", "even"),
        ("odd", "even-llrd"),  # same depth, other layers; even and even-llrd share theirs
        ("even", "teacher"),
        ("odd", "teacher"),
        ("even-llrd", "teacher"),
        ("lora-teacher", "teacher"),
        ("lora-student", "teacher"),
        ("minilm", "teacher"),  # a student of another family is compared with the teacher, not as a layer set
    ]
    # Any names: a run that calls its stages "first-half" and "big" gets the same comparisons.
    renamed = [_m("big", "teacher", [1, 2, 3, 4]), _m("first-half", "student", [1, 2]), _m("last", "student", [3, 4])]
    assert stats.default_pairs(renamed) == [("first-half", "last"), ("first-half", "big"), ("last", "big")]
    assert stats.default_pairs([_m("odd", "student", [1, 3]), _m("even", "student", [2, 4])]) == [("odd", "even")]
    with_floor = [_m("t", "teacher", [1]), _m("floor", "baseline")]
    assert stats.default_pairs(with_floor, include_baseline=True) == [("t", "floor")]


def test_bootstrap_mean_ci(rng):
    x = (rng.random(400) < 0.3).astype(float)
    r = stats.bootstrap_mean_ci(x, n_boot=300, seed=0)
    assert r["point"] == pytest.approx(x.mean())
    means = np.concatenate([x[i].mean(-1) for i in stats.resample_indices(len(x), 300, 0)])
    assert (r["low"], r["high"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert 0.02 < r["high"] - r["low"] < 0.12  # about ±1.96·sqrt(0.3·0.7/400) = ±0.045
    assert stats.bootstrap_mean_ci(x, n_boot=300, seed=0) == r


def test_reliability_diagram_writes_png(tmp_path, rng):
    from toxdistill.evaluation.plots import reliability_diagram

    logits = rng.normal(size=(300, 3)) * 3
    labels = rng.integers(0, 3, 300)
    before = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    after = np.exp(logits / 3) / np.exp(logits / 3).sum(-1, keepdims=True)
    bins = reliability_bins(before, labels, 15)
    assert bins["count"].sum() == 300
    filled = bins["count"] > 0
    # The bins are ece's: the count-weighted gap reproduces it.
    gap = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    assert (bins["count"][filled] / 300 * gap).sum() == pytest.approx(ece(before, labels, 15))
    out = reliability_diagram(before, after, labels, tmp_path / "plots" / "rel.png", "tiny")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
