"""Bulk scoring throughput: ``toxdistill predict`` with ``--runner local`` against ``--runner ray`` (1 and 2
actors), on the same texts, side by side in one process and one run.

    python bench/ray_predict.py                        # 3,000 tweets, packaged MiniLM-L6 with a 3-class head
    python bench/ray_predict.py --model runs/davidson-minilm/models/even --rows 5000

Texts: a seeded sample of ``--rows`` tweets from the data file (``--data``, else ``$TOXDISTILL_DATA``, else
``../shared/data/davidson/labeled_data.csv``), written to a temporary CSV and to 4 Parquet shards. Model
(default): the packaged all-MiniLM-L6-v2 encoder (6 layers, hidden 384, offline) with a freshly initialised
3-class head, saved to a temporary folder: the work per text is that of a real teacher, the labels are not.

Every set-up runs through ``toxdistill.cli.main`` as a user would, and is timed end to end (model loading,
Ray actors starting, reading, scoring, writing, the row-id check and, for a single output file, the merge: the
input read again and written with its scores through the one writer, as --runner local writes it).
Each set-up is also run on 32 texts first: that wall time is its fixed cost, and
``steady_rows_per_s = (rows - 32) / (wall - fixed)`` is the rate once the actors are up. The Ray outputs are
checked against the local one (same labels, probabilities within 1e-5). Ray is started once, before the
timings (its start-up time is recorded apart). Output: a table on stdout and ``bench/results/ray_predict.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toxdistill.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
LABELS = ["hate speech", "offensive", "neither"]
FIXED_ROWS = 32


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _default_model(folder: Path) -> Path:
    """The packaged MiniLM-L6 encoder with a new 3-class head (seeded), as a predict-ready model folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from toxdistill.models.teacher import resolve_model_path  # heavy: torch; only without --model

    src = resolve_model_path("packaged:all-MiniLM-L6-v2")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    meta = {"name": "minilm-l6-random-head", "kind": "teacher", "label_names": LABELS, "max_length": 128}
    (folder / "toxdistill.json").write_text(json.dumps(meta))
    return folder


def _inputs(data: Path, rows: int, folder: Path) -> dict[str, Path]:
    """The same texts as one CSV and as 4 Parquet shards (row groups of 500), plus a 32-row CSV and shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tweets = pd.read_csv(data, usecols=["tweet"])["tweet"].astype(str)
    df = tweets.sample(n=min(rows, len(tweets)), random_state=0).reset_index(drop=True).to_frame()
    paths = {"csv": folder / "in.csv", "shards": folder / "shards", "small_csv": folder / "small.csv"}
    paths["small_shards"] = folder / "small-shards"
    df.to_csv(paths["csv"], index=False)
    df.iloc[:FIXED_ROWS].to_csv(paths["small_csv"], index=False)
    for name, part in (("shards", df), ("small_shards", df.iloc[:FIXED_ROWS])):
        paths[name].mkdir()
        for k, piece in enumerate(np.array_split(np.arange(len(part)), 4)):
            table = pa.Table.from_pandas(part.iloc[piece], preserve_index=False)
            pq.write_table(table, paths[name] / f"part-{k}.parquet", row_group_size=500)
    return paths


def _timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    code = cli([*argv, "--progress", "off"])
    if code != 0:
        raise SystemExit(f"failed: toxdistill {' '.join(argv)}")
    return time.perf_counter() - t0


def _read(path: Path) -> pd.DataFrame:
    if path.is_dir():
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pandas().sort_values("row_id").reset_index(drop=True)
    return pd.read_csv(path)


SETUPS = [
    # name, runner, actors, threads per process/actor, input, output
    ("local, 1 process x 2 threads", "local", None, 2, "csv", "local2.csv"),
    ("local, 1 process x 1 thread", "local", None, 1, "csv", "local1.csv"),
    ("ray, 1 actor x 1 thread", "ray", 1, 1, "shards", "ray1/"),
    ("ray, 2 actors x 1 thread", "ray", 2, 1, "shards", "ray2/"),
    ("ray, 2 actors x 1 thread, CSV in/out", "ray", 2, 1, "csv", "ray2.csv"),
]


def _run_setups(model: Path, paths: dict[str, Path], root: Path, batch_size: int, n: int) -> list[dict]:
    """Time every set-up of ``SETUPS`` (Ray already started) and check its output against the first one's."""
    common = ["--batch-size", str(batch_size)]
    # Untimed warm-up of both runners: imports and first-use caches of this process are not the runners' cost.
    warm = ["predict", str(model), str(paths["small_shards"]), *common]
    _timed([*warm, "-o", str(root / "warm.csv")])
    _timed([*warm, "-o", str(root / "warm/"), "--runner", "ray", "--actors", "1", "--threads", "1"])
    results = []
    reference = None
    for name, runner, actors, threads, src, out in SETUPS:
        extra = ["--runner", runner, "--threads", str(threads), *common]
        extra += ["--actors", str(actors)] if actors else []
        # The fixed cost: the same set-up on 32 texts.
        fixed = _timed(["predict", str(model), str(paths[f"small_{src}"]), "-o", str(root / f"small-{out}"), *extra])
        wall = _timed(["predict", str(model), str(paths[src]), "-o", str(root / out), *extra])
        got = _read(root / out)
        if reference is None:
            reference = got
        probs = [c for c in reference.columns if c.startswith("p_")]
        same_labels = got["label"].tolist() == reference["label"].tolist()
        max_diff = float(np.abs(got[probs].to_numpy() - reference[probs].to_numpy()).max())
        if not same_labels or max_diff > 1e-5:
            raise SystemExit(f"{name}: the output differs from the local one (max diff {max_diff:.2e})")
        row = {
            "setup": name,
            "runner": runner,
            "actors": actors,
            "threads": threads,
            "input": "4 Parquet shards -> Parquet folder" if src == "shards" else "CSV -> CSV",
            "rows": n,
            "wall_s": round(wall, 2),
            "rows_per_s": round(n / wall, 1),
            "fixed_s": round(fixed, 2),
            "steady_rows_per_s": round((n - FIXED_ROWS) / (wall - fixed), 1) if wall > fixed else None,
            "max_abs_diff_vs_local": max_diff,
        }
        results.append(row)
        print(f"{name}: {row['rows_per_s']} rows/s end to end ({wall:.1f} s)", file=sys.stderr, flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: packaged MiniLM-L6, random 3-class head)")
    ap.add_argument("--data", default=None, help="CSV with a 'tweet' column (default: $TOXDISTILL_DATA or shared)")
    ap.add_argument("--rows", type=int, default=3000, help="texts to score (default: 3000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("-o", "--out", default=str(REPO / "bench/results/ray_predict.json"))
    a = ap.parse_args()
    data = Path(
        a.data or os.environ.get("TOXDISTILL_DATA") or REPO.parent / "shared" / "data" / "davidson" / "labeled_data.csv"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray
    import torch

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="ray-predict-bench-") as tmp:
        root = Path(tmp)
        model = Path(a.model) if a.model else _default_model(root / "model")
        paths = _inputs(data, a.rows, root)
        n = len(pd.read_csv(paths["csv"]))
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-job summaries would bury the table
        ray_start = time.perf_counter() - t0
        try:
            results = _run_setups(model, paths, root, a.batch_size, n)
        finally:
            ray.shutdown()
    res = {
        "machine": {"cpu": _cpu_name(), "cores": cores, "python": platform.python_version()},
        "versions": {"ray": ray.__version__, "torch": torch.__version__},
        "model": a.model or "packaged:all-MiniLM-L6-v2 encoder + random 3-class head (6 layers, hidden 384)",
        "data": f"{n} tweets sampled (seed 0) from {data.name}",
        "batch_size": a.batch_size,
        "ray_start_s": round(ray_start, 2),
        "notes": "local: torch intra-op threads = --threads; ray: --threads per actor, each actor 1 process",
        "results": results,
    }
    _report(res, Path(a.out))


def _report(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(
        f"\n{res['results'][0]['rows']} texts, {res['model']}; {res['machine']['cpu']}, {res['machine']['cores']} cores\n"
    )
    print("| set-up | input → output | wall s | rows/s | fixed s | steady rows/s |")
    print("|---|---|---|---|---|---|")
    for r in res["results"]:
        steady = "" if r["steady_rows_per_s"] is None else r["steady_rows_per_s"]
        print(f"| {r['setup']} | {r['input']} | {r['wall_s']} | {r['rows_per_s']} | {r['fixed_s']} | {steady} |")
    print(f"\nRay start-up (once, not in the rows above): {res['ray_start_s']} s. Written to {out}.")


if __name__ == "__main__":
    main()
