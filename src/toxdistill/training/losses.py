"""Distillation losses as pure tensor functions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def kd_kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft-target loss of Hinton et al. (2015).

    ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch, where ``t`` and ``s`` are the
    teacher's and the student's logits. The ``T²`` factor keeps the gradient scale of this term
    independent of ``T`` (the soft gradients shrink as ``1/T²``). ``rows`` (bool, (N,)): the rows that have
    teacher targets; the others add 0, and the sum is still divided by N, so a scored row weighs what it
    weighs in a batch where every row is scored.
    """
    t = temperature
    # In fp32: under bf16 autocast the student's logits are bf16, and the teacher's targets must not round to them.
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    if rows is None:
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)
    kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1)
    return torch.where(rows, kl, 0.0).sum() / len(kl) * (t * t)


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """``mean_i (1 − cos(h_s,i, h_t,i))`` over the batch; both states have the same hidden size."""
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)  # fp32, as kd_kl_loss
    return (1.0 - cos).mean()


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Class-weighted CE against class ids ``(N,)`` or target distributions ``q`` of shape ``(N, K)``.

    ``Σ_i Σ_c w_c q_ic (−log p_ic) / Σ_i Σ_c w_c q_ic`` with ``p = softmax(logits)`` and ``w = 1`` when
    unweighted. For class ids ``q_i`` is one-hot and this is ``Σ_i w_{y_i} · CE_i / Σ_i w_{y_i}``, torch's
    weighted mean, so soft targets keep the loss on the scale of the hard-label one. A row whose ``q_i`` is all
    zeros (a transfer-set row, which has no label) adds nothing to either sum; a batch of such rows alone has a
    CE of 0.
    """
    if not labels.is_floating_point():
        w = None if class_weights is None else class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, labels, weight=w)
    # In fp32: under bf16 autocast, rounding the targets would bias the loss.
    wq = labels.float() * (1.0 if class_weights is None else class_weights.to(labels.device).float())
    return -(wq * F.log_softmax(logits.float(), dim=-1)).sum() / wq.sum().clamp(min=torch.finfo(torch.float32).tiny)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-label hard-label loss: binary cross-entropy of one sigmoid per label, against 0/1 (or soft) targets.

    ``mean_{i,l} −(w_l y_il log σ(z_il) + (1 − y_il) log(1 − σ(z_il)))`` with ``w`` the per-label ``pos_weight``
    (1 when None): it scales each label's positive rows, torch's ``pos_weight``, the multi-label counterpart of
    ``cross_entropy``'s class weights. Computed in fp32, as under bf16 autocast the targets would round.
    """
    w = None if pos_weight is None else pos_weight.to(logits.device).float()
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=w)


def kd_bce_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-label soft-target loss: the teacher's tempered sigmoid per label as the target of the student's.

    ``T² · mean_{i,l} BCE(σ(s_il / T), σ(t_il / T))``. As in ``kd_kl_loss`` the ``T²`` keeps its gradient on
    the scale of the hard-label term; its minimum is the teacher's binary entropy, not 0, as for any soft target.
    """
    t = temperature
    target = torch.sigmoid(teacher_logits.float() / t)
    return F.binary_cross_entropy_with_logits(student_logits.float() / t, target) * (t * t)


def hidden_mse_loss(
    student_states: Sequence[torch.Tensor], teacher_states: Sequence[torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """Intermediate-layer distillation (TinyBERT, Jiao et al. 2020), over the P mapped layer pairs p:

    ``L_hidden = (1/P) Σ_p  Σ_{b,i} m_bi · ‖h^s_p,bi − h^t_p,bi‖² / d  /  Σ_{b,i} m_bi``

    the squared error per hidden unit, averaged over the real tokens (``mask`` (B, L), the attention mask, is 1
    on them) and over the pairs. ``student_states[p]`` and ``teacher_states[p]`` are (B, L, d) states of one
    pair, the student's already projected to the teacher's width ``d`` where the widths differ.
    """
    if len(student_states) != len(teacher_states) or not student_states:
        raise ValueError("hidden_mse_loss needs one teacher state per student state, and at least one pair")
    m = mask.float()  # fp32 throughout, as kd_kl_loss
    n_tokens = m.sum().clamp(min=1.0)
    terms = [
        (((s.float() - t.float()) ** 2).mean(-1) * m).sum() / n_tokens
        for s, t in zip(student_states, teacher_states, strict=True)
    ]
    return torch.stack(terms).mean()


def _relation_log_probs(x: torch.Tensor, heads: int, key_mask: torch.Tensor) -> torch.Tensor:
    """``log softmax(A Aᵀ / √d_r)`` per relation head: ``x`` (B, L, H) is split into (B, heads, L, H / heads);
    masked keys get probability 0."""
    b, n, h = x.shape
    a = x.float().view(b, n, heads, h // heads).transpose(1, 2)
    scores = a @ a.transpose(-1, -2) / math.sqrt(h // heads)
    scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def attention_relation_loss(
    student_qkv: Sequence[torch.Tensor], teacher_qkv: Sequence[torch.Tensor], mask: torch.Tensor, heads: int
) -> torch.Tensor:
    """Self-attention relation distillation (MiniLMv2, Wang et al. 2021) on one layer's queries, keys and values.

    For each of X = Q, K, V, split into ``heads`` relation heads a of width d_r = H / heads (each model its own
    H, so the widths and the models' attention-head counts may differ):

    ``R^X_a = softmax(X_a X_aᵀ / √d_r)`` over the real keys, and
    ``L_attn = 1/(3 · heads · Σ_b n_b) · Σ_X Σ_a Σ_{b, real query i} KL(R^X_t,a,bi ‖ R^X_s,a,bi)``

    with ``n_b`` the real tokens of row b (``mask`` (B, L), 1 on real tokens). ``student_qkv`` and ``teacher_qkv``
    are the (B, L, H) outputs of the query, key and value projections, in that order.
    """
    if len(student_qkv) != 3 or len(teacher_qkv) != 3:
        raise ValueError("attention_relation_loss needs the query, key and value states of both models")
    for x in (*student_qkv, *teacher_qkv):
        if x.shape[-1] % heads:
            raise ValueError(f"{heads} relation heads do not divide a width of {x.shape[-1]}")
    real = mask.bool()
    queries = real[:, None, :].expand(-1, heads, -1).float()
    terms = []
    for s, t in zip(student_qkv, teacher_qkv, strict=True):
        log_s = _relation_log_probs(s, heads, real)
        log_t = _relation_log_probs(t.detach(), heads, real)
        # Masked keys: both probabilities are 0; where() keeps their 0 · (−big + big) out of the sum.
        kl = torch.where(real[:, None, None, :], log_t.exp() * (log_t - log_s), 0.0).sum(-1)
        terms.append((kl * queries).sum() / queries.sum().clamp(min=1.0))
    return torch.stack(terms).mean()


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
    w_hidden: float = 0.0,
    hidden_states: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    w_attn: float = 0.0,
    qkv_states: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    mask: torch.Tensor | None = None,
    attn_heads: int = 1,
    kd_rows: torch.Tensor | None = None,
    multi_label: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full student objective.

    ``L = w_ce · CE(s, y) + w_kd · T² · KL(softmax(t/T) ‖ softmax(s/T)) + w_cos · (1 − cos(h_s, h_t))
    + w_hidden · L_hidden + w_attn · L_attn``

    the first three averaged over the batch, with ``h`` the first token's final-layer hidden state ([CLS]; the
    caller projects the student's to the teacher's size where they differ) and ``y`` class ids or target
    distributions (see ``cross_entropy``, which also applies ``class_weights``; KL and cosine are unweighted).
    ``L_hidden`` is ``hidden_mse_loss`` on ``hidden_states`` = (student's, teacher's) paired layer states and
    ``L_attn`` is ``attention_relation_loss`` on ``qkv_states`` = (student's, teacher's) last-layer Q, K, V with
    ``attn_heads`` relation heads, both over the real tokens of ``mask``. The cosine, hidden and attention terms
    are computed (and reported) only where their weight is above 0. ``kd_rows`` masks the KL term to the rows
    that have teacher targets (``kd_kl_loss``); None: every row has them. Returns the loss and its parts (as floats,
    for logs). With ``multi_label`` the first two terms are their sigmoid counterparts, ``bce_loss`` (with
    ``class_weights`` as each label's ``pos_weight``) and ``kd_bce_loss``, and ``y`` is an (N, L) 0/1 matrix.
    """
    if multi_label:
        # A multi-label run's teacher is a model (config validation): every row has its targets.
        assert kd_rows is None, "a multi-label teacher scores every row"
        ce = bce_loss(student_logits, labels, class_weights)
        kd = kd_bce_loss(student_logits, teacher_logits, temperature)
    else:
        ce = cross_entropy(student_logits, labels, class_weights)
        kd = kd_kl_loss(student_logits, teacher_logits, temperature, kd_rows)
    total = w_ce * ce + w_kd * kd
    parts = {"ce": float(ce.detach()), "kd": float(kd.detach())}
    if w_cos > 0:  # off, a student of another width has no projection for it (stages.stage_distill)
        cos = cosine_loss(student_hidden, teacher_hidden)
        total = total + w_cos * cos
        parts["cos"] = float(cos.detach())
    if w_hidden > 0:
        if hidden_states is None or mask is None:
            raise ValueError("w_hidden > 0 needs hidden_states and mask")
        hid = hidden_mse_loss(*hidden_states, mask)
        total = total + w_hidden * hid
        parts["hidden"] = float(hid.detach())
    if w_attn > 0:
        if qkv_states is None or mask is None:
            raise ValueError("w_attn > 0 needs qkv_states and mask")
        att = attention_relation_loss(*qkv_states, mask, attn_heads)
        total = total + w_attn * att
        parts["attn"] = float(att.detach())
    return total, parts
