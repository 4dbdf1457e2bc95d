"""Copy a run folder's small outputs into the repository, so that every published figure traces to a file.

`python bench/collect_run.py RUN DEST` copies the run's results, report, significance, bench, timings,
robustness and eval-set scores, config and split (row ids only, never text), and per model its metadata, plots and test/validation logits
(three floats per tweet: enough to re-run any paired test). Weights, exports, caches and the data stay out.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

RUN_FILES = (
    "results.json",
    "report.md",
    "significance.json",
    "bench.json",
    "bench.png",
    "timings.json",
    "config.yaml",
    "split.json",
    "seeds.json",
    "robustness.json",
    "robustness.png",
    "robustness-val.json",
    "robustness-val.png",
)
MODEL_FILES = ("toxdistill.json", "confusion.png", "reliability.png", "test_logits.npy", "val_logits.npy")


def collect(run: Path, dest: Path) -> list[Path]:
    if not (run / "results.json").is_file():
        raise SystemExit(f"{run} has no results.json: not a finished run folder")
    copied = []
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            copied.append(Path(shutil.copy2(run / name, dest / name)))
    for f in sorted(run.glob("eval-*.json")):  # each eval set's scores (no texts: counts and accuracies only)
        copied.append(Path(shutil.copy2(f, dest / f.name)))
    for model in sorted(p for p in (run / "models").iterdir() if p.is_dir()):
        for name in MODEL_FILES:
            if (model / name).is_file():
                (dest / "models" / model.name).mkdir(parents=True, exist_ok=True)
                copied.append(Path(shutil.copy2(model / name, dest / "models" / model.name / name)))
    return copied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder written by toxdistill run")
    ap.add_argument("dest", type=Path, help="where to copy, e.g. bench/results/<run name>")
    a = ap.parse_args()
    files = collect(a.run, a.dest)
    print(f"copied {len(files)} files ({sum(f.stat().st_size for f in files) / 2**20:.1f} MB) into {a.dest}")


if __name__ == "__main__":
    main()
