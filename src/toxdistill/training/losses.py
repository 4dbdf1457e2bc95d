"""Distillation losses as pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-target loss of Hinton et al. (2015).

    ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch, where ``t`` and ``s`` are the
    teacher's and the student's logits. The ``T²`` factor keeps the gradient scale of this term
    independent of ``T`` (the soft gradients shrink as ``1/T²``).
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.to(student_logits.dtype) / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """``mean_i (1 − cos(h_s,i, h_t,i))`` over the batch; both states have the same hidden size."""
    cos = F.cosine_similarity(student_hidden, teacher_hidden.to(student_hidden.dtype), dim=-1)
    return (1.0 - cos).mean()


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Class-weighted CE against class ids ``(N,)`` or target distributions ``q`` of shape ``(N, K)``.

    ``Σ_i Σ_c w_c q_ic (−log p_ic) / Σ_i Σ_c w_c q_ic`` with ``p = softmax(logits)`` and ``w = 1`` when
    unweighted. For class ids ``q_i`` is one-hot and this is ``Σ_i w_{y_i} · CE_i / Σ_i w_{y_i}``, torch's
    weighted mean, so soft targets keep the loss on the scale of the hard-label one.
    """
    if not labels.is_floating_point():
        w = None if class_weights is None else class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, labels, weight=w)
    # In fp32: under bf16 autocast, rounding the targets would bias the loss.
    wq = labels.float() * (1.0 if class_weights is None else class_weights.to(labels.device).float())
    return -(wq * F.log_softmax(logits.float(), dim=-1)).sum() / wq.sum()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    temperature: float = 2.0,
    w_ce: float = 1.0,
    w_kd: float = 1.0,
    w_cos: float = 0.5,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full student objective.

    ``L = w_ce · CE(s, y) + w_kd · T² · KL(softmax(t/T) ‖ softmax(s/T)) + w_cos · (1 − cos(h_s, h_t))``

    each term averaged over the batch, with ``h`` the first token's final-layer hidden state ([CLS]; the
    caller projects the student's to the teacher's size where they differ) and ``y`` class ids or target
    distributions (see ``cross_entropy``, which also applies ``class_weights``; KL and cosine are unweighted).
    Returns the loss and its parts (as floats, for logs).
    """
    ce = cross_entropy(student_logits, labels, class_weights)
    kd = kd_kl_loss(student_logits, teacher_logits, temperature)
    cos = cosine_loss(student_hidden, teacher_hidden)
    total = w_ce * ce + w_kd * kd + w_cos * cos
    return total, {"ce": float(ce.detach()), "kd": float(kd.detach()), "cos": float(cos.detach())}
