"""From logits to probabilities: softmax, log-softmax and the calibrated logits ``logits / T + b``.

Numpy only, no scipy or sklearn, so that inference and serving can import it without pulling in the
metrics' dependencies.
"""

from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Each label's probability of a multi-label model's logits: exp(-log(1 + exp(-x))), which does not overflow
    for large negative logits as 1 / (1 + exp(-x)) does."""
    return np.exp(-np.logaddexp(0, -np.asarray(x)))


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def calibrated_logits(logits: np.ndarray, temperature: float | np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``logits / T + b``, in the logits' dtype: its softmax is the calibrated probability (multi-label: ``T`` and
    ``b`` one per label, and its sigmoid)."""
    z = logits / np.asarray(temperature, dtype=logits.dtype)
    return z if bias is None else z + np.asarray(bias, dtype=z.dtype)
