"""Multi-label tasks (``data.task: multi_label``): one sigmoid per label. Their metrics (per label ROC AUC, PR AUC
and F1 at a threshold tuned on validation, with macro means) and their calibration (a temperature and bias per
label, Platt scaling, and a decision threshold per label).

The calibration record a model folder's toxdistill.json holds, and serving applies, is
``{"temperature": [T_l], "bias": [b_l], "thresholds": [t_l]}``: the calibrated probability of label l is
``sigmoid(logit_l / T_l + b_l)``, and label l is decided where it is at least ``t_l``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, multilabel_confusion_matrix, roc_auc_score

from toxdistill.evaluation.bins import bins_ece, confidence_bins
from toxdistill.evaluation.logits import calibrated_logits, sigmoid
from toxdistill.files import MULTI_LABEL_TASK

# The Trainer's scores on validation each epoch; ``train.best_metric`` names one (f1_macro means pr_auc_macro).
TRAINER_METRICS = ("accuracy", "f1_macro", "f1_weighted", "pr_auc_macro", "roc_auc_macro")
# The epoch a multi-label model keeps: PR AUC is the ranking metric of a rare label, and unlike F1 at a fixed cut
# it does not move with the calibration fitted after training.
BEST_METRIC = "pr_auc_macro"


def bce(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean unweighted binary cross-entropy over rows and labels, the same for every model so losses compare."""
    z = np.asarray(logits, dtype=np.float64)
    # log(1 + e^z) - y z, stable for large |z|
    return float((np.logaddexp(0.0, z) - np.asarray(labels) * z).mean())


def _per_label(fn, labels: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """``fn(y_l, s_l)`` for each label; None for a label whose rows are all one value (no ranking to score)."""
    out: list[float | None] = []
    for lab in range(labels.shape[1]):
        y = labels[:, lab]
        out.append(float(fn(y, scores[:, lab])) if 0 < y.sum() < len(y) else None)
    return out


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else None


def decision_metrics(labels: np.ndarray, decided: np.ndarray, label_names: list[str]) -> dict:
    """Per label precision, recall, F1 and support of 0/1 ``decided`` (n, L); macro and support-weighted F1; exact
    match as ``accuracy``; each label's 2x2 confusion matrix [[tn, fp], [fn, tp]]."""
    y, d = np.asarray(labels).astype(bool), np.asarray(decided).astype(bool)
    tp, fp, fn = (y & d).sum(0), (~y & d).sum(0), (y & ~d).sum(0)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    support = y.sum(0)
    return {
        "accuracy": float((y == d).all(1).mean()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * support).sum() / max(support.sum(), 1)),
        "f1_per_class": dict(zip(label_names, map(float, f1))),
        "precision_per_class": dict(zip(label_names, map(float, prec))),
        "recall_per_class": dict(zip(label_names, map(float, rec))),
        "support_per_class": dict(zip(label_names, map(int, support))),
        "confusion_matrix": multilabel_confusion_matrix(y, d).tolist(),
    }


def ranking_metrics(labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict:
    """Per label ROC AUC and PR AUC (average precision) of the scores, and their macro means over the labels
    that have both values in ``labels``."""
    roc = _per_label(roc_auc_score, labels, logits)
    pr = _per_label(average_precision_score, labels, logits)
    return {
        "roc_auc_per_label": dict(zip(label_names, roc)),
        "pr_auc_per_label": dict(zip(label_names, pr)),
        "roc_auc_macro": _mean(roc),
        "pr_auc_macro": _mean(pr),
    }


def multilabel_metrics(labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict:
    """The headline scores: decisions at probability 0.5 (logit 0) and the ranking metrics."""
    return {
        **decision_metrics(labels, np.asarray(logits) > 0, label_names),
        **ranking_metrics(labels, logits, label_names),
    }


def multilabel_report_metrics(
    val_logits: np.ndarray, test_logits: np.ndarray, val, test, label_names: list[str]
) -> dict:
    """``evaluate_predictor``'s record for a multi-label model: losses (BCE), the validation headline and the test
    scores (``multilabel_metrics``)."""
    v = multilabel_metrics(val.labels, val_logits, label_names)
    return {
        "task": MULTI_LABEL_TASK,
        "val_loss": bce(val_logits, val.labels),
        "val": {
            k: v[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class", "pr_auc_macro", "roc_auc_macro")
        },
        "test_loss": bce(test_logits, test.labels),
        **multilabel_metrics(test.labels, test_logits, label_names),
    }


def trainer_metrics(label_names: list[str]):
    """The Trainer's ``compute_metrics`` for a multi-label model: ``TRAINER_METRICS`` on validation, with
    ``f1_macro`` the score ``BEST_METRIC`` names where a config left ``best_metric`` at its default."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred
        m = multilabel_metrics(np.asarray(labels), np.asarray(logits), label_names)
        return {k: float(m[k] or 0.0) for k in TRAINER_METRICS}

    return compute


# ---------------------------------------------------------------- calibration
def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling of one label: the a > 0 and b minimising validation BCE of ``sigmoid(a z + b)``, returned as
    ``(T, b)`` with T = 1 / a. Convex in (a, b), a one-feature logistic regression, so L-BFGS finds it."""
    from scipy.optimize import minimize

    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        s = p[0] * z + p[1]
        g = (sigmoid(s) - y) / len(y)  # d BCE / d s
        return float((np.logaddexp(0.0, s) - y * s).mean()), np.array([(g * z).sum(), g.sum()])

    res = minimize(objective, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(1e-3, None), (None, None)])
    return float(1.0 / res.x[0]), float(res.x[1])


def fit_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The probability cut (decide at >=) that maximises F1 of one label on validation, over every distinct
    probability; ties go to the cut nearest 0.5, so a flat stretch of F1 keeps the plain decision."""
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return 0.5  # no positive row: nothing to tune on
    cuts = np.unique(np.concatenate([np.asarray(probs, dtype=np.float64), [0.5]]))
    decided = probs[None, :] >= cuts[:, None]
    tp = (decided & y).sum(1)
    fp = (decided & ~y).sum(1)
    fn = y.sum() - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    best = np.lexsort((np.abs(cuts - 0.5), -f1))[0]
    return float(cuts[best])


def calibrated_probs(logits: np.ndarray, temperature, bias) -> np.ndarray:
    """``sigmoid(logit_l / T_l + b_l)`` per label."""
    return sigmoid(calibrated_logits(np.asarray(logits, dtype=np.float64), np.asarray(temperature), np.asarray(bias)))


def fit_calibration(val_logits: np.ndarray, val_labels: np.ndarray) -> dict:
    """The calibration record, fitted on validation: a Platt temperature and bias per label, then each label's
    F1-best threshold on the calibrated probabilities."""
    temps, biases, cuts = [], [], []
    for lab in range(val_logits.shape[1]):
        y = val_labels[:, lab]
        t, b = fit_platt(val_logits[:, lab], y) if 0 < y.sum() < len(y) else (1.0, 0.0)
        temps.append(t)
        biases.append(b)
        cuts.append(fit_threshold(calibrated_probs(val_logits[:, lab], t, b), y))
    return {"temperature": temps, "bias": biases, "thresholds": cuts}


def binary_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """``metrics.ece`` of one label read as a two-class classifier: confidence max(p, 1 − p), correct where the
    0.5 decision is the label, over equal-width confidence bins."""
    correct = (p >= 0.5) == np.asarray(y).astype(bool)
    return bins_ece(confidence_bins(np.maximum(p, 1 - p), correct, n_bins), len(p))


def mean_ece(probs: np.ndarray, labels: np.ndarray) -> float:
    """The labels' mean expected calibration error, each label a binary classifier (``binary_ece``)."""
    p = np.asarray(probs, dtype=np.float64)
    return float(np.mean([binary_ece(p[:, k], labels[:, k]) for k in range(p.shape[1])]))


def tuned_metrics(test_logits: np.ndarray, test_labels: np.ndarray, cal: dict, label_names: list[str]) -> dict:
    """Test scores under the calibration record: F1 at each label's tuned threshold (``f1_at_t``), as the
    ``tuned`` block single-label models report beside argmax."""
    probs = calibrated_probs(test_logits, cal["temperature"], cal["bias"])
    m = decision_metrics(test_labels, probs >= np.asarray(cal["thresholds"]), label_names)
    return {k: m[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class", "confusion_matrix")}
