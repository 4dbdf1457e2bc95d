import pytest
import torch
from torch import nn

from toxdistill.config import LoraConfig
from toxdistill.models.lora import add_lora
from toxdistill.training.dropout import CheapDropout, cheap_dropout, use_cheap_dropout

from conftest import tiny_bert

N = 1_000_000  # a keep share within ±0.0015 of 0.9 is ±5 standard deviations


def test_cheap_dropout_keeps_one_minus_p_and_scales_the_kept_by_its_inverse():
    torch.manual_seed(0)
    x = torch.rand(N) + 1.0  # no zeros in the input, so a zero in the output is a dropped element
    y = cheap_dropout(x, 0.1)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.0015)
    assert torch.allclose(y[kept], x[kept] / 0.9)
    # Four decisions share one 64-bit draw: every two of its lanes must still be independent (0.9² kept together).
    pairs = (kept[0::2] & kept[1::2]).float().mean().item()
    assert pairs == pytest.approx(0.81, abs=0.003)
    lanes = kept.view(-1, 4)  # and each lane pair alone, 250,000 draws each: ±0.004 is ±5 standard deviations
    for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)):
        assert (lanes[:, i] & lanes[:, j]).float().mean().item() == pytest.approx(0.81, abs=0.004)
    assert cheap_dropout(x, 0.5).ne(0).float().mean().item() == pytest.approx(0.5, abs=0.0025)


def test_cheap_dropout_is_the_identity_off_training_and_zero_at_p_one():
    x = torch.randn(5, 7)
    assert cheap_dropout(x, 0.1, training=False) is x
    assert cheap_dropout(x, 0.0) is x
    assert torch.equal(cheap_dropout(x, 1.0), torch.zeros_like(x))
    assert cheap_dropout(torch.randn(3, 5, 6), 0.2).shape == (3, 5, 6)  # n not a multiple of 4 draws


def test_cheap_dropout_gradient_is_its_mask_over_keep():
    torch.manual_seed(1)
    x = torch.randn(4, 9, 16, requires_grad=True)
    y = cheap_dropout(x, 0.25)
    y.sum().backward()
    mask = (y != 0).float()
    assert torch.allclose(x.grad, mask / 0.75)


def test_cheap_dropout_follows_torchs_seed():
    x = torch.randn(2, 50, 32)
    torch.manual_seed(7)
    a = cheap_dropout(x, 0.1)
    torch.manual_seed(7)
    b = cheap_dropout(x, 0.1)
    c = cheap_dropout(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_use_cheap_dropout_swaps_every_dropout_of_the_network_and_peft_in_place():
    model = tiny_bert(n_layers=2)
    plain = [m.p for m in model.modules() if type(m) is nn.Dropout and m.p > 0]
    model.eval()
    ids = torch.randint(5, 60, (3, 8), generator=torch.Generator().manual_seed(0))
    before = model(input_ids=ids).logits
    assert use_cheap_dropout(model) == len(plain) > 0
    assert sorted(m.p for m in model.modules() if isinstance(m, CheapDropout)) == sorted(plain)
    assert not any(type(m) is nn.Dropout and m.p > 0 for m in model.modules())
    assert torch.equal(model(input_ids=ids).logits, before)  # eval: the same network
    peft_model = add_lora(tiny_bert(n_layers=2), LoraConfig(r=2, alpha=4, dropout=0.1))
    n = use_cheap_dropout(peft_model)
    lora_drops = [m for name, m in peft_model.named_modules() if ".lora_dropout." in name]
    assert lora_drops and all(isinstance(m, CheapDropout) and m.p == 0.1 for m in lora_drops)
    assert n == len(plain) + len(lora_drops)
