"""Flip rate, agreement, total variation and the per-perturbation rows, on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from toxdistill.evaluation.robustness import (
    agreement,
    class_scores,
    drop_matrix,
    drop_summary,
    flip_rate,
    format_robustness,
    heatmap_view,
    held_out_summary,
    robustness_row,
    total_variation,
)


def onehot(classes, k=3, big=10.0):
    out = np.zeros((len(classes), k))
    out[np.arange(len(classes)), classes] = big
    return out


def test_flip_rate_counts_changed_top_classes():
    clean = onehot([0, 1, 2, 2])
    pert = onehot([0, 2, 2, 1])
    assert flip_rate(clean, pert) == 0.5
    assert flip_rate(clean, clean) == 0.0


def test_agreement_is_the_share_of_equal_top_classes():
    assert agreement(onehot([0, 1, 2, 0]), onehot([0, 1, 1, 1])) == 0.5


def test_total_variation_on_known_distributions():
    # softmax of log-probabilities is the probabilities themselves
    p = np.log(np.array([[0.5, 0.5, 0.0 + 1e-12], [1.0, 1e-12, 1e-12]]))
    q = np.log(np.array([[0.5, 0.5, 1e-12], [1e-12, 1.0, 1e-12]]))
    # row 1: identical (0); row 2: disjoint (1) -> mean 0.5
    assert total_variation(p, q) == pytest.approx(0.5, abs=1e-9)
    assert total_variation(p, p) == pytest.approx(0.0, abs=1e-12)


def test_class_scores_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    s = class_scores(labels, preds, 3, focus=0)
    # class 0: tp 1, fn 1, fp 1 -> F1 0.5, recall 0.5; class 1: tp 2, fp 1 -> 0.8; class 2: tp 1, fn 1 -> 2/3
    assert s["f1_focus"] == pytest.approx(0.5)
    assert s["recall_focus"] == pytest.approx(0.5)
    assert s["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert s["accuracy"] == pytest.approx(4 / 6)


def test_a_row_reports_drops_flips_and_fidelity():
    labels = np.array([0, 0, 1, 2])
    clean = onehot([0, 0, 1, 2])  # perfect
    pert = onehot([1, 0, 1, 2])  # one hate row lost
    teacher_pert = onehot([1, 1, 1, 2])
    r = robustness_row(labels, clean, pert, focus=0, teacher_clean=clean, teacher_perturbed=teacher_pert)
    assert r["flip_rate"] == 0.25
    assert r["recall_focus"] == 0.5 and r["drop_recall_focus"] == pytest.approx(0.5)
    assert r["drop_f1_macro"] == pytest.approx(1.0 - r["f1_macro"])
    # Against the perturbed teacher 3 of 4; against the teacher's clean answers the student lost only row 0.
    assert r["agreement"] == 0.75 and r["agreement_clean_teacher"] == 0.75
    r2 = robustness_row(labels, clean, clean, 0, teacher_clean=clean, teacher_perturbed=teacher_pert)
    assert r2["agreement_clean_teacher"] == 1.0 and r2["agreement"] == 0.5  # robust student, fooled teacher
    assert r["tv"] > 0


def test_drop_matrix_and_the_markdown_table():
    labels = np.array([0, 1, 2])
    rows = {
        "teacher": {"leet": robustness_row(labels, onehot([0, 1, 2]), onehot([1, 1, 2]), 0)},
        "even": {"leet": robustness_row(labels, onehot([0, 1, 2]), onehot([0, 1, 2]), 0, None, onehot([1, 1, 2]))},
    }
    models, kinds, m = drop_matrix(rows)
    assert models == ["teacher", "even"] and kinds == ["leet"]
    assert m[0, 0] > 0 and m[1, 0] == 0
    result = {
        "clean": {
            "teacher": class_scores(labels, np.array([0, 1, 2]), 3, 0),
            "even": {**class_scores(labels, np.array([0, 1, 2]), 3, 0), "agreement": 1.0, "tv": 0.0},
        },
        "models": rows,
        "kinds": {"leet": {"changed": 1.0}},
        "focus_class": "hate speech",
        "teacher": "teacher",
        "seed": 0,
        "n_words": 2,
        "targets": "words of 4+ letters",
        "worst_char_drop": {"teacher": rows["teacher"]["leet"]["drop_f1_macro"], "even": 0.0},
    }
    md = format_robustness(result)
    assert "| even | 1.000 | +0.0 | +0.0 |" in md
    assert "| even | 1.000 | 0.000 | 0.667 (leet) |" in md
    assert "agreement with the clean teacher" in md


def _rows(drops: dict[str, float]) -> dict[str, dict[str, float]]:
    return {k: {"drop_f1_macro": v} for k, v in drops.items()}


def test_seen_and_held_out_kinds_are_summed_up_apart():
    rows = _rows({"leet": 0.02, "spaces": 0.10, "case": 0.0, "separators": 0.30, "mixed": 0.20})
    s = held_out_summary(rows, trained=["leet", "spaces", "join"], family=["separators", "zero-width", "mixed"])
    assert s["seen"] == {
        "kinds": ["leet", "spaces"],
        "mean": pytest.approx(0.06),
        "worst": 0.10,
        "worst_kind": "spaces",
    }
    assert s["held_out"]["kinds"] == ["case", "separators", "mixed"]
    assert s["held_out"]["mean"] == pytest.approx(0.5 / 3) and s["held_out"]["worst_kind"] == "separators"
    assert s["held_out_family"]["kinds"] == ["separators", "mixed"]  # zero-width was not scored
    assert held_out_summary(rows, trained=[], family=[])["seen"] is None
    blind = held_out_summary(rows, trained=["leet"], family=["separators"], invisible=["case", "leet"])
    assert blind["seen"] is None and blind["held_out"]["kinds"] == ["spaces", "separators", "mixed"]
    assert blind["invisible"] == ["leet", "case"]
    assert drop_summary(rows, ["zero-width"]) is None


def _result():
    labels = np.array([0, 1, 2])
    perfect, lost = onehot([0, 1, 2]), onehot([1, 1, 2])
    rows = {
        "teacher": {k: robustness_row(labels, perfect, lost, 0) for k in ("leet", "separators")},
        "even": {
            "leet": robustness_row(labels, perfect, perfect, 0),
            "separators": robustness_row(labels, perfect, lost, 0),
        },
    }
    trained = {"teacher": [], "even": ["leet"]}
    return {
        "clean": {n: class_scores(labels, np.array([0, 1, 2]), 3, 0) for n in rows},
        "models": rows,
        "kinds": {"leet": {"changed": 1.0, "family": "training"}, "separators": {"changed": 1.0, "family": "held-out"}},
        "focus_class": "hate speech",
        "teacher": "teacher",
        "seed": 0,
        "n_words": 2,
        "targets": "words of 4+ letters",
        "worst_char_drop": {n: r["leet"]["drop_f1_macro"] for n, r in rows.items()},
        "trained_kinds": trained,
        "held_out": {n: held_out_summary(rows[n], trained[n], ["separators"]) for n in rows},
    }


def test_the_markdown_marks_trained_cells_and_the_held_out_family():
    md = format_robustness(_result())
    assert "| model | clean macro F1 | leet | separators† | worst char-level |" in md
    even = next(line for line in md.splitlines() if line.startswith("| even | 1.000 |"))
    assert "+0.0*" in even and even.count("*") == 1
    assert "Trained on: teacher: none; even: leet." in md
    drop = _result()["models"]["even"]["separators"]["drop_f1_macro"]
    assert f"| even | +0.0 | +0.0 (leet) | {100 * drop:+.1f} | {100 * drop:+.1f} (separators) |" in md
    assert "| teacher | — | — |" in md  # the teacher was trained on no kind


def test_the_heatmap_names_say_what_each_model_was_trained_on():
    view = heatmap_view(_result())
    assert list(view["models"]) == ["teacher (trained on none)", "even (trained on 1 kind)"]
    assert list(view["models"]["even (trained on 1 kind)"]) == ["leet (trained: 1 of 2)", "separators† (held out)"]
    models, kinds, m = drop_matrix(view["models"])
    assert kinds == ["leet (trained: 1 of 2)", "separators† (held out)"] and m.shape == (2, 2)
