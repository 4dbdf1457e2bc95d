"""``toxdistill frontier RUN_DIR``: the compression frontier of a finished run, made again (other target, texts
or selection rule): frontier.json, frontier.png and the report's section."""

from __future__ import annotations

import argparse
from pathlib import Path

from toxdistill.cli import options
from toxdistill.config import Config, SelectConfig, load_config
from toxdistill.console import stderr_say
from toxdistill.errors import ToxdistillError
from toxdistill.files import REPORT_FILE
from toxdistill.targets import frontier_choices

NAME = "frontier"
HELP = "the compression frontier: every model exported and benched, the Pareto set and the best model"
NEEDS_TRAIN = True
DESCRIPTION = """\
Export every transformer model of RUN_DIR for the run's frontier.target (auto by default: per model, the engine
that measures fastest on this CPU while passing its parity gates; --target pins one), reusing current exports
in RUN_DIR/export/, bench them in
one call on the same test texts on this machine beside the naive teacher (torch fp32), score each export on
validation and test, and choose the best model on validation: the fastest within the tolerances of the teacher
(default: the run's select block), or with --min-samples-per-s the best macro F1 at that speed; under either
rule a candidate that parts ways with the teacher on the behaviour set (the eval sets' texts and perturbed
validation texts, scored in torch) beyond --min-agreement-behaviour or --max-tvd-behaviour is left out. Says whether
the choice holds on test. Writes RUN_DIR/frontier.json and frontier.png and rewrites the report's "Compression
frontier" section. Measurements made for the same models, target, texts, CPU and library versions are kept unless
--remeasure.
It holds the run's lock: it fails at once while a run or another command writes there.
"""
EPILOG = """\
examples: toxdistill frontier runs/davidson-minilm --max-drop-f1-weighted 0.005 --max-drop-f1-macro none
          toxdistill frontier runs/davidson-minilm --min-samples-per-s 5000
"""
TOLERANCES = ("max_drop_f1_weighted", "max_drop_f1_macro")
# The behaviour bound: fractions in 0..1, given and read as the tolerances are.
BOUNDS = {
    "min_agreement_behaviour": "least top-1 agreement with the teacher on the behaviour set (0.75 = 75%%)",
    "max_tvd_behaviour": "most mean total-variation distance from the teacher on the behaviour set",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/davidson-minilm")
    p.add_argument(
        "--target",
        choices=frontier_choices(),
        metavar="TARGET",
        default=None,
        help=f"the export target to bench, from {', '.join(frontier_choices())} (auto: export --auto's choice per "
        "model; default: the run's frontier.target)",
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="bench on N test texts (default: the run's frontier.limit)"
    )
    for dest in TOLERANCES:
        what = "weighted" if dest.endswith("weighted") else "macro"
        p.add_argument(
            "--" + dest.replace("_", "-"),
            default=None,
            metavar="X",
            help=f"most {what} F1 a candidate may lose against the teacher on validation (0.01 = 1 point; "
            "'none': not checked; default: the run's select block)",
        )
    for dest, what in BOUNDS.items():
        p.add_argument(
            "--" + dest.replace("_", "-"),
            default=None,
            metavar="X",
            help=f"{what}, from 0 to 1 ('none': not checked; default: the run's select block)",
        )
    p.add_argument(
        "--min-samples-per-s",
        type=float,
        default=None,
        metavar="X",
        help="a speed budget instead: the best validation macro F1 at or above X samples/s",
    )
    p.add_argument("--remeasure", action="store_true", help="bench again even where the last frontier's inputs match")
    options.add_threads(p)
    options.add_data(p)


def _tolerance(a: argparse.Namespace, dest: str) -> dict:
    """``{dest: value}`` for a tolerance given on the command line ('none' is null), ``{}`` where it is not."""
    raw = getattr(a, dest)
    if raw is None:
        return {}
    flag = "--" + dest.replace("_", "-")
    if raw.strip().lower() in ("none", "null"):
        return {dest: None}
    try:
        value = float(raw)
    except ValueError:
        raise ToxdistillError(f"{flag} {raw!r} is not a number", "give a fraction such as 0.01, or none") from None
    if value < 0 or (dest in BOUNDS and value > 1):
        limits = "from 0 to 1" if dest in BOUNDS else "at least 0"
        raise ToxdistillError(f"{flag} {raw} must be {limits}", f"see 'toxdistill {a.command} --help'")
    return {dest: value}


def main(a: argparse.Namespace) -> int:
    from toxdistill.files import CONFIG_FILE, MODELS_DIR

    options.at_least(a, threads=1, limit=1)
    given = {k: v for dest in (*TOLERANCES, *BOUNDS) for k, v in _tolerance(a, dest).items()}
    if a.min_samples_per_s is not None:
        if a.min_samples_per_s < 0:
            raise ToxdistillError(
                f"--min-samples-per-s {a.min_samples_per_s:g} must be at least 0", "see 'toxdistill frontier --help'"
            )
        given["min_samples_per_s"] = a.min_samples_per_s
    run = Path(a.run_dir)
    if not (run / CONFIG_FILE).is_file() or not (run / MODELS_DIR).is_dir():
        raise ToxdistillError(
            f"{run} is not a finished run folder (no {CONFIG_FILE} or {MODELS_DIR}/)",
            "give a folder written by 'toxdistill run', e.g. runs/<name>",
        )
    cfg = load_config(run / CONFIG_FILE)
    frontier_cfg = cfg.frontier.model_copy(
        update={k: v for k, v in (("target", a.target), ("limit", a.limit)) if v is not None}
    )
    select_cfg = SelectConfig.model_validate({**cfg.select.model_dump(), **given})
    updates = {"frontier": frontier_cfg, "select": select_cfg}
    if a.threads:
        updates["threads"] = a.threads
    cfg = cfg.model_copy(update=updates)

    from toxdistill.runs import run_folders_locked

    with run_folders_locked(run):  # before the heavy imports: a busy run folder fails in a second
        frontier = _make(run, cfg, a)
    from toxdistill.evaluation.frontier import format_frontier

    print(format_frontier(frontier))
    return 0


def _make(run: Path, cfg: Config, a: argparse.Namespace) -> dict:
    """Measure the frontier, ship its winner to RUN/best/ and rewrite the report's section; the frontier."""
    from toxdistill.evaluation.report import update_frontier_section  # heavy: torch, the bench and the exporters
    from toxdistill.pipeline.best import write_best
    from toxdistill.pipeline.frontier import run_frontier

    say = stderr_say()
    frontier = run_frontier(run, cfg, say, data=a.data, remeasure=a.remeasure)
    best = write_best(run, frontier, cfg, say)
    say(f"shipped {frontier['selection']['model']} to {best} (with its model card)")
    if update_frontier_section(run, frontier):
        say(f"rewrote the Compression frontier section of {run / REPORT_FILE}")
    return frontier
