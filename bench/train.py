"""Training throughput benchmark: `python bench/train.py [--data CSV] [--teacher SPEC] [-o bench.json]`.

Training throughput, measured side by side in one process on the same rows.

Set-ups: (a) pad every batch to 128 in random order (the reference work's set-up), (b) dynamic padding,
(c) dynamic padding with length-grouped batches. Each is timed for the teacher's fine-tuning and for
a student's distillation; distillation is also timed with live teacher forward passes instead of the
cache, and against plain fine-tuning of the same student (the cache should make them cost the same).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from toxdistill.config import DataConfig, DistillConfig, TrainConfig
from toxdistill.data.dataset import Dataset, load_dataset, resolve_data_path
from toxdistill.files import PACKAGED_MINILM
from toxdistill.io import atomic_write_json
from toxdistill.models.students import build_student
from toxdistill.models.teacher import load_classifier
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.teacher_cache import compute_teacher_outputs
from toxdistill.training.trainer import DistillationTrainer, TeacherTargets, TrainData, TrainJob, train_model


class LiveTeacherDistillationTrainer(DistillationTrainer):
    """The reference set-up: the teacher runs inside every student step (for the benchmark only)."""

    def __init__(self, *args, teacher, **kw):
        self.teacher = teacher.eval()
        super().__init__(*args, **kw)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            feats = {k: v for k, v in inputs.items() if k not in ("labels", "idx")}
            with torch.no_grad():
                out = self.teacher(**feats, output_hidden_states=True)
            idx = inputs["idx"].cpu()
            self.teacher_logits[idx] = out.logits.float()
            self.teacher_cls[idx] = out.hidden_states[-1][:, 0].float()
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _time_steps(
    make_model,
    tokenizer,
    ds: Dataset,
    setup: str,
    steps: int,
    batch_size: int,
    n_layers: int,
    distill: DistillConfig | None = None,
    outputs=None,
    live_teacher=None,
) -> float:
    """Samples/s over ``steps`` optimiser steps (after 3 warm-up steps that are not counted)."""
    cfg = TrainConfig(epochs=1, lr=5e-5, batch_size=batch_size, group_by_length=setup == "c", warmup_ratio=0.0)
    pad_to = 128 if setup == "a" else None
    enc = EncodedDataset(ds, tokenizer, 128)
    rates = []
    for n_steps in (3, 3 + steps):  # the difference removes start-up cost (dataloader, optimizer init)
        model = make_model()
        with tempfile.TemporaryDirectory() as work:
            job = TrainJob(
                model,
                tokenizer,
                TrainData(ds, ds, 128, encoded=enc),
                cfg,
                Path(work),
                seed=0,
                n_layers=n_layers,
                teacher=TeacherTargets(distill, outputs) if distill else None,
                pad_to=pad_to,
                progress=False,
                max_steps=n_steps,
            )
            if live_teacher is not None:
                job.trainer_cls, job.trainer_kwargs = LiveTeacherDistillationTrainer, {"teacher": live_teacher}
            t0 = time.perf_counter()
            train_model(job)
            rates.append(time.perf_counter() - t0)
    return steps * batch_size / (rates[1] - rates[0])


def run_train_bench(
    teacher_spec: str,
    ds: Dataset,
    out_json: Path | None = None,
    steps: int = 30,
    batch_size: int = 32,
    rows: int = 4000,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    ds = ds.subset(np.sort(rng.choice(ds.ids, size=min(rows, len(ds)), replace=False)))
    teacher, tok = load_classifier(teacher_spec, ds.label_names, seed)
    n = teacher.config.num_hidden_layers
    layers = list(range(2, n + 1, 2))
    enc = EncodedDataset(ds, tok, 128)
    outputs = compute_teacher_outputs(teacher, enc, progress=False)
    dcfg = DistillConfig()

    def make_teacher():
        return load_classifier(teacher_spec, ds.label_names, seed)[0]

    def make_student():
        return build_student(teacher, layers)

    res: dict = {"rows": len(ds), "steps": steps, "batch_size": batch_size, "threads": torch.get_num_threads()}
    lengths = [len(x) for x in enc.input_ids]
    res["tokens_mean"], res["tokens_p95"] = float(np.mean(lengths)), float(np.percentile(lengths, 95))
    for setup in ("a", "b", "c"):
        print(f"teacher fine-tune, set-up {setup} ...", flush=True)
        res[f"teacher_{setup}_sps"] = _time_steps(make_teacher, tok, ds, setup, steps, batch_size, n)
        print(f"student distillation (cached), set-up {setup} ...", flush=True)
        res[f"student_distill_{setup}_sps"] = _time_steps(
            make_student, tok, ds, setup, steps, batch_size, len(layers), dcfg, outputs
        )
    print("student distillation, live teacher (c) ...", flush=True)
    live = (outputs[0].clone(), outputs[1].clone())
    res["student_distill_live_c_sps"] = _time_steps(
        make_student, tok, ds, "c", steps, batch_size, len(layers), dcfg, live, live_teacher=teacher
    )
    print("student plain fine-tune (c) ...", flush=True)
    res["student_plain_c_sps"] = _time_steps(make_student, tok, ds, "c", steps, batch_size, len(layers))
    res["teacher_c_over_a"] = res["teacher_c_sps"] / res["teacher_a_sps"]
    res["student_c_over_a"] = res["student_distill_c_sps"] / res["student_distill_a_sps"]
    res["cached_distill_cost_vs_plain"] = res["student_plain_c_sps"] / res["student_distill_c_sps"]
    res["cached_over_live"] = res["student_distill_c_sps"] / res["student_distill_live_c_sps"]
    if out_json is not None:
        data = json.loads(out_json.read_text()) if out_json.is_file() else {}
        data["train"] = res
        atomic_write_json(out_json, data)
    return res


def format_table(res: dict) -> str:
    rows = [
        "| set-up | teacher fine-tune samples/s | student distillation samples/s |",
        "|---|---|---|",
    ]
    names = {"a": "(a) pad to 128, random order", "b": "(b) dynamic padding", "c": "(c) dynamic + length-grouped"}
    for s in "abc":
        rows.append(f"| {names[s]} | {res[f'teacher_{s}_sps']:.1f} | {res[f'student_distill_{s}_sps']:.1f} |")
    rows += [
        f"| (c) / (a) | **{res['teacher_c_over_a']:.2f}×** | **{res['student_c_over_a']:.2f}×** |",
        "",
        f"Student (c): plain fine-tune {res['student_plain_c_sps']:.1f} samples/s, distillation with cached teacher "
        f"{res['student_distill_c_sps']:.1f}, with live teacher {res['student_distill_live_c_sps']:.1f}. A cached "
        f"distillation step costs **{res['cached_distill_cost_vs_plain']:.2f}×** a plain step; the cache is "
        f"**{res['cached_over_live']:.2f}×** faster than live teacher passes.",
    ]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None, help="Davidson CSV (default: $TOXDISTILL_DATA or the cache)")
    ap.add_argument("--teacher", default=PACKAGED_MINILM)
    ap.add_argument("--rows", type=int, default=4000, help="rows sampled from the data (length distribution kept)")
    ap.add_argument("--steps", type=int, default=30, help="timed optimiser steps per set-up")
    ap.add_argument("-o", "--out", default="bench/results/bench.json")
    a = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    cfg = DataConfig()
    ds = load_dataset(resolve_data_path(cfg, a.data), cfg)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = run_train_bench(a.teacher, ds, out, steps=a.steps, rows=a.rows)
    print(format_table(res))


if __name__ == "__main__":
    main()
