"""Typed configuration, read from YAML. The string under each field is its description: its meaning and the reason
for its default. docs/config.md is generated from them (scripts/config_docs.py)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from toxdistill.errors import ToxdistillError
from toxdistill.files import (
    BASELINE,
    BERT_LORA_TARGETS,
    HELDOUT_PERTURBATIONS,
    PACKAGED_MINILM,
    PERTURBATIONS,
    TEACHER,
)
from toxdistill.io import sha256_file
from toxdistill.targets import check_frontier_target

DAVIDSON_SHA256 = "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281"


def _safe_name(what: str):
    def check(v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v) or ".." in v:
            raise ValueError(f"{what} {v!r} must be letters, digits, '-', '_' or '.'")
        return v

    return check


# A stage's or an eval set's name becomes a folder or file name in the run folder.
StageName = Annotated[str, AfterValidator(_safe_name("stage name"))]
EvalSetName = Annotated[str, AfterValidator(_safe_name("eval set name"))]


def _known_perturbations(v: list[str] | None) -> list[str] | None:
    known = PERTURBATIONS + HELDOUT_PERTURBATIONS
    unknown = [k for k in v or [] if k not in known]
    if unknown:
        raise ValueError(f"unknown perturbation kind {unknown[0]!r}; valid kinds: {', '.join(known)}")
    if v is not None and not v:
        raise ValueError("the list of perturbation kinds is empty; give at least one, or null for the default")
    return v


def _layer_rule(v: str) -> str:
    if v in ("odd", "even"):
        return v
    m = re.fullmatch(r"(spread|bottom|top):(-?\d+)", v)
    if not m:
        raise ValueError(f"unknown layer set {v!r}; use odd, even, spread:K, bottom:K, top:K or a list like [1, 3, 5]")
    if int(m.group(2)) < 1:
        raise ValueError(f"layer set {v!r}: a student needs at least 1 layer")
    return v


# A list of data/perturb.py's kinds, checked when the config is read: a typo fails before anything trains.
PerturbationKinds = Annotated[list[str] | None, AfterValidator(_known_perturbations)]


class _Strict(BaseModel):
    # Unknown keys are almost always typos; failing loudly beats silently training the wrong thing. The string
    # under each field is its description (pydantic reads it from the source): its meaning and why its default.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class CleanConfig(_Strict):
    """How every text is cleaned before tokenizing. Saved with each model, so prediction and serving clean
    the same way."""

    unescape_html: bool = True
    """Unescape HTML entities: the tweets carry "&amp;" and "&#128514;" as literal text."""
    normalize_mentions: bool = True
    """"@someone" becomes "@user": handles are noise, and a privacy leak in logs."""
    normalize_urls: bool = True
    """"http://t.co/xyz" becomes "http": the short-link hash carries no signal."""
    strip_rt: bool = False
    """Drop a leading "RT" (retweet) marker. Off: "RT" is informative about retweets; keep it unless asked."""
    collapse_whitespace: bool = True
    """Turn every run of whitespace into one space and trim both ends."""
    # The front-end (data/frontend.py): it undoes the spellings people use to slip a word past a filter. Every
    # step is off by default, and a step that is off is left out of the saved settings and so of every
    # fingerprint: the runs and models made before these switches keep theirs.
    nfkc: bool = False
    """Unicode NFKC: full-width, mathematical and circled letters and ligatures become plain ones ("ｈａｔｅ",
    "𝐡𝐚𝐭𝐞" -> "hate"), which a tokenizer's vocabulary does not hold. Off by default: see docs/robustness.md."""
    strip_zero_width: bool = False
    """Remove the characters that render as nothing (zero-width space, joiner and non-joiner, word joiner, byte-order
    mark, soft hyphen, bidirectional marks): inside a word they split it for the tokenizer, not for the reader."""
    fold_confusables: bool = False
    """Letters of another script that look like Latin ones (Cyrillic "а", Greek "ο") become the Latin letter, in
    words that also hold Latin letters ("іdіоt" -> "idiot"); words in one script are left alone. The table is
    Unicode's confusables data (data/confusables.json), copied into each model folder for the model card's code."""
    decode_leet: bool = False
    """Digits and symbols inside words that mix them with letters become the letters they stand for ("sh1t",
    "b!tch", "$tupid", "h8"); numbers ("2017", "$5", "5am", "3rd") are left alone."""
    join_spelled: bool = False
    """Three or more single letters separated by spaces or punctuation become one word ("h a t e", "h.a.t.e",
    "h-a-t-e" -> "hate"); two ("e.g.", "I a") are left alone, and a leading "a" or "I" stays a word ("a b i t c h"
    -> "a bitch")."""
    squeeze_repeats: bool = False
    """A letter written three or more times in a row is written twice ("fuuuuck" -> "fuuck"): English never triples
    a letter, and two keep "good" apart from "god"."""

    FRONTEND: ClassVar[tuple[str, ...]] = (
        "nfkc",
        "strip_zero_width",
        "fold_confusables",
        "decode_leet",
        "join_spelled",
        "squeeze_repeats",
    )

    @model_serializer(mode="wrap")
    def _leave_out_off_frontend(self, handler):
        # A front-end step at its default (off) is not written: config.yaml, the models' records and the
        # fingerprints (which hash data.clean) stay as they were before the front-end existed.
        out = handler(self)
        for name in self.FRONTEND:
            if name in out and out[name] is False:
                del out[name]
        return out


class DataConfig(_Strict):
    """The labelled data: where it is, its columns and classes, how it is cleaned and split."""

    source: Literal["davidson", "file"] = "davidson"
    """"davidson": the Davidson et al. 2017 tweets, found at --data, then $TOXDISTILL_DATA, then data.path, then the
    cache, then a checked download. "file": your own file, from --data, $TOXDISTILL_DATA or data.path, never
    downloaded."""
    path: str | None = None
    """A labelled data file (CSV, TSV or JSONL). --data and $TOXDISTILL_DATA take precedence. null: see source."""
    format: Literal["auto", "csv", "jsonl"] = "auto"
    """The data file's format. "auto" goes by its suffix, or by its first line when the suffix says nothing."""
    text_col: str = "tweet"
    """The column holding each row's text (Davidson's: tweet)."""
    label_col: str = "class"
    """The column holding each row's class (Davidson's: class, with values 0..2)."""
    label_names: list[str] = ["hate speech", "offensive", "neither"]
    """The class names in class-id order (ids 0..K-1); at least two, all distinct. The default is Davidson's coding."""
    focus_class: str | None = None
    """The class the report leads with (its F1, recall and the "hate F1" columns): the rare, costly one. null: the
    first of label_names (Davidson's coding puts hate speech first). Not in any fingerprint: it changes what is
    reported, not what is trained."""
    label_map: dict[str, int] | None = None
    """Maps raw label values (as strings) to class ids, e.g. {toxic: 0, ok: 1}. null: the values already are 0..K-1."""
    sha256: str | None = DAVIDSON_SHA256
    """The checksum the Davidson file must have: a cached copy that differs is downloaded again, a download that
    differs is refused. null: no check."""
    task: Literal["single_label", "multi_label"] = "single_label"
    """"single_label": each row has one class of label_names (label_col), and the models end in one softmax.
    "multi_label": each row has any number of labels (label_cols, one 0/1 column each, Detoxify's format), and the
    models end in one sigmoid per label, trained with binary cross-entropy. Not in any fingerprint at its default,
    so configs written before multi-label tasks keep theirs."""
    label_cols: list[str] | None = None
    """multi_label: the columns holding the labels, one per label in label_names order, each 0/1 (or a vote count,
    with label_min_votes). Needed by multi_label, refused by single_label (which reads label_col)."""
    label_min_votes: int | None = Field(default=None, ge=1)
    """multi_label: label_cols hold annotator vote counts, and a label is on where at least this many annotators
    gave it (Davidson: hate_speech >= 1 is "at least one annotator said hate speech"). A threshold in the config,
    rather than a derived column in the file, keeps the shipped data file as it is. null: label_cols already hold
    0/1."""
    vote_cols: list[str] | None = None
    """Columns holding each row's annotator vote counts, one per class in label_names order (Davidson: hate_speech,
    offensive_language, neither). Needed only by train.soft_labels."""
    clean: CleanConfig = CleanConfig()
    """How every text is cleaned (see data.clean)."""
    val_size: float = 0.1
    """The share of rows held out for validation, stratified by class; the best epoch is chosen on it. 80/10/10 leaves
    ~2,478 test tweets, ~143 of them hate."""
    test_size: float = 0.1
    """The share of rows held out, stratified by class, for the report's test scores."""
    max_length: int = 128
    """Tokens per text; longer texts are truncated. The p99 tweet is ~82 tokens, so 128 truncates almost nothing."""
    quick_rows: int = 2400
    """run --quick keeps this many rows (stratified), so that a smoke run takes minutes, not an hour."""
    counterfactual: float = Field(default=0.0, ge=0.0, le=1.0)
    """Counterfactual augmentation (Dixon et al. 2018): harmless sentences about identity groups ("my muslim
    neighbour helped me fix my bike", "i'm gay and i work as a nurse"), labelled counterfactual_class, added to the
    training rows (never to validation or test), round(share × training rows) of them from
    data/counterfactual.py's templates over 14 groups (the 351-sentence pool repeats past its size). The teacher,
    every student and the TF-IDF floor train on them; the teacher's cached outputs cover them. Why: identity names
    occur mostly in hateful and offensive tweets, so the models learn the name as a sign of hate. 0 (off) by
    default: on quick runs it nearly ended false alarms on identity statements, but cut the functional suite's
    hate recall too (docs/robustness.md)."""
    counterfactual_class: str = "neither"
    """The class the counterfactual rows are labelled with: the data's harmless class (Davidson's "neither")."""
    unlabelled: list[str] = []
    """Files of texts without labels, the transfer set (any format predict reads: CSV, TSV, JSONL, text, Parquet;
    streamed). The teacher scores them once (cached by teacher and texts), and every distill and distill-lora stage
    trains on them with the distillation terms only, beside the labelled rows, which keep their full loss. They are
    cleaned as the labelled rows are; a text equal to a validation or test text is left out, so that no student
    learns the teacher's answer on text it is scored on. [] (the default): the labelled rows alone. The teacher
    and the TF-IDF floor never see them."""
    unlabelled_text_col: str | None = None
    """The text column (CSV, Parquet) or field (JSONL) of the unlabelled files; null: text, tweet or comment, as
    predict picks it."""

    @field_validator("label_names")
    @classmethod
    def _two_or_more(cls, v: list[str]) -> list[str]:
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError("label_names needs at least two distinct names")
        return v

    @model_validator(mode="after")
    def _focus_is_a_class(self) -> DataConfig:
        if self.focus_class is not None and self.focus_class not in self.label_names:
            raise ValueError(f"focus_class {self.focus_class!r} is not one of label_names {self.label_names}")
        return self

    def focus_index(self) -> int:
        """The class id of ``focus_class`` (0 when it is None)."""
        return 0 if self.focus_class is None else self.label_names.index(self.focus_class)

    @model_validator(mode="after")
    def _counterfactual_class_is_a_class(self) -> DataConfig:
        if self.counterfactual > 0 and self.counterfactual_class not in self.label_names:
            raise ValueError(
                f"counterfactual_class {self.counterfactual_class!r} is not one of label_names {self.label_names}"
            )
        return self

    def off_keys(self) -> set[str]:
        """The data keys the teacher's and the baseline's fingerprints leave out: the counterfactual ones while that
        augmentation is off, so that a config without them names the same training as before they existed, and
        the unlabelled files, which neither reads (the stages that do add them, ``stage_fingerprint``)."""
        off = {"unlabelled", "unlabelled_text_col"}
        if self.task == "single_label":  # the multi-label keys at their defaults name no new training
            off |= {"task", "label_cols", "label_min_votes"}
        return off | ({"counterfactual", "counterfactual_class"} if self.counterfactual == 0 else set())

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"

    @model_validator(mode="after")
    def _multi_label_fields(self) -> DataConfig:
        if not self.multi_label:
            if self.label_cols is not None or self.label_min_votes is not None:
                raise ValueError("label_cols and label_min_votes are for task: multi_label")
            return self
        if self.label_cols is None or len(self.label_cols) != len(self.label_names):
            n = 0 if self.label_cols is None else len(self.label_cols)
            raise ValueError(
                f"task multi_label needs label_cols, one per label_names ({n} for {len(self.label_names)})"
            )
        # Not yet for multi-label: each of these assumes one class per row.
        for key, on in (("counterfactual", self.counterfactual > 0), ("unlabelled", bool(self.unlabelled))):
            if on:
                raise ValueError(f"data.{key} is not supported with task multi_label yet")
        return self

    @model_validator(mode="after")
    def _one_vote_col_per_class(self) -> DataConfig:
        if self.vote_cols is not None and len(self.vote_cols) != len(self.label_names):
            raise ValueError(f"vote_cols has {len(self.vote_cols)} columns for {len(self.label_names)} label_names")
        return self


class TrainConfig(_Strict):
    """How one model is trained (AdamW, linear schedule with warm-up; the best epoch on validation is kept)."""

    epochs: float = 2.0
    """Training epochs; a fraction stops part-way through the last one. 2: students start from the teacher's layers
    and its cached soft targets, and converge in 2 (the teacher's own block sets 3). One epoch tied two on clean
    validation text but lost 1.0-1.6 macro F1 points on the spellings consistency training draws from, in each of
    4 seed pairs (bench/results/epochs-ab-avx512-epyc)."""
    lr: float = 1e-4
    """The peak learning rate, reached after the warm-up and decayed linearly to 0. 1e-4 suits the small default
    models; base-size encoders want the BERT paper's 2e-5..5e-5."""
    batch_size: int = 32
    """Training batch size per device: small batches give more updates per epoch, which helps the rare hate class."""
    eval_batch_size: int = 128
    """Batch size of the validation passes, which keep no gradients."""
    warmup_ratio: float = 0.06
    """The share of training steps that warm the learning rate up from 0: RoBERTa's recipe, which protects the random
    head from big early steps."""
    weight_decay: float = 0.01
    """AdamW weight decay (BERT's); bias and LayerNorm weights get none."""
    layer_lr_decay: float | None = None
    """Geometric per-layer decay, in (0, 1]: encoder layer l of L (from 1) trains at lr · decay^(L + 1 − l), the
    embeddings at lr · decay^(L + 1), the head at lr, so the head learns fastest and the copied embeddings barely
    move. null disables it."""
    freeze_layers: int = 0
    """Freeze the embeddings and the lowest k encoder layers (0 = none); LoRA weights stay trainable."""
    class_weights: Literal["balanced", "sqrt-balanced"] | list[float] | None = "sqrt-balanced"
    """Per-class weights of the hard-label cross-entropy: null, "balanced" (N / (K n_c)), "sqrt-balanced" (its square
    root: a milder push towards rare classes that costs less accuracy), or explicit weights in label_names order. The
    default: hate is 5.8% of the tweets, and the square root lifts it without wrecking "offensive" (docs/results.md).
    In a multi_label task they are each label's pos_weight in the BCE: "balanced" n_neg / n_pos, which weighs a
    label's positive and negative rows equally, "sqrt-balanced" its square root, or one weight per label."""
    group_by_length: bool = True
    """Batch training texts of similar length together: tweets average ~30 tokens, and grouping cuts padding about
    3x."""
    grad_accum: int = 1
    """Gradient accumulation steps: one optimizer step per grad_accum batches."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    bf16: bool | Literal["auto"] = "auto"
    """bf16 autocast in training (the losses stay in fp32). "auto": on where training runs on a CPU with native bf16
    (AVX512-BF16 or AMX; ``cpu.native_bf16``), off elsewhere, where torch emulates bf16 slower than fp32. On a 2-core
    AMD EPYC with AVX-512 a training step took 1.4-1.6x less time (bench/experiments/step_profile.py) at the same
    validation scores (docs/method.md). true for GPUs with bf16. Each model's folder records the precision it trained
    in; "auto" hashes as false, so that one config names the same run on every CPU kind."""
    best_metric: str = "f1_macro"
    """The validation metric that picks the epoch kept: f1_macro, f1_weighted, accuracy or "loss" (lower is better).
    Accuracy is dominated by "offensive"; macro F1 tracks the hate class. In a multi_label task also pr_auc_macro
    or roc_auc_macro, and f1_macro (the default) means pr_auc_macro there: F1 at a fixed 0.5 cut moves with the
    calibration that is fitted after training, the ranking of each label's scores does not."""
    soft_labels: float = Field(default=0.0, ge=0.0, le=1.0)
    """Weight a of the annotators' vote shares in the training target: (1 - a) one-hot(label) + a votes. 0 = majority
    labels only. Needs data.vote_cols. Validation loss and every metric stay on majority labels."""
    perturb: float = Field(default=0.0, ge=0.0, le=1.0)
    """Consistency training: the share of training rows drawn perturbed (data/perturb.py, one kind of perturb_kinds at
    random). A perturbed row keeps its clean row's hard label and, in a distill stage, the teacher's distribution on
    the clean row as its soft target, so the student learns that "h a t e" means what "hate" means. 0: off.
    Validation and test texts are never perturbed."""
    perturb_kinds: PerturbationKinds = None
    """The perturbation kinds drawn from when perturb > 0. null: every character-level kind (leet, swap, delete,
    spaces, join, repeat, homoglyph, accent): the evasive spellings; token-level noise barely moves these models."""

    LEVERS: ClassVar[tuple[str, ...]] = ("soft_labels", "perturb", "perturb_kinds")

    def off_levers(self) -> set[str]:
        return _off_levers(self)

    @field_serializer("bf16")
    def _bf16_hashed(self, v: bool | str, info: SerializationInfo) -> bool | str:
        # In a fingerprint "auto" is the value before it existed (false): the precision is the machine's choice, as
        # an engine is, and every run folder made before keeps its fingerprint.
        return False if v == "auto" and (info.context or {}).get(FINGERPRINT) else v

    @field_validator("layer_lr_decay")
    @classmethod
    def _decay_range(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1:
            raise ValueError("layer_lr_decay must be in (0, 1]")
        return v


class DistillConfig(_Strict):
    """The distillation loss, w_ce · CE(s, y) + w_kd · T² · KL(softmax(t/T) ‖ softmax(s/T)) + w_cos · (1 − cos(h_s,
    h_t)), for student logits s, teacher logits t and their [CLS] states h_s, h_t."""

    temperature: float = Field(default=2.0, gt=0)
    """The softmax temperature T of the KL term: 2 softens the teacher enough to expose the hate/offensive confusion."""
    w_ce: float = 1.0
    """Weight of the hard-label cross-entropy: hard labels keep the student honest where the teacher is wrong."""
    w_kd: float = 1.0
    """Weight of the KL divergence to the teacher's softened outputs. The KL is T²-scaled, so it is on the same
    gradient scale as w_ce."""
    w_cos: float = 0.5
    """Weight of the cosine loss between the student's and the teacher's [CLS] states: it aligns the state that the
    pooler and head were trained on. 0 turns it off."""
    w_hidden: float = Field(default=0.0, ge=0)
    """Weight of intermediate-layer distillation (TinyBERT): the mean squared error between each student layer's
    hidden states and those of the teacher layer it was copied from (a cross-family student: the teacher layer at
    the same relative depth), over every real token, through a training-only projection where the widths differ.
    0 (the default) turns it off, and the teacher is then not needed while the student trains."""
    w_attn: float = Field(default=0.0, ge=0)
    """Weight of self-attention relation distillation (MiniLMv2): the KL divergence between the teacher's and the
    student's last-layer Q-Q, K-K and V-V relations (scaled dot products, softmax over keys, split into attn_heads
    relation heads). It compares token-by-token relations, so it works across widths and head counts. 0: off."""
    attn_heads: int | None = Field(default=None, gt=0)
    """Relation heads of the w_attn term: both models' Q, K and V are split into this many heads. null: the
    teacher's attention heads (it must divide both models' hidden sizes)."""
    augment: int = Field(default=0, ge=0)
    """Teacher-labelled augmentation (TinyBERT): K perturbed copies of each training text (data/perturb.py, the
    train block's perturb_kinds or every character-level kind), labelled only by the teacher's soft targets on the
    copy, computed once and cached like the teacher's outputs. 0: off."""

    LEVERS: ClassVar[tuple[str, ...]] = ("w_hidden", "w_attn", "attn_heads", "augment")

    def off_levers(self) -> set[str]:
        return _off_levers(self)


class LoraConfig(_Strict):
    """The LoRA adapters of lora and distill-lora stages."""

    r: int = Field(default=8, gt=0)
    """The adapters' rank: the LoRA paper's rank that matched full fine-tuning on GLUE."""
    alpha: int = 16
    """The scale numerator (updates are scaled by alpha / r): alpha = 2r keeps the effective scale at 2 as r changes."""
    dropout: float = 0.1
    """Dropout on the adapters' input."""
    target_modules: list[str] | None = None
    """The module names that get adapters. null: the family's defaults (models/families.py LORA_TARGETS), every
    attention and feed-forward linear layer; for BERT-like families query, key, value, attention.output.dense,
    intermediate.dense, output.dense."""


StageKind = Literal["finetune", "distill", "lora", "distill-lora"]


class StageConfig(_Strict):
    """One trained model. The run trains them in the order given."""

    name: StageName
    """The model's folder name under models/: letters, digits, '-', '_' or '.', unique in the run, and neither
    'teacher' nor 'tfidf-lr'."""
    kind: StageKind
    """"finetune": full fine-tuning from the teacher's pretrained checkpoint, as the teacher is trained. "distill": a
    student made of teacher layers (layers) or another pretrained model (student), trained with the distillation
    loss. "lora": adapters on the pretrained checkpoint or the teacher (base). "distill-lora": adapters on a distill
    stage's student (base), trained with the distillation loss."""
    enabled: bool = True
    """False: the run skips this stage. Not part of the stage's fingerprint."""
    layers: str | list[int] | None = None
    """distill, and lora on a student: the teacher layers the student keeps: "odd", "even", a rule with a depth K
    ("spread:K", K layers spread evenly up to and including the top layer, the default rule for shallow students;
    "bottom:K", the first K; "top:K", the last K) or 1-based layer numbers. With student: the layers of that model
    that the student keeps (a two-step student: another family, cut)."""
    student: str | None = None
    """distill: a pretrained model (another family, its own tokenizer) as the student instead of teacher layers."""
    arch: Literal["encoder", "cnn"] = "encoder"
    """distill: "encoder", a transformer (teacher layers or student); "cnn", a student without attention: the
    teacher's token embeddings and tokenizer, 1-D convolutions over 1-3 token windows, max and mean pooling
    (models/cnn.py). It does about a sixth of a 384-wide encoder layer's work per token, so it is the frontier's
    fast end on CPUs without VNNI or AMX. Takes neither layers nor student."""
    base: str | None = None
    """lora: "pretrained" (the checkpoint the teacher starts from; the default) or "teacher" (the fine-tuned one).
    distill-lora: the name of a distill stage to start from."""
    train: TrainConfig | None = None
    """This stage's training settings, merged onto the run's train block: the keys given here win, the others come from
    the run's train. null: the run's train as it is."""
    distill: DistillConfig | None = None
    """This stage's distillation loss, replacing the run's distill block whole. null: the run's."""
    lora: LoraConfig | None = None
    """This stage's adapters, replacing the run's lora block whole. null: the run's."""

    # "odd", "even" or a rule with a depth; the depth is held against the teacher's layer count before training.
    @field_validator("layers")
    @classmethod
    def _layer_set(cls, v: str | list[int] | None) -> str | list[int] | None:
        return _layer_rule(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _kind_fields(self) -> StageConfig:
        if self.student is not None and self.kind != "distill":
            raise ValueError(f"stage {self.name!r}: 'student' is for distill stages")
        if self.arch == "cnn":
            if self.kind != "distill" or self.layers is not None or self.student is not None:
                raise ValueError(f"stage {self.name!r}: arch cnn is a distill stage with neither layers nor student")
            return self
        if self.kind == "distill" and self.layers is None and self.student is None:
            raise ValueError(
                f"stage {self.name!r}: a distill stage needs 'layers' (odd, even or a list) or 'student' (a model)"
            )
        if self.kind == "distill-lora" and not self.base:
            raise ValueError(f"stage {self.name!r}: distill-lora needs 'base', the name of a distill stage")
        return self


class TeacherConfig(_Strict):
    """The teacher: the model every student learns from, and whether it is fine-tuned here."""

    model: str = PACKAGED_MINILM
    """A hub id, a local folder, or a packaged offline model (packaged:all-MiniLM-L6-v2, packaged:all-mpnet-base-v2).
    The default runs offline."""
    train: TrainConfig | None = TrainConfig(epochs=3.0)
    """How the teacher is fine-tuned from model: its own block, not merged with the run's train (keys it leaves out
    take the defaults listed under train). The default's 3 epochs were chosen on validation over 2 (+0.9 macro, +1.1
    weighted F1); 2 epochs at lr 1.5e-4 tied 3 on validation but scored lower on test with both seeds (-0.4
    weighted, -0.7 macro; bench/results/epochs-ab-avx512-epyc). null: model is already a fine-tuned classifier of
    these classes; it is used as it is, not trained."""
    label_map: dict[str, str] | None = None
    """The given teacher's label names → data.label_names, where they differ (e.g. {hateful: hate speech})."""
    pretrained: str | None = None
    """The checkpoint a given teacher was fine-tuned from: where LoRA (base: pretrained) and finetune stages start.
    null: model, when the teacher is trained here. With scores: the model every student is made from (layers cuts
    it, arch cnn takes its token embeddings), with a new head."""
    scores: str | None = None
    """A file of texts with the teacher's per-class scores (CSV, TSV or JSONL, read as the data is): a hosted API's,
    an LLM's, a crowd's, or another run's ``toxdistill predict`` output. Columns ``p_<class>`` are probabilities,
    ``logit_<class>`` logits, one per class of data.label_names (spaces as "_"). Its rows are matched to the split's
    by their text after data.clean; the first row of a text wins. No teacher model is loaded or trained: students
    come from pretrained, and training rows without scores learn from their labels alone. null (the default): the
    teacher is model."""
    scores_text_col: str | None = None
    """The text column of the scores file. null: data.text_col where the file has it, else text, tweet or comment
    (as predict picks it), so that a predict output of the data file matches as it is."""

    @model_validator(mode="after")
    def _scores_train_nothing(self) -> TeacherConfig:
        # A teacher that is only scores trains nothing: train is null unless the user gave one, which is an error.
        if self.scores is not None:
            if "train" in self.model_fields_set and self.train is not None:
                raise ValueError("teacher.scores trains no teacher: leave teacher.train out (or null)")
            self.train = None
            if self.pretrained is None:
                raise ValueError(
                    "teacher.scores needs teacher.pretrained, the model the students are made from "
                    "(e.g. packaged:all-MiniLM-L6-v2)"
                )
        return self

    def source_model(self) -> str:
        """The model a run reads for the teacher's architecture: the teacher itself, or with scores the pretrained
        model its students are made from."""
        return self.model if self.scores is None else str(self.pretrained)

    def pretrained_model(self) -> str | None:
        return self.pretrained or (self.model if self.train is not None else None)


class EvalSetConfig(_Strict):
    """A labelled file that every run scores at its end, per group: your own functional tests, or another data set
    whose labels map onto sets of the model's classes (what ``toxdistill evaluate --map --group-col`` does)."""

    name: EvalSetName
    """The set's name in the report and in RUN/eval-<name>.json."""
    path: str
    """The CSV or JSONL file. A relative path is read beside the config file when it is there, else from the working
    directory, so a config scores the same file from whichever folder it is run."""
    format: Literal["auto", "csv", "jsonl"] = "auto"
    """The file's format; "auto" goes by its suffix."""
    text_col: str = "text"
    """The column holding the texts."""
    label_col: str = "label"
    """The column holding the labels."""
    label_map: dict[str, list[str]] | None = None
    """For each label of the file, the model classes that count as a correct answer, e.g. {hateful: [hate speech],
    non-hateful: [offensive, neither]}. Labels that are model class names or ids need none; any other label is an
    error before training starts."""
    group_col: str | None = None
    """Also score per value of this column (a functional test's function, say). null: the whole set only."""


class RobustnessConfig(_Strict):
    """The robustness and fidelity check that every run makes before its report (also ``toxdistill check RUN``)."""

    enabled: bool = True
    """Score every model under each perturbation of the test split before the report. About a minute per model
    on 2 cores; off: the report has no robustness section."""
    kinds: PerturbationKinds = None
    """The perturbation kinds to score (data/perturb.py). null: every kind: the training family (character- and
    token-level) and the held-out family (separators, zero-width, untargeted, multi-edit, mixed), which no default
    stage trains on, so its drops measure transfer rather than memory of the generator."""
    seed: int = 0
    """The perturbation seed: the same seed gives the same perturbed texts on every machine."""
    n_words: int = Field(default=2, ge=1)
    """Words disguised per text: the ones the TF-IDF floor weighs most towards the row's class. One or two
    disguised words is what evasion looks like; more turns a tweet into noise."""


class SelectConfig(_Strict):
    """How the run picks its best model (RUN/best/) from the frontier's candidates, on validation."""

    max_drop_f1_weighted: float | None = Field(default=0.01, ge=0)
    """The most weighted F1 a candidate may lose against the teacher on validation (0.01 = 1 point). null: no limit."""
    max_drop_f1_macro: float | None = Field(default=0.02, ge=0)
    """The most macro F1 a candidate may lose against the teacher on validation: macro F1 carries the rare hate class,
    which a weighted-F1 tolerance alone lets slip. null: no limit."""
    max_drop_pr_auc_macro: float | None = Field(default=0.01, ge=0)
    """Multi-label runs (data.task multi_label): the most macro PR AUC a candidate may lose against the teacher on
    validation, in place of the two F1 limits (a multi-label F1 is that of a threshold fitted after training;
    PR AUC ranks each label's scores, the rare label's included). 0.01 = 1 point, the weighted-F1 limit's size.
    null: no limit."""
    min_samples_per_s: float | None = Field(default=None, ge=0)
    """A speed budget instead: the best-quality candidate (validation macro F1) at or above this throughput, in the
    run's frontier bench. With it, the two tolerances are not used."""
    min_agreement_behaviour: float | None = Field(default=0.75, ge=0, le=1)
    """The least top-1 agreement with the teacher a candidate must keep on the frontier's behaviour set (the eval
    sets' texts and perturbed validation texts, every perturbation kind; frontier.behaviour_texts), the mean over
    its sources (0.9 = 90%). Clean validation F1 cannot see a student that matches its teacher there and parts
    ways with it on other text; this bound keeps such a student from shipping, under either rule. 0.75 by default,
    chosen on validation in quick runs (bench/results/behaviour-select): the 1-layer student without layer-wise lr
    decay agreed on 66-73% over two seeds, every other candidate on 82-88%; 0.75 leaves out the former with room
    for the others' seed-to-seed spread (up to 5 points). null: not checked."""
    max_tvd_behaviour: float | None = Field(default=None, ge=0, le=1)
    """The most mean total-variation distance from the teacher's probabilities a candidate may have on the
    behaviour set (0 to 1), the mean over its sources: the same check on the whole distribution, for a student
    that keeps the teacher's top class but not its confidence. null by default: reported, not checked, as it also
    measures confidence, which a stage not trained on the teacher's soft targets does not share (the LoRA stage
    agreed on 82% with a TVD of 0.20, as far as the 1-layer student that agreed on 66%)."""


# "auto" or a target string (toxdistill.targets), kept in its canonical form.
FrontierTarget = Annotated[str, AfterValidator(check_frontier_target)]


class FrontierConfig(_Strict):
    """The compression frontier: every transformer model exported and benched at the end of the run, and the winner
    chosen (select) and written to RUN/best/."""

    enabled: bool = True
    """Export and bench every model, draw the frontier and write RUN/best/. Off: the report has no frontier."""
    target: FrontierTarget = "auto"
    """The export each candidate is benched in: auto, or an export target such as onnx-int8 (ONNX Runtime's dynamic
    int8, no extra) or openvino-int8 (NNCF's static int8, the openvino extra). auto by default: per model, the engine
    that measures fastest on this CPU while passing its parity gates, as export --auto chooses it (every candidate's
    export timed on a few hundred test texts, then the winner alone benched in full). The fastest engine depends on
    the CPU: OpenVINO's int8 won on an Intel Xeon with AMX (bench/results/engines-xeon), ONNX Runtime's int8 on an
    AVX2-only AMD EPYC, so any one pinned engine ships a slower model, with a lower speed-up on its card, on the
    other. Pin a target to compare runs engine for engine, or to save the screen's time."""

    limit: int | None = Field(default=None, gt=0)
    """Bench on this many test texts (random, seeded). null: the whole test split."""
    behaviour_texts: int = Field(default=1000, ge=0)
    """Perturbed validation texts in the behaviour set, spread evenly over every perturbation kind, the held-out
    family included (seeded: robustness.seed and robustness.n_words, as toxdistill check perturbs them); the eval
    sets' texts are always in it. Each candidate and the teacher are scored on it in torch, and their logits cached
    in RUN/cache/behaviour/. 1000 keeps it to seconds per model on 2 cores while every kind gets about 55 texts. 0:
    no perturbed texts."""


# The default config ships in the package, so that `toxdistill run` without --config trains the same run from any
# folder. Its stages and eval sets are read from it as the schema's defaults; each of its other keys equals the
# schema's default, so Config() is the default run (tests/test_config.py checks it).
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "davidson-minilm.yaml"


@functools.cache
def _default_yaml() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))


def _default_stages() -> list[StageConfig]:
    return [StageConfig.model_validate(s) for s in _default_yaml()["stages"]]


def _default_eval_sets() -> list[EvalSetConfig]:
    # Their files ship beside the default config and are read from there, whatever the working directory.
    return [
        EvalSetConfig.model_validate({**e, "path": str(DEFAULT_CONFIG.parent / e["path"])})
        for e in _default_yaml()["eval_sets"]
    ]


class Config(_Strict):
    """A run: the data, the teacher, the stage defaults and the stages."""

    name: str = "davidson-minilm"
    """The run folder's name under output_dir (with -quick for run --quick); --name overrides it."""
    seed: int = 42
    """Seeds the split, the weights' initialisation and the data order: the same seed and data settings give the same
    split, row for row."""
    output_dir: str = "runs"
    """Where run folders go; --output-dir overrides it."""
    data: DataConfig = DataConfig()
    """The labelled data (see data)."""
    teacher: TeacherConfig = TeacherConfig()
    """The teacher (see teacher)."""
    baseline: bool = True
    """Train tfidf-lr, the TF-IDF + logistic-regression floor every transformer must beat."""
    train: TrainConfig = TrainConfig()
    """The training defaults of the student, LoRA and finetune stages; a stage's own train block is merged onto them."""
    distill: DistillConfig = DistillConfig()
    """The distillation defaults of distill and distill-lora stages."""
    lora: LoraConfig = LoraConfig()
    """The LoRA defaults of lora and distill-lora stages."""
    stages: list[StageConfig] = Field(default_factory=lambda: _default_stages())
    """The models trained after the teacher, in order (see stages[]). The default: the default config's stages, each
    with the reason it is there (src/toxdistill/configs/davidson-minilm.yaml)."""
    threads: int | None = None
    """CPU threads for torch. null: torch's default (all cores)."""
    seeds: int = Field(default=1, ge=1)
    """Train each distill stage this many times (seeds seed, seed+1, ...) and report mean ± std: one test split of
    ~2,500 tweets cannot tell a 0.3-point gap from seed noise. 1 = the stages once, as listed."""
    eval_sets: list[EvalSetConfig] = Field(default_factory=lambda: _default_eval_sets())
    """Labelled files scored at the end of the run and reported per group (see eval_sets[]). Not in any
    fingerprint: they change what is reported, not what is trained. The default: toxdistill's functional tests
    (hateful or not, mapped onto Davidson's classes), shipped beside the default config; a config with other
    classes gives its own, or []."""
    robustness: RobustnessConfig = RobustnessConfig()
    """The robustness and fidelity check before the report (see robustness)."""
    frontier: FrontierConfig = FrontierConfig()
    """The compression frontier and the best model (see frontier). Not in any fingerprint."""
    select: SelectConfig = SelectConfig()
    """The rule that picks RUN/best/ (see select). Not in any fingerprint."""

    # First, so that every later check and every reader of stage.train sees the resolved block.
    @model_validator(mode="after")
    def _merge_stage_train(self) -> Config:
        if any(s.train is not None for s in self.stages):
            self.stages = [
                s if s.train is None else s.model_copy(update={"train": self._merged(s.train)}) for s in self.stages
            ]
        return self

    def _merged(self, own: TrainConfig) -> TrainConfig:
        """``own``'s keys that the stage gave, over the run's train block."""
        return TrainConfig.model_validate({**self.train.model_dump(), **own.model_dump(include=own.model_fields_set)})

    @model_validator(mode="after")
    def _unique_stage_names(self) -> Config:
        names = [s.name for s in self.stages]
        reserved = {TEACHER, BASELINE}
        dup = {n for n in names if names.count(n) > 1} | (set(names) & reserved)
        if dup:
            raise ValueError(f"stage names must be unique and not '{TEACHER}'/'{BASELINE}': {sorted(dup)}")
        distill_names = {s.name for s in self.stages if s.kind == "distill"}
        for s in self.stages:
            if s.kind == "distill-lora" and s.base not in distill_names:
                raise ValueError(
                    f"stage {s.name!r}: distill-lora base {s.base!r} is not a distill stage "
                    f"(distill stages: {sorted(distill_names) or 'none'})"
                )
        return self

    @model_validator(mode="after")
    def _unique_eval_sets(self) -> Config:
        names = [e.name for e in self.eval_sets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"eval set names must be unique: {dup}")
        return self

    @model_validator(mode="after")
    def _given_teacher_needs_pretrained(self) -> Config:
        if self.teacher.pretrained is not None and self.teacher.train is not None:
            raise ValueError(
                "teacher.pretrained is for a given teacher (teacher.train: null); a trained teacher starts from "
                "teacher.model"
            )
        if self.teacher.pretrained_model() is None:
            for s in self.stages:
                if s.enabled and (
                    s.kind == "finetune" or (s.kind == "lora" and (s.base or "pretrained") == "pretrained")
                ):
                    raise ValueError(
                        f"stage {s.name!r} starts from the pretrained checkpoint, but the teacher is given "
                        "(teacher.train: null): set teacher.pretrained, or use base: teacher"
                    )
        return self

    @model_validator(mode="after")
    def _scores_teacher_has_no_states(self) -> Config:
        """A scores teacher has outputs but no states, weights or model to run: the terms and stages that need
        them are refused, and the cosine term, on by default, is turned off where the user did not set it."""
        if self.teacher.scores is None:
            return self
        if self.data.unlabelled:
            raise ValueError("data.unlabelled needs a teacher model to score it; a scores teacher has none")
        if self.data.multi_label:
            raise ValueError(
                "teacher.scores is one distribution over exclusive classes: data.task multi_label needs a teacher model"
            )
        blocks = {"distill": self.distill} | {f"stage {s.name!r} distill": s.distill for s in self.stages if s.distill}
        for where, d in blocks.items():
            for k in ("w_cos", "w_hidden", "w_attn", "augment"):
                if getattr(d, k) > 0 and (k != "w_cos" or k in d.model_fields_set):
                    raise ValueError(f"{where}.{k} needs the teacher model, and teacher.scores has none: set it to 0")
        self.distill = _no_cos(self.distill)
        self.stages = [
            s if s.distill is None else s.model_copy(update={"distill": _no_cos(s.distill)}) for s in self.stages
        ]
        for s in self.stages:
            if s.kind == "lora" and s.base == "teacher":
                raise ValueError(f"stage {s.name!r}: lora base teacher needs teacher weights; teacher.scores has none")
        return self

    @model_validator(mode="after")
    def _multi_label_train(self) -> Config:
        if not self.data.multi_label:
            return self
        for where, tc in self._train_blocks().items():
            if tc.soft_labels > 0:
                raise ValueError(f"{where}.soft_labels is not supported with data.task multi_label")
        return self

    @model_validator(mode="after")
    def _soft_labels_need_votes(self) -> Config:
        if self.data.vote_cols is None:
            for where, tc in self._train_blocks().items():
                if tc.soft_labels > 0:
                    raise ValueError(f"{where}.soft_labels needs data.vote_cols (the annotator count columns)")
        return self

    def _train_blocks(self) -> dict[str, TrainConfig]:
        """Every train block the config holds, by where it is written."""
        blocks = {"teacher.train": self.teacher.train, "train": self.train}
        blocks.update({f"stage {s.name!r}": s.train for s in self.stages})
        return {where: tc for where, tc in blocks.items() if tc is not None}

    # --- resolved views -------------------------------------------------
    def stage_train(self, stage: StageConfig) -> TrainConfig:
        """The stage's train block (merged onto the run's when the config was read), or the run's."""
        return stage.train or self.train

    def stage_distill(self, stage: StageConfig) -> DistillConfig:
        return stage.distill or self.distill

    def stage_lora(self, stage: StageConfig) -> LoraConfig:
        return stage.lora or self.lora

    # A fingerprint names what trains: an option left unset (null) and a lever at its default (off) add nothing to
    # it and stay out of the hash, so a lever added with an off default changes no fingerprint.
    def fingerprint(self) -> str:
        """Hash of what every model depends on (data, split, seed, teacher). A run folder refuses a change here."""
        t = self.teacher
        votes_unused = t.train is None or t.train.soft_labels == 0
        exclude: dict = {"data": ({"vote_cols", "focus_class"} if votes_unused else {"focus_class"})}
        exclude["data"] |= self.data.off_keys()
        off = t.train.off_levers() if t.train is not None else set()
        if off:
            exclude["teacher"] = {"train": off}
        unset = {k for k in ("label_map", "pretrained", "scores", "scores_text_col") if getattr(t, k) is None}
        if t.scores is not None:  # no teacher model is read: the file's contents name the teacher, not its path
            unset |= {"model", "scores"}
        if unset:
            exclude.setdefault("teacher", {}).update(dict.fromkeys(unset, True))
        d = self.model_dump(mode="json", include={"data", "seed", "teacher"}, exclude=exclude, context=_HASHING)
        if t.scores is not None:
            d["teacher"]["scores_sha256"] = _file_sha256(t.scores)
        return _hash(d)

    def stage_fingerprint(self, name: str) -> str:
        """Hash of one stage's resolved settings; a finished stage with another hash must be forced to redo."""
        if name == TEACHER:
            return self.fingerprint()
        if name == BASELINE:
            return _hash(
                {
                    "data": self.data.model_dump(
                        mode="json", exclude={"vote_cols", "focus_class", *self.data.off_keys()}
                    ),
                    "seed": self.seed,
                }
            )
        st = next(s for s in self.stages if s.name == name)
        # A stage's own train block is the merged one (see _merge_stage_train), so a YAML that repeats the run's
        # train keys in a stage and one that leaves them to the merge hash the same.
        tc = self.stage_train(st)
        off = tc.off_levers()
        own_train = {"train": off} if st.train is not None and off else {}
        # Keys at their defaults stay out, so that folders trained before the key existed keep their fingerprint.
        unset_stage = ({"student": True} if st.student is None else {}) | (
            {"arch": True} if st.arch == "encoder" else {}
        )
        distill = self.stage_distill(st)
        d: dict[str, object] = {
            "global": self.fingerprint(),
            "stage": st.model_dump(
                mode="json", exclude={"enabled": True, **own_train, **unset_stage}, context=_HASHING
            ),
            "train": tc.model_dump(mode="json", exclude=off, context=_HASHING),
            "distill": distill.model_dump(mode="json", exclude=distill.off_levers()),
            "lora": _lora_dump(self.stage_lora(st)),
        }
        if st.kind == "distill-lora" and st.base:
            d["base"] = self.stage_fingerprint(st.base)
        if tc.soft_labels > 0:
            d["vote_cols"] = self.data.vote_cols
        if self.data.unlabelled and st.kind in ("distill", "distill-lora"):  # the transfer set, by file
            d["unlabelled"] = [self.data.unlabelled, self.data.unlabelled_text_col]
        return _hash(d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _no_cos(d: DistillConfig) -> DistillConfig:
    return d.model_copy(update={"w_cos": 0.0})


def _file_sha256(path: str) -> str:
    """The scores file's hash: a scores teacher is its file's contents, whatever its name. Kept per path, size and
    time, as every stage's fingerprint holds it and a scores file can be large."""
    try:
        f = Path(path).expanduser()
        st = f.stat()
        return _cached_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)
    except OSError as e:
        raise ToxdistillError(
            f"teacher.scores file cannot be read: {path} ({e.strerror})", "give an existing file"
        ) from None


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


FINGERPRINT = "fingerprint"
_HASHING = {FINGERPRINT: True}  # model_dump's context inside a fingerprint


def _off_levers(block: TrainConfig | DistillConfig) -> set[str]:
    """The block's levers (optional additions to the plain recipe) that are at their default, i.e. off."""
    return {k for k in block.LEVERS if getattr(block, k) == type(block).model_fields[k].default}


# null means the family's defaults, and a BERT-like family's defaults are this list: hashed as the list, a config
# that leaves the key out and one that spells BERT's list out name the same training, and the run folders under
# bench/results keep the fingerprints they record. Another family changes the global fingerprint anyway.
def _lora_dump(lora: LoraConfig) -> dict:
    d = lora.model_dump(mode="json")
    if d["target_modules"] is None:
        d["target_modules"] = list(BERT_LORA_TARGETS)
    return d


def _hash(d) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"config {source}: {loc}: {msg}"


def _set_dotted(raw: dict, key: str, value) -> None:
    """``a.b.c=v`` into nested mappings; a number indexes a list (``stages.0.train.lr=1e-4``)."""
    parts = key.split(".")
    node = raw
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ToxdistillError(
                    f"--set {key}: {part!r} is not an index of a {len(node)}-item list", "use e.g. stages.0.train.lr"
                )
            part = int(part)
        elif not isinstance(node, dict):
            raise ToxdistillError(f"--set {key}: {parts[k - 1]!r} holds a value, not a mapping", "check the key")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def load_config(
    path: str | Path | None = None,
    overrides: dict | None = None,
    enable: Sequence[str] = (),
    disable: Sequence[str] = (),
) -> Config:
    """Load a YAML config (None: the default config shipped in the package), apply dotted overrides, then switch the
    named stages on (``enable``) or off (``disable``)."""
    # The default config's file, not Config(): --set can then index its lists (stages.0.train.lr) as in any config.
    path = DEFAULT_CONFIG if path is None else path
    raw = _read_yaml(Path(path))
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    if enable or disable:
        _switch_stages(raw, enable, disable)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ToxdistillError(_format_validation_error(e, str(path)), "see docs/config.md for the valid keys") from None
    _resolve_eval_set_paths(cfg, Path(path).parent)
    return cfg


def _read_yaml(p: Path) -> dict:
    if not p.is_file():
        raise ToxdistillError(f"config file not found: {p}", "pass an existing YAML file to --config")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ToxdistillError(f"config {p} is not valid YAML{where}", "fix the syntax and retry") from None
    if not isinstance(raw, dict):
        raise ToxdistillError(f"config {p} must be a YAML mapping", "see docs/config.md for the valid keys")
    return raw


def _switch_stages(raw: dict, enable: Sequence[str], disable: Sequence[str]) -> None:
    """``--enable NAME`` / ``--disable NAME`` by stage name: a list index would name another stage once one is added."""
    if "stages" not in raw:
        raw["stages"] = copy.deepcopy(_default_yaml()["stages"])
    stages = [s for s in raw["stages"] if isinstance(s, dict)] if isinstance(raw["stages"], list) else []
    known = [str(s.get("name")) for s in stages]
    both = sorted(set(enable) & set(disable))
    if both:
        raise ToxdistillError(f"--enable and --disable both name stage {both[0]!r}", "name each stage once")
    for flag, names, on in (("--enable", enable, True), ("--disable", disable, False)):
        for name in names:
            if name not in known:
                raise ToxdistillError(
                    f"{flag} {name}: no stage of that name", f"the config's stages: {', '.join(known) or 'none'}"
                )
            stages[known.index(name)]["enabled"] = on


def _resolve_eval_set_paths(cfg: Config, config_dir: Path) -> None:
    """A relative eval-set path is read beside the config file when it is there, else from the working directory,
    so a config scores the same file from any folder; the run's saved config.yaml holds the path that was found."""
    for es in cfg.eval_sets:
        p = Path(es.path)
        if not p.is_absolute() and (config_dir / p).exists():
            es.path = str((config_dir / p).resolve())
