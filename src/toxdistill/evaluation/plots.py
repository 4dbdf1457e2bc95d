"""Every plot: a model's confusion matrix and reliability diagram, the robustness heatmap, the bench's
quality-against-speed chart and the run's compression frontier.

matplotlib is imported inside each function (Agg backend), so importing this module costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toxdistill.evaluation.frontier import PARETO_METRICS, pareto_front
from toxdistill.evaluation.metrics import ece, reliability_bins
from toxdistill.evaluation.robustness import drop_matrix
from toxdistill.targets import Target, bench_row_names


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


def plot_confusion(cm: list[list[int]], label_names: list[str], title: str, path: Path) -> None:
    """The test confusion matrix, each cell with its count and its share of the true class's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm_arr = np.asarray(cm)
    norm = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(label_names)):
        for j in range(len(label_names)):
            ax.text(
                j,
                i,
                f"{cm_arr[i, j]}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(label_names)), label_names, rotation=20)
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_robustness(result: dict, path: str | Path) -> Path:
    """Heatmap of model × perturbation: the drop in macro F1 from clean text, in points (red: worse)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    split = "validation" if result.get("split") == "val" else "test"
    ax.set_title(f"drop in macro F1 under each perturbation (points, {split} split)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# One colour per bench row in the plot (the fused targets included: a point the legend does not name is
# unreadable): the torch rows by name, the export targets by target.
TORCH_COLORS = {"torch-naive": "#999999", "torch-sorted": "#1f77b4"}
TARGET_COLORS = {
    Target("onnx", "fp32"): "#2ca02c",
    Target("onnx", "int8"): "#d62728",
    Target("onnx", "fp32", fused=True): "#9467bd",
    Target("onnx", "int8", fused=True): "#ff7f0e",
    Target("openvino", "fp32"): "#17becf",
    Target("openvino", "bf16"): "#8c564b",
    Target("openvino", "int8"): "#e377c2",
}


def row_colors() -> dict[str, str]:
    """Each bench row's colour, by its name, in the order the bench lists them (``bench_row_names``)."""
    by_name = {**TORCH_COLORS, **{t.name: c for t, c in TARGET_COLORS.items()}}
    return {n: by_name[n] for n in bench_row_names() if n in by_name}


def plot_bench(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "os^vD<>pPhX*"
    colors = row_colors()
    models = list(dict.fromkeys(r["model"] for r in result["rows"]))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in result["rows"]:
        if r.get("f1_macro") is None:
            continue
        ax.scatter(
            r["samples_per_s"],
            r["f1_macro"],
            color=colors.get(r["backend"], "black"),
            marker=markers[models.index(r["model"]) % len(markers)],
            s=60,
            edgecolor="black",
            linewidth=0.5,
        )
    _log_speed_axis(ax)
    ax.set_xlabel("throughput (samples/s, log scale)")
    ax.set_ylabel("macro F1 (test split)")
    ax.set_title(
        f"{Path(result['run']).name}: quality vs CPU speed ({result['machine']['threads']} thread(s), {result['texts']['n']} texts)"
    )
    ax.grid(True, which="both", alpha=0.3)
    from matplotlib.lines import Line2D

    # Only the rows this bench ran: a legend entry with no point is noise.
    benched = {r["backend"] for r in result["rows"]}
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=b) for b, c in colors.items() if b in benched]
    handles += [
        Line2D([], [], color="black", marker=markers[i % len(markers)], linestyle="", markerfacecolor="white", label=m)
        for i, m in enumerate(models)
    ]
    ax.legend(handles=handles, loc="best", fontsize=8, ncol=2)
    _save_png(fig, path)
    return path


def _save_png(fig, path: Path) -> None:
    """``fig`` to ``path`` in one rename (a reader never sees half a file), then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    plt.close(fig)


def _log_speed_axis(ax) -> None:
    """A log x axis of samples/s with plain numbers (1000, not 10^3) at the decades and at 2× and 5×."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))


# The frontier chart's groups: the reference rows (the teacher, half-depth students, LoRA) and the candidates.
FRONTIER_GROUPS = {
    "teacher": ("D", "#7f7f7f", "teacher (its export)"),
    "half": ("s", "#1f77b4", "half depth (odd / even)"),
    "lora": ("^", "#9467bd", "LoRA"),
    "candidate": ("o", "#2ca02c", "frontier stages"),
}
FRONTIER_LABELS = {"f1_macro": "macro F1", "f1_weighted": "weighted F1"}


def frontier_group(row: dict) -> str:
    """Which of ``FRONTIER_GROUPS`` a frontier row is drawn as."""
    if row["kind"] == "teacher":
        return "teacher"
    if not row.get("reference"):
        return "candidate"
    return "lora" if "lora" in row["kind"] else "half"


def plot_frontier(frontier: dict, path: str | Path) -> Path:
    """Validation macro F1 and weighted F1 against samples/s (log x), one panel each: every exported model a
    labelled point, the Pareto frontier a step line, the reference rows in markers of their own, the chosen model
    ringed, the naive teacher (torch fp32) a vertical line and the selection's limits dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    rows = frontier["rows"]
    chosen = (frontier.get("selection") or {}).get("model")
    criteria = (frontier.get("selection") or {}).get("criteria") or {}
    teacher = frontier.get("teacher") or {}
    naive = frontier.get("naive_teacher_samples_per_s")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, metric in zip(axes, PARETO_METRICS):
        front = pareto_front(rows, metric, "val")
        if len(front) > 1:
            ax.step(
                [r["samples_per_s"] for r in front],
                [r["val"][metric] for r in front],
                where="pre",
                color="#ff7f0e",
                lw=1.5,
                zorder=1,
            )
        for r in rows:
            marker, color, _ = FRONTIER_GROUPS[frontier_group(r)]
            x, y = r["samples_per_s"], r["val"][metric]
            ax.scatter(x, y, marker=marker, color=color, s=55, edgecolor="black", linewidth=0.5, zorder=3)
            if r["model"] == chosen:
                ax.scatter(x, y, marker="o", s=260, facecolor="none", edgecolor="#d62728", linewidth=2, zorder=4)
            ax.annotate(r["model"], (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7.5)
        if naive:
            ax.axvline(naive, color="grey", ls="--", lw=1)
        limit = criteria.get(f"max_drop_{metric}")
        if limit is not None and teacher.get("val") and criteria.get("min_samples_per_s") is None:
            ax.axhline(teacher["val"][metric] - limit, color="#d62728", ls=":", lw=1)
        if criteria.get("min_samples_per_s") is not None:
            ax.axvline(criteria["min_samples_per_s"], color="#d62728", ls=":", lw=1)
        _log_speed_axis(ax)
        ax.set_xlabel("throughput (samples/s, log scale)")
        ax.set_ylabel(f"{FRONTIER_LABELS[metric]} (validation split)")
        ax.grid(True, which="both", alpha=0.3)
    present = {frontier_group(r) for r in rows}
    handles = [
        Line2D([], [], marker=m, color=c, markeredgecolor="black", linestyle="", label=label)
        for g, (m, c, label) in FRONTIER_GROUPS.items()
        if g in present
    ]
    handles += [
        Line2D([], [], color="#ff7f0e", lw=1.5, label="Pareto frontier"),
        Line2D(
            [],
            [],
            marker="o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="#d62728",
            linestyle="",
            label=f"chosen: {chosen}",
        ),
        Line2D([], [], color="grey", ls="--", lw=1, label="naive teacher (torch fp32)"),
        Line2D([], [], color="#d62728", ls=":", lw=1, label="selection limit"),
    ]
    axes[1].legend(handles=handles, loc="best", fontsize=8)
    fig.suptitle(
        f"compression frontier: {frontier['texts']} test texts, {frontier['threads']} thread(s), {frontier['cpu']}",
        fontsize=10,
    )
    _save_png(fig, path)
    return path
