"""``toxdistill export``: a model folder to a self-describing ONNX (fp32 or int8) folder, parity-checked."""

from __future__ import annotations

import argparse

from toxdistill.cli import options
from toxdistill.errors import ToxdistillError

# The opsets --opset accepts (the dynamo exporter raises anything below 18 to 18).
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 23, 17

NAME = "export"
HELP = "export a model folder to ONNX (fp32 or int8), with a parity check"
DESCRIPTION = """\
Write MODEL_DIR as ONNX into a folder that also holds the tokenizer, config.json and the model's toxdistill.json
(metrics, calibration) plus an export record. fp32 logits must match torch within 1e-4; int8 must agree with
fp32 on >= 99% of the run's test split and lose at most 0.5 weighted-F1 points (the test split is used when
MODEL_DIR is runs/<name>/models/<m>; otherwise a built-in sample, agreement only). The folder appears in one
rename: never half-written.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder, e.g. runs/<name>/models/odd")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    p.add_argument("--int8", action="store_true", help="quantize weights to int8 (dynamic quantization, per channel)")
    p.add_argument(
        "--int8-embeddings",
        action="store_true",
        help="with --int8, also quantize the word-embedding table (file ~3x smaller, slightly lower agreement)",
    )
    p.add_argument(
        "--fuse",
        action="store_true",
        help="fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer before any int8 step "
        "(same parity gates; off by default: slower on the CPUs measured, see docs/benchmarks.md)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="output folder (default: runs/<name>/export/<m>-onnx[-int8][-fused] for a run's model, else MODEL_DIR-onnx[-int8][-fused])",
    )
    p.add_argument(
        "--exporter",
        default="auto",
        choices=["auto", "torchscript", "dynamo"],
        help="torch.onnx exporter (default: torchscript, dynamo if that fails)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset (default: {DEFAULT_OPSET})",
    )
    options.add_data(p)
    p.add_argument("--allow-drift", action="store_true", help="write the export even if the parity check fails")


def main(a: argparse.Namespace) -> int:
    if a.int8_embeddings and not a.int8:
        raise ToxdistillError("--int8-embeddings needs --int8", "add --int8")
    if not MIN_OPSET <= a.opset <= MAX_OPSET:
        raise ToxdistillError(
            f"--opset {a.opset} is out of range", f"use {MIN_OPSET}..{MAX_OPSET}; {DEFAULT_OPSET} is the default"
        )
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ToxdistillError(
            "export needs onnx and onnxruntime, not installed", "pip install 'toxdistill[onnx]'"
        ) from None
    from toxdistill.inference.export import export_model  # heavy: sklearn, pandas and the model code

    export_model(
        a.model_dir,
        a.output,
        strict=not a.allow_drift,
        say=print,  # the parity report on stdout, as before
        **options.forward(a, "int8", "int8_embeddings", "exporter", "opset", "data", "fuse"),
    )
    return 0
