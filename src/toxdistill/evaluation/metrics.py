"""Evaluation: one path for every model, from logits to metrics (the plots are in ``evaluation.plots``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from toxdistill.data.dataset import Dataset
from toxdistill.evaluation.bins import bins_ece, confidence_bins
from toxdistill.evaluation.logits import log_softmax

# The scores the Trainer reports on validation each epoch; ``train.best_metric`` names one of them.
TRAINER_METRICS = ("accuracy", "f1_macro", "f1_weighted")


def ce_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean unweighted cross-entropy of ``softmax(logits / temperature)``, the same for every model so losses
    compare; with a temperature it is the NLL that temperature scaling minimises."""
    return float(-log_softmax(logits.astype(np.float64) / temperature)[np.arange(len(labels)), labels].mean())


def hate_f1(metrics: dict, focus: str | int | None = None) -> float:
    """F1 of the class of interest (``data.focus_class``), named or by id, from a metrics dict's ``f1_per_class``.

    None means the first class: the default of ``DataConfig.focus_index()``, and the only choice for folders
    written before the focus class was recorded. Class 0 is hate speech in Davidson's coding.
    """
    per_class = metrics["f1_per_class"]
    if isinstance(focus, str):
        return per_class[focus]
    return list(per_class.values())[focus or 0]


def classification_metrics(labels: np.ndarray, preds: np.ndarray, label_names: list[str]) -> dict:
    k = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=k, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_weighted": float(f1_score(labels, preds, labels=k, average="weighted", zero_division=0)),
        "f1_macro": float(f1_score(labels, preds, labels=k, average="macro", zero_division=0)),
        "f1_per_class": {n: float(x) for n, x in zip(label_names, f)},
        "precision_per_class": {n: float(x) for n, x in zip(label_names, p)},
        "recall_per_class": {n: float(x) for n, x in zip(label_names, r)},
        "support_per_class": {n: int(x) for n, x in zip(label_names, s)},
        "confusion_matrix": confusion_matrix(labels, preds, labels=k).tolist(),
    }


def trainer_metrics(label_names: list[str]) -> Callable[[Any], dict[str, float]]:
    """The Trainer's ``compute_metrics``: ``TRAINER_METRICS`` of the argmax on validation, computed by
    ``classification_metrics`` so that training picks its best epoch by the numbers the report shows.

    The callable takes the Trainer's ``EvalPrediction`` (or any ``(logits, labels)`` pair). The pipeline
    builds it and hands it to ``training.train_model``: training sits below evaluation and imports none of it.
    """

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred
        m = classification_metrics(np.asarray(labels), np.asarray(logits).argmax(-1), label_names)
        return {k: m[k] for k in TRAINER_METRICS}

    return compute


def val_headline(val_logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """Argmax scores on validation. Set beside the test scores, they show how far two splits of the
    same data differ: with ~140 hate tweets per split, hate F1 moves by points between them."""
    m = classification_metrics(labels, val_logits.argmax(-1), label_names)
    return {k: m[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class")}


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin ``(lo, hi]``: ``count``, mean ``confidence`` and ``accuracy``.

    Confidence is the top-class probability and a row is correct when its top class is the label. ``ece``
    is computed from these bins and the reliability diagram draws them. Empty bins have NaN confidence and
    accuracy.
    """
    probs = np.asarray(probs)
    return confidence_bins(probs.max(-1), probs.argmax(-1) == np.asarray(labels), n_bins)


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence over ``reliability_bins``:
    ``sum_b count_b / n * |accuracy_b - confidence_b|``."""
    return bins_ece(reliability_bins(probs, labels, n_bins), len(np.asarray(probs)))


def evaluate_predictor(
    predictor, val: Dataset, test: Dataset, batch_size: int = 64
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Val and test losses, test metrics and CPU throughput (length-sorted batches) for any predictor.

    ``predictor`` needs ``logits(texts, batch_size) -> (logits, truncated)`` and ``label_names``.
    """
    val_logits, _ = predictor.logits(val.texts, batch_size)
    t0 = time.perf_counter()
    test_logits, _ = predictor.logits(test.texts, batch_size)
    elapsed = time.perf_counter() - t0
    if test.multi_label:
        from toxdistill.evaluation.multilabel import multilabel_report_metrics

        out = multilabel_report_metrics(val_logits, test_logits, val, test, predictor.label_names)
        out["throughput_sps"] = float(len(test) / elapsed) if elapsed > 0 else float("inf")
        return out, val_logits, test_logits
    preds = test_logits.argmax(-1)
    out = {
        "val_loss": ce_loss(val_logits, val.labels),
        "val": val_headline(val_logits, val.labels, predictor.label_names),
        "test_loss": ce_loss(test_logits, test.labels),
        **classification_metrics(test.labels, preds, predictor.label_names),
        "throughput_sps": float(len(test) / elapsed) if elapsed > 0 else float("inf"),
    }
    return out, val_logits, test_logits
