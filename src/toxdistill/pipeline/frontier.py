"""The compression frontier of a run: every transformer model exported to int8 and benched in one call, on the
same texts, on this machine, with the naive teacher beside them; each export scored on validation and test;
the Pareto set and the winner (``evaluation/frontier.py``); ``RUN/frontier.json`` and ``RUN/frontier.png``.

The measuring is the bench's own (``benchmark/bench.py``: ``bench_model`` exports through ``ensure_export``, which
reuses an export in ``RUN/export/`` while the weights are unchanged, then times it with ``measure_row``), so the
numbers here and those of ``toxdistill bench`` mean the same. ``toxdistill run`` calls this after the checks and
before the report; ``toxdistill frontier RUN`` makes it again for a finished run.

A frontier measured for the same models (weights), target, texts, threads and CPU is not measured again: its
rows are kept and only the selection is made afresh, so a resumed run spends no time here (``remeasure``
benches anyway).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.benchmark.auto import AUTO_SUFFIX, auto_export, missing_module
from toxdistill.benchmark.bench import BenchSample, bench_model, bench_sample, load_bench_model
from toxdistill.benchmark.options import BenchOptions
from toxdistill.config import Config
from toxdistill.console import Say, quiet
from toxdistill.data.split import Split, TextSet, load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.frontier import pareto, select
from toxdistill.evaluation.metrics import classification_metrics, hate_f1, val_headline
from toxdistill.evaluation.plots import plot_frontier
from toxdistill.export.folder import weights_fingerprint
from toxdistill.export.naming import default_output, output_named
from toxdistill.files import FRONTIER_FILE, FRONTIER_PLOT, MODELS_DIR, TEACHER, VAL_LOGITS
from toxdistill.inference.cpu import cpu_name
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_write_json
from toxdistill.pipeline.best import write_best
from toxdistill.pipeline.context import RunContext
from toxdistill.runs import find_models, read_meta
from toxdistill.targets import AUTO, ONNX_INSTALL, Target, parse_target

# What the bench measured, kept as it is when the frontier is made again for the same inputs.
MEASURED = ("cpu", "threads", "texts", "naive_teacher_samples_per_s", "batch_size", "repeats", "latency_n", "rows")
# A model's role in its toxdistill.json → the stage kind it was trained by, for models the config does not name.
_ROLE_TO_STAGE_KIND = {"student": "distill", "lora": "lora", "finetune": "finetune", "teacher": "teacher"}


def missing_target(target: str) -> ToxdistillError | None:
    """Why ``target`` (or ``auto``) cannot run here (with the install line as its fix), or None when it can."""
    if importlib.util.find_spec("onnxruntime") is None:  # every target starts from the ONNX fp32 graph
        return ToxdistillError("the frontier's exports need onnxruntime, not installed", ONNX_INSTALL)
    if target == AUTO:
        return None  # export --auto leaves out what is not installed, with a note
    t = parse_target(target)
    missing = missing_module(t)
    if missing is not None:
        return ToxdistillError(f"frontier.target {t} needs {missing}, not installed", t.spec.install)
    return None


def frontier_step(ctx: RunContext, say: Say = quiet) -> dict | None:
    """``toxdistill run``'s step, after the checks and before the report: the frontier when ``frontier.enabled``,
    with its own wall-time row. A target this install lacks skips it with a note: the trained models stand."""
    cfg = ctx.cfg
    if not cfg.frontier.enabled:
        return None
    why = missing_target(cfg.frontier.target)
    if why:
        say(f"frontier: skipped, {why}")
        return None
    t = time.perf_counter()
    result = run_frontier(ctx.run_dir, cfg, say, split=ctx.split)
    try:
        best = write_best(ctx.run_dir, result, cfg, say, split=ctx.split)
        say(f"frontier: shipped {result['selection']['model']} to {best} (with its model card)")
    except ToxdistillError as e:
        # The models, the frontier and the report stand; only the shipping step is refused (an export that
        # failed its parity gates is never shipped). The report says so, and the run still ends normally.
        result["selection"]["best_error"] = str(e)
        say(f"frontier: best/ not written: {e}")
    ctx.timings["frontier"] = time.perf_counter() - t
    return result


def run_frontier(
    run_dir: str | Path,
    cfg: Config,
    say: Say = quiet,
    split: Split | None = None,
    data: str | None = None,
    remeasure: bool = False,
) -> dict:
    """Export, bench and score every transformer model of ``run_dir`` (``cfg.frontier``), choose the best
    (``cfg.select``), write ``frontier.json`` and ``frontier.png`` and return the frontier.

    ``split``: the run's split when the caller holds it (else rebuilt from the run folder, ``data`` as the data
    file); ``remeasure``: bench again even where the last frontier was measured for the same inputs."""
    run_dir = Path(run_dir)
    if not (run_dir / MODELS_DIR).is_dir():
        raise ToxdistillError(f"{run_dir} has no {MODELS_DIR}/ folder", "give a run folder written by 'toxdistill run'")
    models = find_models(run_dir, transformers_only=True)
    missing = missing_target(cfg.frontier.target)
    if missing:
        raise missing
    teacher_name = next((n for n, d in models.items() if read_meta(d).get("kind") == "teacher"), None)
    if teacher_name is None:
        raise ToxdistillError(f"{run_dir} has no teacher model", "the frontier holds every model against the teacher")
    split = split or load_run_split(run_dir, data)
    focus = cfg.data.focus_class
    opts = BenchOptions(threads=cfg.threads, limit=cfg.frontier.limit, data=data, plot=False)
    sample = bench_sample(list(split.test.texts), np.asarray(split.test.labels), opts)
    key = _measurement_key(models, cfg, sample)

    previous = _read(run_dir / FRONTIER_FILE)
    reused = previous.get("key") == key and not remeasure
    if reused:
        say(f"frontier: the measurements of {previous.get('created')} are for these models, texts and CPU; kept")
        measured = {k: previous[k] for k in MEASURED if k in previous}
    else:
        measured = _measure(run_dir, models, teacher_name, cfg, split, sample, opts, say)
    teacher = _teacher_reference(models[teacher_name], split, focus)
    rows = measured["rows"]
    front = pareto(rows)
    for r in rows:
        r["pareto"] = any(r["model"] in names for names in front.values())
    frontier: dict[str, Any] = {
        **measured,
        "engine": cfg.frontier.target,  # the key frontier.json has always had (the report reads it)
        "created": previous.get("created") if reused else time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "key": key,
        "focus_class": focus or split.val.label_names[0],
        "teacher": teacher,
        "pareto": front,
        "pareto_split": "val",
        "selection": select(rows, teacher, cfg.select),
        "plot": FRONTIER_PLOT,
    }
    atomic_write_json(run_dir / FRONTIER_FILE, frontier)
    plot_frontier(frontier, run_dir / FRONTIER_PLOT)
    sel = frontier["selection"]
    say(f"frontier: chose {sel['model']} ({sel['rule']} rule): {sel['reason']}")
    say(f"frontier: {sel['test_note']}; wrote {run_dir / FRONTIER_FILE} and {run_dir / FRONTIER_PLOT}")
    return frontier


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a frontier that cannot be read is measured again, not trusted


def _measurement_key(models: dict[str, Path], cfg: Config, sample: BenchSample) -> str:
    """Everything the measured rows depend on: the models' weights, the target, the texts, threads and CPU."""
    parts = {
        "models": {n: weights_fingerprint(d) for n, d in models.items()},
        "engine": cfg.frontier.target,  # keyed as before, so frontiers measured earlier are recognised
        "texts": hashlib.sha256("\x1e".join(sample.texts).encode("utf-8", "surrogatepass")).hexdigest(),
        "threads": sample.threads,
        "cpu": cpu_name(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _measure(
    run_dir: Path,
    models: dict[str, Path],
    teacher_name: str,
    cfg: Config,
    split: Split,
    sample: BenchSample,
    opts: BenchOptions,
    say: Say,
) -> dict:
    """One bench over every model in its target's export (the teacher also in torch-naive, the reference), then
    each export's validation and test scores."""
    test = split.test
    parity = TextSet(list(test.texts), np.asarray(test.labels), f"test split of {run_dir}", list(test.label_names))
    say(
        f"frontier: {len(models)} model(s) in {cfg.frontier.target} on {len(sample.texts)} test texts, "
        f"{sample.threads} thread(s), {cpu_name()}"
    )
    stages = {st.name: st for st in cfg.stages}
    naive: float | None = None
    rows = []
    # The teacher first: its export is the fallback, so a failure there is the frontier's failure.
    for name in sorted(models, key=lambda n: n != teacher_name):
        folder = models[name]

        def tagged(msg: str, name: str = name) -> None:
            say(f"frontier: [{name}] {msg}")

        try:
            target = _target_of(folder, cfg.frontier.target, opts, tagged)
            model = load_bench_model(name, folder, sample.texts, opts.threads)
            wanted = ("torch-naive", target.name) if name == teacher_name else (target.name,)
            tagged(f"benching {', '.join(wanted)}")
            bench_rows = bench_model(model, sample, parity, dataclasses.replace(opts, targets=wanted), _prefixed(say))
        except ToxdistillError as e:
            if name == teacher_name:
                raise
            tagged(f"left out of the frontier: {e}")
            continue
        by_backend = {r["backend"]: r for r in bench_rows}
        if name == teacher_name:
            naive = by_backend["torch-naive"]["samples_per_s"]
        export_dir = default_output(folder, target)
        scores = _export_scores(export_dir, target, split, sample.threads, opts.batch_size, cfg.data.focus_class)
        kind, reference = _kind(name, model.meta, stages.get(name))
        row = by_backend[target.name]
        rows.append(_frontier_row(name, kind, reference, row, os.path.relpath(export_dir, run_dir), scores))
        del model
        gc.collect()
    assert naive is not None  # the teacher is benched first, in torch-naive too
    for r in rows:
        r["x_naive_teacher"] = r["samples_per_s"] / naive
    return {
        "cpu": cpu_name(),
        "threads": sample.threads,
        "texts": len(sample.texts),
        "naive_teacher_samples_per_s": naive,
        "batch_size": opts.batch_size,
        "repeats": opts.repeats,
        "latency_n": len(sample.latency_texts),
        "rows": rows,
    }


def _frontier_row(name: str, kind: str, reference: bool, r: dict, export_dir: str, scores: dict) -> dict:
    """A frontier row: the model, its bench row's speed and size, its export's parity and scores."""
    return {
        "model": name,
        "kind": kind,
        "reference": reference,
        "layers": r["layers"],
        "params": r["params"],
        "export_dir": export_dir,
        "backend": r["backend"],
        "samples_per_s": r["samples_per_s"],
        "p50_ms": r["latency_p50_ms"],
        "p95_ms": r["latency_p95_ms"],
        "size_mb": r["size_mb"],
        "parity_passed": bool(r.get("gate_ok")),
        **scores,
    }


def _prefixed(say: Say) -> Say:
    """The frontier's prefix alone: bench_model names the model in each of its lines itself."""
    return lambda msg: say(f"frontier: {msg}")


def _target_of(folder: Path, choice: str, opts: BenchOptions, say: Say) -> Target:
    """The target a model is measured in: the configured one, or for ``auto`` the one ``export --auto`` chose
    for these weights on this CPU (its choice reused while both are the same, else made now)."""
    if choice != AUTO:
        return parse_target(choice)
    auto = output_named(folder, AUTO_SUFFIX)
    rec = read_meta(auto).get("export") or {}
    before = rec.get("auto") or {}
    if before.get("cpu") == cpu_name() and rec.get("source_sha256") == weights_fingerprint(folder):
        say(f"export --auto chose {before['chosen']} on this CPU before; reusing that choice")
        return parse_target(before["chosen"])
    auto_export(folder, auto, data=opts.data, threads=opts.threads, batch_size=opts.batch_size, say=say)
    return parse_target(read_meta(auto)["export"]["auto"]["chosen"])


def _kind(name: str, meta: dict, stage) -> tuple[str, bool]:
    """The row's kind (the stage kind that trained it, or "teacher") and whether it is a reference row: the
    teacher, the half-depth odd/even students and the LoRA stages, beside which the frontier stages are drawn."""
    if meta.get("kind") == TEACHER:
        return TEACHER, True
    if stage is not None:
        kind = stage.kind
        half = kind == "distill" and stage.student is None and stage.layers in ("odd", "even")
    else:  # a model the config does not name (an older run's stage): its recorded role
        kind = _ROLE_TO_STAGE_KIND.get(meta.get("kind", ""), str(meta.get("kind")))
        half = kind == "distill" and name in ("odd", "even")
    return kind, half or "lora" in kind


def _headline(m: dict, focus: str | None) -> dict:
    """A metrics dict's frontier scores: weighted and macro F1, the focus class's F1 and accuracy."""
    return {k: m[k] for k in ("f1_weighted", "f1_macro", "accuracy")} | {"f1_focus": hate_f1(m, focus)}


def _export_scores(
    export_dir: Path, target: Target, split: Split, threads: int, batch_size: int, focus: str | None
) -> dict[str, dict]:
    """The exported model's own argmax scores on validation and on the whole test split."""
    pred = Predictor.load(export_dir, backend=target.engine, threads=threads)
    out = {}
    for part, ds in (("val", split.val), ("test", split.test)):
        logits, _ = pred.logits(ds.texts, batch_size)
        out[part] = _headline(
            classification_metrics(np.asarray(ds.labels), logits.argmax(-1), list(ds.label_names)), focus
        )
    return out


def _teacher_reference(folder: Path, split: Split, focus: str | None) -> dict:
    """The torch teacher's own scores, validation and test, from its toxdistill.json (validation from its saved
    logits where an older folder lacks them): what every candidate is held against."""
    meta = read_meta(folder)
    m = meta.get("metrics") or {}
    val = m.get("val")
    if val is None and (folder / VAL_LOGITS).is_file():
        val = val_headline(np.load(folder / VAL_LOGITS), np.asarray(split.val.labels), list(split.val.label_names))
    if not m or val is None:
        raise ToxdistillError(
            f"the teacher in {folder} has no validation scores", "rerun 'toxdistill run' to finish its evaluation"
        )
    return {"model": folder.name, "backend": "torch", "val": _headline(val, focus), "test": _headline(m, focus)}
