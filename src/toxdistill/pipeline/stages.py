"""The pipeline's stages: baseline, teacher (trained or given), students, LoRA, each through the one
evaluation path (``_finish_model``). A finished stage is a model folder written atomically.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from toxdistill import __version__
from toxdistill.config import DistillConfig, StageConfig, TrainConfig
from toxdistill.data.dataset import write_frontend_files
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.calibrate import calibrate_model
from toxdistill.evaluation.metrics import ce_loss, evaluate_predictor, trainer_metrics
from toxdistill.evaluation.plots import plot_confusion
from toxdistill.files import (
    BASELINE,
    CHAR_PERTURBATIONS,
    META_FILE,
    MULTI_LABEL_TASK,
    TEACHER,
    TEST_LOGITS,
    VAL_LOGITS,
)
from toxdistill.inference.predict import Predictor
from toxdistill.io import atomic_dir, atomic_write_json
from toxdistill.models.baseline import TfidfLR
from toxdistill.models.cnn import MODEL_TYPE as CNN_TYPE
from toxdistill.models.families import count_params, qkv_names
from toxdistill.models.lora import add_lora, save_lora
from toxdistill.models.students import (
    attach_hidden_projection,
    build_cnn_student,
    build_student,
    detach_hidden_projection,
    hidden_pairs,
    resolve_layers,
)
from toxdistill.models.teacher import load_classifier, load_given_classifier, load_model_config, load_tokenizer
from toxdistill.pipeline.context import RunContext, main_only, say
from toxdistill.pipeline.scores import stage_scores_teacher
from toxdistill.runs import is_baseline_folder, read_meta
from toxdistill.training.ddp import dist
from toxdistill.training.teacher_cache import Augmentation, TeacherCache, scores_cache_key, scores_outputs
from toxdistill.training.trainer import LiveTeacher, TeacherTargets, TrainData, TrainJob, train_model

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- helpers
def _dir_size_mb(folder: Path) -> float:
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix in {".safetensors", ".npz", ".onnx"}]
    return sum(f.stat().st_size for f in files) / 2**20


def _quick_train(cfg: TrainConfig, quick: bool) -> TrainConfig:
    return cfg.model_copy(update={"epochs": 1.0}) if quick else cfg


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
    calibration = calibrate_model(name, out, metrics, val_logits, test_logits, split)
    meta.update(
        {
            "name": name,
            "fingerprint": ctx.cfg.stage_fingerprint(name),
            **_task_record(ctx),
            "label_names": label_names,
            # The class of interest by name, for serve and the other readers; a folder without it means the first.
            "focus_class": label_names[ctx.cfg.data.focus_index()],
            "max_length": ctx.cfg.data.max_length,
            # Standalone copies of the folder (exports, serving) clean raw text the same way.
            "clean": ctx.cfg.data.clean.model_dump(),
            "calibration": calibration,
            **_counterfactual_record(ctx),
            "metrics": metrics,
            "params": params[0],
            "trainable_params": params[1],
            "size_mb": _dir_size_mb(out),
            "toxdistill_version": __version__,
        }
    )
    np.save(out / TEST_LOGITS, test_logits.astype(np.float32))
    np.save(out / VAL_LOGITS, val_logits.astype(np.float32))
    if not ctx.cfg.data.multi_label:  # a K x K matrix; multi-label has a 2 x 2 one per label, in the metrics
        plot_confusion(metrics["confusion_matrix"], label_names, f"{name} (test)", out / "confusion.png")
    write_frontend_files(out, ctx.cfg.data.clean)
    atomic_write_json(out / META_FILE, meta)
    return meta


def _task_record(ctx: RunContext) -> dict:
    """``"task": "multi_label"`` for a multi-label model, which its readers (predict, serve) need to apply a sigmoid
    per label; nothing for single-label ones, so their folders stay as they were."""
    return {"task": MULTI_LABEL_TASK} if ctx.cfg.data.multi_label else {}


def _task_train(ctx: RunContext, cfg: TrainConfig) -> TrainConfig:
    """A multi-label model keeps its best epoch by validation macro PR AUC where ``best_metric`` is left at its
    default (f1_macro, a score of one cut that calibration moves later)."""
    if ctx.cfg.data.multi_label and cfg.best_metric == "f1_macro":
        from toxdistill.evaluation.multilabel import BEST_METRIC

        return cfg.model_copy(update={"best_metric": BEST_METRIC})
    return cfg


def _compute_metrics(ctx: RunContext):
    if ctx.cfg.data.multi_label:
        from toxdistill.evaluation.multilabel import trainer_metrics as multilabel_trainer_metrics

        return multilabel_trainer_metrics(ctx.split.train.label_names)
    return trainer_metrics(ctx.split.train.label_names)


def _counterfactual_record(ctx: RunContext) -> dict:
    """``data.counterfactual``'s rows in this model's training data, where it is on: a model folder read alone
    (served, exported) still says what it was trained on. Off: no key, so folders stay as they were."""
    d = ctx.cfg.data
    if d.counterfactual == 0:
        return {}
    rows = int((ctx.split.train.ids < 0).sum())
    return {"counterfactual": {"share": d.counterfactual, "class": d.counterfactual_class, "rows": rows}}


def _save_hf(model, tokenizer, out: Path) -> None:
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


# ---------------------------------------------------------------- checks before training
_PROBE = "Probe: you're SO wrong!!! héllo @user http 1d10t"


def _same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab() and a(_PROBE)["input_ids"] == b(_PROBE)["input_ids"]


def check_levers(name: str, distill: DistillConfig, teacher: tuple, student: tuple) -> None:
    """The plan's check, before anything trains, that a stage's token-level levers can run: ``w_hidden`` and
    ``w_attn`` compare the models token by token, so the student must tokenize as the teacher does, and
    ``w_attn``'s relation heads must divide both widths of families whose attention modules are known.
    ``teacher`` and ``student`` are (model config, folder) pairs; the student's as it is before any cut."""
    (tconf, tpath), (sconf, spath) = teacher, student
    if distill.w_hidden <= 0 and distill.w_attn <= 0:
        return
    if sconf.model_type == CNN_TYPE:
        raise ToxdistillError(
            f"stage {name!r}: distill.w_hidden and w_attn compare encoder layers, and a cnn student has none",
            "set w_hidden and w_attn to 0 in this stage's distill block",
        )
    if spath != tpath and not _same_tokenizer(load_tokenizer(tpath), load_tokenizer(spath)):
        raise ToxdistillError(
            f"stage {name!r}: distill.w_hidden and w_attn compare token by token, but the student's tokenizer "
            "is not the teacher's",
            "set w_hidden and w_attn to 0 for this student, or pick one with the teacher's tokenizer",
        )
    if distill.w_attn <= 0:
        return
    try:
        qkv_names(tconf.model_type)
        qkv_names(sconf.model_type)
    except ToxdistillError as e:
        raise ToxdistillError(f"stage {name!r}: {e.problem}", e.fix) from None
    heads = distill.attn_heads or int(tconf.num_attention_heads)
    widths = (int(tconf.hidden_size), int(sconf.hidden_size))
    if any(w % heads for w in widths):
        common = math.gcd(*widths)
        fits = max(d for d in range(1, heads + 1) if common % d == 0)
        raise ToxdistillError(
            f"stage {name!r}: {heads} relation heads (distill.attn_heads) do not divide both hidden sizes "
            f"{widths[0]} (teacher) and {widths[1]} (student)",
            f"set distill.attn_heads to a divisor of {common}, e.g. {fits}",
        )


# ---------------------------------------------------------------- stages
def stage_baseline(ctx: RunContext) -> None:
    with atomic_dir(ctx.model_dir(BASELINE)) as out:
        t0 = time.perf_counter()
        m = TfidfLR(ctx.split.train.label_names, ctx.cfg.seed).fit(ctx.split.train)
        train_s = time.perf_counter() - t0
        m.save(out)
        logits, _ = m.logits(ctx.split.train.texts)
        n_params = int(m.clf.coef_.size + m.clf.intercept_.size)
        meta = {
            "kind": "baseline",  # the model's role (see _train_and_save)
            "layers": None,
            "train": {"train_loss": ce_loss(logits, ctx.split.train.labels), "train_runtime_s": train_s},
        }
        _finish_model(ctx, BASELINE, out, meta, m, (n_params, n_params))


def _perturb_weights(ctx: RunContext) -> list[dict[str, float]] | None:
    """Consistency training aims at the words the run's TF-IDF floor weighs towards each class; without a
    baseline, ``data.perturb`` picks words of 4+ letters."""
    folder = ctx.model_dir(BASELINE)
    return TfidfLR.load(folder).class_word_weights() if is_baseline_folder(folder) else None


def _load_teacher_pretrained(ctx: RunContext):
    spec = ctx.cfg.teacher.pretrained_model()
    assert spec is not None, "Config validation requires teacher.pretrained where a stage needs it"
    return load_classifier(spec, ctx.split.train.label_names, ctx.cfg.seed, multi_label=ctx.cfg.data.multi_label)


def _train_job(ctx: RunContext, name: str, model, tokenizer, train_cfg: TrainConfig, distill, live_teacher) -> TrainJob:
    """Stage ``name``'s training job. A distillation stage reads the teacher cache, and the augmentation cache where
    ``distill.augment`` is on; ``live_teacher`` runs for its per-token terms."""
    aims = train_cfg.perturb > 0 or (distill is not None and distill.augment > 0)
    weights = _perturb_weights(ctx) if aims else None
    teacher = None
    if distill is not None:
        outputs = _teacher_outputs(ctx)
        augment = _augmentation(ctx, train_cfg, distill.augment, weights) if distill.augment > 0 else None
        transfer = None
        if ctx.transfer is not None:
            labels = ctx.split.train.label_names
            transfer = _teacher_cache(ctx).transfer(ctx.transfer.texts, ctx.transfer.key, labels, announce=say)
        teacher = TeacherTargets(distill, outputs, live=live_teacher, augment=augment, transfer=transfer)
    return TrainJob(
        model=model,
        tokenizer=tokenizer,
        data=TrainData(ctx.split.train, ctx.split.val, ctx.cfg.data.max_length, perturb_weights=weights),
        cfg=_task_train(ctx, _quick_train(train_cfg, ctx.quick)),
        work_dir=ctx.work_dir(name),
        seed=ctx.cfg.seed,
        n_layers=model.config.num_hidden_layers,
        teacher=teacher,
        # Built here: training sits below evaluation, so the pipeline hands it the report's metrics.
        compute_metrics=_compute_metrics(ctx),
    )


def _train_and_save(
    ctx: RunContext,
    name: str,
    role: str,
    model,
    tokenizer,
    train_cfg: TrainConfig,
    *,
    layers: list[int] | None,
    stage_cfg: dict,
    distill=None,
    live_teacher: LiveTeacher | None = None,
    lora_save=False,
    extra_meta: dict | None = None,
) -> None:
    """Train ``model`` as stage ``name`` (``_train_job``) and save it with its metadata; ``role`` is the model's
    role in toxdistill.json (teacher, finetune, student, lora)."""
    params = count_params(model)
    hist = train_model(_train_job(ctx, name, model, tokenizer, train_cfg, distill, live_teacher))
    trainer = hist.pop("trainer")
    if not dist().is_main_process:  # rank 0 alone saves and evaluates; the others wait for the finished folder
        dist().wait_for_everyone()
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
            # The model's role; the key stays "kind" so that folders of every toxdistill version read alike.
            "kind": role,
            "layers": layers,
            "train": hist,
            "stage": stage_cfg,
            "throughput_note": "merged LoRA weights" if lora_save else None,
            **_transfer_record(ctx, distill),
            **(extra_meta or {}),
        }
        del trainer, trained, model
        predictor = Predictor.load(out, threads=ctx.cfg.threads)
        _finish_model(ctx, name, out, meta, predictor, params)
    shutil.rmtree(ctx.work_dir(name), ignore_errors=True)
    dist().wait_for_everyone()


def _transfer_record(ctx: RunContext, distill) -> dict:
    """The transfer set a distilled model learnt from, where there was one: a folder read alone still says so."""
    if distill is None or ctx.transfer is None:
        return {}
    t = ctx.transfer
    files = ctx.cfg.data.unlabelled
    return {"transfer": {"files": files, "rows": len(t.texts), "key": t.key, "left_out_as_evaluation_text": t.overlap}}


def _teacher_cache(ctx: RunContext, teacher_dir: Path | None = None) -> TeacherCache:
    """The run's teacher cache, keyed by the teacher in ``teacher_dir`` (by default the run's teacher folder)."""
    return TeacherCache(
        folder=ctx.run_dir / "cache",
        teacher_dir=teacher_dir or ctx.model_dir(TEACHER),
        split_fingerprint=ctx.split.fingerprint(),
        max_length=ctx.cfg.data.max_length,
        load_teacher=lambda: load_classifier(str(ctx.model_dir(TEACHER)), ctx.split.train.label_names, ctx.cfg.seed),
    )


def _teacher_outputs(ctx: RunContext):
    """The teacher's outputs on the training rows: the teacher model's, or a scores teacher's file (NaN where it
    has no score for a row), each cached once per run."""
    scores = ctx.scores
    if scores is None:
        return _teacher_cache(ctx).outputs(ctx.split.train)
    key = scores_cache_key(scores.sha256, ctx.split.fingerprint(), ctx.cfg.teacher.scores_text_col)
    return scores_outputs(ctx.run_dir / "cache", key, lambda: torch.from_numpy(scores.logits_for(ctx.split.train)))


def _student_source(ctx: RunContext):
    """The model students are cut from: the teacher, or with a scores teacher the pretrained model, new head."""
    spec = str(ctx.model_dir(TEACHER)) if ctx.scores is None else ctx.cfg.teacher.pretrained_model()
    assert spec is not None, "config validation: a scores teacher has teacher.pretrained"
    return load_classifier(spec, ctx.split.train.label_names, ctx.cfg.seed)


def _augmentation(ctx: RunContext, train_cfg: TrainConfig, copies: int, weights) -> Augmentation:
    """``distill.augment``: ``copies`` perturbed copies of every training text (the stage's perturb_kinds, else every
    character-level kind), labelled by the teacher once and cached beside its outputs (``TeacherCache``)."""
    kinds = list(train_cfg.perturb_kinds or CHAR_PERTURBATIONS)
    return _teacher_cache(ctx).augmentation(ctx.split.train, copies, kinds, ctx.cfg.seed, weights, announce=say)


def _live_teacher(ctx: RunContext, distill: DistillConfig, n_student: int, copied: list[int] | None, teacher=None):
    """The frozen teacher for ``distill.w_hidden`` / ``w_attn``, or None where both are off. ``copied``: the teacher
    layers the student was cut from (None: another model, paired by relative depth)."""
    if distill.w_hidden <= 0 and distill.w_attn <= 0:
        return None
    if teacher is None:
        teacher, _ = load_classifier(str(ctx.model_dir(TEACHER)), ctx.split.train.label_names, ctx.cfg.seed)
    n_teacher = int(teacher.config.num_hidden_layers)
    heads = distill.attn_heads or int(teacher.config.num_attention_heads)
    return LiveTeacher(teacher, hidden_pairs(n_student, n_teacher, copied), heads)


def stage_given_teacher(ctx: RunContext) -> None:
    """``teacher.train: null``: the user's fine-tuned classifier, relabelled to the data's classes, saved
    as the run's teacher and evaluated like a trained one. Its train loss comes from the teacher cache,
    which the students need anyway."""
    tcfg = ctx.cfg.teacher
    labels = ctx.split.train.label_names
    model, tok = load_given_classifier(tcfg.model, labels, tcfg.label_map)
    with atomic_dir(ctx.model_dir(TEACHER)) as out:
        _save_hf(model, tok, out)
        # The cache key is the files' names, sizes and times, which the folder's rename keeps.
        logits, _ = _teacher_cache(ctx, out).build(ctx.split.train, model, tok)
        n = model.config.num_hidden_layers
        meta = {
            "kind": "teacher",  # the model's role (see _train_and_save)
            "layers": list(range(1, n + 1)),
            "train": {"train_loss": _train_loss(logits.numpy(), ctx.split.train.labels), "train_runtime_s": 0.0},
            "stage": {"model": tcfg.model, "train": None, "label_map": tcfg.label_map},
            "given": True,
        }
        params = count_params(model)
        del model
        _finish_model(ctx, TEACHER, out, meta, Predictor.load(out, threads=ctx.cfg.threads), (params[0], 0))


def _train_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    if labels.ndim == 2:
        from toxdistill.evaluation.multilabel import bce

        return bce(logits, labels)
    return ce_loss(logits, labels)


def stage_teacher(ctx: RunContext, name: str = TEACHER, train_cfg: TrainConfig | None = None) -> None:
    tc = train_cfg or ctx.cfg.teacher.train
    if ctx.scores is not None and name == TEACHER:
        main_only(lambda: stage_scores_teacher(ctx))
        return
    if tc is None:
        main_only(lambda: stage_given_teacher(ctx))
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


def _train_stage(
    ctx: RunContext, st: StageConfig, role: str, model, tok, layers, distill, live, recorded: dict, **kw
) -> None:
    """``_train_and_save`` for a configured stage: its name and train settings, and its config recorded with
    ``recorded`` (the stage's distillation or LoRA settings) beside the train settings it used."""
    train = ctx.cfg.stage_train(st)
    stage_cfg = st.model_dump(mode="json") | {"train": train.model_dump(), **recorded}
    _train_and_save(
        ctx,
        st.name,
        role,
        model,
        tok,
        train,
        layers=layers,
        distill=distill,
        live_teacher=live,
        stage_cfg=stage_cfg,
        **kw,
    )


def stage_distill(ctx: RunContext, st: StageConfig) -> None:
    """A student cut from the teacher (``layers``), another pretrained model (``student``), or that model cut to
    fewer of its own layers (both: the two-step student), trained by distillation."""
    labels = ctx.split.train.label_names
    teacher, tok = _student_source(ctx)
    distill = ctx.cfg.stage_distill(st)
    teacher_hidden = int(teacher.config.hidden_size)
    extra: dict[str, object] = {}
    copied: list[int] | None = None  # the teacher layers the student is made of
    student: PreTrainedModel
    if st.arch == "cnn":
        student = build_cnn_student(teacher)
        layers = None  # none of the teacher's layers: the report shows "—"
        extra = {"arch": "cnn"}
    elif st.student is not None:
        # Another model, with its own tokenizer: the cached teacher outputs are keyed by training row.
        student, tok = load_classifier(st.student, labels, ctx.cfg.seed, multi_label=ctx.cfg.data.multi_label)
        layers = list(range(1, student.config.num_hidden_layers + 1))
        if st.layers is not None:  # its own layers, which the plan checked against its depth
            layers = resolve_layers(st.layers, len(layers), f"student {st.student}")
            student = build_student(student, layers)
        # Only where the cosine term trains it: an unused projection would stall DDP's gradient sync.
        projected = distill.w_cos > 0 and attach_hidden_projection(student, teacher_hidden)
        extra = {"student_model": st.student, "hidden_projection": projected}
    else:
        assert st.layers is not None, "config validation: a distill stage has layers or a student"
        layers = resolve_layers(st.layers, teacher.config.num_hidden_layers)
        student = build_student(teacher, layers)
        copied = layers
        if ctx.scores is not None:  # no teacher weights: the layers are the pretrained model's
            extra = {"cut_from": ctx.cfg.teacher.pretrained}
    if distill.w_hidden > 0:
        attach_hidden_projection(student, teacher_hidden, "kd_hidden_projection")
    live = _live_teacher(ctx, distill, int(student.config.num_hidden_layers), copied, teacher)
    del teacher
    recorded = {"distill": distill.model_dump()}
    _train_stage(ctx, st, "student", student, tok, layers, distill, live, recorded, extra_meta=extra)


def _lora_base(ctx: RunContext, st: StageConfig) -> tuple:
    """The model a LoRA stage puts its adapters on, its tokenizer, the teacher layers it has (``layers`` in
    toxdistill.json) and its description: the base stage's student for ``distill-lora``, else the pretrained model
    or the teacher, cut to ``st.layers`` where given."""
    if st.kind == "distill-lora":
        assert st.base is not None, "config validation: distill-lora names its base"
        base_model, tok = load_classifier(str(ctx.model_dir(st.base)), ctx.split.train.label_names, ctx.cfg.seed)
        return base_model, tok, read_meta(ctx.model_dir(st.base)).get("layers"), f"models/{st.base}"
    base_name = st.base or "pretrained"
    if base_name == "pretrained":
        base_model, tok = _load_teacher_pretrained(ctx)
        base_desc = str(ctx.cfg.teacher.pretrained_model())
    elif base_name == "teacher":
        base_model, tok = load_classifier(str(ctx.model_dir(TEACHER)), ctx.split.train.label_names, ctx.cfg.seed)
        base_desc = "models/teacher"
    else:
        raise ToxdistillError(f"stage {st.name!r}: lora base {base_name!r} is unknown", "use 'pretrained' or 'teacher'")
    n = base_model.config.num_hidden_layers
    layers = list(range(1, n + 1))
    if st.layers is not None:
        layers = resolve_layers(st.layers, n)
        base_model = build_student(base_model, layers)
        base_desc += f" layers {layers}"
    return base_model, tok, layers, base_desc


def stage_lora(ctx: RunContext, st: StageConfig) -> None:
    """A ``lora`` stage (adapters on the pretrained model or the teacher) or a ``distill-lora`` one (adapters
    on a student, trained by distillation). ``st.kind`` is the stage's training method, the config key."""
    lcfg = ctx.cfg.stage_lora(st)
    distill = ctx.cfg.stage_distill(st) if st.kind == "distill-lora" else None
    live = None
    base_model, tok, layers, base_desc = _lora_base(ctx, st)
    # Every adapter keeps its exact base beside it (``<model>/base``), so that the folder loads with plain
    # peft from any directory and after it is moved: a path to the base would break on either.
    if dist().is_main_process:
        _save_hf(base_model, tok, ctx.work_dir(st.name) / "base")
    base_desc = f"base/ ({base_desc})"
    peft_model = add_lora(base_model, lcfg)
    if distill is not None:
        # After peft froze the model, so the new projection trains. Adapter checkpoints do not hold it: a
        # resumed distill-lora stage on a student of another hidden size restarts its projection.
        if distill.w_cos > 0 or distill.w_hidden > 0:  # never with a scores teacher (config validation): no states
            teacher_hidden = int(load_model_config(str(ctx.model_dir(TEACHER))).hidden_size)
            if distill.w_cos > 0:
                attach_hidden_projection(peft_model.get_base_model(), teacher_hidden)
            if distill.w_hidden > 0:
                attach_hidden_projection(peft_model.get_base_model(), teacher_hidden, "kd_hidden_projection")
        base_meta = read_meta(ctx.model_dir(st.base or ""))
        copied = None if base_meta.get("student_model") else layers
        live = _live_teacher(ctx, distill, int(base_model.config.num_hidden_layers), copied)
    total, trainable = count_params(peft_model)
    say(f"{st.name}: LoRA r={lcfg.r} on {base_desc}: {trainable:,} trainable of {total:,} ({trainable / total:.2%})")
    meta = {"adapter_base": base_desc, "lora_share": trainable / total}
    recorded = {"lora": lcfg.model_dump()}
    _train_stage(ctx, st, "lora", peft_model, tok, layers, distill, live, recorded, lora_save=True, extra_meta=meta)


def stage_finetune(ctx: RunContext, st: StageConfig) -> None:
    stage_teacher(ctx, st.name, ctx.cfg.stage_train(st))
