"""``toxdistill export``: a model folder to a self-describing, parity-checked folder for one export target
(ONNX Runtime or OpenVINO, at a precision); ``--auto`` measures every target here and keeps the fastest that passes."""

from __future__ import annotations

import argparse

from toxdistill.cli import options
from toxdistill.errors import ToxdistillError
from toxdistill.targets import DEFAULT_TARGET, ENGINES, parse_target, target_names

# The opsets --opset accepts (the dynamo exporter raises anything below 18 to 18).
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 23, 17

NAME = "export"
HELP = "export a model folder for an ONNX Runtime or OpenVINO target, with a parity check; --auto picks the fastest"
NEEDS_TRAIN = True
DESCRIPTION = """\
Write MODEL_DIR for one export target (--target ENGINE-PRECISION[-fused]) into a folder that also holds the
tokenizer, config.json and the model's toxdistill.json (metrics, calibration) plus an export record. fp32 logits
must match torch within 1e-4; int8 must agree with fp32 on >= 99% of the run's test split and lose at most 0.5
points of weighted and of macro F1 (the test split is used when MODEL_DIR is runs/<name>/models/<m>; otherwise a
built-in sample, agreement only). The folder appears in one rename: never half-written. Exporting a run's model,
or into a run folder, holds that run's lock: it fails at once while a run or another command writes there.

onnx-*: ONNX Runtime's graph, fp32 or int8 (dynamic weight quantization); -fused: attention, LayerNorm and GELU
fused by its transformer optimizer first (same gates; slower on the CPUs measured, see docs/benchmarks.md).
openvino-*: an OpenVINO IR of the same fp32 graph (the extra: pip install 'toxdistill[openvino]'): fp32, bf16
(where the CPU has it; else fp32, with a notice) or int8 (NNCF static quantization calibrated on training texts
of the run). bf16 and int8 pass the same gates as int8.

--auto exports the targets this machine can run (ONNX Runtime int8, int8 fused; OpenVINO bf16, int8; the fp32
graph they start from), times each on a few hundred of the parity texts and keeps the fastest that passes its
gates in <m>-auto (or -o); fp32 (ONNX Runtime, OpenVINO) is timed only when none below it passes. Its record
names the target, the CPU, its features and every candidate's samples/s.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder, e.g. runs/<name>/models/odd")
    p.add_argument(
        "--target",
        default=None,
        choices=target_names(),
        metavar="TARGET",
        help=f"the export target: {', '.join(target_names())} (default: {DEFAULT_TARGET}; "
        + "; ".join(f"{e.name}: {e.description}" for e in ENGINES.values())
        + ")",
    )
    p.add_argument(
        "--int8-embeddings",
        action="store_true",
        help="with an onnx int8 target, also quantize the word-embedding table (file ~3x smaller, slightly lower "
        "agreement)",
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="measure every target this machine can run and keep the fastest that passes the parity gates",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="output folder (default: runs/<name>/export/<m>-<target> for a run's model, else the same suffix beside "
        "MODEL_DIR; onnx-fp32 is <m>-onnx, --auto <m>-auto)",
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
    if not MIN_OPSET <= a.opset <= MAX_OPSET:
        raise ToxdistillError(
            f"--opset {a.opset} is out of range", f"use {MIN_OPSET}..{MAX_OPSET}; {DEFAULT_OPSET} is the default"
        )
    if a.auto:
        given = [
            flag
            for flag, on in (
                ("--target", a.target is not None),
                ("--int8-embeddings", a.int8_embeddings),
                ("--allow-drift", a.allow_drift),
                ("--exporter", a.exporter != "auto"),
                ("--opset", a.opset != DEFAULT_OPSET),
            )
            if on
        ]
        if given:
            raise ToxdistillError(
                f"--auto chooses the target itself; leave out {', '.join(given)}",
                "export one target with --target instead",
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
    from toxdistill.runs import run_folders_locked

    # The model's run gets the exports by default (and --auto's candidates always): its lock, and the output's.
    with run_folders_locked(a.model_dir, a.output):
        _export(a)
    return 0


def _export(a: argparse.Namespace) -> None:
    if a.auto:
        from toxdistill.benchmark.auto import auto_export  # heavy: sklearn, pandas and the model code

        auto_export(a.model_dir, a.output, data=a.data, threads=a.threads, say=print)
        return
    from toxdistill.export.job import ExportJob, export_model  # heavy: sklearn, pandas and the model code

    job = ExportJob(
        a.model_dir,
        parse_target(a.target) if a.target else DEFAULT_TARGET,
        a.output,
        strict=not a.allow_drift,
        **options.forward(a, "int8_embeddings", "exporter", "opset", "data"),
    )
    export_model(job, say=print)  # the parity report on stdout, as before
