"""The export target chosen by measurement (``toxdistill export --auto``, and the frontier's ``auto``), and which
targets this machine can run.

``screen_engines`` makes (or reuses) the export of every candidate this machine can run (``runnable``: the default
targets, less those whose engine is not installed and bf16 where the CPU has none). Each export is checked for
parity as ``export`` always does. It then times each one on a few hundred of the parity texts (the fastest of a
few passes, taken in turns: ``_time_side_by_side``) and keeps the fastest one that passes its gates
(``choose_fastest``, the same rule the bench reports per model). ``auto_export`` copies the winner to
``<m>-auto``; its record names the target, the CPU and every candidate's samples/s. The frontier keeps the
same choice in its rows instead, and benches only the winner in full.

An export below fp32 made on another CPU is made again here (``stale_here``): its parity holds for the CPU it
was checked on.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.benchmark.timing import timed_pass
from toxdistill.console import Say, quiet
from toxdistill.cpu import cpu_features, cpu_name
from toxdistill.data.split import TextSet
from toxdistill.errors import ToxdistillError
from toxdistill.export.folder import check_export_folder, export_is_current
from toxdistill.export.graph import has_attention
from toxdistill.export.job import ExportJob, export_model
from toxdistill.export.naming import default_output, output_named
from toxdistill.export.parity import parity_texts
from toxdistill.export.quantize import wants_reduce_range
from toxdistill.files import META_FILE
from toxdistill.inference.export_record import engine_cpu_note, gate_block, same_cpu
from toxdistill.inference.openvino_backend import cpu_has_bf16
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_dir, atomic_write_json
from toxdistill.runs import read_meta
from toxdistill.targets import DEFAULT_TARGET, Target, default_targets, parse_target

AUTO_SUFFIX = "-auto"
AUTO_TIMING_TEXTS = 300  # enough for stable rates, few enough that --auto takes about a minute
AUTO_PASSES = 3  # the fastest of 3: on a shared machine a pass is only ever slowed down, and 3 passes catch one clean
# At least this long timed per candidate: a pass of a 1-layer student over 300 texts takes about 0.1 s, where one
# scheduler hiccup moved a rate by 20% and turned a choice; the passes capped so a tiny model cannot loop long.
AUTO_MIN_SECONDS = 0.5
AUTO_MAX_PASSES = 20
AUTO_RULE = "the fastest candidate that passes its parity gates"


def missing_module(target: Target) -> str | None:
    """The first module ``target`` needs (its engine's, and its quantizer's for int8) that is not installed; None
    when all are."""
    for module in target.requires:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ValueError:  # a module set to None in sys.modules: as good as not installed
            return module
    return None


def runnable(targets: list[Target], say: Say = quiet) -> list[Target]:
    """``targets`` less those this machine cannot run, each left out with a note saying why (once per engine)."""
    out, noted = [], set()
    for t in targets:
        missing = missing_module(t)
        if missing is not None:
            if t.engine not in noted:
                say(f"note: {missing} is not installed, so the {t.engine} targets are left out ({t.spec.install})")
                noted.add(t.engine)
        elif t.precision == "bf16" and not cpu_has_bf16():
            say(f"note: this CPU has no bf16 support that {t.engine} can use: {t} left out")
        else:
            out.append(t)
    return out


def ensure_export(
    folder: Path, target: Target, texts: TextSet, say: Say = quiet, data: str | None = None, batch_size: int = 64
) -> Path:
    """The export a target runs on: the current export of ``folder`` for ``target``, made now (parity checked on
    ``texts``, never refused) when it is missing, its weights changed or it does not hold on this CPU
    (``stale_here``)."""
    out = default_output(folder, target)
    why = stale_here(out, target) if export_is_current(out, folder, target) else "missing or stale"
    if why is None:
        say(f"reusing {out}")
    else:
        say(f"exporting {target} → {out}" + ("" if why == "missing or stale" else f" ({why})"))
        job = ExportJob(folder, target, out, strict=False, texts=texts, data=data, batch_size=batch_size)
        export_model(job, say=lambda m: say(f"  {m}"))
    return out


def stale_here(out: Path, target: Target) -> str | None:
    """Why a current export of ``target`` in ``out`` must be made again on this CPU, or None.

    A graph below fp32 was checked against fp32 on the CPU that made it, and its error depends on the CPU's
    int8 or bf16 kernels: on another CPU it is made and checked again. ONNX Runtime's int8 is quantized for
    the CPU too (``reduce_range`` without VNNI)."""
    if not target.reduced:
        return None
    rec = read_meta(out).get("export") or {}
    if not same_cpu(rec.get("cpu"), rec.get("cpu_features")):
        return f"its parity was checked on another CPU, {rec.get('cpu')} ({', '.join(rec.get('cpu_features') or [])})"
    quantization = rec.get("quantization") or {}
    if target.engine == "onnx" and bool(quantization.get("reduce_range")) != wants_reduce_range():
        return "quantized for a CPU " + ("with" if wants_reduce_range() else "without") + " VNNI"
    return None


def choose_fastest(candidates: list[dict]) -> dict | None:
    """The fastest candidate (``samples_per_s``) among those that pass their gates (``ok``); None if none does."""
    passing = [c for c in candidates if c.get("ok")]
    return max(passing, key=lambda c: c["samples_per_s"]) if passing else None


def available_candidates(say: Say = quiet) -> list[Target]:
    """The candidates this machine can run: the default targets (ONNX fp32 first: every other one starts from
    its graph), each one it cannot run left out with a note saying why."""
    return runnable(default_targets(), say)


def auto_export(
    model_dir: str | Path,
    out: str | Path | None = None,
    data: str | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    timing_texts: int = AUTO_TIMING_TEXTS,
    passes: int = AUTO_PASSES,
    candidates: list[Target | str] | None = None,
    say: Say = quiet,
) -> Path:
    """Export ``model_dir`` for the fastest target that passes the parity gates on this machine.

    Every candidate's export is made (or reused) where ``export`` puts it by default, then timed; the winner is
    copied to ``out`` (default ``<m>-auto``) with the choice in its record (``export.auto``).
    """
    model_dir = Path(model_dir)
    out = Path(out) if out else output_named(model_dir, AUTO_SUFFIX)
    check_export_folder(out, model_dir)
    note = engine_cpu_note(out) if out.is_dir() else None
    if note:
        say(f"{note}; choosing again now")
    texts = parity_texts(model_dir, data, say)
    targets = [parse_target(c) for c in candidates] if candidates else available_candidates(say)
    auto = screen_engines(model_dir, targets, texts, threads, batch_size, timing_texts, passes, data, say)
    best = next((c for c in auto["candidates"] if c["backend"] == auto["chosen"]), None)
    if best is None:
        raise ToxdistillError(
            f"none of the {len(auto['candidates'])} candidates passed its parity gates", "see the parity lines above"
        )
    _write_winner(Path(best["folder"]), out, auto)
    say(f"chose {best['backend']} ({best['samples_per_s']:.1f} samples/s on {auto['cpu']}); wrote {out}")
    return out


def screen_engines(
    model_dir: Path,
    targets: list[Target],
    texts: TextSet,
    threads: int | None = None,
    batch_size: int = 64,
    timing_texts: int = AUTO_TIMING_TEXTS,
    passes: int = AUTO_PASSES,
    data: str | None = None,
    say: Say = quiet,
) -> dict[str, Any]:
    """The targets' exports of ``model_dir`` made or reused (parity checked on ``texts``), each timed on
    ``timing_texts`` of them (the fastest of ``passes``): the choice, as ``export.auto`` records it. ``chosen``
    is the fastest that passes its gates (``choose_fastest``), None when none does.

    The targets below fp32 first; the fp32 ones are timed (and OpenVINO's fp32 IR made) only when none of those
    passes. Why: the fastest target below fp32 that passed ran 1.6–3.2× as fast as the fastest fp32 one for every
    model on every CPU measured (docs/benchmarks.md on an Intel Xeon; bench/results/engine-choice on an AMD EPYC),
    so timing fp32 only ever bought a fallback that was not needed, at about a sixth of the screen's time."""
    sample = timing_sample(texts.texts, timing_texts)
    if not has_attention(model_dir):
        fused = [t.name for t in targets if t.fused]
        targets = [t for t in targets if not t.fused]
        if fused:
            say(f"{', '.join(fused)} left out: the model has no attention to fuse")
    below = [t for t in targets if t.reduced]
    fp32 = [t for t in targets if not t.reduced]
    if DEFAULT_TARGET in fp32 and below:  # every other export starts from its graph: made first
        ensure_export(model_dir, DEFAULT_TARGET, texts, _tagged(say, DEFAULT_TARGET), data, batch_size)
    measured = _screen_group(model_dir, below, texts, sample, threads, batch_size, passes, data, say)
    not_timed = []
    if fp32 and choose_fastest(measured) is not None:
        not_timed = [t.name for t in fp32]
        say(f"{', '.join(not_timed)} not timed: a target below fp32 passed its gates, and fp32 is slower")
    else:
        measured += _screen_group(model_dir, fp32, texts, sample, threads, batch_size, passes, data, say)
    best = choose_fastest(measured)
    timing = {
        "texts": len(sample),
        "passes": passes,
        "min_seconds": AUTO_MIN_SECONDS,
        "batch_size": batch_size,
        "in_turns": True,  # one pass of each candidate per round (_time_side_by_side)
    }
    return {
        "chosen": best["backend"] if best else None,
        "rule": AUTO_RULE,
        "pinned": False,
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "threads": threads,
        "timing": {**timing, "source": texts.source},
        "candidates": measured,
        "not_timed": not_timed,
    }


def _screen_group(
    model_dir: Path,
    targets: list[Target],
    texts: TextSet,
    sample: list[str],
    threads: int | None,
    batch_size: int,
    passes: int,
    data: str | None,
    say: Say,
) -> list[dict[str, Any]]:
    """The candidates' exports made or reused, then timed side by side (``_time_side_by_side``)."""
    folders = [(t, ensure_export(model_dir, t, texts, _tagged(say, t), data, batch_size)) for t in targets]
    measured = _time_side_by_side(folders, sample, batch_size, threads, passes)
    for t, c in zip(targets, measured, strict=True):
        say(f"[{t}] {c['samples_per_s']:.1f} samples/s; parity {'passed' if c['ok'] else 'FAILED'}")
    return measured


def timing_sample(texts: list[str], n: int) -> list[str]:
    """``n`` of ``texts`` in a seeded random order; the built-in sample (20 texts) repeated up to ``n``, so
    that every candidate is timed on more than one batch."""
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in np.resize(order, max(n, 1))] if texts else []


def _tagged(say: Say, target: Target) -> Say:
    return lambda msg: say(f"[{target}] {msg}")


def _time_side_by_side(
    folders: list[tuple[Target, Path]], texts: list[str], batch_size: int, threads: int | None, passes: int
) -> list[dict[str, Any]]:
    """Each candidate's fastest pass over ``texts``, the passes taken in turns (one of each candidate per round):
    a slow spell of a shared machine then slows one pass of every candidate, not every pass of one. Timed one
    block after another, a 2-core machine's slow spell once made the faster of two engines look 1.3x slower. At
    least ``passes`` rounds, more (up to ``AUTO_MAX_PASSES``) until each candidate has run ``AUTO_MIN_SECONDS``."""
    if not folders:
        return []
    preds = [Predictor.load(folder, backend=t.engine, threads=threads) for t, folder in folders]
    for pred in preds:
        pred.logits(texts[:batch_size], batch_size, sort=True)  # warm-up
    rates: list[list[float]] = [[] for _ in preds]
    for n in range(1, AUTO_MAX_PASSES + 1):
        for pred, r in zip(preds, rates, strict=True):
            r.append(_pass_rate(pred, texts, batch_size))
        spent = min(sum(len(texts) / x for x in r) for r in rates)
        if n >= passes and spent >= AUTO_MIN_SECONDS:
            break
    return [_candidate(folder, t, r) for (t, folder), r in zip(folders, rates, strict=True)]


def _pass_rate(pred: Predictor, texts: list[str], batch_size: int) -> float:
    """Samples per second of one pass over ``texts``, in length-sorted batches."""
    return len(texts) / timed_pass(pred, texts, batch_size, sort=True)[0]


def _candidate(folder: Path, target: Target, rates: list[float]) -> dict[str, Any]:
    rec = read_meta(folder).get("export") or {}
    block = gate_block(rec)
    return {
        "backend": target.name,  # the key the records of export --auto have always used
        "engine": rec.get("engine", target.spec.record_engine),
        "precision": target.precision,
        "folder": str(folder),
        "samples_per_s": max(rates),
        "samples_per_s_passes": rates,
        "ok": bool(block.get("ok")),
        "agreement": block.get("agreement"),
        "f1_weighted_drop_points": block.get("f1_weighted_drop_points"),
    }


def _write_winner(folder: Path, out: Path, auto: dict) -> None:
    """A copy of the chosen export in ``out``, its record carrying the choice; one rename, as every export."""
    with atomic_dir(out) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        meta = read_meta(folder)
        meta["export"] = {**meta["export"], "auto": auto, "copied_from": str(folder)}
        atomic_write_json(tmp / META_FILE, meta)
