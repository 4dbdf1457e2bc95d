"""The one calibration object: how a model's logits become probabilities and decisions.

Fitted on validation by ``evaluation.calibrate`` and saved in each model's ``toxdistill.json``; the
Predictor, ``evaluate`` and ``serve`` read it back through ``Calibration.from_meta``. Numpy only (``evaluation.logits``), so
serving needs no scipy or sklearn.

Two tasks. Single-label (the default): one softmax over the classes, ``argmax`` decides. Multi-label (``"task":
"multi_label"`` in ``toxdistill.json``, or a ``config.json`` whose ``problem_type`` is
``multi_label_classification``): each label is its own yes/no, ``sigmoid(logit_l / T_l + b_l)``, decided when
that probability reaches the label's threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toxdistill.evaluation.logits import calibrated_logits, sigmoid, softmax
from toxdistill.files import MULTI_LABEL_PROBLEM, MULTI_LABEL_TASK

# Without fitted thresholds a label is decided when it is more likely than not.
DEFAULT_THRESHOLD = 0.5


def is_multi_label(meta: dict | None, problem_type: str | None = None) -> bool:
    """A folder's task: its ``toxdistill.json`` says, else its ``config.json``'s ``problem_type`` (a
    multi-label model saved by transformers alone)."""
    task = (meta or {}).get("task")
    return task == MULTI_LABEL_TASK if task is not None else problem_type == MULTI_LABEL_PROBLEM


def _array(x) -> np.ndarray | None:
    return None if x is None else np.asarray(x, dtype=np.float32)


@dataclass(frozen=True)
class Calibration:
    # Single-label: one temperature. Multi-label: one per label (a scalar applies to every label).
    temperature: float | np.ndarray = 1.0
    bias: np.ndarray | None = None  # per-class, mean 0; absent in folders calibrated by temperature alone
    offsets: np.ndarray | None = None  # per-class decision offsets, tuned on validation for macro F1
    multi_label: bool = False
    thresholds: np.ndarray | None = None  # multi-label only: per-label probability thresholds; None: 0.5 each

    @classmethod
    def from_meta(cls, meta: dict | None, problem_type: str | None = None) -> Calibration:
        cal = (meta or {}).get("calibration") or {}
        if is_multi_label(meta, problem_type):
            temperature = cal.get("temperature", 1.0)
            return cls(
                float(temperature)
                if isinstance(temperature, int | float)
                else np.asarray(temperature, dtype=np.float32),
                _array(cal.get("bias")),
                multi_label=True,
                thresholds=_array(cal.get("thresholds")),
            )
        return cls(float(cal.get("temperature", 1.0)), _array(cal.get("bias")), _array(cal.get("offsets")))

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """``logits / T + b``: its softmax (single-label) or sigmoid (multi-label) is the calibrated probability."""
        return calibrated_logits(logits, self.temperature, self.bias)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """``softmax(logits / T + b)``; multi-label: ``sigmoid`` of each label's."""
        z = self.calibrated(logits)
        return sigmoid(z) if self.multi_label else softmax(z)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """Class ids: ``argmax(logits / T + b + offsets)``. Multi-label: an (n, L) bool array, True where a
        label's calibrated probability reaches its threshold."""
        if self.multi_label:
            t = DEFAULT_THRESHOLD if self.thresholds is None else self.thresholds
            return self.probabilities(logits) >= t
        z = self.calibrated(logits)
        return (z if self.offsets is None else z + self.offsets).argmax(-1)
