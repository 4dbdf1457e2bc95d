"""Parity: the texts an export is checked on, and the gates it must pass.

fp32 must match its reference (torch, or ONNX Runtime's fp32 graph for OpenVINO fp32) within ``FP32_TOLERANCE``;
a graph that runs below fp32 (int8, bf16) must agree with fp32 on at least ``MIN_INT8_AGREEMENT`` of the texts and
lose at most ``MAX_INT8_F1_DROP`` points of weighted and of macro F1. Parity is checked on the run's test split
for a model inside a run, else on a built-in sample (agreement only). A multi-label model is held to the same
gates on what it decides: the same set of labels per text, and F1 over its labels (``multi_label_block``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toxdistill.console import Say, quiet
from toxdistill.data.split import TextSet, load_run_split, load_test_texts
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import classification_metrics
from toxdistill.export.reference import torch_reference
from toxdistill.inference.predict import Predictor
from toxdistill.runs import run_dir_of

FP32_TOLERANCE = 1e-4  # max |logit difference| between ONNX fp32 and torch
# share of texts where int8 and fp32 predict the same class (multi-label: the same set of labels)
MIN_INT8_AGREEMENT = 0.99
MAX_INT8_F1_DROP = 0.5  # weighted and macro F1 points int8 (or bf16) may lose against fp32
CALIBRATION_TEXTS = 300  # training texts NNCF calibrates OpenVINO int8 on (its own default subset size)

# Used when the model is not inside a run folder (or its data cannot be found): agreement only.
SAMPLE_TEXTS = [
    "you are a wonderful person and I am glad we met",
    "I hate all of you, get out of this country",
    "this is trash and so are you",
    "what a lovely day at the beach with my family",
    "lol",
    "shut up you stupid idiot",
    "@user thanks for the follow, have a great weekend",
    "these people are animals and should be locked up",
    "can't wait for the game tonight, let's go!!",
    "that bitch stole my fries again",
    "my grandma makes the best apple pie in the world",
    "nobody asked for your opinion, loser",
    "RT @user: new music video out now http",
    "go back to where you came from",
    "I love how the sky looks after it rains",
    "ugh mondays are the worst",
    "you people are all the same, disgusting",
    "congrats on the new job, so proud of you",
    "what the hell is wrong with you",
    "a much longer message that goes on and on about nothing in particular " * 12,
]


def sample_texts() -> TextSet:
    return TextSet(list(SAMPLE_TEXTS), None, "built-in sample")


def parity_texts(model_dir: Path, data: str | None = None, say: Say = quiet) -> TextSet:
    """The texts parity is checked on: the run's test split for a model inside a run, else the built-in sample."""
    run = run_dir_of(model_dir)
    if run is not None:
        try:
            return load_test_texts(run, data)
        except ToxdistillError as e:
            say(f"note: cannot rebuild the test split of {run} ({e.problem}); checking on the built-in sample")
    return sample_texts()


def calibration_texts(
    model_dir: Path, data: str | None = None, n: int = CALIBRATION_TEXTS, say: Say = quiet
) -> TextSet:
    """What static int8 quantization calibrates on: ``n`` training texts of the run (seeded), else the sample.

    Training rows, never the test split that parity is then checked on."""
    run = run_dir_of(model_dir)
    if run is not None:
        try:
            train = load_run_split(run, data).train
        except ToxdistillError as e:
            say(f"note: cannot rebuild the training split of {run} ({e.problem}); calibrating on the built-in sample")
        else:
            pick = np.sort(np.random.default_rng(0).permutation(len(train.texts))[:n])
            return TextSet([train.texts[i] for i in pick], None, f"{len(pick)} training texts of {run}")
    return sample_texts()


def agreement_block(ref: np.ndarray, got: np.ndarray, ref_pred: Predictor, texts: TextSet, label_names) -> dict:
    if ref_pred.calibration.multi_label:
        return multi_label_block(ref, got, ref_pred, texts, label_names)
    a, b = ref.argmax(-1), got.argmax(-1)
    out = {
        "texts": texts.source,
        "n": len(a),
        "agreement": float((a == b).mean()),
        # With the saved calibration and decision offsets, i.e. the labels users see.
        "agreement_decided": float((ref_pred.decide(ref) == ref_pred.decide(got)).mean()),
        "max_abs_diff": float(np.abs(ref - got).max()),
    }
    if texts.labels is not None:
        m_ref = classification_metrics(texts.labels, a, label_names)
        m_got = classification_metrics(texts.labels, b, label_names)
        out.update(_f1_drops(m_ref, m_got), accuracy=m_got["accuracy"])
    return out


def _f1_drops(m_ref: dict, m_got: dict) -> dict[str, float]:
    """Weighted and macro F1 of the reference and of the graph, and the points each lost."""
    return {
        "f1_weighted_ref": m_ref["f1_weighted"],
        "f1_weighted": m_got["f1_weighted"],
        "f1_macro_ref": m_ref["f1_macro"],
        "f1_macro": m_got["f1_macro"],
        "f1_weighted_drop_points": 100 * (m_ref["f1_weighted"] - m_got["f1_weighted"]),
        "f1_macro_drop_points": 100 * (m_ref["f1_macro"] - m_got["f1_macro"]),
    }


def multi_label_block(ref: np.ndarray, got: np.ndarray, ref_pred: Predictor, texts: TextSet, label_names) -> dict:
    """``agreement_block`` for a multi-label model, whose labels are decided one by one: ``agreement`` is the
    share of texts given the very same set of labels (the calibrated decisions users see), with the share per
    label beside it, and the largest difference of a calibrated probability."""
    a, b = ref_pred.decide(ref), ref_pred.decide(got)
    same = a == b
    out = {
        "texts": texts.source,
        "n": len(a),
        "agreement": float(same.all(-1).mean()),
        "agreement_decided": float(same.all(-1).mean()),
        "agreement_per_label": {n: float(v) for n, v in zip(label_names, same.mean(0))},
        "max_abs_diff": float(np.abs(ref - got).max()),
        "max_abs_prob_diff": float(np.abs(ref_pred.probabilities(ref) - ref_pred.probabilities(got)).max()),
    }
    gold = None if texts.labels is None else np.asarray(texts.labels)
    if gold is not None and gold.shape == a.shape:  # one 0/1 column per label
        out.update(_f1_drops(multi_label_f1(gold, a), multi_label_f1(gold, b)))
    return out


def multi_label_f1(gold: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """Each label's F1 of its yes/no decisions; their mean (macro) and their mean weighted by each label's
    positives (weighted). A label without positives nor predictions scores 1: nothing was missed or invented."""
    gold, decided = gold.astype(bool), decided.astype(bool)
    tp = (gold & decided).sum(0)
    errors = (gold ^ decided).sum(0)
    f1 = np.where(2 * tp + errors > 0, 2 * tp / np.maximum(2 * tp + errors, 1), 1.0)
    support = gold.sum(0)
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else float(f1.mean())
    return {"f1_macro": float(f1.mean()), "f1_weighted": weighted}


def describe(block: dict, what: str) -> str:
    s = f"{what}: agreement {100 * block['agreement']:.2f}% on {block['n']} texts ({block['texts']})"
    if "f1_weighted" in block:
        s += (
            f"; weighted F1 {100 * block['f1_weighted_ref']:.2f} → {100 * block['f1_weighted']:.2f}"
            f" ({-block['f1_weighted_drop_points']:+.2f} points), macro F1 {100 * block['f1_macro_ref']:.2f}"
            f" → {100 * block['f1_macro']:.2f} ({-block.get('f1_macro_drop_points', 0.0):+.2f})"
        )
    else:
        s += "; no labels, so no F1"
    return s


def fp32_parity(
    torch_pred,
    fp32_dir: Path,
    texts: TextSet,
    record: dict,
    batch_size: int,
    strict: bool,
    say: Say,
    model_dir: Path | None = None,
) -> tuple[Predictor, np.ndarray]:
    """fp32 ONNX against torch, on length-sorted padded batches and on single unpadded texts. With ``model_dir``,
    torch's batched logits are reused where they are kept for its weights (``export.reference``)."""
    if model_dir is None:
        ref, _ = torch_pred.logits(texts.texts, batch_size)
    else:
        ref = torch_reference(torch_pred, model_dir, texts.texts, batch_size)
    fp32_pred = Predictor.load(fp32_dir, backend="onnx")
    got, _ = fp32_pred.logits(texts.texts, batch_size)
    single = texts.texts[:16]
    ref1, _ = torch_pred.logits(single, 1)
    got1, _ = fp32_pred.logits(single, 1)
    block = agreement_block(ref, got, torch_pred, texts, torch_pred.label_names)
    block["max_abs_diff"] = max(block["max_abs_diff"], float(np.abs(ref1 - got1).max()))
    record["parity"] = {"fp32": block}
    fp32_gate(block, "ONNX", "torch", strict, say, "try --exporter dynamo, or pass --allow-drift to keep it anyway")
    return fp32_pred, got


def reduced_precision_gate(block: dict, texts: TextSet, strict: bool, what: str, hint: str, say: Say) -> None:
    """The gates for a graph that runs below fp32 (int8, bf16): agreement with fp32 on ≥ 99% of the texts and
    at most 0.5 points lost of weighted F1 and of macro F1 (macro carries the rare hate class). Marks ``block``,
    reports it, and refuses a failure under ``strict`` where the texts carry labels (a 20-text sample cannot
    support a 99% threshold)."""
    gated = texts.labels is not None
    drops = {k: block.get(k, 0.0) for k in ("f1_weighted_drop_points", "f1_macro_drop_points")}
    block["ok"] = bool(block["agreement"] >= MIN_INT8_AGREEMENT and max(drops.values()) <= MAX_INT8_F1_DROP)
    block["thresholds"] = {"agreement": MIN_INT8_AGREEMENT, **dict.fromkeys(drops, MAX_INT8_F1_DROP)}
    say(describe(block, f"{what} vs fp32"))
    if not block["ok"] and strict and gated:
        raise ToxdistillError(
            f"{what} model agrees with fp32 on {100 * block['agreement']:.2f}% and loses "
            f"{drops['f1_weighted_drop_points']:.2f} weighted-F1 and {drops['f1_macro_drop_points']:.2f} macro-F1 "
            "points (limits: ≥ 99%, ≤ 0.5 each)",
            hint,
        )
    if not block["ok"] and not gated:
        say(f"warning: {what} agreement is below 99% on the built-in sample")


def fp32_gate(
    block: dict,
    what: str,
    reference: str,
    strict: bool,
    say: Say,
    hint: str = "pass --allow-drift to keep it anyway",
) -> None:
    """The fp32 gate on an fp32 graph held against ``reference``'s fp32 logits: within ``FP32_TOLERANCE``."""
    block["tolerance"] = FP32_TOLERANCE
    block["ok"] = block["max_abs_diff"] <= FP32_TOLERANCE
    say(
        f"fp32 {what} vs {reference}: max |Δlogit| {block['max_abs_diff']:.1e} (tolerance {FP32_TOLERANCE:.0e}); "
        + describe(block, "predicted class")
    )
    if not block["ok"] and strict:
        raise ToxdistillError(
            f"{what} fp32 logits differ from {reference}'s by {block['max_abs_diff']:.1e} (> {FP32_TOLERANCE:.0e})",
            hint,
        )
