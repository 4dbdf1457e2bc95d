"""The transfer set (``data.unlabelled``): its reading and cleaning, the loss that leaves its rows to the
distillation terms, its place in the fingerprints, and a run that trains a student on it (the teacher's outputs on
it, cached once: tests/test_teacher_cache.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toxdistill.cli import main
from toxdistill.config import DataConfig, load_config
from toxdistill.data.unlabelled import read_unlabelled
from toxdistill.errors import ToxdistillError
from toxdistill.training.encoded import EncodedDataset
from toxdistill.training.losses import cross_entropy
from toxdistill.training.teacher_cache import Augmentation
from toxdistill.training.trainer import with_transfer

from conftest import tiny_dataset


# ---------------------------------------------------------------- the loss
def test_rows_without_a_label_add_nothing_to_the_ce_term():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 2, 1, 0, 0, 0])
    w = torch.tensor([3.0, 1.0, 0.5])
    q = torch.eye(3)[y]
    q[3:] = 0  # rows 3..5: the transfer set's
    want = F.cross_entropy(logits[:3], y[:3], weight=w)
    torch.testing.assert_close(cross_entropy(logits, q, w), want)
    # A batch of transfer rows alone: no CE at all (and no NaN from 0 / 0)
    assert cross_entropy(logits[3:], q[3:], w).item() == 0.0


def test_transfer_rows_follow_the_training_rows(tokenizer):
    train = tiny_dataset(5)
    enc = EncodedDataset(train, tokenizer, 32)
    outputs = (torch.randn(5, 3), torch.randn(5, 8))
    transfer = Augmentation(
        ["an unlabelled text", "another one"], torch.tensor([[0.0, 2.0, 1.0], [3.0, 0, 0]]), torch.randn(2, 8)
    )
    out, soft, (logits, cls) = with_transfer(enc, None, outputs, transfer, 3)
    assert len(out) == 7 and out[5]["idx"] == 5 and out[5]["input_ids"] == enc.encode(["an unlabelled text"])[0]
    torch.testing.assert_close(soft[:5], torch.eye(3)[torch.as_tensor(train.labels)])
    assert soft[5:].abs().sum() == 0
    torch.testing.assert_close(logits[5:], transfer.logits)
    torch.testing.assert_close(cls[:5], outputs[1])


# ---------------------------------------------------------------- reading
def test_unlabelled_files_are_cleaned_and_evaluation_text_is_left_out(tmp_path):
    (tmp_path / "a.csv").write_text('id,text\n1,"Hello &amp; welcome"\n2,a test text\n3,in training\n4,\n5,new one\n')
    (tmp_path / "b.jsonl").write_text('{"text": "new one"}\n{"text": "from jsonl"}\n')
    (tmp_path / "c.txt").write_text("plain line\n")
    cfg = DataConfig(unlabelled=[str(tmp_path / n) for n in ("a.csv", "b.jsonl", "c.txt")])
    t = read_unlabelled(cfg, train=["in training"], held_out=["a test text"])
    assert t.texts == ["Hello & welcome", "new one", "from jsonl", "plain line"]
    assert (t.overlap, t.repeated) == (1, 2)
    other = read_unlabelled(cfg.model_copy(update={"unlabelled": cfg.unlabelled[:2]}), [], [])
    assert other.key != t.key


@pytest.mark.parametrize(
    ("content", "match"),
    [("text\na test text\n", "no text that is not already"), (None, "not found")],
)
def test_bad_transfer_sets_are_one_line_errors(tmp_path, content, match):
    f = tmp_path / "u.csv"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ToxdistillError, match=match):
        read_unlabelled(DataConfig(unlabelled=[str(f)]), [], ["a test text"])


# ---------------------------------------------------------------- fingerprints
def test_only_the_stages_that_read_it_change_fingerprint():
    base = load_config(None)
    with_set = load_config(None, {"data.unlabelled": ["comments.csv"]})
    assert with_set.fingerprint() == base.fingerprint()  # the teacher never reads it
    for st in base.stages:
        changed = with_set.stage_fingerprint(st.name) != base.stage_fingerprint(st.name)
        assert changed == (st.kind in ("distill", "distill-lora")), st.name


# ---------------------------------------------------------------- a run
CONFIG = """
name: transfer
data: {source: file, path: DATA, sha256: null, max_length: 32, unlabelled: [UNLABELLED]}
teacher: {model: TEACHER, train: {epochs: 1, lr: 1.0e-3, batch_size: 16}}
train: {epochs: 1, lr: 1.0e-3, batch_size: 16}
threads: 2
robustness: {enabled: false}
frontier: {enabled: false}
eval_sets: []
stages:
  - {name: odd, kind: distill, layers: odd, train: {perturb: 0.5}}
"""


def test_a_run_distils_on_the_transfer_set(tmp_path, tiny_model_dir):
    ds = tiny_dataset(80, seed=4)
    data = tmp_path / "tweets.csv"
    data.write_text("tweet,class\n" + "\n".join(f'"{t}",{y}' for t, y in zip(ds.texts, ds.labels)) + "\n")
    extra = tiny_dataset(60, seed=9).texts
    (tmp_path / "u.txt").write_text("\n".join(extra) + "\n")
    cfg = tmp_path / "c.yaml"
    text = CONFIG.replace("DATA", str(data)).replace("UNLABELLED", str(tmp_path / "u.txt"))
    cfg.write_text(text.replace("TEACHER", str(tiny_model_dir)))
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / "transfer"
    meta = json.loads((run / "models" / "odd" / "toxdistill.json").read_text())
    rows = meta["transfer"]["rows"]
    assert 0 < rows <= len(set(extra)) and meta["transfer"]["files"] == [str(tmp_path / "u.txt")]
    assert len(list((run / "cache").glob("transfer-*.safetensors"))) == 1
    assert "transfer" not in json.loads((run / "models" / "teacher" / "toxdistill.json").read_text())
    # Every epoch goes over the labelled and the transfer rows: 80 % of 80 labelled rows plus the transfer set
    split = json.loads((run / "split.json").read_text())
    steps = int(np.ceil((len(split["train"]) + rows) / 16))
    assert meta["train"]["best_checkpoint"].endswith(f"checkpoint-{steps}")
