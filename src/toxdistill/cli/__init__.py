"""The thin command line: parse, call one function, turn user errors into one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from toxdistill.cli import bench, check, evaluate, export, frontier, predict, run, serve
from toxdistill.errors import ToxdistillError
from toxdistill.extras import missing_modules, require_train, train_error

# Each command module holds its NAME, HELP, DESCRIPTION, add_arguments(p) and main(args), and imports its
# heavy dependencies only when main runs. NEEDS_TRAIN = True: the command needs the train extra (torch and the
# rest), checked before it starts, so that a serving install refuses it in one line.
_COMMANDS = (run, check, evaluate, export, predict, bench, frontier, serve)


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

    for command in _COMMANDS:
        cp = sub.add_parser(
            command.NAME, help=command.HELP, description=command.DESCRIPTION, epilog=getattr(command, "EPILOG", None)
        )
        command.add_arguments(cp)
        cp.set_defaults(func=command.main, needs_train=getattr(command, "NEEDS_TRAIN", False))
    return p


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
    if a.allow_pickle and not missing_modules(("torch", "transformers")):  # without them nothing reads pickle
        from toxdistill.models.teacher import set_allow_pickle  # heavy: torch; only with --allow-pickle

        set_allow_pickle(True)
    try:
        if a.needs_train:
            require_train(f"toxdistill {a.command}")
        return a.func(a)
    except ToxdistillError as e:
        print(f"toxdistill: error: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:  # a train-extra module that a command reached on a serving install
        err = train_error(e)
        if err is None:
            raise
        print(f"toxdistill: error: {err}", file=sys.stderr)
        return err.exit_code
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
