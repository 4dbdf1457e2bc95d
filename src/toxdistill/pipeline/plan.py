"""`toxdistill run`: split → baseline → teacher → students / LoRA → evaluation → report.

Every stage writes its output folder atomically; a folder that exists is a finished stage and is
not redone unless forced. Training stages checkpoint every epoch in ``work/<stage>`` and resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from toxdistill.config import Config
from toxdistill.data.dataset import load_dataset, resolve_data_path
from toxdistill.data.split import make_or_load_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.metrics import (
    hate_f1,
)
from toxdistill.io import atomic_write_json, atomic_write_text, run_lock
from toxdistill.pipeline import stages
from toxdistill.pipeline.results import collect_results, seed_summary, significance, update_older_models
from toxdistill.pipeline.stages import BASELINE, TEACHER, RunContext, SeedContext, main_only, say, seed_dir
from toxdistill.runs import read_meta
from toxdistill.training.dist import dist

log = logging.getLogger(__name__)


def _check_stage_fingerprints(cfg: Config, run_dir: Path, forced: set[str]) -> None:
    """A finished stage trained with other settings is refused rather than silently reported as current."""
    found = [(run_dir / "models", cfg, name) for name in (BASELINE, TEACHER, *(s.name for s in cfg.stages))]
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
    """Temporary files and folders left by a killed run are never results; clear them on restart."""
    for p in [
        *run_dir.glob(".*.tmp"),
        *run_dir.glob("*/.*.tmp"),
        *run_dir.glob("*/.*.old"),
        *run_dir.glob("seeds/*/.*.tmp"),
        *run_dir.glob("seeds/*/.*.old"),
    ]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _preflight(cfg: Config) -> None:
    """Fail before any training on what can be checked from configs alone: the teacher exists (and, when
    given, is a classifier of these classes), layer sets fit it, named students have the right label count,
    and every LoRA stage's family has target modules."""
    from toxdistill.models.families import is_classifier, lora_targets
    from toxdistill.models.students import resolve_layers
    from toxdistill.models.teacher import check_given_classifier, load_model_config, resolve_model_path

    labels = cfg.data.label_names
    t = cfg.teacher
    path = resolve_model_path(t.model)
    tconf = load_model_config(path)
    if t.train is None:
        check_given_classifier(path, labels, t.label_map)
    pre = t.pretrained_model()
    pre_conf = load_model_config(resolve_model_path(pre)) if pre and pre != t.model else tconf
    family = {"teacher": tconf.model_type, "pretrained": pre_conf.model_type}
    for st in (s for s in cfg.stages if s.enabled):
        if st.layers is not None:
            src = pre_conf if st.kind == "lora" and (st.base or "pretrained") == "pretrained" else tconf
            resolve_layers(st.layers, src.num_hidden_layers)
        family[st.name] = tconf.model_type
        if st.student is not None:
            sconf = load_model_config(resolve_model_path(st.student))
            family[st.name] = sconf.model_type
            if is_classifier(sconf) and sconf.num_labels != len(labels):
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


def run(
    cfg: Config,
    data_path: str | None = None,
    quick: bool = False,
    name: str | None = None,
    force: list[str] | None = None,
) -> Path:
    """Run every stage that is not finished yet; return the run folder."""
    run_name = name or (f"{cfg.name}-quick" if quick else cfg.name)
    run_dir = Path(cfg.output_dir) / run_name
    forced = set(force or [])
    known = {"split", BASELINE, TEACHER, "report", "all", *(s.name for s in cfg.stages)}
    unknown = forced - known
    if unknown:
        raise ToxdistillError(f"--force {sorted(unknown)[0]!r} is not a stage", f"stages: {', '.join(sorted(known))}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = dist()
    with run_lock(run_dir) if d.is_main_process else contextlib.nullcontext():
        saved_cfg = run_dir / "config.yaml"
        fp_file = run_dir / "config.fingerprint"
        fp = cfg.fingerprint() + (":quick" if quick else "")
        if fp_file.is_file() and fp_file.read_text().strip() != fp and "all" not in forced:
            raise ToxdistillError(
                f"run folder {run_dir} was made with a different data, seed or teacher config",
                "use --name NEW for a new run, or --force all to redo this one",
            )
        if "all" in forced and d.is_main_process:
            for sub in ("models", "seeds", "work", "cache", "plots"):
                shutil.rmtree(run_dir / sub, ignore_errors=True)
            (run_dir / "split.json").unlink(missing_ok=True)
        _check_stage_fingerprints(cfg, run_dir, forced)
        if d.is_main_process:
            _remove_partial_writes(run_dir)

        t0 = time.perf_counter()
        path = resolve_data_path(cfg.data, data_path)
        ds = load_dataset(path, cfg.data)
        _preflight(cfg)
        # Written only once the data and the config have passed every check, so a failed start
        # leaves no config behind that would block the corrected run.
        if d.is_main_process:
            atomic_write_text(saved_cfg, cfg.to_yaml())
            atomic_write_text(fp_file, fp)
        if "split" in forced and d.is_main_process:
            (run_dir / "split.json").unlink(missing_ok=True)
        if d.is_main_process:
            make_or_load_split(ds, run_dir / "split.json", cfg.data, cfg.seed, quick)
        d.wait_for_everyone()
        split = make_or_load_split(ds, run_dir / "split.json", cfg.data, cfg.seed, quick)
        ctx = RunContext(cfg, run_dir, split, quick, forced)
        timings_file = run_dir / "timings.json"
        ctx.timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
        ctx.timings["split"] = time.perf_counter() - t0
        say(f"data: {path} → train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")

        # (label, context, stage name, fn): the seed repeats of the distill stages are plan steps like any
        # other, in their own SeedContext, so they resume, skip and --force the same way.
        plan: list[tuple[str, RunContext, str, Callable[[], None]]] = []
        if cfg.baseline:
            plan.append((BASELINE, ctx, BASELINE, lambda: main_only(lambda: stages.stage_baseline(ctx))))
        plan.append((TEACHER, ctx, TEACHER, lambda: stages.stage_teacher(ctx)))
        fns = {
            "distill": stages.stage_distill,
            "lora": stages.stage_lora,
            "distill-lora": stages.stage_lora,
            "finetune": stages.stage_finetune,
        }
        enabled = [st for st in cfg.stages if st.enabled]
        for st in enabled:
            plan.append((st.name, ctx, st.name, (lambda f, c, s: lambda: f(c, s))(fns[st.kind], ctx, st)))
        for k_seed in range(1, cfg.seeds):
            sctx = SeedContext(cfg.model_copy(update={"seed": cfg.seed + k_seed}), run_dir, split, quick, forced)
            for st in (st for st in enabled if st.kind == "distill"):
                label = f"{st.name}@seed{sctx.cfg.seed}"
                plan.append((label, sctx, st.name, (lambda c, s: lambda: stages.stage_distill(c, s))(sctx, st)))
        step_ctx: RunContext
        for k, (label, step_ctx, stage, fn) in enumerate(plan, 1):
            if step_ctx.done(stage):
                say(f"[{k}/{len(plan)}] {label}: done already (use --force {stage} to redo)")
                continue
            say(f"[{k}/{len(plan)}] {label}: training")
            if stage in forced and d.is_main_process:
                shutil.rmtree(step_ctx.work_dir(stage), ignore_errors=True)  # a forced stage starts fresh, no resume
                if step_ctx is ctx:  # its seed repeats describe the model being replaced; --seeds N retrains them
                    for old in run_dir.glob(f"seeds/seed*/{stage}"):
                        shutil.rmtree(old, ignore_errors=True)
            d.wait_for_everyone()
            s0 = time.perf_counter()
            fn()
            ctx.timings[label] = time.perf_counter() - s0
            if not d.is_main_process:
                continue
            atomic_write_json(timings_file, ctx.timings)
            m = read_meta(step_ctx.model_dir(stage))["metrics"]
            say(
                f"[{k}/{len(plan)}] {label}: acc {m['accuracy']:.3f}  F1w {m['f1_weighted']:.3f}  "
                f"F1m {m['f1_macro']:.3f}  hate F1 {hate_f1(m):.3f}  "
                f"({ctx.timings[label]:.0f}s)"
            )
        if not d.is_main_process:
            return run_dir
        s0 = time.perf_counter()
        from toxdistill.evaluation.report import write_report

        update_older_models(run_dir, split)
        results = collect_results(run_dir)
        atomic_write_json(run_dir / "results.json", results)
        sig = significance(run_dir, results, split.test.labels, cfg.seed)
        atomic_write_json(run_dir / "significance.json", sig)
        seeds = seed_summary(run_dir, cfg)
        if seeds:
            atomic_write_json(run_dir / "seeds.json", seeds)
        write_report(run_dir, results, cfg, ctx.timings, quick=quick, significance=sig, seeds=seeds)
        ctx.timings["report"] = time.perf_counter() - s0
        atomic_write_json(timings_file, ctx.timings)
        say(f"report: {run_dir / 'report.md'}")
    return run_dir
