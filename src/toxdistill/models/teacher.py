"""Teacher: resolve where the model comes from and load it as a classifier."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from toxdistill.errors import ToxdistillError
from toxdistill.files import MULTI_LABEL_PROBLEM
from toxdistill.models import cnn
from toxdistill.models.families import is_classifier, label_order, relabel
from toxdistill.models.packaged import resolve_packaged

log = logging.getLogger(__name__)


cnn.register()  # the students without attention load like any classifier


def has_multi_label_head(config) -> bool:
    """Whether a model's config declares a multi-label head (``problem_type``), as Detoxify's models do."""
    return getattr(config, "problem_type", None) == MULTI_LABEL_PROBLEM


def check_task(path: str, multi_label: bool) -> None:
    """A given classifier's head must fit the data's task: a softmax over classes for single-label data, one
    sigmoid per label for multi-label data (its config's ``problem_type``)."""
    if has_multi_label_head(load_model_config(path)) != multi_label:
        have, want = ("multi-label", "single-label") if not multi_label else ("single-label", "multi-label")
        raise ToxdistillError(
            f"teacher {path} is a {have} classifier (config.json problem_type), the data is {want}",
            "set data.task to match the teacher, or give a teacher trained for this task",
        )


def resolve_model_path(spec: str) -> str:
    """A ``packaged:`` name (see ``packaged.py``), a local folder, or a hub id (returned unchanged)."""
    packaged = resolve_packaged(spec)
    if packaged is not None:
        return packaged
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ToxdistillError(f"model folder {p} has no config.json", "give a save_pretrained folder")
        return str(p)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ToxdistillError(f"model folder not found: {spec}", "check the path")
    return spec


_ALLOW_PICKLE = False


def set_allow_pickle(value: bool) -> None:
    """``toxdistill --allow-pickle``: the one switch that lets any command load ``*.bin`` weights."""
    global _ALLOW_PICKLE
    _ALLOW_PICKLE = bool(value)


def pickle_allowed(flag: bool = False) -> bool:
    return flag or _ALLOW_PICKLE


def check_safetensors(path: str, allow_pickle: bool = False) -> None:
    """Refuse pickle weights (``*.bin``) unless explicitly allowed: they can run code on load."""
    allow_pickle = pickle_allowed(allow_pickle)
    p = Path(path)
    if not p.is_dir():
        return  # hub id: from_pretrained(use_safetensors=True) enforces it
    has_st = any(p.glob("*.safetensors"))
    has_bin = any(p.glob("*.bin")) or any(p.glob("*.pt"))
    if not has_st and has_bin and not allow_pickle:
        raise ToxdistillError(
            f"{p} holds only pickle weights (*.bin), which can run code when loaded",
            "convert them to safetensors, or pass 'toxdistill --allow-pickle ...' if you trust the source",
        )
    if not has_st and not has_bin:
        raise ToxdistillError(f"{p} has no model weights (*.safetensors)", "point at a save_pretrained folder")


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ToxdistillError(
            f"cannot load a tokenizer from {path}: {str(e).splitlines()[0][:160]}", "check the model folder"
        ) from None


def load_classifier(
    spec: str, label_names: list[str], seed: int = 0, allow_pickle: bool = False, multi_label: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier with ``len(label_names)`` outputs, plus its tokenizer.

    The head is seeded so that two runs with the same seed start from the same weights. ``multi_label`` makes it
    one sigmoid per label (``problem_type`` in its config.json); a folder saved so loads so either way.
    """
    path = resolve_model_path(spec)
    allow_pickle = pickle_allowed(allow_pickle)
    check_safetensors(path, allow_pickle)
    torch.manual_seed(seed)
    id2label = dict(enumerate(label_names))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(label_names),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            use_safetensors=not allow_pickle or None,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,  # a folder fine-tuned on other classes still loads its encoder
            **_head_kwargs(multi_label),
        )
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0][:200]
        raise ToxdistillError(
            f"cannot load model {spec!r}: {msg}",
            "offline? use the packaged teacher (configs/davidson-minilm.yaml) or a local folder",
        ) from None
    return model, load_tokenizer(path)


def _head_kwargs(multi_label: bool) -> dict[str, Any]:
    return {"problem_type": MULTI_LABEL_PROBLEM} if multi_label else {}


def load_given_classifier(
    spec: str, label_names: list[str], label_map: dict[str, str] | None = None, allow_pickle: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An already fine-tuned classifier used as it is: its head is kept, reordered to ``label_names``."""
    path = resolve_model_path(spec)
    allow_pickle = pickle_allowed(allow_pickle)
    check_safetensors(path, allow_pickle)
    order = check_given_classifier(path, label_names, label_map)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=not allow_pickle or None, trust_remote_code=False
        )
    except (OSError, ValueError) as e:
        raise ToxdistillError(
            f"cannot load model {spec!r}: {str(e).splitlines()[0][:200]}", "check the folder"
        ) from None
    relabel(model, order, label_names)
    return model, load_tokenizer(path)


def check_given_classifier(path: str, label_names: list[str], label_map: dict[str, str] | None = None) -> list[int]:
    """From its config alone, before anything is trained: a classifier whose labels map onto ``label_names``."""
    cfg = load_model_config(path)
    if not is_classifier(cfg):
        raise ToxdistillError(
            f"teacher {path} is not a fine-tuned classifier (architectures: {getattr(cfg, 'architectures', None)})",
            "give a *ForSequenceClassification folder, or set teacher.train to fine-tune this model",
        )
    return label_order(cfg, label_names, label_map)


def load_model_config(path: str):
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ToxdistillError(
            f"cannot load model config from {path}: {str(e).splitlines()[0][:160]}",
            "offline? use a packaged model (packaged:all-MiniLM-L6-v2, packaged:all-mpnet-base-v2) or a local folder",
        ) from None
