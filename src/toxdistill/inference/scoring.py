"""The one scoring interface: what evaluation, bulk scoring, the Ray actors and the server call a model through.

``Predictor`` (a transformers folder or an ONNX export) and ``BaselineScorer`` (the TF-IDF floor) both satisfy
``Scorer``; ``predict.load_scorer`` picks one for a folder, and ``score_results`` turns logits into the result
dicts that the JSON API, the page and ``Predictor.classify`` return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Scorer(Protocol):
    label_names: list[str]
    max_length: int
    meta: dict

    @property
    def backend_name(self) -> str: ...
    def prepare(self, texts: Sequence[str]) -> list[str]: ...
    def logits(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]: ...
    def probabilities(self, logits: np.ndarray) -> np.ndarray: ...
    def decide(self, logits: np.ndarray) -> np.ndarray: ...


def score_results(scorer: Scorer, logits: np.ndarray, truncated: np.ndarray) -> list[dict]:
    """One dict per row: the decided label (calibration and offsets applied), its id, the calibrated
    probability of every class and whether the text was cut to the model's window."""
    probs = scorer.probabilities(logits)
    ids = scorer.decide(logits)
    names = scorer.label_names
    return [
        {
            "label": names[int(c)],
            "label_id": int(c),
            "probabilities": {n: float(p) for n, p in zip(names, row)},
            "truncated": bool(t),
        }
        for c, row, t in zip(ids, probs, truncated)
    ]
