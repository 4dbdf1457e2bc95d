"""`toxdistill check` end to end on a tiny run: every model under each perturbation, fidelity to the teacher,
files written, and the per-model cache that spares a second pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toxdistill.cli import main
from toxdistill.config import RobustnessConfig, load_config
from toxdistill.data.dataset import load_dataset
from toxdistill.data.perturb import perturb_texts
from toxdistill.data.split import make_or_load_split
from toxdistill.evaluation.robustness import flip_rate
from toxdistill.pipeline import check

from conftest import make_tiny_run

WORDS = ["hate", "those", "people", "love", "flowers", "awful", "terrible", "weather", "lovely", "friends"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("check")
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, size=6)) for _ in range(90)]
    data = root / "data.csv"
    data.write_text("tweet,class\n" + "\n".join(f"{t},{i % 3}" for i, t in enumerate(rows)) + "\n")
    r = make_tiny_run(root, tokenizer, names=("teacher", "odd"))
    (r / "config.yaml").write_text(f"name: tiny-run\ndata: {{source: file, path: {data}, sha256: null}}\n")
    cfg = load_config(r / "config.yaml")
    make_or_load_split(load_dataset(data, cfg.data), r / "split.json", cfg.data, cfg.seed)
    return r


def test_check_scores_every_model_and_kind_with_fidelity(run):
    result = check.check_run(run, RobustnessConfig(kinds=["leet", "case"]), plot=False)
    assert set(result["models"]) == {"teacher", "odd"} and result["teacher"] == "teacher"
    assert set(result["models"]["odd"]) == {"leet", "case"}
    assert "agreement" in result["models"]["odd"]["leet"] and "agreement" not in result["models"]["teacher"]["leet"]
    assert 0.0 <= result["clean"]["odd"]["agreement"] <= 1.0
    assert result["kinds"]["leet"]["changed"] > 0.5  # every row has 4+-letter words to disguise
    saved = json.loads((run / "robustness.json").read_text())
    assert saved["models"]["odd"]["leet"]["flip_rate"] == result["models"]["odd"]["leet"]["flip_rate"]
    # The flip rate is what the cached logits say it is.
    with np.load(run / "robustness" / "odd.npz") as z:
        assert result["models"]["odd"]["leet"]["flip_rate"] == pytest.approx(flip_rate(z["clean"], z["k_leet"]))


def test_rows_an_uncased_tokenizer_cannot_tell_apart_keep_the_clean_logits(run, monkeypatch):
    scored: list[str] = []
    real = check.load_scorer

    def recording(*a, **k):
        scorer = real(*a, **k)
        logits = scorer.logits
        scorer.logits = lambda texts, *b, **c: scored.extend(texts) or logits(texts, *b, **c)
        return scorer

    monkeypatch.setattr(check, "load_scorer", recording)
    settings = RobustnessConfig(kinds=["case", "leet"], seed=11)
    result = check.check_run(run, settings, plot=False)
    test = check.load_run_split(run, None).test
    labels = [int(y) for y in test.labels]
    cased = perturb_texts(list(test.texts), "case", 11, 0, labels, None, settings.n_words)
    leet = perturb_texts(list(test.texts), "leet", 11, 0, labels, None, settings.n_words)
    assert result["kinds"]["case"]["changed"] > 0.5  # the texts changed; their lower-cased ids did not
    assert not (set(cased) - set(test.texts)) & set(scored)  # so no case-perturbed row was scored
    assert set(leet) - set(test.texts) <= set(scored)
    with np.load(run / "robustness" / "odd.npz") as z:
        assert np.array_equal(z["k_case"], z["clean"]) and not np.array_equal(z["k_leet"], z["clean"])


def test_the_tfidf_floor_compares_texts():
    clean, texts = ["Hate them", "love it"], ["hate them", "love it"]
    assert check._changed_rows(clean, texts).tolist() == [True, False]


def test_a_second_check_reads_the_cache_and_loads_no_model(run, monkeypatch):
    first = check.check_run(run, RobustnessConfig(kinds=["leet", "case"]), plot=False)

    def no_loading(*a, **k):
        raise AssertionError("a cached model was loaded again")

    monkeypatch.setattr(check, "load_scorer", no_loading)
    assert check.check_run(run, RobustnessConfig(kinds=["leet", "case"]), plot=False) == first


def test_a_changed_seed_scores_again(run, monkeypatch):
    loaded = []
    real = check.load_scorer
    monkeypatch.setattr(check, "load_scorer", lambda *a, **k: loaded.append(a[0]) or real(*a, **k))
    check.check_run(run, RobustnessConfig(kinds=["leet"], seed=7), plot=False)
    assert len(loaded) == 2


def test_the_command_prints_the_tables_and_writes_the_validation_files(run, capsys):
    code = main(["check", str(run), "--kinds", "spaces", "--split", "val", "--no-plot"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| odd |" in out and "Validation split" in out and "Fidelity to the teacher" in out
    assert json.loads((run / "robustness-val.json").read_text())["split"] == "val"
