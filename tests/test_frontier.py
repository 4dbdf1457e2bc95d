"""The compression frontier: the Pareto set and the selection rule on hand-made rows, the frontier step on a tiny
run (frontier.json, the plot, exports reused, measurements kept), the report's section, `toxdistill frontier`
and the select block's validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from toxdistill.cli import main
from toxdistill.config import SelectConfig, load_config
from toxdistill.cpu import cpu_features
from toxdistill.data.split import load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.frontier import format_frontier, pareto, select, within_tolerance
from toxdistill.evaluation.report import FRONTIER_HEADING, frontier_section, update_frontier_section
from toxdistill.targets import parse_target

from conftest import make_tiny_run, tiny_bert


# ---------------------------------------------------------------- hand-made rows
def _scores(f1w: float, f1m: float) -> dict:
    return {"f1_weighted": f1w, "f1_macro": f1m, "f1_focus": f1m / 2, "accuracy": f1w}


def _row(model: str, sps: float, val: tuple[float, float], test: tuple[float, float] | None = None, parity=True):
    return {
        "model": model,
        "kind": "teacher" if model == "teacher" else "distill",
        "backend": "onnx-int8",
        "samples_per_s": sps,
        "x_naive_teacher": sps / 100,
        "parity_passed": parity,
        "val": _scores(*val),
        "test": _scores(*(test or val)),
    }


TEACHER = {"model": "teacher", "val": _scores(0.90, 0.78), "test": _scores(0.91, 0.77)}
ROWS = [
    _row("teacher", 300, (0.900, 0.780)),
    _row("even", 2400, (0.895, 0.770), (0.905, 0.765)),
    _row("spread2", 5000, (0.892, 0.765), (0.895, 0.760)),  # within on val, 1.5 weighted points off on test
    _row("spread1", 9000, (0.870, 0.720)),  # too far on both
    _row("odd", 2300, (0.880, 0.790)),  # slower than even and worse weighted: not on that front
]


def test_pareto_keeps_the_rows_nothing_beats_on_both_speed_and_quality():
    front = pareto(ROWS)
    assert front["f1_weighted"] == ["teacher", "even", "spread2", "spread1"]
    # odd has the best macro F1 at 2300/s: it dominates the teacher there, and even (2400/s, 0.770) stays on.
    assert front["f1_macro"] == ["odd", "even", "spread2", "spread1"]


def test_tolerance_picks_the_fastest_within_it_and_says_it_does_not_hold_on_test():
    sel = select(ROWS, TEACHER, SelectConfig(max_drop_f1_weighted=0.01, max_drop_f1_macro=0.02))
    assert sel["model"] == "spread2" and sel["rule"] == "tolerance" and not sel["fallback"]
    assert sel["criteria"] == {
        "max_drop_f1_weighted": 0.01,
        "max_drop_f1_macro": 0.02,
        "min_samples_per_s": None,
        "min_agreement_behaviour": 0.75,
        "max_tvd_behaviour": None,
    }
    assert sel["holds_on_test"] is False and "outside the tolerance" in sel["test_note"]
    assert "fastest of 2 candidate(s)" in sel["reason"] and "50.0× the naive teacher" in sel["reason"]


def test_a_tighter_tolerance_picks_a_slower_model_that_holds_on_test():
    sel = select(ROWS, TEACHER, SelectConfig(max_drop_f1_weighted=0.006, max_drop_f1_macro=0.02))
    assert sel["model"] == "even" and sel["holds_on_test"] is True and "within tolerance too" in sel["test_note"]


def test_a_drop_of_exactly_the_limit_is_within_it():
    row = _row("s", 1000, (0.90 - 0.01, 0.78 - 0.02))
    assert within_tolerance(row, TEACHER, SelectConfig(max_drop_f1_weighted=0.01, max_drop_f1_macro=0.02))


def test_a_null_limit_is_not_checked():
    sel = select(ROWS, TEACHER, SelectConfig(max_drop_f1_weighted=None, max_drop_f1_macro=0.07))
    assert sel["model"] == "spread1"  # 3 weighted points off, unchecked; 6 macro points, within 7
    sel = select(ROWS, TEACHER, SelectConfig(max_drop_f1_weighted=None, max_drop_f1_macro=None))
    assert sel["model"] == "spread1"


def test_a_candidate_that_failed_its_parity_gates_is_never_chosen():
    rows = [r if r["model"] != "spread2" else {**r, "parity_passed": False} for r in ROWS]
    sel = select(rows, TEACHER, SelectConfig())
    assert sel["model"] == "even"


def test_nothing_within_tolerance_falls_back_to_the_teachers_export_with_a_reason():
    sel = select(ROWS, TEACHER, SelectConfig(max_drop_f1_weighted=0.001, max_drop_f1_macro=0.001))
    assert sel["model"] == "teacher" and sel["fallback"] is True
    assert "no candidate is within tolerance" in sel["reason"] and "the closest, even" in sel["reason"]
    assert sel["holds_on_test"] is True  # on test none is within either


def test_the_fallback_says_when_test_would_have_chosen_otherwise():
    rows = [*ROWS[:1], _row("s", 4000, (0.85, 0.70), (0.912, 0.772))]
    sel = select(rows, TEACHER, SelectConfig())
    assert sel["fallback"] and sel["holds_on_test"] is False and "s would have been within" in sel["test_note"]


def test_every_candidate_failing_parity_is_said_as_such():
    rows = [ROWS[0], *({**r, "parity_passed": False} for r in ROWS[1:])]
    sel = select(rows, TEACHER, SelectConfig())
    assert sel["fallback"] and "parity gates" in sel["reason"]


def test_budget_picks_the_best_macro_f1_at_that_speed():
    sel = select(ROWS, TEACHER, SelectConfig(min_samples_per_s=2000))
    assert sel["model"] == "odd" and sel["rule"] == "budget" and not sel["fallback"]
    assert sel["holds_on_test"] is True
    sel = select(ROWS, TEACHER, SelectConfig(min_samples_per_s=2350))
    assert sel["model"] == "even"


def test_budget_that_does_not_hold_on_test():
    rows = [_row("a", 3000, (0.9, 0.78), (0.9, 0.70)), _row("b", 4000, (0.9, 0.75), (0.9, 0.76)), ROWS[0]]
    sel = select(rows, TEACHER, SelectConfig(min_samples_per_s=1000))
    assert sel["model"] == "a" and sel["holds_on_test"] is False and "b has the better macro F1" in sel["test_note"]


def test_a_budget_nothing_reaches_falls_back():
    sel = select(ROWS, TEACHER, SelectConfig(min_samples_per_s=50000))
    assert sel["fallback"] and sel["model"] == "teacher"
    assert "no candidate reaches 50000 samples/s" in sel["reason"] and "spread1, reaches 9000" in sel["reason"]


# ---------------------------------------------------------------- config
def test_unknown_select_keys_and_negative_tolerances_fail_at_config_load(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("select: {max_drop_f1: 0.01}\n")
    with pytest.raises(ToxdistillError, match="max_drop_f1"):
        load_config(cfg)
    cfg.write_text("select: {max_drop_f1_macro: -0.01}\n")
    with pytest.raises(ToxdistillError, match="max_drop_f1_macro"):
        load_config(cfg)
    cfg.write_text("frontier: {target: tensorrt}\n")
    with pytest.raises(ToxdistillError, match="unknown target 'tensorrt'.*auto, onnx-fp32, onnx-int8"):
        load_config(cfg)
    cfg.write_text("frontier: {target: onnx-bf16}\n")  # a precision ONNX Runtime has no export for
    with pytest.raises(ToxdistillError, match="unknown target 'onnx-bf16'"):
        load_config(cfg)
    cfg.write_text("frontier: {engine: openvino-int8}\n")  # the key is target
    with pytest.raises(ToxdistillError, match="frontier.engine: unknown key"):
        load_config(cfg)


# ---------------------------------------------------------------- the frontier step on a tiny run
WORDS = ["nice", "day", "hate", "you", "people", "trash", "love", "game", "go", "away", "the", "best"]


def _labelled_tiny_run(root: Path, tokenizer, **frontier) -> Path:
    """make_tiny_run's folder with a made-up CSV, its split, validation scores and a frontier block."""
    from toxdistill.data.dataset import load_dataset
    from toxdistill.data.split import make_or_load_split

    run = make_tiny_run(root, tokenizer)
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, rng.integers(2, 10))) for _ in range(160)]
    data = root / "made_up.csv"
    data.write_text("tweet,class\n" + "\n".join(f"{t},{i % 3}" for i, t in enumerate(rows)) + "\n")
    cfg = {
        "name": "tiny-run",
        "data": {"source": "file", "path": str(data), "sha256": None},
        "threads": 1,
        # ONNX Runtime's int8: no NNCF calibration per model, and the same target on every CPU kind.
        "frontier": {"limit": 12, "target": "onnx-int8", **frontier},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    c = load_config(run / "config.yaml")
    make_or_load_split(load_dataset(data, c.data), run / "split.json", c.data, c.seed)
    for d in (run / "models").iterdir():
        meta = json.loads((d / "toxdistill.json").read_text())
        m = meta["metrics"]
        m["val"] = {k: m[k] for k in ("accuracy", "f1_weighted", "f1_macro", "f1_per_class")}
        (d / "toxdistill.json").write_text(json.dumps(meta))
    return run


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory, tokenizer):
    pytest.importorskip("onnxruntime")
    from toxdistill.pipeline.frontier import run_frontier

    run = _labelled_tiny_run(tmp_path_factory.mktemp("frontier"), tokenizer)
    said: list[str] = []
    result = run_frontier(run, load_config(run / "config.yaml"), said.append)
    return run, result, said


def test_the_frontier_writes_its_schema_and_its_plot(frontier_run):
    run, result, said = frontier_run
    saved = json.loads((run / "frontier.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (run / "frontier.png").stat().st_size > 5000
    assert {"cpu", "threads", "texts", "engine", "naive_teacher_samples_per_s", "rows", "selection"} <= set(saved)
    assert saved["engine"] == "onnx-int8" and saved["texts"] == 12 and saved["threads"] == 1
    assert saved["naive_teacher_samples_per_s"] > 0
    rows = {r["model"]: r for r in saved["rows"]}
    assert set(rows) == {"teacher", "odd", "even", "lora-teacher"}
    keys = {"model", "kind", "layers", "params", "export_dir", "backend", "samples_per_s", "p50_ms"}
    keys |= {"x_naive_teacher", "parity_passed", "val", "test", "pareto"}
    for r in rows.values():
        assert keys <= set(r)
        assert set(r["val"]) == set(r["test"]) == {"f1_weighted", "f1_macro", "f1_focus", "accuracy"}
        assert (run / r["export_dir"] / "model.int8.onnx").is_file() and r["backend"] == "onnx-int8"
        assert r["x_naive_teacher"] == pytest.approx(r["samples_per_s"] / saved["naive_teacher_samples_per_s"])
    assert rows["teacher"]["kind"] == "teacher" and rows["teacher"]["layers"] == 4 and rows["odd"]["layers"] == 2
    assert rows["odd"]["kind"] == "distill" and rows["lora-teacher"]["kind"] == "lora"
    assert all(r["reference"] for r in rows.values())  # teacher, odd, even and LoRA: every row here is one
    assert any(r["pareto"] for r in rows.values())
    sel = saved["selection"]
    assert {"model", "rule", "criteria", "reason", "fallback", "holds_on_test", "test_note"} <= set(sel)
    assert sel["model"] in rows and sel["rule"] == "tolerance"
    assert saved["teacher"]["model"] == "teacher" and saved["teacher"]["backend"] == "torch"
    assert any("exporting onnx-int8" in s for s in said)
    # Behaviour fidelity: the functional suite and perturbed validation texts, every candidate but the teacher.
    sources = saved["behaviour"]["sources"]
    assert set(sources) == {"functional", "perturbed", "perturbed-held-out"}
    assert rows["teacher"]["behaviour"] is None
    for name in ("odd", "even", "lora-teacher"):
        b = rows[name]["behaviour"]
        assert b["overall"]["texts"] == sum(s["texts"] for s in sources.values())
        assert 0 <= b["overall"]["agreement"] <= 1 and "same_text" in b["sources"]["perturbed"]
    # Where it was measured, and with what: the CPU's features and the engines' versions.
    assert saved["cpu_features"] == cpu_features() and "onnxruntime" in saved["versions"]
    for r in rows.values():
        assert r["engine_choice"]["chosen"] == "onnx-int8" and r["engine_choice"]["pinned"] is True
        assert r["engine_choice"]["cpu"] == saved["cpu"] and r["engine_choice"]["candidates"] == []
        # The export's test logits, saved for RUN/best/ to take instead of scoring the test split again.
        assert np.load(run / r["export_dir"] / "test_logits.npy").shape == (len(load_run_split(run).test.texts), 3)


def test_the_exported_scores_are_the_exports_own(frontier_run):
    """The val block is the int8 export scored on validation: the same numbers the export gives when asked."""
    from toxdistill.data.split import load_run_split
    from toxdistill.inference.predict import Predictor

    run, result, _ = frontier_run
    row = next(r for r in result["rows"] if r["model"] == "odd")
    val = load_run_split(run).val
    logits, _ = Predictor.load(run / row["export_dir"], backend="onnx").logits(val.texts)
    assert row["val"]["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == np.asarray(val.labels))))


def test_the_test_scores_come_from_the_benchs_pass_over_the_whole_test_split(frontier_run, tmp_path, monkeypatch):
    """Benched on the whole test split (no frontier.limit), each export's test scores and saved test logits are
    the bench's timed pass: the export scores validation alone, and the figures are the export's own."""
    from types import SimpleNamespace

    from toxdistill.inference.predict import Predictor
    from toxdistill.pipeline import frontier as step

    run = tmp_path / "run"
    shutil.copytree(frontier_run[0], run)  # its exports come along and are reused
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    del cfg["frontier"]["limit"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    split = load_run_split(run)
    scored: list[list[str]] = []

    def load(*args, **kwargs):
        pred = Predictor.load(*args, **kwargs)
        real = pred.logits

        def logits(texts, *a, **k):
            scored.append(list(texts))
            return real(texts, *a, **k)

        pred.logits = logits  # type: ignore[method-assign]
        return pred

    monkeypatch.setattr(step, "Predictor", SimpleNamespace(load=load))
    result = step.run_frontier(run, load_config(run / "config.yaml"))
    assert scored and all(texts == list(split.val.texts) for texts in scored)
    labels = np.asarray(split.test.labels)
    for r in result["rows"]:
        own, _ = Predictor.load(run / r["export_dir"], backend="onnx").logits(split.test.texts)
        saved = np.load(run / r["export_dir"] / "test_logits.npy")
        np.testing.assert_allclose(saved, own, atol=1e-5)
        assert r["test"]["accuracy"] == pytest.approx(float(np.mean(own.argmax(-1) == labels)))


def test_a_second_frontier_keeps_the_measurements_and_a_remeasure_reuses_the_exports(frontier_run, monkeypatch):
    from toxdistill.pipeline import frontier as step

    run, first, _ = frontier_run
    cfg = load_config(run / "config.yaml")

    def no_bench(*a, **k):
        raise AssertionError("measured again although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(step, "bench_model", no_bench)
        said: list[str] = []
        again = step.run_frontier(
            run, cfg.model_copy(update={"select": SelectConfig(min_samples_per_s=1.0)}), said.append
        )
    assert any("kept" in s for s in said)
    assert again["rows"] == first["rows"] and again["selection"]["rule"] == "budget"

    def stamps() -> dict:  # the exports' own files; the frontier's test logits beside them are scored anew
        return {p: p.stat().st_mtime_ns for p in (run / "export").rglob("*") if p.is_file() and p.suffix != ".npy"}

    before = stamps()
    said = []
    step.run_frontier(run, cfg, said.append, remeasure=True)
    assert sum("reusing" in s for s in said) == 4 and not any("exporting" in s for s in said)
    assert stamps() == before


# auto: rates fixed by the export folder's name, the int8 gate failed for odd alone, so the rule decides.
AUTO_RATES = {"onnx-fp32": 500.0, "onnx-int8": 300.0}


def _fake_screen(monkeypatch, step) -> list[tuple[str, tuple]]:
    """auto's screen on fixed rates and gates, and a spy on the bench: (model, targets) per bench_model call."""
    from toxdistill.benchmark import auto

    def pass_rate(pred, texts, batch_size):
        return AUTO_RATES["onnx-int8" if pred.model_dir.name.endswith("-int8") else "onnx-fp32"]

    real_gate, real_bench = auto.gate_block, step.bench_model

    def gate_block(record):
        return {**real_gate(record), "ok": not (record["source"].endswith("odd") and record["precision"] == "int8")}

    benched: list[tuple[str, tuple]] = []

    def bench_model(model, sample, parity, opts, say, **kwargs):
        benched.append((model.name, opts.targets))
        return real_bench(model, sample, parity, opts, say, **kwargs)

    monkeypatch.setattr(auto, "_pass_rate", pass_rate)
    monkeypatch.setattr(auto, "gate_block", gate_block)
    monkeypatch.setattr(step, "bench_model", bench_model)
    monkeypatch.setattr(step, "available_candidates", lambda say=None: [parse_target(t) for t in AUTO_RATES])
    return benched


def test_auto_screens_every_engine_benches_only_the_winner_and_best_names_them(frontier_run, tmp_path, monkeypatch):
    from toxdistill.pipeline import best as best_step
    from toxdistill.pipeline import frontier as step

    run = tmp_path / "tiny-run"
    shutil.copytree(frontier_run[0], run)
    cfg = load_config(run / "config.yaml")
    cfg = cfg.model_copy(update={"frontier": cfg.frontier.model_copy(update={"target": "auto"})})
    benched = _fake_screen(monkeypatch, step)
    said: list[str] = []
    result = step.run_frontier(run, cfg, said.append)

    rows = {r["model"]: r for r in result["rows"]}
    assert result["engine"] == "auto" and {m: r["backend"] for m, r in rows.items()} == {
        "teacher": "onnx-int8",
        "odd": "onnx-fp32",  # its int8 failed its gate: fp32 timed, and chosen
        "even": "onnx-int8",
        "lora-teacher": "onnx-int8",
    }
    # Only the winner is benched in full (the teacher in torch-naive too).
    assert dict(benched) == {m: (("torch-naive",) if m == "teacher" else ()) + (r["backend"],) for m, r in rows.items()}
    choice = rows["odd"]["engine_choice"]
    assert choice["pinned"] is False and choice["chosen"] == "onnx-fp32" and choice["cpu"] == result["cpu"]
    assert choice["timing"]["texts"] == 300 and choice["timing"]["passes"] == 3
    assert {c["backend"]: (c["samples_per_s"], c["ok"]) for c in choice["candidates"]} == {
        "onnx-int8": (300.0, False),
        "onnx-fp32": (500.0, True),
    }
    assert all(c["folder"].startswith("export/") for c in choice["candidates"]) and choice["not_timed"] == []
    assert rows["even"]["engine_choice"]["not_timed"] == ["onnx-fp32"]  # int8 passed: fp32 not timed
    text = "\n".join(said)
    assert "frontier: [odd] engine: onnx-fp32 (chosen from onnx-fp32 500/s, onnx-int8 300/s (failed parity) (" in text
    report = "\n".join(frontier_section(result))
    assert "- **odd** → onnx-fp32: chosen from onnx-fp32 500/s, onnx-int8 300/s (failed parity)" in report
    assert "- **even** → onnx-int8: chosen from onnx-int8 300/s; onnx-fp32 not timed" in report
    assert "measured fastest on this CPU" in report and ", ".join(cpu_features()) in report

    # best/ takes the frontier's test logits (no second scoring) and names the CPU, the winner and runners-up.
    monkeypatch.setattr(best_step, "load_scorer", lambda *a, **k: pytest.fail("scored the test split again"))
    sel = {**result["selection"], "model": "odd", "fallback": False}
    best = best_step.write_best(run, {**result, "selection": sel}, cfg)
    shipped = json.loads((best / "selection.json").read_text())
    assert shipped["cpu"] == result["cpu"] and shipped["cpu_features"] == cpu_features()
    engine, odd = shipped["engine"], rows["odd"]
    assert engine["chosen"] == "onnx-fp32" and engine["samples_per_s"] == odd["samples_per_s"]
    assert engine["pinned"] is False
    assert engine["runners_up"] == [{"backend": "onnx-int8", "samples_per_s": 300.0, "ok": False}]
    card = (best / "README.md").read_text()
    speed = card.split("## Speed on this machine")[1].split("\n## ")[0]
    # The speed claim is the winner's full bench, not the screen's.
    assert f"| this model (odd) | onnx-fp32 | {odd['samples_per_s']:,.0f} |" in speed
    assert f"{odd['x_naive_teacher']:.1f}× |" in speed and result["cpu"] in speed
    assert "**Engine:** onnx-fp32 on this CPU, chosen from onnx-fp32 500/s, onnx-int8 300/s (failed parity)" in speed
    assert f"`toxdistill frontier {run}` measures again there" in speed


def test_the_step_is_skipped_when_disabled_or_the_target_is_missing(frontier_run, monkeypatch):
    from toxdistill.data.split import load_run_split
    from toxdistill.pipeline import frontier as step
    from toxdistill.pipeline.context import RunContext

    run, _, _ = frontier_run
    cfg = load_config(run / "config.yaml")
    off = cfg.model_copy(update={"frontier": cfg.frontier.model_copy(update={"enabled": False})})
    assert step.frontier_step(RunContext(off, run, load_run_split(run))) is None
    missing = ToxdistillError("the frontier's exports need onnxruntime", "pip it")
    monkeypatch.setattr(step, "missing_target", lambda target: missing)
    said: list[str] = []
    assert step.frontier_step(RunContext(cfg, run, load_run_split(run)), said.append) is None
    assert said == ["frontier: skipped, the frontier's exports need onnxruntime — pip it"]


# ---------------------------------------------------------------- the report
def test_the_report_section_has_the_chart_table_cpu_and_selection(frontier_run):
    _, result, _ = frontier_run
    text = "\n".join(frontier_section(result))
    assert FRONTIER_HEADING in text and "![compression frontier](frontier.png)" in text and result["cpu"] in text
    assert "| Model | layers | params | backend | samples/s | × naive teacher | p50 ms |" in text
    assert "F1 hate speech val / test" in text and "**chosen**" in text
    for r in result["rows"]:
        assert f"| {r['model']} | {r['layers']} | {r['params']:,} | onnx-int8 |" in text
    assert "**On test:**" in text and result["selection"]["test_note"] in text
    assert frontier_section(None) == []


def test_update_replaces_the_section_in_place_or_adds_it_before_the_wall_times(frontier_run, tmp_path):
    _, result, _ = frontier_run
    report = tmp_path / "report.md"
    assert update_frontier_section(tmp_path, result) is False  # no report: nothing to update
    report.write_text("# r\n\n## Eval set x\n\nrows\n\n## Wall time per stage\n\n| a |\n\n## Analysis\n\n- fine\n")
    assert update_frontier_section(tmp_path, result)
    once = report.read_text()
    assert once.index("## Eval set x") < once.index(FRONTIER_HEADING) < once.index("## Wall time per stage")
    changed = {**result, "selection": {**result["selection"], "test_note": "a new note"}}
    assert update_frontier_section(tmp_path, changed)
    twice = report.read_text()
    assert (
        twice.count(FRONTIER_HEADING) == 1 and "a new note" in twice and result["selection"]["test_note"] not in twice
    )
    assert twice.replace("a new note", result["selection"]["test_note"]) == once
    assert twice.endswith("## Analysis\n\n- fine\n")


def test_write_report_puts_the_frontier_before_the_wall_times(frontier_run, tmp_path):
    from toxdistill.config import Config
    from toxdistill.evaluation.report import write_report

    _, result, _ = frontier_run
    write_report(tmp_path, [], Config(), {"teacher": 1.0}, frontier=result)
    text = (tmp_path / "report.md").read_text()
    assert text.index(FRONTIER_HEADING) < text.index("## Wall time per stage")


def test_the_text_table_marks_the_choice(frontier_run):
    _, result, _ = frontier_run
    out = format_frontier(result)
    assert (
        "× naive T" in out
        and result["cpu"] in out
        and f"chosen (tolerance rule): {result['selection']['model']}" in out
    )


# ---------------------------------------------------------------- the command
def _one_line(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("toxdistill: error:"), err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--max-drop-f1-weighted", "-0.1"], "--max-drop-f1-weighted -0.1 must be at least 0"),
        (["--max-drop-f1-macro", "lots"], "--max-drop-f1-macro 'lots' is not a number"),
        (["--min-samples-per-s", "-5"], "--min-samples-per-s -5 must be at least 0"),
        (["--limit", "0"], "--limit 0 must be at least 1"),
    ],
)
def test_bad_options_are_one_line(extra, needle, frontier_run, capsys):
    run, _, _ = frontier_run
    before = (run / "frontier.json").read_bytes()
    code = main(["frontier", str(run), *extra])
    _one_line(code, capsys.readouterr().err, needle)
    assert (run / "frontier.json").read_bytes() == before


def test_bad_run_folders_are_one_line(tmp_path, tokenizer, capsys):
    code = main(["frontier", str(tmp_path / "nope")])
    _one_line(code, capsys.readouterr().err, "not a finished run folder")
    empty = tmp_path / "empty"
    (empty / "models").mkdir(parents=True)
    (empty / "config.yaml").write_text("name: empty\n")
    code = main(["frontier", str(empty)])
    _one_line(code, capsys.readouterr().err, "no transformer models")
    unsplit = make_tiny_run(tmp_path, tokenizer, names=("teacher",))
    capsys.readouterr()  # save_pretrained's progress bar
    code = main(["frontier", str(unsplit)])
    _one_line(code, capsys.readouterr().err, "has no split.json")
    assert not (unsplit / "frontier.json").exists()


def test_the_command_remakes_the_frontier_and_the_report_section(frontier_run, capsys):
    run, _, _ = frontier_run
    (run / "report.md").write_text("# r\n\n## Wall time per stage\n\n| a |\n")
    code = main(["frontier", str(run), "--min-samples-per-s", "1"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    saved = json.loads((run / "frontier.json").read_text())
    assert saved["selection"]["rule"] == "budget" and saved["selection"]["criteria"]["min_samples_per_s"] == 1.0
    assert "chosen (budget rule)" in cap.out and "kept" in cap.err
    assert FRONTIER_HEADING in (run / "report.md").read_text() and "budget rule" in (run / "report.md").read_text()


# ---------------------------------------------------------------- in a run
def test_a_run_ends_with_the_frontier_in_its_report(tmp_path, tokenizer, monkeypatch):
    """`toxdistill run` with a given tiny teacher and one 1-layer student: frontier.json, the plot, the section;
    each engine chosen by measurement (auto, the default), here among ONNX Runtime's fp32 and int8."""
    pytest.importorskip("onnxruntime")
    from toxdistill.pipeline import frontier as step

    two = [parse_target("onnx-fp32"), parse_target("onnx-int8")]
    monkeypatch.setattr(step, "available_candidates", lambda say=None: two)
    teacher = tmp_path / "given"
    tiny_bert(n_layers=2).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    rng = np.random.default_rng(1)
    data = tmp_path / "d.csv"
    rows = [" ".join(rng.choice(WORDS, rng.integers(2, 8))) for _ in range(120)]
    data.write_text("tweet,class\n" + "\n".join(f"{t},{i % 3}" for i, t in enumerate(rows)) + "\n")
    cfg = {
        "name": "f",
        "output_dir": str(tmp_path / "runs"),
        "data": {"source": "file", "path": str(data), "sha256": None, "max_length": 32},
        "teacher": {"model": str(teacher), "train": None},
        "baseline": False,
        "robustness": {"enabled": False},
        "train": {"epochs": 1, "batch_size": 16},
        "threads": 1,
        "stages": [{"name": "one", "kind": "distill", "layers": [2]}],
        "frontier": {"limit": 8},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(tmp_path / "c.yaml")]) == 0
    run = tmp_path / "runs" / "f"
    saved = json.loads((run / "frontier.json").read_text())
    assert {r["model"] for r in saved["rows"]} == {"teacher", "one"} and (run / "frontier.png").is_file()
    assert next(r for r in saved["rows"] if r["model"] == "one")["reference"] is False
    for r in saved["rows"]:  # which engine wins is the machine's; that it was measured is ours
        choice = r["engine_choice"]
        timed = [c["backend"] for c in choice["candidates"]]
        assert choice["pinned"] is False and timed[0] == "onnx-int8"  # below fp32 first; fp32 only if it fails
        assert sorted(timed + choice["not_timed"]) == ["onnx-fp32", "onnx-int8"] and r["backend"] == choice["chosen"]
    report = (run / "report.md").read_text()
    assert FRONTIER_HEADING in report and "Engines, chosen per model on this CPU" in report
    assert "## Machine and reproducibility" in report and "only on the same CPU kind" in report
    assert "frontier" in json.loads((run / "timings.json").read_text())
