"""Students: a teacher with half its layers, chosen as odd, even or any list."""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from toxdistill.errors import ToxdistillError
from toxdistill.models.families import LAYER_KEY, unwrap_peft


def resolve_layers(spec: str | list[int], n_teacher_layers: int) -> list[int]:
    """The one place that turns "odd"/"even"/a list into 1-based teacher layer numbers.

    odd = 1, 3, 5, …; even = 2, 4, 6, …. Both need an even-sized teacher so that the two students
    have the same depth (half the teacher's) and the comparison is fair.
    """
    if isinstance(spec, str):
        if spec not in ("odd", "even"):
            raise ToxdistillError(f"unknown layer set {spec!r}", "use 'odd', 'even' or a list like [1, 3, 5]")
        if n_teacher_layers % 2:
            raise ToxdistillError(
                f"the teacher has {n_teacher_layers} layers; odd/even need an even number",
                "give an explicit list of layers instead",
            )
        start = 1 if spec == "odd" else 2
        return list(range(start, n_teacher_layers + 1, 2))
    layers = list(spec)
    if not layers:
        raise ToxdistillError("the student layer list is empty", "give at least one teacher layer, e.g. [2, 4, 6]")
    bad = [x for x in layers if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= n_teacher_layers]
    if bad:
        raise ToxdistillError(
            f"layer {bad[0]!r} is out of range for a {n_teacher_layers}-layer teacher",
            f"use 1-based layer numbers from 1 to {n_teacher_layers}",
        )
    if len(set(layers)) != len(layers):
        raise ToxdistillError(f"layer list {layers} repeats a layer", "list each teacher layer once")
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


def attach_hidden_projection(student: PreTrainedModel, teacher_hidden: int) -> bool:
    """A student of another hidden size gets ``kd_projection`` (student → teacher size) for the cosine term.

    It lives on the model so that the optimizer trains it and epoch checkpoints (and resume) keep it;
    ``detach_hidden_projection`` removes it before the student is saved. Returns whether one was added.
    """
    h = int(student.config.hidden_size)
    if h == teacher_hidden:
        return False
    student.kd_projection = torch.nn.Linear(h, teacher_hidden)
    return True


def detach_hidden_projection(model) -> None:
    """Training-only: the saved student is a plain classifier without the projection."""
    inner = unwrap_peft(model)
    if hasattr(inner, "kd_projection"):
        del inner.kd_projection
