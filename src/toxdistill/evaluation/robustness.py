"""Robustness and fidelity, from logits: how much a model changes under a perturbation, and how closely a
student follows its teacher, on clean text and on each perturbation.

All functions are pure numpy on logits (``n × K``) and labels; ``pipeline/check.py`` feeds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from toxdistill.evaluation.logits import softmax


def flip_rate(clean_logits: np.ndarray, perturbed_logits: np.ndarray) -> float:
    """Share of rows whose top-1 class changes under the perturbation: ``mean(argmax(clean) != argmax(pert))``."""
    if len(clean_logits) == 0:
        return 0.0
    return float(np.mean(clean_logits.argmax(-1) != perturbed_logits.argmax(-1)))


def agreement(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Top-1 agreement with the teacher on the same inputs: ``mean(argmax(s) == argmax(t))``."""
    if len(logits) == 0:
        return 1.0
    return float(np.mean(logits.argmax(-1) == teacher_logits.argmax(-1)))


def total_variation(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Mean total-variation distance between the two models' probability vectors on the same inputs:
    ``mean_i ½ Σ_k |softmax(s_i)_k − softmax(t_i)_k|``, in [0, 1] (0: the same distribution)."""
    if len(logits) == 0:
        return 0.0
    p = softmax(logits.astype(np.float64))
    q = softmax(teacher_logits.astype(np.float64))
    return float(np.mean(0.5 * np.abs(p - q).sum(-1)))


def class_scores(labels: np.ndarray, preds: np.ndarray, n_classes: int, focus: int) -> dict[str, float]:
    """Accuracy, macro and weighted F1, and the focus class's F1 and recall, from one confusion count."""
    cm = np.bincount(labels * n_classes + preds, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    n = max(int(cm.sum()), 1)
    return {
        "accuracy": float(tp.sum() / n),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * support).sum() / n),
        "f1_focus": float(f1[focus]),
        "recall_focus": float(recall[focus]),
    }


def robustness_row(
    labels: np.ndarray,
    clean_logits: np.ndarray,
    perturbed_logits: np.ndarray,
    focus: int,
    teacher_clean: np.ndarray | None = None,
    teacher_perturbed: np.ndarray | None = None,
) -> dict[str, float]:
    """One model under one perturbation: its scores, the drop from clean text (clean − perturbed, so a
    positive drop is a loss), the flip rate and, given the teacher's logits, fidelity: agreement and TV with the
    teacher on the same perturbed texts, and agreement with the teacher's prediction on the clean text."""
    k = clean_logits.shape[-1]
    clean = class_scores(labels, clean_logits.argmax(-1), k, focus)
    pert = class_scores(labels, perturbed_logits.argmax(-1), k, focus)
    row: dict[str, float] = dict(pert)
    row.update({f"drop_{m}": clean[m] - pert[m] for m in ("f1_macro", "f1_focus", "recall_focus", "f1_weighted")})
    row["flip_rate"] = flip_rate(clean_logits, perturbed_logits)
    if teacher_perturbed is not None:
        row["agreement"] = agreement(perturbed_logits, teacher_perturbed)
        row["tv"] = total_variation(perturbed_logits, teacher_perturbed)
    if teacher_clean is not None:
        # Against the teacher on the *clean* text: what consistency training aims at. A student that resists a
        # perturbation the teacher falls for agrees less with the perturbed teacher and more with this.
        row["agreement_clean_teacher"] = agreement(perturbed_logits, teacher_clean)
    return row


def drop_matrix(table: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str = "drop_f1_macro"):
    """``(models, kinds, matrix)`` of one metric from ``{model: {kind: row}}``, for the heatmap."""
    models = list(table)
    kinds = list(dict.fromkeys(k for rows in table.values() for k in rows))
    m = np.array([[table[a].get(k, {}).get(metric, np.nan) for k in kinds] for a in models], dtype=np.float64)
    return models, kinds, m


def drop_summary(
    rows: Mapping[str, Mapping[str, float]], kinds: Sequence[str], metric: str = "drop_f1_macro"
) -> dict | None:
    """Mean and worst ``metric`` over those of ``kinds`` that ``rows`` has, and the worst one's kind; None for none."""
    got = [k for k in kinds if k in rows and np.isfinite(rows[k].get(metric, np.nan))]
    if not got:
        return None
    worst = max(got, key=lambda k: rows[k][metric])
    return {
        "kinds": got,
        "mean": float(np.mean([rows[k][metric] for k in got])),
        "worst": float(rows[worst][metric]),
        "worst_kind": worst,
    }


def held_out_summary(
    rows: Mapping[str, Mapping[str, float]],
    trained: Sequence[str],
    family: Sequence[str],
    invisible: Sequence[str] = (),
) -> dict:
    """One model's drop on the kinds its weights were trained on (``seen``), on every other kind (``held_out``),
    and on the held-out family's kinds it was not trained on (``held_out_family``: the same yardstick for every
    model of a run, where no model trained on them). Kinds ``invisible`` to the model (its logits the clean ones
    on every row: its tokenizer normalizes them away) are left out of all three: their drop is 0 by
    construction, not by anything the model learnt, and would only dilute the means."""
    visible = [k for k in rows if k not in invisible]
    return {
        "seen": drop_summary(rows, [k for k in visible if k in trained]),
        "held_out": drop_summary(rows, [k for k in visible if k not in trained]),
        "held_out_family": drop_summary(rows, [k for k in family if k in visible and k not in trained]),
        "invisible": [k for k in rows if k in invisible],
    }


def heatmap_view(result: dict) -> dict:
    """``result`` with its model and kind names marked for the heatmap: each model with how many kinds it was
    trained on, each kind with how many of the models were trained on it, or "held out" where none was, and a
    kind of the held-out family with a † (as in the report's table)."""
    trained = result.get("trained_kinds") or {}
    rows = result["models"]
    n = len(rows)

    def kind_label(k: str) -> str:
        seen = sum(k in trained.get(m, ()) for m in rows)
        mark = "†" if result["kinds"].get(k, {}).get("family") == "held-out" else ""
        return f"{k}{mark} (trained: {seen} of {n})" if seen else f"{k}{mark} (held out)"

    def model_label(m: str) -> str:
        n_kinds = len(trained.get(m) or ())
        return f"{m} (trained on {n_kinds} kind{'' if n_kinds == 1 else 's'})" if n_kinds else f"{m} (trained on none)"

    marked = {model_label(m): {kind_label(k): r for k, r in kinds.items()} for m, kinds in rows.items()}
    return {**result, "models": marked}


def _pts(x: float | None) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


def _fidelity_row(name: str, clean: dict, row: dict, kinds: list[str]) -> str:
    """One student's fidelity to the teacher, clean and over the perturbation kinds."""
    agr = {k: row[k]["agreement"] for k in kinds if "agreement" in row[k]}
    low = min(agr, key=agr.__getitem__) if agr else None
    mean_agr = float(np.mean(list(agr.values()))) if agr else float("nan")
    mean_tv = float(np.mean([row[k]["tv"] for k in agr])) if agr else float("nan")
    lowest = f"{agr[low]:.3f} ({low})" if low else "—"
    vs_clean = [row[k]["agreement_clean_teacher"] for k in kinds if "agreement_clean_teacher" in row[k]]
    mean_vs_clean = f"{np.mean(vs_clean):.3f}" if vs_clean else "—"
    return (
        f"| {name} | {clean['agreement']:.3f} | {clean['tv']:.3f} | {lowest} | {mean_agr:.3f} | {mean_tv:.3f} "
        f"| {mean_vs_clean} |"
    )


def _family(result: dict) -> list[str]:
    return [k for k, v in result["kinds"].items() if v.get("family") == "held-out"]


def _drop_table(result: dict) -> list[str]:
    """Model × kind, drop in macro F1; a kind of the held-out family marked †, a kind the model trained on *."""
    clean, rows, kinds = result["clean"], result["models"], list(result["kinds"])
    trained = result.get("trained_kinds") or {}
    family = set(_family(result))
    lines = [
        "| model | clean macro F1 | "
        + " | ".join(k + ("†" if k in family else "") for k in kinds)
        + " | worst char-level |",
        "|---|---|" + "---|" * len(kinds) + "---|",
    ]
    for name in rows:
        cells = [_pts(rows[name][k]["drop_f1_macro"]) + ("*" if k in trained.get(name, ()) else "") for k in kinds]
        worst = result["worst_char_drop"].get(name)
        lines.append(f"| {name} | {clean[name]['f1_macro']:.3f} | " + " | ".join(cells) + f" | {_pts(worst)} |")
    if trained or family:
        lines += [
            "",
            "\\* the model's weights were trained on this kind (consistency training, augmentation, or the model it "
            "starts from); every other cell is held out. † the held-out family, written apart from the training "
            "generator; worst char-level is over the training family's character-level kinds.",
        ]
    return lines


def _worst(s: dict | None) -> str:
    return "—" if s is None else f"{_pts(s['worst'])} ({s['worst_kind']})"


def _mean(s: dict | None) -> str:
    return "—" if s is None else _pts(s["mean"])


def _held_out_table(result: dict) -> list[str]:
    """Per model: the drop on the kinds it was trained on against the kinds it was not, and on the held-out family."""
    summary, trained = result.get("held_out") or {}, result.get("trained_kinds") or {}
    if not summary:
        return []
    groups: dict[str, list[str]] = {}
    for name in summary:
        groups.setdefault(", ".join(trained.get(name) or []) or "none", []).append(name)
    unseen: dict[str, list[str]] = {}
    for name, s in summary.items():
        unseen.setdefault(", ".join(s.get("invisible") or []) or "none", []).append(name)
    lines = [
        "",
        "Seen in training against held out: the drop in macro F1 (points), mean and worst over the kinds each model "
        "was trained on, over every other kind, and over the held-out family ("
        + (", ".join(_family(result)) or "not scored")
        + "). Trained on: "
        + "; ".join(f"{', '.join(names)}: {kinds}" for kinds, names in groups.items())
        + ". Left out of every mean, as the model's input stays the same under them (its tokenizer normalizes "
        "them away; drop 0 by construction): "
        + "; ".join(f"{', '.join(names)}: {kinds}" for kinds, names in unseen.items())
        + ".",
        "",
        "| model | seen: mean | seen: worst | held out: mean | held out: worst | held-out family: mean "
        "| held-out family: worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        cells = [f(s[g]) for g in ("seen", "held_out", "held_out_family") for f in (_mean, _worst)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _detail_table(result: dict, best: str) -> list[str]:
    r_all, focus = result["models"][best], result["focus_class"]
    lines = [
        "",
        f"Every measure for {best} (F1 and recall of {focus!r}; drops in points):",
        "",
        f"| perturbation | macro F1 | drop | {focus} F1 | drop | {focus} recall | drop | flip rate | agreement | TV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in result["kinds"]:
        r = r_all[k]
        agr_s = f"{r['agreement']:.3f}" if "agreement" in r else "—"
        tv_s = f"{r['tv']:.3f}" if "tv" in r else "—"
        lines.append(
            f"| {k} | {r['f1_macro']:.3f} | {_pts(r['drop_f1_macro'])} | {r['f1_focus']:.3f} | "
            f"{_pts(r['drop_f1_focus'])} | {r['recall_focus']:.3f} | {_pts(r['drop_recall_focus'])} | "
            f"{r['flip_rate']:.3f} | {agr_s} | {tv_s} |"
        )
    return lines


def format_robustness(result: dict, detail: str | None = None) -> str:
    """Markdown: the drop in macro F1 per model × perturbation, seen against held-out kinds per model, fidelity
    per student, and every measure for one model (``detail``; default: the model with the best clean macro F1)."""
    clean, rows = result["clean"], result["models"]
    kinds = list(result["kinds"])
    lines = [
        f"Drop in macro F1 from clean text, in points (clean − perturbed; positive is a loss). "
        f"{'Validation' if result.get('split') == 'val' else 'Test'} split, "
        f"seed {result['seed']}, {result['n_words']} target words per text ({result['targets']}).",
        "",
        *_drop_table(result),
        "",
        "Share of test rows each perturbation changes: "
        + ", ".join(f"{k} {100 * v['changed']:.0f}%" for k, v in result["kinds"].items())
        + ".",
        *_held_out_table(result),
    ]
    students = [n for n in rows if "agreement" in clean[n]]
    if students:
        lines += [
            "",
            f"Fidelity to the teacher ({result['teacher']}): top-1 agreement and mean total-variation distance "
            "of the probability vectors, both models on the same texts.",
            "",
            "| model | agreement clean | TV clean | agreement, lowest (kind) | agreement, mean over kinds | TV, mean "
            "| agreement with the clean teacher, mean |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_fidelity_row(n, clean[n], rows[n], kinds) for n in students]
    if rows:
        lines += _detail_table(result, detail or max(rows, key=lambda n: clean[n]["f1_macro"]))
    return "\n".join(lines)
