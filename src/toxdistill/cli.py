"""The thin command line: parse, call one function, turn user errors into one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ToxdistillError


def _parse_set(values: list[str]) -> dict:
    import yaml

    out = {}
    for v in values:
        if "=" not in v:
            raise ToxdistillError(f"--set {v!r} is not KEY=VALUE", "e.g. --set teacher.train.epochs=2")
        k, raw = v.split("=", 1)
        out[k.strip()] = yaml.safe_load(raw)
    return out


def cmd_run(a: argparse.Namespace) -> int:
    from .config import load_config
    from .pipeline import run

    cfg = load_config(a.config, _parse_set(a.set))
    if a.seeds is not None:
        if a.seeds < 1:
            raise ToxdistillError(f"--seeds {a.seeds}: need at least 1", "e.g. --seeds 3")
        cfg = cfg.model_copy(update={"seeds": a.seeds})
    if a.output_dir:
        cfg = cfg.model_copy(update={"output_dir": a.output_dir})
    run(cfg, data_path=a.data, quick=a.quick, name=a.name, force=a.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="toxdistill",
        description="Distil a toxic-comment classifier into small, fast students; compare with LoRA; serve it.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading pickle (*.bin) weights, which can run code: only for sources you trust",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="split → baseline → teacher → students/LoRA → report",
        description=(
            "Run every stage of the pipeline that is not finished yet. Finished stages are kept; an interrupted "
            "training stage resumes from its last epoch checkpoint."
        ),
    )
    r.add_argument(
        "--config",
        default=None,
        help="YAML config (default: configs/davidson-minilm.yaml if present, else built-in defaults)",
    )
    r.add_argument("--data", default=None, help="path to the data file (overrides $TOXDISTILL_DATA and the config)")
    r.add_argument("--quick", action="store_true", help="smoke run: small stratified subset, one epoch per stage")
    r.add_argument("--name", default=None, help="run folder name under output_dir (default: config name)")
    r.add_argument("--output-dir", default=None, help="where run folders go (default: config output_dir, 'runs')")
    r.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="redo STAGE (repeatable; 'all' redoes everything)"
    )
    r.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="train every student (distill) stage with N seeds and report mean ± std (default: config 'seeds', 1)",
    )
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. teacher.train.epochs=2 or stages.0.train.lr=3e-4 (a number indexes a list)",
    )
    r.set_defaults(func=cmd_run)

    for extra in _extra_commands():
        extra(sub)
    return p


def _extra_commands():
    """Commands whose modules pull in optional dependencies register lazily here."""
    from . import commands

    return commands.REGISTRY


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not a.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import warnings

        warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if a.allow_pickle:
        from .teacher import set_allow_pickle

        set_allow_pickle(True)
    if a.command == "run" and a.config is None and Path("configs/davidson-minilm.yaml").is_file():
        a.config = "configs/davidson-minilm.yaml"
    try:
        return a.func(a)
    except ToxdistillError as e:
        print(f"toxdistill: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("toxdistill: interrupted; finished stages are kept, rerun to resume", file=sys.stderr)
        return 130
    except MemoryError:
        print("toxdistill: error: out of memory — lower the batch size (--set train.batch_size=16)", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"toxdistill: error: {e.strerror or e} ({getattr(e, 'filename', '') or ''}) — check the path and permissions",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
