"""Weights load only from safetensors unless the user explicitly allows pickle."""

import pytest
import torch

from toxdistill.cli import main
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import Predictor
from toxdistill.models.teacher import load_classifier, set_allow_pickle

from conftest import tiny_bert


@pytest.fixture
def bin_only_dir(tmp_path, tokenizer):
    d = tmp_path / "pickled"
    model = tiny_bert(n_layers=2)
    model.save_pretrained(d, safe_serialization=False)
    for f in d.glob("*.safetensors"):  # some versions always write safetensors; keep only the pickle
        f.unlink()
    if not list(d.glob("*.bin")):
        torch.save(model.state_dict(), d / "pytorch_model.bin")
    tokenizer.save_pretrained(d)
    return d


def test_pickle_weights_refused_by_default(bin_only_dir):
    with pytest.raises(ToxdistillError, match="pickle"):
        Predictor.load(bin_only_dir)
    with pytest.raises(ToxdistillError, match="pickle"):
        load_classifier(str(bin_only_dir), ["a", "b", "c"])


def test_pickle_weights_load_with_explicit_flag(bin_only_dir):
    set_allow_pickle(True)
    try:
        p = Predictor.load(bin_only_dir)
        logits, _ = p.logits(["hello"])
        assert logits.shape == (1, 3)
    finally:
        set_allow_pickle(False)


def test_cli_refuses_pickle_in_one_line(bin_only_dir, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("hello\nworld\n")
    code = main(["predict", str(bin_only_dir), str(src), "-o", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "pickle" in err[0] and "--allow-pickle" in err[0]
