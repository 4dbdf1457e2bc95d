"""ONNX Runtime's dynamic int8 with and without ``reduce_range`` (7-bit weights, the documented remedy for u8s8
saturation on x86 CPUs without VNNI): parity against fp32 and speed, per model of a run, on this CPU.

    python bench/experiments/int8_reduce_range.py RUN DATA.csv OUT teacher,odd,even,shallow-1-llrd

Each model is exported twice (onnx-int8, not strict) with the parity gate's texts set to the first 2,000
texts of the default split's test rows; speed is one pass over 1,000 of them at 2 threads after a warm-up.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

import toxdistill.export.quantize as quantize
from toxdistill.config import load_config
from toxdistill.cpu import cpu_features, cpu_name
from toxdistill.data.dataset import load_dataset
from toxdistill.data.split import TextSet, make_or_load_split
from toxdistill.export.job import ExportJob, export_model
from toxdistill.inference.predict import Predictor

N_TEXTS = 2000  # 99% agreement on 2,000 texts allows 20 flips: enough to tell the two apart


def one(run: Path, model: str, reduce_range: bool, texts: TextSet, out: Path) -> dict:
    # export decides reduce_range by the CPU's flags; here both settings are forced on the same CPU.
    quantize.wants_reduce_range = lambda features=None: reduce_range
    dst = out / f"{model}-rr{int(reduce_range)}"
    export_model(ExportJob(run / "models" / model, "onnx-int8", out=dst, strict=False, texts=texts), print)
    block = json.loads((dst / "toxdistill.json").read_text())["export"]["parity"]["int8"]
    pred = Predictor.load(dst, threads=2)
    pred.logits(texts.texts[:200], 64)
    t0 = time.perf_counter()
    pred.logits(texts.texts[:1000], 64)
    keys = ("agreement", "f1_weighted_drop_points", "f1_macro_drop_points", "ok")
    row = {"model": model, "reduce_range": reduce_range, **{k: block.get(k) for k in keys}}
    return row | {"samples_per_s": 1000 / (time.perf_counter() - t0)}


RULE = quantize.wants_reduce_range


def main() -> None:
    run, data, out, models = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4].split(",")
    cfg = load_config(None)
    split = make_or_load_split(load_dataset(data, cfg.data), out / "split.json", cfg.data, cfg.seed)
    labels = list(np.asarray(split.test.labels[:N_TEXTS]))
    texts = TextSet(list(split.test.texts[:N_TEXTS]), labels, f"{N_TEXTS} test texts")
    rows = [one(run, m, rr, texts, out) for m in models for rr in (False, True)]
    quantize.wants_reduce_range = RULE
    res = {"cpu": cpu_name(), "cpu_features": cpu_features(), "texts": N_TEXTS, "run": str(run), "rows": rows}
    (out / "int8_reduce_range.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
