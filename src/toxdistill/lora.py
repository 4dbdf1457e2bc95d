"""LoRA through peft's public API only (task_type=SEQ_CLS, so the classifier head is trained and saved)."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel

from .config import LoraConfig
from .errors import ToxdistillError


def add_lora(model: PreTrainedModel, cfg: LoraConfig):
    """Wrap ``model`` in a PeftModel with adapters on ``cfg.target_modules``; only adapters and head train."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    peft_cfg = PeftLoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
    )
    names = {n for n, _ in model.named_modules()}
    for t in cfg.target_modules:
        if not any(n == t or n.endswith("." + t) for n in names):
            raise ToxdistillError(
                f"LoRA target module {t!r} is not in the model",
                "use names like query, key, value, attention.output.dense, intermediate.dense, output.dense",
            )
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise ToxdistillError(f"cannot add LoRA: {str(e).splitlines()[0][:160]}", "check lora.target_modules") from None


def count_params(model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def save_lora(peft_model, tokenizer, out_dir: Path) -> PreTrainedModel:
    """Save the adapter to ``out_dir/adapter`` (loads with ``PeftModel.from_pretrained(base, dir)``)
    and the merged model to ``out_dir`` as a plain transformers folder. Returns the merged model.
    """
    adapter_dir = out_dir / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return merged
