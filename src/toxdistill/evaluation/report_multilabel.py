"""report.md's tables for a multi-label run (``data.task: multi_label``): per label ROC AUC, PR AUC and F1 at the
threshold tuned on validation, with their macro means, on test and on validation."""

from __future__ import annotations

from pathlib import Path

from toxdistill.config import Config
from toxdistill.evaluation.tables import fmt


def _f(x, nd=3) -> str:
    return fmt(x, f".{nd}f")


def multilabel_lines(rows: list[dict], run_dir: Path, cfg: Config, quick: bool) -> list[str]:
    """The headline, per-label and per-split tables, and what a multi-label run leaves out and why."""
    names = list(cfg.data.label_names)
    lines = [f"# toxdistill report: {run_dir.name}", ""]
    if quick:
        lines += ["> **Quick smoke run** on a small stratified subset, one epoch per stage: not a result.", ""]
    lines += [
        f"Multi-label task: one sigmoid per label ({', '.join(names)}), from columns "
        f"{', '.join(cfg.data.label_cols or [])}"
        + (f" (on where at least {cfg.data.label_min_votes} annotator(s) gave it)" if cfg.data.label_min_votes else "")
        + f". Teacher `{cfg.teacher.model}`, seed {cfg.seed}. Every row is evaluated by the same code on the same "
        "saved test split. F1@t: F1 at each label's threshold, tuned for F1 on validation on the calibrated "
        "probabilities (per-label temperature and bias, fitted on validation).",
        "",
        "## Macro means (test)",
        "",
        "| Model | kind | ROC AUC | PR AUC | F1@t | F1@0.5 | exact match@0.5 | Val loss | Test loss | ECE → calibrated "
        "| params | samples/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['kind']} | {_f(r.get('roc_auc_macro'))} | {_f(r.get('pr_auc_macro'))} | "
            f"{_f(r.get('f1_at_t_macro'))} | {_f(r['f1_macro'])} | {_f(r['accuracy'])} | {_f(r['val_loss'], 4)} | "
            f"{_f(r['test_loss'], 4)} | {_f(r.get('ece'))} → {_f(r.get('ece_calibrated'))} | {r['params']:,} | "
            f"{r['throughput_sps']:.0f} |"
        )
    lines += _per_label(rows, names) + _per_split(rows) + _left_out()
    return lines


def _per_label(rows: list[dict], names: list[str]) -> list[str]:
    lines = [
        "",
        "## Per label (test): ROC AUC / PR AUC / F1@t",
        "",
        "| Model | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = [
            f"{_f((r.get('roc_auc_per_label') or {}).get(n))} / {_f((r.get('pr_auc_per_label') or {}).get(n))} / "
            f"{_f((r.get('f1_at_t_per_label') or {}).get(n))}"
            for n in names
        ]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return lines


def _per_split(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "## Validation beside test (macro)",
        "",
        "Validation F1@t is in-sample: the thresholds were tuned on it.",
        "",
        "| Model | val ROC AUC | test ROC AUC | val PR AUC | test PR AUC | val F1@t | test F1@t |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r.get("val") or {}
        lines.append(
            f"| {r['name']} | {_f(v.get('roc_auc_macro'))} | {_f(r.get('roc_auc_macro'))} | "
            f"{_f(v.get('pr_auc_macro'))} | {_f(r.get('pr_auc_macro'))} | {_f(v.get('f1_at_t_macro'))} | "
            f"{_f(r.get('f1_at_t_macro'))} |"
        )
    return lines


def _left_out() -> list[str]:
    return [
        "",
        "## Not in a multi-label report",
        "",
        "- The TF-IDF floor, the robustness check, the eval sets and the significance bootstrap are skipped: each "
        "scores one class per text.",
    ]


def frontier_ranking_lines(frontier: dict | None) -> list[str]:
    """Beside the frontier's table (whose F1 columns are decisions at 0.5 here): each export's macro PR AUC and
    ROC AUC, the scores its tolerance (``select.max_drop_pr_auc_macro``) reads."""
    rows = (frontier or {}).get("rows") or []
    if not rows or any(r["val"].get("pr_auc_macro") is None for r in rows):  # a single-label run's frontier
        return []
    lines = [
        "",
        "Multi-label: the F1 columns above are decisions at probability 0.5; the selection's tolerance reads "
        "macro PR AUC:",
        "",
        "| Model | backend | samples/s | PR AUC val / test | ROC AUC val / test |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["samples_per_s"]):
        v, t = r["val"], r["test"]
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['samples_per_s']:.1f} | {_f(v.get('pr_auc_macro'))} / "
            f"{_f(t.get('pr_auc_macro'))} | {_f(v.get('roc_auc_macro'))} / {_f(t.get('roc_auc_macro'))} |"
        )
    return lines
