"""The machine's limits, measured in the same run as the benchmark they bound.

A single 2048² fp32 matmul is not a peak: the models beat it (113–137% in an earlier bench), because
their matmuls are smaller, stay in cache, or run better at another thread count. So each engine's peak is
the best over several shapes (squares and the encoders' own projection shapes) and thread counts:

* ``torch-fp32``  — ``torch.mm``, what the torch backends run on;
* ``torch-bf16``  — ``torch.mm`` on bf16 tensors (oneDNN; AMX where the CPU has it), measured only for an
  OpenVINO bf16 row on a CPU with bf16;
* ``ort-fp32``    — an ONNX Runtime ``MatMul`` graph, what the fp32 ONNX backends run on;
* ``ort-int8``    — the same graph after ``quantize_dynamic`` (int8 weights, activations quantized on the
  fly): the kernel the int8 backends run, including the quantization step they pay for.

OpenVINO has no peak of its own here: its rows are held against the machine's peak for their number format
(``peak_engine``), ONNX Runtime's fp32 and int8 and torch's bf16. That is fair as a bound of the machine;
OpenVINO's static int8 skips the on-the-fly quantization ``ort-int8`` pays for, so it may come closer to it.

``theoretical`` is the arithmetic bound from the CPU's vector width and clock. The number of FMA units per
core cannot be read from the OS, so it is assumed (2, as on current server cores) and reported as assumed.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from toxdistill.export.quantize import quantize_int8
from toxdistill.targets import TORCH_ROWS, parse_target

# (M, K, N): squares, then a batch of 64 tweets × 64 tokens through MiniLM's (384) and base-size (768)
# projections and feed-forward layers: the shapes the models themselves multiply.
SHAPES = (
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 384, 384),
    (4096, 384, 1536),
    (4096, 1536, 384),
    (4096, 768, 768),
    (4096, 768, 3072),
    (4096, 3072, 768),
)
QUICK_SHAPES = ((256, 256, 256), (512, 384, 384))  # bench --quick: seconds, not a bound worth quoting
ASSUMED_FMA_UNITS = 2


def _best_seconds(fn, reps: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _thread_counts(threads: int) -> list[int]:
    return sorted({1, threads} | ({threads // 2} if threads > 2 else set()))


def torch_fp32_peak(threads: int, shapes=SHAPES, reps: int = 3) -> dict:
    """Best fp32 GFLOP/s of ``torch.mm`` over ``shapes`` and thread counts up to ``threads``."""
    return _torch_peak(threads, shapes, reps, "float32")


def torch_bf16_peak(threads: int, shapes=SHAPES, reps: int = 3) -> dict:
    """Best bf16 GFLOP/s of ``torch.mm`` (bf16 in, bf16 out) over ``shapes`` and thread counts."""
    return _torch_peak(threads, shapes, reps, "bfloat16")


def _torch_peak(threads: int, shapes, reps: int, dtype: str) -> dict:
    import torch

    before = torch.get_num_threads()
    results = []
    kind = getattr(torch, dtype)
    try:
        for t in _thread_counts(threads):
            torch.set_num_threads(t)
            for m, k, n in shapes:
                a, b = torch.randn(m, k).to(kind), torch.randn(k, n).to(kind)
                s = _best_seconds(lambda a=a, b=b: torch.mm(a, b), reps)
                results.append({"threads": t, "shape": [m, k, n], "gflops": 2 * m * k * n / s / 1e9})
    finally:
        torch.set_num_threads(before)
    return _summary(results)


def _matmul_graph(path: Path, k: int, n: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32), "W")
    node = helper.make_node("MatMul", ["A", "W"], ["Y"])
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.save(model, str(path))


def ort_peaks(threads: int, shapes=SHAPES, reps: int = 3) -> tuple[dict, dict]:
    """(fp32, int8) peaks of ONNX Runtime's CPU MatMul, as plain and as dynamically quantized graphs."""
    import onnxruntime as ort

    fp32: list[dict] = []
    int8: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for m, k, n in shapes:
            plain, quant = Path(tmp) / f"mm{k}x{n}.onnx", Path(tmp) / f"mm{k}x{n}.int8.onnx"
            if not plain.exists():
                _matmul_graph(plain, k, n)
                quantize_int8(plain, quant)
            a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
            for t in _thread_counts(threads):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = t
                opts.log_severity_level = 3
                for graph, out in ((plain, fp32), (quant, int8)):
                    sess = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
                    s = _best_seconds(lambda sess=sess, a=a: sess.run(None, {"A": a}), reps)
                    out.append({"threads": t, "shape": [m, k, n], "gflops": 2 * m * k * n / s / 1e9})
    return _summary(fp32), _summary(int8)


def _summary(results: list[dict]) -> dict:
    best = max(results, key=lambda r: r["gflops"])
    return {"gflops": best["gflops"], "at": {"threads": best["threads"], "shape": best["shape"]}, "all": results}


def cpu_info() -> dict:
    """Model name, vector flags and clock as the OS shows them (Linux ``/proc`` and ``/sys``)."""
    info: dict = {"model": None, "flags": [], "max_mhz": None, "mhz_source": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    first = text.split("\n\n", 1)[0]
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in first.splitlines()) if k.strip()
    )
    info["model"] = fields.get("model name")
    info["flags"] = fields.get("flags", "").split()
    try:  # the rated maximum (boost) clock, where the kernel exposes it
        info["max_mhz"] = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000
        info["mhz_source"] = "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, flags=re.M)
        if mhz:  # the current clock of each core (virtual machines often show the base clock)
            info["max_mhz"] = max(float(x) for x in mhz)
            info["mhz_source"] = "/proc/cpuinfo cpu MHz (current clock)"
    return info


def theoretical_peaks(threads: int, info: dict | None = None) -> dict:
    """fp32 and int8 arithmetic bounds: cores × lanes × 2 (multiply + add) × FMA units × GHz."""
    info = info or cpu_info()
    flags = set(info.get("flags") or [])
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else 4
    ghz = (info.get("max_mhz") or 0) / 1000
    if not ghz:
        return {"available": False, "why": "no clock readable from /proc or /sys"}
    fp32 = threads * lanes * 2 * ASSUMED_FMA_UNITS * ghz
    # VNNI's dot-product instruction does 4 int8 multiply-adds per 32-bit lane in one step; without it,
    # AVX2's multiply-add pair does about 2 per lane per step.
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "avx512vnni"})
    return {
        "available": True,
        "fp32_gflops": fp32,
        "int8_gops": fp32 * (4 if vnni else 2),
        "formula": f"{threads} cores × {lanes} fp32 lanes × 2 × {ASSUMED_FMA_UNITS} FMA units (assumed) × {ghz:.2f} GHz",
        "vnni": vnni,
        "ghz": ghz,
        "clock_source": info.get("mhz_source"),
    }


def cpu_has_bf16_flags(info: dict | None = None) -> bool:
    """bf16 arithmetic in the CPU's flags (AVX512_BF16 or AMX): without it a bf16 matmul is emulated."""
    flags = set((info or cpu_info()).get("flags") or [])
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def machine_peaks(threads: int, onnx: bool = True, shapes=SHAPES, reps: int = 3, bf16: bool = False) -> dict:
    """Every peak above, measured now, plus the theoretical bounds. ``bf16``: torch's bf16 peak too, where
    the CPU has bf16 arithmetic."""
    out: dict = {"torch-fp32": torch_fp32_peak(threads, shapes, reps)}
    if bf16 and cpu_has_bf16_flags():
        out["torch-bf16"] = torch_bf16_peak(threads, shapes, reps)
    if onnx:
        out["ort-fp32"], out["ort-int8"] = ort_peaks(threads, shapes, reps)
    th = out["theoretical"] = theoretical_peaks(threads)
    best = max(out[k]["gflops"] for k in ("torch-fp32", "ort-fp32") if k in out)
    if th.get("available") and best > th["fp32_gflops"]:
        # A measured rate above the bound means the clock read is not the clock run at: virtual machines
        # show the base clock while the cores boost. Report the lowest clock the measurement implies.
        th["implied_min_ghz"] = best / (th["fp32_gflops"] / th["ghz"])
    out["threads"] = threads
    out["cores"] = os.cpu_count()
    return out


# The measured peak per number format that bounds an export target's rows (see the module's docstring).
PEAK_BY_PRECISION = {"fp32": "ort-fp32", "int8": "ort-int8", "bf16": "torch-bf16"}


def peak_engine(row: str) -> str:
    """The engine and number format a bench row runs on, as keyed in ``machine_peaks``: torch's fp32 for the
    torch rows, else the machine's peak for the target's number format."""
    if row in TORCH_ROWS:
        return "torch-fp32"
    return PEAK_BY_PRECISION[parse_target(row).precision]


def peak_for(row: str, peaks: dict) -> float | None:
    """The measured peak that bounds a bench row: its own engine and number format."""
    return (peaks.get(peak_engine(row)) or {}).get("gflops")
