"""Multi-label model folders at inference: calibration, result dicts, predict's columns, export parity, serving."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toxdistill.cli import main
from toxdistill.inference.calibration import Calibration
from toxdistill.inference.predict import Predictor
from toxdistill.inference.scoring import score_results
from toxdistill.runs import read_meta

from conftest import SAMPLE_TEXTS

ML_LABELS = ["toxic", "obscene", "insult", "threat"]
# Biases far from the thresholds, so that a tiny random model (logits near 0) decides toxic and insult on every
# text and never obscene or threat, in every precision.
CALIBRATION = {
    "temperature": [0.5, 1.0, 2.0, 1.5],
    "bias": [2.0, -2.0, 1.5, -1.5],
    "thresholds": [0.6, 0.4, 0.55, 0.5],
}
DECIDED = ["toxic", "insult"]


def tiny_multi_label_bert(seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=30522,  # the packaged tokenizer's
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(ML_LABELS),
        id2label=dict(enumerate(ML_LABELS)),
        label2id={n: i for i, n in enumerate(ML_LABELS)},
        problem_type="multi_label_classification",
    )
    model = BertForSequenceClassification(cfg)
    model.eval()
    return model


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory, tokenizer) -> Path:
    """A multi-label model folder as training writes it: save_pretrained plus toxdistill.json with the task,
    the label names and a per-label calibration."""
    d = tmp_path_factory.mktemp("ml") / "models" / "ml-student"
    tiny_multi_label_bert().save_pretrained(d)
    tokenizer.save_pretrained(d)
    meta = {
        "name": "ml-student",
        "kind": "student",
        "task": "multi_label",
        "label_names": ML_LABELS,
        "max_length": 64,
        "calibration": CALIBRATION,
        "metrics": {"f1_macro": 0.5, "throughput_sps": 100.0},
    }
    (d / "toxdistill.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def ml_pred(ml_dir) -> Predictor:
    return Predictor.load(ml_dir)


# ---------------------------------------------------------------- calibration and results
def test_calibration_is_a_per_label_sigmoid_with_thresholds():
    cal = Calibration.from_meta({"task": "multi_label", "calibration": CALIBRATION})
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [-3.0, 3.0, -1.0, 4.0]], dtype=np.float32)
    t, b = np.array(CALIBRATION["temperature"]), np.array(CALIBRATION["bias"])
    expect = 1 / (1 + np.exp(-(logits / t + b)))
    # by hand, row 2: toxic sigmoid(-6 + 2) = 0.018, obscene sigmoid(3 - 2) = 0.731,
    # insult sigmoid(-0.5 + 1.5) = 0.731, threat sigmoid(2.667 - 1.5) = 0.763
    np.testing.assert_allclose(cal.probabilities(logits), expect, rtol=1e-5)
    np.testing.assert_allclose(cal.probabilities(logits)[1], [0.01799, 0.73106, 0.73106, 0.76257], atol=1e-4)
    decided = cal.decide(logits)
    assert decided.dtype == bool and decided.shape == (2, 4)
    assert decided.tolist() == [[True, False, True, False], [False, True, True, True]]


def test_calibration_defaults_and_task_detection():
    # A multi-label folder without toxdistill.json: recognised from config.json, every threshold 0.5.
    cal = Calibration.from_meta({}, problem_type="multi_label_classification")
    assert cal.multi_label
    assert cal.decide(np.array([[0.1, -0.1, 0.0]], dtype=np.float32)).tolist() == [[True, False, True]]
    # No task: single-label exactly as before, even with a multi-label problem_type in the way.
    single = Calibration.from_meta({"calibration": {"temperature": 2.0}})
    assert not single.multi_label
    assert single.decide(np.array([[0.0, 1.0, 0.5]])).tolist() == [1]
    assert not Calibration.from_meta({"task": "single_label"}, problem_type="multi_label_classification").multi_label


def test_score_results_lists_the_labels_over_their_thresholds(ml_pred):
    logits, truncated = ml_pred.logits(SAMPLE_TEXTS)
    results = score_results(ml_pred, logits, truncated)
    assert len(results) == len(SAMPLE_TEXTS)
    for r in results:
        assert set(r) == {"labels", "probabilities", "truncated"}
        assert r["labels"] == DECIDED
        assert list(r["probabilities"]) == ML_LABELS
    assert results[-1]["truncated"] and not results[0]["truncated"]
    probs = ml_pred.probabilities(logits)
    assert results[2]["probabilities"]["threat"] == pytest.approx(float(probs[2, 3]))


def test_folder_without_toxdistill_json_is_multi_label_from_its_config(ml_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(ml_dir, bare)
    (bare / "toxdistill.json").unlink()
    pred = Predictor.load(bare)
    assert pred.calibration.multi_label and pred.label_names == ML_LABELS
    (r,) = pred.classify(["hello there"])
    assert set(r) == {"labels", "probabilities", "truncated"}


# ---------------------------------------------------------------- predict
def test_predict_writes_a_column_per_label_and_the_decided_labels(ml_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("text,label\n" + "\n".join(f'"{t}",0' for t in SAMPLE_TEXTS[:4]) + "\n")
    out_csv, out_jsonl = tmp_path / "out.csv", tmp_path / "out.jsonl"
    assert main(["predict", str(ml_dir), str(src), "-o", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    # the input's own "label" column is kept; with it, ours keep their names (no clash with "labels")
    assert list(rows[0]) == ["text", "label", "labels", *[f"p_{n}" for n in ML_LABELS], "truncated"]
    assert {r["labels"] for r in rows} == {"toxic|insult"}
    assert 0 < float(rows[0]["p_obscene"]) < 0.4
    assert main(["predict", str(ml_dir), str(src), "-o", str(out_jsonl)]) == 0
    recs = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [r["labels"] for r in recs] == [DECIDED] * 4
    assert recs[0]["p_toxic"] == pytest.approx(float(rows[0]["p_toxic"]))


def test_predict_prefixes_its_columns_when_the_input_has_a_labels_column(ml_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "labels": ["gold"]}) + "\n" for t in SAMPLE_TEXTS[:2]))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(ml_dir), str(src), "-o", str(out)]) == 0
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["labels"] == ["gold"] and rec["pred_labels"] == DECIDED and "pred_p_threat" in rec


# ---------------------------------------------------------------- export
@pytest.fixture(scope="module")
def ml_exports(ml_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml-exports")
    made = {}
    for target in ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8"):
        out = root / target
        assert main(["export", str(ml_dir), "--target", target, "-o", str(out)]) == 0
        made[target] = out
    return made


def test_exports_pass_parity_on_the_multi_label_outputs(ml_exports, ml_pred):
    for target, folder in ml_exports.items():
        meta = read_meta(folder)
        assert meta["task"] == "multi_label" and meta["calibration"] == CALIBRATION, target
        assert json.loads((folder / "config.json").read_text())["problem_type"] == "multi_label_classification"
        for block in meta["export"]["parity"].values():
            assert block["ok"], (target, block)
            assert block["agreement"] == 1.0 and set(block["agreement_per_label"]) == set(ML_LABELS)
            assert block["max_abs_prob_diff"] < 0.05
        pred = Predictor.load(folder)
        assert pred.backend_name == target.split("-")[0]
        (r,) = pred.classify(["you are a wonderful person"])
        assert r["labels"] == DECIDED


def test_multi_label_parity_block_counts_label_sets():
    from toxdistill.data.split import TextSet
    from toxdistill.export.parity import multi_label_block

    pred = Predictor(None, None, ML_LABELS, 64, {"task": "multi_label"})
    ref = np.array([[1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, -1.0]], dtype=np.float32)
    got = ref.copy()
    got[1, 2] = 0.5  # the second text gains "insult"
    gold = np.array([[1, 0, 1, 0], [1, 0, 1, 0]])
    block = multi_label_block(ref, got, pred, TextSet(["a", "b"], gold, "two"), ML_LABELS)
    assert block["agreement"] == 0.5
    assert block["agreement_per_label"] == {"toxic": 1.0, "obscene": 1.0, "insult": 0.5, "threat": 1.0}
    # reference: insult F1 2/3, toxic F1 1, obscene and threat (no positives, none predicted) 1: macro 11/12
    assert block["f1_macro_ref"] == pytest.approx(11 / 12) and block["f1_macro"] == pytest.approx(1.0)
    assert block["f1_weighted_ref"] == pytest.approx((2 * 1 + 2 * 2 / 3) / 4)


# ---------------------------------------------------------------- serve
@pytest.fixture(scope="module")
def ml_client(ml_dir):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    models = load_models(ml_dir.parent, batch_wait_ms=2.0)
    yield TestClient(create_app(models, run_name="ml-run"), base_url="http://localhost")
    close_models(models)


def test_api_returns_the_labels_of_each_text(ml_client):
    r = ml_client.post("/api/classify", json={"texts": ["you are nice", "go away"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "ml-student"
    (info,) = ml_client.get("/api/models").json()["models"]
    assert info["task"] == "multi_label" and info["label_names"] == ML_LABELS
    for res in body["results"]:
        assert res["labels"] == DECIDED and "label" not in res
        assert set(res["probabilities"]) == set(ML_LABELS)
    r = ml_client.post("/api/classify", json={"texts": "you are nice people", "explain": True})
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert res["labels"] == DECIDED and [w["word"] for w in res["word_scores"]] == ["you", "are", "nice", "people"]


def test_page_shows_the_label_list_with_probabilities(ml_client):
    r = ml_client.post("/", data={"text": "this is trash and so are you", "model": "ml-student"})
    assert r.status_code == 200, r.text
    html = r.text
    listed = html[html.index('id="predicted-labels"') : html.index("</ul>", html.index('id="predicted-labels"'))]
    assert "toxic" in listed and "insult" in listed and "obscene" not in listed and "%" in listed
    assert "<em>toxic</em>" in html  # the words explain the most probable decided label
    r = ml_client.post("/", data={"text": "this is trash", "model": "ml-student", "compare": "1"})
    assert r.status_code == 200
    # the class of interest defaults to the first label: toxic is red
    assert 'pill-hate">toxic</span>' in r.text and ">insult</span>" in r.text and ">obscene</span>" not in r.text
    card = ml_client.get("/models/ml-student")
    assert card.status_code == 200 and "thresholds 0.6, 0.4, 0.55, 0.5" in card.text


def test_upload_download_has_a_labels_column(ml_client):
    data = b"text\nyou are nice\ngo away\n"
    r = ml_client.post("/batch", files={"file": ("c.csv", data, "text/csv")}, data={"model": "ml-student"})
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(r.text.splitlines()))
    assert list(rows[0])[:2] == ["text", "labels"] and rows[0]["labels"] == "toxic|insult"


def test_shadow_compares_label_sets(ml_dir, tmp_path):
    pytest.importorskip("prometheus_client")
    from toxdistill.serve.models import close_models, load_models
    from toxdistill.serve.shadow import DisagreementLog, Shadow

    # The reference: the same weights with a low obscene threshold, so it adds obscene to every text.
    ref_dir = tmp_path / "ref"
    shutil.copytree(ml_dir, ref_dir)
    meta = json.loads((ref_dir / "toxdistill.json").read_text())
    meta["calibration"] = {**CALIBRATION, "thresholds": [0.6, 0.05, 0.55, 0.5]}
    (ref_dir / "toxdistill.json").write_text(json.dumps(meta))
    served = load_models(ml_dir, batch_wait_ms=None)
    ref = load_models(ref_dir, batch_wait_ms=None)["ref"]
    shadow = Shadow(ref, rate=1.0, log_file=DisagreementLog(tmp_path / "d.jsonl", 1 << 20))
    try:
        shadow.watch(served)
        served["ml-student"].classify(SAMPLE_TEXTS[:3])
        assert shadow.settle()
    finally:
        shadow.close()
        close_models(served)
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    assert {(r["label"], r["shadow_label"]) for r in lines} == {("toxic|insult", "toxic|obscene|insult")}
    # the per-label probabilities are the same weights' under the same temperature and bias
    assert all(r["tv_distance"] < 1e-5 for r in lines)


def test_model_card_snippet_decides_as_the_predictor(ml_exports, capsys):
    from toxdistill.pipeline.model_card import CardFacts, plain_snippet

    folder = ml_exports["onnx-fp32"]
    facts = CardFacts(
        run_name="r", folder=str(folder), run_folder="runs/r", meta=read_meta(folder), row={}, selection={},
        bench={}, teacher_row=None, teacher_model="t", data_source="file", data_name=None, label_names=ML_LABELS,
        focus_class="toxic", split_sizes={}, test_support=[], seed=0, ci={}, n_boot=0,
    )  # fmt: skip
    snippet = plain_snippet(facts)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - our own snippet
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(scope["texts"]) and all(line.startswith(str(DECIDED)) for line in printed)
    probs = Predictor.load(folder).probabilities(scope["logits"])
    np.testing.assert_allclose(scope["probs"], probs, rtol=1e-5)
