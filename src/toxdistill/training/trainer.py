"""Training: one Trainer for fine-tuning and LoRA, and a DistillationTrainer that overrides one method.

Both sit on the Hugging Face Trainer, so checkpoint resume, length-grouped batches, warm-up with
linear decay, best-on-validation and DDP under ``torchrun``/``accelerate launch`` come from there.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from toxdistill.config import DistillConfig, TrainConfig
from toxdistill.data.dataset import Dataset
from toxdistill.data.perturb import perturb_texts
from toxdistill.errors import ToxdistillError
from toxdistill.files import CHAR_PERTURBATIONS
from toxdistill.models.families import LAYER_KEY, TRAINING_ONLY, forward_inputs, last_layer_qkv, unwrap_peft
from toxdistill.training.dropout import use_cheap_dropout
from toxdistill.training.losses import cross_entropy, distillation_loss

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- data plumbing
class EncodedDataset(TorchDataset):
    """Pre-tokenised rows. ``idx`` is the row's position, used to look up cached teacher outputs."""

    def __init__(self, ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, token_types: bool = True):
        enc = tokenizer(ds.texts, truncation=True, max_length=max_length)
        self.tokenizer = tokenizer  # its pad() pads the batches (``collator``)
        self.input_ids: list[list[int]] = enc["input_ids"]
        # Only for a model that takes them (families.forward_inputs); others would swallow them unused.
        self.token_type_ids = enc.get("token_type_ids") if token_types else None
        self.labels = ds.labels
        self.max_length = max_length
        # Perturbed copies of the rows for consistency training (``with_perturbations``); none by default.
        self.variants: list[list[list[int]]] = []
        self.share = 0.0
        self.rng = np.random.default_rng(0)

    def by_length(self) -> EncodedDataset:
        """The same rows, shortest first. For validation: the Trainer evaluates in order, so sorted batches
        carry little padding, and every metric is order-free."""
        order = np.argsort([len(x) for x in self.input_ids], kind="stable")
        out = copy.copy(self)
        out.input_ids = [self.input_ids[i] for i in order]
        out.token_type_ids = None if self.token_type_ids is None else [self.token_type_ids[i] for i in order]
        out.labels = np.asarray(self.labels)[order]
        return out

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts``, as the rows were encoded."""
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    def with_perturbations(self, variants: list[list[list[int]]], share: float, seed: int) -> EncodedDataset:
        """The same rows, each drawn as one of its perturbed copies ``variants[k][i]`` (token ids, ``encode``;
        k at random) with probability ``share``, else clean: consistency training. ``idx`` and the label stay
        the clean row's, so a perturbed row is scored against its clean row's label and cached teacher outputs.
        This copy is for training only; the clean one (teacher cache, validation) is left as it was."""
        out = copy.copy(self)
        out.variants = variants
        out.share = share
        # Draws follow the order the sampler asks for rows in, which the seed fixes.
        out.rng = np.random.default_rng(seed)
        return out

    def with_rows(self, texts: list[str], labels: np.ndarray) -> EncodedDataset:
        """These rows followed by ``texts`` as new rows (``idx`` from ``len(self)`` on): teacher-labelled
        augmentation. The new rows are drawn as they are; only the original ones have perturbed variants."""
        out = copy.copy(self)
        ids = self.encode(texts)
        out.input_ids = [*self.input_ids, *ids]
        if self.token_type_ids is not None:
            out.token_type_ids = [*self.token_type_ids, *([0] * len(x) for x in ids)]
        out.labels = np.concatenate([np.asarray(self.labels), np.asarray(labels)])
        return out

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        ids = self.input_ids[i]
        types = None if self.token_type_ids is None else self.token_type_ids[i]
        if self.variants and i < len(self.variants[0]) and self.rng.random() < self.share:
            ids = self.variants[int(self.rng.integers(len(self.variants)))][i]
            types = None if types is None else [0] * len(ids)  # one segment, as every training text
        item = {"input_ids": ids, "labels": int(self.labels[i]), "idx": i}
        if types is not None:
            item["token_type_ids"] = types
        return item


# The last training set's perturbed copies, as token ids. Every consistency-trained stage of a run perturbs the
# same rows with the same seed, aims and tokenizer: making them took 12.6 s on the 2-core Intel Xeon (8 kinds x
# 19,827 rows), finding them again 1.0 s with the clean rows' encoding (docs/frontier.md). One entry: a process trains on one training set at a time, and seed repeats
# (``run --seeds``) come after every stage of the first seed.
_PERTURBED: dict[str, list[list[list[int]]]] = {}


def perturbed_ids(
    enc: EncodedDataset,
    ds: Dataset,
    kinds: Sequence[str],
    seed: int,
    weights: Sequence[Mapping[str, float]] | None,
) -> list[list[list[int]]]:
    """Token ids (``enc.encode``) of each kind's perturbed copy of every row of ``ds`` (copy 0 of ``seed``,
    aimed by ``weights``, ``data.perturb``): ``[kind][row]``. Computed once per process for the same inputs;
    the lists are shared, and nothing that draws from them changes them."""
    labels = [int(y) for y in ds.labels]
    backend = getattr(enc.tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else repr(sorted(enc.tokenizer.get_vocab().items()))
    h = hashlib.sha256()
    for part in (ds.texts, labels, list(kinds), seed, weights, enc.max_length, vocab):
        h.update(json.dumps(part, sort_keys=True).encode("utf-8", "surrogatepass"))
    key = h.hexdigest()
    if key not in _PERTURBED:
        _PERTURBED.clear()
        _PERTURBED[key] = [enc.encode(perturb_texts(ds.texts, k, seed, 0, labels, weights)) for k in kinds]
    return _PERTURBED[key]


def collator(tokenizer: PreTrainedTokenizerBase, pad_to: int | None = None) -> DataCollatorWithPadding:
    """The tokenizer's own padding: to the longest row of each batch, or to ``pad_to`` (the naive set-up the
    training bench compares against). ``labels`` and ``idx`` pass through as tensors."""
    if pad_to is None:
        return DataCollatorWithPadding(tokenizer, padding="longest")
    return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)


def class_weight_tensor(spec, labels: np.ndarray, n_classes: int) -> torch.Tensor | None:
    """``balanced`` gives w_c = N / (K · n_c), sklearn's rule; ``sqrt-balanced`` gives its square root;
    a list is used as given."""
    if spec is None:
        return None
    if spec in ("balanced", "sqrt-balanced"):
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        counts[counts == 0] = 1.0
        w = len(labels) / (n_classes * counts)
        return torch.tensor(np.sqrt(w) if spec == "sqrt-balanced" else w, dtype=torch.float32)
    if len(spec) != n_classes:
        raise ToxdistillError(f"class_weights has {len(spec)} values for {n_classes} classes", "give one per class")
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
        self.teacher_logits = teacher_logits
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
            **self._token_terms(inputs, outputs, list(student_qkv)),
        )
        return (loss, outputs) if return_outputs else loss


# ---------------------------------------------------------------- teacher cache
def teacher_cache_key(teacher_dir: Path, split_fingerprint: str, max_length: int) -> str:
    """Keyed by the teacher's weights and the split, so either changing invalidates the cache."""
    h = hashlib.sha256()
    for f in sorted(Path(teacher_dir).glob("*.safetensors")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(f"{split_fingerprint}:{max_length}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def compute_teacher_outputs(
    teacher: PreTrainedModel, enc: EncodedDataset, batch_size: int = 128, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and final [CLS] states for every row, teacher frozen in eval mode, length-sorted batches."""
    teacher.eval()
    order = np.argsort([len(x) for x in enc.input_ids], kind="stable")
    collate = collator(enc.tokenizer)
    n = len(enc)
    k = teacher.config.num_labels
    assert k is not None, "a sequence classifier knows its label count"
    logits = torch.empty((n, k), dtype=torch.float32)
    cls = torch.empty((n, teacher.config.hidden_size), dtype=torch.float32)
    for start in tqdm(range(0, n, batch_size), desc="teacher outputs", disable=not progress, unit="batch"):
        rows = [enc[int(i)] for i in order[start : start + batch_size]]
        b = collate(rows)
        idx = b.pop("idx")
        b.pop("labels")
        out = teacher(**b, output_hidden_states=True)
        logits[idx] = out.logits.float()
        cls[idx] = out.hidden_states[-1][:, 0].float()
    return logits, cls


def load_or_build_teacher_cache(
    cache_file: Path, teacher: PreTrainedModel, enc: EncodedDataset, batch_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute once, store as safetensors (no pickle), reuse for every student."""
    if cache_file.is_file():
        t = load_file(str(cache_file))
        if t["logits"].shape[0] == len(enc):
            return t["logits"], t["cls"]
    logits, cls = compute_teacher_outputs(teacher, enc, batch_size)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    save_file({"logits": logits.contiguous(), "cls": cls.contiguous()}, str(tmp))
    tmp.replace(cache_file)
    return logits, cls


# ---------------------------------------------------------------- teacher-labelled augmentation
def augment_texts(
    texts: Sequence[str],
    copies: int,
    kinds: Sequence[str],
    seed: int,
    labels: Sequence[int] | None = None,
    weights: Sequence[Mapping[str, float]] | None = None,
) -> list[str]:
    """``copies`` perturbed copies of every text (``data.perturb``), copy-major: copy c of all texts, then copy
    c + 1. Copy c uses kind ``kinds[c mod len(kinds)]`` and is the generator's copy number c, so two copies of one
    kind differ; ``weights`` aim each row's perturbation at the words weighed towards its class."""
    out: list[str] = []
    for c in range(copies):
        out += perturb_texts(texts, kinds[c % len(kinds)], seed, c, labels, weights)
    return out


@dataclass
class Augmentation:
    """Teacher-labelled copies of the training rows (``distill.augment``): their texts and the teacher's logits
    and final [CLS] states on them, from the augmentation cache. The teacher's outputs are their only label."""

    texts: list[str]
    logits: torch.Tensor
    cls: torch.Tensor


def _with_augmentation(
    enc: EncodedDataset,
    soft: torch.Tensor | None,
    teacher_outputs: tuple[torch.Tensor, torch.Tensor],
    aug: Augmentation,
    n_classes: int,
) -> tuple[EncodedDataset, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The training rows followed by the copies, each copy's CE target the teacher's softmax on it (the soft-target
    path of ``cross_entropy``; the clean rows keep theirs, one-hot or ``soft_labels``), and the cached teacher
    outputs extended by the copies' for the KD and cosine terms."""
    probs = torch.softmax(aug.logits.float(), dim=-1)
    clean = (
        soft if soft is not None else torch.eye(n_classes)[torch.as_tensor(np.asarray(enc.labels), dtype=torch.long)]
    )
    logits, cls = teacher_outputs
    return (
        enc.with_rows(aug.texts, probs.argmax(-1).numpy()),
        torch.cat([clean, probs]),
        (torch.cat([logits, aug.logits]), torch.cat([cls, aug.cls])),
    )


# ---------------------------------------------------------------- the loop
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
        bf16=cfg.bf16,
        report_to="none",
        disable_tqdm=not progress,
        remove_unused_columns=False,  # keep "idx" for the teacher cache lookup
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        # The hidden projections of a student of another size are used in the loss, outside forward(): DDP's
        # unused-parameter search would then see its gradient arrive twice. Every trainable weight is used.
        ddp_find_unused_parameters=False if projected else None,
    )


def train_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_ds: Dataset,
    val_ds: Dataset,
    cfg: TrainConfig,
    work_dir: Path,
    seed: int,
    max_length: int,
    n_layers: int,
    distill: DistillConfig | None = None,
    teacher_outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
    train_enc: EncodedDataset | None = None,
    pad_to: int | None = None,
    progress: bool = True,
    max_steps: int = -1,
    trainer_cls: type[ToxTrainer] | None = None,
    trainer_kwargs: dict | None = None,
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
    perturb_weights: Sequence[Mapping[str, float]] | None = None,
    live_teacher: LiveTeacher | None = None,
    augment: Augmentation | None = None,
) -> dict:
    """Train in place (resuming from ``work_dir`` checkpoints) and return the loss history.

    The best epoch on validation ``cfg.best_metric`` is loaded at the end. ``compute_metrics`` scores each
    epoch's validation logits, and must return a float under the key ``cfg.best_metric`` (the Trainer logs
    it as ``eval_<key>``); only ``best_metric: loss`` needs none, as the Trainer computes the loss itself.
    With ``cfg.perturb > 0`` that share of the training rows is drawn perturbed (``data.perturb``), aimed at the
    words ``perturb_weights`` (per class) weigh most towards each row's class. In distillation, ``live_teacher``
    runs on every training batch for the per-token terms, and ``augment``'s copies join the training rows,
    labelled by the teacher alone (``_with_augmentation``); validation is unchanged by either.
    """
    if max_steps < 0 and cfg.best_metric != "loss" and compute_metrics is None:
        raise ValueError(f"train_model needs compute_metrics to select the best epoch by {cfg.best_metric!r}")
    use_cheap_dropout(model)
    token_types = "token_type_ids" in forward_inputs(model)
    train_enc = train_enc or EncodedDataset(train_ds, tokenizer, max_length, token_types)
    if cfg.perturb > 0:
        kinds = cfg.perturb_kinds or list(CHAR_PERTURBATIONS)
        variants = perturbed_ids(train_enc, train_ds, kinds, seed, perturb_weights)
        train_enc = train_enc.with_perturbations(variants, cfg.perturb, seed)
    val_enc = EncodedDataset(val_ds, tokenizer, max_length, token_types).by_length()
    weights = class_weight_tensor(cfg.class_weights, train_ds.labels, len(train_ds.label_names))
    soft = soft_target_tensor(train_ds, cfg.soft_labels)
    if augment is not None:
        assert distill is not None and teacher_outputs is not None, "augmentation is a distillation lever"
        train_enc, soft, teacher_outputs = _with_augmentation(
            train_enc, soft, teacher_outputs, augment, len(train_ds.label_names)
        )
    args = _training_arguments(cfg, work_dir, seed, max_steps, progress, projected=_has_projection(model))
    kw: dict[str, Any] = dict(
        model=model,
        args=args,
        train_dataset=train_enc,
        eval_dataset=val_enc,
        data_collator=collator(tokenizer, pad_to),
        compute_metrics=compute_metrics,
        class_weights=weights,
        soft_targets=soft,
        train_cfg=cfg,
        n_layers=n_layers,
    )
    kw.update(trainer_kwargs or {})
    if distill is not None:
        assert teacher_outputs is not None, "distillation needs the cached teacher outputs"
        trainer = (trainer_cls or DistillationTrainer)(
            **kw,
            teacher_logits=teacher_outputs[0],
            teacher_cls=teacher_outputs[1],
            distill=distill,
            live_teacher=live_teacher,
        )
    else:
        trainer = (trainer_cls or ToxTrainer)(**kw)
    last = last_complete_checkpoint(Path(work_dir))
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
        "trainer": trainer,
    }
