"""Paired comparison of the same models in two runs that share a split (an A/B of a config change).

    python bench/compare_runs.py runs/davidson-minilm runs/davidson-minilm-v1 \
        -o bench/results/class_weights_ab.json

For every model folder present in both runs: the paired-bootstrap difference A − B on the shared test
split (1,000 resamples, Holm-adjusted per metric), for accuracy, weighted F1, macro F1 and hate F1; then
the same models' argmax scores on validation, and on validation and test pooled. The runs must have the
same split rows, which they do when data and seed are the same.

Choose a config change on validation and let test confirm it. With ~140 hate tweets per split, the two
splits can disagree on the sign of a hate-F1 change; the pooled table then says which way it leans.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from toxdistill.config import load_config
from toxdistill.data.dataset import load_dataset, resolve_data_path
from toxdistill.evaluation.metrics import hate_f1, val_headline
from toxdistill.evaluation.stats import compare_models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("-o", "--out", default=None)
    a = ap.parse_args()

    ra, rb = Path(a.run_a), Path(a.run_b)
    sa, sb = (json.loads((r / "split.json").read_text()) for r in (ra, rb))
    if sa["test"] != sb["test"] or sa["val"] != sb["val"] or sa["source_sha256"] != sb["source_sha256"]:
        raise SystemExit("error: the two runs do not share a split; a paired comparison needs the same rows")
    cfg = load_config(ra / "config.yaml")
    ds = load_dataset(resolve_data_path(cfg.data, None), cfg.data)
    y = ds.subset(np.asarray(sa["test"])).labels
    y_val = ds.subset(np.asarray(sa["val"])).labels
    names = sorted(
        d.name
        for d in (ra / "models").iterdir()
        if (d / "test_logits.npy").is_file() and (rb / "models" / d.name / "test_logits.npy").is_file()
    )
    runs = {"A": ra, "B": rb}
    logits = {
        (n, side): {s: np.load(r / "models" / n / f"{s}_logits.npy") for s in ("val", "test")}
        for n in names
        for side, r in runs.items()
    }
    preds = {}
    for n in list(names):
        pa, pb = (logits[n, side]["test"].argmax(-1) for side in runs)
        if (pa == pb).all():  # the same model in both runs (e.g. the baseline): nothing to test
            print(f"{n}: identical predictions in both runs, left out")
            names.remove(n)
            continue
        preds[f"{n}@A"], preds[f"{n}@B"] = pa, pb
    rows = compare_models(
        y,
        preds,
        [(f"{n}@A", f"{n}@B") for n in names],
        metrics=["accuracy", "f1_weighted", "f1_macro", "f1_hate"],
        n_boot=a.n_boot,
        seed=a.seed,
        n_classes=len(ds.label_names),
    )
    print(f"A = {ra}, B = {rb}; Δ = A − B in points, 95% CI, p (Holm p)\n")
    print("| model | metric | A | B | Δ | 95% CI | p | Holm p |\n|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["metric"], r["a"])):
        print(
            f"| {r['a'][:-2]} | {r['metric']} | {r['a_value']:.3f} | {r['b_value']:.3f} | {100 * r['diff']:+.2f} | "
            f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}] | {r['p_value']:.3f} | {r['p_holm']:.3f} |"
        )
    # A config change is chosen on validation; test only confirms it. So validation too, and validation
    # and test pooled: twice the hate tweets, so half the variance of either split alone. The pooled scores
    # are slightly optimistic for both arms alike (each picked its best epoch on validation), so they rank
    # A against B; they are not an estimate to quote for either.
    y_both = np.concatenate([y_val, y])
    val: dict = {n: {} for n in names}
    pooled: dict = {n: {} for n in names}
    for n in names:
        for side in runs:
            lg = logits[n, side]
            val[n][side] = val_headline(lg["val"], y_val, ds.label_names)
            pooled[n][side] = val_headline(np.concatenate([lg["val"], lg["test"]]), y_both, ds.label_names)
    for title, table in (("validation", val), ("validation + test pooled", pooled)):
        print(f"\n{title} (argmax): A vs B\n\n| model | F1 weighted | F1 macro | hate F1 |\n|---|---|---|---|")
        for n, v in table.items():
            cells = [f"{v['A'][k]:.3f} vs {v['B'][k]:.3f}" for k in ("f1_weighted", "f1_macro")]
            print(f"| {n} | {' | '.join(cells)} | {hate_f1(v['A']):.3f} vs {hate_f1(v['B']):.3f} |")
    if a.out:
        out = {"run_a": str(ra), "run_b": str(rb), "rows": rows, "val": val, "pooled_val_test": pooled}
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
