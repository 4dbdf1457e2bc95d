"""Training throughput benchmark: `python bench/train.py [--data CSV] [--teacher SPEC] [-o bench.json]`.

Thin wrapper over toxdistill.bench_train; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from toxdistill.bench_train import format_table, run_train_bench
from toxdistill.config import PACKAGED_MINILM, DataConfig
from toxdistill.data import load_dataset, resolve_data_path


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
