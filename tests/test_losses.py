import math

import pytest
import torch

from toxdistill.training.losses import cosine_loss, cross_entropy, distillation_loss, kd_kl_loss


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_distillation_loss_matches_hand_computation():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    t = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 2.0, 0.5]])
    y = torch.tensor([0, 1])
    hs = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    ht = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    T, w_ce, w_kd, w_cos = 2.0, 0.7, 1.3, 0.4

    ce = sum(-math.log(_softmax(s[i].tolist())[y[i]]) for i in range(2)) / 2
    kl = 0.0
    for i in range(2):
        ps, pt = _softmax((s[i] / T).tolist()), _softmax((t[i] / T).tolist())
        kl += sum(pt[k] * math.log(pt[k] / ps[k]) for k in range(3))
    kl = kl / 2 * T * T
    cos = ((1 - 0.0) + (1 - 1.0)) / 2  # orthogonal, then parallel
    expected = w_ce * ce + w_kd * kl + w_cos * cos

    total, parts = distillation_loss(s, t, y, hs, ht, temperature=T, w_ce=w_ce, w_kd=w_kd, w_cos=w_cos)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts["ce"] == pytest.approx(ce, rel=1e-6)
    assert parts["kd"] == pytest.approx(kl, rel=1e-6)
    assert parts["cos"] == pytest.approx(cos, abs=1e-7)


def test_kl_is_zero_for_identical_logits_and_scales_with_t_squared():
    x = torch.randn(4, 3)
    assert kd_kl_loss(x, x, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    s, t = torch.randn(8, 3), torch.randn(8, 3)
    # At large T the KL shrinks as 1/T², so T²·KL tends to a constant (the logit-matching limit).
    assert kd_kl_loss(s, t, 50.0).item() == pytest.approx(kd_kl_loss(s, t, 100.0).item(), rel=0.05)


def test_cosine_loss_range():
    h = torch.randn(5, 8)
    assert cosine_loss(h, h).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_loss(h, -h).item() == pytest.approx(2.0, abs=1e-6)


def test_class_weighted_ce_in_distillation():
    """Mixed labels, so the weights matter: the CE part is Σ w_y·CE_i / Σ w_y, and KD and cosine are unweighted."""
    s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.5, 1.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 2.0]])
    y = torch.tensor([0, 1, 0])
    w = torch.tensor([3.0, 1.0, 1.0])
    h_s, h_t = torch.randn(3, 4), torch.randn(3, 4)
    plain, p_parts = distillation_loss(s, t, y, h_s, h_t)
    weighted, w_parts = distillation_loss(s, t, y, h_s, h_t, class_weights=w)
    ce_i = torch.nn.functional.cross_entropy(s, y, reduction="none")
    assert w_parts["ce"] == pytest.approx(float((w[y] * ce_i).sum() / w[y].sum()), rel=1e-6)
    assert p_parts["ce"] == pytest.approx(float(ce_i.mean()), rel=1e-6)
    assert w_parts["ce"] != pytest.approx(p_parts["ce"], rel=1e-3)  # the weights changed the CE term ...
    assert (w_parts["kd"], w_parts["cos"]) == pytest.approx((p_parts["kd"], p_parts["cos"]))  # ... and only it
    assert float(weighted - plain) == pytest.approx(w_parts["ce"] - p_parts["ce"], rel=1e-5)


def test_soft_target_ce_reduces_to_hard_ce_and_matches_its_formula():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 1, 1, 0])
    w = torch.tensor([2.5, 0.6, 1.2])
    onehot = torch.nn.functional.one_hot(y, 3).float()
    for weights in (None, w):
        assert cross_entropy(logits, onehot, weights).item() == pytest.approx(
            cross_entropy(logits, y, weights).item(), rel=1e-6
        )
    q = torch.softmax(torch.randn(6, 3), -1)
    logp = torch.log_softmax(logits, -1)
    by_hand = -(q * w * logp).sum() / (q * w).sum()
    assert cross_entropy(logits, q, w).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # Unweighted, the gradient vanishes where the model's distribution equals the target.
    at_target = torch.log(q).requires_grad_(True)
    cross_entropy(at_target, q).backward()
    assert at_target.grad.abs().max().item() < 1e-6


def test_distillation_loss_takes_soft_targets():
    s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    h = torch.ones(2, 4)
    y = torch.tensor([0, 1])
    hard, _ = distillation_loss(s, s, y, h, h, w_kd=0, w_cos=0)
    same, _ = distillation_loss(s, s, torch.nn.functional.one_hot(y, 3).float(), h, h, w_kd=0, w_cos=0)
    soft, parts = distillation_loss(s, s, torch.full((2, 3), 1 / 3), h, h, w_kd=0, w_cos=0)
    assert same.item() == pytest.approx(hard.item(), rel=1e-6)
    assert soft.item() > hard.item()  # a uniform target disagrees with these confident logits
    assert parts["ce"] == pytest.approx(soft.item(), rel=1e-6)


def test_class_weights_follow_the_logits_device():
    # Class weights are built on the CPU once per run; on a GPU the logits are not (an H200 run failed here).
    # "meta" stands in for a second device: mixing it with CPU tensors fails the same way cuda does.
    w = torch.tensor([2.0, 1.0, 0.5])
    logits = torch.empty(4, 3, device="meta")
    for labels in (torch.empty(4, dtype=torch.long, device="meta"), torch.empty(4, 3, device="meta")):
        assert cross_entropy(logits, labels, w).device.type == "meta"
