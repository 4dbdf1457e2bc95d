"""Equal-width confidence bins and the expected calibration error over them, for any confidences: a softmax's top
class (``metrics.reliability_bins``) or a yes/no label's (``multilabel.binary_ece``)."""

from __future__ import annotations

import numpy as np


def confidence_bins(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """``reliability_bins`` of any confidences and their rows' correctness (a yes/no label's too)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.zeros(n_bins)
    mean_conf = np.full(n_bins, np.nan)
    acc = np.full(n_bins, np.nan)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            count[b], mean_conf[b], acc[b] = m.sum(), conf[m].mean(), correct[m].mean()
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": acc}


def bins_ece(bins: dict[str, np.ndarray], n: int) -> float:
    """``sum_b count_b / n * |accuracy_b - confidence_b|`` over ``n`` rows' bins."""
    total = 0.0
    for count, acc, conf in zip(bins["count"], bins["accuracy"], bins["confidence"]):
        if count:
            total += count / n * abs(acc - conf)
    return float(total)
