"""The machine's limits: theoretical bounds from the CPU's description, measured peaks as the best of many."""

from __future__ import annotations

from pathlib import Path

import pytest

from toxdistill.benchmark.peaks import peak_for, theoretical_peaks, torch_fp32_peak


def test_theoretical_peak_from_vector_width_clock_and_vnni():
    avx512 = {"flags": ["avx2", "fma", "avx512f", "avx512_vnni"], "max_mhz": 3000.0, "mhz_source": "test"}
    th = theoretical_peaks(2, avx512)
    # 2 cores × 16 fp32 lanes × 2 (multiply + add) × 2 FMA units × 3 GHz; VNNI: 4 int8 products per lane.
    assert th["fp32_gflops"] == pytest.approx(384.0) and th["int8_gops"] == pytest.approx(1536.0)
    avx2 = theoretical_peaks(4, {"flags": ["avx2", "fma"], "max_mhz": 2500.0})
    assert avx2["fp32_gflops"] == pytest.approx(4 * 8 * 2 * 2 * 2.5) and not avx2["vnni"]
    assert avx2["int8_gops"] == pytest.approx(2 * avx2["fp32_gflops"])
    assert not theoretical_peaks(2, {"flags": ["avx2"], "max_mhz": None})["available"]


def test_measured_peak_is_the_best_over_shapes_and_threads():
    shapes = ((64, 64, 64), (128, 96, 32))
    p = torch_fp32_peak(2, shapes=shapes, reps=1)
    assert {tuple(r["shape"]) for r in p["all"]} == set(shapes) and {r["threads"] for r in p["all"]} == {1, 2}
    assert p["gflops"] == max(r["gflops"] for r in p["all"]) > 0
    assert p["at"]["shape"] in [list(s) for s in shapes]


def test_ort_peaks_run_the_int8_graph_that_export_makes(monkeypatch):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from toxdistill.benchmark import peaks
    from toxdistill.export import quantize

    quantized: dict[Path, set[str]] = {}  # each graph the quantizer wrote, with its op types
    opened: list[Path] = []

    def spy_quantize(src, dst, *a, **k):
        out = quantize.quantize_int8(src, dst, *a, **k)
        quantized[Path(dst)] = {n.op_type for n in onnx.load(str(dst)).graph.node}
        return out

    real_session = ort.InferenceSession
    monkeypatch.setattr(peaks, "quantize_int8", spy_quantize)
    monkeypatch.setattr(
        ort, "InferenceSession", lambda path, *a, **k: opened.append(Path(path)) or real_session(path, *a, **k)
    )
    # Two shapes share one weight matrix (K × N = 64 × 64): one graph, quantized once, serves both.
    shapes = ((64, 64, 64), (128, 64, 64), (32, 64, 48))
    fp32, int8 = peaks.ort_peaks(2, shapes=shapes, reps=1)
    assert len(quantized) == 2 and all("MatMulInteger" in ops for ops in quantized.values())
    # Half the sessions (every shape at 1 and 2 threads) run the graphs export's quantizer wrote.
    assert len(opened) == 2 * len(shapes) * 2
    assert len([f for f in opened if f in quantized]) == len(shapes) * 2
    for p in (fp32, int8):
        assert {(tuple(r["shape"]), r["threads"]) for r in p["all"]} == {(s, t) for s in shapes for t in (1, 2)}
        assert p["gflops"] == max(r["gflops"] for r in p["all"])


def test_each_backend_is_held_against_its_own_engine():
    peaks = {"torch-fp32": {"gflops": 1.0}, "ort-fp32": {"gflops": 2.0}, "ort-int8": {"gflops": 3.0}}
    assert [
        peak_for(b, peaks) for b in ("torch-naive", "torch-sorted", "onnx-fp32", "onnx-int8", "onnx-int8-fused")
    ] == [
        1.0,
        1.0,
        2.0,
        3.0,
        3.0,
    ]
    assert peak_for("onnx-fp32", {"torch-fp32": {"gflops": 1.0}}) is None
    # OpenVINO rows: the machine's peak for their number format (ONNX Runtime's fp32 and int8, torch's bf16).
    peaks["torch-bf16"] = {"gflops": 4.0}
    assert [peak_for(b, peaks) for b in ("openvino-fp32", "openvino-bf16", "openvino-int8")] == [2.0, 4.0, 3.0]
    assert peak_for("openvino-bf16", {"ort-fp32": {"gflops": 2.0}}) is None  # not measured: no bf16 here


def test_the_bf16_peak_is_measured_only_where_the_cpu_has_bf16(monkeypatch):
    from toxdistill.benchmark import peaks

    monkeypatch.setattr(peaks, "torch_fp32_peak", lambda *a, **k: {"gflops": 10.0})
    monkeypatch.setattr(peaks, "torch_bf16_peak", lambda *a, **k: {"gflops": 40.0})
    monkeypatch.setattr(peaks, "cpu_info", lambda: {"flags": ["avx512f", "amx_bf16"], "max_mhz": None})
    assert peaks.machine_peaks(2, onnx=False, bf16=True)["torch-bf16"]["gflops"] == 40.0
    assert "torch-bf16" not in peaks.machine_peaks(2, onnx=False)  # only asked for with an OpenVINO bf16 row
    monkeypatch.setattr(peaks, "cpu_info", lambda: {"flags": ["avx512f"], "max_mhz": None})
    assert "torch-bf16" not in peaks.machine_peaks(2, onnx=False, bf16=True)  # emulated bf16 is no peak


def test_the_bf16_peak_is_the_best_rate_of_bf16_matmuls(monkeypatch):
    import torch

    from toxdistill.benchmark import peaks

    # Each shape's best time is made up; the matmul itself runs once, to see what it multiplies.
    seconds = iter([1e-4, 1e-5, 2e-5, 4e-5])
    dtypes, threads = [], []

    def fake_best_seconds(fn, reps):
        dtypes.append(fn().dtype)
        threads.append(torch.get_num_threads())
        return next(seconds)

    monkeypatch.setattr(peaks, "_best_seconds", fake_best_seconds)
    before = torch.get_num_threads()
    out = peaks.torch_bf16_peak(2, shapes=((64, 64, 64), (128, 64, 32)), reps=1)
    assert dtypes == [torch.bfloat16] * 4 and threads == [1, 1, 2, 2]  # every shape on 1 thread, then on 2
    assert torch.get_num_threads() == before  # the caller's setting is restored
    rates = [
        2 * 64**3 / 1e-4 / 1e9,
        2 * 128 * 64 * 32 / 1e-5 / 1e9,
        2 * 64**3 / 2e-5 / 1e9,
        2 * 128 * 64 * 32 / 4e-5 / 1e9,
    ]
    assert [r["gflops"] for r in out["all"]] == pytest.approx(rates)
    # The best of every shape × thread count: 2·128·64·32 FLOPs in 10 µs on 1 thread.
    assert out["gflops"] == pytest.approx(52.4288) and out["at"] == {"threads": 1, "shape": [128, 64, 32]}


def test_a_measured_rate_above_the_bound_reports_the_clock_it_implies(monkeypatch):
    from toxdistill.benchmark import peaks

    info = {"flags": ["avx512f"], "max_mhz": 2000.0, "mhz_source": "test"}
    monkeypatch.setattr(peaks, "cpu_info", lambda: info)
    monkeypatch.setattr(peaks, "torch_fp32_peak", lambda *a, **k: {"gflops": 320.0})
    out = peaks.machine_peaks(2, onnx=False)
    # Bound at 2 GHz: 2 × 16 × 2 × 2 × 2 = 256 GFLOP/s; 320 measured needs at least 2.5 GHz.
    assert out["theoretical"]["fp32_gflops"] == pytest.approx(256.0)
    assert out["theoretical"]["implied_min_ghz"] == pytest.approx(2.5)
    monkeypatch.setattr(peaks, "torch_fp32_peak", lambda *a, **k: {"gflops": 200.0})
    assert "implied_min_ghz" not in peaks.machine_peaks(2, onnx=False)["theoretical"]
