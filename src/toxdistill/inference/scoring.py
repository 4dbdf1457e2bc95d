"""The one scoring interface: what evaluation, bulk scoring, the Ray actors and the server call a model through.

``Predictor`` (a transformers folder or an ONNX export) and ``BaselineScorer`` (the TF-IDF floor) both satisfy
``Scorer``; ``predict.load_scorer`` picks one for a folder, and ``score_results`` turns logits into the result
dicts that the JSON API, the page and ``Predictor.classify`` return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

# A multi-label row's decided labels as one text (a CSV cell, a metric's label): names joined by this, which
# no label name of a toxicity data set contains and spreadsheets split on readily.
LABELS_SEP = "|"


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


def is_multi_label_scorer(scorer: Scorer) -> bool:
    """Whether the scorer's model is multi-label (its ``Calibration`` says: independent labels, one sigmoid each)."""
    return bool(getattr(getattr(scorer, "calibration", None), "multi_label", False))


def score_results(scorer: Scorer, logits: np.ndarray, truncated: np.ndarray) -> list[dict]:
    """One dict per row: the decided label (calibration and offsets applied), its id, the calibrated
    probability of every class and whether the text was cut to the model's window.

    A multi-label model has no single label: each row gets ``labels``, the names whose calibrated probability
    reaches their threshold (in the model's label order, possibly none), in place of ``label`` and ``label_id``.
    """
    probs = scorer.probabilities(logits)
    ids = scorer.decide(logits)
    names = scorer.label_names
    if is_multi_label_scorer(scorer):
        return [
            {
                "labels": [n for n, d in zip(names, row_ids) if d],
                "probabilities": {n: float(p) for n, p in zip(names, row)},
                "truncated": bool(t),
            }
            for row_ids, row, t in zip(ids, probs, truncated)
        ]
    return [
        {
            "label": names[int(c)],
            "label_id": int(c),
            "probabilities": {n: float(p) for n, p in zip(names, row)},
            "truncated": bool(t),
        }
        for c, row, t in zip(ids, probs, truncated)
    ]
