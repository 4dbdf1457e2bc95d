"""Post-hoc calibration on the validation split: temperature scaling with a class bias, and per-class
decision offsets; ``calibrate_model`` fits them for one model and judges them on test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toxdistill.data.split import Split
from toxdistill.evaluation.logits import calibrated_logits, log_softmax, softmax
from toxdistill.evaluation.metrics import ce_loss, classification_metrics, ece
from toxdistill.evaluation.plots import reliability_diagram


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises validation NLL of ``softmax(logits / T)`` (Guo et al., 2017).

    NLL is unimodal in log T, so scipy's bounded scalar search over log T in [log 0.05, log 20] finds it.
    """
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda log_t: ce_loss(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x))


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """Bias-corrected temperature scaling (Alexandari et al., 2020): the T > 0 and per-class bias b
    that minimise validation NLL of ``softmax(logits / T + b)``.

    A temperature alone fixes over- or under-confidence but not a shift of the class priors, and
    class-weighted training shifts them on purpose: with weights w_c the model learns roughly
    ``p(c|x) · w_c``, so its probabilities overstate the up-weighted classes at every confidence
    level. ``b`` learns that shift back (about ``-log w_c``); it stays near 0 for unweighted models.
    The NLL is convex in (1/T, b), a multinomial logistic regression on the logits, so L-BFGS finds
    the global minimum. ``b`` is reported with mean 0 (softmax ignores a constant).
    """
    from scipy.optimize import minimize

    z = logits.astype(np.float64)
    k = z.shape[1]
    rows = np.arange(len(labels))

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = p[0], p[1:]
        s = z * a + b
        lp = log_softmax(s)
        g = np.exp(lp)  # d NLL / d s = softmax(s) - onehot(y), averaged
        g[rows, labels] -= 1.0
        g /= len(labels)
        return float(-lp[rows, labels].mean()), np.concatenate([[(g * z).sum()], g.sum(0)])

    t0 = fit_temperature(logits, labels)
    res = minimize(
        objective,
        np.concatenate([[1.0 / t0], np.zeros(k)]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(1e-3, None)] + [(None, None)] * k,
    )
    a, b = res.x[0], res.x[1:]
    return float(1.0 / a), [float(x) for x in b - b.mean()]


def _macro_f1_batch(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 for many prediction vectors at once: ``preds`` has shape (n_candidates, n)."""
    f1s = []
    for c in range(k):
        tp = ((preds == c) & (labels == c)).sum(-1)
        fp = ((preds == c) & (labels != c)).sum(-1)
        fn = ((preds != c) & (labels == c)).sum(-1)
        f1s.append(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
    return np.mean(f1s, axis=0)


def fit_offsets(logits: np.ndarray, labels: np.ndarray, grid: np.ndarray | None = None, rounds: int = 3) -> list[float]:
    """Additive per-class logit biases that maximise validation macro F1 (coordinate ascent).

    The largest class keeps offset 0 (only differences matter). Ties go to the smaller offset so
    that argmax is kept unless the data clearly says otherwise.
    """
    k = logits.shape[1]
    grid = np.round(np.arange(-3.0, 3.01, 0.1), 2) if grid is None else grid
    ref = int(np.bincount(labels, minlength=k).argmax())
    off = np.zeros(k)
    best = _macro_f1_batch(labels, (logits + off).argmax(-1)[None], k)[0]
    for _ in range(rounds):
        changed = False
        for c in range(k):
            if c == ref:
                continue
            cand = np.repeat(off[None], len(grid), 0)
            cand[:, c] = grid
            preds = (logits[None] + cand[:, None, :]).argmax(-1)
            scores = _macro_f1_batch(labels, preds, k)
            order = np.lexsort((np.abs(grid), -scores))
            j = order[0]
            if scores[j] > best + 1e-9:
                best, off[c], changed = scores[j], grid[j], True
        if not changed:
            break
    return [float(x) for x in off]


def calibrate_model(
    name: str, out: Path, metrics: dict, val_logits: np.ndarray, test_logits: np.ndarray, split: Split
) -> dict:
    """Calibration and decision offsets, fitted on validation only and judged on test; updates
    ``metrics`` (tuned scores, ECE) and draws ``out/reliability.png``. Returns the calibration record."""
    label_names = split.test.label_names
    if split.test.multi_label:
        return calibrate_multilabel(metrics, val_logits, test_logits, split)
    t, bias = fit_calibration(val_logits, split.val.labels)
    cal_val = calibrated_logits(val_logits, t, np.asarray(bias))
    cal_test = calibrated_logits(test_logits, t, np.asarray(bias))
    offsets = fit_offsets(cal_val, split.val.labels)
    tuned = classification_metrics(split.test.labels, (cal_test + np.asarray(offsets)).argmax(-1), label_names)
    metrics["tuned"] = {
        k: tuned[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class", "confusion_matrix")
    }
    metrics["ece"] = ece(softmax(test_logits), split.test.labels)
    metrics["ece_calibrated"] = ece(softmax(cal_test), split.test.labels)
    reliability_diagram(
        softmax(test_logits), softmax(cal_test), split.test.labels, out / "reliability.png", f"{name} (test)"
    )
    return {"temperature": t, "bias": bias, "offsets": offsets}


def calibrate_multilabel(metrics: dict, val_logits: np.ndarray, test_logits: np.ndarray, split: Split) -> dict:
    """``calibrate_model`` for a multi-label model: per label a Platt temperature and bias and an F1-best threshold
    on validation (``multilabel.fit_calibration``), judged on test as ``tuned`` (F1 at the thresholds, also
    ``f1_at_t_*``) and ECE before and after, the labels' mean. No reliability diagram: it draws one softmax."""
    from toxdistill.evaluation import multilabel as ml

    names, y = split.test.label_names, split.test.labels
    cal = ml.fit_calibration(val_logits, split.val.labels)
    tuned = ml.tuned_metrics(test_logits, y, cal, names)
    metrics["tuned"] = tuned
    metrics["f1_at_t_per_label"] = tuned["f1_per_class"]
    metrics["f1_at_t_macro"] = tuned["f1_macro"]
    if isinstance(metrics.get("val"), dict):  # in-sample on validation, where the thresholds were fitted
        on_val = ml.tuned_metrics(val_logits, split.val.labels, cal, names)
        metrics["val"]["f1_at_t_macro"] = on_val["f1_macro"]
    metrics["ece"] = ml.mean_ece(ml.sigmoid(test_logits), y)
    metrics["ece_calibrated"] = ml.mean_ece(ml.calibrated_probs(test_logits, cal["temperature"], cal["bias"]), y)
    return cal
