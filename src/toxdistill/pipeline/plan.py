"""`toxdistill run`: split → baseline → teacher → students / LoRA → evaluation → report.

Every stage writes its output folder atomically; a folder that exists is a finished stage and is
not redone unless forced. Training stages checkpoint every epoch in ``work/<stage>`` and resume.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from toxdistill.config import Config
from toxdistill.cpu import cpu_name, machine_facts
from toxdistill.data.dataset import load_dataset, resolve_data_path
from toxdistill.data.split import make_or_load_split
from toxdistill.data.unlabelled import TransferTexts, cut_transfer, describe, read_unlabelled
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import hate_f1
from toxdistill.evaluation.report import write_report
from toxdistill.files import (
    BASELINE,
    CONFIG_FILE,
    MODELS_DIR,
    REPORT_FILE,
    RESULTS_FILE,
    SIGNIFICANCE_FILE,
    SPLIT_FILE,
    TEACHER,
    TEACHER_SCORES,
    TIMINGS_FILE,
)
from toxdistill.io import atomic_write_json, atomic_write_text, recover_partial_writes, run_lock
from toxdistill.models.cnn import CnnConfig
from toxdistill.models.families import is_classifier, lora_targets
from toxdistill.models.students import resolve_layers
from toxdistill.models.teacher import check_given_classifier, check_task, load_model_config, resolve_model_path
from toxdistill.pipeline import stages
from toxdistill.pipeline.check import check_run
from toxdistill.pipeline.context import RunContext, SeedContext, main_only, say, seed_dir
from toxdistill.pipeline.estimate import Plan, estimate_plan, format_minutes, measure_row_costs, plan_lines
from toxdistill.pipeline.external import check_eval_set, run_eval_sets
from toxdistill.pipeline.frontier import frontier_step
from toxdistill.pipeline.results import collect_results, seed_summary, significance
from toxdistill.pipeline.scores import add_scores_fidelity, open_scores
from toxdistill.runs import check_run_format, read_meta, write_run_format
from toxdistill.training.ddp import dist

log = logging.getLogger(__name__)

# The data, seed and teacher settings a run folder was made with (Config.fingerprint), ":quick" for --quick.
FINGERPRINT_FILE = "config.fingerprint"


@dataclass(frozen=True)
class Step:
    """One step of the plan: ``label`` as printed, the context whose folders it writes, its stage name
    (what ``--force`` names and ``done`` checks) and the call that trains it."""

    label: str
    ctx: RunContext
    stage: str
    fn: Callable[[], None]


def _forced_stages(cfg: Config, force: list[str] | None) -> set[str]:
    """The ``--force`` names, each a stage of this config, ``split``, ``report`` or ``all``."""
    forced = set(force or [])
    known = {"split", BASELINE, TEACHER, "report", "all", *(s.name for s in cfg.stages)}
    unknown = forced - known
    if unknown:
        raise ToxdistillError(f"--force {sorted(unknown)[0]!r} is not a stage", f"stages: {', '.join(sorted(known))}")
    return forced


def _check_run_fingerprint(run_dir: Path, fp: str, forced: set[str]) -> None:
    """A run folder belongs to one data, seed and teacher config; another one needs a new folder or --force all."""
    fp_file = run_dir / FINGERPRINT_FILE
    if fp_file.is_file() and fp_file.read_text().strip() != fp and "all" not in forced:
        raise ToxdistillError(
            f"run folder {run_dir} was made with a different data, seed or teacher config",
            "use --name NEW for a new run, or --force all to redo this one",
        )


def _force_all(run_dir: Path) -> None:
    """``--force all``: every model, seed repeat, checkpoint, cache, plot and the split go."""
    for sub in (MODELS_DIR, "seeds", "work", "cache", "plots"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    (run_dir / SPLIT_FILE).unlink(missing_ok=True)


def _check_stage_fingerprints(cfg: Config, run_dir: Path, forced: set[str]) -> None:
    """A finished stage trained with other settings is refused rather than silently reported as current."""
    found = [(run_dir / MODELS_DIR, cfg, name) for name in (BASELINE, TEACHER, *(s.name for s in cfg.stages))]
    for k in range(1, cfg.seeds):  # the seed repeats of the distill stages too
        scfg = cfg.model_copy(update={"seed": cfg.seed + k})
        found += [(seed_dir(run_dir, scfg.seed), scfg, s.name) for s in cfg.stages if s.kind == "distill"]
    for models, c, name in found:
        stored = read_meta(models / name).get("fingerprint")
        if stored and stored != c.stage_fingerprint(name) and name not in forced:
            raise ToxdistillError(
                f"stage {name!r} in {models} was trained with different settings",
                f"use --force {name} to retrain it, or --name NEW for a new run",
            )


def _remove_partial_writes(run_dir: Path) -> None:
    """What a killed run, export or bench left in the run folder is put right on restart: a model folder that
    was being replaced gets its complete copy back, and temporary files and folders whose writer is gone are
    removed (a live process's are kept: ``io.recover_partial_writes``)."""
    folders = [run_dir, *(d for d in run_dir.iterdir() if d.is_dir() and not d.name.startswith("."))]
    folders += [d for d in (run_dir / "seeds").glob("*") if d.is_dir() and not d.name.startswith(".")]
    for folder in folders:
        recover_partial_writes(folder)


def _preflight(cfg: Config) -> None:
    """Fail before any training on what can be checked from configs alone: the teacher exists (and, when
    given, is a classifier of these classes), layer sets fit it, named students have the right label count,
    every LoRA stage's family has target modules, and every eval set can be scored."""
    labels = cfg.data.label_names
    t = cfg.teacher
    # A scores teacher has no model: its students are the pretrained model's, which stands in for it here.
    path = resolve_model_path(t.source_model())
    tconf = load_model_config(path)
    if t.train is None and t.scores is None:
        check_given_classifier(path, labels, t.label_map)
        check_task(path, cfg.data.multi_label)
    pre = t.pretrained_model()
    pre_conf = load_model_config(resolve_model_path(pre)) if pre and pre != t.model else tconf
    family = {"teacher": tconf.model_type, "pretrained": pre_conf.model_type}
    # Each distill stage's student before any cut, and where it loads from: the teacher's, or its own model's.
    student_of: dict[str, tuple[object, str]] = {}
    for st in (s for s in cfg.stages if s.enabled):
        sconf, spath = tconf, path
        if st.arch == "cnn":
            sconf = CnnConfig(hidden_size=tconf.hidden_size)
        elif st.student is not None:
            spath = resolve_model_path(st.student)
            sconf = load_model_config(spath)
        if st.layers is not None:
            # st.kind is the stage's training method (the config key), not a model's role.
            src = pre_conf if st.kind == "lora" and (st.base or "pretrained") == "pretrained" else sconf
            owner = "teacher" if st.student is None else f"student {st.student}"
            try:
                resolve_layers(st.layers, src.num_hidden_layers, owner)
            except ToxdistillError as e:
                raise ToxdistillError(f"stage {st.name!r}: {e.problem}", e.fix) from None
        family[st.name] = sconf.model_type
        student_of[st.name] = (sconf, spath)
        if st.kind in ("distill", "distill-lora"):
            base = student_of.get(st.base or "", (tconf, path)) if st.kind == "distill-lora" else (sconf, spath)
            stages.check_levers(st.name, cfg.stage_distill(st), (tconf, path), base)
        if st.student is not None and is_classifier(sconf) and sconf.num_labels != len(labels):
            raise ToxdistillError(
                f"stage {st.name!r}: student {st.student} is a classifier of {sconf.num_labels} labels; "
                f"the data has {len(labels)}",
                "give a classifier of these classes or a bare pretrained encoder",
            )
        if st.kind in ("lora", "distill-lora"):
            try:
                lora_targets(family.get(st.base or "pretrained", tconf.model_type), cfg.stage_lora(st).target_modules)
            except ToxdistillError as e:
                raise ToxdistillError(f"stage {st.name!r}: {e.problem}", e.fix) from None
    for es in [] if cfg.data.multi_label else cfg.eval_sets:  # a multi-label run skips them (``_checks``)
        check_eval_set(es, labels)


def _open_run(cfg: Config, run_dir: Path, data_path: str | None, quick: bool, forced: set[str], fp: str) -> RunContext:
    """Load and check the data and configs, record the config, then make (rank 0) or read the split."""
    d = dist()
    t0 = time.perf_counter()
    path = resolve_data_path(cfg.data, data_path)
    ds = load_dataset(path, cfg.data)
    _preflight(cfg)
    split_file = run_dir / SPLIT_FILE
    if d.is_main_process:
        # Written only once the data and the config have passed every check, so a failed start
        # leaves no config behind that would block the corrected run.
        write_run_format(run_dir)
        atomic_write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
        atomic_write_text(run_dir / FINGERPRINT_FILE, fp)
        if "split" in forced:
            split_file.unlink(missing_ok=True)
        make_or_load_split(ds, split_file, cfg.data, cfg.seed, quick)
    d.wait_for_everyone()
    split = make_or_load_split(ds, split_file, cfg.data, cfg.seed, quick)
    ctx = RunContext(cfg, run_dir, split, quick, forced)
    timings_file = run_dir / TIMINGS_FILE
    ctx.timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    ctx.timings["split"] = time.perf_counter() - t0
    extra = int((split.train.ids < 0).sum())
    added = f" (with {extra} counterfactual rows, data.counterfactual)" if extra else ""
    say(f"data: {path} → train {len(split.train)}{added}, val {len(split.val)}, test {len(split.test)}")
    ctx.transfer = _transfer_set(cfg, split, quick)
    ctx.scores = open_scores(cfg, split)
    return ctx


# A quick run is a smoke run: its transfer set is cut to this many texts per training row.
_QUICK_TRANSFER_PER_ROW = 2


def _transfer_set(cfg: Config, split, quick: bool) -> TransferTexts | None:
    """``data.unlabelled`` read and cleaned now, so a missing file or column fails before any training."""
    if not cfg.data.unlabelled:
        return None
    t = read_unlabelled(cfg.data, split.train.texts, [*split.val.texts, *split.test.texts])
    if quick and len(t.texts) > _QUICK_TRANSFER_PER_ROW * len(split.train):
        t = cut_transfer(t, _QUICK_TRANSFER_PER_ROW * len(split.train))
    say(f"transfer set (data.unlabelled): {describe(t)}")
    return t


def _plan(ctx: RunContext) -> list[Step]:
    """Baseline, teacher, every enabled stage, then the seed repeats of the distill stages: those are steps
    like any other, in their own SeedContext, so they resume, skip and --force the same way."""
    cfg = ctx.cfg
    # Keyed by a stage's ``kind``, its training method in the config.
    by_method = {
        "distill": stages.stage_distill,
        "lora": stages.stage_lora,
        "distill-lora": stages.stage_lora,
        "finetune": stages.stage_finetune,
    }
    steps: list[Step] = []
    if cfg.baseline and cfg.data.multi_label:
        say(f"{BASELINE}: skipped, the TF-IDF floor is a single-label classifier (data.task multi_label)")
    elif cfg.baseline:
        steps.append(Step(BASELINE, ctx, BASELINE, lambda: main_only(lambda: stages.stage_baseline(ctx))))
    steps.append(Step(TEACHER, ctx, TEACHER, lambda: stages.stage_teacher(ctx)))
    enabled = [st for st in cfg.stages if st.enabled]
    for st in enabled:
        steps.append(Step(st.name, ctx, st.name, functools.partial(by_method[st.kind], ctx, st)))
    for k in range(1, cfg.seeds):
        sctx = SeedContext(cfg.model_copy(update={"seed": cfg.seed + k}), ctx.run_dir, ctx.split, ctx.quick, ctx.forced)
        sctx.transfer, sctx.scores = ctx.transfer, ctx.scores
        for st in (st for st in enabled if st.kind == "distill"):
            label = f"{st.name}@seed{sctx.cfg.seed}"
            steps.append(Step(label, sctx, st.name, functools.partial(stages.stage_distill, sctx, st)))
    return steps


def _restart(step: Step, ctx: RunContext) -> None:
    """A forced stage starts fresh, without resuming its checkpoints."""
    shutil.rmtree(step.ctx.work_dir(step.stage), ignore_errors=True)
    if step.ctx is ctx:  # its seed repeats describe the model being replaced; --seeds N retrains them
        for old in ctx.run_dir.glob(f"seeds/seed*/{step.stage}"):
            shutil.rmtree(old, ignore_errors=True)


def _estimate(ctx: RunContext, steps: list[Step]) -> Plan | None:
    """Rank 0: the steps still to run with their estimated time on this machine, printed before the first; None
    when only the checks and the report are left (nothing worth timing steps for)."""
    todo = [(s.label, s.stage) for s in steps if not s.ctx.done(s.stage)]
    if not todo or not dist().is_main_process:
        return None
    cfg, split = ctx.cfg, ctx.split
    costs = measure_row_costs(cfg, split.train.texts)
    teacher_layers = load_model_config(resolve_model_path(cfg.teacher.source_model())).num_hidden_layers
    n = (len(split.train), len(split.val), len(split.test))
    plan = estimate_plan(cfg, costs, n, todo, ctx.quick, teacher_layers)
    for line in plan_lines(plan, cpu_name()):
        say(line)
    return plan


def _after_step(plan: Plan | None, label: str, seconds: float) -> None:
    """The remaining time, rescaled by how far the finished steps' estimates were off."""
    if plan is None:
        return
    plan.refine(label, seconds)
    left = plan.remaining()
    if left > 0:
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        say(f"remaining ~{format_minutes(left)} (done at ~{finish})")


def _run_steps(ctx: RunContext, steps: list[Step], plan: Plan | None = None) -> None:
    """Each step not done yet, in order, with its wall time and headline scores."""
    d = dist()
    focus = ctx.cfg.data.focus_class
    for k, step in enumerate(steps, 1):
        head = f"[{k}/{len(steps)}] {step.label}"
        if step.ctx.done(step.stage):
            say(f"{head}: done already (use --force {step.stage} to redo)")
            continue
        say(f"{head}: training")
        if step.stage in ctx.forced and d.is_main_process:
            _restart(step, ctx)
        d.wait_for_everyone()
        s0 = time.perf_counter()
        step.fn()
        ctx.timings[step.label] = time.perf_counter() - s0
        if not d.is_main_process:
            continue
        atomic_write_json(ctx.run_dir / TIMINGS_FILE, ctx.timings)
        m = read_meta(step.ctx.model_dir(step.stage))["metrics"]
        if "pr_auc_macro" in m:  # a multi-label model: its ranking scores and F1 at the tuned thresholds
            say(
                f"{head}: ROC AUC {m['roc_auc_macro']:.3f}  PR AUC {m['pr_auc_macro']:.3f}  "
                f"F1@t {m['f1_at_t_macro']:.3f} (macro)  ({ctx.timings[step.label]:.0f}s)"
            )
            _after_step(plan, step.label, ctx.timings[step.label])
            continue
        say(
            f"{head}: acc {m['accuracy']:.3f}  F1w {m['f1_weighted']:.3f}  "
            f"F1m {m['f1_macro']:.3f}  hate F1 {hate_f1(m, focus):.3f}  "
            f"({ctx.timings[step.label]:.0f}s)"
        )
        _after_step(plan, step.label, ctx.timings[step.label])


def _checks(ctx: RunContext, plan: Plan | None = None) -> tuple[dict | None, dict | None]:
    """Rank 0, once every model is trained: robustness and fidelity (``check_run``), then the eval sets; each has
    its own wall-time row."""
    cfg = ctx.cfg
    robustness = evals = None
    if cfg.data.multi_label:
        say("robustness and eval sets: skipped, both score one class per text (data.task multi_label)")
        return None, None
    if cfg.robustness.enabled:
        t = time.perf_counter()
        robustness = check_run(ctx.run_dir, cfg.robustness, threads=cfg.threads, say=say)
        ctx.timings["robustness"] = time.perf_counter() - t
        _after_step(plan, "robustness", ctx.timings["robustness"])
    if cfg.eval_sets:
        t = time.perf_counter()
        evals = run_eval_sets(ctx.run_dir, cfg.eval_sets, cfg.threads, say)
        ctx.timings["eval sets"] = time.perf_counter() - t
    return robustness, evals


def _report(
    ctx: RunContext, robustness: dict | None = None, eval_sets: dict | None = None, frontier: dict | None = None
) -> None:
    """Rank 0: results, significance, seed variation, report."""
    s0 = time.perf_counter()
    run_dir, cfg, split = ctx.run_dir, ctx.cfg, ctx.split
    results = collect_results(run_dir)
    if ctx.scores is not None:
        add_scores_fidelity(run_dir, results, split, ctx.scores)
    atomic_write_json(run_dir / RESULTS_FILE, results)
    sig = None
    if not cfg.data.multi_label:  # the bootstrap resamples argmax decisions
        # A scores teacher has no logits on the test rows it does not score: it is left out of the paired tests.
        models = [r for r in results if not r.get(TEACHER_SCORES)]
        sig = significance(run_dir, models, split.test.labels, cfg.seed, focus=cfg.data.focus_index())
        atomic_write_json(run_dir / SIGNIFICANCE_FILE, sig)
    seeds = seed_summary(run_dir, cfg)
    if seeds:
        atomic_write_json(run_dir / "seeds.json", seeds)
    write_report(
        run_dir,
        results,
        cfg,
        ctx.timings,
        quick=ctx.quick,
        significance=sig,
        seeds=seeds,
        robustness=robustness,
        eval_sets=eval_sets,
        frontier=frontier,
        machine=machine_facts(),
    )
    ctx.timings["report"] = time.perf_counter() - s0
    atomic_write_json(run_dir / TIMINGS_FILE, ctx.timings)
    say(f"report: {run_dir / REPORT_FILE}")


def run(
    cfg: Config,
    data_path: str | None = None,
    quick: bool = False,
    name: str | None = None,
    force: list[str] | None = None,
) -> Path:
    """Run every stage that is not finished yet; return the run folder."""
    run_dir = Path(cfg.output_dir) / (name or (f"{cfg.name}-quick" if quick else cfg.name))
    forced = _forced_stages(cfg, force)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main = dist().is_main_process
    # Rank 0 is the one writer and holds the run folder's lock; the other ranks read what it writes.
    with run_lock(run_dir) if main else contextlib.nullcontext():
        if "all" not in forced:  # --force all redoes the folder in the current format
            check_run_format(run_dir, fix="use --name NEW for a new run, or --force all to redo this one")
        fp = cfg.fingerprint() + (":quick" if quick else "")
        _check_run_fingerprint(run_dir, fp, forced)
        if "all" in forced and main:
            _force_all(run_dir)
        if main:  # first, so that a model folder a killed process was replacing is back before it is checked
            _remove_partial_writes(run_dir)
        _check_stage_fingerprints(cfg, run_dir, forced)
        ctx = _open_run(cfg, run_dir, data_path, quick, forced, fp)
        steps = _plan(ctx)
        plan = _estimate(ctx, steps)
        _run_steps(ctx, steps, plan)
        if main:
            robustness, evals = _checks(ctx, plan)
            frontier = frontier_step(ctx, say)  # also ships the winner to RUN/best/
            _report(ctx, robustness, evals, frontier)
    return run_dir
