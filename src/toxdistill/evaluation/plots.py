"""Calibration plots. matplotlib is imported inside each function (Agg backend), so importing this module is free."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toxdistill.evaluation.calibrate import ece


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin ``(lo, hi]``: ``count``, mean ``confidence`` and ``accuracy``.

    Confidence is the top-class probability and a row is correct when its top class is the label, the
    same binning as ``calibrate.ece``, so ``ECE = sum_b count_b / n * |accuracy_b - confidence_b|``.
    Empty bins have NaN confidence and accuracy.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(-1)
    correct = (probs.argmax(-1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True gives (lo, hi] bins; a confidence of exactly 0 cannot occur for a top-class probability.
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": acc}


def reliability_diagram(
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    title: str,
    n_bins: int = 15,
) -> Path:
    """Accuracy against confidence before and after calibration (temperature + class bias), with ECE in the legend.

    Top: per-bin accuracy bars for both probability sets over the diagonal (a perfectly calibrated model
    has its bars on the diagonal; bars below it are over-confident). Bottom: how many rows fall in each
    bin, on a log scale, because tweets pile up above 0.9 confidence and a bar there weighs far more in
    the ECE than one at 0.5.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    labels = np.asarray(labels)
    sets = [
        ("before", probs_before, "#d62728"),
        ("calibrated", probs_after, "#1f77b4"),
    ]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = (edges[1] - edges[0]) / 2
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.8, 5.2), dpi=120, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for k, (name, probs, color) in enumerate(sets):
        bins = reliability_bins(probs, labels, n_bins)
        x = edges[:-1] + width * k
        acc = np.nan_to_num(bins["accuracy"])
        e = ece(np.asarray(probs), labels, n_bins)
        ax.bar(x, acc, width=width, align="edge", color=color, alpha=0.75, label=f"{name} (ECE {e:.3f})")
        axc.bar(x, bins["count"], width=width, align="edge", color=color, alpha=0.75)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    axc.set_yscale("symlog", linthresh=1)
    axc.set_ylabel("rows")
    axc.set_xlabel("confidence (top-class probability)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_robustness(result: dict, path: str | Path) -> Path:
    """Heatmap of model × perturbation: the drop in macro F1 from clean text, in points (red: worse)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toxdistill.evaluation.robustness import drop_matrix

    models, kinds, m = drop_matrix(result["models"])
    m = 100 * m
    path = Path(path)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(kinds), 1.2 + 0.36 * len(models)), dpi=120)
    lim = max(1.0, float(np.nanmax(np.abs(m))) if m.size else 1.0)
    im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    for i in range(len(models)):
        for j in range(len(kinds)):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=6.5)
    ax.set_title("drop in macro F1 under each perturbation (points, test split)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
