"""Typed configuration, read from YAML. Every default has a reason next to it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toxdistill.errors import ToxdistillError
from toxdistill.files import BERT_LORA_TARGETS, PACKAGED_MINILM

DAVIDSON_SHA256 = "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281"


class _Strict(BaseModel):
    # Unknown keys are almost always typos; failing loudly beats silently training the wrong thing.
    model_config = ConfigDict(extra="forbid")


class CleanConfig(_Strict):
    unescape_html: bool = True  # the tweets carry "&amp;" and "&#128514;" as literal text
    normalize_mentions: bool = True  # "@someone" -> "@user": handles are noise, and a privacy leak in logs
    normalize_urls: bool = True  # "http://t.co/xyz" -> "http": the short-link hash carries no signal
    strip_rt: bool = False  # "RT" is informative about retweets; keep it unless asked
    collapse_whitespace: bool = True


class DataConfig(_Strict):
    # "davidson" resolves --data, then $TOXDISTILL_DATA, then the cache, then a checked download.
    source: Literal["davidson", "file"] = "davidson"
    path: str | None = None
    format: Literal["auto", "csv", "jsonl"] = "auto"
    text_col: str = "tweet"
    label_col: str = "class"
    label_names: list[str] = ["hate speech", "offensive", "neither"]
    # The class the report leads with (its F1, recall and the "hate F1" columns): the rare, costly one.
    # None: the first of label_names (Davidson's coding puts hate speech first). Not in any fingerprint:
    # it changes what is reported, not what is trained.
    focus_class: str | None = None
    # Maps raw label values (as strings) to class ids; None means the values already are 0..K-1.
    label_map: dict[str, int] | None = None
    sha256: str | None = DAVIDSON_SHA256
    # Columns holding each row's annotator vote counts, one per class in label_names order (Davidson:
    # hate_speech, offensive_language, neither). Needed only by train.soft_labels.
    vote_cols: list[str] | None = None
    clean: CleanConfig = CleanConfig()
    val_size: float = 0.1  # 80/10/10: ~2,478 test tweets, ~143 of them hate
    test_size: float = 0.1
    max_length: int = 128  # p99 tweet is ~82 tokens, so 128 truncates almost nothing
    # --quick keeps this many rows (stratified) so that a smoke run takes minutes, not an hour.
    quick_rows: int = 2400

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
    def _one_vote_col_per_class(self) -> DataConfig:
        if self.vote_cols is not None and len(self.vote_cols) != len(self.label_names):
            raise ValueError(f"vote_cols has {len(self.vote_cols)} columns for {len(self.label_names)} label_names")
        return self


class TrainConfig(_Strict):
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32  # small batches give more updates per epoch, which helps the rare hate class
    eval_batch_size: int = 128
    warmup_ratio: float = 0.06  # RoBERTa's recipe; protects the random head from big early steps
    weight_decay: float = 0.01
    # Geometric per-layer decay: lr(layer l) = lr * decay**(L - l); None disables it.
    layer_lr_decay: float | None = None
    freeze_layers: int = 0  # freeze the embeddings and the lowest k layers (0 = none)
    # None, "balanced" (N / (K n_c)), "sqrt-balanced" (its square root: a milder push towards rare
    # classes that costs less accuracy), or explicit per-class weights for the hard-label cross-entropy.
    class_weights: Literal["balanced", "sqrt-balanced"] | list[float] | None = None
    group_by_length: bool = True  # tweets average ~30 tokens; grouping cuts padding about 3x
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    bf16: bool = False  # turn on for GPUs; CPU bf16 autocast is slower than fp32 here
    best_metric: str = "f1_macro"  # accuracy is dominated by "offensive"; macro F1 tracks the hate class
    # Weight a of the annotators' vote shares in the training target: (1 - a) one-hot(label) + a votes.
    # 0 = majority labels only. Needs data.vote_cols. Validation loss and every metric stay on majority labels.
    soft_labels: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("layer_lr_decay")
    @classmethod
    def _decay_range(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1:
            raise ValueError("layer_lr_decay must be in (0, 1]")
        return v


class DistillConfig(_Strict):
    temperature: float = Field(default=2.0, gt=0)  # softens the teacher enough to expose the hate/offensive confusion
    w_ce: float = 1.0  # hard labels keep the student honest where the teacher is wrong
    w_kd: float = 1.0  # KL is T^2-scaled, so it is on the same gradient scale as w_ce
    w_cos: float = 0.5  # aligns the [CLS] state that the pooler and head were trained on


class LoraConfig(_Strict):
    r: int = Field(default=8, gt=0)  # the LoRA paper's rank that matched full fine-tuning on GLUE
    alpha: int = 16  # alpha = 2r keeps the effective scale at 2 as r changes
    dropout: float = 0.1
    # None: the family's defaults (families.LORA_TARGETS), every attention and feed-forward linear layer.
    target_modules: list[str] | None = None


StageKind = Literal["finetune", "distill", "lora", "distill-lora"]


class StageConfig(_Strict):
    """One trained model. The run trains them in the order given."""

    name: str
    kind: StageKind
    enabled: bool = True
    # distill / lora-on-student: "odd", "even", or 1-based teacher layer numbers.
    layers: Literal["odd", "even"] | list[int] | None = None
    # distill: a pretrained model (another family, its own tokenizer) as the student instead of teacher layers.
    student: str | None = None
    # lora: "pretrained" (the checkpoint the teacher starts from) or "teacher" (the fine-tuned one).
    # distill-lora: the name of a distill stage to start from.
    base: str | None = None
    train: TrainConfig | None = None  # None inherits the run's train defaults
    distill: DistillConfig | None = None
    lora: LoraConfig | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v) or ".." in v:
            raise ValueError(f"stage name {v!r} must be letters, digits, '-', '_' or '.'")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> StageConfig:
        if self.student is not None and self.layers is not None:
            raise ValueError(f"stage {self.name!r}: give 'layers' (teacher layers) or 'student' (a model), not both")
        if self.student is not None and self.kind != "distill":
            raise ValueError(f"stage {self.name!r}: 'student' is for distill stages")
        if self.kind == "distill" and self.layers is None and self.student is None:
            raise ValueError(
                f"stage {self.name!r}: a distill stage needs 'layers' (odd, even or a list) or 'student' (a model)"
            )
        if self.kind == "distill-lora" and not self.base:
            raise ValueError(f"stage {self.name!r}: distill-lora needs 'base', the name of a distill stage")
        return self


class TeacherConfig(_Strict):
    # A hub id, a local folder, or a packaged offline model (packaged:all-MiniLM-L6-v2, packaged:all-mpnet-base-v2).
    model: str = PACKAGED_MINILM
    # None: ``model`` is already a fine-tuned classifier of these classes; it is used as it is, not trained.
    train: TrainConfig | None = TrainConfig(epochs=3.0, lr=1e-4)
    # The given teacher's label names → data.label_names, where they differ (e.g. {hateful: hate speech}).
    label_map: dict[str, str] | None = None
    # The checkpoint a given teacher was fine-tuned from: where LoRA (base: pretrained) and finetune stages
    # start. None: ``model`` when the teacher is trained here.
    pretrained: str | None = None

    def pretrained_model(self) -> str | None:
        return self.pretrained or (self.model if self.train is not None else None)


class Config(_Strict):
    name: str = "davidson-minilm"
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    baseline: bool = True  # the TF-IDF floor every transformer must beat
    train: TrainConfig = TrainConfig()  # defaults for student and LoRA stages
    distill: DistillConfig = DistillConfig()
    lora: LoraConfig = LoraConfig()
    stages: list[StageConfig] = Field(
        default_factory=lambda: [
            StageConfig(name="odd", kind="distill", layers="odd"),
            StageConfig(name="even", kind="distill", layers="even"),
        ]
    )
    threads: int | None = None  # None: torch's default (all cores)
    checkpoint_every_epoch: bool = True
    # Train each distill stage this many times (seeds seed, seed+1, ...) and report mean ± std: one test split
    # of ~2,500 tweets cannot tell a 0.3-point gap from seed noise. 1 = the stages once, as listed.
    seeds: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _unique_stage_names(self) -> Config:
        names = [s.name for s in self.stages]
        reserved = {"teacher", "tfidf-lr"}
        dup = {n for n in names if names.count(n) > 1} | (set(names) & reserved)
        if dup:
            raise ValueError(f"stage names must be unique and not 'teacher'/'tfidf-lr': {sorted(dup)}")
        distill_names = {s.name for s in self.stages if s.kind == "distill"}
        for s in self.stages:
            if s.kind == "distill-lora" and s.base not in distill_names:
                raise ValueError(
                    f"stage {s.name!r}: distill-lora base {s.base!r} is not a distill stage "
                    f"(distill stages: {sorted(distill_names) or 'none'})"
                )
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
    def _soft_labels_need_votes(self) -> Config:
        if self.data.vote_cols is None:
            cfgs = {"teacher.train": self.teacher.train, "train": self.train}
            cfgs.update({f"stage {s.name!r}": s.train for s in self.stages if s.train is not None})
            for where, tc in cfgs.items():
                if tc is not None and tc.soft_labels > 0:
                    raise ValueError(f"{where}.soft_labels needs data.vote_cols (the annotator count columns)")
        return self

    # --- resolved views -------------------------------------------------
    def stage_train(self, stage: StageConfig) -> TrainConfig:
        return stage.train or self.train

    def stage_distill(self, stage: StageConfig) -> DistillConfig:
        return stage.distill or self.distill

    def stage_lora(self, stage: StageConfig) -> LoraConfig:
        return stage.lora or self.lora

    # data.vote_cols and train.soft_labels came after run folders already existed. They enter a hash only
    # where they change training (soft_labels > 0), so older run folders keep their finished stages.
    # Settings added later enter a hash only when set, so run folders made before them keep their fingerprints.
    def fingerprint(self) -> str:
        """Hash of what every model depends on (data, split, seed, teacher). A run folder refuses a change here."""
        t = self.teacher
        votes_unused = t.train is None or t.train.soft_labels == 0
        exclude: dict = {"data": {"vote_cols", "focus_class"}, "teacher": {"train": {"soft_labels"}}}
        if not votes_unused:
            exclude = {"data": {"focus_class"}}
        unset = {k for k in ("label_map", "pretrained") if getattr(t, k) is None}
        if unset:
            exclude.setdefault("teacher", {}).update(dict.fromkeys(unset, True))
        return _hash(self.model_dump(mode="json", include={"data", "seed", "teacher"}, exclude=exclude))

    def stage_fingerprint(self, name: str) -> str:
        """Hash of one stage's resolved settings; a finished stage with another hash must be forced to redo."""
        if name == "teacher":
            return self.fingerprint()
        if name == "tfidf-lr":
            return _hash(
                {"data": self.data.model_dump(mode="json", exclude={"vote_cols", "focus_class"}), "seed": self.seed}
            )
        st = next(s for s in self.stages if s.name == name)
        tc = self.stage_train(st)
        soft = {"soft_labels"} if tc.soft_labels == 0 else set()
        own_train = {"train": soft} if st.train is not None and soft else {}
        unset_stage = {"student": True} if st.student is None else {}
        d: dict[str, object] = {
            "global": self.fingerprint(),
            "stage": st.model_dump(mode="json", exclude={"enabled": True, **own_train, **unset_stage}),
            "train": tc.model_dump(mode="json", exclude=soft),
            "distill": self.stage_distill(st).model_dump(mode="json"),
            "lora": _lora_dump(self.stage_lora(st)),
        }
        if st.kind == "distill-lora" and st.base:
            d["base"] = self.stage_fingerprint(st.base)
        if tc.soft_labels > 0:
            d["vote_cols"] = self.data.vote_cols
        return _hash(d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Before lora.target_modules could be None (the family's defaults) its default was BERT's list; hashing None
# as that list keeps the fingerprints of run folders made from configs that left the key out. A change of
# teacher family changes the global fingerprint anyway.
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


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Load a YAML config (or the defaults) and apply dotted overrides."""
    raw: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ToxdistillError(f"config file not found: {p}", "pass an existing YAML file to --config")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise ToxdistillError(f"config {p} is not valid YAML{where}", "fix the syntax and retry") from None
        if not isinstance(raw, dict):
            raise ToxdistillError(f"config {p} must be a YAML mapping", "see configs/davidson-minilm.yaml")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ToxdistillError(
            _format_validation_error(e, source), "see configs/davidson-minilm.yaml for valid keys"
        ) from None
