"""The one seeded, stratified split that every model shares, saved as row ids, and a finished run's split rebuilt."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toxdistill.config import DataConfig
from toxdistill.data.counterfactual import with_counterfactuals
from toxdistill.data.dataset import Dataset, load_dataset, resolve_data_path
from toxdistill.errors import ToxdistillError
from toxdistill.files import SPLIT_FILE
from toxdistill.io import atomic_write_text
from toxdistill.runs import load_run_config


def stratified_split(
    labels: np.ndarray, ids: np.ndarray, val_size: float, test_size: float, seed: int
) -> dict[str, np.ndarray]:
    """Per-class seeded shuffle and cut, so each class lands within ±1 row of its share."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        cls_ids = ids[labels == c].copy()
        rng.shuffle(cls_ids)
        n = len(cls_ids)
        n_test = int(round(n * test_size))
        n_val = int(round(n * val_size))
        out["test"].extend(cls_ids[:n_test])
        out["val"].extend(cls_ids[n_test : n_test + n_val])
        out["train"].extend(cls_ids[n_test + n_val :])
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


def stratified_subsample(labels: np.ndarray, ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Keep about ``n`` rows with the class shares of the full data."""
    if n >= len(ids):
        return ids
    frac = n / len(ids)
    rng = np.random.default_rng(seed + 1)
    keep = []
    for c in np.unique(labels):
        cls_ids = ids[labels == c].copy()
        rng.shuffle(cls_ids)
        keep.extend(cls_ids[: max(3, int(round(len(cls_ids) * frac)))])
    return np.sort(np.asarray(keep, dtype=np.int64))


def strata(labels: np.ndarray) -> np.ndarray:
    """The key the split stratifies on: the class id, or for a multi-label (n, L) 0/1 matrix its label
    combination as one integer (sum of 2^l over the labels on), so that every combination, the rare ones
    included, keeps its share in each part."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels
    return (labels.astype(np.int64) << np.arange(labels.shape[1], dtype=np.int64)).sum(1)


@dataclass
class Split:
    train: Dataset
    val: Dataset
    test: Dataset

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            h.update(part.ids.tobytes())
            h.update("\x00".join(part.texts).encode())
        return h.hexdigest()[:16]


def make_or_load_split(ds: Dataset, split_file: Path, cfg: DataConfig, seed: int, quick: bool = False) -> Split:
    """Load the saved split if there is one (so every command sees the same rows), else make and save it."""
    if split_file.is_file():
        saved = json.loads(split_file.read_text())
        if saved["source_sha256"] != ds.source_sha256:
            raise ToxdistillError(
                f"the run's split was made from a different data file (sha256 {saved['source_sha256'][:12]}…)",
                "use the original data file or a new run folder",
            )
        parts = {k: np.asarray(saved[k], dtype=np.int64) for k in ("train", "val", "test")}
    else:
        ids, labels = ds.ids, strata(ds.labels)
        if quick:
            ids = stratified_subsample(labels, ids, cfg.quick_rows, seed)
            labels = strata(ds.subset(ids).labels)
        parts = stratified_split(labels, ids, cfg.val_size, cfg.test_size, seed)
        atomic_write_text(
            split_file,
            json.dumps(
                {
                    "source_sha256": ds.source_sha256,
                    "seed": seed,
                    "quick": quick,
                    **{k: v.tolist() for k, v in parts.items()},
                }
            ),
        )
    split = Split(**{k: ds.subset(v) for k, v in parts.items()})
    if cfg.counterfactual > 0:
        # Added after the cut and to the training rows alone: validation and test stay the source's rows. Made
        # again, identically, from the config and seed each time, so split.json keeps only the source's ids.
        label = cfg.label_names.index(cfg.counterfactual_class)
        split.train = with_counterfactuals(split.train, cfg.counterfactual, label, seed)
    return split


def load_run_split(run_dir: Path, data: str | None = None) -> Split:
    """A finished run's split, rebuilt from its config.yaml and split.json (the data file found as
    ``toxdistill run`` finds it, or ``data``; never downloaded here)."""
    run_dir = Path(run_dir)
    split_file = run_dir / SPLIT_FILE
    if not split_file.is_file():
        raise ToxdistillError(f"{run_dir} has no {SPLIT_FILE}", "run 'toxdistill run' first")
    cfg = load_run_config(run_dir)
    ds = load_dataset(resolve_data_path(cfg.data, data, download=False), cfg.data)
    return make_or_load_split(ds, split_file, cfg.data, cfg.seed)


@dataclass
class TextSet:
    """Texts to score, their gold labels where known, and where they came from (for messages and records)."""

    texts: list[str]
    labels: np.ndarray | None
    source: str
    label_names: list[str] = field(default_factory=list)


def load_test_texts(run_dir: Path, data: str | None = None) -> TextSet:
    """A finished run's test split as texts and labels: what ``bench`` times and ``export`` checks parity on."""
    test = load_run_split(run_dir, data).test
    return TextSet(list(test.texts), np.asarray(test.labels), f"test split of {run_dir}", list(test.label_names))
