import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from toxdistill.inference.predict import Predictor
from toxdistill.models.teacher import load_classifier, load_given_classifier

from conftest import LABELS, SAMPLE_TEXTS, tiny_family

# A checkpoint fine-tuned elsewhere: the data's classes in another order, under other names.
THEIRS = {0: "neither", 1: "hate_speech", 2: "OFFENSIVE"}


@pytest.mark.parametrize("loader", ["fine-tune", "given"])
def test_plain_transformers_reads_our_folder_as_the_predictor_does(loader, tmp_path, tokenizer):
    """What we save names the classes as the data does, for plain transformers too, and gives it the
    Predictor's logits: a teacher to fine-tune gets our label names, a given one its head reordered."""
    theirs = tiny_family("bert", id2label=THEIRS)
    theirs.save_pretrained(tmp_path / "theirs")
    tokenizer.save_pretrained(tmp_path / "theirs")
    load = load_classifier if loader == "fine-tune" else load_given_classifier
    model, tok = load(str(tmp_path / "theirs"), LABELS)
    model.save_pretrained(tmp_path / "ours")  # as the pipeline saves a model folder
    tok.save_pretrained(tmp_path / "ours")

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    assert plain.config.id2label == dict(enumerate(LABELS))
    assert plain.config.label2id == {n: i for i, n in enumerate(LABELS)}
    texts = SAMPLE_TEXTS[:5]  # short ones: no truncation
    enc = AutoTokenizer.from_pretrained(tmp_path / "ours")(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = plain(**enc).logits
        before = theirs.eval()(**enc).logits
    pred = Predictor.load(tmp_path / "ours")  # no toxdistill.json: the labels come from the config alone
    logits, truncated = pred.logits(texts, batch_size=2)
    assert pred.label_names == LABELS and not truncated.any()
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-5)
    # Fine-tuning starts from their weights; a given head is theirs with its rows in the data's order.
    torch.testing.assert_close(ref, before if loader == "fine-tune" else before[:, [1, 2, 0]])


def test_predictor_truncates_and_says_so(tiny_model_dir):
    p = Predictor.load(tiny_model_dir)
    _, truncated = p.logits(["short", "word " * 500])
    assert truncated.tolist() == [False, True]
