"""OpenVINO beside ONNX Runtime: the backend's parity, its precisions and their gates, the export folder, the
engine chosen by measurement (``export --auto``), the bench's OpenVINO rows, and the install line without it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from toxdistill.benchmark import auto
from toxdistill.benchmark.auto import choose_fastest
from toxdistill.cli import main
from toxdistill.errors import ToxdistillError
from toxdistill.export.naming import default_output
from toxdistill.export.parity import SAMPLE_TEXTS as EXPORT_SAMPLE
from toxdistill.inference import openvino_backend
from toxdistill.inference.predict import Predictor
from toxdistill.targets import parse_target

from conftest import LABELS, SAMPLE_TEXTS

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

INSTALL = "pip install 'toxdistill[openvino]'"


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def exports(tiny_export) -> dict[str, Path]:
    """The tiny model's ONNX fp32 export and its OpenVINO exports at every precision, made through the CLI."""
    return {"onnx": tiny_export("onnx-fp32"), **{p: tiny_export(f"openvino-{p}") for p in ("fp32", "bf16", "int8")}}


def _record(folder: Path) -> dict:
    return json.loads((folder / "toxdistill.json").read_text())["export"]


# ---------------------------------------------------------------- the backend and its precisions
def test_openvino_fp32_matches_onnx_runtime_and_torch(exports, tiny_model_dir):
    torch_pred = Predictor.load(tiny_model_dir, backend="torch")
    ort = Predictor.load(exports["onnx"])
    ov = Predictor.load(exports["fp32"])  # auto: the engine the record names
    assert ov.backend_name == "openvino" and ov.backend.precision == "fp32" and ov.label_names == LABELS
    # OpenVINO reads the ONNX export itself too, in fp32 unless told otherwise.
    on_onnx = Predictor.load(exports["onnx"], backend="openvino")
    assert on_onnx.backend.model_file.suffix == ".onnx" and on_onnx.backend.inference_precision == "f32"
    texts = SAMPLE_TEXTS * 3
    for bs in (1, 4, 64):  # unpadded single texts and padded batches of different widths
        ref, cut_ref = torch_pred.logits(texts, bs)
        want, _ = ort.logits(texts, bs)
        for pred in (ov, on_onnx):
            got, cut = pred.logits(texts, bs)
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
            assert (cut == cut_ref).all() and cut.any()


def test_overlapped_tokenizing_is_bit_identical_on_both_engines(exports):
    texts = [t[: 7 * (i % 13 + 1)] for i, t in enumerate(SAMPLE_TEXTS * 50)]  # 300 texts of many lengths
    for folder in (exports["onnx"], exports["int8"]):
        pred = Predictor.load(folder, threads=1)
        pred.overlap = False
        seq, _ = pred.logits(texts, 4)  # 5 chunks of 64 texts
        pred.overlap = True
        got, _ = pred.logits(texts, 4)
        np.testing.assert_array_equal(got, seq)


def test_an_openvino_export_describes_itself(exports):
    folder = exports["fp32"]
    names = {p.name for p in folder.iterdir()}
    assert {"model.xml", "model.bin", "config.json", "tokenizer.json", "toxdistill.json"} <= names
    assert not any(n.endswith(".onnx") for n in names)
    rec = _record(folder)
    assert rec["engine"] == "openvino" and rec["precision"] == "fp32" and rec["file"] == "model.xml"
    assert rec["cpu"] and isinstance(rec["cpu_features"], list) and rec["versions"]["openvino"]
    assert rec["parity"]["fp32"]["ok"]  # the ONNX graph it was made from, against torch
    block = rec["parity"]["openvino-fp32"]
    assert block["against"] == "onnxruntime fp32" and block["ok"] and block["max_abs_diff"] <= 1e-4
    # The weights are saved as they are: save_model's default would have halved them to fp16.
    assert 'element_type="f16"' not in (folder / "model.xml").read_text()


def _thread_cpus() -> list[set[int]]:
    """The CPUs each thread of this process may run on (Linux)."""
    out = []
    for status in Path("/proc/self/task").glob("*/status"):
        line = next(x for x in status.read_text().splitlines() if x.startswith("Cpus_allowed_list:"))
        cpus: set[int] = set()
        for part in line.split(":", 1)[1].strip().split(","):
            a, _, b = part.partition("-")
            cpus |= set(range(int(a), int(b or a) + 1))
        out.append(cpus)
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or len(os.sched_getaffinity(0)) < 2, reason="Linux, 2+ CPUs")
def test_openvino_pins_no_thread_to_a_core(exports):
    # Pinned, every process's inference thread went to the same first core, and two one-thread server
    # workers shared one core while the other idled.
    allowed = os.sched_getaffinity(0)
    pred = Predictor.load(exports["int8"], threads=1)
    pred.logits(list(SAMPLE_TEXTS))
    assert pred.backend.compiled.get_property("ENABLE_CPU_PINNING") is False
    assert all(cpus == allowed for cpus in _thread_cpus())


def test_openvino_batches_come_in_few_widths_with_the_same_answers(exports):
    # Every new input shape costs OpenVINO memory it keeps: widths in steps of 8 tokens bound them.
    pred = Predictor.load(exports["int8"], threads=1)
    seen: list[int] = []
    run = pred.backend.__call__
    pred.backend = _Recording(run, seen, pred.backend.pad_multiple)
    texts = list(SAMPLE_TEXTS) + [" ".join(["word"] * k) for k in range(1, 30)]
    widened, _ = pred.logits(texts, batch_size=4)
    assert pred.pad_multiple == 8 and seen and all(w % 8 == 0 or w == pred.max_length for w in seen)
    pred.backend.pad_multiple = 1
    seen.clear()
    exact, _ = pred.logits(texts, batch_size=4)
    assert any(w % 8 for w in seen)
    np.testing.assert_allclose(widened, exact, atol=1e-4)


def test_openvino_runs_batches_in_few_row_counts_with_the_same_answers(exports):
    from toxdistill.inference.openvino_backend import padded_rows

    assert [padded_rows(n) for n in range(1, 14)] == [1, 2, 3, 4, 8, 8, 8, 8, 12, 12, 12, 12, 16]
    assert len({padded_rows(n) for n in range(1, 65)}) == 19
    pred = Predictor.load(exports["int8"], threads=1)
    texts = list(SAMPLE_TEXTS)[:5]
    batch = pred.batch_inputs(pred.encode(texts)[0])
    got = pred.backend(batch)
    assert got.shape == (5, len(pred.label_names))
    assert pred.backend._request.get_input_tensor(0).get_shape()[0] == 8  # 5 rows ran as 8
    one_by_one = np.concatenate([pred.backend({k: v[i : i + 1] for k, v in batch.items()}) for i in range(5)])
    np.testing.assert_allclose(got, one_by_one, atol=1e-4)


class _Recording:
    def __init__(self, run, seen: list[int], pad_multiple: int):
        self.run, self.seen, self.pad_multiple, self.name = run, seen, pad_multiple, "openvino"

    def __call__(self, batch):
        self.seen.append(batch["input_ids"].shape[1])
        return self.run(batch)


def test_int8_is_static_and_passes_its_gate_on_the_sample(exports):
    rec = _record(exports["int8"])
    q = rec["quantization"]
    assert q["method"] == "static" and q["tool"].startswith("nncf") and q["calibration"]["texts"] == "built-in sample"
    assert "FakeQuantize" in (exports["int8"] / "model.xml").read_text()
    block = rec["parity"]["openvino-int8"]
    # Whether int8 agrees with fp32 is the CPU's numerics (CPUs without VNNI differ); the rule is ours: the
    # verdict follows the thresholds, and the recorded agreement is the one the two folders give.
    assert block["thresholds"]["agreement"] == 0.99
    drops = max(block.get("f1_weighted_drop_points", 0.0), block.get("f1_macro_drop_points", 0.0))
    assert block["ok"] == (block["agreement"] >= 0.99 and drops <= 0.5)
    assert rec["size_mb"] < _record(exports["fp32"])["size_mb"]
    pred = Predictor.load(exports["int8"])
    assert pred.backend.precision == "int8"
    got, _ = pred.logits(EXPORT_SAMPLE)
    ref, _ = Predictor.load(exports["onnx"]).logits(EXPORT_SAMPLE)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() == pytest.approx(block["agreement"])


def test_bf16_runs_where_the_cpu_has_it_and_falls_back_in_one_line(exports, monkeypatch, caplog):
    pred = Predictor.load(exports["bf16"])
    if openvino_backend.cpu_has_bf16():
        assert pred.backend.precision == "bf16" and pred.backend.inference_precision == "bf16"
    else:
        assert pred.backend.precision == "fp32"
    got, _ = pred.logits(SAMPLE_TEXTS)
    ref, _ = Predictor.load(exports["onnx"]).logits(SAMPLE_TEXTS)
    np.testing.assert_allclose(got, ref, atol=0.05)  # bf16 keeps 8 bits of mantissa
    assert _record(exports["bf16"])["parity"]["openvino-bf16"]["ok"]

    monkeypatch.setattr(openvino_backend, "cpu_has_bf16", lambda core=None: False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fallback = Predictor.load(exports["bf16"])
    assert fallback.backend.precision == "fp32" and fallback.backend.inference_precision == "f32"
    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(notes) == 1 and "no bf16" in notes[0] and "\n" not in notes[0]
    np.testing.assert_allclose(fallback.logits(SAMPLE_TEXTS)[0], ref, atol=1e-4, rtol=0)


def test_int8_calibrates_a_model_that_takes_no_token_type_ids(tokenizer, tmp_path, capsys):
    """NNCF is fed only the inputs the graph takes: an MPNet (like RoBERTa or DistilBERT) has no token_type_ids."""
    from conftest import tiny_family

    model = tmp_path / "mpnet"
    tiny_family("mpnet", n_layers=2, hidden=48).save_pretrained(model)
    tokenizer.save_pretrained(model)
    meta = {"name": "mpnet", "kind": "student", "label_names": LABELS, "max_length": 32}
    (model / "toxdistill.json").write_text(json.dumps(meta))
    code, _, err = _run(["export", model, "--target", "openvino-int8", "-o", tmp_path / "int8"], capsys)
    assert code == 0, err
    rec = _record(tmp_path / "int8")
    assert rec["inputs"] == ["input_ids", "attention_mask"] and rec["quantization"]["method"] == "static"
    assert Predictor.load(tmp_path / "int8").logits(SAMPLE_TEXTS)[0].shape == (len(SAMPLE_TEXTS), 3)


def test_bad_openvino_requests(exports, tiny_model_dir, tmp_path, capsys):
    with pytest.raises(ToxdistillError, match="no OpenVINO IR or .onnx"):
        Predictor.load(tiny_model_dir, backend="openvino")
    with pytest.raises(ToxdistillError, match="unknown OpenVINO precision"):
        Predictor.load(exports["onnx"], backend="openvino", precision="fp8")
    for extra, message in (
        (["--target", "openvino-int8", "--int8-embeddings"], "--int8-embeddings is ONNX Runtime's int8"),
        (["--auto", "--target", "openvino-int8"], "--auto chooses the target itself"),
        (["--threads", "2"], "--threads only applies to --auto"),
    ):
        code, _, err = _run(["export", tiny_model_dir, *extra, "-o", tmp_path / "x"], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_without_the_extra_every_path_says_how_to_install_it(exports, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError, find_spec says None
    with pytest.raises(ToxdistillError, match=r"pip install 'toxdistill\[openvino\]'"):
        Predictor.load(exports["int8"])
    src = tmp_path / "in.txt"
    src.write_text("you are lovely\nget out\n")
    for argv in (
        ["predict", exports["int8"], src, "-o", tmp_path / "out.csv"],
        ["export", tiny_model_dir, "--target", "openvino-fp32", "-o", tmp_path / "ov"],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "openvino is not installed" in err.lower() and INSTALL in err, err
    # --auto measures what there is, and says what is left out.
    notes: list[str] = []
    assert [t.name for t in auto.available_candidates(notes.append)] == ["onnx-fp32", "onnx-int8", "onnx-int8-fused"]
    assert len(notes) == 1 and INSTALL in notes[0]
    # The ONNX Runtime path is untouched.
    assert Predictor.load(exports["onnx"]).backend_name == "onnx"


# ---------------------------------------------------------------- export --auto
def test_choose_fastest_keeps_the_fastest_that_passes():
    cands = [
        {"backend": "a", "samples_per_s": 100.0, "ok": True},
        {"backend": "b", "samples_per_s": 300.0, "ok": False},
        {"backend": "c", "samples_per_s": 200.0, "ok": True},
    ]
    assert choose_fastest(cands)["backend"] == "c"
    assert choose_fastest([{**c, "ok": False} for c in cands]) is None
    assert choose_fastest([]) is None


RATES = {"onnx-fp32": 100.0, "onnx-int8": 250.0, "openvino-fp32": 150.0, "openvino-int8": 400.0}
FOLDERS = {
    "-onnx": "onnx-fp32",
    "-onnx-int8": "onnx-int8",
    "-openvino-fp32": "openvino-fp32",
    "-openvino-int8": "openvino-int8",
}


@pytest.fixture
def fake_timing(monkeypatch):
    """Each candidate's rate fixed by its folder, so the choice is the rule's and not the machine's; the
    fastest (openvino-int8) is made to fail its gate."""
    calls = []

    def pass_rate(pred, texts, batch_size):
        backend = FOLDERS[pred.model_dir.name.removeprefix("tiny")]
        calls.append((backend, len(texts)))
        return RATES[backend]

    real_gate = auto.gate_block

    def gate_block(record):
        # Every gate's outcome is set here: a real int8 gate fails on CPUs without VNNI, and the rule is the test.
        block = dict(real_gate(record))
        block["ok"] = not (record.get("engine") == "openvino" and record.get("precision") == "int8")
        return block

    monkeypatch.setattr(auto, "_pass_rate", pass_rate)
    monkeypatch.setattr(auto, "gate_block", gate_block)
    monkeypatch.setattr(auto, "available_candidates", lambda say=None: [parse_target(t) for t in RATES])
    return calls


def test_auto_keeps_the_fastest_candidate_that_passes(fake_timing, tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    code, out, err = _run(["export", model, "--auto"], capsys)
    assert code == 0, err
    chosen = tmp_path / "tiny-auto"
    rec = _record(chosen)
    choice = rec["auto"]
    # openvino-int8 is fastest but fails its gate: onnx-int8 is the fastest that passes.
    assert choice["chosen"] == "onnx-int8" and rec["engine"] == "onnxruntime" and rec["precision"] == "int8"
    # The fp32 targets are not timed once a target below fp32 passed (the ONNX graph is made: the others start from it).
    below = {b: r for b, r in RATES.items() if not b.endswith("fp32")}
    assert {c["backend"]: c["samples_per_s"] for c in choice["candidates"]} == below
    assert choice["not_timed"] == ["onnx-fp32", "openvino-fp32"] and "onnx-fp32, openvino-fp32 not timed" in out
    assert {c["backend"]: c["ok"] for c in choice["candidates"]}["openvino-int8"] is False
    assert choice["cpu"] == rec["cpu"] and choice["timing"]["texts"] == 300 and choice["timing"]["passes"] == 3
    # Timed in turns, one pass of each candidate per round, 3 rounds at least, on 300 texts; the record says so.
    assert choice["timing"]["in_turns"] is True
    rounds, rest = divmod(len(fake_timing), len(below))
    assert rest == 0 and rounds >= 3 and all(n == 300 for _, n in fake_timing)
    assert [c[0] for c in fake_timing] == list(below) * rounds
    assert "chose onnx-int8" in out
    assert Predictor.load(chosen).backend_name == "onnx" and (chosen / "model.int8.onnx").is_file()
    # Every export stays where export puts it by default, so a second --auto (or bench) reuses it.
    for b in (*below, "onnx-fp32"):
        assert default_output(model, parse_target(b)).is_dir()
    assert not default_output(model, parse_target("openvino-fp32")).exists()
    code, out, _ = _run(["export", model, "--auto"], capsys)
    assert code == 0 and out.count("reusing") == len(below) + 1


def test_auto_times_fp32_when_nothing_below_it_passes(fake_timing, tiny_model_dir, tmp_path, monkeypatch):
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setattr(auto, "gate_block", lambda record: {"ok": record.get("precision") == "fp32"})
    said: list[str] = []
    out = auto.auto_export(model, say=said.append)
    choice = _record(out)["auto"]
    assert choice["chosen"] == "openvino-fp32" and choice["not_timed"] == []  # 150/s against ONNX Runtime's 100
    assert list(dict.fromkeys(c[0] for c in fake_timing)) == [
        "onnx-int8",
        "openvino-int8",
        "onnx-fp32",
        "openvino-fp32",
    ]


def test_auto_with_no_passing_candidate_writes_nothing(fake_timing, tiny_model_dir, tmp_path, monkeypatch, capsys):
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setattr(auto, "gate_block", lambda record: {"ok": False})
    monkeypatch.setattr(auto, "available_candidates", lambda say=None: [parse_target("onnx-fp32")])
    code, _, err = _run(["export", model, "--auto"], capsys)
    assert code == 2 and "none of the 1 candidates passed" in err and err.count("\n") == 1
    assert not (tmp_path / "tiny-auto").exists()


# ---------------------------------------------------------------- in a run: calibration and the bench
def test_int8_calibrates_on_training_rows_and_the_bench_has_openvino_rows(tmp_path, tokenizer, capsys):
    from test_export import _labelled_run

    from toxdistill.data.split import load_run_split
    from toxdistill.export.parity import calibration_texts

    run, _ = _labelled_run(tmp_path, tokenizer)
    split = load_run_split(run)
    cal = calibration_texts(run / "models" / "teacher", n=50)
    assert len(cal.texts) == 50 and "training texts of" in cal.source
    assert set(cal.texts) <= set(split.train.texts)

    backends = "torch-sorted,onnx-fp32,openvino-fp32,openvino-int8"
    flags = ["--limit", "20", "--latency-n", "3", "--threads", "1", "--quick", "--overlap", "both", "--no-plot"]
    code, out, err = _run(["bench", run, "--targets", backends, *flags], capsys)
    assert code == 0, err
    rec = _record(run / "export" / "teacher-openvino-int8")
    assert "training texts of" in rec["quantization"]["calibration"]["texts"]
    assert rec["quantization"]["calibration"]["n"] == min(300, len(split.train.texts))
    assert "f1_weighted_drop_points" in rec["parity"]["openvino-int8"]  # gated on the labelled test split

    res = json.loads((run / "bench.json").read_text())
    rows = {r["backend"]: r for r in res["rows"]}
    assert rows["openvino-fp32"]["peak_engine"] == "ort-fp32" and rows["openvino-int8"]["peak_engine"] == "ort-int8"
    for b in ("openvino-fp32", "openvino-int8"):
        r = rows[b]
        assert r["pct_of_peak"] == pytest.approx(100 * r["gflops_computed"] / res["peaks"][r["peak_engine"]]["gflops"])
        assert "agreement_with_torch" in r and "gate_ok" in r and r["size_mb"] > 0
        assert set(r["sequential"]["time_shares"]) == {"tokenize", "batching", "model", "other"}
    assert rows["openvino-int8"]["f1_macro_source"] == "int8 parity check"
    chosen = [b for b, r in rows.items() if r.get("auto_choice")]
    assert len(chosen) == 1 and res["auto"]["teacher"]["backend"] == chosen[0]
    fastest = max((r for r in rows.values() if r.get("gate_ok")), key=lambda r: r["samples_per_s"])
    assert chosen[0] == fastest["backend"]
    assert res["machine"]["openvino"] and res["overlap"] == "both"
    assert f"auto (* above): teacher → {chosen[0]}" in out and "tokenizer overlap (before → after)" in out


def test_bench_leaves_out_what_this_machine_cannot_run(monkeypatch):
    from toxdistill.benchmark import bench
    from toxdistill.targets import TORCH_ROWS, default_targets

    notes: list[str] = []
    monkeypatch.setattr(auto, "missing_module", lambda target: None)
    monkeypatch.setattr(auto, "cpu_has_bf16", lambda: False)
    got = bench.rows_to_bench(None, notes.append)
    assert "openvino-bf16" not in got and "openvino-int8" in got and "no bf16" in notes[0]
    assert got[: len(TORCH_ROWS)] == TORCH_ROWS
    monkeypatch.setattr(auto, "missing_module", lambda target: "openvino" if target.engine == "openvino" else None)
    got = bench.rows_to_bench(None, notes.append)
    assert got == (*TORCH_ROWS, *(t.name for t in default_targets() if t.engine != "openvino"))
    assert INSTALL in notes[-1] and len(notes) == 2  # one note for the engine, not one per target
