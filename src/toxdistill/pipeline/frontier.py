"""The compression frontier of a run: every transformer model exported and benched in one call, on the same
texts, on this machine, with the naive teacher beside them; each export scored on validation and test; the
Pareto set and the winner (``evaluation/frontier.py``); ``RUN/frontier.json`` and ``RUN/frontier.png``.

Each model runs in the engine ``frontier.target`` names, or with ``auto`` (the default) in the one that measures
fastest on this CPU while passing its parity gates: every candidate's export is made or reused and timed on a
few hundred test texts (``benchmark/auto.py``'s ``screen_engines``, as ``export --auto`` does), then only the
winner is benched in full. Each row keeps how its engine was chosen (``engine_choice``: the CPU, the rule, every
candidate's samples/s), which ``RUN/best/``'s selection.json, its model card and the report show.

The measuring is the bench's own (``benchmark/bench.py``: ``bench_model`` exports through ``ensure_export``, which
reuses an export in ``RUN/export/`` while the weights are unchanged, then times it with ``measure_row``), so the
numbers here and those of ``toxdistill bench`` mean the same. ``toxdistill run`` calls this after the checks and
before the report; ``toxdistill frontier RUN`` makes it again for a finished run.

Each candidate's fidelity to the teacher beyond clean validation (``pipeline/behaviour.py``: the eval sets' and
perturbed validation texts, in torch) goes in its row as ``behaviour``, which the select bound reads.

A frontier measured for the same models (weights), target, texts, threads and CPU (its name and features) is not
measured again: its rows are kept and only the selection is made afresh, so a resumed run spends no time here
(``remeasure`` benches anyway). On another CPU it measures again, engines and all.
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

from toxdistill.benchmark.auto import (
    AUTO_PASSES,
    AUTO_TIMING_TEXTS,
    available_candidates,
    missing_module,
    screen_engines,
)
from toxdistill.benchmark.bench import BenchSample, bench_model, bench_sample, load_bench_model
from toxdistill.benchmark.options import BenchOptions
from toxdistill.config import Config
from toxdistill.console import Say, quiet
from toxdistill.cpu import cpu_features, cpu_kind, cpu_name, library_versions
from toxdistill.data.split import Split, TextSet, load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.frontier import SCORES_RULE, pareto, select
from toxdistill.evaluation.metrics import classification_metrics, hate_f1, val_headline
from toxdistill.evaluation.plots import plot_frontier
from toxdistill.evaluation.report import describe_choice
from toxdistill.export.folder import weights_fingerprint
from toxdistill.export.naming import default_output
from toxdistill.export.reference import offer as offer_reference
from toxdistill.files import (
    FRONTIER_FILE,
    FRONTIER_PLOT,
    MODELS_DIR,
    TEACHER,
    TEACHER_SCORES,
    TEST_LOGITS,
    VAL_LOGITS,
)
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_write_json
from toxdistill.pipeline.behaviour import measure_behaviour
from toxdistill.pipeline.best import write_best
from toxdistill.pipeline.context import RunContext
from toxdistill.runs import find_models, read_meta
from toxdistill.targets import AUTO, ONNX_INSTALL, Target, parse_target

# What the bench measured, kept as it is when the frontier is made again for the same inputs.
MEASURED = (
    "cpu",
    "cpu_features",
    "versions",
    "threads",
    "texts",
    "naive_teacher_samples_per_s",
    "batch_size",
    "repeats",
    "latency_n",
    "rows",
)
# A model's role in its toxdistill.json → the stage kind it was trained by, for models the config does not name.
_ROLE_TO_STAGE_KIND = {"student": "distill", "lora": "lora", "finetune": "finetune", "teacher": "teacher"}
# auto's screen of the candidate engines per model: export --auto's own settings (a few hundred test texts, the
# fastest of a few passes). The exports it times are the ones the bench then reuses, so beyond the exports the
# screen costs timing only, and the winner alone gets the full bench (all the texts, latency, scores).
SCREEN_TEXTS = AUTO_TIMING_TEXTS
SCREEN_PASSES = AUTO_PASSES


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
    record = run_dir / MODELS_DIR / TEACHER
    scores_teacher = record if TEACHER_SCORES in read_meta(record) else None
    if teacher_name is None and scores_teacher is None:
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
    teacher = _teacher_reference(scores_teacher or models[str(teacher_name)], split, focus)
    rows = measured["rows"]
    # Measured afresh each time (from the logits' cache when nothing changed): the select bound may read it.
    if teacher_name is None:  # a teacher that is only scores cannot be asked about texts it did not score
        blocks: dict = {}
        behaviour: dict = {"skipped": SCORES_NO_BEHAVIOUR}
    else:
        blocks, behaviour = measure_behaviour(run_dir, cfg, models, teacher_name, split, say)
    for r in rows:
        r["behaviour"] = blocks.get(r["model"])  # None for the teacher: it is the reference
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
        "behaviour": behaviour,
        "pareto": front,
        "pareto_split": "val",
        "selection": select(rows, teacher, cfg.select) if teacher_name else select_without_teacher(rows, teacher),
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
    """Everything the measured rows depend on: the models' weights, the target (and for auto the candidates),
    the texts, threads and CPU."""
    parts = {
        "models": {n: weights_fingerprint(d) for n, d in models.items()},
        "engine": cfg.frontier.target,
        "texts": hashlib.sha256("\x1e".join(sample.texts).encode("utf-8", "surrogatepass")).hexdigest(),
        "threads": sample.threads,
        # The name and the features: two virtual machines both named "AMD EPYC" differ in AVX-512 and VNNI.
        "cpu": cpu_kind(),
        "versions": library_versions(),  # a new engine release may change which engine wins, and by how much
    }
    if cfg.frontier.target == AUTO:  # an engine installed since is a candidate the last screen did not see
        parts["candidates"] = [t.name for t in available_candidates()]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass
class _Bench:
    """What every model of one frontier bench shares: the run, its texts, the bench's options, the engines."""

    run_dir: Path
    cfg: Config
    split: Split
    sample: BenchSample
    opts: BenchOptions
    parity: TextSet  # the test split: the exports' parity texts and the bench's quality texts
    candidates: list[Target]  # auto's candidate engines; empty for a pinned target
    say: Say


def _measure(
    run_dir: Path,
    models: dict[str, Path],
    teacher_name: str | None,
    cfg: Config,
    split: Split,
    sample: BenchSample,
    opts: BenchOptions,
    say: Say,
) -> dict:
    """One bench over every model in its engine's export (the teacher also in torch-naive, the reference), then
    each export's validation and test scores. With ``auto``, each model's engine is chosen first by a short
    screen of every candidate (``screen_engines``); only the winner gets the full bench."""
    test = split.test
    parity = TextSet(list(test.texts), np.asarray(test.labels), f"test split of {run_dir}", list(test.label_names))
    choice = cfg.frontier.target
    engines = "each in the engine that measures fastest here (auto)" if choice == AUTO else f"in {choice}"
    say(
        f"frontier: {len(models)} model(s) {engines}, on {len(sample.texts)} test texts, "
        f"{sample.threads} thread(s), {cpu_kind()}"
    )
    candidates = available_candidates(_prefixed(say)) if choice == AUTO else []
    bench = _Bench(run_dir, cfg, split, sample, opts, parity, candidates, say)
    naive: float | None = None
    rows = []
    # The teacher first: its export is the fallback, so a failure there is the frontier's failure.
    for name in sorted(models, key=lambda n: n != teacher_name):
        row, naive_sps = _measure_model(bench, name, models[name], name == teacher_name)
        if row is not None:
            rows.append(row)
        naive = naive_sps if name == teacher_name else naive
    assert naive is not None or teacher_name is None  # the teacher is benched first, in torch-naive too
    for r in rows:  # no ratio where the teacher is only scores: there is no teacher model to time
        r["x_naive_teacher"] = r["samples_per_s"] / naive if naive else None
    return {
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "versions": library_versions(),
        "threads": sample.threads,
        "texts": len(sample.texts),
        "naive_teacher_samples_per_s": naive,
        "batch_size": opts.batch_size,
        "repeats": opts.repeats,
        "latency_n": len(sample.latency_texts),
        "rows": rows,
    }


def _measure_model(b: _Bench, name: str, folder: Path, teacher: bool) -> tuple[dict | None, float | None]:
    """One model's frontier row (None where it is left out) and, for the teacher, the naive teacher's rate."""

    def tagged(msg: str) -> None:
        b.say(f"frontier: [{name}] {msg}")

    saved = folder / TEST_LOGITS
    if saved.is_file():  # torch's test logits from the run's evaluation: the exports' parity reference
        offer_reference(folder, b.parity.texts, b.opts.batch_size, np.load(saved))
    try:
        target, engine = _choose_engine(folder, b.cfg.frontier.target, b.candidates, b.parity, b.opts, tagged)
        model = load_bench_model(name, folder, b.sample.texts, b.opts.threads)
        wanted = ("torch-naive", target.name) if teacher else (target.name,)
        tagged(f"benching {', '.join(wanted)}")
        opts = dataclasses.replace(b.opts, targets=wanted)
        timed: dict[str, np.ndarray] = {}
        bench_rows = bench_model(model, b.sample, b.parity, opts, _prefixed(b.say), logits_out=timed)
    except ToxdistillError as e:
        if teacher:
            raise
        tagged(f"left out of the frontier: {e}")
        return None, None
    by_backend = {r["backend"]: r for r in bench_rows}
    export_dir = default_output(folder, target)
    # The bench ran the export over the test split: where it ran the whole split, those are its test logits.
    on_test = _in_split_order(timed.get(target.name), b.sample.order, len(b.split.test))
    scores = _export_scores(
        export_dir, target, b.split, b.sample.threads, b.opts.batch_size, b.cfg.data.focus_class, on_test
    )
    kind, reference = _kind(name, model.meta, {st.name: st for st in b.cfg.stages}.get(name))
    row = _frontier_row(name, kind, reference, by_backend[target.name], os.path.relpath(export_dir, b.run_dir), scores)
    del model
    gc.collect()
    naive = by_backend["torch-naive"]["samples_per_s"] if teacher else None
    return {**row, "engine_choice": _relative(engine, b.run_dir)}, naive


def _choose_engine(
    folder: Path, choice: str, candidates: list[Target], parity: TextSet, opts: BenchOptions, say: Say
) -> tuple[Target, dict]:
    """The target a model is benched in and how it was chosen: the configured one (pinned), or for ``auto`` the
    fastest that passes its parity gates in a short screen of ``candidates`` on this CPU (``screen_engines``:
    exports reused, a few hundred test texts, a few passes). Where none passes, the fastest all the same: its
    row says it failed parity, and the selection never takes it."""
    if choice != AUTO:
        target = parse_target(choice)
        return target, {
            "chosen": target.name,
            "rule": "pinned by frontier.target",
            "pinned": True,
            "cpu": cpu_name(),
            "cpu_features": cpu_features(),
            "candidates": [],
        }
    engine = screen_engines(
        folder, candidates, parity, opts.threads, opts.batch_size, SCREEN_TEXTS, SCREEN_PASSES, opts.data, say
    )
    if not engine["candidates"]:
        raise ToxdistillError("no candidate engine can run here", ONNX_INSTALL)
    if engine["chosen"] is None:
        fastest = max(engine["candidates"], key=lambda c: c["samples_per_s"])
        engine["chosen"] = fastest["backend"]
        engine["rule"] = "none passed its parity gates: the fastest, never shipped"
        say(f"none of its {len(candidates)} candidate engines passed its parity gates; benching {fastest['backend']}")
    else:
        say(f"engine: {engine['chosen']} ({describe_choice(engine)})")
    return parse_target(engine["chosen"]), engine


def _relative(engine: dict, run_dir: Path) -> dict:
    """The choice as frontier.json keeps it: the candidates' folders relative to the run folder."""
    cands = [
        {**c, "folder": os.path.relpath(c["folder"], run_dir)} if "folder" in c else c for c in engine["candidates"]
    ]
    return {**engine, "candidates": cands}


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
    ranks = {k: m[k] for k in ("pr_auc_macro", "roc_auc_macro") if k in m}  # a multi-label model's tolerance
    return {k: m[k] for k in ("f1_weighted", "f1_macro", "accuracy")} | {"f1_focus": hate_f1(m, focus)} | ranks


def _in_split_order(logits: np.ndarray | None, order: np.ndarray | None, n: int) -> np.ndarray | None:
    """The bench's logits on the whole test split (frontier.limit unset: ``order`` shuffles all ``n`` texts)
    put back in the split's order; None where the bench saw only part of it."""
    if logits is None or order is None or len(order) != n or len(logits) != n:
        return None
    out = np.empty_like(logits)
    out[order] = logits
    return out


def _export_scores(
    export_dir: Path,
    target: Target,
    split: Split,
    threads: int,
    batch_size: int,
    focus: str | None,
    test_logits: np.ndarray | None = None,
) -> dict[str, dict]:
    """The exported model's own argmax scores on validation and on the whole test split (``test_logits`` where
    the bench already ran the export over it). Its test logits are saved in the export
    (``test_logits.npy``), where ``RUN/best/`` takes them from instead of scoring again."""
    pred = Predictor.load(export_dir, backend=target.engine, threads=threads)
    out = {}
    for part, ds in (("val", split.val), ("test", split.test)):
        if part == "test" and test_logits is not None:
            logits = test_logits
        else:
            logits, _ = pred.logits(ds.texts, batch_size)
        out[part] = _headline(_scores(logits, ds), focus)
        if part == "test":
            np.save(export_dir / TEST_LOGITS, logits.astype(np.float32))
    return out


# Why a run whose teacher is only scores has no behaviour set: its texts are perturbed or new, and no score is known
# for them.
SCORES_NO_BEHAVIOUR = "the teacher is only scores, known for none of the behaviour set's perturbed or new texts"


def select_without_teacher(rows: list[dict], teacher: dict) -> dict:
    """The choice where the teacher is only scores: no export to fall back on, and no speed to be within
    tolerance of. The candidate with the best validation macro F1 (then weighted F1, then speed) that passed its
    parity gates; the scores' own validation figures are reported beside it, not held against it: scores from
    annotators can match the gold labels by construction (Davidson's gold label is the crowd's majority)."""
    passed = [r for r in rows if r["parity_passed"]]
    if not passed:
        raise ToxdistillError("no candidate passed its export's parity gates", "see the frontier's rows")
    key = lambda r, s: (r[s]["f1_macro"], r[s]["f1_weighted"])  # noqa: E731
    best = max(passed, key=lambda r: (*key(r, "val"), r["samples_per_s"]))
    best_test = max(passed, key=lambda r: key(r, "test"))
    holds = best_test["model"] == best["model"]
    return {
        "model": best["model"],
        "rule": SCORES_RULE,
        "fallback": False,
        "reason": f"{best['model']} ({best['backend']}) has the best validation macro F1 of {len(passed)} candidate(s)",
        "holds_on_test": holds,
        "test_note": "it is the best on test too" if holds else f"on test {best_test['model']} is better",
        "left_out_by_behaviour": [],
        "behaviour_flags": [],
        "criteria": {"rule": "max val f1_macro"},
    }


def _scores(logits: np.ndarray, ds) -> dict:
    """Argmax scores, or a multi-label model's decisions at 0.5 and ranking scores."""
    if ds.multi_label:
        from toxdistill.evaluation.multilabel import multilabel_metrics

        return multilabel_metrics(np.asarray(ds.labels), logits, list(ds.label_names))
    return classification_metrics(np.asarray(ds.labels), logits.argmax(-1), list(ds.label_names))


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
