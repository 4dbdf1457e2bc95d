"""LoRA learning-rate sweep on the validation split (the evidence behind the config's LoRA lr).

    python bench/experiments/lora_sweep.py --data ../shared/data/davidson/labeled_data.csv \
        --lrs 3e-4 1e-3 3e-3 --rows 6000 --epochs 4 -o bench/results/lora_sweep.json

LoRA on the *pretrained* teacher (the lora-teacher stage), one short run per learning rate on a
stratified subset of the training split, scored on the full validation split. Full fine-tuning at the
teacher's lr is run alongside as the reference, on the same rows. Give each arm at least ~750 steps
(rows / batch_size · epochs): at 125 steps no LoRA arm had left the majority class yet.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML config (default: the default config)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3])
    ap.add_argument("--rows", type=int, default=6000, help="training rows (stratified subset of the train split)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--full-ft-lr", type=float, default=None, help="reference full fine-tune lr (default: teacher's)")
    ap.add_argument("-o", "--out", default="bench/results/lora_sweep.json")
    a = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Imported once the variable above is set: transformers reads it when it is first imported.
    from toxdistill.config import load_config
    from toxdistill.data.dataset import load_dataset, resolve_data_path
    from toxdistill.data.split import make_or_load_split, stratified_subsample
    from toxdistill.evaluation.metrics import ce_loss, classification_metrics, hate_f1
    from toxdistill.inference.predict import Predictor
    from toxdistill.models.lora import add_lora, count_params
    from toxdistill.models.teacher import load_classifier
    from toxdistill.training.trainer import TrainData, TrainJob, train_model

    cfg = load_config(a.config)
    ds = load_dataset(resolve_data_path(cfg.data, a.data), cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        split = make_or_load_split(ds, Path(tmp) / "split.json", cfg.data, cfg.seed)
    train = split.train.subset(stratified_subsample(split.train.labels, split.train.ids, a.rows, cfg.seed))
    lora_stage = next(s for s in cfg.stages if s.kind == "lora" and (s.base or "pretrained") == "pretrained")
    base_train = cfg.stage_train(lora_stage)
    pretrained = cfg.teacher.pretrained_model()  # the checkpoint LoRA (base: pretrained) starts from
    if pretrained is None:
        raise SystemExit("error: the teacher is given (teacher.train: null); set teacher.pretrained to sweep LoRA")
    full_lr = a.full_ft_lr or (cfg.teacher.train.lr if cfg.teacher.train else base_train.lr)
    runs = [("lora", lr) for lr in a.lrs] + [("full", full_lr)]
    rows = []
    for kind, lr in runs:
        model, tok = load_classifier(pretrained, split.train.label_names, cfg.seed)
        if kind == "lora":
            model = add_lora(model, cfg.stage_lora(lora_stage))
        total, trainable = count_params(model)
        tcfg = base_train.model_copy(update={"lr": lr, "epochs": a.epochs})
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            hist = train_model(
                TrainJob(
                    model,
                    tok,
                    TrainData(train, split.val, cfg.data.max_length),
                    tcfg,
                    Path(work) / "w",
                    seed=cfg.seed,
                    n_layers=model.config.num_hidden_layers,
                    progress=False,
                )
            )
            trained = hist["trainer"].model
            if kind == "lora":
                trained = trained.merge_and_unload()
            trained.save_pretrained(Path(work) / "m")
            tok.save_pretrained(Path(work) / "m")
            logits, _ = Predictor.load(Path(work) / "m").logits(split.val.texts)
        m = classification_metrics(split.val.labels, logits.argmax(-1), split.val.label_names)
        row = {
            "kind": kind,
            "lr": lr,
            "epochs": a.epochs,
            "train_rows": len(train),
            "val_loss": ce_loss(logits, split.val.labels),
            "val_accuracy": m["accuracy"],
            "val_f1_weighted": m["f1_weighted"],
            "val_f1_macro": m["f1_macro"],
            "val_f1_hate": hate_f1(m),
            "trainable_share": trainable / total,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": a.config, "rows": rows}, indent=2) + "\n")
    print("\n| run | lr | val F1 weighted | val F1 macro | val hate F1 | val loss |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['lr']:.0e} | {r['val_f1_weighted']:.3f} | {r['val_f1_macro']:.3f} | "
            f"{r['val_f1_hate']:.3f} | {r['val_loss']:.3f} |"
        )
    lora_rows = [r for r in rows if r["kind"] == "lora"]
    scores = {round(r["val_f1_macro"], 4) for r in lora_rows}
    if len(scores) == 1:
        # A tie means no arm learned anything yet (typically all predict the majority class).
        print("\nno LoRA lr separated from the others at this budget: raise --rows or --epochs")
    else:
        best = max(lora_rows, key=lambda r: r["val_f1_macro"])
        print(f"\nbest LoRA lr by validation macro F1: {best['lr']:.0e}")


if __name__ == "__main__":
    main()
