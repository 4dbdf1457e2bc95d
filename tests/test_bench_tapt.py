"""bench/tapt.py: task-adaptive masked-LM pretraining of the teacher (an A/B experiment, not a stage)."""

import pytest
import torch
from safetensors.torch import load_file

from toxdistill.models.teacher import load_classifier

from conftest import LABELS, SAMPLE_TEXTS, load_bench_script


def _tapt():
    return load_bench_script("tapt")


def test_mlm_adapt_trains_the_encoder_and_keeps_the_pooler(tmp_path, tiny_model_dir):
    out = tmp_path / "adapted"
    hist = _tapt().mlm_adapt(str(tiny_model_dir), SAMPLE_TEXTS * 8, out, epochs=2, lr=5e-3, batch_size=8, max_length=32)
    assert len(hist["mlm_epoch_losses"]) == 2
    assert hist["mlm_epoch_losses"][-1] < hist["mlm_epoch_losses"][0]  # the masked-LM loss went down
    before = {k.removeprefix("bert."): v for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items()}
    after = load_file(str(out / "model.safetensors"))
    assert not torch.equal(
        after["encoder.layer.0.attention.self.query.weight"], before["encoder.layer.0.attention.self.query.weight"]
    )
    assert torch.equal(after["pooler.dense.weight"], before["pooler.dense.weight"])
    assert not any(k.startswith("cls.") for k in after)  # the masked-LM head is not saved
    assert not list(tmp_path.glob(".adapted*"))  # no work or temp folders left behind
    model, tok = load_classifier(str(out), LABELS, seed=0)
    assert torch.equal(
        model.bert.encoder.layer[0].attention.self.query.weight, after["encoder.layer.0.attention.self.query.weight"]
    )
    assert tok("hello")["input_ids"]


def test_masked_only_loss_equals_the_full_masked_lm_loss(tokenizer):
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    _masked_only_loss = _tapt()._masked_only_loss
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertForMaskedLM(cfg).eval()
    batch = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)(
        [{"input_ids": ids} for ids in tokenizer(SAMPLE_TEXTS, truncation=True, max_length=32)["input_ids"]]
    )
    with torch.no_grad():
        assert _masked_only_loss(model, batch).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)
