"""``toxdistill evaluate``: a run's models scored on an external labelled set.

The label-map rules and the scores live in ``evaluation.external``; this orchestrator reads the file,
loads each model through the one loader (``inference.predict.load_scorer``) and scores it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toxdistill import __version__
from toxdistill.config import EvalSetConfig
from toxdistill.console import Say, quiet
from toxdistill.data.dataset import clean_text
from toxdistill.data.readers import read_frame
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.external import (
    column_strings,
    complete_label_map,
    label_str,
    parse_label_map,
    score_predictions,
    shared_label_names,
)
from toxdistill.inference.calibration import is_multi_label
from toxdistill.inference.predict import load_scorer
from toxdistill.io import atomic_write_json, sha256_file
from toxdistill.runs import find_clean_config, find_models, read_meta, select_models

log = logging.getLogger(__name__)


def _parsed_map(
    label_map: Sequence[str] | Mapping[str, Sequence[str | int]] | None, label_names: list[str]
) -> dict[str, list[int]]:
    if label_map is None:
        return {}
    if isinstance(label_map, Mapping):
        return parse_label_map([f"{k}={','.join(map(str, v))}" for k, v in label_map.items()], label_names)
    return parse_label_map(label_map, label_names)


def _read_rows(data_path: Path, fmt: str, text_col: str, label_col: str, group_col: str | None):
    """The file's rows that have a text, after checking its columns and labels; and how many were dropped."""
    if not data_path.is_file():
        raise ToxdistillError(f"data file not found: {data_path}", "give a CSV or JSONL file to --data")
    df = read_frame(data_path, fmt)
    cols = [str(c) for c in df.columns]
    for flag, col in (("--text-col", text_col), ("--label-col", label_col), ("--group-col", group_col)):
        if col is not None and col not in df.columns:
            raise ToxdistillError(
                f"{data_path.name} has no column {col!r} (columns: {', '.join(cols[:10])})", f"set {flag}"
            )
    raw_labels = df[label_col]
    if raw_labels.isna().any():
        raise ToxdistillError(
            f"{data_path.name}: {int(raw_labels.isna().sum())} rows have no label in {label_col!r}", "fill or drop them"
        )
    keep = np.asarray([isinstance(t, str) and bool(t.strip()) for t in df[text_col]], dtype=bool)
    dropped = int((~keep).sum())
    if not keep.any():
        raise ToxdistillError(f"{data_path.name}: every text in {text_col!r} is empty", "check --text-col")
    if dropped:
        log.warning("dropped %d rows with empty or missing text", dropped)
    return df[keep], dropped


def evaluate_external(
    run_dir: str | Path,
    data_path: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    label_map: Sequence[str] | Mapping[str, Sequence[str | int]] | None = None,
    group_col: str | None = None,
    models: str | Sequence[str] | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    clean: bool = True,
    fmt: str = "auto",
    backend: str = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    say: Say = quiet,
) -> dict:
    """Score every (or every named) model of a run on an external set; returns the JSON-ready result.

    ``label_map`` is a list of ``LABEL=CLASS[,CLASS...]`` strings or ``{label: [class name or id, ...]}``.
    Labels that are themselves model classes (name or id) need no entry. Each model sees the texts cleaned
    the way its training data was (``data.clean`` of the run) unless ``clean`` is False. All input checks
    run before any model loads, so a bad file or map fails in a second. ``say`` gets one line per model.
    """
    data_path = Path(data_path)
    chosen = select_models(find_models(run_dir), models)
    multi = [n for n, folder in chosen.items() if is_multi_label(read_meta(folder))]
    if multi:
        raise ToxdistillError(
            f"{', '.join(multi)}: multi-label model(s); toxdistill evaluate scores one class per text",
            "score the set with toxdistill predict, whose p_<label> and labels columns hold each label's answer",
        )
    label_names = shared_label_names(chosen)
    parsed = _parsed_map(label_map, label_names)
    df, dropped = _read_rows(data_path, fmt, text_col, label_col, group_col)
    labels = [label_str(v) for v in df[label_col]]
    full_map = complete_label_map(labels, parsed, label_names, f"{data_path.name} column {label_col!r}")
    # Only labels that occur are scored, in --map order; entries for absent labels stay in the record.
    occurring = set(labels)
    present = {lab: ids for lab, ids in full_map.items() if lab in occurring}
    groups = column_strings(df, group_col) if group_col else None
    raw_texts = list(df[text_col])

    result: dict = {
        "toxdistill_version": __version__,
        "run": str(Path(run_dir)),
        "data": {
            "path": str(data_path),
            "sha256": sha256_file(data_path),
            "rows": len(raw_texts),
            "dropped_rows": dropped,
        }
        | {"text_col": text_col, "label_col": label_col, "group_col": group_col},
        "label_names": label_names,
        "label_map": {lab: [label_names[c] for c in ids] for lab, ids in full_map.items()},
        "label_counts": {lab: labels.count(lab) for lab in present},
        "models": {},
        "skipped": {},
    }
    scoring = _Scoring(raw_texts, labels, present, label_names, groups, n_boot, seed)
    for name, folder in chosen.items():
        try:
            scorer = load_scorer(folder, threads, backend)
        except ToxdistillError as e:
            if models:
                raise
            log.warning("skipping model %s: %s", name, e)
            result["skipped"][name] = str(e)
            continue
        got = result["models"][name] = scoring.score(folder, scorer, clean, batch_size)
        say(f"{name}: accuracy {got['tuned']['accuracy']:.3f} ({got['seconds']:.1f}s)")
    if not result["models"]:
        raise ToxdistillError("no model of the run could be loaded", "see the warnings above; re-run the stages")
    return result


@dataclass
class _Scoring:
    """One external set, scored model after model; texts cleaned once per distinct cleaning config."""

    raw_texts: list[str]
    labels: list[str]
    present: dict[str, list[int]]
    label_names: list[str]
    groups: list[str] | None
    n_boot: int
    seed: int
    cleaned: dict[str, list[str]] = field(default_factory=dict)

    def score(self, folder: Path, scorer, clean: bool, batch_size: int) -> dict:
        meta = read_meta(folder)
        cfg = find_clean_config(folder, meta) if clean else None
        key = cfg.model_dump_json() if cfg is not None else ""
        if key not in self.cleaned:
            self.cleaned[key] = [clean_text(t, cfg) for t in self.raw_texts] if cfg is not None else self.raw_texts
        t0 = time.perf_counter()
        logits, truncated = scorer.logits(self.cleaned[key], batch_size)
        elapsed = time.perf_counter() - t0
        return {
            "kind": meta.get("kind"),  # the model's role, under its toxdistill.json key
            "cleaned": cfg is not None,
            "truncated": int(np.asarray(truncated).sum()),
            "seconds": elapsed,
            "tuned": self._scores(scorer.decide(logits)),
            "argmax": self._scores(logits.argmax(-1)),
        }

    def _scores(self, pred: np.ndarray) -> dict:
        return score_predictions(self.labels, self.present, pred, self.label_names, self.groups, self.n_boot, self.seed)


def check_eval_set(es: EvalSetConfig, label_names: list[str]) -> int:
    """Fail in a second, before any training, on an eval set that cannot be scored: a missing or empty file, a
    missing column, or a label that maps to no model class. Returns its row count."""
    try:
        df, _ = _read_rows(Path(es.path), es.format, es.text_col, es.label_col, es.group_col)
        labels = [label_str(v) for v in df[es.label_col]]
        complete_label_map(labels, _parsed_map(es.label_map, label_names), label_names, f"column {es.label_col!r}")
    except ToxdistillError as e:
        fix = (e.fix or "").replace("--text-col", "text_col").replace("--label-col", "label_col")
        fix = fix.replace("--group-col", "group_col").replace("--map", "label_map").replace("--data", "path")
        raise ToxdistillError(
            f"eval set {es.name!r} ({es.path}): {e.problem}", f"fix eval_sets in the config: {fix}"
        ) from None
    return len(df)


def run_eval_sets(run_dir: Path, sets: Sequence[EvalSetConfig], threads: int | None, say: Say = quiet) -> dict:
    """Every eval set of the config scored by every model of the run, each written to ``RUN/eval-<name>.json``;
    returns ``{name: result}`` for the report."""
    out = {}
    for es in sets:

        def say_set(msg: str, name: str = es.name) -> None:
            say(f"eval set {name}: {msg}")

        result = evaluate_external(
            run_dir,
            es.path,
            text_col=es.text_col,
            label_col=es.label_col,
            label_map=es.label_map,
            group_col=es.group_col,
            fmt=es.format,
            threads=threads,
            say=say_set,
        )
        atomic_write_json(run_dir / f"eval-{es.name}.json", result)
        out[es.name] = result
    return out
