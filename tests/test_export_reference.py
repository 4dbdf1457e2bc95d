"""The torch reference of an export's parity: computed once per model, reused only where it is torch's own."""

from __future__ import annotations

import os

import numpy as np
import pytest

from toxdistill.export import reference


class _Torch:
    """A stand-in for a torch Predictor: logits that depend on the text, and a record of what it scored."""

    def __init__(self, shift: float = 0.0):
        self.calls: list[int] = []
        self.shift = shift

    def logits(self, texts, batch_size):
        self.calls.append(len(texts))
        out = np.array([[len(t), -len(t), self.shift] for t in texts], dtype=np.float32)
        return out, np.zeros(len(texts), dtype=bool)


TEXTS = [f"text number {i} " + "x" * i for i in range(40)]


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    reference._slot.clear()
    return tmp_path


def test_a_second_graph_of_the_same_model_reuses_the_torch_pass(model_dir):
    torch = _Torch()
    first = reference.torch_reference(torch, model_dir, TEXTS, 64)
    again = reference.torch_reference(torch, model_dir, TEXTS, 64)
    assert torch.calls == [len(TEXTS)]
    assert again is first


def test_an_offered_reference_costs_only_the_spot_check(model_dir):
    torch = _Torch()
    saved, _ = _Torch().logits(TEXTS, 64)
    reference.offer(model_dir, TEXTS, 64, saved)
    got = reference.torch_reference(torch, model_dir, TEXTS, 64)
    assert torch.calls == [reference.SPOT_TEXTS]
    np.testing.assert_array_equal(got, saved)
    reference.torch_reference(torch, model_dir, TEXTS, 64)
    assert torch.calls == [reference.SPOT_TEXTS], "a checked reference is not checked again"


def test_an_offered_reference_that_torch_disagrees_with_is_replaced(model_dir):
    torch = _Torch(shift=1.0)  # the folder's weights no longer give the saved logits
    saved, _ = _Torch().logits(TEXTS, 64)
    reference.offer(model_dir, TEXTS, 64, saved)
    got = reference.torch_reference(torch, model_dir, TEXTS, 64)
    assert torch.calls == [reference.SPOT_TEXTS, len(TEXTS)]
    np.testing.assert_array_equal(got, torch.logits(TEXTS, 64)[0])


def test_new_weights_other_texts_or_batches_are_a_new_pass(model_dir):
    torch = _Torch()
    reference.torch_reference(torch, model_dir, TEXTS, 64)
    reference.torch_reference(torch, model_dir, TEXTS, 32)
    reference.torch_reference(torch, model_dir, TEXTS[:10], 32)
    w = model_dir / "model.safetensors"
    w.write_bytes(b"new weights")
    os.utime(w, ns=(1, 1))
    reference.torch_reference(torch, model_dir, TEXTS[:10], 32)
    assert torch.calls == [len(TEXTS), len(TEXTS), 10, 10]


def test_logits_of_another_length_are_not_offered(model_dir):
    torch = _Torch()
    reference.offer(model_dir, TEXTS, 64, np.zeros((3, 3), dtype=np.float32))
    reference.torch_reference(torch, model_dir, TEXTS, 64)
    assert torch.calls == [len(TEXTS)]
