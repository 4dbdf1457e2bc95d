"""``toxdistill bench``: CPU inference speed of every model × export target (and torch) of a run, on its test split."""

from __future__ import annotations

import argparse

from toxdistill.benchmark.options import OVERLAP_MODES, QUICK_LIMIT, SPEED_GOAL, BenchOptions
from toxdistill.cli import options
from toxdistill.targets import TORCH_ROWS, bench_row_names, default_targets

NAME = "bench"
HELP = "inference benchmark: throughput, latency and GFLOP/s of every model × target in a run"
NEEDS_TRAIN = True
DESCRIPTION = """\
Benchmark every transformer model of RUN_DIR on its test split, in one run on the same texts: torch fp32 naive
(random order, padded batches), torch fp32 length-sorted, ONNX fp32, ONNX int8, ONNX int8 on a fused graph and
OpenVINO fp32, bf16 and int8 where the openvino extra is installed (exported into RUN_DIR/export/, reused while
the weights are unchanged). Each row shows where its time went (model, tokenization, batching) and its GFLOP/s
against the peak of its own engine and number format (torch fp32, ONNX Runtime fp32 or int8; OpenVINO against
the machine's peak per format), measured in the same run over several shapes and thread counts, next to the
CPU's theoretical peak. Per model, the export target 'export --auto' would choose (the fastest that passes its
parity gates) is marked. Prints a table of ratios against the naive teacher, writes bench.json and bench.png
(macro F1 vs samples/s) into the run. It holds the run's lock: it fails at once while a run or another command
writes there.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/davidson-minilm")
    p.add_argument(
        "--models", default=None, metavar="A,B", help="only these models (comma-separated; default: all transformers)"
    )
    defaults = [*TORCH_ROWS, *(t.name for t in default_targets())]
    p.add_argument(
        "--targets",
        default=None,
        metavar="A,B",
        help=f"the torch rows and export targets to run, from {','.join(bench_row_names())} (default: "
        f"{','.join(defaults)}, less the targets whose engine is not installed and bf16 where the CPU has none)",
    )
    p.add_argument(
        "--speed-goal",
        type=float,
        default=SPEED_GOAL,
        metavar="X",
        help=f"the fastest student's goal, × the naive teacher's throughput (default: {SPEED_GOAL:g})",
    )
    p.add_argument(
        "-o", "--output", default=None, help="bench JSON (default: RUN_DIR/bench.json; the plot goes next to it)"
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="bench on N texts of the test split (random, seeded)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"--limit {QUICK_LIMIT} (unless --limit is given) and peaks on two small shapes: a smoke test",
    )
    options.add_threads(p)
    options.add_batch_size(p)
    p.add_argument("--repeats", type=int, default=3, help="passes per row; the fastest counts (default: 3, --quick: 1)")
    p.add_argument(
        "--profile-ops",
        action="store_true",
        help="also profile each ONNX row's graph with ONNX Runtime and report each op type's share of its time",
    )
    p.add_argument(
        "--overlap",
        default="on",
        choices=OVERLAP_MODES,
        help="tokenize the next chunk of texts while the model runs this one (on, the default), not (off), or "
        "measure each row both ways and report the time shares before and after (both)",
    )
    p.add_argument("--latency-n", type=int, default=200, help="single texts timed for latency (default: 200)")
    options.add_data(p)
    p.add_argument("--no-plot", action="store_true", help="skip bench.png")


def main(a: argparse.Namespace) -> int:
    options.at_least(a, limit=1, threads=1, batch_size=1, latency_n=1, speed_goal=0, repeats=1)
    limit = a.limit if a.limit is not None else (QUICK_LIMIT if a.quick else None)
    opts = BenchOptions(
        targets=tuple(b.strip() for b in a.targets.split(",") if b.strip()) if a.targets is not None else None,
        limit=limit,
        plot=not a.no_plot,
        quick_peaks=a.quick,
        repeats=1 if a.quick else a.repeats,
        profile_ops=a.profile_ops,
        **options.forward(a, "models", "threads", "batch_size", "latency_n", "data", "output", "speed_goal", "overlap"),
    )
    from toxdistill.runs import run_folders_locked

    with run_folders_locked(a.run_dir, a.output):  # its exports go into RUN_DIR/export/ whatever -o says
        from toxdistill.benchmark.bench import run_bench  # heavy: scikit-learn, pandas and the export code

        run_bench(a.run_dir, opts, say=print)  # progress and the table on stdout, as before
    return 0
