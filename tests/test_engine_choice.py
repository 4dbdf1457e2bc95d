"""The CPU decides: its int8 dot-product instructions (read from faked /proc/cpuinfo flags), ONNX Runtime's int8
quantized with reduce_range where it has none (and recorded), an export below fp32 made again on another CPU,
and the one-line note for a folder whose engine was chosen on another CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toxdistill import cpu
from toxdistill.export.parity import sample_texts
from toxdistill.export.quantize import wants_reduce_range
from toxdistill.inference.export_record import engine_cpu_note, same_cpu
from toxdistill.targets import parse_target

pytest.importorskip("onnxruntime")

AVX2 = ["fpu", "sse2", "avx", "avx2", "fma"]
VNNI = [*AVX2, "avx512f", "avx512_vnni", "avx512_bf16"]


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """Set this machine's CPU: ``fake_cpu(name, flags)`` writes a /proc/cpuinfo the CPU module reads."""

    def make(name: str = "Made-up CPU", flags: list[str] = AVX2) -> None:
        info = tmp_path / f"cpuinfo-{len(flags)}-{abs(hash(name))}"
        info.write_text(f"processor\t: 0\nmodel name\t: {name}\nflags\t\t: {' '.join(flags)}\n\n")
        monkeypatch.setattr(cpu, "CPUINFO", info)

    return make


@pytest.mark.parametrize(
    "flags, dot, reduce",
    [
        (AVX2, [], True),
        (VNNI, ["avx512_vnni"], False),
        ([*AVX2, "avx_vnni"], ["avx_vnni"], False),  # Alder Lake and later: VNNI without AVX-512
        ([*AVX2, "amx_int8", "amx_bf16"], ["amx_int8"], False),
        ([], [], True),  # no flags readable: the safe side
    ],
)
def test_int8_dot_product_instructions_decide_reduce_range(fake_cpu, flags, dot, reduce):
    fake_cpu(flags=flags)
    assert cpu.int8_dot() == dot and wants_reduce_range() is reduce
    assert wants_reduce_range(["avx2"]) is True and wants_reduce_range(["avx2", "avx512_vnni"]) is False


def test_cpu_kind_names_the_features_and_same_cpu_compares_them(fake_cpu):
    fake_cpu("AMD EPYC", VNNI)
    assert cpu.cpu_name() == "AMD EPYC" and cpu.cpu_kind() == "AMD EPYC (avx2, avx512f, avx512_vnni, avx512_bf16)"
    assert same_cpu("AMD EPYC", ["avx512_bf16", "avx2", "avx512f", "avx512_vnni"]) and same_cpu("AMD EPYC", None)
    # Two virtual machines may share the name: the features tell them apart.
    assert not same_cpu("AMD EPYC", ["avx2"]) and not same_cpu("Intel Xeon", None)


def _spy_quantizer(monkeypatch) -> list[dict]:
    import onnxruntime.quantization as q

    calls: list[dict] = []
    real = q.quantize_dynamic

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(q, "quantize_dynamic", spy)
    return calls


def test_int8_without_vnni_is_quantized_with_reduce_range_and_made_again_for_a_vnni_cpu(
    fake_cpu, tiny_model_dir, tmp_path, monkeypatch
):
    from toxdistill.benchmark.auto import ensure_export

    calls = _spy_quantizer(monkeypatch)
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    int8 = parse_target("onnx-int8")
    said: list[str] = []

    fake_cpu("AMD EPYC", AVX2)
    out = ensure_export(model, int8, sample_texts(), said.append)
    record = json.loads((out / "toxdistill.json").read_text())["export"]
    assert calls[-1]["reduce_range"] is True
    assert record["quantization"]["reduce_range"] is True and record["quantization"]["int8_dot"] == []
    assert record["cpu_features"] == ["avx2"]
    ensure_export(model, int8, sample_texts(), said.append)
    assert said[-1] == f"reusing {out}" and len(calls) == 1

    fake_cpu("AMD EPYC", VNNI)  # the same name, another CPU kind: the graph's parity does not carry over
    ensure_export(model, int8, sample_texts(), said.append)
    assert len(calls) == 2 and calls[-1]["reduce_range"] is False
    assert any(s.startswith(f"exporting onnx-int8 → {out} (its parity was checked on") for s in said)
    assert json.loads((out / "toxdistill.json").read_text())["export"]["quantization"]["int8_dot"] == ["avx512_vnni"]


def test_an_old_int8_export_without_reduce_range_is_made_again_on_a_cpu_without_vnni(fake_cpu, tmp_path):
    from toxdistill.benchmark.auto import stale_here

    fake_cpu("AMD EPYC", AVX2)
    out = tmp_path / "m-onnx-int8"
    out.mkdir()
    record = {"engine": "onnxruntime", "precision": "int8", "cpu": "AMD EPYC", "cpu_features": ["avx2"]}
    record["quantization"] = {"method": "dynamic", "op_types": ["MatMul"]}  # written before reduce_range was
    (out / "toxdistill.json").write_text(json.dumps({"export": record}))
    assert stale_here(out, parse_target("onnx-int8")) == "quantized for a CPU with VNNI"
    assert stale_here(out, parse_target("onnx-fp32")) is None  # fp32 holds on any CPU
    record["quantization"]["reduce_range"] = True
    (out / "toxdistill.json").write_text(json.dumps({"export": record}))
    assert stale_here(out, parse_target("onnx-int8")) is None


# ---------------------------------------------------------------- the note for a folder chosen on another CPU
def _auto_folder(root: Path, cpu_name: str, features: list[str] | None) -> Path:
    run = root / "run"
    (run / "models" / "odd").mkdir(parents=True)
    folder = run / "export" / "odd-auto"
    folder.mkdir(parents=True)
    auto = {"chosen": "openvino-int8", "cpu": cpu_name, "cpu_features": features, "rule": "the fastest"}
    record = {"engine": "openvino", "precision": "int8", "source": str(run / "models" / "odd"), "auto": auto}
    (folder / "toxdistill.json").write_text(json.dumps({"export": record}))
    return folder


def test_the_note_says_where_the_engine_was_chosen_and_how_to_choose_again(fake_cpu, tmp_path):
    fake_cpu("AMD EPYC", AVX2)
    folder = _auto_folder(tmp_path, "Intel(R) Xeon(R) Platinum", ["avx2", "avx512_vnni", "amx_int8"])
    note = engine_cpu_note(folder)
    assert note is not None and "\n" not in note and note.startswith("note: ")
    assert "(openvino-int8) was chosen on Intel(R) Xeon(R) Platinum (avx2, avx512_vnni, amx_int8)" in note
    assert "this CPU, AMD EPYC (avx2)" in note
    assert f"'toxdistill export {tmp_path / 'run' / 'models' / 'odd'} --auto'" in note
    assert f"'toxdistill frontier {tmp_path / 'run'}'" in note
    fake_cpu("Intel(R) Xeon(R) Platinum", ["avx2", "avx512_vnni", "amx_int8"])
    assert engine_cpu_note(folder) is None  # chosen here
    assert engine_cpu_note(tmp_path / "run" / "models" / "odd") is None  # not chosen at all


def test_export_auto_says_the_note_before_choosing_again(fake_cpu, tiny_model_dir, tmp_path, monkeypatch):
    from toxdistill.benchmark import auto

    fake_cpu("AMD EPYC", AVX2)
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "tiny-auto"
    out.mkdir()
    record = {"engine": "onnxruntime", "precision": "fp32", "source": str(model)}
    record["auto"] = {"chosen": "onnx-fp32", "cpu": "Some Other CPU", "cpu_features": ["avx2"]}
    (out / "toxdistill.json").write_text(json.dumps({"export": record}))
    said: list[str] = []
    auto.auto_export(model, out, candidates=["onnx-fp32"], say=said.append)
    assert said[0].startswith(f"note: the engine of {out} (onnx-fp32) was chosen on Some Other CPU (avx2)")
    assert said[0].endswith("; choosing again now")
    choice = json.loads((out / "toxdistill.json").read_text())["export"]["auto"]
    assert choice["cpu"] == "AMD EPYC" and choice["cpu_features"] == ["avx2"] and choice["pinned"] is False
    assert engine_cpu_note(out) is None


def test_a_target_made_from_the_fp32_export_takes_its_saved_parity_logits(tiny_model_dir, tmp_path):
    """int8 (and OpenVINO) are held against the fp32 graph's logits: those its own parity pass saved, for the same
    texts in the same batches, not computed again."""
    import numpy as np

    from toxdistill.export.job import FP32_LOGITS, ExportJob, export_model

    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    fp32 = export_model(ExportJob(model, "onnx-fp32", texts=sample_texts()))
    saved = np.load(fp32 / FP32_LOGITS)
    assert saved.shape == (len(sample_texts().texts), 3)
    np.save(fp32 / FP32_LOGITS, saved + 1.0)  # a marker: every logit one higher, the same classes

    def int8_block(**job) -> dict:
        out = export_model(ExportJob(model, "onnx-int8", texts=sample_texts(), strict=False, **job))
        return json.loads((out / "toxdistill.json").read_text())["export"]["parity"]["int8"]

    assert int8_block()["max_abs_diff"] > 0.5  # held against the saved logits
    assert int8_block(batch_size=8, out=tmp_path / "other")["max_abs_diff"] < 0.5  # other batches: computed again


def test_the_screen_times_candidates_in_turns_and_keeps_each_ones_fastest_pass(tmp_path, monkeypatch):
    from toxdistill.benchmark import auto, timing

    calls: list[str] = []
    # Candidate "a" is the faster engine, but the machine slows down for a spell: timed in blocks, every pass of
    # "a" would fall in it; in turns, the spell costs each candidate one pass.
    clock = {"t": 0.0}
    slow_spell = range(2, 7)

    class Fake:
        def __init__(self, name: str, cost: float):
            self.name, self.cost = name, cost

        def logits(self, texts, batch_size, sort=True):
            calls.append(self.name)
            clock["t"] += self.cost * (5 if len(calls) in slow_spell else 1)
            return np.zeros((len(texts), 3), dtype=np.float32), np.zeros(len(texts), dtype=bool)

    fakes = {"a": Fake("a", 0.1), "b": Fake("b", 0.15)}
    monkeypatch.setattr(auto.Predictor, "load", lambda folder, backend, threads: fakes[Path(folder).name])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["t"])
    folders = []
    for name, target in (("a", "openvino-int8"), ("b", "onnx-int8")):
        (tmp_path / name).mkdir()
        t = parse_target(target)
        rec = {"engine": t.spec.record_engine, "precision": "int8", "parity": {t.parity_block: {"ok": True}}}
        (tmp_path / name / "toxdistill.json").write_text(json.dumps({"export": rec}))
        folders.append((t, tmp_path / name))
    out = auto._time_side_by_side(folders, ["x"] * 10, 64, 1, passes=3)
    assert calls[:2] == ["a", "b"]  # the warm-ups
    timed = calls[2:]
    assert timed[0::2] == ["a"] * (len(timed) // 2) and timed[1::2] == ["b"] * (len(timed) // 2)
    a, b = out
    assert len(a["samples_per_s_passes"]) == len(b["samples_per_s_passes"]) >= 3
    assert a["samples_per_s"] == max(a["samples_per_s_passes"]) == pytest.approx(10 / 0.1)
    assert b["samples_per_s"] == pytest.approx(10 / 0.15) and auto.choose_fastest(out)["backend"] == "openvino-int8"
    # Each candidate ran at least AUTO_MIN_SECONDS: at 0.1 s a pass, 5 rounds and more.
    assert sum(10 / r for r in a["samples_per_s_passes"]) >= auto.AUTO_MIN_SECONDS
