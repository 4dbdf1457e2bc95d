"""Students: a teacher (or a pretrained student) cut to fewer layers, chosen by a rule or a list."""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from transformers import PreTrainedModel

from toxdistill.errors import ToxdistillError
from toxdistill.models.cnn import CnnConfig, CnnForSequenceClassification, register
from toxdistill.models.families import LAYER_KEY, TRAINING_ONLY, unwrap_peft

_RULE = re.compile(r"^(spread|bottom|top):(-?\d+)$")


def spread(n: int, k: int) -> list[int]:
    """``round(i · n / k)`` for i = 1..k, halves rounded up: k layers of n spread evenly, the last one n.

    For k ≤ n the steps are at least 1, so the layers are distinct; for k > n some repeat (``hidden_pairs``
    maps a deeper student onto a shallower teacher that way)."""
    return [(2 * i * n + k) // (2 * k) for i in range(1, k + 1)]


def resolve_layers(spec: str | list[int], n_teacher_layers: int, owner: str = "teacher") -> list[int]:
    """The one place that turns a layer set into 1-based layer numbers of the model it is cut from.

    - ``odd`` = 1, 3, 5, …; ``even`` = 2, 4, 6, …. Both need an even-sized model so that the two students have
      the same depth (half the model's) and the comparison is fair.
    - ``spread:K`` = layer ``round(i · n / K)`` for i = 1..K (halves up): K layers spread evenly up to and
      including the top one (n = 6: K = 1 → [6], 2 → [3, 6], 3 → [2, 4, 6], which is ``even``; n = 12, K = 4 →
      [3, 6, 9, 12]). The top layer is kept because the pooler and head the student inherits were trained on
      its output; the even spread keeps the model's depth profile (low layers' surface features, high layers'
      task features) rather than one end of it. It is the default rule for shallow students.
    - ``bottom:K`` = 1..K and ``top:K`` = n − K + 1..n, the alternatives it is compared with.
    - a list: the given layers, in the given order.

    ``owner`` names the model in messages: the teacher, or a pretrained student cut to fewer layers.
    """
    n = n_teacher_layers
    if isinstance(spec, str):
        rule = _RULE.match(spec)
        if rule:
            k = int(rule.group(2))
            if k < 1:
                raise ToxdistillError(f"layer set {spec!r} asks for {k} layers", "a student needs at least 1 layer")
            if k > n:
                raise ToxdistillError(
                    f"layer set {spec!r} asks for {k} layers; the {owner} has {n}",
                    f"use a depth from 1 to {n}",
                )
            kind = rule.group(1)
            if kind == "spread":
                return spread(n, k)
            return list(range(1, k + 1)) if kind == "bottom" else list(range(n - k + 1, n + 1))
        if spec not in ("odd", "even"):
            raise ToxdistillError(
                f"unknown layer set {spec!r}",
                "use 'odd', 'even', 'spread:K', 'bottom:K', 'top:K' or a list like [1, 3, 5]",
            )
        if n % 2:
            raise ToxdistillError(
                f"the {owner} has {n} layers; odd/even need an even number",
                "use spread:K or give an explicit list of layers instead",
            )
        start = 1 if spec == "odd" else 2
        return list(range(start, n + 1, 2))
    layers = list(spec)
    if not layers:
        raise ToxdistillError("the student layer list is empty", "give at least one layer, e.g. [2, 4, 6]")
    bad = [x for x in layers if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= n]
    if bad:
        raise ToxdistillError(
            f"layer {bad[0]!r} is out of range for a {n}-layer {owner}",
            f"use 1-based layer numbers from 1 to {n}",
        )
    if len(set(layers)) != len(layers):
        raise ToxdistillError(f"layer list {layers} repeats a layer", "list each layer once")
    return layers


def build_student(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A fresh model of the teacher's class with ``len(layers)`` encoder layers.

    Copies the embeddings, teacher layers ``layers`` (1-based, in the order given), the pooler and the
    classifier. Pure: the teacher is untouched and the student shares no storage with it.
    """
    n = teacher.config.num_hidden_layers
    layers = resolve_layers(layers, n)
    cfg = copy.deepcopy(teacher.config)
    cfg.num_hidden_layers = len(layers)
    student = type(teacher)(cfg)

    teacher_sd = teacher.state_dict()
    new_sd: dict[str, torch.Tensor] = {}
    for key in student.state_dict():
        m = LAYER_KEY.search(key)
        if m:
            src_layer = layers[int(m.group(1))] - 1
            src = key[: m.start(1)] + str(src_layer) + key[m.end(1) :]
        else:
            src = key
        if src not in teacher_sd:
            raise ToxdistillError(
                f"teacher has no weight {src!r} for the student", "use an encoder whose layers are '...layer.N...'"
            )
        new_sd[key] = teacher_sd[src].detach().clone()
    student.load_state_dict(new_sd, strict=True)
    student.eval()
    return student


def build_cnn_student(teacher: PreTrainedModel) -> CnnForSequenceClassification:
    """A student without attention (``models/cnn.py``) on the teacher's tokenizer, its token embeddings copied from
    the teacher's: the convolutions start from the teacher's word meanings rather than from noise, and its labels
    and padding id are the teacher's."""
    register()  # before the first save: the folder gets the model's code and its auto_map
    tc: Any = teacher.config
    emb: torch.Tensor = teacher.get_input_embeddings().weight  # type: ignore[assignment]
    cfg = CnnConfig(
        vocab_size=int(emb.shape[0]),
        embedding_size=int(emb.shape[1]),
        hidden_size=int(tc.hidden_size),
        max_position_embeddings=int(getattr(tc, "max_position_embeddings", 512)),
        pad_token_id=int(getattr(tc, "pad_token_id", None) or 0),
        num_labels=int(tc.num_labels),
        id2label=dict(tc.id2label),
        label2id=dict(tc.label2id),
        problem_type=getattr(tc, "problem_type", None),  # a multi-label teacher's students are multi-label
    )
    student = CnnForSequenceClassification(cfg)
    with torch.no_grad():
        student.embeddings.weight.copy_(emb.detach())
    student.eval()
    return student


def hidden_pairs(n_student: int, n_teacher: int, copied: list[int] | None = None) -> list[tuple[int, int]]:
    """The (student, teacher) hidden-state pairs of the intermediate-layer loss, as indices into the models'
    ``hidden_states`` (0 = the embeddings' output, l = encoder layer l's).

    Embeddings ↔ embeddings, then student layer j (1-based) ↔ the teacher layer it was copied from,
    ``copied[j − 1]``; a student not cut from the teacher (``copied`` None: another pretrained model, cut or
    not) pairs with the teacher layer at the same relative depth, ``round(j · n_teacher / n_student)``."""
    teacher_layers = copied if copied is not None else spread(n_teacher, n_student)
    if len(teacher_layers) != n_student:
        raise ValueError(f"{len(teacher_layers)} copied layers for a {n_student}-layer student")
    return [(0, 0), *((j, t) for j, t in enumerate(teacher_layers, 1))]


def attach_hidden_projection(student: PreTrainedModel, teacher_hidden: int, name: str = "kd_projection") -> bool:
    """A student of another hidden size gets a linear projection (student → teacher size) named ``name``:
    ``kd_projection`` for the [CLS] cosine term, ``kd_hidden_projection`` for the per-token hidden-state term.

    It lives on the model so that the optimizer trains it and epoch checkpoints (and resume) keep it;
    ``detach_hidden_projection`` removes it before the student is saved. Returns whether one was added.
    """
    assert name in TRAINING_ONLY, f"{name} must be listed in families.TRAINING_ONLY"
    h = int(student.config.hidden_size)
    if h == teacher_hidden:
        return False
    setattr(student, name, torch.nn.Linear(h, teacher_hidden))
    return True


def detach_hidden_projection(model) -> None:
    """Training-only: the saved student is a plain classifier without the projections."""
    inner = unwrap_peft(model)
    for name in TRAINING_ONLY:
        if hasattr(inner, name):
            delattr(inner, name)
