"""`toxdistill check` end to end on a tiny run: every model under each perturbation, fidelity to the teacher,
files written, and the per-model cache that spares a second pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toxdistill.cli import main
from toxdistill.config import RobustnessConfig, load_config
from toxdistill.data.dataset import load_dataset
from toxdistill.data.perturb import HELDOUT_KINDS, perturb_texts
from toxdistill.data.split import make_or_load_split
from toxdistill.evaluation.robustness import flip_rate, heatmap_view
from toxdistill.files import CHAR_PERTURBATIONS
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
    # odd trained with consistency training on leetspeak alone: every other kind is held out from it.
    meta = json.loads((r / "models" / "odd" / "toxdistill.json").read_text())
    meta["stage"] = {"kind": "distill", "layers": "odd", "train": {"perturb": 0.5, "perturb_kinds": ["leet"]}}
    (r / "models" / "odd" / "toxdistill.json").write_text(json.dumps(meta))
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


def test_seen_and_held_out_kinds_are_reported_apart(run):
    result = check.check_run(run, kinds=["leet", "separators", "case"], plot=False)
    assert result["trained_kinds"] == {"teacher": [], "odd": ["leet"]}
    odd = result["held_out"]["odd"]
    assert odd["seen"]["kinds"] == ["leet"] and odd["seen"]["mean"] == result["models"]["odd"]["leet"]["drop_f1_macro"]
    # case never reaches an uncased model: out of the means, named as such
    assert odd["held_out"]["kinds"] == ["separators"] and odd["invisible"] == ["case"]
    assert odd["held_out_family"]["worst"] == result["models"]["odd"]["separators"]["drop_f1_macro"]
    teacher = result["held_out"]["teacher"]
    assert teacher["seen"] is None and teacher["held_out"]["kinds"] == ["leet", "separators"]
    assert result["kinds"]["separators"]["family"] == "held-out" and result["kinds"]["leet"]["family"] == "training"
    labels = heatmap_view(result)["models"]
    assert set(labels["odd (trained on 1 kind)"]) == {
        "leet (trained: 1 of 2)",
        "separators† (held out)",
        "case (held out)",
    }
    assert "teacher (trained on none)" in labels


def test_zero_width_rows_an_uncased_bert_tokenizer_strips_keep_the_clean_logits(run):
    check.check_run(run, RobustnessConfig(seed=3), kinds=["zero-width"], plot=False)
    with np.load(run / "robustness" / "odd.npz") as z:
        assert np.array_equal(z["k_zero-width"], z["clean"])  # its normalizer drops Unicode category Cf


def _write_meta(root, name, **meta):
    (root / name).mkdir()
    (root / name / "toxdistill.json").write_text(json.dumps(meta))
    return root / name


def test_trained_kinds_follow_the_recorded_stage_and_the_weights_it_starts_from(tmp_path):
    on = {"perturb": 0.5, "perturb_kinds": None}
    found = {
        "teacher": _write_meta(
            tmp_path, "teacher", kind="teacher", stage={"train": {**on, "perturb_kinds": ["mixed"]}}
        ),
        "even": _write_meta(tmp_path, "even", kind="student", stage={"kind": "distill", "layers": "even", "train": on}),
        "aug": _write_meta(
            tmp_path,
            "aug",
            kind="student",
            student_model="other/model",  # its own pretrained model: nothing of the teacher's
            stage={
                "kind": "distill",
                "layers": [1],
                "train": {"perturb": 0, "perturb_kinds": ["spaces"]},
                "distill": {"augment": 2},
            },
        ),
        "dl": _write_meta(
            tmp_path, "dl", kind="lora", stage={"kind": "distill-lora", "base": "aug", "train": {"perturb": 0}}
        ),
        "lora": _write_meta(tmp_path, "lora", kind="lora", stage={"kind": "lora", "base": "pretrained", "train": on}),
        "tfidf-lr": _write_meta(tmp_path, "tfidf-lr", kind="baseline"),
    }
    kinds = {n: check.trained_kinds(d, found, "teacher") for n, d in found.items()}
    assert kinds["teacher"] == ["mixed"]
    assert kinds["even"] == [*CHAR_PERTURBATIONS, "mixed"]  # the trainer's default, and the teacher it was cut from
    assert kinds["aug"] == ["spaces"] and kinds["dl"] == ["spaces"]
    assert kinds["lora"] == list(CHAR_PERTURBATIONS) and kinds["tfidf-lr"] == []
    assert not set(HELDOUT_KINDS) & set(kinds["even"][:-1])


def test_the_command_checks_the_held_out_family_by_its_group_name(run, capsys):
    assert main(["check", str(run), "--kinds", "held-out,leet", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "Seen in training against held out" in out and "separators†" in out
    assert all(f"{k}†" in out for k in HELDOUT_KINDS)
    odd_row = next(line for line in out.splitlines() if line.startswith("| odd | ") and "*" in line)
    assert odd_row.count("*") == 1  # leet, the one kind odd trained on
    assert main(["check", str(run), "--kinds", "held-out,l33t"]) != 0
