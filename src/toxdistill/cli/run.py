"""`toxdistill run`: the whole pipeline from one config."""

from __future__ import annotations

import argparse

import yaml

from toxdistill.cli import options
from toxdistill.config import load_config
from toxdistill.errors import ToxdistillError

NAME = "run"
HELP = "split → baseline → teacher → students/LoRA → report"
NEEDS_TRAIN = True
DESCRIPTION = """\
Run every stage of the pipeline that is not finished yet. Finished stages are kept; an interrupted training
stage resumes from its last epoch checkpoint.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=None,
        help="YAML config (default: the default config shipped with toxdistill, davidson-minilm, from any folder)",
    )
    options.add_data(p, help="path to the data file (overrides $TOXDISTILL_DATA and the config)")
    p.add_argument("--quick", action="store_true", help="smoke run: small stratified subset, one epoch per stage")
    p.add_argument("--name", default=None, help="run folder name under output_dir (default: config name)")
    p.add_argument("--output-dir", default=None, help="where run folders go (default: config output_dir, 'runs')")
    p.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="redo STAGE (repeatable; 'all' redoes everything)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="train every student (distill) stage with N seeds and report mean ± std (default: config 'seeds', 1)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. teacher.train.epochs=2 or stages.0.train.lr=3e-4 (a number indexes a list)",
    )
    p.add_argument(
        "--enable", action="append", default=[], metavar="STAGE", help="run the config's stage STAGE (repeatable)"
    )
    p.add_argument(
        "--disable", action="append", default=[], metavar="STAGE", help="skip the config's stage STAGE (repeatable)"
    )


def _parse_set(values: list[str]) -> dict:
    out = {}
    for v in values:
        if "=" not in v:
            raise ToxdistillError(f"--set {v!r} is not KEY=VALUE", "e.g. --set teacher.train.epochs=2")
        k, raw = v.split("=", 1)
        out[k.strip()] = yaml.safe_load(raw)
    return out


def main(a: argparse.Namespace) -> int:
    from toxdistill.pipeline.plan import run  # heavy: torch and transformers; keeps `toxdistill --help` fast

    cfg = load_config(a.config, _parse_set(a.set), enable=a.enable, disable=a.disable)
    if a.seeds is not None:
        options.at_least(a, seeds=1)
        cfg = cfg.model_copy(update={"seeds": a.seeds})
    if a.output_dir:
        cfg = cfg.model_copy(update={"output_dir": a.output_dir})
    run(cfg, data_path=a.data, quick=a.quick, name=a.name, force=a.force)
    return 0
