"""The export target chosen by measurement (``toxdistill export --auto``), and which targets this machine can run.

``auto_export`` makes (or reuses) the export of every candidate this machine can run (``runnable``: the default
targets, less those whose engine is not installed and bf16 where the CPU has none). Each export is checked for
parity as ``export`` always does. It then times each one on a few hundred of the parity texts (the fastest of a
few passes) and keeps the fastest one that passes its gates (``choose_fastest``, the same rule the bench reports
per model). The winner is copied to ``<m>-auto``; its record names the target, the CPU and every candidate's
samples/s.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.benchmark.timing import throughput
from toxdistill.console import Say, quiet
from toxdistill.data.split import TextSet
from toxdistill.errors import ToxdistillError
from toxdistill.export.folder import check_export_folder, export_is_current
from toxdistill.export.job import ExportJob, export_model
from toxdistill.export.naming import default_output, output_named
from toxdistill.export.parity import parity_texts
from toxdistill.files import META_FILE
from toxdistill.inference.cpu import cpu_name
from toxdistill.inference.export_record import gate_block
from toxdistill.inference.openvino_backend import cpu_has_bf16
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_dir, atomic_write_json
from toxdistill.runs import read_meta
from toxdistill.targets import Target, default_targets, parse_target

AUTO_SUFFIX = "-auto"
AUTO_TIMING_TEXTS = 300  # enough for stable rates, few enough that --auto takes about a minute
AUTO_PASSES = 3


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
    ``texts``, never refused) when it is missing or its weights changed."""
    out = default_output(folder, target)
    if export_is_current(out, folder, target):
        say(f"reusing {out}")
    else:
        say(f"exporting {target} → {out}")
        job = ExportJob(folder, target, out, strict=False, texts=texts, data=data, batch_size=batch_size)
        export_model(job, say=lambda m: say(f"  {m}"))
    return out


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
    texts = parity_texts(model_dir, data, say)
    sample = timing_sample(texts.texts, timing_texts)
    measured = []
    for target in [parse_target(c) for c in candidates] if candidates else available_candidates(say):
        folder = ensure_export(model_dir, target, texts, _tagged(say, target), data, batch_size)
        measured.append(_time_candidate(folder, target, sample, batch_size, threads, passes))
        c = measured[-1]
        say(f"[{target}] {c['samples_per_s']:.1f} samples/s; parity {'passed' if c['ok'] else 'FAILED'}")
    best = choose_fastest(measured)
    if best is None:
        raise ToxdistillError(
            f"none of the {len(measured)} candidates passed its parity gates", "see the parity lines above"
        )
    auto = {
        "chosen": best["backend"],
        "rule": "the fastest candidate that passes its parity gates",
        "cpu": cpu_name(),
        "threads": threads,
        "timing": {"texts": len(sample), "passes": passes, "batch_size": batch_size, "source": texts.source},
        "candidates": measured,
    }
    _write_winner(Path(best["folder"]), out, auto)
    say(f"chose {best['backend']} ({best['samples_per_s']:.1f} samples/s on {auto['cpu']}); wrote {out}")
    return out


def timing_sample(texts: list[str], n: int) -> list[str]:
    """``n`` of ``texts`` in a seeded random order; the built-in sample (20 texts) repeated up to ``n``, so
    that every candidate is timed on more than one batch."""
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in np.resize(order, max(n, 1))] if texts else []


def _tagged(say: Say, target: Target) -> Say:
    return lambda msg: say(f"[{target}] {msg}")


def _time_candidate(
    folder: Path, target: Target, texts: list[str], batch_size: int, threads: int | None, passes: int
) -> dict[str, Any]:
    rec = read_meta(folder).get("export") or {}
    block = gate_block(rec)
    pred = Predictor.load(folder, backend=target.engine, threads=threads)
    sps, _, _, rates = throughput(pred, texts, batch_size, sort=True, repeats=passes)
    return {
        "backend": target.name,  # the key the records of export --auto have always used
        "engine": rec.get("engine", target.spec.record_engine),
        "precision": target.precision,
        "folder": str(folder),
        "samples_per_s": sps,
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
