"""Engines and precisions for exports, named the way the bench names its backends, and the engine chosen by
measurement (``toxdistill export --auto``).

``auto_export`` makes (or reuses) the export of every candidate this machine can run: ONNX Runtime fp32,
int8 and int8 on a fused graph, OpenVINO fp32, bf16 (where the CPU has it) and int8 (where the ``openvino``
extra is installed). Each export is checked for parity as ``export`` always does. It then times each one
on a few hundred of the parity texts (the fastest of a few passes) and keeps the fastest one that passes
its gates (``choose_fastest``, the same rule the bench reports per model). The winner is copied to
``<m>-auto``; its record names the engine, the CPU and every candidate's samples/s.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.console import Say, quiet
from toxdistill.data.split import TextSet
from toxdistill.errors import ToxdistillError
from toxdistill.files import META_FILE
from toxdistill.inference.export import (
    check_export_folder,
    default_output,
    export_is_current,
    export_model,
    gate_block,
    output_named,
    parity_texts,
)
from toxdistill.inference.openvino_backend import INSTALL, cpu_has_bf16, openvino_installed
from toxdistill.inference.predict import Predictor
from toxdistill.inference.timing import cpu_name, throughput
from toxdistill.io import atomic_dir, atomic_write_json
from toxdistill.runs import read_meta

AUTO_CANDIDATES = (
    "onnx-fp32",  # first: every other candidate starts from its graph
    "onnx-int8",
    "onnx-int8-fused",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
)
AUTO_SUFFIX = "-auto"
AUTO_TIMING_TEXTS = 300  # enough for stable rates, few enough that --auto takes about a minute
AUTO_PASSES = 3


@dataclass(frozen=True)
class ExportKind:
    """What an export backend's folder holds: the engine, ONNX Runtime's int8 and fusion, OpenVINO's precision."""

    backend: str
    int8: bool = False
    fuse: bool = False
    openvino: str | None = None  # the OpenVINO precision; None: an ONNX Runtime export

    @property
    def predictor_backend(self) -> str:
        return "openvino" if self.openvino else "onnx"

    @property
    def precision(self) -> str:
        return self.openvino or ("int8" if self.int8 else "fp32")


def export_kind(backend: str) -> ExportKind:
    """``onnx-int8-fused`` → ONNX Runtime, int8, fused; ``openvino-bf16`` → OpenVINO at bf16."""
    if backend.startswith("openvino-"):
        return ExportKind(backend, openvino=backend.removeprefix("openvino-"))
    if not backend.startswith("onnx-"):
        raise ToxdistillError(f"{backend!r} is not an export backend", f"use one of {', '.join(AUTO_CANDIDATES)}")
    return ExportKind(backend, int8="int8" in backend, fuse=backend.endswith("-fused"))


def is_export_backend(backend: str) -> bool:
    return backend.startswith(("onnx-", "openvino-"))


def backend_output(model_dir: Path, backend: str) -> Path:
    kind = export_kind(backend)
    return default_output(model_dir, kind.int8, kind.fuse, kind.openvino)


def ensure_export(
    folder: Path, backend: str, texts: TextSet, say: Say = quiet, data: str | None = None, batch_size: int = 64
) -> Path:
    """The export an export backend runs on: the current export of ``folder`` with that backend's settings,
    made now (parity checked on ``texts``, never refused) when it is missing or its weights changed."""
    kind = export_kind(backend)
    out = backend_output(folder, backend)
    if export_is_current(out, folder, kind.int8, fuse=kind.fuse, openvino=kind.openvino):
        say(f"reusing {out}")
    else:
        say(f"exporting {backend} → {out}")
        export_model(
            folder,
            out,
            int8=kind.int8,
            strict=False,
            texts=texts,
            fuse=kind.fuse,
            say=lambda m: say(f"  {m}"),
            engine="openvino" if kind.openvino else "onnxruntime",
            precision=kind.openvino,
            data=data,
            batch_size=batch_size,
        )
    return out


def passes_gates(folder: Path) -> bool:
    """Whether the export in ``folder`` passed its parity gates when it was made."""
    return bool(gate_block(read_meta(folder).get("export") or {}).get("ok"))


def choose_fastest(candidates: list[dict]) -> dict | None:
    """The fastest candidate (``samples_per_s``) among those that pass their gates (``ok``); None if none does."""
    passing = [c for c in candidates if c.get("ok")]
    return max(passing, key=lambda c: c["samples_per_s"]) if passing else None


def available_candidates(say: Say = quiet) -> list[str]:
    """The candidates this machine can run, each left out with a note saying why."""
    out = [b for b in AUTO_CANDIDATES if not b.startswith("openvino-")]
    if not openvino_installed():
        say(f"note: OpenVINO is not installed, so only ONNX Runtime is measured ({INSTALL})")
        return out
    out.append("openvino-fp32")
    if cpu_has_bf16():
        out.append("openvino-bf16")
    else:
        say("note: this CPU has no bf16 support that OpenVINO can use: openvino-bf16 left out")
    out.append("openvino-int8")
    return out


def auto_export(
    model_dir: str | Path,
    out: str | Path | None = None,
    data: str | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    timing_texts: int = AUTO_TIMING_TEXTS,
    passes: int = AUTO_PASSES,
    candidates: list[str] | None = None,
    say: Say = quiet,
) -> Path:
    """Export ``model_dir`` on the fastest engine × precision that passes the parity gates on this machine.

    Every candidate's export is made (or reused) where ``export`` puts it by default, then timed; the winner is
    copied to ``out`` (default ``<m>-auto``) with the choice in its record (``export.auto``).
    """
    model_dir = Path(model_dir)
    out = Path(out) if out else output_named(model_dir, AUTO_SUFFIX)
    check_export_folder(out, model_dir)
    texts = parity_texts(model_dir, data, say)
    sample = timing_sample(texts.texts, timing_texts)
    measured = []
    for backend in candidates or available_candidates(say):
        folder = ensure_export(model_dir, backend, texts, _tagged(say, backend), data, batch_size)
        measured.append(_time_candidate(folder, backend, sample, batch_size, threads, passes))
        c = measured[-1]
        say(f"[{backend}] {c['samples_per_s']:.1f} samples/s; parity {'passed' if c['ok'] else 'FAILED'}")
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


def _tagged(say: Say, backend: str) -> Say:
    return lambda msg: say(f"[{backend}] {msg}")


def _time_candidate(
    folder: Path, backend: str, texts: list[str], batch_size: int, threads: int | None, passes: int
) -> dict[str, Any]:
    kind = export_kind(backend)
    rec = read_meta(folder).get("export") or {}
    block = gate_block(rec)
    pred = Predictor.load(folder, backend=kind.predictor_backend, threads=threads)
    sps, _, _, rates = throughput(pred, texts, batch_size, sort=True, repeats=passes)
    return {
        "backend": backend,
        "engine": rec.get("engine", "onnxruntime"),
        "precision": kind.precision,
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
