"""A teacher that is only scores (``teacher.scores``, ``data/scores.py``): the run's ``teacher`` step, which writes
``models/teacher`` as a record of the scores (no weights: nothing loads or serves it), and the students' fidelity
to the scores for the report, on the validation and test rows the file scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toxdistill import __version__
from toxdistill.config import Config
from toxdistill.data.dataset import Dataset
from toxdistill.data.scores import Scores, check_covers, read_scores
from toxdistill.data.split import Split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.logits import softmax
from toxdistill.evaluation.metrics import ce_loss, evaluate_predictor
from toxdistill.files import META_FILE, MODELS_DIR, TEACHER, TEACHER_SCORES, TEST_LOGITS, VAL_LOGITS
from toxdistill.io import atomic_dir, atomic_write_json
from toxdistill.pipeline.context import RunContext, say
from toxdistill.runs import read_meta

SCORES_KEY = TEACHER_SCORES


def open_scores(cfg: Config, split: Split) -> Scores | None:
    """``teacher.scores`` read and checked before any stage: its class columns, its values, and that it scores at
    least one training row. The plan line says how much of each split it covers."""
    t = cfg.teacher
    if t.scores is None:
        return None
    d = cfg.data
    scores = read_scores(t.scores, t.scores_text_col, d.text_col, d.label_names, d.clean)
    check_covers(scores, split.train)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    covered = {part: len(scored_rows(scores, ds)) for part, ds in parts.items()}
    for part, name in (("val", "validation"), ("test", "test")):
        if not covered[part]:
            raise ToxdistillError(
                f"scores file {scores.path.name} scores none of the {len(parts[part]):,} {name} rows: the report's "
                "teacher row is the scores' own on them",
                "score the whole data file, not its training rows alone",
            )
    cover = ", ".join(f"{part} {covered[part]:,} of {len(ds):,}" for part, ds in parts.items())
    say(f"teacher: the scores in {scores.path} ({scores.kind}_ columns) cover {cover}; no teacher model is loaded")
    say("teacher: no teacher states with scores, so distill.w_cos is 0 (w_hidden and w_attn must be 0)")
    return scores


def scored_rows(scores: Scores, ds: Dataset) -> np.ndarray:
    """The positions of ``ds``'s rows that the file scores."""
    return np.flatnonzero([t in scores.by_text for t in ds.texts])


class _ScoresPredictor:
    """The scores as a predictor (``evaluate_predictor``'s interface), for the rows the file scores."""

    def __init__(self, scores: Scores, label_names: list[str]):
        self.scores = scores
        self.label_names = label_names

    def logits(self, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([self.scores.by_text[t] for t in texts]), np.zeros(len(texts), dtype=bool)


def stage_scores_teacher(ctx: RunContext) -> None:
    """The teacher row of a scores run: the scores' metrics on the validation and test rows they cover, saved as
    ``models/teacher/toxdistill.json`` with how many rows that is. No weights; it takes no time to "train"."""
    scores, split = ctx.scores, ctx.split
    assert scores is not None, "the plan reads teacher.scores before the teacher step"
    val = split.val.subset(split.val.ids[scored_rows(scores, split.val)])
    test = split.test.subset(split.test.ids[scored_rows(scores, split.test)])
    metrics, _, _ = evaluate_predictor(_ScoresPredictor(scores, list(split.train.label_names)), val, test)
    metrics["throughput_sps"] = 0.0  # no model to time
    train = split.train.subset(split.train.ids[scored_rows(scores, split.train)])
    train_logits = np.stack([scores.by_text[t] for t in train.texts])
    record = {
        "file": str(scores.path),
        "sha256": scores.sha256,
        "columns": scores.kind,
        **{part: {"scored": len(sub), "rows": len(ds)} for part, sub, ds in _subsets(split, train, val, test)},
    }
    with atomic_dir(ctx.model_dir(TEACHER)) as out:
        meta = {
            "name": TEACHER,
            "kind": "teacher",
            "layers": None,
            "fingerprint": ctx.cfg.stage_fingerprint(TEACHER),
            "label_names": list(split.train.label_names),
            "train": {"train_loss": ce_loss(train_logits, train.labels), "train_runtime_s": 0.0},
            SCORES_KEY: record,
            "metrics": metrics,
            "params": 0,
            "trainable_params": 0,
            "size_mb": 0.0,
            "toxdistill_version": __version__,
        }
        atomic_write_json(out / META_FILE, meta)


def _subsets(split: Split, train: Dataset, val: Dataset, test: Dataset):
    return (("train", train, split.train), ("val", val, split.val), ("test", test, split.test))


def is_scores_teacher(folder: Path) -> bool:
    return SCORES_KEY in read_meta(folder)


def add_scores_fidelity(run_dir: Path, results: list[dict], split: Split, scores: Scores) -> None:
    """Each result row gets ``scores_fidelity`` (``scores_fidelity``'s block for it; none for the teacher)."""
    blocks = scores_fidelity(run_dir, split, scores)
    for r in results:
        if r["name"] in blocks:
            r["scores_fidelity"] = blocks[r["name"]]


def scores_fidelity(run_dir: Path, split: Split, scores: Scores) -> dict[str, dict]:
    """Per model, on the validation and test rows the file scores: top-1 agreement with the scores' argmax and
    the mean total-variation distance from their distribution (0.5 Σ |p_model − p_scores|)."""
    out: dict[str, dict] = {}
    parts = {"val": (split.val, VAL_LOGITS), "test": (split.test, TEST_LOGITS)}
    for folder in sorted((run_dir / MODELS_DIR).iterdir()):
        if folder.name.startswith(".") or not (folder / TEST_LOGITS).is_file():
            continue
        block = {}
        for part, (ds, file) in parts.items():
            rows = scored_rows(scores, ds)
            logits = np.load(folder / file)
            if len(logits) != len(ds) or not len(rows):
                continue
            p_model = softmax(logits[rows].astype(np.float64))
            p_scores = softmax(np.stack([scores.by_text[ds.texts[i]] for i in rows]).astype(np.float64))
            block[part] = {
                "rows": len(rows),
                "agreement": float((p_model.argmax(-1) == p_scores.argmax(-1)).mean()),
                "tvd": float(0.5 * np.abs(p_model - p_scores).sum(-1).mean()),
            }
        out[folder.name] = block
    return out
