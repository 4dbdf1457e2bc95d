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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .calibrate import ece, fit_calibration, fit_offsets
from .config import Config, StageConfig, TrainConfig
from .data import Split, load_dataset, make_or_load_split, resolve_data_path
from .dist import dist
from .errors import ToxdistillError
from .evaluate import classification_metrics, evaluate_predictor, hate_f1, plot_confusion, val_headline
from .io import atomic_dir, atomic_write_json, atomic_write_text, run_lock
from .predict import META_FILE, Predictor, calibrated_logits, read_meta, softmax

log = logging.getLogger(__name__)

BASELINE = "tfidf-lr"
TEACHER = "teacher"


def _say(msg: str) -> None:
    if dist().is_main:
        print(f"[toxdistill] {msg}", flush=True)


@dataclass
class RunContext:
    cfg: Config
    run_dir: Path
    split: Split
    quick: bool = False
    forced: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)

    def model_dir(self, name: str) -> Path:
        return self.run_dir / "models" / name

    def work_dir(self, name: str) -> Path:
        return self.run_dir / "work" / name

    def done(self, name: str) -> bool:
        return (self.model_dir(name) / META_FILE).is_file() and name not in self.forced and "all" not in self.forced


def seed_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / "seeds" / f"seed{seed}"


@dataclass
class SeedContext(RunContext):
    """A repeat of the student stages with another training seed: same split, teacher and cache; its
    models go to ``seeds/seed<N>/`` so that they are neither report rows nor served."""

    def model_dir(self, name: str) -> Path:
        if name == TEACHER:
            return super().model_dir(name)
        return seed_dir(self.run_dir, self.cfg.seed) / name

    def work_dir(self, name: str) -> Path:
        return self.run_dir / "work" / f"seed{self.cfg.seed}" / name


# ---------------------------------------------------------------- helpers
def _dir_size_mb(folder: Path) -> float:
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix in {".safetensors", ".npz", ".onnx"}]
    return sum(f.stat().st_size for f in files) / 2**20


def _quick_train(cfg: TrainConfig, quick: bool) -> TrainConfig:
    return cfg.model_copy(update={"epochs": 1.0}) if quick else cfg


def _calibrate(name: str, out: Path, metrics: dict, val_logits, test_logits, split) -> dict:
    """Calibration and decision offsets, fitted on validation only and judged on test; updates
    ``metrics`` (tuned scores, ECE) and draws the reliability diagram. Returns the calibration record."""
    label_names = split.test.label_names
    t, bias = fit_calibration(val_logits, split.val.labels)
    cal_test = calibrated_logits(test_logits, t, bias)
    offsets = fit_offsets(calibrated_logits(val_logits, t, bias), split.val.labels)
    tuned = classification_metrics(split.test.labels, (cal_test + np.asarray(offsets)).argmax(-1), label_names)
    metrics["tuned"] = {
        k: tuned[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class", "confusion_matrix")
    }
    metrics["ece"] = ece(softmax(test_logits), split.test.labels)
    metrics["ece_calibrated"] = ece(softmax(cal_test), split.test.labels)
    from .plots import reliability_diagram

    reliability_diagram(
        softmax(test_logits), softmax(cal_test), split.test.labels, out / "reliability.png", f"{name} (test)"
    )
    return {"temperature": t, "bias": bias, "offsets": offsets}


def _finish_model(
    ctx: RunContext,
    name: str,
    out: Path,
    meta: dict,
    predictor,
    params: tuple[int, int],
) -> dict:
    """The one evaluation path: metrics, calibration, offsets, plots, and the model's metadata file."""
    split = ctx.split
    metrics, val_logits, test_logits = evaluate_predictor(predictor, split.val, split.test)
    label_names = split.test.label_names
    calibration = _calibrate(name, out, metrics, val_logits, test_logits, split)
    meta.update(
        {
            "name": name,
            "fingerprint": ctx.cfg.stage_fingerprint(name),
            "label_names": label_names,
            "max_length": ctx.cfg.data.max_length,
            # Standalone copies of the folder (exports, serving) clean raw text the same way.
            "clean": ctx.cfg.data.clean.model_dump(),
            "calibration": calibration,
            "metrics": metrics,
            "params": params[0],
            "trainable_params": params[1],
            "size_mb": _dir_size_mb(out),
            "toxdistill_version": __version__,
        }
    )
    np.save(out / "test_logits.npy", test_logits.astype(np.float32))
    np.save(out / "val_logits.npy", val_logits.astype(np.float32))
    plot_confusion(metrics["confusion_matrix"], label_names, f"{name} (test)", out / "confusion.png")
    atomic_write_json(out / META_FILE, meta)
    return meta


def _update_older_models(run_dir: Path, split) -> None:
    """Models finished by an older toxdistill get what the current one records, computed from their
    saved validation and test logits (no retraining, no re-scoring): calibration with a class bias
    where they have a temperature alone, and validation scores where they have none."""
    models = run_dir / "models"
    for d in sorted(models.iterdir()) if models.is_dir() else []:
        if d.name.startswith(".") or not (d / "val_logits.npy").is_file() or not (d / META_FILE).is_file():
            continue
        meta = read_meta(d)
        metrics = meta.get("metrics")
        if not metrics:
            continue
        recalibrate = "bias" not in (meta.get("calibration") or {})
        add_val = "val" not in metrics
        if not (recalibrate or add_val):
            continue
        val_logits, test_logits = np.load(d / "val_logits.npy"), np.load(d / "test_logits.npy")
        if recalibrate:
            meta["calibration"] = _calibrate(meta["name"], d, metrics, val_logits, test_logits, split)
            _say(f"{meta['name']}: recalibrated from its saved logits (temperature + class bias)")
        if add_val:
            metrics["val"] = val_headline(val_logits, split.val.labels, split.val.label_names)
        atomic_write_json(d / META_FILE, meta)


def _save_hf(model, tokenizer, out: Path) -> None:
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


# ---------------------------------------------------------------- stages
def stage_baseline(ctx: RunContext) -> None:
    from .baseline import TfidfLR

    with atomic_dir(ctx.model_dir(BASELINE)) as out:
        t0 = time.perf_counter()
        m = TfidfLR(ctx.split.train.label_names, ctx.cfg.seed).fit(ctx.split.train)
        train_s = time.perf_counter() - t0
        m.save(out)
        logits, _ = m.logits(ctx.split.train.texts)
        from .evaluate import ce_loss

        n_params = int(m.clf.coef_.size + m.clf.intercept_.size)
        meta = {
            "kind": "baseline",
            "layers": None,
            "train": {"train_loss": ce_loss(logits, ctx.split.train.labels), "train_runtime_s": train_s},
        }
        _finish_model(ctx, BASELINE, out, meta, m, (n_params, n_params))


def _load_teacher_pretrained(ctx: RunContext):
    from .teacher import load_classifier

    spec = ctx.cfg.teacher.pretrained_model()
    assert spec is not None, "Config validation requires teacher.pretrained where a stage needs it"
    return load_classifier(spec, ctx.split.train.label_names, ctx.cfg.seed)


def _train_and_save(
    ctx: RunContext,
    name: str,
    kind: str,
    model,
    tokenizer,
    train_cfg: TrainConfig,
    *,
    layers: list[int] | None,
    stage_cfg: dict,
    distill=None,
    lora_save=False,
    extra_meta: dict | None = None,
) -> None:
    from .lora import count_params, save_lora
    from .students import detach_hidden_projection
    from .train import train_model

    teacher_outputs = None
    if distill is not None:
        teacher_outputs = _teacher_cache(ctx)
    params = count_params(model)
    hist = train_model(
        model,
        tokenizer,
        ctx.split.train,
        ctx.split.val,
        _quick_train(train_cfg, ctx.quick),
        ctx.work_dir(name),
        seed=ctx.cfg.seed,
        max_length=ctx.cfg.data.max_length,
        n_layers=model.config.num_hidden_layers,
        distill=distill,
        teacher_outputs=teacher_outputs,
    )
    trainer = hist.pop("trainer")
    if not dist().is_main:  # rank 0 alone saves and evaluates; the others wait for the finished folder
        dist().barrier()
        return
    with atomic_dir(ctx.model_dir(name)) as out:
        trained = trainer.model
        detach_hidden_projection(trained)
        if lora_save:
            if (ctx.work_dir(name) / "base").is_dir():
                shutil.copytree(
                    ctx.work_dir(name) / "base", out / "base"
                )  # copied: a retry after a failed save keeps it
            trained = save_lora(trained, tokenizer, out)
        else:
            _save_hf(trained, tokenizer, out)
        meta = {
            "kind": kind,
            "layers": layers,
            "train": hist,
            "stage": stage_cfg,
            "throughput_note": "merged LoRA weights" if lora_save else None,
            **(extra_meta or {}),
        }
        del trainer, trained, model
        predictor = Predictor.load(out, threads=ctx.cfg.threads)
        _finish_model(ctx, name, out, meta, predictor, params)
    shutil.rmtree(ctx.work_dir(name), ignore_errors=True)
    dist().barrier()


def _cache_file(ctx: RunContext, tdir: Path) -> Path:
    from .train import teacher_cache_key

    key = teacher_cache_key(tdir, ctx.split.fingerprint(), ctx.cfg.data.max_length)
    return ctx.run_dir / "cache" / f"teacher-{key}.safetensors"


def _build_teacher_cache(ctx: RunContext, tdir: Path, teacher=None, ttok=None):
    """Rank 0 only: the teacher's logits and final first-token states on the training rows, computed once."""
    from .families import forward_inputs
    from .teacher import load_classifier
    from .train import EncodedDataset, load_or_build_teacher_cache

    cache_file = _cache_file(ctx, tdir)
    if teacher is None:
        teacher, ttok = load_classifier(str(tdir), ctx.split.train.label_names, ctx.cfg.seed)
    tt = "token_type_ids" in forward_inputs(teacher)
    enc = EncodedDataset(ctx.split.train, ttok, ctx.cfg.data.max_length, token_types=tt)
    for stale in (ctx.run_dir / "cache").glob("teacher-*.safetensors"):
        if stale != cache_file:
            stale.unlink()
    return load_or_build_teacher_cache(cache_file, teacher, enc, ttok.pad_token_id or 0)


def _teacher_cache(ctx: RunContext):
    from safetensors.torch import load_file

    tdir = ctx.model_dir(TEACHER)
    cache_file = _cache_file(ctx, tdir)
    # Rank 0 builds the cache once (if missing); every other rank waits, then reads the file.
    if dist().is_main and not cache_file.is_file():
        out = _build_teacher_cache(ctx, tdir)
        dist().barrier()
        return out
    dist().barrier()
    t = load_file(str(cache_file))
    return t["logits"], t["cls"]


def stage_given_teacher(ctx: RunContext) -> None:
    """``teacher.train: null``: the user's fine-tuned classifier, relabelled to the data's classes, saved
    as the run's teacher and evaluated like a trained one. Its train loss comes from the teacher cache,
    which the students need anyway."""
    from .evaluate import ce_loss
    from .lora import count_params
    from .teacher import load_given_classifier

    tcfg = ctx.cfg.teacher
    labels = ctx.split.train.label_names
    model, tok = load_given_classifier(tcfg.model, labels, tcfg.label_map)
    with atomic_dir(ctx.model_dir(TEACHER)) as out:
        _save_hf(model, tok, out)
        # The cache key is the files' names, sizes and times, which the folder's rename keeps.
        logits, _ = _build_teacher_cache(ctx, out, model, tok)
        n = model.config.num_hidden_layers
        meta = {
            "kind": "teacher",
            "layers": list(range(1, n + 1)),
            "train": {"train_loss": ce_loss(logits.numpy(), ctx.split.train.labels), "train_runtime_s": 0.0},
            "stage": {"model": tcfg.model, "train": None, "label_map": tcfg.label_map},
            "given": True,
        }
        params = count_params(model)
        del model
        _finish_model(ctx, TEACHER, out, meta, Predictor.load(out, threads=ctx.cfg.threads), (params[0], 0))


def stage_teacher(ctx: RunContext, name: str = TEACHER, train_cfg: TrainConfig | None = None) -> None:
    tc = train_cfg or ctx.cfg.teacher.train
    if tc is None:
        _main_only(lambda: stage_given_teacher(ctx))
        return
    model, tok = _load_teacher_pretrained(ctx)
    _train_and_save(
        ctx,
        name,
        "teacher" if name == TEACHER else "finetune",
        model,
        tok,
        tc,
        layers=list(range(1, model.config.num_hidden_layers + 1)),
        stage_cfg={"model": ctx.cfg.teacher.pretrained_model(), "train": tc.model_dump()},
    )


def stage_distill(ctx: RunContext, st: StageConfig) -> None:
    from .students import attach_hidden_projection, build_student, resolve_layers
    from .teacher import load_classifier

    labels = ctx.split.train.label_names
    teacher, tok = load_classifier(str(ctx.model_dir(TEACHER)), labels, ctx.cfg.seed)
    extra = {}
    if st.student is not None:
        # Another model, with its own tokenizer: the cached teacher outputs are keyed by training row.
        student, tok = load_classifier(st.student, labels, ctx.cfg.seed)
        layers = list(range(1, student.config.num_hidden_layers + 1))
        projected = attach_hidden_projection(student, int(teacher.config.hidden_size))
        extra = {"student_model": st.student, "hidden_projection": projected}
    else:
        layers = resolve_layers(st.layers, teacher.config.num_hidden_layers)
        student = build_student(teacher, layers)
    del teacher
    _train_and_save(
        ctx,
        st.name,
        "student",
        student,
        tok,
        ctx.cfg.stage_train(st),
        layers=layers,
        distill=ctx.cfg.stage_distill(st),
        stage_cfg=st.model_dump(mode="json")
        | {"train": ctx.cfg.stage_train(st).model_dump(), "distill": ctx.cfg.stage_distill(st).model_dump()},
        extra_meta=extra,
    )


def stage_lora(ctx: RunContext, st: StageConfig) -> None:
    from .lora import add_lora, count_params
    from .students import build_student, resolve_layers
    from .teacher import load_classifier, load_model_config

    lcfg = ctx.cfg.stage_lora(st)
    base_kind = st.base or "pretrained"
    distill = None
    if st.kind == "distill-lora":
        base_model, tok = load_classifier(str(ctx.model_dir(st.base)), ctx.split.train.label_names, ctx.cfg.seed)
        layers = read_meta(ctx.model_dir(st.base)).get("layers")
        distill = ctx.cfg.stage_distill(st)
        base_desc = f"models/{st.base}"
    else:
        if base_kind == "pretrained":
            base_model, tok = _load_teacher_pretrained(ctx)
            base_desc = str(ctx.cfg.teacher.pretrained_model())
        elif base_kind == "teacher":
            base_model, tok = load_classifier(str(ctx.model_dir(TEACHER)), ctx.split.train.label_names, ctx.cfg.seed)
            base_desc = "models/teacher"
        else:
            raise ToxdistillError(
                f"stage {st.name!r}: lora base {base_kind!r} is unknown", "use 'pretrained' or 'teacher'"
            )
        n = base_model.config.num_hidden_layers
        layers = list(range(1, n + 1))
        if st.layers is not None:
            layers = resolve_layers(st.layers, n)
            base_model = build_student(base_model, layers)
            base_desc += f" layers {layers}"
    # Every adapter keeps its exact base beside it (``<model>/base``), so that the folder loads with plain
    # peft from any directory and after it is moved: a path to the base would break on either.
    if dist().is_main:
        _save_hf(base_model, tok, ctx.work_dir(st.name) / "base")
    base_desc = f"base/ ({base_desc})"
    peft_model = add_lora(base_model, lcfg)
    if distill is not None:
        from .students import attach_hidden_projection

        teacher_hidden = int(load_model_config(str(ctx.model_dir(TEACHER))).hidden_size)
        # After peft froze the model, so the new projection trains. Adapter checkpoints do not hold it: a
        # resumed distill-lora stage on a student of another hidden size restarts its projection.
        attach_hidden_projection(peft_model.get_base_model(), teacher_hidden)
    total, trainable = count_params(peft_model)
    _say(f"{st.name}: LoRA r={lcfg.r} on {base_desc}: {trainable:,} trainable of {total:,} ({trainable / total:.2%})")
    _train_and_save(
        ctx,
        st.name,
        "lora",
        peft_model,
        tok,
        ctx.cfg.stage_train(st),
        layers=layers,
        distill=distill,
        lora_save=True,
        stage_cfg=st.model_dump(mode="json")
        | {"train": ctx.cfg.stage_train(st).model_dump(), "lora": lcfg.model_dump()},
        extra_meta={"adapter_base": base_desc, "lora_share": trainable / total},
    )


def stage_finetune(ctx: RunContext, st: StageConfig) -> None:
    stage_teacher(ctx, st.name, ctx.cfg.stage_train(st))


def _check_stage_fingerprints(cfg: Config, run_dir: Path, forced: set[str]) -> None:
    """A finished stage trained with other settings is refused rather than silently reported as current."""
    stages = [(run_dir / "models", cfg, name) for name in (BASELINE, TEACHER, *(s.name for s in cfg.stages))]
    for k in range(1, cfg.seeds):  # the seed repeats of the distill stages too
        scfg = cfg.model_copy(update={"seed": cfg.seed + k})
        stages += [(seed_dir(run_dir, scfg.seed), scfg, s.name) for s in cfg.stages if s.kind == "distill"]
    for models, c, name in stages:
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


def _main_only(fn) -> None:
    if dist().is_main:
        fn()
    dist().barrier()


def _preflight(cfg: Config) -> None:
    """Fail before any training on what can be checked from configs alone: the teacher exists (and, when
    given, is a classifier of these classes), layer sets fit it, named students have the right label count,
    and every LoRA stage's family has target modules."""
    from .families import is_classifier, lora_targets
    from .students import resolve_layers
    from .teacher import check_given_classifier, load_model_config, resolve_model_path

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


# ---------------------------------------------------------------- report
def collect_results(run_dir: Path) -> list[dict]:
    rows = []
    models = run_dir / "models"
    for d in sorted(models.iterdir()) if models.is_dir() else []:
        if d.name.startswith("."):  # a temporary folder from an interrupted write, never a finished model
            continue
        meta = read_meta(d)
        if not meta.get("metrics"):
            continue
        m = meta["metrics"]
        rows.append(
            {
                "name": meta["name"],
                "kind": meta["kind"],
                "layers": meta.get("layers"),
                "accuracy": m["accuracy"],
                "f1_weighted": m["f1_weighted"],
                "f1_macro": m["f1_macro"],
                "f1_per_class": m["f1_per_class"],
                "precision_per_class": m["precision_per_class"],
                "recall_per_class": m["recall_per_class"],
                "confusion_matrix": m["confusion_matrix"],
                "train_loss": meta["train"]["train_loss"],
                "val_loss": m["val_loss"],
                "test_loss": m["test_loss"],
                "params": meta["params"],
                "trainable_params": meta["trainable_params"],
                "size_mb": meta["size_mb"],
                "throughput_sps": m["throughput_sps"],
                "train_runtime_s": meta["train"].get("train_runtime_s"),
                "tuned": m.get("tuned"),
                "val": m.get("val"),
                "ece": m.get("ece"),
                "ece_calibrated": m.get("ece_calibrated"),
                "temperature": meta.get("calibration", {}).get("temperature"),
                "calibration_bias": meta.get("calibration", {}).get("bias"),
            }
        )
    return rows


def seed_summary(run_dir: Path, cfg: Config) -> dict:
    """Mean ± sample std over seeds for every distill stage that has more than one finished seed.

    Every finished seed folder counts, whatever ``cfg.seeds`` is now, so a later run without ``--seeds``
    keeps the table. A folder trained under other stage settings (its fingerprint differs) does not.
    """
    metrics = {
        "accuracy": lambda m: m["accuracy"],
        "f1_weighted": lambda m: m["f1_weighted"],
        "f1_macro": lambda m: m["f1_macro"],
        "f1_hate": hate_f1,
    }
    out = {}
    for st in cfg.stages:
        if st.kind != "distill" or not st.enabled:
            continue
        dirs = {cfg.seed: run_dir / "models" / st.name}
        for d in sorted((run_dir / "seeds").glob(f"seed*/{st.name}")):
            seed = d.parent.name.removeprefix("seed")
            if seed.isdigit() and int(seed) != cfg.seed:
                dirs[int(seed)] = d
        found = {}
        for seed, d in sorted(dirs.items()):
            if (d / META_FILE).is_file():
                meta = read_meta(d)
                if meta.get("fingerprint") == cfg.model_copy(update={"seed": seed}).stage_fingerprint(st.name):
                    found[seed] = meta["metrics"]
        if len(found) < 2:
            continue
        out[st.name] = {"seeds": list(found)}
        for k, fn in metrics.items():
            values = [fn(m) for m in found.values()]
            out[st.name][k] = {"values": values, "mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}
    return out


def significance(run_dir: Path, results: list[dict], labels: np.ndarray, seed: int, n_boot: int = 1000) -> dict:
    """95% bootstrap intervals for every model and paired-bootstrap p-values for the report's comparisons.

    On argmax predictions, the same ones the headline metrics use; all models share the resamples.
    """
    from .stats import bootstrap_table, compare_models, default_pairs

    preds = {r["name"]: np.load(run_dir / "models" / r["name"] / "test_logits.npy").argmax(-1) for r in results}
    k = len(results[0]["f1_per_class"]) if results else 3
    return {
        "n_boot": n_boot,
        "ci": bootstrap_table(labels, preds, n_boot=n_boot, seed=seed, n_classes=k),
        "comparisons": compare_models(
            labels,
            preds,
            default_pairs(list(preds)),
            metrics=["f1_weighted", "f1_macro", "f1_hate"],
            n_boot=n_boot,
            seed=seed,
            n_classes=k,
        ),
    }


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
    with run_lock(run_dir) if d.is_main else contextlib.nullcontext():
        saved_cfg = run_dir / "config.yaml"
        fp_file = run_dir / "config.fingerprint"
        fp = cfg.fingerprint() + (":quick" if quick else "")
        if fp_file.is_file() and fp_file.read_text().strip() != fp and "all" not in forced:
            raise ToxdistillError(
                f"run folder {run_dir} was made with a different data, seed or teacher config",
                "use --name NEW for a new run, or --force all to redo this one",
            )
        if "all" in forced and d.is_main:
            for sub in ("models", "seeds", "work", "cache", "plots"):
                shutil.rmtree(run_dir / sub, ignore_errors=True)
            (run_dir / "split.json").unlink(missing_ok=True)
        _check_stage_fingerprints(cfg, run_dir, forced)
        if d.is_main:
            _remove_partial_writes(run_dir)

        t0 = time.perf_counter()
        path = resolve_data_path(cfg.data, data_path)
        ds = load_dataset(path, cfg.data)
        _preflight(cfg)
        # Written only once the data and the config have passed every check, so a failed start
        # leaves no config behind that would block the corrected run.
        if d.is_main:
            atomic_write_text(saved_cfg, cfg.to_yaml())
            atomic_write_text(fp_file, fp)
        if "split" in forced and d.is_main:
            (run_dir / "split.json").unlink(missing_ok=True)
        if d.is_main:
            make_or_load_split(ds, run_dir / "split.json", cfg.data, cfg.seed, quick)
        d.barrier()
        split = make_or_load_split(ds, run_dir / "split.json", cfg.data, cfg.seed, quick)
        ctx = RunContext(cfg, run_dir, split, quick, forced)
        timings_file = run_dir / "timings.json"
        ctx.timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
        ctx.timings["split"] = time.perf_counter() - t0
        _say(f"data: {path} → train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")

        # (label, context, stage name, fn): the seed repeats of the distill stages are plan steps like any
        # other, in their own SeedContext, so they resume, skip and --force the same way.
        plan: list[tuple[str, RunContext, str, callable]] = []
        if cfg.baseline:
            plan.append((BASELINE, ctx, BASELINE, lambda: _main_only(lambda: stage_baseline(ctx))))
        plan.append((TEACHER, ctx, TEACHER, lambda: stage_teacher(ctx)))
        fns = {"distill": stage_distill, "lora": stage_lora, "distill-lora": stage_lora, "finetune": stage_finetune}
        enabled = [st for st in cfg.stages if st.enabled]
        for st in enabled:
            plan.append((st.name, ctx, st.name, (lambda f, c, s: lambda: f(c, s))(fns[st.kind], ctx, st)))
        for k_seed in range(1, cfg.seeds):
            sctx = SeedContext(cfg.model_copy(update={"seed": cfg.seed + k_seed}), run_dir, split, quick, forced)
            for st in (st for st in enabled if st.kind == "distill"):
                label = f"{st.name}@seed{sctx.cfg.seed}"
                plan.append((label, sctx, st.name, (lambda c, s: lambda: stage_distill(c, s))(sctx, st)))
        for k, (label, sctx, stage, fn) in enumerate(plan, 1):
            if sctx.done(stage):
                _say(f"[{k}/{len(plan)}] {label}: done already (use --force {stage} to redo)")
                continue
            _say(f"[{k}/{len(plan)}] {label}: training")
            if stage in forced and d.is_main:
                shutil.rmtree(sctx.work_dir(stage), ignore_errors=True)  # a forced stage starts fresh, no resume
                if sctx is ctx:  # its seed repeats describe the model being replaced; --seeds N retrains them
                    for old in run_dir.glob(f"seeds/seed*/{stage}"):
                        shutil.rmtree(old, ignore_errors=True)
            d.barrier()
            s0 = time.perf_counter()
            fn()
            ctx.timings[label] = time.perf_counter() - s0
            if not d.is_main:
                continue
            atomic_write_json(timings_file, ctx.timings)
            m = read_meta(sctx.model_dir(stage))["metrics"]
            _say(
                f"[{k}/{len(plan)}] {label}: acc {m['accuracy']:.3f}  F1w {m['f1_weighted']:.3f}  "
                f"F1m {m['f1_macro']:.3f}  hate F1 {hate_f1(m):.3f}  "
                f"({ctx.timings[label]:.0f}s)"
            )
        if not d.is_main:
            return run_dir
        s0 = time.perf_counter()
        from .report import write_report

        _update_older_models(run_dir, split)
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
        _say(f"report: {run_dir / 'report.md'}")
    return run_dir
