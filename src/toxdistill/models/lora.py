"""LoRA through peft's public API only (task_type=SEQ_CLS, so the classifier head is trained and saved)."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel

from toxdistill.config import LoraConfig
from toxdistill.errors import ToxdistillError
from toxdistill.models.families import HEAD_EXTRA, LORA_TARGETS, lora_targets


def add_lora(model: PreTrainedModel, cfg: LoraConfig):
    """Wrap ``model`` in a PeftModel with adapters on the family's (or the config's) target modules; only the
    adapters and the head train."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    model_type = model.config.model_type
    targets = lora_targets(model_type, cfg.target_modules)
    names = {n for n, _ in model.named_modules()}
    for t in targets:
        if not any(n == t or n.endswith("." + t) for n in names):
            raise ToxdistillError(
                f"LoRA target module {t!r} is not in the model ({model_type})",
                f"this family's linear layers are e.g. {', '.join(LORA_TARGETS.get(model_type, ['query', 'value']))}",
            )
    peft_cfg = PeftLoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        modules_to_save=HEAD_EXTRA.get(model_type),  # SEQ_CLS adds "classifier" itself
    )
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise ToxdistillError(f"cannot add LoRA: {str(e).splitlines()[0][:160]}", "check lora.target_modules") from None


# The adapter's base, relative to the adapter folder. Plain peft resolves a base path against the working
# directory, so no stored path loads from everywhere; the README's one-liner passes ``<model>/base`` instead.
ADAPTER_BASE = "../base"


def save_lora(peft_model, tokenizer, out_dir: Path) -> PreTrainedModel:
    """Save the adapter to ``out_dir/adapter`` and the merged model to ``out_dir`` as a plain transformers
    folder; ``out_dir/base`` must hold the base. Returns the merged model. From any directory, also after the
    folder moved: ``PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(d/"base"), d/"adapter")``.
    """
    adapter_dir = out_dir / "adapter"
    for c in peft_model.peft_config.values():
        c.base_model_name_or_path = ADAPTER_BASE
    peft_model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return merged
