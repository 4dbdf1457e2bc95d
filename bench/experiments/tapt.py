"""Task-adaptive pretraining (TAPT, Gururangan et al., 2020) of the teacher: an A/B experiment.

    python bench/experiments/tapt.py --run runs/davidson-minilm --out runs/tapt-minilm --epochs 3
    toxdistill run --set teacher.model=runs/tapt-minilm --name davidson-minilm-tapt
    python bench/compare_runs.py runs/davidson-minilm-tapt runs/davidson-minilm -o bench/results/tapt_ab.json

The teacher's pretraining never saw tweets full of slurs and hashtags. This runs more masked-LM epochs
over the run's *training* texts (never validation or test) and writes a plain ``save_pretrained`` encoder
folder, which ``teacher.model`` accepts. On the default run it changed nothing that validation and test
agree on (bench/README.md), so it is an experiment here, not a pipeline stage.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer

from toxdistill.config import load_config
from toxdistill.data.dataset import load_dataset, resolve_data_path
from toxdistill.data.split import make_or_load_split
from toxdistill.errors import ToxdistillError
from toxdistill.io import atomic_dir
from toxdistill.models.teacher import check_safetensors, load_tokenizer, resolve_model_path


def _masked_only_loss(model, inputs) -> torch.Tensor:
    """Masked-LM cross-entropy with the vocabulary head run on the masked positions only.

    The head projects to ~30k words; running it on every token spends ~85% of that work on positions
    whose loss is ignored. Same loss as ``model(**inputs).loss``, a fraction of the cost.
    """
    labels = inputs["labels"]
    if not hasattr(model, "cls"):  # not BERT's masked-LM layout: the model's own (full) loss
        return model(**inputs).loss
    enc_inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    hidden = model.base_model(**enc_inputs).last_hidden_state
    picked = labels != -100
    return torch.nn.functional.cross_entropy(model.cls(hidden[picked]), labels[picked])


class _MaskedOnlyTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return _masked_only_loss(model, inputs)


def mlm_adapt(
    spec: str,
    texts: list[str],
    out_dir: Path,
    *,
    epochs: float = 3.0,
    lr: float = 1e-4,
    batch_size: int = 32,
    mask_prob: float = 0.15,
    max_length: int = 128,
    seed: int = 42,
    progress: bool = True,
) -> dict:
    """Masked-LM training of ``spec``'s encoder on ``texts``; saves encoder + original pooler to ``out_dir``.

    Checkpoints without an MLM head (sentence-transformers models such as all-MiniLM-L6-v2) get a fresh
    one, tied to the word embeddings as usual. The pooler is not part of a masked-LM model, so the
    original pooler weights are put back before saving: classifiers built on the folder start from them.
    """
    from transformers import (
        AutoModel,
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        TrainingArguments,
    )

    path = resolve_model_path(spec)
    check_safetensors(path)
    tok = load_tokenizer(path)
    torch.manual_seed(seed)
    mlm = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True)
    enc = tok(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    rows = [
        {"input_ids": ids, "special_tokens_mask": m} for ids, m in zip(enc["input_ids"], enc["special_tokens_mask"])
    ]
    work = Path(out_dir).with_name(f".{Path(out_dir).name}.work")
    args = TrainingArguments(
        output_dir=str(work),
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        warmup_steps=0.06,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=0.01,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",  # tweets are short; grouping cuts padding ~3x
        save_strategy="no",
        logging_strategy="epoch",
        seed=seed,
        data_seed=seed,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=mask_prob)
    trainer = _MaskedOnlyTrainer(model=mlm, args=args, train_dataset=rows, data_collator=collator)
    result = trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]

    base = AutoModel.from_pretrained(path, use_safetensors=True)
    report = base.load_state_dict(trainer.model.base_model.state_dict(), strict=False)
    if report.unexpected_keys or any("pooler" not in k for k in report.missing_keys):
        raise RuntimeError(f"encoder weights did not line up: {report}")
    with atomic_dir(Path(out_dir)) as tmp:
        base.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return {"mlm_epoch_losses": losses, "train_runtime_s": float(result.metrics.get("train_runtime", 0.0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="config (default: the run's config.yaml)")
    ap.add_argument("--data", default=None, help="data file (default: $TOXDISTILL_DATA, then the cache)")
    ap.add_argument("--run", required=True, help="run folder whose split.json gives the training texts")
    ap.add_argument("--out", required=True, help="where the adapted encoder folder goes (a new folder)")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    a = ap.parse_args()

    run, out = Path(a.run), Path(a.out)
    split_file = run / "split.json"
    if not split_file.is_file():
        raise SystemExit(f"error: {split_file} not found; run 'toxdistill run' first (the split is its first step)")
    if out.exists() and any(out.iterdir()) and not a.force:
        raise SystemExit(f"error: {out} exists and is not empty; pick a new --out or pass --force to replace it")
    try:
        cfg = load_config(a.config or run / "config.yaml")
        ds = load_dataset(resolve_data_path(cfg.data, a.data), cfg.data)
        split = make_or_load_split(ds, split_file, cfg.data, cfg.seed)
    except ToxdistillError as e:
        raise SystemExit(f"error: {e}") from None
    t0 = time.perf_counter()
    hist = mlm_adapt(cfg.teacher.model, split.train.texts, out, epochs=a.epochs, lr=a.lr, seed=cfg.seed)
    print(json.dumps({**hist, "wall_s": round(time.perf_counter() - t0, 1), "rows": len(split.train)}))


if __name__ == "__main__":
    main()
