"""``toxdistill evaluate RUN --data FILE --map LABEL=CLASS,...``: a run's models on an external labelled set."""

from __future__ import annotations

import argparse
from pathlib import Path

from toxdistill.cli import options
from toxdistill.console import stderr_say
from toxdistill.evaluation.external import format_result
from toxdistill.io import atomic_write_json
from toxdistill.runs import run_folders_locked

NAME = "evaluate"
HELP = "score a run's models on an external labelled set (CSV/JSONL)"
NEEDS_TRAIN = True
DESCRIPTION = """\
Score every model of a run on an external labelled file whose labels map onto sets of model classes: a
prediction is correct when its class is in the set mapped from the row's label. Prints accuracy (with a 95%
bootstrap interval), balanced accuracy and per-label recall per model, and per group with --group-col; writes
the full result as JSON.
"""
EPILOG = """\
example: toxdistill evaluate runs/davidson-minilm --data hatecheck.csv --text-col test_case --label-col
label_gold --map 'hateful=hate speech' --map 'non-hateful=offensive,neither' --group-col functionality
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by 'toxdistill run' (e.g. runs/davidson-minilm)")
    options.add_data(p, required=True, help="labelled CSV or JSONL file")
    p.add_argument(
        "--format", choices=("auto", "csv", "jsonl"), default="auto", help="file format (default: by suffix)"
    )
    p.add_argument("--text-col", default="text", help="column with the texts (default: text)")
    p.add_argument("--label-col", default="label", help="column with the labels (default: label)")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="LABEL=CLASS[,CLASS...]",
        help=(
            "the model classes that are a correct answer for LABEL (names or ids; '*' = any); repeat per label. "
            "Labels that are model class names or ids need none"
        ),
    )
    p.add_argument("--group-col", default=None, help="also report accuracy and recall per value of this column")
    p.add_argument("--models", default=None, metavar="A,B", help="only these models (comma-separated names)")
    p.add_argument(
        "-o", "--output", default=None, metavar="OUT.json", help="result file (default: RUN/external-<file stem>.json)"
    )
    options.add_threads(p)
    options.add_batch_size(p)
    options.add_backend(p)
    p.add_argument(
        "--no-clean", action="store_true", help="score texts as given (default: cleaned like the run's training data)"
    )
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for the accuracy interval (0: none; default 1000)"
    )


def main(a: argparse.Namespace) -> int:
    from toxdistill.pipeline.external import evaluate_external  # heavy: pandas; keeps `toxdistill --help` fast

    options.at_least(a, threads=1, batch_size=1, n_boot=0)
    data = Path(a.data)
    out = Path(a.output) if a.output else Path(a.run) / f"external-{data.stem}.json"
    with run_folders_locked(a.run, out.parent):  # its result goes into the run folder (or another, with -o)
        result = evaluate_external(
            a.run,
            data,
            label_map=a.map,
            clean=not a.no_clean,
            fmt=a.format,
            **options.forward(
                a, "text_col", "label_col", "group_col", "models", "threads", "batch_size", "backend", "n_boot"
            ),
            say=stderr_say("[toxdistill] evaluate"),
        )
        atomic_write_json(out, result)
    print(format_result(result))
    print(f"\nwritten: {out}")
    return 0
