import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from toxdistill.inference.predict import Predictor

from conftest import SAMPLE_TEXTS


def test_plain_transformers_matches_predictor(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = SAMPLE_TEXTS[:5]  # short ones: no truncation
    with torch.no_grad():
        ref = model(**tok(texts, padding=True, return_tensors="pt")).logits.numpy()
    logits, truncated = Predictor.load(tiny_model_dir).logits(texts, batch_size=2)
    np.testing.assert_allclose(logits, ref, atol=1e-5)
    assert not truncated.any()
    assert model.config.id2label[0] == "hate speech"


def test_predictor_truncates_and_says_so(tiny_model_dir):
    p = Predictor.load(tiny_model_dir)
    _, truncated = p.logits(["short", "word " * 500])
    assert truncated.tolist() == [False, True]
