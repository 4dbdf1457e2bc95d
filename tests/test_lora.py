import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from toxdistill.config import LoraConfig
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import Predictor
from toxdistill.models.lora import add_lora, count_params, save_lora

from conftest import LABELS, SAMPLE_TEXTS, tiny_bert


@pytest.fixture
def base_dir(tmp_path, tokenizer):
    d = tmp_path / "base"
    tiny_bert(n_layers=2).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def _trained_lora(base_dir):
    model = AutoModelForSequenceClassification.from_pretrained(base_dir)
    peft_model = add_lora(model, LoraConfig(r=4, alpha=8))
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training: make adapters and head non-trivial
        for _n, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    return peft_model


def test_head_is_trainable_and_adapters_are_small(base_dir):
    peft_model = _trained_lora(base_dir)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in trainable)
    assert all("lora_" in n or "classifier" in n for n in trainable)
    total, n_train = count_params(peft_model)
    assert 0 < n_train < total


def test_adapter_save_load_and_merge_give_identical_logits(base_dir, tmp_path, tokenizer):
    from peft import PeftModel

    peft_model = _trained_lora(base_dir)
    peft_model.eval()
    x = tokenizer(SAMPLE_TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        ref = peft_model(**x).logits
    out = tmp_path / "lora"
    out.mkdir()
    save_lora(peft_model, tokenizer, out)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()

    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    loaded = PeftModel.from_pretrained(base, out / "adapter").eval()  # the reference app's way
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()  # merged, plain transformers
    with torch.no_grad():
        unmerged_logits = loaded(**x).logits
        merged_logits = loaded.merge_and_unload()(**x).logits
        plain_logits = plain(**x).logits
    assert torch.allclose(unmerged_logits, ref, atol=1e-5)
    assert torch.allclose(merged_logits, ref, atol=1e-5)
    assert torch.allclose(plain_logits, ref, atol=1e-5)
    # The head was saved with the adapter: a fresh base has a different random head.
    with torch.no_grad():
        fresh = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=3)(**x).logits
    assert not torch.allclose(fresh, ref, atol=1e-3)

    pred_logits, _ = Predictor.load(out).logits(SAMPLE_TEXTS)  # toxdistill's own evaluation path
    np.testing.assert_allclose(pred_logits, ref.numpy(), atol=1e-4)


@pytest.mark.parametrize("targets", [["nope"], ["query", "not_a_module"]])
def test_invalid_target_module(base_dir, targets):
    model = AutoModelForSequenceClassification.from_pretrained(base_dir)
    with pytest.raises(ToxdistillError, match="not in the model"):
        add_lora(model, LoraConfig(target_modules=targets))


def test_adapter_share_budget_on_minilm_shape_and_bert_base_shape():
    """r=8 on MiniLM's shape stays <= 2%; the bert-base config's r=6 stays <= 1% (built in code, no hub)."""
    from transformers import BertConfig, BertForSequenceClassification

    from toxdistill.config import load_config

    for hidden, layers, inter, cfg_file, budget in (
        (384, 6, 1536, "davidson-minilm.yaml", 0.02),
        (768, 12, 3072, "davidson-bert-base.yaml", 0.01),
    ):
        lcfg = load_config(f"configs/{cfg_file}").lora
        cfg = BertConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            intermediate_size=inter,
            num_attention_heads=12,
            num_labels=3,
            id2label=dict(enumerate(LABELS)),
        )
        with torch.device("meta"):
            m = BertForSequenceClassification(cfg)
        total, trainable = count_params(add_lora(m, lcfg))
        assert trainable / total <= budget, (cfg_file, trainable / total)
