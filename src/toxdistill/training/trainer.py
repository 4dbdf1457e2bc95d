"""Training: one Trainer for fine-tuning and LoRA, a DistillationTrainer that overrides one method, and
``train_model``, which runs one ``TrainJob`` through either.

Both sit on the Hugging Face Trainer, so checkpoint resume, length-grouped batches, warm-up with
linear decay, best-on-validation and DDP under ``torchrun``/``accelerate launch`` come from there.
The teacher's outputs come from the teacher cache (``training.teacher_cache``), the losses from
``training.losses``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from toxdistill.config import DistillConfig, TrainConfig
from toxdistill.cpu import native_bf16
from toxdistill.data.dataset import Dataset
from toxdistill.errors import ToxdistillError
from toxdistill.files import CHAR_PERTURBATIONS
from toxdistill.models.families import LAYER_KEY, TRAINING_ONLY, forward_inputs, last_layer_qkv, unwrap_peft
from toxdistill.models.teacher import has_multi_label_head
from toxdistill.training.dropout import use_cheap_dropout
from toxdistill.training.encoded import EncodedDataset, collator
from toxdistill.training.losses import bce_loss, cross_entropy, distillation_loss
from toxdistill.training.teacher_cache import Augmentation, TeacherOutputs, perturbed_ids

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- targets
def class_weight_tensor(spec, labels: np.ndarray, n_classes: int) -> torch.Tensor | None:
    """``balanced`` gives w_c = N / (K · n_c), sklearn's rule; ``sqrt-balanced`` gives its square root;
    a list is used as given. Multi-label ``labels`` ((n, L) 0/1) give each label's ``pos_weight`` instead
    (``pos_weight_tensor``)."""
    if spec is None:
        return None
    if np.asarray(labels).ndim == 2:
        return pos_weight_tensor(spec, labels)
    if spec in ("balanced", "sqrt-balanced"):
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        counts[counts == 0] = 1.0
        w = len(labels) / (n_classes * counts)
        return torch.tensor(np.sqrt(w) if spec == "sqrt-balanced" else w, dtype=torch.float32)
    if len(spec) != n_classes:
        raise ToxdistillError(f"class_weights has {len(spec)} values for {n_classes} classes", "give one per class")
    return torch.tensor(spec, dtype=torch.float32)


def pos_weight_tensor(spec, labels: np.ndarray) -> torch.Tensor:
    """Per-label ``pos_weight`` of ``bce_loss`` from the (n, L) 0/1 ``labels``: ``balanced`` gives
    w_l = n_neg,l / n_pos,l, which gives a label's positive and negative rows equal total weight, the binary case
    of sklearn's rule; ``sqrt-balanced`` its square root, the milder push for the same reason as with classes;
    a list is used as given, one weight per label."""
    labels = np.asarray(labels, dtype=np.float64)
    n_labels = labels.shape[1]
    if isinstance(spec, str):
        pos = np.maximum(labels.sum(0), 1.0)
        w = (len(labels) - labels.sum(0)) / pos
        return torch.tensor(np.sqrt(w) if spec == "sqrt-balanced" else w, dtype=torch.float32)
    if len(spec) != n_labels:
        raise ToxdistillError(f"class_weights has {len(spec)} values for {n_labels} labels", "give one per label")
    return torch.tensor(spec, dtype=torch.float32)


def soft_target_tensor(ds: Dataset, weight: float) -> torch.Tensor | None:
    """``(1 − a) · one-hot(y) + a · votes`` per row, or None when ``a = 0`` (train on class ids)."""
    if weight <= 0:
        return None
    if ds.votes is None:
        raise ToxdistillError("soft_labels needs annotator vote counts", "set data.vote_cols in the config")
    onehot = np.eye(len(ds.label_names), dtype=np.float32)[ds.labels]
    return torch.from_numpy((1.0 - weight) * onehot + weight * ds.votes.astype(np.float32))


# ---------------------------------------------------------------- layer-wise lr decay
def param_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, l+1 for encoder layer l (0-based), n_layers+1 for pooler/head/anything above."""
    m = LAYER_KEY.search(name)
    if m:
        return int(m.group(1)) + 1
    if "embeddings" in name:
        return 0
    return n_layers + 1


def layerwise_param_groups(
    model: torch.nn.Module,
    lr: float,
    n_layers: int,
    decay: float | None = None,
    weight_decay: float = 0.01,
    freeze_layers: int = 0,
) -> list[dict]:
    """Optimizer groups with ``lr · decay^(n_layers + 1 − depth)``; the head gets ``lr``.

    ``freeze_layers = k`` stops gradients for the embeddings and encoder layers 1..k. Bias and
    LayerNorm weights get no weight decay (BERT's recipe).
    """
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        depth = param_depth(name, n_layers)
        if freeze_layers and depth <= freeze_layers and "lora_" not in name:
            p.requires_grad_(False)
        if not p.requires_grad:
            continue
        scale = decay ** (n_layers + 1 - depth) if decay else 1.0
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        key = (lr * scale, 0.0 if no_decay else weight_decay)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in sorted(groups.items())]


def fused_adamw_ok(groups: list[dict]) -> bool:
    """Whether torch's fused AdamW can step these parameters: floating point, on the CPU or a CUDA device.

    Why fused: on the CPU torch's default AdamW loops over the tensors one by one, and with a 30,522-word
    embedding matrix updated in full every step that loop was half of a 1-layer student's step on 2 cores
    (148 → 94 ms per step fused, 266 → 198 ms for a 3-layer student; the same losses to 4 digits,
    docs/method.md). Other devices keep the default implementation."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


# ---------------------------------------------------------------- trainers
class ToxTrainer(Trainer):
    """Class-weighted CE on the labels (or on soft targets while training), and layer-wise lr groups."""

    def __init__(
        self,
        *args,
        class_weights: torch.Tensor | None = None,
        train_cfg: TrainConfig,
        n_layers: int,
        soft_targets: torch.Tensor | None = None,
        **kw,
    ):
        self.class_weights = class_weights
        self.soft_targets = soft_targets  # (n_train, K) training targets, looked up by "idx"
        self.train_cfg = train_cfg
        self.n_layers = n_layers
        # The model's head says the task: one sigmoid per label (BCE) or one softmax (CE).
        self.multi_label = has_multi_label_head(kw["model"].config)
        super().__init__(*args, **kw)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            target = self.model if model is None else model
            assert target is not None, "the Trainer always holds its model here"
            groups = layerwise_param_groups(
                target,
                lr=self.args.learning_rate,
                n_layers=self.n_layers,
                decay=self.train_cfg.layer_lr_decay,
                weight_decay=self.args.weight_decay,
                freeze_layers=self.train_cfg.freeze_layers,
            )
            self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, fused=fused_adamw_ok(groups))
        return self.optimizer

    def training_targets(self, model, labels: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """Class ids, or the soft targets of these train rows; validation always scores the class ids."""
        if self.soft_targets is None or not model.training or idx is None:
            return labels
        return self.soft_targets[idx.cpu()].to(labels.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        idx = inputs.pop("idx", None)
        labels = self.training_targets(model, inputs.pop("labels"), idx)
        outputs = model(**inputs)
        if self.multi_label:
            loss = bce_loss(outputs.logits, labels, self.class_weights)
        else:
            loss = cross_entropy(outputs.logits, labels, self.class_weights)
        return (loss, outputs) if return_outputs else loss


@contextlib.contextmanager
def capture_qkv(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """The outputs of the last layer's query, key and value projections (``families.last_layer_qkv``) on the
    forward passes inside the block, in that order: forward hooks, removed on leaving."""
    got: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: got.append(out)) for m in last_layer_qkv(model)]
    try:
        yield got
    finally:
        for h in handles:
            h.remove()


def _qkv_if(model: torch.nn.Module, wanted: bool) -> contextlib.AbstractContextManager[list[torch.Tensor]]:
    return capture_qkv(model) if wanted else contextlib.nullcontext([])


@dataclass
class LiveTeacher:
    """The frozen teacher, run on each training batch for the per-token terms (``distill.w_hidden``, ``w_attn``):
    cached per-token states would be far larger than the forward pass is slow (docs/method.md). ``pairs`` are the
    (student, teacher) ``hidden_states`` indices of ``students.hidden_pairs``; ``heads`` the relation heads."""

    model: PreTrainedModel
    pairs: list[tuple[int, int]]
    heads: int

    def __post_init__(self) -> None:
        self.model.eval()
        self.model.requires_grad_(False)
        self.inputs = forward_inputs(self.model)

    @torch.no_grad()
    def states(self, batch: Mapping[str, torch.Tensor], qkv: bool) -> tuple[tuple[torch.Tensor, ...], list]:
        """The teacher's hidden states (embeddings first) on the batch the student sees, token for token, and
        with ``qkv`` its last layer's query, key and value outputs."""
        device = batch["input_ids"].device
        if next(self.model.parameters()).device != device:
            self.model.to(device)  # type: ignore[arg-type]  # mypy misreads the decorator transformers wraps to() in
        feed = {k: v for k, v in batch.items() if k in self.inputs}
        with _qkv_if(self.model, qkv) as got:
            out = self.model(**feed, output_hidden_states=True)
        return out.hidden_states, list(got)


class DistillationTrainer(ToxTrainer):
    """Adds soft-target KL and [CLS] cosine terms from cached teacher outputs (train rows only), and the per-token
    hidden-state and attention-relation terms against a ``LiveTeacher`` where they are switched on."""

    def __init__(
        self,
        *args,
        teacher_logits: torch.Tensor,
        teacher_cls: torch.Tensor,
        distill: DistillConfig,
        live_teacher: LiveTeacher | None = None,
        **kw,
    ):
        # A row without teacher targets (a scores teacher's file does not score it) has NaN logits: it learns from
        # its label alone, its KD term masked (``distillation_loss``'s ``kd_rows``). None: every row has them.
        scored = torch.isfinite(teacher_logits).all(-1)
        self.teacher_rows = None if bool(scored.all()) else scored
        self.teacher_logits = teacher_logits if self.teacher_rows is None else torch.nan_to_num(teacher_logits)
        self.teacher_cls = teacher_cls
        self.distill = distill
        self.live_teacher = live_teacher
        if (distill.w_hidden > 0 or distill.w_attn > 0) and live_teacher is None:
            raise ValueError("distill.w_hidden and w_attn need the live teacher")
        self.loss_parts: dict[str, float] = {}
        super().__init__(*args, **kw)

    def _token_terms(self, inputs: dict, outputs, student_qkv: list[torch.Tensor]) -> dict:
        """The keyword arguments of ``distillation_loss``'s per-token terms: the paired hidden states (the
        student's through ``kd_hidden_projection`` where the widths differ) and both models' Q, K, V."""
        d, live = self.distill, self.live_teacher
        if live is None:
            return {}
        t_hidden, t_qkv = live.states(inputs, qkv=d.w_attn > 0)
        terms: dict[str, Any] = {"mask": inputs["attention_mask"], "attn_heads": live.heads}
        if d.w_hidden > 0:
            proj = getattr(self.model, "kd_hidden_projection", None)
            s_states = [outputs.hidden_states[i] for i, _ in live.pairs]
            if proj is not None:
                s_states = [proj(h) for h in s_states]
            terms.update(w_hidden=d.w_hidden, hidden_states=(s_states, [t_hidden[j] for _, j in live.pairs]))
        if d.w_attn > 0:
            terms.update(w_attn=d.w_attn, qkv_states=(student_qkv, t_qkv))
        return terms

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # validation: plain CE, so val loss is comparable across models
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        idx = inputs.pop("idx").cpu()
        labels = inputs.pop("labels")
        d = self.distill
        assert self.model is not None, "the Trainer always holds its model here"
        # Hooks on the unwrapped model's modules: they fire under a DDP wrapper too.
        with _qkv_if(self.model, d.w_attn > 0) as student_qkv:
            outputs = model(**inputs, output_hidden_states=True)
        hidden = outputs.hidden_states[-1][:, 0]  # the first token's final state, in every family
        proj = getattr(self.model, "kd_projection", None)  # a student of another hidden size
        if proj is not None:
            hidden = proj(hidden)
        loss, self.loss_parts = distillation_loss(
            outputs.logits,
            self.teacher_logits[idx].to(outputs.logits.device),
            self.training_targets(model, labels, idx),
            hidden,
            self.teacher_cls[idx].to(outputs.logits.device),
            temperature=d.temperature,
            w_ce=d.w_ce,
            w_kd=d.w_kd,
            w_cos=d.w_cos,
            class_weights=self.class_weights,
            kd_rows=None if self.teacher_rows is None else self.teacher_rows[idx].to(outputs.logits.device),
            multi_label=self.multi_label,
            **self._token_terms(inputs, outputs, list(student_qkv)),
        )
        return (loss, outputs) if return_outputs else loss


# ---------------------------------------------------------------- teacher-labelled augmentation
def _row_targets(enc: EncodedDataset, soft: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """The rows' CE targets as distributions: ``soft`` where given, else their labels one-hot (multi-label: the
    0/1 matrix itself)."""
    if soft is not None:
        return soft
    if np.asarray(enc.labels).ndim == 2:
        return torch.as_tensor(np.asarray(enc.labels), dtype=torch.float32)
    return torch.eye(n_classes)[torch.as_tensor(np.asarray(enc.labels), dtype=torch.long)]


def _with_teacher_rows(
    enc: EncodedDataset,
    soft: torch.Tensor | None,
    teacher_outputs: TeacherOutputs,
    rows: Augmentation,
    targets: torch.Tensor,
    n_classes: int,
) -> tuple[EncodedDataset, torch.Tensor, TeacherOutputs]:
    """The training rows followed by ``rows`` (texts the teacher scored), with ``targets`` as those rows' CE
    targets (the clean rows keep theirs, one-hot or ``soft_labels``), and the cached teacher outputs extended by
    ``rows``' for the KD and cosine terms."""
    logits, cls = teacher_outputs
    multi = np.asarray(enc.labels).ndim == 2  # a row's label: the teacher's decisions, or its top class
    decided = (rows.logits > 0).float().numpy() if multi else rows.logits.argmax(-1).numpy()
    return (
        enc.with_rows(rows.texts, decided),
        torch.cat([_row_targets(enc, soft, n_classes), targets]),
        (torch.cat([logits, rows.logits]), torch.cat([cls, rows.cls])),
    )


def _with_augmentation(
    enc: EncodedDataset,
    soft: torch.Tensor | None,
    teacher_outputs: TeacherOutputs,
    aug: Augmentation,
    n_classes: int,
) -> tuple[EncodedDataset, torch.Tensor, TeacherOutputs]:
    """The training rows followed by the copies, each copy's CE target the teacher's softmax on it (the soft-target
    path of ``cross_entropy``; multi-label: its sigmoid per label, ``bce_loss``'s soft targets)."""
    multi = np.asarray(enc.labels).ndim == 2
    probs = torch.sigmoid(aug.logits.float()) if multi else torch.softmax(aug.logits.float(), dim=-1)
    return _with_teacher_rows(enc, soft, teacher_outputs, aug, probs, n_classes)


def with_transfer(
    enc: EncodedDataset,
    soft: torch.Tensor | None,
    teacher_outputs: TeacherOutputs,
    transfer: Augmentation,
    n_classes: int,
) -> tuple[EncodedDataset, torch.Tensor, TeacherOutputs]:
    """The training rows followed by the transfer set's, each of those with a CE target of all zeros: in
    ``cross_entropy``'s soft-target path, ``Σ w q (−log p) / Σ w q``, such a row adds nothing above or below the
    line, so the labelled rows keep their full, class-weighted loss and the transfer rows learn from the KD and
    cosine terms alone."""
    dtype = soft.dtype if soft is not None else torch.float32
    zeros = torch.zeros((len(transfer.texts), n_classes), dtype=dtype)
    return _with_teacher_rows(enc, soft, teacher_outputs, transfer, zeros, n_classes)


def _transfer_rows(train: Dataset, transfer: Augmentation) -> Dataset:
    """The transfer set as a Dataset of the training rows' kind (its front-end, its classes), each row's class the
    teacher's: consistency training aims a row's perturbation at the words weighed towards its class."""
    return Dataset(
        ids=np.arange(len(transfer.texts)),
        texts=transfer.texts,
        labels=transfer.logits.argmax(-1).numpy(),
        label_names=train.label_names,
        source_sha256=train.source_sha256,
        clean=train.clean,
    )


# ---------------------------------------------------------------- checkpoints and the Trainer's settings
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_CKPT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def last_complete_checkpoint(work_dir: Path) -> str | None:
    """The newest checkpoint that was written in full.

    The Trainer writes checkpoint folders in place, so a run killed while saving leaves one without
    its trainer state; resuming from it would crash. Such folders are skipped.
    """
    if not work_dir.is_dir():
        return None
    found = []
    for d in work_dir.iterdir():
        m = _CKPT.match(d.name)
        if m and d.is_dir() and all((d / f).is_file() for f in _CKPT_FILES) and _readable_json(d / _CKPT_FILES[0]):
            found.append((int(m.group(1)), d))
    return str(max(found)[1]) if found else None


def _has_projection(model) -> bool:
    return any(hasattr(unwrap_peft(model), name) for name in TRAINING_ONLY)


def _training_arguments(
    cfg: TrainConfig, work_dir: Path, seed: int, max_steps: int = -1, progress: bool = True, projected: bool = False
) -> TrainingArguments:
    """The Trainer's settings from ``cfg``. ``max_steps >= 0`` (the training bench) trains that many steps
    with no validation and no checkpoints; otherwise every epoch is validated and saved, and the best loaded."""
    selects_best = max_steps < 0
    return TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=cfg.epochs,
        max_steps=max_steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        max_grad_norm=cfg.max_grad_norm,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy="epoch" if selects_best else "no",
        save_strategy="epoch" if selects_best else "no",
        logging_strategy="epoch",
        load_best_model_at_end=selects_best,
        metric_for_best_model=cfg.best_metric,
        greater_is_better=cfg.best_metric != "loss",
        save_total_limit=2,
        save_only_model=False,  # optimizer state is kept so a killed run resumes exactly
        seed=seed,
        data_seed=seed,
        bf16=uses_bf16(cfg),
        report_to="none",
        disable_tqdm=not progress,
        remove_unused_columns=False,  # keep "idx" for the teacher cache lookup
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        # The hidden projections of a student of another size are used in the loss, outside forward(): DDP's
        # unused-parameter search would then see its gradient arrive twice. Every trainable weight is used.
        ddp_find_unused_parameters=False if projected else None,
    )


# ---------------------------------------------------------------- the job
@dataclass
class TrainData:
    """The rows a model trains and is validated on."""

    train: Dataset
    """The training rows: their labels (or, with ``soft_labels``, their votes) are the CE targets."""
    val: Dataset
    """The validation rows: every epoch is scored on them, and the best one kept."""
    max_length: int
    """Tokens per row (``data.max_length``); longer rows are cut."""
    encoded: EncodedDataset | None = None
    """``train`` already tokenized with the job's tokenizer and ``max_length`` (tests and benches reuse one set);
    None, the pipeline's case: tokenized here, with token types where the model takes them."""
    perturb_weights: Sequence[Mapping[str, float]] | None = None
    """Per class, the words consistency training (``train.perturb``) aims at, from the run's TF-IDF baseline;
    None: ``data.perturb`` picks words of 4+ letters, the choice when there is no baseline to read them from."""


@dataclass
class TeacherTargets:
    """What a student learns from besides the labels: the distillation job's part."""

    distill: DistillConfig
    """The loss's terms, weights and temperature."""
    outputs: TeacherOutputs
    """The teacher's cached logits and final [CLS] states on the training rows, row by row (``teacher_cache``)."""
    live: LiveTeacher | None = None
    """The frozen teacher run on every training batch for the per-token terms; None where ``distill.w_hidden`` and
    ``w_attn`` are off (their default), which spares a teacher forward pass per step."""
    augment: Augmentation | None = None
    """Teacher-labelled copies that join the training rows (``distill.augment``); None where that is off (its
    default), so the student trains on the training rows alone."""
    transfer: Augmentation | None = None
    """The transfer set (``data.unlabelled``): texts without labels and the teacher's outputs on them. They join
    the training rows with the distillation terms only (``with_transfer``); None, the default: no such rows."""


@dataclass
class TrainJob:
    """One call of ``train_model``: a model, its rows and settings, and for distillation the teacher's targets."""

    model: PreTrainedModel
    """Trained in place; the best epoch's weights are loaded into it at the end."""
    tokenizer: PreTrainedTokenizerBase
    """Tokenizes the rows and pads the batches."""
    data: TrainData
    """The training and validation rows."""
    cfg: TrainConfig
    """The stage's training settings."""
    work_dir: Path
    """The checkpoints' folder; a job finds its complete checkpoints there and resumes from the newest."""
    seed: int
    """The Trainer's seed (sampler, dropout, new weights) and the perturbed copies' draws."""
    n_layers: int
    """The model's encoder layers: the depths of layer-wise lr decay and ``freeze_layers``."""
    teacher: TeacherTargets | None = None
    """None: fine-tuning on the labels (the teacher's stage, finetune and LoRA stages); else distillation."""
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None
    """Scores each epoch's validation logits under the key ``cfg.best_metric`` (the Trainer logs it as
    ``eval_<key>``); the pipeline hands in evaluation's, as training sits below evaluation. None will do only where
    the Trainer's own loss selects the best epoch (``best_metric: loss``) or nothing is validated (``max_steps``)."""
    progress: bool = True
    """Progress bars, for a person watching a console; tests and benches turn them off."""
    max_steps: int = -1
    """-1: train ``cfg.epochs``, validating and saving every epoch and loading the best; n >= 0 (the training
    bench): n steps with no validation and no checkpoints."""
    pad_to: int | None = None
    """None: each batch is padded to its longest row, the cheap way; a length: every batch padded to it, the naive
    set-up the training bench compares against."""
    trainer_cls: type[ToxTrainer] | None = None
    """None: ``ToxTrainer``, or ``DistillationTrainer`` with a teacher; the training bench passes a subclass."""
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    """Further arguments of ``trainer_cls``; none but for the training bench's subclass, which takes its teacher."""


# ---------------------------------------------------------------- the loop
def _datasets(job: TrainJob) -> tuple[EncodedDataset, EncodedDataset, torch.Tensor | None, TeacherOutputs | None]:
    """The training rows as the Trainer draws them (perturbed with ``cfg.perturb``, with the teacher-labelled
    copies after them), the validation rows, the soft CE targets if any, and the teacher outputs by training row."""
    d, cfg, teacher = job.data, job.cfg, job.teacher
    token_types = "token_type_ids" in forward_inputs(job.model)
    train_enc = d.encoded or EncodedDataset(d.train, job.tokenizer, d.max_length, token_types)
    soft = soft_target_tensor(d.train, cfg.soft_labels)
    outputs = None if teacher is None else teacher.outputs
    transfer = None if teacher is None else teacher.transfer
    n_classes = len(d.train.label_names)
    variants: list[list[list[int]]] = []
    if cfg.perturb > 0:
        kinds = cfg.perturb_kinds or list(CHAR_PERTURBATIONS)
        variants = perturbed_ids(train_enc, d.train, kinds, job.seed, d.perturb_weights)
    if transfer is not None and outputs is not None:
        train_enc, soft, outputs = with_transfer(train_enc, soft, outputs, transfer, n_classes)
        if variants:  # the transfer rows are perturbed alike, aimed by the teacher's class for each
            unlabelled = _transfer_rows(d.train, transfer)
            extra = perturbed_ids(train_enc, unlabelled, kinds, job.seed, d.perturb_weights)
            variants = [a + b for a, b in zip(variants, extra, strict=True)]
    if variants:
        train_enc = train_enc.with_perturbations(variants, cfg.perturb, job.seed)
    val_enc = EncodedDataset(d.val, job.tokenizer, d.max_length, token_types).by_length()
    if teacher is None or teacher.augment is None:
        return train_enc, val_enc, soft, outputs
    assert outputs is not None, "a teacher comes with its cached outputs"
    train_enc, soft_all, outputs = _with_augmentation(train_enc, soft, outputs, teacher.augment, n_classes)
    return train_enc, val_enc, soft_all, outputs


def _make_trainer(job: TrainJob) -> ToxTrainer:
    """The Trainer of ``job``: a ``DistillationTrainer`` where it has a teacher, else a ``ToxTrainer``."""
    cfg, train = job.cfg, job.data.train
    train_enc, val_enc, soft, teacher_outputs = _datasets(job)
    projected = _has_projection(job.model)
    kw: dict[str, Any] = dict(
        model=job.model,
        args=_training_arguments(cfg, job.work_dir, job.seed, job.max_steps, job.progress, projected=projected),
        train_dataset=train_enc,
        eval_dataset=val_enc,
        data_collator=collator(job.tokenizer, job.pad_to),
        compute_metrics=job.compute_metrics,
        class_weights=class_weight_tensor(cfg.class_weights, train.labels, len(train.label_names)),
        soft_targets=soft,
        train_cfg=cfg,
        n_layers=job.n_layers,
    )
    kw.update(job.trainer_kwargs)
    if job.teacher is None:
        return (job.trainer_cls or ToxTrainer)(**kw)
    assert teacher_outputs is not None, "a teacher comes with its cached outputs"
    return (job.trainer_cls or DistillationTrainer)(
        **kw,
        teacher_logits=teacher_outputs[0],
        teacher_cls=teacher_outputs[1],
        distill=job.teacher.distill,
        live_teacher=job.teacher.live,
    )


def uses_bf16(cfg: TrainConfig) -> bool:
    """Whether training runs under bf16 autocast: ``cfg.bf16``, with "auto" on for a CPU with native bf16 only (a
    GPU takes an explicit true)."""
    if cfg.bf16 != "auto":
        return bool(cfg.bf16)
    return not torch.cuda.is_available() and native_bf16()


def train_model(job: TrainJob) -> dict:
    """Train ``job.model`` in place (resuming from ``job.work_dir`` checkpoints) and return the loss history.

    The best epoch on validation ``cfg.best_metric`` is loaded at the end, as ``job.compute_metrics`` scores it.
    With ``cfg.perturb > 0`` that share of the training rows is drawn perturbed (``data.perturb``), aimed at the
    words ``job.data.perturb_weights`` (per class) weigh most towards each row's class. In distillation, the
    teacher's live model runs on every training batch for the per-token terms, and its augmentation copies join
    the training rows, labelled by the teacher alone (``_with_augmentation``); validation is unchanged by either.
    """
    cfg = job.cfg
    if job.max_steps < 0 and cfg.best_metric != "loss" and job.compute_metrics is None:
        raise ValueError(f"train_model needs compute_metrics to select the best epoch by {cfg.best_metric!r}")
    use_cheap_dropout(job.model)
    trainer = _make_trainer(job)
    last = last_complete_checkpoint(Path(job.work_dir))
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    # From the Trainer's own history, which a resumed run restores from its checkpoint.
    epoch_losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return {
        "train_loss": epoch_losses[-1] if epoch_losses else float(result.training_loss),
        "epoch_losses": epoch_losses,
        "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
        "train_samples_per_second": float(result.metrics.get("train_samples_per_second", 0.0)),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "world_size": int(trainer.args.world_size),  # > 1 under torchrun / accelerate launch (DDP)
        "precision": "bf16" if trainer.args.bf16 else "fp32",  # "auto" resolved on this machine
        "trainer": trainer,
    }
