"""Bring your own teacher: a fine-tuned RoBERTa-style classifier used as it is, with odd/even students, LoRA
(loadable from anywhere), a student from another family, the report, export, predict and serve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from toxdistill.cli import main

from conftest import LABELS, tiny_family

WORDS = {0: ["vermin", "subhuman", "deport"], 1: ["trash", "stupid", "shut"], 2: ["lovely", "beach", "coffee"]}
FILLER = ["the", "a", "you", "they", "today", "is", "so", "really"]


def _data(path: Path, n: int = 360) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        c = [0, 1, 1, 1, 2, 2][i % 6]
        words = list(rng.choice(FILLER, rng.integers(2, 8))) + [str(rng.choice(WORDS[c]))]
        rng.shuffle(words)
        rows.append({"tweet": " ".join(words), "class": c})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _save(model, tokenizer, d: Path) -> Path:
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def _config(tmp: Path, data: Path, teacher: Path, stages: list[dict], **teacher_extra) -> Path:
    cfg = {
        "name": "byo",
        "output_dir": str(tmp / "runs"),
        "data": {"source": "file", "path": str(data), "sha256": None, "max_length": 32},
        "teacher": {"model": str(teacher), "train": None, **teacher_extra},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16},
        "lora": {"r": 4, "alpha": 8},
        "threads": 2,
        "stages": stages,
        # Off: the frontier's exports of every model took a third of this file's time, and the frontier of a run with
        # a given teacher is tests/test_frontier.py's; the given teacher's own models are exported below.
        "frontier": {"enabled": False},
    }
    p = tmp / f"cfg-{len(list(tmp.glob('cfg-*')))}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _one_line_error(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def byo(tmp_path_factory, tokenizer):
    """One run with a given RoBERTa teacher whose labels are named and ordered differently from the data."""
    tmp = tmp_path_factory.mktemp("byo")
    data = _data(tmp / "tweets.csv")
    # A "fine-tuned" teacher: a RoBERTa classifier whose head was trained briefly on the data, labels reordered.
    teacher = tiny_family("roberta", id2label={0: "neither", 1: "hateful", 2: "offensive"})
    _quick_fit(teacher, tokenizer, data, order=[1, 2, 0])
    tdir = _save(teacher, tokenizer, tmp / "my-roberta")
    mdir = _save(tiny_family("mpnet", n_layers=2, hidden=48, seed=3), tokenizer, tmp / "other-family")
    stages = [
        {"name": "odd", "kind": "distill", "layers": "odd"},
        {"name": "even", "kind": "distill", "layers": "even"},
        {"name": "lora-student", "kind": "lora", "base": "teacher", "layers": "even"},
        {"name": "mini", "kind": "distill", "student": str(mdir)},
        {"name": "mini-lora", "kind": "distill-lora", "base": "mini"},
    ]
    cfg = _config(tmp, data, tdir, stages, label_map={"hateful": "hate speech"})
    code = main(["run", "--config", str(cfg)])
    assert code == 0
    return tmp, tmp / "runs" / "byo", tdir, cfg, data


def _quick_fit(model, tokenizer, data: Path, order: list[int]) -> None:
    """A few steps so the given teacher is better than chance; class c of the data is output order[c]."""
    df = pd.read_csv(data)
    enc = tokenizer(list(df.tweet), padding=True, truncation=True, max_length=32, return_tensors="pt")
    y = torch.tensor([order[c] for c in df["class"]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(**enc).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_the_given_teacher_is_used_as_it_is(byo, tokenizer):
    from transformers import AutoModelForSequenceClassification

    _, run, tdir, _, _ = byo
    meta = json.loads((run / "models" / "teacher" / "toxdistill.json").read_text())
    assert meta["given"] is True and meta["train"]["train_runtime_s"] == 0.0 and meta["kind"] == "teacher"
    assert meta["trainable_params"] == 0 and np.isfinite(meta["train"]["train_loss"])
    orig = AutoModelForSequenceClassification.from_pretrained(tdir).eval()
    saved = AutoModelForSequenceClassification.from_pretrained(run / "models" / "teacher").eval()
    assert saved.config.id2label == dict(enumerate(LABELS))
    enc = tokenizer(["you are vermin", "lovely coffee today", "shut up"], padding=True, return_tensors="pt")
    with torch.no_grad():
        # Its outputs are the original ones, reordered to the data's classes: nothing was trained.
        torch.testing.assert_close(saved(**enc).logits, orig(**enc).logits[:, [1, 2, 0]])
    assert meta["metrics"]["accuracy"] > 0.6  # the quick fit carried over in the right label order


def test_students_lora_and_the_other_family_come_out_of_the_given_teacher(byo):
    from transformers import AutoModelForSequenceClassification

    _, run, _, _, _ = byo
    results = {r["name"]: r for r in json.loads((run / "results.json").read_text())}
    assert set(results) == {"tfidf-lr", "teacher", "odd", "even", "lora-student", "mini", "mini-lora"}
    assert results["odd"]["layers"] == [1, 3] and results["even"]["layers"] == [2, 4]
    mini = json.loads((run / "models" / "mini" / "toxdistill.json").read_text())
    assert mini["hidden_projection"] is True and mini["student_model"].endswith("other-family")
    plain = AutoModelForSequenceClassification.from_pretrained(run / "models" / "mini")
    assert plain.config.model_type == "mpnet" and plain.config.hidden_size == 48
    assert not hasattr(plain, "kd_projection")
    # Comparisons follow kind and layers, whatever the stages are called.
    pairs = {(c["a"], c["b"]) for c in json.loads((run / "significance.json").read_text())["comparisons"]}
    assert {("odd", "even"), ("mini", "teacher"), ("mini-lora", "teacher"), ("lora-student", "teacher")} <= pairs
    report = (run / "report.md").read_text()
    for name in ("odd", "even", "lora-student", "mini", "mini-lora"):
        assert f"\n| {name} | " in report


def test_adapter_loads_from_any_directory_after_the_run_folder_moved(byo, tmp_path):
    """The README's one-liner, run as a user would: another working directory, the run folder moved."""
    _, run, _, _, _ = byo
    moved = tmp_path / "elsewhere" / "my-run"
    shutil.copytree(run, moved)
    d = moved / "models" / "lora-student"
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    code = (
        "import sys, torch\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        "d = sys.argv[1]\n"
        "model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(f'{d}/base'), f'{d}/adapter')\n"
        "merged = AutoModelForSequenceClassification.from_pretrained(d)\n"
        "tok = AutoTokenizer.from_pretrained(d)\n"
        "enc = tok(['you are vermin', 'lovely coffee'], padding=True, return_tensors='pt')\n"
        "with torch.no_grad():\n"
        "    a, b = model.eval()(**enc).logits, merged.eval()(**enc).logits\n"
        "print(float((a - b).abs().max()))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(d)], cwd=cwd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-4
    cfg = json.loads((d / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "../base"  # nothing that points into the old location


def test_export_predict_and_serve_the_given_teachers_models(byo, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    _, run, _, _, data = byo
    for name in ("teacher", "mini"):
        assert main(["export", str(run / "models" / name), "--target", "onnx-int8", "--allow-drift"]) == 0
    out = tmp_path / "scored.csv"
    assert main(["predict", str(run / "export" / "mini-onnx-int8"), str(data), "-o", str(out)]) == 0
    scored = pd.read_csv(out)
    assert len(scored) == len(pd.read_csv(data)) and set(scored.label) <= set(LABELS)
    models = load_models(run)
    try:
        client = TestClient(create_app(models, run_name="byo"), base_url="http://localhost")
        r = client.post("/api/classify", json={"texts": ["you are vermin"], "model": "mini"})
        assert r.status_code == 200 and r.json()["results"][0]["label"] in LABELS
        names = {m["name"] for m in client.get("/api/models").json()["models"]}
        assert {"teacher", "odd", "even", "mini", "lora-student"} <= names
    finally:
        close_models(models)
    capsys.readouterr()


# ---------------------------------------------------------------- bad input: one line, nothing changed
def test_bad_students_and_lora_leave_the_run_folder_unchanged(byo, tokenizer, capsys):
    from transformers import AlbertConfig, AlbertForSequenceClassification

    tmp, run, tdir, _, data = byo
    before = _snapshot(run)
    two = tiny_family("bert", id2label={0: "toxic", 1: "clean"})
    two_dir = _save(two, tokenizer, tmp / "two-label-student")
    cases = [
        ([{"name": "s", "kind": "distill", "student": str(two_dir)}], "classifier of 2 labels"),
        ([{"name": "s", "kind": "distill", "layers": "spread:9"}], "asks for 9 layers"),
    ]
    capsys.readouterr()
    for stages, needle in cases:
        code = main(["run", "--config", str(_config(tmp, data, tdir, stages, label_map={"hateful": "hate speech"}))])
        _one_line_error(code, capsys.readouterr().err, needle)
    albert = AlbertForSequenceClassification(
        AlbertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    )
    albert.config.id2label = dict(enumerate(LABELS))
    adir = _save(albert, tokenizer, tmp / "albert")
    capsys.readouterr()
    stages = [{"name": "l", "kind": "lora", "base": "teacher", "layers": [2]}]
    code = main(["run", "--config", str(_config(tmp, data, adir, stages)), "--name", "albert"])
    _one_line_error(code, capsys.readouterr().err, "no default LoRA target modules for model_type 'albert'")
    assert not (run.parent / "albert" / "config.yaml").exists()
    assert _snapshot(run) == before


@pytest.mark.parametrize("kind", ["encoder", "two-labels", "unmapped"])
def test_bad_given_teachers(kind, tmp_path, tokenizer, capsys):
    from transformers import AutoModel

    data = _data(tmp_path / "d.csv", 60)
    if kind == "encoder":  # a bare encoder is no classifier to use as it is
        d = _save(AutoModel.from_config(tiny_family("mpnet").config), tokenizer, tmp_path / "t")
        needle = "is not a fine-tuned classifier"
    elif kind == "two-labels":
        d = _save(tiny_family("roberta", id2label={0: "toxic", 1: "clean"}), tokenizer, tmp_path / "t")
        needle = "has 2 labels"
    else:
        d = _save(
            tiny_family("roberta", id2label={0: "neither", 1: "hateful", 2: "offensive"}), tokenizer, tmp_path / "t"
        )
        needle = "label 'hateful' matches none"
    capsys.readouterr()
    code = main(["run", "--config", str(_config(tmp_path, data, d, []))])
    _one_line_error(code, capsys.readouterr().err, needle)
    assert not list((tmp_path / "runs").glob("*/config.yaml"))
