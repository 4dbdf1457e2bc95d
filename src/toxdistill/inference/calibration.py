"""The one calibration object: how a model's logits become probabilities and decisions.

Fitted on validation by ``evaluation.calibrate`` and saved in each model's ``toxdistill.json``; the
Predictor, ``evaluate`` and ``serve`` read it back through ``Calibration.from_meta``. Numpy only (``evaluation.logits``), so
serving needs no scipy or sklearn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toxdistill.evaluation.logits import calibrated_logits, softmax


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    bias: np.ndarray | None = None  # per-class, mean 0; absent in folders calibrated by temperature alone
    offsets: np.ndarray | None = None  # per-class decision offsets, tuned on validation for macro F1

    @classmethod
    def from_meta(cls, meta: dict | None) -> Calibration:
        cal = (meta or {}).get("calibration") or {}
        bias, offsets = cal.get("bias"), cal.get("offsets")
        return cls(
            float(cal.get("temperature", 1.0)),
            None if bias is None else np.asarray(bias, dtype=np.float32),
            None if offsets is None else np.asarray(offsets, dtype=np.float32),
        )

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """``logits / T + b``: its softmax is the calibrated probability."""
        return calibrated_logits(logits, self.temperature, self.bias)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """``softmax(logits / T + b)``."""
        return softmax(self.calibrated(logits))

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """Class ids: ``argmax(logits / T + b + offsets)``."""
        z = self.calibrated(logits)
        return (z if self.offsets is None else z + self.offsets).argmax(-1)
