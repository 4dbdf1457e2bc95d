"""A run's results: the summary rows, seed variation and significance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.config import Config
from toxdistill.evaluation.metrics import hate_f1
from toxdistill.evaluation.stats import bootstrap_table, compare_models, default_pairs, metric_table
from toxdistill.files import META_FILE, MODELS_DIR, TEACHER_SCORES, TEST_LOGITS
from toxdistill.runs import read_meta

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- report
def collect_results(run_dir: Path) -> list[dict]:
    rows = []
    models = run_dir / MODELS_DIR
    for d in sorted(models.iterdir()) if models.is_dir() else []:
        if d.name.startswith("."):  # a temporary folder from an interrupted write, never a finished model
            continue
        meta = read_meta(d)
        if not meta.get("metrics"):
            continue
        m = meta["metrics"]
        rows.append(
            {
                "name": meta["name"],
                "kind": meta["kind"],  # the model's role (baseline, teacher, student, lora, finetune)
                "layers": meta.get("layers"),
                "student_model": meta.get("student_model"),  # a pretrained student of its own, not teacher layers
                "accuracy": m["accuracy"],
                "f1_weighted": m["f1_weighted"],
                "f1_macro": m["f1_macro"],
                "f1_per_class": m["f1_per_class"],
                "precision_per_class": m["precision_per_class"],
                "recall_per_class": m["recall_per_class"],
                "confusion_matrix": m["confusion_matrix"],
                "train_loss": meta["train"]["train_loss"],
                "val_loss": m["val_loss"],
                "test_loss": m["test_loss"],
                "params": meta["params"],
                "trainable_params": meta["trainable_params"],
                "size_mb": meta["size_mb"],
                "throughput_sps": m["throughput_sps"],
                "train_runtime_s": meta["train"].get("train_runtime_s"),
                "train_precision": meta["train"].get("precision"),  # bf16 or fp32 (train.bf16); none for the floor
                "tuned": m.get("tuned"),
                "val": m.get("val"),
                "ece": m.get("ece"),
                "ece_calibrated": m.get("ece_calibrated"),
                "temperature": meta.get("calibration", {}).get("temperature"),
                "calibration_bias": meta.get("calibration", {}).get("bias"),
                **({TEACHER_SCORES: meta[TEACHER_SCORES]} if TEACHER_SCORES in meta else {}),
                **_multilabel_columns(m),
            }
        )
    return rows


# A multi-label model's scores beside the ones every model has (see evaluation/multilabel.py).
MULTILABEL_KEYS = (
    "task",
    "roc_auc_macro",
    "pr_auc_macro",
    "f1_at_t_macro",
    "roc_auc_per_label",
    "pr_auc_per_label",
    "f1_at_t_per_label",
)


def _multilabel_columns(m: dict) -> dict:
    return {k: m[k] for k in MULTILABEL_KEYS if k in m}


def seed_summary(run_dir: Path, cfg: Config) -> dict:
    """Mean ± sample std over seeds for every distill stage that has more than one finished seed.

    Every finished seed folder counts, whatever ``cfg.seeds`` is now, so a later run without ``--seeds``
    keeps the table. A folder trained under other stage settings (its fingerprint differs) does not.
    """
    metrics = {
        "accuracy": lambda m: m["accuracy"],
        "f1_weighted": lambda m: m["f1_weighted"],
        "f1_macro": lambda m: m["f1_macro"],
        "f1_hate": lambda m: hate_f1(m, cfg.data.focus_class),
    }
    out: dict[str, dict[str, Any]] = {}
    for st in cfg.stages:
        if st.kind != "distill" or not st.enabled:  # st.kind: the stage's training method
            continue
        dirs = {cfg.seed: run_dir / MODELS_DIR / st.name}
        for d in sorted((run_dir / "seeds").glob(f"seed*/{st.name}")):
            tag = d.parent.name.removeprefix("seed")
            if tag.isdigit() and int(tag) != cfg.seed:
                dirs[int(tag)] = d
        found = {}
        for seed, d in sorted(dirs.items()):
            if (d / META_FILE).is_file():
                meta = read_meta(d)
                if meta.get("fingerprint") == cfg.model_copy(update={"seed": seed}).stage_fingerprint(st.name):
                    found[seed] = meta["metrics"]
        if len(found) < 2:
            continue
        out[st.name] = {"seeds": list(found)}
        for k, fn in metrics.items():
            values = [fn(m) for m in found.values()]
            out[st.name][k] = {"values": values, "mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}
    return out


def significance(
    run_dir: Path, results: list[dict], labels: np.ndarray, seed: int, n_boot: int = 1000, focus: int = 0
) -> dict:
    """95% bootstrap intervals for every model and paired-bootstrap p-values for the report's comparisons.

    On argmax predictions, the same ones the headline metrics use; all models share the resamples.
    ``focus`` is the class id of ``f1_hate`` (``DataConfig.focus_index()``).
    """
    preds = {r["name"]: np.load(run_dir / MODELS_DIR / r["name"] / TEST_LOGITS).argmax(-1) for r in results}
    k = len(results[0]["f1_per_class"]) if results else 3
    table = metric_table(focus)
    return {
        "n_boot": n_boot,
        "ci": bootstrap_table(labels, preds, table, n_boot=n_boot, seed=seed, n_classes=k),
        "comparisons": compare_models(
            labels,
            preds,
            default_pairs(results),
            metrics={m: table[m] for m in ("f1_weighted", "f1_macro", "f1_hate")},
            n_boot=n_boot,
            seed=seed,
            n_classes=k,
        ),
    }
