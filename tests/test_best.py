"""RUN/best/: the chosen export shipped with selection.json and a model card, refused when its parity failed,
scored by `toxdistill predict`, served first by `toxdistill serve`, and loadable by the card's own snippet."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from toxdistill.cli import main
from toxdistill.config import load_config
from toxdistill.data.split import load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.files import BEST_DIR, MODEL_CARD, TEST_LOGITS
from toxdistill.inference.predict import Predictor
from toxdistill.pipeline.best import write_best
from toxdistill.runs import SELECTION_FILE, find_models

from conftest import LABELS, make_tiny_run

pytest.importorskip("onnxruntime")

SECTIONS = (
    "## The model",
    "## Data",
    "## Metrics (test",
    "## Speed on this machine",
    "## Intended use and limits",
    "## How to load",
)


def _row(model, kind, layers, params, export_dir, sps, p50, x_naive, f1) -> dict:
    """A frontier row; its validation and test scores step down from ``f1``."""
    scores = {"f1_weighted": f1, "f1_macro": f1 - 0.1, "f1_focus": f1 - 0.2, "accuracy": f1 + 0.05}
    return {
        **{"model": model, "kind": kind, "layers": layers, "params": params, "export_dir": export_dir},
        **{"backend": "onnx-fp32", "samples_per_s": sps, "p50_ms": p50, "x_naive_teacher": x_naive},
        **{"parity_passed": True, "pareto": True, "val": scores, "test": {k: v + 0.01 for k, v in scores.items()}},
    }


def _frontier(model: str = "even", fallback: bool = False, **row_changes) -> dict:
    """A frontier.json as the frontier step writes it, over the tiny run's two fp32 exports."""
    rows = [
        _row("teacher", "teacher", 4, 1000, "export/teacher-onnx", 900.0, 2.5, 3.0, 0.50),
        _row("even", "student", 2, 600, "export/even-onnx", 2400.0, 1.25, 8.0, 0.49),
    ]
    for r in rows:
        if r["model"] == model:
            r.update(row_changes)
    reason = (
        "no candidate is within 1.0 point of weighted F1 and 2.0 of macro F1 of the teacher on validation"
        if fallback
        else "even is the fastest within 1.0 point of weighted F1 and 2.0 of macro F1 on validation"
    )
    return {
        "cpu": "Tiny Test CPU @ 1 GHz",
        "cpu_features": ["avx2"],
        "threads": 2,
        "texts": 40,
        "engine": "onnx-int8",
        "naive_teacher_samples_per_s": 300.0,
        "rows": rows,
        "selection": {
            "model": model,
            "rule": "tolerance",
            "criteria": {"max_drop_f1_weighted": 0.01, "max_drop_f1_macro": 0.02},
            "reason": reason,
            "fallback": fallback,
            "holds_on_test": True,
            "test_note": "on test it is 0.010 weighted F1 below the teacher",
        },
    }


@pytest.fixture(scope="module")
def run_with_exports(tmp_path_factory, tokenizer) -> Path:
    """A tiny run with a labelled split and fp32 exports of its teacher and of its student even."""
    from test_export import _labelled_run

    from toxdistill.export.job import ExportJob, export_model

    root = tmp_path_factory.mktemp("best")
    make_tiny_run(root, tokenizer, names=("even",))
    run, _ = _labelled_run(root, tokenizer)  # adds the teacher, the config and the split
    export_model(ExportJob(run / "models" / "even"))
    export_model(ExportJob(run / "models" / "teacher"))
    return run


@pytest.fixture
def run(run_with_exports: Path, tmp_path) -> Path:
    """A copy a test may change."""
    dest = tmp_path / "tiny-run"
    shutil.copytree(run_with_exports, dest)
    return dest


@pytest.fixture(scope="module")
def shipped(run_with_exports: Path, tmp_path_factory) -> Path:
    """The run (a copy) with best/ written for even and a robustness.json."""
    run = tmp_path_factory.mktemp("shipped") / "tiny-run"
    shutil.copytree(run_with_exports, run)
    robustness = {
        "worst_char_drop": {"even": 0.114, "teacher": 0.409},
        "clean": {"even": {"agreement": 0.973}, "teacher": {}},
    }
    (run / "robustness.json").write_text(json.dumps(robustness))
    write_best(run, _frontier(), load_config(run / "config.yaml"))
    return run


def _card(best: Path) -> tuple[dict, str]:
    text = (best / MODEL_CARD).read_text()
    m = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert m, text[:200]
    return yaml.safe_load(m.group(1)), m.group(2)


def _test_metrics(run: Path, folder: Path) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    test = load_run_split(run).test
    pred = Predictor.load(folder).logits(test.texts)[0].argmax(-1)
    return {
        "F1 (weighted)": f1_score(test.labels, pred, average="weighted", labels=[0, 1, 2], zero_division=0),
        "F1 (macro)": f1_score(test.labels, pred, average="macro", labels=[0, 1, 2], zero_division=0),
        "accuracy": accuracy_score(test.labels, pred),
    }


# ---------------------------------------------------------------- write_best
def test_best_is_a_copy_of_the_chosen_export_with_its_selection(shipped):
    best, src = shipped / BEST_DIR, shipped / "export" / "even-onnx"
    names = {p.name for p in best.iterdir()}
    assert {p.name for p in src.iterdir()} | {SELECTION_FILE, MODEL_CARD, TEST_LOGITS} == names
    assert (best / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()
    assert json.loads((best / "toxdistill.json").read_text()) == json.loads((src / "toxdistill.json").read_text())
    sel = json.loads((best / SELECTION_FILE).read_text())
    assert sel["selection"] == _frontier()["selection"] and sel["row"]["model"] == "even"
    assert sel["row"]["export_dir"] == "export/even-onnx"
    # The CPU it was measured on, and its engine in short: pinned here (the row records no screen).
    assert sel["cpu"] == "Tiny Test CPU @ 1 GHz"
    assert sel["engine"] == {
        "chosen": "onnx-fp32",
        "samples_per_s": 2400.0,
        "rule": "frontier.target onnx-int8",
        "pinned": True,
        "screen": None,
        "runners_up": [],
    }
    assert not [p for p in shipped.iterdir() if p.name.startswith(".best")]  # no temporary folder left


def test_best_measured_on_another_cpu_says_how_to_choose_again(shipped, monkeypatch):
    from toxdistill.inference import export_record

    best = shipped / BEST_DIR
    monkeypatch.setattr(export_record, "cpu_name", lambda: "Tiny Test CPU @ 1 GHz")
    monkeypatch.setattr(export_record, "cpu_features", lambda: ["avx2"])
    assert export_record.engine_cpu_note(best) is None  # the frontier's CPU: nothing to say
    monkeypatch.setattr(export_record, "cpu_name", lambda: "Another CPU")
    note = export_record.engine_cpu_note(best)
    assert note and "\n" not in note and f"the engine of {best} (onnx-fp32) was chosen on Tiny Test CPU @ 1 GHz" in note
    # Pinned by the run's config: the frontier measures the engines only when asked to.
    assert f"'toxdistill frontier {shipped} --target auto'" in note
    assert f"'toxdistill export {shipped / 'models' / 'even'} --auto'" in note


def test_the_card_has_front_matter_the_hub_reads_and_every_section(shipped):
    front, body = _card(shipped / BEST_DIR)
    assert front["license"] == "apache-2.0"  # the default teacher, all-MiniLM-L6-v2
    assert front["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert front["pipeline_tag"] == "text-classification" and front["library_name"] == "onnx"
    assert front["language"] == ["en"] and "toxdistill" in front["tags"] and "fp32" in front["tags"]
    assert "datasets" not in front  # the tiny run's data is its own file, not Davidson's
    for s in SECTIONS:
        assert s in body, s
    # The model-index holds this graph's own test scores, as sklearn computes them.
    result = front["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification" and result["dataset"]["split"].startswith("test (40 rows")
    got = {
        m["name"].replace("weighted F1", "F1 (weighted)").replace("macro F1", "F1 (macro)"): m["value"]
        for m in result["metrics"]
    }
    for name, value in _test_metrics(shipped, shipped / BEST_DIR).items():
        assert got[name] == pytest.approx(value, abs=1e-4), name
    # The card's figures: the frontier's speed and CPU, intervals, the split, the labels, the robustness line.
    assert "Tiny Test CPU @ 1 GHz" in body and "| 2,400 |" in body and "8.0×" in body
    assert "**Engine:** onnx-fp32, pinned by the run's `frontier.target`" in body
    assert re.search(r"\| weighted F1 \| [0-9.]+ \| \[[0-9.]+, [0-9.]+\] \|", body)
    assert "train 320, validation 40, test 40" in body and "0 hate speech, 1 offensive, 2 neither" in body
    assert "11.4 macro-F1 points (the teacher: 40.9)" in body and "97.3%" in body
    assert "2-layer student made of the teacher's layers 1, 2 of 4" in body
    assert "fastest candidate within 1.0 points of weighted F1 and 2.0 points of macro F1 of the teacher" in body
    assert "**Why this one.** even is the fastest" in body
    assert "No candidate met the rule" not in body


def test_the_hub_library_reads_the_card(shipped):
    hub = pytest.importorskip("huggingface_hub")
    card = hub.ModelCard.load(shipped / BEST_DIR / MODEL_CARD)
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "text-classification"
    results = card.data.eval_results
    assert {r.metric_type for r in results} == {"f1", "accuracy"} and len(results) == 4


def _run_card_snippet(best: Path, capsys) -> None:
    """Run the card's plain snippet as a user would and hold its output to toxdistill's own for the same texts."""
    _, body = _card(best)
    code = re.search(r"```python\n(.*?)```", body, re.S).group(1)
    assert not re.search(r"^\s*(import|from) toxdistill", code, re.M)  # plain ONNX Runtime/OpenVINO and transformers
    ns: dict = {}
    exec(compile(code, str(best / MODEL_CARD), "exec"), ns)  # noqa: S102 - the card's own code, as users run it
    pred = Predictor.load(best)
    texts = ns["texts"]
    assert any("@" in t for t in texts) and any("http" in t for t in texts)  # the cleaning is exercised
    logits, _ = pred.logits(pred.prepare(texts))
    np.testing.assert_allclose(ns["probs"], pred.probabilities(logits), atol=1e-4)
    assert ns["predicted"] == [LABELS[i] for i in pred.decide(logits)]
    assert capsys.readouterr().out.count("\n") == len(texts)


def test_the_cards_onnxruntime_snippet_runs_and_matches_toxdistill(shipped, capsys):
    _run_card_snippet(shipped / BEST_DIR, capsys)


def test_the_cards_openvino_snippet_runs_and_matches_toxdistill(run, capsys):
    pytest.importorskip("openvino")
    from toxdistill.export.job import ExportJob, export_model
    from toxdistill.targets import Target

    out = export_model(ExportJob(run / "models" / "even", Target("openvino", "fp32")))
    write_best(
        run, _frontier(export_dir=str(out.relative_to(run)), backend="openvino-fp32"), load_config(run / "config.yaml")
    )
    front, body = _card(run / BEST_DIR)
    assert front["library_name"] == "openvino" and "import openvino as ov" in body
    _run_card_snippet(run / BEST_DIR, capsys)


def test_a_later_run_replaces_best_whole(run):
    cfg = load_config(run / "config.yaml")
    write_best(run, _frontier(), cfg)
    (run / BEST_DIR / "stray.txt").write_text("from an older run")
    write_best(run, _frontier(model="teacher"), cfg)
    best = run / BEST_DIR
    assert not (best / "stray.txt").exists()
    assert json.loads((best / "toxdistill.json").read_text())["name"] == "teacher"


def test_fallback_ships_the_teachers_export_and_says_why(run):
    said: list[str] = []
    write_best(run, _frontier(model="teacher", fallback=True), load_config(run / "config.yaml"), say=said.append)
    best = run / BEST_DIR
    meta = json.loads((best / "toxdistill.json").read_text())
    assert meta["kind"] == "teacher" and meta["export"]["source"].endswith("models/teacher")
    _, body = _card(best)
    lines = [ln for ln in body.splitlines() if "No candidate met the rule" in ln]
    assert len(lines) == 1 and "no candidate is within 1.0 point" in lines[0]
    assert "The run's teacher" in body and "Does the choice hold on test" not in body
    assert "Robustness.** Not measured" in body  # this copy has no robustness.json
    assert said and "no candidate met the rule" in said[0]


@pytest.mark.parametrize("how", ["block", "row", "missing"])
def test_an_export_that_failed_parity_is_never_shipped(run, how, capsys):
    cfg = load_config(run / "config.yaml")
    write_best(run, _frontier(), cfg)
    before = (run / BEST_DIR / "toxdistill.json").read_bytes()
    meta_file = run / "export" / "teacher-onnx" / "toxdistill.json"
    meta = json.loads(meta_file.read_text())
    if how == "block":
        meta["export"]["parity"]["fp32"]["ok"] = False
    elif how == "missing":
        del meta["export"]["parity"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ToxdistillError) as e:
        write_best(run, _frontier(model="teacher", **({"parity_passed": False} if how == "row" else {})), cfg)
    assert "will not ship teacher" in str(e.value) and "\n" not in str(e.value)
    assert (run / BEST_DIR / "toxdistill.json").read_bytes() == before  # the shipped best/ is untouched


def test_a_selection_of_no_row_or_no_export_is_one_line(run):
    cfg = load_config(run / "config.yaml")
    with pytest.raises(ToxdistillError, match="not one of its rows"):
        write_best(run, _frontier(model="odd"), cfg)
    with pytest.raises(ToxdistillError, match="missing or unfinished"):
        write_best(run, _frontier(export_dir="export/nothing-here"), cfg)
    assert not (run / BEST_DIR).exists()


# ---------------------------------------------------------------- predict and serve
def test_predict_scores_a_file_and_stdin_with_best(shipped, tmp_path, monkeypatch, capsys):
    import pandas as pd

    best = shipped / BEST_DIR
    texts = ["you are a wonderful person", "I hate all of you", "@someone trash"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    assert main(["predict", str(best), str(src), "-o", str(tmp_path / "out.csv")]) == 0
    pred = Predictor.load(best)
    want = [LABELS[i] for i in pred.decide(pred.logits(pred.prepare(texts))[0])]
    assert pd.read_csv(tmp_path / "out.csv")["label"].tolist() == want
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(texts).encode())))
    assert main(["predict", str(best), "-", "--format", "txt", "-o", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == want
    assert "onnx backend" in capsys.readouterr().err


def test_serve_lists_best_first_and_makes_it_the_default(shipped):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    models = load_models(shipped, batch_wait_ms=None)
    try:
        assert list(models) == ["best", "even", "teacher"]
        best = models["best"]
        assert best.title == "best (even, onnx-fp32)" and best.throughput == 2400.0
        assert models["even"].title == "even" and models["even"].throughput == 500.0  # unchanged for the others
        client = TestClient(create_app(models, run_name="tiny-run"), base_url="http://localhost")
        listed = client.get("/api/models").json()
        assert listed["default"] == "best" and [m["name"] for m in listed["models"]][0] == "best"
        page = client.get("/").text
        options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', page)
        assert options[0][0] == "best" and options[0][1].startswith("best (even, onnx-fp32) — macro F1")
        assert "(default)" in options[0][1] and 'value="best" selected' in page
        card_page = client.get("/models/best")
        assert card_page.status_code == 200 and "Layers kept" in card_page.text
        r = client.post("/api/classify", json={"texts": ["you are a wonderful person"]}).json()
        want = Predictor.load(shipped / BEST_DIR).classify(["you are a wonderful person"])[0]["label"]
        assert r["model"] == "best" and r["results"][0]["label"] == want
    finally:
        close_models(models)
    alone = load_models(shipped / BEST_DIR, batch_wait_ms=None)
    try:
        assert list(alone) == ["best"] and alone["best"].title == "best (even, onnx-fp32)"
    finally:
        close_models(alone)


def test_only_serving_finds_best(shipped):
    assert list(find_models(shipped, best=True)) == ["best", "even", "teacher"]
    assert list(find_models(shipped / "models", best=True)) == ["best", "even", "teacher"]
    # Evaluation, checks and the bench see the run's models only: best/ is a copy of one of its exports.
    assert list(find_models(shipped)) == ["even", "teacher"]
    assert list(find_models(shipped, transformers_only=True, best=True)) == ["even", "teacher"]


def test_serve_cli_accepts_models_best(shipped, monkeypatch, capsys):
    """`serve RUN --models best` passes the CLI's folder check and reaches the loader with that name."""
    pytest.importorskip("fastapi")
    from toxdistill.serve import build

    def loader(run, names, **kw):
        raise ToxdistillError(f"would load {names} from {Path(run).name}")

    monkeypatch.setattr(build, "load_models", loader)
    assert main(["serve", str(shipped), "--models", "best", "--port", "0"]) == 2
    assert "would load best from tiny-run" in capsys.readouterr().err
