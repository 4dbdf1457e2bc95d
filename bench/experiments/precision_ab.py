"""Training precision A/B: every model of fp32 and bf16-autocast runs, two seeds per arm, side by side.

    python bench/experiments/precision_ab.py fp32:42=RUN fp32:43=RUN bf16:42=RUN bf16:43=RUN \
        -o bench/results/precision-ab-avx512-epyc/ab.json

Each RUN is a run folder of the default config (``--set seed=43`` for the second seed; ``train.bf16`` and
``teacher.train.bf16`` set to false for the fp32 arm on a CPU with native bf16). Prints validation (decide)
and test (confirm) weighted, macro and hate-class F1 per model, the arm means, and each arm's seed range, and
the training seconds per stage from ``timings.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("f1_weighted", "f1_macro", "f1_hate")


def _scores(meta: dict) -> dict:
    m = meta["metrics"]
    hate = lambda d: next(iter(d["f1_per_class"].values()))  # noqa: E731 - the focus class is the first here
    pick = lambda d: {"f1_weighted": d["f1_weighted"], "f1_macro": d["f1_macro"], "f1_hate": hate(d)}  # noqa: E731
    return {"val": pick(m["val"]), "test": pick(m), "precision": (meta.get("train") or {}).get("precision")}


def collect(runs: dict[tuple[str, int], Path]) -> dict:
    out: dict = {"runs": {}, "means": {}, "timings": {}}
    for (arm, seed), run in runs.items():
        models = {}
        for d in sorted((run / "models").iterdir()):
            meta = json.loads((d / "toxdistill.json").read_text())
            if "metrics" in meta and meta.get("kind") != "baseline":
                models[d.name] = _scores(meta)
        out["runs"][f"{arm}:{seed}"] = models
        t = json.loads((run / "timings.json").read_text())
        out["timings"][f"{arm}:{seed}"] = {k: round(v) for k, v in t.items() if k in models}
    arms = sorted({a for a, _ in runs})
    names = sorted(set.intersection(*(set(m) for m in out["runs"].values())))
    for arm in arms:
        keys = [k for k in out["runs"] if k.startswith(arm + ":")]
        out["means"][arm] = {
            n: {
                split: {
                    k: {
                        "mean": sum(out["runs"][r][n][split][k] for r in keys) / len(keys),
                        "range": max(out["runs"][r][n][split][k] for r in keys)
                        - min(out["runs"][r][n][split][k] for r in keys),
                    }
                    for k in KEYS
                }
                for split in ("val", "test")
            }
            for n in names
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="ARM:SEED=RUN_FOLDER")
    p.add_argument("-o", "--output", type=Path)
    a = p.parse_args()
    runs = {}
    for spec in a.runs:
        label, folder = spec.split("=", 1)
        arm, seed = label.split(":")
        runs[(arm, int(seed))] = Path(folder).expanduser()
    out = collect(runs)
    for split in ("val", "test"):
        print(f"\n{split}: mean weighted / macro / hate F1 (seed range of macro), per arm")
        for n in out["means"][next(iter(out["means"]))]:
            cells = []
            for arm, by in out["means"].items():
                s = by[n][split]
                cells.append(
                    f"{arm} {s['f1_weighted']['mean']:.4f} / {s['f1_macro']['mean']:.4f} / "
                    f"{s['f1_hate']['mean']:.4f} (±{s['f1_macro']['range']:.4f})"
                )
            print(f"  {n:<14} " + "   ".join(cells))
    print("\ntraining seconds:", json.dumps(out["timings"]))
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
