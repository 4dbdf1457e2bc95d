"""Timing a Predictor, and naming the CPU it ran on: shared by ``toxdistill bench`` and ``export --auto``."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from toxdistill.inference.predict import Predictor


def throughput(
    pred: Predictor, texts: list[str], batch_size: int, sort: bool, repeats: int = 1
) -> tuple[float, np.ndarray, float, list[float]]:
    """(samples/s, logits, seconds, every pass's samples/s) for the fastest of ``repeats`` passes over
    ``texts``, after a warm-up batch.

    The fastest pass, because on a shared 2-core machine single passes of the same model varied by 20%:
    interference only ever slows a pass down. ``pred.timings`` afterwards holds the fastest pass, by phase
    (and ``pred.tokenize_hidden`` its tokenization hidden behind the model).
    """
    pred.logits(texts[:batch_size], batch_size, sort=sort)
    best, rates, logits = float("inf"), [], None
    timings, hidden = dict(pred.timings), pred.tokenize_hidden
    for _ in range(max(1, repeats)):
        pred.reset_timings()
        t = time.perf_counter()
        out, _ = pred.logits(texts, batch_size, sort=sort)
        elapsed = time.perf_counter() - t
        rates.append(len(texts) / elapsed)
        if elapsed < best:
            best, logits, timings, hidden = elapsed, out, dict(pred.timings), pred.tokenize_hidden
    pred.timings, pred.tokenize_hidden = timings, hidden
    assert logits is not None
    return len(texts) / best, logits, best, rates


def cpu_name() -> str:
    """The CPU's model name as Linux reports it (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The vector and matrix extensions that decide which engine and precision is fastest.
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    """Which of ``FEATURES`` the CPU's flags list (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in FEATURES if f in flags]
