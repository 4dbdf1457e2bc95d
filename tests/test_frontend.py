"""The front-end (``data/frontend.py``, switched on in ``data.clean``): each step on its own, normal text and
numbers left alone, nothing changed while it is off (fingerprints included), and one answer for disguised text
whichever way a model folder with the front-end on is used: predict, serve, predict on Ray, the model card's code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from toxdistill.cli import main
from toxdistill.config import DEFAULT_CONFIG, CleanConfig, Config, load_config
from toxdistill.data import frontend
from toxdistill.data.dataset import (
    FRONTEND_STEPS,
    clean_text,
    confusables_table,
    frontend_text,
    write_frontend_files,
)
from toxdistill.inference.predict import Predictor
from toxdistill.pipeline.model_card import CardFacts, plain_snippet

from conftest import REPO

ALL_ON = CleanConfig(**dict.fromkeys(FRONTEND_STEPS, True))
# Disguised spellings of every kind the front-end undoes, with the text each becomes.
DISGUISED = {
    "you are a h a t e f u l person": "you are a hateful person",
    "i h8 you, 1d10t": "i hate you, idiot",
    "ｙｏｕ ａｒｅ ｔｒａｓｈ": "you are trash",
    "st\u200bu\u200dpid \u0456d\u0456\u043et": "stupid idiot",  # zero-width inside, Cyrillic і and о
    "fuuuuuck this b!tch": "fuuck this bitch",
    "h.a.t.e them, $tupid": "hate them, stupid",
}
# Normal text, numbers and placeholders that no step may touch.
NORMAL = [
    "I am a man and you are a woman",
    "it cost $5 in 2017, at 5am on the 3rd",
    "wow!!! that is good, cool and sweet",
    "e.g. this, i.e. that",
    "covid19 and win10 at 10pm in the 90s",
    "@user пора домой http",
    "call me at 555-1234",
    # Seen in the Davidson tweets: numbers beside words, a stretched "!" before a word, words of one letter.
    "#PartyPart3 A1 credit 4ever, a 12pck x3",
    "so nice!!!!!cant stand it",
    "#xxx www zzz",
]


@pytest.mark.parametrize(
    "step,raw,expected",
    [
        ("nfkc", "ｈａｔｅ 𝐡𝐚𝐭𝐞 ﬁne", "hate hate fine"),
        ("strip_zero_width", "ha\u200bte i\u200cd\u200di\u2060o\ufefft st\u00adupid", "hate idiot stupid"),
        ("join_spelled", "h a t e, h.a.t.e, h-a-t-e and h . a . t . e", "hate, hate, hate and hate"),
        ("join_spelled", "a b i t c h, I h a t e you", "a bitch, I hate you"),
        ("join_spelled", "U.S.A. is a b", "USA. is a b"),
        ("squeeze_repeats", "fuuuuuck sooooo gooood", "fuuck soo good"),
        ("decode_leet", "h8te h8 b!tch sh1t 1d10t $tupid b@stard", "hate hate bitch shit idiot stupid bastard"),
        ("decode_leet", "2017 $5 5am 3rd wow! @b0b", "2017 $5 5am 3rd wow! @b0b"),
    ],
)
def test_each_step_on_its_own(step, raw, expected):
    assert getattr(frontend, step)(raw) == expected


def test_the_confusables_fold_is_unicodes_table_in_mixed_script_words_only():
    table = confusables_table()
    # Unicode's data, not a short list: Cyrillic, Greek, Cherokee... each folded to one Latin letter.
    assert len(table) > 200 and all(len(v) == 1 and v.isascii() and v.isalpha() for v in table.values())
    assert table["\u0430"] == "a" and table["\u03bf"] == "o" and table["\u0406"] == "I"  # a capital stays one
    mixed = "\u0456d\u0456\u043et h\u0430te"  # іdіоt, hаte
    assert frontend.fold_confusables(mixed, table) == "idiot hate"
    russian = "\u0441\u043e\u0440 \u043f\u043e\u0440\u0430"  # сор пора: one script, looks Latin or not
    assert frontend.fold_confusables(russian, table) == russian


def test_the_shipped_table_is_the_generated_one():
    """data/confusables.json is what scripts/make_confusables.py writes from Unicode's data (the dev extra)."""
    pytest.importorskip("confusable_homoglyphs", reason="the dev extra's confusable-homoglyphs regenerates the table")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_confusables", REPO / "scripts" / "make_confusables.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.fold_table() == confusables_table()


def test_all_steps_on_undo_the_disguises_and_leave_normal_text_alone():
    assert {t: clean_text(t, ALL_ON) for t in DISGUISED} == DISGUISED
    assert [clean_text(t, ALL_ON) for t in NORMAL] == [clean_text(t, CleanConfig()) for t in NORMAL] == NORMAL


def test_off_by_default_and_out_of_the_fingerprints():
    assert not any(getattr(CleanConfig(), k) for k in CleanConfig.FRONTEND)
    assert set(CleanConfig.FRONTEND) == set(FRONTEND_STEPS)
    # A step that is off is not written: saved configs, model records and fingerprints are as before.
    assert not set(CleanConfig().model_dump()) & set(FRONTEND_STEPS)
    assert CleanConfig.model_validate(ALL_ON.model_dump()) == ALL_ON
    # The schema's defaults: the teacher's fingerprint pinned in tests/test_config.py, from before the front-end.
    assert Config().fingerprint() == "728ee54ead509477"
    assert Config(data={"clean": {"join_spelled": False}}).fingerprint() == "728ee54ead509477"
    assert Config(data={"clean": {"join_spelled": True}}).fingerprint() != "728ee54ead509477"
    assert load_config(DEFAULT_CONFIG).data.clean == ALL_ON  # adopted in the shipped config (docs/robustness.md)
    text = "h a t e  ｙｏｕ"
    assert frontend_text(text, CleanConfig()) == text and frontend_text(text, ALL_ON) == "hate you"


# ---------------------------------------------------------------- one answer on every path
@pytest.fixture(scope="module")
def front_folder(tmp_path_factory, tiny_model_dir):
    """The tiny model with the front-end recorded in its metadata, and the fold table beside it."""
    d = tmp_path_factory.mktemp("front") / "tiny-front"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "toxdistill.json").read_text())
    meta["clean"] = ALL_ON.model_dump()
    (d / "toxdistill.json").write_text(json.dumps(meta))
    write_frontend_files(d, ALL_ON)
    return d


@pytest.fixture(scope="module")
def reference(front_folder):
    """Probabilities of the disguised texts after the front-end, scored by the Predictor itself."""
    pred = Predictor.load(front_folder, threads=1)
    assert pred.clean_config == ALL_ON
    texts = list(DISGUISED)
    logits = pred.logits(pred.prepare(texts), batch_size=1)[0]
    # Not vacuous: without the front-end the same model answers otherwise.
    plain = pred.logits([clean_text(t, CleanConfig()) for t in texts], batch_size=1)[0]
    assert not np.allclose(logits, plain, atol=1e-4)
    return pred.probabilities(logits)


def _predict_csv(folder, tmp_path, capsys, *extra) -> np.ndarray:
    src, out = tmp_path / "in.csv", tmp_path / f"out{len(extra)}.csv"
    pd.DataFrame({"text": list(DISGUISED)}).to_csv(src, index=False)
    argv = ["predict", folder, src, "-o", out, "--batch-size", 1, "--threads", 1, "--progress", "off", *extra]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    df = pd.read_csv(out)
    return df[[c for c in df.columns if c.startswith("p_")]].to_numpy(float)


def test_predict_serve_and_the_cards_code_agree(front_folder, reference, tmp_path, capsys):
    np.testing.assert_allclose(_predict_csv(front_folder, tmp_path, capsys), reference, atol=1e-5)

    from fastapi.testclient import TestClient

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    models = load_models(front_folder, batch_wait_ms=None)
    try:
        client = TestClient(create_app(models), base_url="http://localhost")
        res = client.post("/api/classify", json={"texts": list(DISGUISED)}).json()["results"]
    finally:
        close_models(models)
    served = np.array([[r["probabilities"][n] for n in models_labels(front_folder)] for r in res])
    np.testing.assert_allclose(served, reference, atol=1e-5)

    clean = _card_clean(front_folder)
    assert [clean(t) for t in DISGUISED] == list(DISGUISED.values())
    pred = Predictor.load(front_folder, threads=1)
    card = pred.probabilities(pred.logits([clean(t) for t in DISGUISED], batch_size=1)[0])
    np.testing.assert_allclose(card, reference, atol=1e-6)


def models_labels(folder) -> list[str]:
    return json.loads((folder / "toxdistill.json").read_text())["label_names"]


def _card_clean(folder):
    """The model card's ``clean``, with the front-end code above it, executed as a user would run it."""
    meta = json.loads((folder / "toxdistill.json").read_text())
    meta["export"] = {"file": "model.onnx", "engine": "onnx"}
    facts = CardFacts(
        run_name="r", folder=str(folder), run_folder="runs/r", meta=meta, row={}, selection={}, bench={},
        teacher_row=None, teacher_model="t", data_source="file", data_name=None, label_names=models_labels(folder),
        focus_class="hate speech", split_sizes={}, test_support=[], seed=0, ci={}, n_boot=0,
    )  # fmt: skip
    lines = plain_snippet(facts).splitlines()
    start = lines.index("# The front-end (toxdistill's data/frontend.py, as it is).")
    end = lines.index("", lines.index("def clean(text):"))
    scope: dict = {}
    head = ["import html", "import json", "import re", "import unicodedata", "from pathlib import Path"]
    exec("\n".join([*head, f"folder = {str(folder)!r}", *lines[start:end]]), scope)  # noqa: S102 - our snippet
    return scope["clean"]
