"""Evaluation: one path for every model, from logits to metrics and plots."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from toxdistill.data.dataset import Dataset


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def ce_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean unweighted cross-entropy, the same for every model so losses compare."""
    return float(-log_softmax(logits.astype(np.float64))[np.arange(len(labels)), labels].mean())


def hate_f1(metrics: dict) -> float:
    """F1 of the first class. Class 0 is hate speech in Davidson's coding, and configs keep that order."""
    return next(iter(metrics["f1_per_class"].values()))


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


def val_headline(val_logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """Argmax scores on validation. Set beside the test scores, they show how far two splits of the
    same data differ: with ~140 hate tweets per split, hate F1 moves by points between them."""
    m = classification_metrics(labels, val_logits.argmax(-1), label_names)
    return {k: m[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class")}


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
    preds = test_logits.argmax(-1)
    out = {
        "val_loss": ce_loss(val_logits, val.labels),
        "val": val_headline(val_logits, val.labels, predictor.label_names),
        "test_loss": ce_loss(test_logits, test.labels),
        **classification_metrics(test.labels, preds, predictor.label_names),
        "throughput_sps": float(len(test) / elapsed) if elapsed > 0 else float("inf"),
    }
    return out, val_logits, test_logits


def plot_confusion(cm: list[list[int]], label_names: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm_arr = np.asarray(cm)
    norm = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(label_names)):
        for j in range(len(label_names)):
            ax.text(
                j,
                i,
                f"{cm_arr[i, j]}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(label_names)), label_names, rotation=20)
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
