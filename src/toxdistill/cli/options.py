"""Options that several commands share, written once: their flags, help and the at-least checks."""

from __future__ import annotations

import argparse
from typing import Any

from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import BACKEND_NAMES

RUN_DATA_HELP = "the run's data file, to rebuild its test split (default: as 'toxdistill run' finds it)"


def add_threads(p: argparse.ArgumentParser, help: str = "CPU threads for inference (default: all cores)") -> None:
    p.add_argument("--threads", type=int, default=None, help=help)


def add_batch_size(p: argparse.ArgumentParser, default: int = 64) -> None:
    p.add_argument("--batch-size", type=int, default=default, help=f"texts per forward pass (default: {default})")


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="auto",
        help="auto: the engine an export's record names (ONNX Runtime or OpenVINO), ONNX when the folder has a "
        ".onnx file, else torch; openvino also runs an ONNX export, in fp32",
    )


def add_data(p: argparse.ArgumentParser, required: bool = False, help: str = RUN_DATA_HELP) -> None:
    p.add_argument("--data", required=required, default=None, metavar="FILE", help=help)


def forward(a: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The named options as keyword arguments of the same names: the command's library call takes them as is."""
    return {n: getattr(a, n) for n in names}


def at_least(a: argparse.Namespace, **minimum: int) -> None:
    """One line for every count below its minimum, e.g. ``at_least(a, threads=1, n_boot=0)``.

    Checked after parsing rather than as an argparse type, whose errors come with a usage block."""
    for dest, low in minimum.items():
        value = getattr(a, dest, None)
        if value is not None and value < low:
            flag = "--" + dest.replace("_", "-")
            raise ToxdistillError(f"{flag} {value} must be at least {low}", f"see 'toxdistill {a.command} --help'")
