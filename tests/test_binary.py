"""A binary task end to end (hate vs. not): `toxdistill run` on a tiny teacher trains, distils, adds LoRA, checks,
builds the frontier and ships best/, and `predict` and `serve` answer with the two classes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import toxdistill
from toxdistill.cli import main

from conftest import tiny_dataset

LABELS = ["hateful", "not hateful"]

CONFIG = """
name: binary
data: {source: file, path: DATA, sha256: null, max_length: 32, label_names: [hateful, not hateful]}
teacher: {model: TEACHER, train: {epochs: 1, lr: 1.0e-3, batch_size: 16}}
train: {epochs: 1, lr: 1.0e-3, batch_size: 16}
threads: 2
robustness: {kinds: [leet]}
# No tolerance and no behaviour bound: a tiny model learns nothing, and best/ is there to be checked.
frontier: {target: onnx-int8, limit: 24, behaviour_texts: 24}
select: {max_drop_f1_weighted: null, max_drop_f1_macro: null, min_agreement_behaviour: null}
eval_sets:                # the shipped functional suite, its two labels mapped onto these two classes
  - {name: functional, path: SUITE, label_map: {hateful: [hateful], non-hateful: [not hateful]}, group_col: functionality}
stages:
  - {name: odd, kind: distill, layers: odd}
  - {name: lora, kind: lora, base: teacher}
"""


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("binary")
    ds = tiny_dataset(160, seed=2)
    data = tmp / "tweets.csv"
    # Class 0 of the tiny rows is "hateful", the other two "not hateful": a rare positive class, as in the real task.
    rows = [f'"{t}",{int(y != 0)}' for t, y in zip(ds.texts, ds.labels)]
    data.write_text("tweet,class\n" + "\n".join(rows) + "\n")
    cfg = tmp / "c.yaml"
    # The tiny teacher is a 3-class classifier: fine-tuning it gives it a fresh 2-class head.
    suite = Path(toxdistill.__file__).parent / "configs" / "functional-suite.csv"
    cfg.write_text(
        CONFIG.replace("DATA", str(data)).replace("TEACHER", str(tiny_model_dir)).replace("SUITE", str(suite))
    )
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp / "runs")]) == 0
    return tmp / "runs" / "binary", tmp


def test_every_stage_reports_both_classes(binary_run):
    run_dir, _ = binary_run
    by = {r["name"]: r for r in json.loads((run_dir / "results.json").read_text())}
    assert {"tfidf-lr", "teacher", "odd", "lora"} <= set(by)
    for name in ("teacher", "odd", "lora"):
        meta = json.loads((run_dir / "models" / name / "toxdistill.json").read_text())
        assert meta["label_names"] == LABELS
        assert len(meta["calibration"]["offsets"]) == 2
        assert len(by[name]["f1_per_class"]) == 2 and len(by[name]["recall_per_class"]) == 2
    report = (run_dir / "report.md").read_text()
    assert "not hateful" in report and "## Compression frontier" in report
    suite = json.loads((run_dir / "eval-functional.json").read_text())
    assert set(suite["models"]) >= {"teacher", "odd", "lora"}


def test_best_predicts_and_serves_the_two_classes(binary_run, capsys):
    run_dir, tmp = binary_run
    best = run_dir / "best"
    assert (best / "selection.json").is_file()
    src, out = tmp / "in.csv", tmp / "out.csv"
    pd.DataFrame({"tweet": ["you are all awful", "what a nice day"]}).to_csv(src, index=False)
    assert main(["predict", str(best), str(src), "-o", str(out)]) == 0
    got = pd.read_csv(out)
    assert {"p_hateful", "p_not_hateful"} <= set(got.columns) and set(got["label"]) <= set(LABELS)
    assert (got["p_hateful"] + got["p_not_hateful"]).round(5).eq(1).all()

    from fastapi.testclient import TestClient

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    models = load_models(run_dir, "odd", batch_wait_ms=None)
    try:
        client = TestClient(create_app(models, run_name="binary"), base_url="http://localhost")
        r = client.post("/api/classify", json={"texts": ["you are all awful"], "model": "odd"})
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        assert list(res["probabilities"]) == LABELS and res["label"] in LABELS
    finally:
        close_models(models)
