"""A teacher that is only scores (``teacher.scores``): reading and checking the file, the masked KD term, the
fingerprint, the refusals, and a run that distils from a file of a model teacher's logits into the very student
that distilling from the model gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from toxdistill.cli import main
from toxdistill.config import CleanConfig, load_config
from toxdistill.data.scores import read_scores
from toxdistill.errors import ToxdistillError
from toxdistill.training.losses import kd_kl_loss

from conftest import LABELS

P_COLS = ["p_hate_speech", "p_offensive", "p_neither"]
LOGIT_COLS = ["logit_hate_speech", "logit_offensive", "logit_neither"]


def _rows(n: int = 60, seed: int = 3) -> tuple[list[str], np.ndarray]:
    """Distinct texts (a repeated text would take the first row's scores) with random labels."""
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "hate", "love", "you", "them", "nice", "awful"]
    texts = [f"row {i} " + " ".join(rng.choice(words, size=rng.integers(2, 8))) for i in range(n)]
    return texts, rng.integers(0, 3, n)


def _data(tmp_path: Path) -> Path:
    texts, labels = _rows()
    f = tmp_path / "tweets.csv"
    pd.DataFrame({"tweet": texts, "class": labels}).to_csv(f, index=False)
    return f


def _probs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(3), n)


# ---------------------------------------------------------------- the loss
def test_the_kd_term_leaves_out_rows_without_scores():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    every = torch.ones(5, dtype=torch.bool)
    torch.testing.assert_close(kd_kl_loss(s, t, 2.0, every), kd_kl_loss(s, t, 2.0), rtol=0, atol=1e-6)
    some = torch.tensor([True, False, True, False, False])
    per_row = F.kl_div(F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), reduction="none", log_target=True)
    want = per_row.sum(-1)[some].sum() / 5 * 4
    torch.testing.assert_close(kd_kl_loss(s, t, 2.0, some), want)


# ---------------------------------------------------------------- reading
def test_probabilities_become_log_probabilities_matched_by_cleaned_text(tmp_path):
    p = _probs(3)
    f = tmp_path / "s.csv"
    df = pd.DataFrame({"tweet": ["Hello &amp; you", "@someone hi", "plain"]} | dict(zip(P_COLS, p.T)))
    df.to_csv(f, index=False)
    s = read_scores(f, None, "tweet", LABELS, CleanConfig())
    assert s.kind == "p" and set(s.by_text) == {"Hello & you", "@user hi", "plain"}
    np.testing.assert_allclose(np.exp(s.by_text["plain"]), p[2], rtol=1e-5)


def test_a_predict_output_file_is_a_scores_file(tmp_path, tiny_model_dir):
    data = _data(tmp_path)
    out = tmp_path / "scored.csv"
    assert main(["predict", str(tiny_model_dir), str(data), "-o", str(out), "--progress", "off"]) == 0
    written = pd.read_csv(out)
    s = read_scores(out, None, "tweet", LABELS, CleanConfig())
    assert s.kind == "p" and len(s.by_text) == len(written)
    got = np.exp(np.stack([s.by_text[t] for t in written["tweet"]]))
    np.testing.assert_allclose(got, written[P_COLS].to_numpy(), atol=1e-7)


# ---------------------------------------------------------------- config
def _scores_config(tmp_path: Path, scores: Path, extra: str = "", stage: str = "") -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"""
name: s
data: {{source: file, path: {_data(tmp_path)}, sha256: null, max_length: 32}}
teacher: {{scores: {scores}, pretrained: PRETRAINED}}
train: {{epochs: 1, lr: 1.0e-3, batch_size: 16}}
baseline: false
robustness: {{enabled: false}}
frontier: {{enabled: false}}
eval_sets: []
{extra}
stages:
  - {{name: one, kind: distill, layers: [1]{stage}}}
"""
    )
    return cfg


def test_the_fingerprint_is_the_files_contents_and_cos_is_turned_off(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for f in (a, b):
        f.write_text("text,p_hate_speech,p_offensive,p_neither\nhello,0.2,0.3,0.5\n")
    fa = load_config(_scores_config(tmp_path, a)).fingerprint()
    assert load_config(_scores_config(tmp_path, b)).fingerprint() == fa  # the same contents under another name
    b.write_text("text,p_hate_speech,p_offensive,p_neither\nhello,0.1,0.4,0.5\n")
    assert load_config(_scores_config(tmp_path, b)).fingerprint() != fa
    cfg = load_config(_scores_config(tmp_path, a))
    assert cfg.teacher.train is None and all(cfg.stage_distill(s).w_cos == 0 for s in cfg.stages)


@pytest.mark.parametrize(
    ("extra", "stage", "match"),
    [
        ("distill: {w_cos: 0.5}", "", "distill.w_cos needs the teacher model"),
        ("", ", distill: {w_hidden: 1.0}", "w_hidden needs the teacher model"),
        ("", ", distill: {augment: 1}", "augment needs the teacher model"),
    ],
)
def test_terms_that_need_a_teacher_model_are_refused(tmp_path, extra, stage, match):
    f = tmp_path / "s.csv"
    f.write_text("text,p_hate_speech,p_offensive,p_neither\nhello,0.2,0.3,0.5\n")
    with pytest.raises(ToxdistillError, match=match):
        load_config(_scores_config(tmp_path, f, extra, stage))


def test_stages_that_need_teacher_weights_are_refused(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("text,p_hate_speech,p_offensive,p_neither\nhello,0.2,0.3,0.5\n")
    cfg = _scores_config(tmp_path, f)
    cfg.write_text(cfg.read_text() + "  - {name: lt, kind: lora, base: teacher}\n")
    with pytest.raises(ToxdistillError, match="lora base teacher needs teacher weights"):
        load_config(cfg)
    cfg.write_text(cfg.read_text().replace("teacher: {scores", "teacher: {train: {epochs: 1}, scores"))
    with pytest.raises(ToxdistillError, match="teacher.scores trains no teacher"):
        load_config(cfg)


# ---------------------------------------------------------------- bad files, through the CLI
BAD = {
    "columns": ("tweet,p_hate,p_offensive,p_neither\n{t},0.2,0.3,0.5\n", "do not match data.label_names"),
    "negative": ("tweet,p_hate_speech,p_offensive,p_neither\n{t},-0.2,0.7,0.5\n", "not probabilities"),
    "sum": ("tweet,p_hate_speech,p_offensive,p_neither\n{t},0.2,0.3,0.2\n", "not probabilities"),
    "nan": ("tweet,p_hate_speech,p_offensive,p_neither\n{t},,0.5,0.5\n", "missing or not numbers"),
    "no-row": ("tweet,p_hate_speech,p_offensive,p_neither\nnot in the data,0.2,0.3,0.5\n", "scores none of"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scores_files_stop_the_run_before_training(tmp_path, tiny_model_dir, case, capsys):
    content, match = BAD[case]
    f = tmp_path / "s.csv"
    f.write_text(content.format(t=_rows()[0][0]))
    cfg = _scores_config(tmp_path, f)
    cfg.write_text(cfg.read_text().replace("PRETRAINED", str(tiny_model_dir)))
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "runs")]) != 0
    err = capsys.readouterr().err.strip()
    assert match in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs" / "s" / "models").exists()


# ---------------------------------------------------------------- the same student from the model or its logits
RUN = """
name: NAME
data: {source: file, path: DATA, sha256: null, max_length: 32}
teacher: TEACHER
train: {epochs: 1, lr: 1.0e-3, batch_size: 16}
baseline: false
robustness: {enabled: false}
frontier: {enabled: false}
eval_sets: []
stages:
  - {name: one, kind: distill, layers: [1], distill: {w_cos: 0}}
"""


def _run(tmp_path: Path, name: str, teacher: str, data: Path) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(RUN.replace("NAME", name).replace("DATA", str(data)).replace("TEACHER", teacher))
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "runs")]) == 0
    return tmp_path / "runs" / name


def test_a_file_of_the_teachers_logits_gives_the_same_student(tmp_path, tiny_model_dir):
    data = _data(tmp_path)
    model_run = _run(tmp_path, "model", f"{{model: {tiny_model_dir}, train: {{epochs: 1, batch_size: 16}}}}", data)
    # The teacher's outputs on the training rows, as the model run cached and used them, written as logit_ columns
    # (exactly: float32 values print and parse back bit for bit), and its saved ones on validation and test.
    (cache,) = (model_run / "cache").glob("teacher-*.safetensors")
    teacher = model_run / "models" / "teacher"
    split = json.loads((model_run / "split.json").read_text())
    parts = [load_file(str(cache))["logits"].numpy(), *(np.load(teacher / f"{p}_logits.npy") for p in ("val", "test"))]
    texts = pd.read_csv(data)["tweet"].tolist()
    ids = split["train"] + split["val"] + split["test"]
    logits = np.concatenate(parts).astype(np.float64)
    scores = tmp_path / "teacher-logits.csv"
    pd.DataFrame({"tweet": [texts[i] for i in ids]} | dict(zip(LOGIT_COLS, logits.T))).to_csv(scores, index=False)
    scores_run = _run(tmp_path, "scores", f"{{scores: {scores}, pretrained: {teacher}}}", data)
    a, b = (load_file(str(r / "models" / "one" / "model.safetensors")) for r in (model_run, scores_run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(*(np.load(r / "models" / "one" / "test_logits.npy") for r in (model_run, scores_run)))
    meta = json.loads((scores_run / "models" / "teacher" / "toxdistill.json").read_text())
    n_test = len(split["test"])
    assert meta["teacher_scores"]["test"] == {"scored": n_test, "rows": n_test}
    want = json.loads((teacher / "toxdistill.json").read_text())["metrics"]
    assert meta["metrics"]["f1_macro"] == want["f1_macro"]  # the teacher row from its scores is the model's


def test_a_multi_label_task_needs_a_teacher_model(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("text,p_hate_speech,p_offensive,p_neither\nhello,0.2,0.3,0.5\n")
    cfg = _scores_config(tmp_path, f)
    overrides = {"data.task": "multi_label", "data.label_names": ["a", "b"], "data.label_cols": ["a", "b"]}
    with pytest.raises(ToxdistillError, match="multi_label needs a teacher model"):
        load_config(cfg, overrides)
