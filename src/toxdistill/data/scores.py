"""A teacher that is only scores (``teacher.scores``): a file of texts with per-class probabilities or logits, from
any source, read through the one input reader and matched to the split's rows by their cleaned text.

Column convention: ``p_<class>`` columns are probabilities (what ``toxdistill predict`` writes, so a predict output
file is a scores file), ``logit_<class>`` columns logits; a class name's spaces are written "_". Probabilities
become log-probabilities, so that ``softmax`` of them at temperature 1 gives the probabilities back; the
distillation temperature T then softens them as it softens a model's logits (``p^(1/T)``, renormalised).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toxdistill.config import CleanConfig
from toxdistill.data.dataset import Dataset, clean_text
from toxdistill.data.readers import pick_column, read_frame
from toxdistill.errors import ToxdistillError
from toxdistill.io import sha256_file

# The largest distance of a row's probabilities from a sum of 1 that is taken as rounding: predict writes them
# to 6 decimals, and a crowd's vote shares written to 3 decimals are off by up to 1.5e-3.
SUM_TOLERANCE = 2e-3
# log(0) would be -inf, and a KL term against it NaN: a probability of 0 is read as this floor. At T = 2 it weighs
# sqrt(1e-8) = 1e-4 of a sure class, which no student can tell from 0.
PROB_FLOOR = 1e-8


@dataclass(frozen=True)
class Scores:
    """The scores file, read and checked: cleaned text -> the teacher's logits (log-probabilities for ``p_``)."""

    path: Path
    kind: str  # "p" or "logit"
    by_text: dict[str, np.ndarray]
    sha256: str

    def logits_for(self, ds: Dataset) -> np.ndarray:
        """``(len(ds), K)`` float32 logits, row for row; NaN in every column of a row the file does not score."""
        k = len(ds.label_names)
        out = np.full((len(ds), k), np.nan, dtype=np.float32)
        for i, t in enumerate(ds.texts):
            v = self.by_text.get(t)
            if v is not None:
                out[i] = v
        return out


def column_names(label_names: list[str], kind: str) -> list[str]:
    return [f"{kind}_{n.replace(' ', '_')}" for n in label_names]


def _class_columns(columns: list[str], label_names: list[str], name: str) -> tuple[str, list[str]]:
    """The file's kind (p or logit) and its class columns in label order; anything else is a one-line error."""
    found = {kind: [c for c in column_names(label_names, kind) if c in columns] for kind in ("p", "logit")}
    for kind in ("logit", "p"):
        if len(found[kind]) == len(label_names):
            return kind, found[kind]
    others = [c for c in columns if c.startswith(("p_", "logit_"))]
    want = ", ".join(column_names(label_names, "p"))
    raise ToxdistillError(
        f"scores file {name}: its class columns {others or 'none'} do not match data.label_names (want {want}, "
        "or logit_ columns)",
        "name one p_<class> or logit_<class> column per class of data.label_names, spaces as _",
    )


def _checked_values(values: np.ndarray, kind: str, name: str) -> np.ndarray:
    """The scores as float64 logits, after the checks: numbers, and for ``p`` probabilities that sum to 1."""
    bad = ~np.isfinite(values).all(1)
    what = "missing or not numbers"
    if kind == "p" and not bad.any():
        bad = (values < 0).any(1) | (values > 1).any(1) | (np.abs(values.sum(1) - 1) > SUM_TOLERANCE)
        what = f"not probabilities (each in 0..1, summing to 1 within {SUM_TOLERANCE})"
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ToxdistillError(
            f"scores file {name}: {int(bad.sum())} rows have scores that are {what} (first: data row {first + 1})",
            "fix or drop those rows; p_ columns are probabilities, logit_ columns logits",
        )
    return np.log(np.clip(values, PROB_FLOOR, None)) if kind == "p" else values


def read_scores(path: str | Path, text_col: str | None, data_text_col: str, label_names: list[str], clean: CleanConfig):
    """``teacher.scores`` read through the one reader, its columns and values checked, its texts cleaned as the
    data's are (``data.clean``)."""
    p = Path(path).expanduser()
    df = read_frame(p, "auto", what="scores file")
    columns = [str(c) for c in df.columns]
    col = pick_column(columns, text_col or (data_text_col if data_text_col in columns else None), f"scores file {p}")
    kind, cols = _class_columns(columns, label_names, p.name)
    import pandas as pd

    values = _checked_values(df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64), kind, p.name)
    by_text: dict[str, np.ndarray] = {}
    for raw, v in zip(df[col], values.astype(np.float32)):
        if isinstance(raw, str):
            t = clean_text(raw, clean)
            if t and t not in by_text:  # the first row of a text wins
                by_text[t] = v
    return Scores(p, kind, by_text, sha256_file(p))


def check_covers(scores: Scores, train: Dataset) -> int:
    """How many training rows the file scores; none is an error, found before anything trains."""
    n = sum(t in scores.by_text for t in train.texts)
    if n == 0:
        raise ToxdistillError(
            f"scores file {scores.path.name} scores none of the {len(train):,} training rows (matched by text after "
            "data.clean)",
            "check that it holds the data's texts, and teacher.scores_text_col",
        )
    return n
