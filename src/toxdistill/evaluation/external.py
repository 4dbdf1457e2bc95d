"""Scoring a run's models on an external labelled set whose labels map onto *sets* of model classes.

External hate-speech sets rarely share Davidson's three classes: HateCheck says "hateful" /
"non-hateful", others say "toxic" / "clean". A ``--map`` names, for each external label, the model
classes that count as a correct answer (``non-hateful=offensive,neither``). A row with label ``L`` is
correct when the predicted class ``c`` is in ``S(L)``; for each label the recall is
``#{rows of L predicted in S(L)} / #{rows of L}``, the same thing as accuracy restricted to that label.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.stats import bootstrap_mean_ci
from toxdistill.evaluation.tables import fmt, text_table
from toxdistill.runs import read_meta

log = logging.getLogger(__name__)

MAP_USAGE = "--map 'LABEL=CLASS[,CLASS...]', e.g. --map 'hateful=hate speech' --map 'non-hateful=offensive,neither'"
MISSING_GROUP = "(missing)"


# ---------------------------------------------------------------- run folder
def shared_label_names(models: Mapping[str, Path]) -> list[str]:
    """The class names every chosen model predicts, read from metadata without loading anything."""
    names: list[str] | None = None
    first = ""
    for model, folder in models.items():
        got = read_meta(folder).get("label_names")
        if not got:
            continue
        if names is None:
            names, first = list(got), model
        elif list(got) != names:
            raise ToxdistillError(
                f"models {first} and {model} predict different classes ({names} vs {list(got)})",
                "evaluate them separately with --models",
            )
    if names is None:
        raise ToxdistillError("no chosen model records its class names (label_names)", "re-run its stage")
    return names


# ---------------------------------------------------------------- label map
def label_str(v) -> str:
    """Labels as the user types them: ``1.0`` read from a CSV column with gaps is the label ``1``."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _class_id(token: str, label_names: Sequence[str]) -> int | None:
    t = token.strip()
    for i, n in enumerate(label_names):
        if t == n:
            return i
    lowered = [n.lower() for n in label_names]
    if t.lower() in lowered:
        return lowered.index(t.lower())
    if t.isdigit() and int(t) < len(label_names):
        return int(t)
    return None


def parse_label_map(values: Sequence[str], label_names: Sequence[str]) -> dict[str, list[int]]:
    """``["hateful=hate speech", "non-hateful=offensive,neither"]`` → ``{"hateful": [0], "non-hateful": [1, 2]}``.

    Classes are named (case-insensitively) or given by id; ``*`` means every class.
    """
    valid = ", ".join(label_names)
    out: dict[str, list[int]] = {}
    for v in values:
        label, sep, rhs = v.partition("=")
        label = label.strip()
        tokens = [t.strip() for t in rhs.split(",")]
        if not sep or not label or not rhs.strip() or any(not t for t in tokens):
            raise ToxdistillError(f"--map {v!r} is not LABEL=CLASS[,CLASS...]", f"use {MAP_USAGE}")
        if label in out:
            raise ToxdistillError(f"--map gives label {label!r} twice", "list all its classes in one --map")
        ids: list[int] = []
        for t in tokens:
            if t == "*":
                ids.extend(range(len(label_names)))
                continue
            c = _class_id(t, label_names)
            if c is None:
                raise ToxdistillError(
                    f"--map {v!r}: {t!r} is not a model class",
                    f"valid classes: {valid} (or ids 0..{len(label_names) - 1})",
                )
            ids.append(c)
        out[label] = sorted(set(ids))
    return out


def complete_label_map(
    labels: Sequence[str], label_map: dict[str, list[int]], label_names: Sequence[str], where: str
) -> dict[str, list[int]]:
    """Add identity entries for labels that *are* model classes (by name or id); fail on any other unmapped label."""
    out = dict(label_map)
    unmapped = []
    for lab in dict.fromkeys(labels):
        if lab in out:
            continue
        c = _class_id(lab, label_names)
        if c is None:
            unmapped.append(lab)
        else:
            out[lab] = [c]
    if unmapped:
        shown = ", ".join(repr(x) for x in unmapped[:5]) + (
            f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""
        )
        raise ToxdistillError(
            f"{where}: label{'s' if len(unmapped) > 1 else ''} {shown} not mapped to model classes",
            f"add --map '{unmapped[0]}=CLASS[,CLASS...]'{' for each' if len(unmapped) > 1 else ''} "
            f"(classes: {', '.join(label_names)})",
        )
    return out


# ---------------------------------------------------------------- scoring
def _score(y: np.ndarray, member: np.ndarray, label_list: list[str], pred: np.ndarray, n_boot: int, seed: int) -> dict:
    """Accuracy (+ bootstrap CI), balanced accuracy and per-label recall for one decision vector.

    ``y`` are label indices into ``label_list``, ``member[l, c]`` says class ``c`` is right for label ``l``.
    ``balanced_accuracy = mean_l recall_l`` over the labels present.
    """
    correct = member[y, pred]
    n_per = np.bincount(y, minlength=len(label_list))
    hit_per = np.bincount(y, weights=correct, minlength=len(label_list))
    recall = {lab: float(hit_per[i] / n_per[i]) for i, lab in enumerate(label_list) if n_per[i]}
    out = {
        "n": int(len(y)),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "recall": recall,
        "n_per_label": {lab: int(n_per[i]) for i, lab in enumerate(label_list) if n_per[i]},
    }
    if n_boot > 0:
        ci = bootstrap_mean_ci(correct, n_boot=n_boot, seed=seed)
        out["accuracy_ci"] = [ci["low"], ci["high"]]
    return out


def score_predictions(
    labels: Sequence[str],
    label_map: Mapping[str, Sequence[int]],
    pred: np.ndarray,
    label_names: Sequence[str],
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Metrics of one model's class ids ``pred`` against external ``labels`` mapped by ``label_map``.

    Returns ``accuracy``, ``accuracy_ci`` (percentile bootstrap, 95%), ``balanced_accuracy``, ``recall``
    per label, ``n_per_label``, ``predicted`` (rows per model class) and, with ``groups``, the same
    (without CI) per group value under ``groups``.
    """
    label_list = list(label_map)
    index = {lab: i for i, lab in enumerate(label_list)}
    y = np.asarray([index[lab] for lab in labels], dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    member = np.zeros((len(label_list), len(label_names)), dtype=bool)
    for i, lab in enumerate(label_list):
        member[i, list(label_map[lab])] = True
    out = _score(y, member, label_list, pred, n_boot, seed)
    counts = np.bincount(pred, minlength=len(label_names))
    out["predicted"] = {n: int(counts[i]) for i, n in enumerate(label_names)}
    if groups is not None:
        g = np.asarray(groups, dtype=object)
        out["groups"] = {
            str(v): _score(y[g == v], member, label_list, pred[g == v], 0, seed)
            for v in sorted(set(g.tolist()), key=str)
        }
    return out


def column_strings(df, col: str) -> list[str]:
    import pandas as pd

    return [MISSING_GROUP if pd.isna(v) else label_str(v) for v in df[col]]


# ---------------------------------------------------------------- text output
def _dash(x: float | None) -> str:
    return fmt(x, missing="–")


def format_result(result: dict, max_groups: int = 30) -> str:
    """The human-readable summary: a model table, then per-group tables when groups were scored."""
    d = result["data"]
    counts = ", ".join(f"{k} {v}" for k, v in result["label_counts"].items())
    lines = [f"external set: {d['path']} — {d['rows']} rows ({counts})"]
    if d["dropped_rows"]:
        lines.append(f"  ({d['dropped_rows']} rows without text skipped)")
    lines.append(
        "label map: "
        + "; ".join(f"{k} → {{{', '.join(v)}}}" for k, v in result["label_map"].items() if k in result["label_counts"])
    )
    label_list = list(result["label_counts"])
    header = ["model", "accuracy", "95% CI", "bal. acc", "argmax acc", *(f"recall {lab}" for lab in label_list)]
    rows = []
    for name, m in result["models"].items():
        t = m["tuned"]
        ci = t.get("accuracy_ci")
        rows.append(
            [
                name,
                _dash(t["accuracy"]),
                f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–",
                _dash(t["balanced_accuracy"]),
                _dash(m["argmax"]["accuracy"]),
                *(_dash(t["recall"].get(lab)) for lab in label_list),
            ]
        )
    lines += ["", text_table(header, rows)]
    lines.append("(accuracy, CI and recall use each model's tuned decision: calibration + offsets)")
    if d.get("group_col"):
        lines += ["", f"by {d['group_col']!r}:"]
        gheader = ["group", "n", "accuracy", "bal. acc", *(f"recall {lab}" for lab in label_list)]
        for name, m in result["models"].items():
            groups = m["tuned"].get("groups") or {}
            order = sorted(groups, key=lambda g: -groups[g]["n"])
            grows = [
                [
                    g,
                    str(groups[g]["n"]),
                    _dash(groups[g]["accuracy"]),
                    _dash(groups[g]["balanced_accuracy"]),
                    *(_dash(groups[g]["recall"].get(lab)) for lab in label_list),
                ]
                for g in order[:max_groups]
            ]
            lines += [f"{name}:", text_table(gheader, grows, indent="  ")]
            if len(order) > max_groups:
                lines.append(f"  … {len(order) - max_groups} smaller groups in the JSON")
    if result.get("skipped"):
        lines += ["", "skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items())]
    return "\n".join(lines)
