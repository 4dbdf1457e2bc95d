"""The study tables (``toxdistill.evaluation.study``, run as bench/study_table.py): the three-way table and the
targets, computed from run folders' files only."""

from __future__ import annotations

import json
from pathlib import Path

from toxdistill.evaluation import study


def _row(name, kind, layers, acc, f1w, f1m, hate, trainable, params=100_000_000):
    return {
        "name": name,
        "kind": kind,
        "layers": layers,
        "accuracy": acc,
        "f1_weighted": f1w,
        "f1_macro": f1m,
        "f1_per_class": {"hate speech": hate, "offensive": 0.95, "neither": 0.9},
        "train_loss": 0.3,
        "val_loss": 0.28,
        "params": params,
        "trainable_params": trainable,
    }


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "davidson-mpnet-base"
    run.mkdir()
    rows = [
        _row("tfidf-lr", "baseline", None, 0.89, 0.88, 0.69, 0.30, 140_760, 140_760),
        _row("teacher", "teacher", list(range(1, 13)), 0.915, 0.914, 0.790, 0.52, 100_000_000),
        _row("odd", "student", [1, 3, 5, 7, 9, 11], 0.912, 0.911, 0.781, 0.50, 60_000_000, 60_000_000),
        _row("even", "student", [2, 4, 6, 8, 10, 12], 0.905, 0.902, 0.765, 0.47, 60_000_000, 60_000_000),
        _row("lora-teacher", "lora", list(range(1, 13)), 0.910, 0.908, 0.775, 0.48, 1_700_000),
    ]
    (run / "results.json").write_text(json.dumps(rows))
    sig = {
        "ci": {"odd": {"f1_macro": {"point": 0.781, "low": 0.75, "high": 0.81}}},
        "comparisons": [
            {
                "a": "odd",
                "b": "even",
                "metric": "f1_macro",
                "diff": 0.016,
                "low": -0.01,
                "high": 0.04,
                "p_value": 0.21,
                "p_holm": 0.42,
            }
        ],
    }
    (run / "significance.json").write_text(json.dumps(sig))
    return run


def test_table_comparisons_and_targets_come_from_the_files(tmp_path):
    run = _run(tmp_path)
    table = study.table([run])
    assert "| reference | even (6 of 12 layers) | — | — | 0.915 | 0.912 |" in table
    assert "| davidson-mpnet-base | odd | 0.3000 | 0.2800 | 0.9120 | 0.9110 | 0.781 [0.750, 0.810] | 0.500 |" in table
    assert "1,700,000 (1.70%)" in table
    assert study.comparisons([run]) == (
        "- davidson-mpnet-base: odd − even f1_macro: +1.60 points (95% CI [-1.00, +4.00], p = 0.210, Holm p = 0.420)"
    )
    t = study.targets(run)
    assert "- odd: -0.30 weighted, -0.90 macro F1 vs teacher (≥ −1.0 / −2.0): True" in t
    assert "- even: -1.20 weighted, -2.50 macro F1 vs teacher (≥ −1.0 / −2.0): False" in t
    assert "- lora-teacher: -0.60 weighted F1, 1.70% trained (≥ −1.0, ≤ 2%): True" in t
    assert "- best macro F1 0.790 (teacher), best hate F1 0.520 (teacher) (≥ 0.78 / ≥ 0.50)" in t
    assert t[-1].startswith("- every transformer row beats tfidf-lr on weighted, macro and hate F1: True")


def _model(run: Path, name: str, preds: list[int]) -> Path:
    import numpy as np

    d = run / "models" / name
    d.mkdir(parents=True)
    np.save(d / "test_logits.npy", np.eye(3, dtype=np.float32)[preds])
    return d


def test_cross_run_pairs_two_runs_on_one_split_and_refuses_two_splits(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import numpy as np
    import pytest

    from toxdistill.errors import ToxdistillError

    labels = [0, 1, 2, 1] * 25
    a_run, b_run, c_run = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    right = _model(a_run, "m", labels)  # every row right
    wrong = _model(b_run, "m", [1] * 100)  # "offensive" for every row
    other = _model(c_run, "m", labels)
    for run, split in ((a_run, "S"), (b_run, "S"), (c_run, "T")):
        (run / "split.json").write_text(split)
    test = SimpleNamespace(labels=np.array(labels))
    monkeypatch.setattr(study, "load_run_split", lambda run, data=None: SimpleNamespace(test=test))
    text = study.cross_run([(right, wrong)])
    macro = next(line for line in text.splitlines() if "f1_macro" in line)
    # Perfect macro F1 against "always offensive" (F1 2/3 on that class only: 0.2222 macro).
    assert "a/m − b/m f1_macro: 1.0000 − 0.2222" in macro and "p = 0.00" in macro
    with pytest.raises(ToxdistillError, match="different splits"):
        study.cross_run([(right, other)])


def test_speed_target_reads_the_bench(tmp_path):
    run = _run(tmp_path)
    assert study.speed(run, 30.0) == []  # no bench yet: nothing claimed
    bench = {
        "baseline": {"samples_per_s": 40.0},
        "machine": {"cpu": "AMD EPYC", "threads": 2},
        "targets": {
            "fastest_student_x_naive_teacher": {
                "model": "odd",
                "backend": "onnx-int8",
                "value": 12.5,
                "f1_weighted_drop_points": 0.4,
            }
        },
    }
    (run / "bench.json").write_text(json.dumps(bench))
    lines = study.speed(run, 30.0)
    assert "40.0 samples/s on AMD EPYC" in lines[0]
    assert "odd onnx-int8 12.5×" in lines[1] and lines[1].endswith("False")


def test_speed_table_lists_every_model_and_backend_from_the_bench(tmp_path):
    run = _run(tmp_path)
    assert study.speed_table(run) == ""  # no bench: no table

    def row(model, layers, backend, sps, p50=1.0):
        return {
            "model": model,
            "layers": layers,
            "params": 110_000_000 if model == "teacher" else 23_000_000,
            "backend": backend,
            "samples_per_s": sps,
            "x_naive_teacher": sps / 20.0,
            "latency_p50_ms": p50,
        }

    rows = [row("teacher", 12, "torch-naive", 20.0), row("teacher", 12, "onnx-int8", 100.0, 9.5)]
    rows += [row("slow", 6, "torch-naive", 40.0), row("fast", 6, "onnx-int8", 800.0, 0.8)]
    bench = {"baseline": {"model": "teacher", "samples_per_s": 20.0}, "rows": rows}
    (run / "bench.json").write_text(json.dumps(bench))
    lines = study.speed_table(run).splitlines()
    # Every backend or target the bench measured is a column, SPEED_BACKENDS' order first; none is invented.
    assert lines[0].startswith("| model | layers | params | torch-naive | onnx-int8 | × naive teacher (best) |")
    # The teacher first, then the students fastest first; a backend not benched reads "—", not a number.
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| teacher", "| fast", "| slow"]
    assert lines[2] == "| teacher | 12 | 110.0M | 20.0 | 100.0 | 5.0× | onnx-int8 | 9.50 |"
    assert lines[3] == "| fast | 6 | 23.0M | — | 800.0 | 40.0× | onnx-int8 | 0.80 |"
    assert lines[4].endswith("| 40.0 | — | 2.0× | torch-naive | 1.00 |")


def test_speed_table_takes_targets_beyond_the_known_backends_in_bench_order(tmp_path):
    """OpenVINO and fused targets are columns too, after SPEED_BACKENDS, in the order the bench wrote them."""
    run = tmp_path / "r"
    run.mkdir()
    rows = [
        {"model": "t", "layers": 6, "params": 1e6, "backend": b, "samples_per_s": sps, "x_naive_teacher": sps / 10}
        for b, sps in (("openvino-int8", 90.0), ("torch-naive", 10.0), ("onnx-int8-fused", 50.0))
    ]
    (run / "bench.json").write_text(json.dumps({"baseline": {"model": "t", "samples_per_s": 10.0}, "rows": rows}))
    header, _, row = study.speed_table(run).splitlines()
    assert "| torch-naive | openvino-int8 | onnx-int8-fused |" in header
    assert row == "| t | 6 | 1.0M | 10.0 | 90.0 | 50.0 | 9.0× | openvino-int8 | — |"


def _frontier_row(model, layers, sps, val_w, val_m, test):
    return {
        "model": model,
        "layers": layers,
        "params": 13_842_051,
        "backend": "openvino-int8",
        "samples_per_s": sps,
        "x_naive_teacher": sps / 100.0,
        "val": {"f1_weighted": val_w, "f1_macro": val_m},
        "test": {"f1_weighted": test, "f1_macro": test - 0.1, "f1_focus": test - 0.4},
    }


def test_frontier_table_and_caption_come_from_frontier_json_and_the_shipped_selection(tmp_path):
    run = tmp_path / "davidson-minilm-frontier"
    (run / "best").mkdir(parents=True)
    assert study.frontier_table(run) == "" and study.frontier_caption(run) == ""  # no frontier: nothing claimed
    front = {
        "cpu": "Some CPU",
        "threads": 2,
        "created": "2026-12-02T10:57:35+0000",
        "texts": 2478,
        "batch_size": 64,
        "repeats": 3,
        "naive_teacher_samples_per_s": 100.0,
        "teacher": {"val": {"f1_weighted": 0.90, "f1_macro": 0.78}},
        "rows": [
            _frontier_row("even", 3, 1000.0, 0.895, 0.77, 0.905),
            _frontier_row("one", 1, 2500.0, 0.89, 0.765, 0.9),
        ],
    }
    (run / "frontier.json").write_text(json.dumps(front))
    lines = study.frontier_table(run).splitlines()
    assert "shipped" not in "\n".join(lines)  # no best/selection.json: nothing marked as shipped
    sel = {"selection": {"model": "one", "reason": "one is the fastest", "test_note": "it holds on test"}}
    (run / "best" / "selection.json").write_text(json.dumps(sel))
    lines = study.frontier_table(run).splitlines()
    # Fastest first; the validation points against the teacher are the selection's own measure.
    assert lines[2] == (
        "| **one** (shipped: best/) | 1 | 13.8M | openvino-int8 | 2,500 | 25.0× | -1.00 / -1.50 | 0.900 | 0.800 | 0.500 |"
    )
    assert lines[3].startswith("| even | 3 | 13.8M | openvino-int8 | 1,000 | 10.0× | -0.50 / -1.00 | 0.905 |")
    caption = study.frontier_caption(run)
    assert caption.startswith("Some CPU, 2 threads, 2026-12-02; 2,478 test texts")
    assert "naive teacher (torch, random-order padded batches) 100.0 samples/s" in caption
    assert caption.endswith("Shipped: one is the fastest; it holds on test.")
