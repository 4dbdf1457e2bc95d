"""What differs between encoder families, in one table: LoRA targets, attention projections, the inputs a model
takes, its head;
and what every family shares: how its layers are named, a peft wrapper around it, its parameter counts.

Student building needs no entry here: it copies every weight outside the per-layer blocks by name, so
MPNet's ``encoder.relative_attention_bias`` and DeBERTa-v2's ``encoder.rel_embeddings`` come along with the
embeddings (the all-layers test in tests/test_families.py proves it for each family).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from transformers import PreTrainedModel

from toxdistill.errors import ToxdistillError
from toxdistill.files import BERT_LORA_TARGETS

_BERT_LIKE = list(BERT_LORA_TARGETS)

# Every attention and feed-forward linear layer: adapting only query/value underfits small models.
# peft ships no defaults for MPNet, and its BERT defaults (query, value) are the underfitting ones.
LORA_TARGETS: dict[str, list[str]] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "mpnet": ["q", "k", "v", "o", "intermediate.dense", "output.dense"],
    "deberta-v2": [
        "query_proj",
        "key_proj",
        "value_proj",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
}

# Head parts outside ``classifier`` that a pretrained checkpoint leaves random. peft's SEQ_CLS trains and
# saves ``classifier`` only, so these would otherwise stay random and frozen under LoRA.
HEAD_EXTRA: dict[str, list[str]] = {"distilbert": ["pre_classifier"], "deberta-v2": ["pooler"]}

# The query, key and value projections inside one encoder layer, by module name under ``...layer.N.``: the
# attention-relation loss (distill.w_attn) reads the last layer's outputs of these with forward hooks.
_BERT_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")
QKV_MODULES: dict[str, tuple[str, str, str]] = {
    "bert": _BERT_QKV,
    "roberta": _BERT_QKV,
    "xlm-roberta": _BERT_QKV,
    "electra": _BERT_QKV,
    "mpnet": ("attention.attn.q", "attention.attn.k", "attention.attn.v"),
    "deberta-v2": ("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
    "distilbert": ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
}

# Modules that exist only while a student trains (``students.attach_hidden_projection``): the saved folder and the
# parameter counts leave them out.
TRAINING_ONLY = ("kd_projection", "kd_hidden_projection")

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# The encoder-layer index N in a weight's name: ``encoder.layer.N.`` (BERT, RoBERTa, ELECTRA, MPNet,
# DeBERTa-v2), ``transformer.layer.N.`` (DistilBERT), ``layers.N.`` elsewhere. Group 1 is N, 0-based.
LAYER_KEY = re.compile(r"(?:^|\.)(?:layer|layers)\.(\d+)\.")


def lora_targets(model_type: str, override: list[str] | None) -> list[str]:
    """The config's ``lora.target_modules`` if given, else the family's defaults."""
    if override:
        return list(override)
    if model_type not in LORA_TARGETS:
        raise ToxdistillError(
            f"no default LoRA target modules for model_type {model_type!r}",
            f"set lora.target_modules in the config (known families: {', '.join(sorted(LORA_TARGETS))})",
        )
    return list(LORA_TARGETS[model_type])


def qkv_names(model_type: str) -> tuple[str, str, str]:
    """The family's query, key and value module names (``QKV_MODULES``), or one line naming the known ones."""
    if model_type not in QKV_MODULES:
        raise ToxdistillError(
            f"no attention module names for model_type {model_type!r}, which distill.w_attn needs",
            f"set distill.w_attn: 0 (known families: {', '.join(sorted(QKV_MODULES))})",
        )
    return QKV_MODULES[model_type]


def last_layer_qkv(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """The query, key and value projections of the model's last encoder layer (under peft, its LoRA-wrapped ones,
    so that their outputs include the adapters')."""
    config: Any = unwrap_peft(model).config
    names = qkv_names(config.model_type)
    found: dict[str, tuple[int, torch.nn.Module]] = {}
    for name, module in model.named_modules():
        m = LAYER_KEY.search(name)
        for suffix in names:
            if m and name[m.end() :] == suffix and (suffix not in found or int(m.group(1)) > found[suffix][0]):
                found[suffix] = (int(m.group(1)), module)
    if len(found) != 3:
        raise ToxdistillError("cannot find the last layer's query, key and value modules", "set distill.w_attn: 0")
    q, k, v = (found[s][1] for s in names)
    return q, k, v


def unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (``get_base_model``); any other model as it is."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts of the model as saved: the training-only projections (``TRAINING_ONLY``,
    ``students.attach_hidden_projection``) are left out."""
    params = [p for n, p in model.named_parameters() if not any(t in n.split(".") for t in TRAINING_ONLY)]
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def forward_inputs(model: torch.nn.Module) -> list[str]:
    """The tokenizer outputs this model's forward names. Families without segment embeddings (MPNet,
    DistilBERT, RoBERTa's tokenizer) swallow ``token_type_ids`` into ``**kwargs``, so we never send them."""
    params = inspect.signature(unwrap_peft(model).forward).parameters
    return [n for n in _INPUTS if n in params]


def is_classifier(config) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or []))


_GENERIC = re.compile(r"^LABEL_(\d+)$")


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", str(name)).strip().lower()


def label_order(
    config, label_names: list[str], label_map: dict[str, str] | None = None, what: str = "teacher"
) -> list[int]:
    """For each data class, the index of the model output that means it.

    A model's labels match by name (case, ``_`` and ``-`` ignored), through ``label_map`` (model label →
    data label) where given. Hugging Face's unnamed ``LABEL_k`` means class id k, as training scripts leave it.
    """
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n = int(getattr(config, "num_labels", len(id2label)))
    if n != len(label_names):
        raise ToxdistillError(
            f"the {what} has {n} labels {sorted(id2label.values())}; the data has {len(label_names)} {label_names}",
            "use a classifier fine-tuned on these classes",
        )
    want = {_norm(x): i for i, x in enumerate(label_names)}
    mapped = {_norm(k): _norm(v) for k, v in (label_map or {}).items()}
    unknown = sorted(set(mapped.values()) - set(want))
    if unknown:
        raise ToxdistillError(
            f"teacher.label_map names {unknown[0]!r}, not a data label", f"data labels: {label_names}"
        )
    order = [-1] * n
    for out_idx in range(n):
        name = id2label.get(out_idx, f"LABEL_{out_idx}")
        generic = _GENERIC.match(name)
        key = mapped.get(_norm(name), _norm(name))
        if key in want:
            cls = want[key]
        elif generic and not label_map and int(generic.group(1)) < n:
            cls = int(generic.group(1))
        else:
            raise ToxdistillError(
                f"the {what}'s label {name!r} matches none of {label_names}",
                "add teacher.label_map: {MODEL_LABEL: DATA_LABEL, ...} to the config",
            )
        if order[cls] != -1:
            raise ToxdistillError(f"two {what} labels map to {label_names[cls]!r}", "fix teacher.label_map")
        order[cls] = out_idx
    return order


def classifier_out(model: PreTrainedModel) -> torch.nn.Linear:
    """The head's last linear layer (``classifier`` or ``classifier.out_proj``): its rows are the classes."""
    k = model.config.num_labels
    found = [
        m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and m.out_features == k and name.split(".")[0] == "classifier"
    ]
    if not found:
        raise ToxdistillError("cannot find the classifier's output layer", "use a *ForSequenceClassification model")
    return found[-1]


@torch.no_grad()
def relabel(model: PreTrainedModel, order: list[int], label_names: list[str]) -> None:
    """Reorder the head's outputs so that output i is ``label_names[i]``; names the labels as the data does."""
    if order != list(range(len(order))):
        out = classifier_out(model)
        idx = torch.tensor(order)
        out.weight.copy_(out.weight[idx].clone())
        if out.bias is not None:
            out.bias.copy_(out.bias[idx].clone())
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
