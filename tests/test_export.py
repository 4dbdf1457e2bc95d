"""ONNX export: round-trip parity, int8, the self-describing folder, bad inputs, and the benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toxdistill.cli import main
from toxdistill.data.split import TextSet
from toxdistill.errors import ToxdistillError
from toxdistill.export.parity import reduced_precision_gate
from toxdistill.targets import Target, bench_row_names, parse_target

from conftest import LABELS, SAMPLE_TEXTS, make_tiny_run

pytest.importorskip("onnxruntime")


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_one_line_error(code, err):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("toxdistill: error:"), err
    assert "Traceback" not in err


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def exports(tiny_export):
    """fp32 and int8 exports of the tiny model, made once through the CLI (shared with the other files)."""
    return tiny_export("onnx-fp32"), tiny_export("onnx-int8")


def test_fp32_export_is_self_describing_and_matches_torch(exports, tiny_model_dir):
    from toxdistill.inference.predict import Predictor

    fp32, _ = exports
    assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json", "toxdistill.json"} <= {
        p.name for p in fp32.iterdir()
    }
    meta = json.loads((fp32 / "toxdistill.json").read_text())
    assert meta["label_names"] == LABELS and meta["name"] == "tiny-bert"
    rec = meta["export"]
    assert rec["file"] == "model.onnx" and rec["quantization"] is None and rec["exporter"] in ("torchscript", "dynamo")
    assert rec["parity"]["fp32"]["max_abs_diff"] <= 1e-4 and rec["parity"]["fp32"]["ok"]
    cfg = json.loads((fp32 / "config.json").read_text())
    assert [cfg["id2label"][str(i)] for i in range(3)] == LABELS

    torch_pred = Predictor.load(tiny_model_dir, backend="torch")
    onnx_pred = Predictor.load(fp32)  # auto picks ONNX from the folder
    assert onnx_pred.backend_name == "onnx" and onnx_pred.label_names == LABELS
    texts = SAMPLE_TEXTS * 3
    for bs in (1, 4, 64):  # unpadded single texts and padded batches of different widths
        ref, tr_ref = torch_pred.logits(texts, bs)
        got, tr_got = onnx_pred.logits(texts, bs)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
        assert (tr_ref == tr_got).all()


def test_int8_export_runs_and_reports_agreement(exports, capsys):
    from toxdistill.inference.predict import Predictor

    _, int8 = exports
    names = {p.name for p in int8.iterdir()}
    assert "model.int8.onnx" in names and "model.onnx" not in names
    rec = json.loads((int8 / "toxdistill.json").read_text())["export"]
    assert rec["quantization"]["weights"] == "QInt8" and rec["quantization"]["per_channel"]
    block = rec["parity"]["int8"]
    assert 0.0 <= block["agreement"] <= 1.0 and block["n"] == 20
    logits, _ = Predictor.load(int8).logits(SAMPLE_TEXTS)
    assert logits.shape == (len(SAMPLE_TEXTS), 3) and np.isfinite(logits).all()


def test_fused_export_fuses_every_layer_and_keeps_parity(tiny_model_dir, tmp_path, capsys):
    import onnx

    from toxdistill.export.folder import export_is_current
    from toxdistill.inference.predict import Predictor

    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    code, out, err = _run(["export", tiny_model_dir, "--target", "onnx-fp32-fused", "-o", fp32], capsys)
    assert code == 0, err
    rec = json.loads((fp32 / "toxdistill.json").read_text())["export"]
    ops = rec["fusion"]["fused_ops"]
    # The tiny BERT has 4 layers: one attention and two residual LayerNorms each, embeddings once.
    assert ops["Attention"] == 4 and ops["SkipLayerNormalization"] == 8 and ops["EmbedLayerNormalization"] == 1
    assert "4 Attention" in out
    graph_ops = {n.op_type for n in onnx.load(str(fp32 / "model.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= graph_ops and "Softmax" not in graph_ops
    ref, _ = Predictor.load(tiny_model_dir, backend="torch").logits(SAMPLE_TEXTS, 4)
    got, _ = Predictor.load(fp32).logits(SAMPLE_TEXTS, 4)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)

    code, out, err = _run(["export", tiny_model_dir, "--target", "onnx-int8-fused", "-o", int8], capsys)
    assert code == 0, err
    rec = json.loads((int8 / "toxdistill.json").read_text())["export"]
    assert "Attention" in rec["quantization"]["op_types"] and rec["fusion"]["fused_ops"]["Attention"] == 4
    assert "QAttention" in {n.op_type for n in onnx.load(str(int8 / "model.int8.onnx")).graph.node}
    # An export is current only for the fusion setting it was made with.
    assert export_is_current(fp32, tiny_model_dir, Target("onnx", "fp32", fused=True))
    assert not export_is_current(fp32, tiny_model_dir, Target("onnx", "fp32"))
    assert export_is_current(int8, tiny_model_dir, parse_target("onnx-int8-fused"))
    assert not export_is_current(int8, tiny_model_dir, parse_target("onnx-int8"))


def test_export_prints_agreement(tiny_model_dir, tmp_path, capsys):
    code, out, _ = _run(["export", tiny_model_dir, "--target", "onnx-int8", "-o", tmp_path / "e"], capsys)
    assert code == 0
    assert "fp32 ONNX vs torch: max |Δlogit|" in out and "int8 vs fp32: agreement" in out and "built-in sample" in out


def _labelled_run(root: Path, tokenizer) -> tuple[Path, Path]:
    """A run folder whose config points at a small made-up CSV, with a saved split."""
    import yaml

    from toxdistill.config import load_config
    from toxdistill.data.dataset import load_dataset
    from toxdistill.data.split import make_or_load_split

    run = make_tiny_run(root, tokenizer, names=("teacher",))
    rng = np.random.default_rng(0)
    words = ["nice", "day", "hate", "you", "people", "trash", "love", "game", "go", "away", "the", "best"]
    rows = [
        {"tweet": " ".join(rng.choice(words, rng.integers(2, 12))), "class": int(rng.integers(0, 3))}
        for _ in range(400)
    ]
    data = root / "made_up.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    cfg = {"name": "tiny-run", "data": {"source": "file", "path": str(data), "sha256": None}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    c = load_config(run / "config.yaml")
    make_or_load_split(load_dataset(data, c.data), run / "split.json", c.data, c.seed)
    return run, data


def test_export_in_a_run_checks_on_its_test_split(tmp_path, tokenizer, capsys):
    run, _ = _labelled_run(tmp_path, tokenizer)
    code, out, err = _run(["export", run / "models" / "teacher", "--target", "onnx-int8", "--allow-drift"], capsys)
    assert code == 0, err
    dest = run / "export" / "teacher-onnx-int8"  # default: the run's export/ folder, not models/
    assert (dest / "model.int8.onnx").is_file()
    assert "test split of" in out and "weighted F1" in out
    block = json.loads((dest / "toxdistill.json").read_text())["export"]["parity"]["int8"]
    assert block["n"] == 40 and {"f1_weighted", "f1_weighted_ref", "f1_macro", "f1_weighted_drop_points"} <= set(block)
    assert (run / "models").is_dir() and sorted(p.name for p in (run / "models").iterdir()) == ["teacher"]


def test_default_output_names(tmp_path, tiny_model_dir, tiny_run):
    from toxdistill.export.naming import default_output

    def named(target: str, model=tiny_model_dir):
        return default_output(model, parse_target(target))

    # The folder names exports have always had on disk: onnx-fp32 is <m>-onnx, every other target <m>-<target>.
    assert named("onnx-fp32") == tiny_model_dir.with_name("tiny-bert-onnx")
    assert named("onnx-fp32-fused") == tiny_model_dir.with_name("tiny-bert-onnx-fused")
    assert named("onnx-int8-fused") == tiny_model_dir.with_name("tiny-bert-onnx-int8-fused")
    assert named("onnx-int8") == tiny_model_dir.with_name("tiny-bert-onnx-int8")
    assert named("openvino-bf16") == tiny_model_dir.with_name("tiny-bert-openvino-bf16")
    assert named("onnx-int8", tiny_run / "models" / "odd") == tiny_run / "export" / "odd-onnx-int8"
    # One folder per target, and back.
    names = [named(t).name for t in bench_row_names() if not t.startswith("torch")]
    assert len(set(names)) == len(names)


@pytest.fixture
def broken(tmp_path, tiny_model_dir):
    def make(kind: str) -> Path:
        d = tmp_path / kind
        if kind == "missing":
            return d
        shutil.copytree(tiny_model_dir, d)
        if kind == "no-weights":
            (d / "model.safetensors").unlink()
        elif kind == "truncated":
            f = d / "model.safetensors"
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        elif kind == "bad-meta":
            (d / "toxdistill.json").write_text("{not json")
        return d

    return make


@pytest.mark.parametrize("kind", ["missing", "no-weights", "truncated", "bad-meta"])
def test_export_bad_model_folder(kind, broken, exports, tmp_path, capsys):
    src = broken(kind)
    out = tmp_path / "previous-export"
    shutil.copytree(exports[0], out)  # an existing output must survive a failed export untouched
    before = _snapshot(out)
    code, _, err = _run(["export", src, "-o", out], capsys)
    _assert_one_line_error(code, err)
    assert _snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".previous-export")]  # no temp left


def test_export_refuses_to_replace_a_foreign_folder(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = _run(["export", tiny_model_dir, "-o", out], capsys)
    _assert_one_line_error(code, err)
    assert (out / "notes.txt").read_text() == "keep me"


def test_export_refuses_an_export(exports, tmp_path, capsys):
    code, _, err = _run(["export", exports[0], "-o", tmp_path / "again"], capsys)
    _assert_one_line_error(code, err)
    assert "already an ONNX export" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--int8-embeddings"],
            "--int8-embeddings is ONNX Runtime's int8 — use --target onnx-int8 (or onnx-int8-fused) with it",
        ),
        (
            ["--auto", "--target", "onnx-int8"],
            "--auto chooses the target itself; leave out --target — export one target with --target instead",
        ),
        (["--opset", "12"], "--opset 12 is out of range — use 13..23; 17 is the default"),
        (["--opset", "24"], "--opset 24 is out of range — use 13..23; 17 is the default"),
    ],
)
def test_export_option_errors(extra, message, tiny_model_dir, tmp_path, capsys):
    code, _, err = _run(["export", tiny_model_dir, "-o", tmp_path / "e", *extra], capsys)
    _assert_one_line_error(code, err)
    assert err.strip() == f"toxdistill: error: {message}"
    assert not (tmp_path / "e").exists()


def test_the_opsets_at_the_ends_of_the_range_pass_the_check(tmp_path, capsys):
    for opset in (13, 23):  # a missing model folder fails after the option checks, before any export work
        code, _, err = _run(["export", tmp_path / "nosuch", "--opset", opset], capsys)
        _assert_one_line_error(code, err)
        assert "model folder not found" in err


def test_dynamo_exporter_matches_torch(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    code, out, err = _run(["export", tiny_model_dir, "--exporter", "dynamo", "-o", tmp_path / "d"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "d" / "toxdistill.json").read_text())["export"]
    assert rec["exporter"] == "dynamo" and rec["parity"]["fp32"]["max_abs_diff"] <= 1e-4


def test_bench_writes_json_plot_and_table(tmp_path, tokenizer, capsys):
    run, data = _labelled_run(tmp_path, tokenizer)
    shutil.copytree(run / "models" / "teacher", run / "models" / "half")
    meta = json.loads((run / "models" / "half" / "toxdistill.json").read_text())
    (run / "models" / "half" / "toxdistill.json").write_text(json.dumps({**meta, "name": "half", "kind": "student"}))
    code, out, err = _run(
        [
            "bench",
            run,
            "--limit",
            20,
            "--latency-n",
            5,
            "--targets",
            "torch-naive,torch-sorted,onnx-int8",
            "--threads",
            1,
            "--quick",
            "--profile-ops",
        ],
        capsys,
    )
    assert code == 0, err
    res = json.loads((run / "bench.json").read_text())
    assert (run / "bench.png").stat().st_size > 1000
    assert {(r["model"], r["backend"]) for r in res["rows"]} == {
        (m, b) for m in ("half", "teacher") for b in ("torch-naive", "torch-sorted", "onnx-int8")
    }
    assert res["matmul_peak_gflops"] > 0 and res["texts"]["n"] == 20
    assert res["baseline"]["model"] == "teacher" and res["baseline"]["backend"] == "torch-naive"
    for r in res["rows"]:
        assert r["samples_per_s"] > 0 and r["latency_p50_ms"] > 0 and r["gflops_computed"] > 0
    int8 = next(r for r in res["rows"] if r["backend"] == "onnx-int8")
    assert int8["f1_macro_source"] == "int8 parity check"
    # Each row is held against the peak of its own engine and number format, measured in this run.
    engines = {"torch-naive": "torch-fp32", "torch-sorted": "torch-fp32", "onnx-int8": "ort-int8"}
    for r in res["rows"]:
        peak = res["peaks"][engines[r["backend"]]]["gflops"]
        assert r["peak_engine"] == engines[r["backend"]]
        assert r["pct_of_peak"] == pytest.approx(100 * r["gflops_computed"] / peak)
        shares = r["time_shares"]
        assert set(shares) == {"tokenize", "batching", "model", "other"} and shares["model"] > 0
        assert sum(shares.values()) == pytest.approx(1.0)
    assert "peak ort-int8" in out and "model %" in out
    # The graph's own time, by op type: int8 rows spend it in quantized matmuls, among others.
    ops = int8["op_shares"]
    assert sum(ops.values()) == pytest.approx(1.0) and any("Integer" in k or "Quantize" in k for k in ops)
    assert "op_shares" not in next(r for r in res["rows"] if r["backend"] == "torch-sorted")
    assert len(int8["samples_per_s_passes"]) == 1 and res["repeats"] == 1  # --quick: one pass
    assert "× naive T" in out and "samples/s" in out
    # A second run reuses the exports (--quick: the full peaks, a dozen matmul shapes, are not what is tested).
    again = ["--limit", 5, "--latency-n", 2, "--targets", "onnx-int8", "--models", "half", "--no-plot", "--quick"]
    code, out, _ = _run(["bench", run, *again], capsys)
    assert code == 0 and "reusing" in out


def test_bench_bad_inputs(tmp_path, tiny_run, capsys):
    code, _, err = _run(["bench", tmp_path / "nope"], capsys)
    _assert_one_line_error(code, err)
    code, _, err = _run(["bench", tiny_run, "--models", "nosuch"], capsys)
    _assert_one_line_error(code, err)
    code, _, err = _run(["bench", tiny_run], capsys)  # no split.json: says how to get one
    _assert_one_line_error(code, err)
    code, _, err = _run(["bench", tiny_run, "--targets", "torch-naive,onnx-bf16"], capsys)
    _assert_one_line_error(code, err)
    assert "unknown bench target 'onnx-bf16'" in err and "torch-sorted, onnx-fp32, onnx-int8" in err


def _bench_result(backends, models=("teacher", "odd")) -> dict:
    rows = [
        {"model": m, "backend": b, "samples_per_s": 10.0 * (1 + i + j), "f1_macro": 0.6 + 0.01 * i}
        for i, m in enumerate(models)
        for j, b in enumerate(backends)
    ]
    return {"run": "runs/x", "machine": {"threads": 2}, "texts": {"n": 20}, "rows": rows}


def _plotted(result: dict, path: Path, monkeypatch):
    """Run plot_bench and keep its figure open to read what it drew."""
    import matplotlib.pyplot as plt

    from toxdistill.evaluation.plots import plot_bench

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    assert plot_bench(result, path) == path and path.stat().st_size > 1000
    (fig,) = figures
    return fig


def test_the_plot_names_every_benched_backend_in_a_colour_of_its_own(tmp_path, monkeypatch):
    from matplotlib.colors import to_rgba

    BACKENDS = bench_row_names()

    fig = _plotted(_bench_result(BACKENDS), tmp_path / "bench.png", monkeypatch)
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [*BACKENDS, "teacher", "odd"]
    colour = {lab: to_rgba(h.get_color()) for lab, h in zip(labels, legend.legend_handles)}
    # A backend drawn in a colour the legend does not name (black, or another backend's) is unreadable.
    assert len({colour[b] for b in BACKENDS}) == len(BACKENDS) and to_rgba("black") not in {colour[b] for b in BACKENDS}
    points = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert points == [colour[b] for _ in ("teacher", "odd") for b in BACKENDS]
    fig.clf()

    # Only the backends this bench ran are in the legend.
    fig = _plotted(_bench_result(("torch-naive", "onnx-int8")), tmp_path / "two.png", monkeypatch)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "torch-naive",
        "onnx-int8",
        "teacher",
        "odd",
    ]
    fig.clf()


def test_reduced_precision_gate_holds_macro_f1_as_well_as_weighted():
    """A graph that keeps weighted F1 but loses the rare class (macro F1 down 0.8 points) fails the gate."""
    texts = TextSet(texts=["a"] * 4, labels=np.zeros(4, dtype=int), source="hand-made")
    ok = {"agreement": 0.995, "n": 4, "texts": "hand-made", "f1_weighted_drop_points": 0.1, "f1_macro_drop_points": 0.3}
    reduced_precision_gate(ok, texts, strict=False, what="int8", hint="", say=lambda s: None)
    assert ok["ok"] and ok["thresholds"]["f1_macro_drop_points"] == 0.5
    bad = {**ok, "f1_macro_drop_points": 0.8}
    reduced_precision_gate(bad, texts, strict=False, what="int8", hint="", say=lambda s: None)
    assert not bad["ok"]
    with pytest.raises(ToxdistillError, match="macro-F1"):
        reduced_precision_gate(bad, texts, strict=True, what="int8", hint="", say=lambda s: None)
