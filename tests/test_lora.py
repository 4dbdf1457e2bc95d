import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from toxdistill.config import LoraConfig
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import Predictor
from toxdistill.models.families import count_params
from toxdistill.models.lora import ADAPTER_BASE, add_lora, save_lora

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
    """save_lora writes a plain merged folder and an adapter that plain peft loads onto ``<folder>/base``."""
    from peft import PeftModel
    from safetensors.torch import load_file

    peft_model = _trained_lora(base_dir)
    peft_model.eval()
    x = tokenizer(SAMPLE_TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        ref = peft_model(**x).logits
    out = tmp_path / "lora"
    shutil.copytree(base_dir, out / "base")  # where the pipeline puts the base beside the adapter
    merged = save_lora(peft_model, tokenizer, out)
    with torch.no_grad():
        assert torch.allclose(merged.eval()(**x).logits, ref, atol=1e-5)

    # The adapter: LoRA weights and the head, its base named relative to itself.
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert all("lora_" in k or "classifier" in k for k in adapter) and any("classifier" in k for k in adapter)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == ADAPTER_BASE
    base = AutoModelForSequenceClassification.from_pretrained(out / "base")
    loaded = PeftModel.from_pretrained(base, out / "adapter").eval()  # save_lora's docstring, the README's way

    # The merged folder: plain transformers, no peft left in it.
    assert not [k for k in load_file(str(out / "model.safetensors")) if "lora_" in k or "base_layer" in k]
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**x).logits, ref, atol=1e-5)
        assert torch.allclose(plain(**x).logits, ref, atol=1e-5)
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
        (384, 6, 1536, None, 0.02),  # the default config
        (768, 12, 3072, "configs/davidson-bert-base.yaml", 0.01),
    ):
        lcfg = load_config(cfg_file).lora
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
