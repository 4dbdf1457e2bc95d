import math

import pytest
import torch

from toxdistill.losses import cosine_loss, distillation_loss, kd_kl_loss


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
    s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = torch.tensor([1, 1])
    w = torch.tensor([1.0, 3.0, 1.0])
    zero = torch.zeros(2, 2)
    plain, _ = distillation_loss(s, s, y, zero + 1, zero + 1, w_kd=0, w_cos=0)
    weighted, _ = distillation_loss(s, s, y, zero + 1, zero + 1, w_kd=0, w_cos=0, class_weights=w)
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-6)  # one class present: weights cancel
