"""The student without attention (models/cnn.py): its model, its config rules, and a run that trains it, exports it
to both engines through the parity gates, puts it on the frontier, and predicts and serves it."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from toxdistill.cli import main
from toxdistill.config import StageConfig
from toxdistill.models.students import build_cnn_student

from conftest import tiny_bert, tiny_dataset

IDS = torch.tensor([[101, 7, 8, 9, 102, 0, 0], [101, 11, 102, 0, 0, 0, 0]])


def test_padding_changes_nothing_and_the_embeddings_are_the_teachers():
    teacher = tiny_bert()
    student = build_cnn_student(teacher)
    assert torch.equal(student.embeddings.weight, teacher.get_input_embeddings().weight)
    assert student.config.id2label == teacher.config.id2label
    mask = (IDS > 0).long()
    with torch.no_grad():
        padded = student(input_ids=IDS, attention_mask=mask, output_hidden_states=True)
        trimmed = student(input_ids=IDS[:, :5], attention_mask=mask[:, :5])
        alone = student(input_ids=IDS[1:, :3], attention_mask=mask[1:, :3])
    torch.testing.assert_close(padded.logits, trimmed.logits)
    torch.testing.assert_close(padded.logits[1:], alone.logits)
    # The pooled state is where the distillation loss reads a [CLS] state: teacher-wide, at position 0.
    assert padded.hidden_states[-1][:, 0].shape == (2, teacher.config.hidden_size)


def test_a_saved_folder_loads_in_plain_transformers(tmp_path):
    student = build_cnn_student(tiny_bert())
    student.save_pretrained(tmp_path)
    with torch.no_grad():
        want = student(input_ids=IDS[:1]).logits[0].tolist()
    code = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForSequenceClassification as A\n"
        f"m = A.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()\n"
        f"print(json.dumps(m(input_ids=torch.tensor({IDS[:1].tolist()})).logits[0].tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pytest.approx(want, abs=1e-6)


def test_the_saved_code_needs_no_toxdistill(tmp_path):
    student = build_cnn_student(tiny_bert())
    student.save_pretrained(tmp_path)
    code = (tmp_path / "cnn.py").read_text()
    assert "import toxdistill" not in code and "from toxdistill" not in code
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoConfig"] == "cnn.CnnConfig"


@pytest.mark.parametrize(
    "stage",
    [
        {"name": "c", "kind": "distill", "arch": "cnn", "layers": "odd"},
        {"name": "c", "kind": "lora", "arch": "cnn"},
        {"name": "c", "kind": "distill", "arch": "rnn"},
    ],
)
def test_a_cnn_stage_takes_no_layers_and_only_distils(stage):
    with pytest.raises(ValidationError):
        StageConfig(**stage)


def test_per_token_terms_are_refused_before_training(tiny_model_dir):
    from toxdistill.config import DistillConfig
    from toxdistill.errors import ToxdistillError
    from toxdistill.models.cnn import CnnConfig
    from toxdistill.models.teacher import load_model_config
    from toxdistill.pipeline.stages import check_levers

    teacher = (load_model_config(str(tiny_model_dir)), str(tiny_model_dir))
    with pytest.raises(ToxdistillError, match="cnn student has none"):
        check_levers("c", DistillConfig(w_hidden=1.0), teacher, (CnnConfig(), str(tiny_model_dir)))
    check_levers("c", DistillConfig(), teacher, (CnnConfig(), str(tiny_model_dir)))  # the default terms run


CONFIG = """
name: cnn
data: {source: file, path: DATA, sha256: null, max_length: 32, clean: {decode_leet: true}}
teacher: {model: TEACHER, train: {epochs: 1, lr: 1.0e-3, batch_size: 16}}
train: {epochs: 2, lr: 3.0e-3, batch_size: 16}
threads: 2
robustness: {kinds: [leet]}
frontier: {target: auto, limit: 24, behaviour_texts: 24}
# No tolerance and no behaviour bound: a tiny model learns nothing, and best/ is there to be checked.
select: {max_drop_f1_weighted: null, max_drop_f1_macro: null, min_agreement_behaviour: null}
eval_sets: []
stages:
  - {name: cnn, kind: distill, arch: cnn, train: {perturb: 0.5}}
"""


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("cnn")
    ds = tiny_dataset(160, seed=3)
    data = tmp / "tweets.csv"
    data.write_text("tweet,class\n" + "\n".join(f'"{t}",{y}' for t, y in zip(ds.texts, ds.labels)) + "\n")
    cfg = tmp / "c.yaml"
    cfg.write_text(CONFIG.replace("DATA", str(data)).replace("TEACHER", str(tiny_model_dir)))
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp / "runs")]) == 0
    return tmp / "runs" / "cnn", tmp


def test_the_run_trains_and_reports_it(cnn_run):
    run_dir, _ = cnn_run
    meta = json.loads((run_dir / "models" / "cnn" / "toxdistill.json").read_text())
    assert meta["kind"] == "student" and meta["arch"] == "cnn" and meta["layers"] is None
    assert meta["stage"]["train"]["perturb"] == 0.5
    config = json.loads((run_dir / "models" / "cnn" / "config.json").read_text())
    assert config["model_type"] == "toxdistill-cnn"
    assert "| cnn |" in (run_dir / "report.md").read_text()
    robustness = json.loads((run_dir / "robustness.json").read_text())
    assert "cnn" in robustness["models"]


def test_it_is_on_the_frontier_through_the_parity_gates(cnn_run):
    run_dir, _ = cnn_run
    frontier = json.loads((run_dir / "frontier.json").read_text())
    row = next(r for r in frontier["rows"] if r["model"] == "cnn")
    assert row["samples_per_s"] > 0 and row["parity_passed"] and row["layers"] == 0  # no encoder layer
    tried = {c["backend"]: c for c in row["engine_choice"]["candidates"]}
    assert any(t.startswith("onnx-") for t in tried) and any(t.startswith("openvino-") for t in tried)
    assert not any(t.endswith("-fused") for t in tried)  # nothing to fuse without attention
    assert row["engine_choice"]["chosen"] in tried


def test_it_predicts_and_serves(cnn_run):
    run_dir, tmp = cnn_run
    src, out = tmp / "in.csv", tmp / "out.csv"
    pd.DataFrame({"tweet": ["you are all awful", "what a nice day"]}).to_csv(src, index=False)
    assert main(["predict", str(run_dir / "models" / "cnn"), str(src), "-o", str(out)]) == 0
    got = pd.read_csv(out)
    assert len(got) == 2 and got.filter(like="p_").sum(axis=1).round(5).eq(1).all()

    from fastapi.testclient import TestClient

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    models = load_models(run_dir, "cnn", batch_wait_ms=None)
    try:
        client = TestClient(create_app(models, run_name="cnn"), base_url="http://localhost")
        r = client.post("/api/classify", json={"texts": ["you are all awful"], "model": "cnn"})
        assert r.status_code == 200, r.text
        assert len(r.json()["results"][0]["probabilities"]) == 3
    finally:
        close_models(models)
