"""Where one training step goes on this CPU: `python bench/experiments/step_profile.py LAYERS VARIANT [--teacher DIR]`.

Trains a student built from the given teacher layers (``[6]``, ``[2,4,6]``, ``[1,2,3,4,5,6]``) for 80 steps of
batch 32 on the first Davidson training rows, through ``train_model`` as the pipeline does, and prints ms per
step. VARIANT: ``fused`` (the pipeline's AdamW), ``unfused`` (torch's default AdamW), ``lora`` / ``lora-nodrop``
(LoRA r=8 with dropout 0.1 / 0.0), and any of them with ``-torchdrop`` for torch's own dropout instead of
``training.dropout``'s, ``-bf16`` for bf16 autocast (``train.bf16``), or with ``-profile`` for torch.profiler's
table.
Figures of 2026-12-02 (2-core Intel Xeon, AMX, AVX-512 VNNI): bench/results/train_step_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch

from toxdistill.config import DataConfig, DistillConfig, LoraConfig, TrainConfig
from toxdistill.data.dataset import load_dataset
from toxdistill.models.lora import add_lora
from toxdistill.models.students import build_student
from toxdistill.models.teacher import load_classifier
from toxdistill.training import trainer as trainer_mod
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.teacher_cache import compute_teacher_outputs
from toxdistill.training.trainer import TeacherTargets, TrainData, TrainJob, train_model

STEPS, BATCH = 80, 32


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("layers", type=json.loads, help="teacher layers to keep, e.g. [6]")
    p.add_argument(
        "variant",
        help="fused, unfused, lora, lora-nodrop; add -torchdrop for torch's dropout, -bf16 for bf16 autocast, "
        "-profile for the op table",
    )
    p.add_argument("--teacher", default=os.path.expanduser("~/toxdistill-runs/davidson-minilm/models/teacher"))
    p.add_argument("--data", default=os.environ.get("TOXDISTILL_DATA", "../shared/data/davidson/labeled_data.csv"))
    a = p.parse_args()
    torch.set_num_threads(2)
    dc = DataConfig(source="davidson", text_col="tweet", label_col="class", focus_class="hate speech")
    ds = load_dataset(a.data, dc)
    sub = ds.subset(ds.ids[: STEPS * BATCH])
    teacher, tok = load_classifier(a.teacher, list(ds.label_names))
    enc = EncodedDataset(sub, tok, 128)
    lora = a.variant.startswith("lora")
    outs = None if lora else compute_teacher_outputs(teacher, enc, progress=False)
    if "torchdrop" in a.variant:  # torch's own dropout, as before training.dropout
        trainer_mod.use_cheap_dropout = lambda model: 0
    if a.variant.startswith("unfused"):
        adamw = torch.optim.AdamW
        torch.optim.AdamW = lambda *args, **kw: adamw(*args, **{**kw, "fused": False})  # type: ignore[misc]
    model = build_student(teacher, a.layers)
    if lora:
        model = add_lora(model, LoraConfig(r=8, alpha=16, dropout=0.0 if "nodrop" in a.variant else 0.1))
    cfg = TrainConfig(epochs=1, lr=1e-4, batch_size=BATCH, class_weights="sqrt-balanced", bf16="bf16" in a.variant)
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if "profile" in a.variant else None
    with tempfile.TemporaryDirectory() as work:
        if prof:
            prof.__enter__()
        r = train_model(
            TrainJob(
                model,
                tok,
                TrainData(sub, sub, 128, encoded=enc),
                cfg,
                work,
                42,
                len(a.layers),
                teacher=None if outs is None else TeacherTargets(DistillConfig(), outs),
                progress=False,
                max_steps=STEPS,
            )
        )
        if prof:
            prof.__exit__(None, None, None)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))
    ms = 1000 * r["train_runtime_s"] / STEPS
    print(f"layers={a.layers} variant={a.variant} steps={STEPS} {ms:.1f} ms/step loss {r['train_loss']:.7f}")


if __name__ == "__main__":
    main()
