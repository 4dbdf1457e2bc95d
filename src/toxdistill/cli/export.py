"""``toxdistill export``: a model folder to a self-describing ONNX (fp32 or int8) or OpenVINO folder,
parity-checked; ``--auto`` measures every engine × precision here and keeps the fastest that passes."""

from __future__ import annotations

import argparse

from toxdistill.cli import options
from toxdistill.errors import ToxdistillError
from toxdistill.inference.openvino_backend import ENGINES, PRECISIONS

# The opsets --opset accepts (the dynamo exporter raises anything below 18 to 18).
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 23, 17

NAME = "export"
HELP = "export a model folder to ONNX (fp32 or int8) or OpenVINO, with a parity check; --auto picks the fastest"
DESCRIPTION = """\
Write MODEL_DIR as ONNX into a folder that also holds the tokenizer, config.json and the model's toxdistill.json
(metrics, calibration) plus an export record. fp32 logits must match torch within 1e-4; int8 must agree with
fp32 on >= 99% of the run's test split and lose at most 0.5 points of weighted and of macro F1 (the test split is used when
MODEL_DIR is runs/<name>/models/<m>; otherwise a built-in sample, agreement only). The folder appears in one
rename: never half-written.

--engine openvino writes an OpenVINO IR of the same fp32 graph instead (the extra: pip install
'toxdistill[openvino]'): --precision fp32, bf16 (where the CPU has it; else fp32, with a notice) or int8 (NNCF
static quantization calibrated on training texts of the run). bf16 and int8 pass the same gates as int8.

--auto exports every engine x precision this machine can run (ONNX Runtime fp32, int8, int8 fused; OpenVINO
fp32, bf16, int8), times each on a few hundred of the parity texts and keeps the fastest that passes its
gates in <m>-auto (or -o); its record names the engine, the CPU and every candidate's samples/s.
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
        "--engine",
        default="onnxruntime",
        choices=ENGINES,
        help="the engine the export is for (default: onnxruntime; openvino needs the openvino extra)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="with --engine openvino: fp32 (default), bf16 or int8",
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="measure every engine x precision on this machine and keep the fastest that passes the parity gates",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="output folder (default: runs/<name>/export/<m>-onnx[-int8][-fused], -openvino-<precision> or -auto "
        "for a run's model, else the same suffix beside MODEL_DIR)",
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
    options.add_threads(p, help="with --auto: the CPU threads every candidate is timed with (default: all cores)")
    options.add_data(p)
    p.add_argument("--allow-drift", action="store_true", help="write the export even if the parity check fails")


def _check(a: argparse.Namespace) -> None:
    if a.int8_embeddings and not a.int8:
        raise ToxdistillError("--int8-embeddings needs --int8", "add --int8")
    if not MIN_OPSET <= a.opset <= MAX_OPSET:
        raise ToxdistillError(
            f"--opset {a.opset} is out of range", f"use {MIN_OPSET}..{MAX_OPSET}; {DEFAULT_OPSET} is the default"
        )
    if a.auto:
        given = [
            flag
            for flag, on in (
                ("--int8", a.int8),
                ("--int8-embeddings", a.int8_embeddings),
                ("--fuse", a.fuse),
                ("--engine", a.engine != "onnxruntime"),
                ("--precision", a.precision is not None),
                ("--allow-drift", a.allow_drift),
                ("--exporter", a.exporter != "auto"),
                ("--opset", a.opset != DEFAULT_OPSET),
            )
            if on
        ]
        if given:
            raise ToxdistillError(
                f"--auto chooses the engine and precision itself; leave out {', '.join(given)}",
                "export one engine with --engine/--precision/--int8 instead",
            )
    elif a.threads is not None:
        raise ToxdistillError("--threads only applies to --auto's timing", "add --auto or leave out --threads")
    options.at_least(a, threads=1)


def main(a: argparse.Namespace) -> int:
    _check(a)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ToxdistillError(
            "export needs onnx and onnxruntime, not installed", "pip install 'toxdistill[onnx]'"
        ) from None
    if a.auto:
        from toxdistill.inference.engines import auto_export  # heavy: sklearn, pandas and the model code

        auto_export(a.model_dir, a.output, data=a.data, threads=a.threads, say=print)
        return 0
    from toxdistill.inference.export import export_model  # heavy: sklearn, pandas and the model code

    export_model(
        a.model_dir,
        a.output,
        strict=not a.allow_drift,
        say=print,  # the parity report on stdout, as before
        **options.forward(a, "int8", "int8_embeddings", "exporter", "opset", "data", "fuse", "engine", "precision"),
    )
    return 0
