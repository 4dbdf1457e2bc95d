"""Uncertainty for test-set metrics: percentile bootstrap intervals and paired bootstrap tests.

Everything is numpy, seeded and vectorised. A resample is a vector of ``n`` row indices drawn with
replacement; all models and all metrics of one call share the same resamples, so differences between
models are *paired* (the row-level noise they share cancels).

Metrics are computed from confusion matrices. For a batch of ``B`` resamples the ``K x K`` counts come
from one ``bincount`` of ``b * K^2 + y_true * K + y_pred``, so 1,000 resamples of 2,478 rows take a few
tens of milliseconds per model. A metric is therefore any function ``cm (B, K, K) -> (B,)`` with
``cm[b, i, j]`` = rows of true class ``i`` predicted as ``j``; the built-in ones are ``metric_table(focus)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MetricFn = Callable[[np.ndarray], np.ndarray]

# Index-matrix elements per chunk (~16 MB as int64): bounds memory for large external sets.
_CHUNK_ELEMS = 2_000_000


# ---------------------------------------------------------------- confusion counts and metrics
def confusion_batch(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrices for many prediction vectors at once.

    ``y_true`` and ``y_pred`` are ``(B, n)`` (or ``(n,)``, treated as ``B = 1``) integer arrays. Returns
    ``(B, K, K)`` int64 counts, ``cm[b, i, j] = #{r : y_true[b, r] = i and y_pred[b, r] = j}``, computed as
    ``bincount(b*K^2 + i*K + j)``: one pass, no Python loop over resamples or classes.
    """
    y_true = np.atleast_2d(np.asarray(y_true, dtype=np.int64))
    y_pred = np.atleast_2d(np.asarray(y_pred, dtype=np.int64))
    y_true, y_pred = np.broadcast_arrays(y_true, y_pred)
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        # An out-of-range id would silently land in another resample's block of the bincount.
        raise ValueError(f"class ids must be in 0..{n_classes - 1}")
    b, k2 = y_true.shape[0], n_classes * n_classes
    codes = (np.arange(b, dtype=np.int64)[:, None] * k2 + y_true * n_classes + y_pred).ravel()
    return np.bincount(codes, minlength=b * k2).reshape(b, n_classes, n_classes)


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``, 0 when the class is neither true nor predicted.

    This equals sklearn's ``f1_score(..., labels=range(K), average=None, zero_division=0)``. Input
    ``(B, K, K)``, output ``(B, K)``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(-1) + cm.sum(-2)  # (TP + FN) + (TP + FP)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def accuracy(cm: np.ndarray) -> np.ndarray:
    """``sum_c TP_c / n``."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum((-2, -1))
    return np.divide(np.trace(cm, axis1=-2, axis2=-1), total, out=np.zeros_like(total), where=total > 0)


def f1_macro(cm: np.ndarray) -> np.ndarray:
    """``mean_c F1_c`` over all K classes (absent classes count as 0, as in sklearn with ``labels=``)."""
    return f1_per_class(cm).mean(-1)


def f1_weighted(cm: np.ndarray) -> np.ndarray:
    """``sum_c support_c F1_c / n`` with ``support_c`` the true rows of class c."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(-1)
    total = support.sum(-1)
    num = (f1_per_class(cm) * support).sum(-1)
    return np.divide(num, total, out=np.zeros_like(total), where=total > 0)


def f1_class(c: int) -> MetricFn:
    """The metric ``cm -> F1_c`` for one class."""

    def fn(cm: np.ndarray) -> np.ndarray:
        return f1_per_class(cm)[..., c]

    fn.__name__ = f"f1_class_{c}"
    return fn


DEFAULT_METRICS = ("accuracy", "f1_weighted", "f1_macro", "f1_hate")


def metric_table(focus: int = 0) -> dict[str, MetricFn]:
    """The built-in metrics by name. ``f1_hate`` is the F1 of class ``focus``, the class of interest
    (``DataConfig.focus_index()``); the key keeps its name whatever the class, so results files read alike.

    Metric *names* given to the functions below mean ``metric_table()``, whose ``f1_hate`` is the first
    class; for another class of interest pass ``metric_table(focus)`` (or a part of it) as the metrics.
    """
    return {"accuracy": accuracy, "f1_weighted": f1_weighted, "f1_macro": f1_macro, "f1_hate": f1_class(focus)}


def _metric_table(metrics: str | Sequence[str] | Mapping[str, MetricFn] | None) -> dict[str, MetricFn]:
    if metrics is None:
        metrics = DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        return dict(metrics)
    known = metric_table()
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(known)} (or pass a callable)")
    return {m: known[m] for m in metrics}


# ---------------------------------------------------------------- resampling
def resample_indices(n: int, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Chunks of the ``(n_boot, n)`` bootstrap index matrix, rows drawn uniformly with replacement.

    The chunk size depends only on ``n``, so the same ``(n, n_boot, seed)`` always gives the same
    resamples, whichever function asks for them.
    """
    if n <= 0:
        raise ValueError("cannot bootstrap zero rows")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMS // n)
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - start), n))


def _n_classes(y_true: np.ndarray, preds: Sequence[np.ndarray], n_classes: int | None) -> int:
    if n_classes is not None:
        return n_classes
    # At least 3 so that f1_hate and the macro average mean the same on a sample missing a class.
    return max(3, int(max(np.max(y_true), *(np.max(p) for p in preds))) + 1)


def _boot_values(
    y_true: np.ndarray,
    preds: Mapping[str, np.ndarray],
    fns: Mapping[str, MetricFn],
    n_boot: int,
    seed: int,
    n_classes: int | None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """Point estimates and ``(n_boot,)`` resampled values per model and metric, on shared resamples."""
    y_true = np.asarray(y_true, dtype=np.int64)
    preds = {m: np.asarray(p, dtype=np.int64) for m, p in preds.items()}
    for m, p in preds.items():
        if p.shape != y_true.shape:
            raise ValueError(f"predictions of {m!r} have shape {p.shape}, labels {y_true.shape}")
    k = _n_classes(y_true, list(preds.values()), n_classes)
    points = {}
    for m, p in preds.items():
        cm = confusion_batch(y_true, p, k)
        points[m] = {name: float(fn(cm)[0]) for name, fn in fns.items()}
    chunks: dict[str, dict[str, list[np.ndarray]]] = {m: {name: [] for name in fns} for m in preds}
    for idx in resample_indices(len(y_true), n_boot, seed):
        yt = y_true[idx]
        for m, p in preds.items():
            cm = confusion_batch(yt, p[idx], k)
            for name, fn in fns.items():
                chunks[m][name].append(np.asarray(fn(cm), dtype=np.float64))
    values = {m: {name: np.concatenate(v) for name, v in per.items()} for m, per in chunks.items()}
    return points, values


def _percentile_interval(point: float, values: np.ndarray, alpha: float, what: str) -> tuple[float, float]:
    """``[q_{alpha/2}, q_{1-alpha/2}]`` of the bootstrap values, stretched to the point if it lies outside.

    For these metrics the bootstrap distribution sits around the point estimate, so the percentile
    interval contains it. It can miss only when more than ``1 - alpha/2`` of the resamples fall on one
    side, which for F1 happens on tiny samples: resamples that miss every row of a rare class score 0
    for it. Then the interval is widened to the point (more coverage, never less) and a warning is logged.
    """
    lo, hi = (float(x) for x in np.quantile(values, [alpha / 2, 1 - alpha / 2]))
    if not lo <= point <= hi:
        log.warning("%s: point %.4f outside the bootstrap interval [%.4f, %.4f]; widened", what, point, lo, hi)
        lo, hi = min(lo, point), max(hi, point)
    return lo, hi


# ---------------------------------------------------------------- public API
def bootstrap_table(
    y_true: np.ndarray,
    preds: Mapping[str, np.ndarray],
    metric_fns: str | Sequence[str] | Mapping[str, MetricFn] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_classes: int | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {metric: {"point", "low", "high"}}}`` for many models on the same resamples.

    Percentile bootstrap: ``point = metric(y, p)`` on all rows; ``low``/``high`` are the ``alpha/2`` and
    ``1 - alpha/2`` quantiles of ``metric(y[I_b], p[I_b])`` over ``b = 1..n_boot`` resamples ``I_b`` of the
    test rows (with replacement, the same ``I_b`` for every model and metric).
    """
    fns = _metric_table(metric_fns)
    points, values = _boot_values(y_true, preds, fns, n_boot, seed, n_classes)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in preds:
        out[m] = {}
        for name in fns:
            lo, hi = _percentile_interval(points[m][name], values[m][name], alpha, f"{m} {name}")
            out[m][name] = {"point": points[m][name], "low": lo, "high": hi}
    return out


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric_fns: str | Sequence[str] | Mapping[str, MetricFn] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_classes: int | None = None,
) -> dict[str, dict[str, float]]:
    """``{metric: {"point", "low", "high"}}``: percentile bootstrap ``1 - alpha`` intervals for one model.

    ``metric_fns`` is None (accuracy, f1_weighted, f1_macro, f1_hate), names from ``metric_table``, or
    ``{name: fn}`` with ``fn(cm (B, K, K)) -> (B,)``. See ``bootstrap_table`` for the method.
    """
    return bootstrap_table(y_true, {"_": y_pred}, metric_fns, n_boot, alpha, seed, n_classes)["_"]


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap interval of ``mean(values)`` (e.g. a 0/1 "correct" vector → accuracy)."""
    values = np.asarray(values, dtype=np.float64)
    point = float(values.mean())
    boot = np.concatenate([values[idx].mean(-1) for idx in resample_indices(len(values), n_boot, seed)])
    lo, hi = _percentile_interval(point, boot, alpha, "mean")
    return {"point": point, "low": lo, "high": hi}


def _pvalue(diffs: np.ndarray, point: float, method: str) -> float:
    b = len(diffs)
    if method == "percentile":
        # Counting ties on both sides keeps identical models at p = 1.
        below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
        return float(min(1.0, 2 * (min(below, above) + 1) / (b + 1)))
    if method == "shift":
        return float((int((np.abs(diffs - point) >= abs(point)).sum()) + 1) / (b + 1))
    raise ValueError(f"unknown p-value method {method!r}; use 'percentile' or 'shift'")


def paired_bootstrap_pvalue(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    metric: str | MetricFn = "f1_macro",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    method: str = "percentile",
    n_classes: int | None = None,
) -> dict[str, float]:
    """Paired bootstrap test of ``H0: metric(a) = metric(b)`` on the same rows.

    ``diff = metric(y, a) - metric(y, b)``; each resample ``I_b`` is applied to both models, giving
    ``d_b = metric(y[I_b], a[I_b]) - metric(y[I_b], b[I_b])``; ``low``/``high`` are its percentile interval.

    ``method="percentile"`` (default), two-sided::

        p = min(1, 2 * (min(#{d_b <= 0}, #{d_b >= 0}) + 1) / (n_boot + 1))

    i.e. twice the share of resampled differences on the far side of zero, with the usual ``+1``
    Monte-Carlo correction so that ``p >= 2 / (n_boot + 1)`` is never reported as 0. It is the inversion
    of the percentile interval: ``p < alpha`` essentially exactly when the ``1 - alpha`` interval excludes 0.

    ``method="shift"`` is the test of Berg-Kirkpatrick et al. (2012), made two-sided: the resampled
    differences are centred on the observed one to mimic H0, ``p = (#{|d_b - diff| >= |diff|} + 1) / (n_boot + 1)``.
    """
    fn: MetricFn = metric_table()[metric] if isinstance(metric, str) else metric
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    points, values = _boot_values(y_true, {"a": pred_a, "b": pred_b}, {name: fn}, n_boot, seed, n_classes)
    diff = points["a"][name] - points["b"][name]
    diffs = values["a"][name] - values["b"][name]
    lo, hi = _percentile_interval(diff, diffs, alpha, f"diff {name}")
    return {"diff": diff, "low": lo, "high": hi, "p_value": _pvalue(diffs, diff, method)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values: ``p_(i) * (m - i + 1)`` in ascending order, made monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return [float(x) for x in out]


def compare_models(
    y_true: np.ndarray,
    preds: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    metrics: str | Sequence[str] | Mapping[str, MetricFn] = "f1_macro",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    method: str = "percentile",
    n_classes: int | None = None,
) -> list[dict]:
    """Paired bootstrap comparisons, one dict per (pair, metric), all on the same resamples.

    Each dict: ``a``, ``b``, ``metric``, ``a_value``, ``b_value``, ``diff`` (a - b), ``low``, ``high``
    (percentile interval of the difference), ``p_value`` (as in ``paired_bootstrap_pvalue``) and
    ``p_holm``, Holm-adjusted over all the comparisons of that metric in this call.
    """
    fns = _metric_table(metrics)
    missing = sorted({m for pair in pairs for m in pair} - set(preds))
    if missing:
        raise ValueError(f"no predictions for {', '.join(missing)}")
    used = {m: preds[m] for m in dict.fromkeys(m for pair in pairs for m in pair)}
    if not used:
        return []
    points, values = _boot_values(y_true, used, fns, n_boot, seed, n_classes)
    rows = []
    for name in fns:
        block: list[dict[str, Any]] = []
        for a, b in pairs:
            diff = points[a][name] - points[b][name]
            diffs = values[a][name] - values[b][name]
            lo, hi = _percentile_interval(diff, diffs, alpha, f"{a} - {b} {name}")
            block.append(
                {
                    "a": a,
                    "b": b,
                    "metric": name,
                    "a_value": points[a][name],
                    "b_value": points[b][name],
                    "diff": diff,
                    "low": lo,
                    "high": hi,
                    "p_value": _pvalue(diffs, diff, method),
                }
            )
        for row, p in zip(block, holm([float(r["p_value"]) for r in block])):
            row["p_holm"] = p
        rows.extend(block)
    return rows


def layer_set_pairs(models: Sequence[Mapping]) -> list[tuple[str, str]]:
    """Students built from the teacher's own layers (kind ``student``, no ``student_model``) with the same
    depth and different layer sets, e.g. odd vs even: ``(a, b)`` with a's layer list sorting first."""
    built = [m for m in models if m["kind"] == "student" and m.get("layers") and not m.get("student_model")]
    pairs = []
    for i, a in enumerate(built):
        for b in built[i + 1 :]:
            if len(a["layers"]) == len(b["layers"]) and list(a["layers"]) != list(b["layers"]):
                first, second = sorted((a, b), key=lambda m: list(m["layers"]))
                pairs.append((first["name"], second["name"]))
    return pairs


def default_pairs(models: Sequence[Mapping], include_baseline: bool = False) -> list[tuple[str, str]]:
    """The comparisons the report makes, chosen by each model's ``kind`` and ``layers``, never its name.

    Same-depth layer sets against each other (``layer_set_pairs``); then every model that is neither the
    teacher nor the baseline against the teacher; with ``include_baseline``, ``(teacher, baseline)``.
    Differences read "first minus second", so a negative model-vs-teacher diff is what compression costs.
    """
    teacher = next((m["name"] for m in models if m["kind"] == "teacher"), None)
    baseline = next((m["name"] for m in models if m["kind"] == "baseline"), None)
    pairs = layer_set_pairs(models)
    if teacher is not None:
        pairs += [(m["name"], teacher) for m in models if m["kind"] not in ("teacher", "baseline")]
        if include_baseline and baseline is not None:
            pairs.append((teacher, baseline))
    return pairs
