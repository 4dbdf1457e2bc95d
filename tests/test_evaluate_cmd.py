"""`toxdistill evaluate`: known answers on tiny models, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toxdistill.cli import main
from toxdistill.config import CleanConfig
from toxdistill.data.dataset import Dataset, clean_text

from conftest import LABELS, make_tiny_run

TEXTS = [
    "you are a wonderful person",
    "I hate all of you so much, get out of this country",
    "this is trash and so are you",
    "what a lovely day at the beach with my family",
    "lol",
    "@someone check http://t.co/abc this &amp; that",
    "nobody asked for your opinion idiot",
    "great game last night, well played",
    "go back to where you came from",
    "I love this song so much",
    "shut up you stupid clown",
    "thanks for the help yesterday",
]
# Three kinds of label: one that any class satisfies, one mapped to a single class chosen from the
# teacher's own answers, and one that is a model class name and needs no --map.
LABEL_COL = ["x", "x", "x", "x", "y", "y", "y", "y", "offensive", "offensive", "offensive", "offensive"]
GROUPS = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", None]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer) -> Path:
    from toxdistill.models.baseline import TfidfLR

    run = make_tiny_run(tmp_path_factory.mktemp("evalrun"), tokenizer, names=("teacher", "odd"))
    # Big offsets on "odd": its tuned decision is always "hate speech", its argmax is not.
    meta_file = run / "models" / "odd" / "toxdistill.json"
    meta = json.loads(meta_file.read_text())
    meta["calibration"] = {"temperature": 2.0, "offsets": [50.0, 0.0, 0.0]}
    meta_file.write_text(json.dumps(meta))
    train_texts = [t for t in TEXTS for _ in range(2)] + ["you you you", "love love love"] * 3
    labels = np.arange(len(train_texts)) % 3
    ds = Dataset(np.arange(len(train_texts)), train_texts, labels, LABELS, "0")
    d = run / "models" / "tfidf-lr"
    TfidfLR(LABELS).fit(ds).save(d)
    (d / "toxdistill.json").write_text(
        json.dumps(
            {
                "name": "tfidf-lr",
                "kind": "baseline",
                "label_names": LABELS,
                "calibration": {"temperature": 1.0, "offsets": [0.0, 0.0, 0.0]},
            }
        )
    )
    return run


@pytest.fixture(scope="module")
def expected(run) -> dict[str, dict[str, np.ndarray]]:
    """Tuned and argmax class ids per model, computed independently of the command."""
    from toxdistill.inference.predict import Predictor
    from toxdistill.models.baseline import TfidfLR

    cleaned = [clean_text(t, CleanConfig()) for t in TEXTS]
    out = {}
    for name in ("teacher", "odd"):
        p = Predictor.load(run / "models" / name)
        logits, _ = p.logits(cleaned)
        out[name] = {"tuned": p.decide(logits), "argmax": logits.argmax(-1)}
    logits, _ = TfidfLR.load(run / "models" / "tfidf-lr").logits(cleaned)
    out["tfidf-lr"] = {"tuned": logits.argmax(-1), "argmax": logits.argmax(-1)}
    return out


@pytest.fixture(scope="module")
def y_class(expected) -> int:
    return int(expected["teacher"]["tuned"][4])


def _data(tmp_path: Path, suffix: str = ".csv", **cols) -> Path:
    df = pd.DataFrame({"text": TEXTS, "label": LABEL_COL, "group": GROUPS, **cols})
    f = tmp_path / f"ext{suffix}"
    if suffix == ".csv":
        df.to_csv(f, index=False)
    else:
        df.to_json(f, orient="records", lines=True)
    return f


def _accuracy(pred: np.ndarray, y_class: int, rows: np.ndarray | None = None) -> tuple[float, dict[str, float]]:
    """The answer by hand: 'x' always right, 'y' right when y_class, 'offensive' right when class 1."""
    rows = np.arange(len(TEXTS)) if rows is None else rows
    lab = np.asarray(LABEL_COL)[rows]
    pred = np.asarray(pred)[rows]
    ok = np.where(lab == "x", True, np.where(lab == "y", pred == y_class, pred == 1))
    recall = {k: float(ok[lab == k].mean()) for k in ("x", "y", "offensive") if (lab == k).any()}
    return float(ok.mean()), recall


def _cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip().splitlines()


def test_evaluate_known_answers(run, expected, y_class, tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "res.json"
    argv = ["evaluate", str(run), "--data", str(data), "--map", "x=hate speech, offensive,neither"]
    argv += ["--map", f"y={LABELS[y_class]}", "--group-col", "group", "-o", str(out), "--n-boot", "200"]
    code, stdout, err = _cli(argv, capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"teacher", "odd", "tfidf-lr"}
    assert res["label_map"] == {"x": LABELS, "y": [LABELS[y_class]], "offensive": ["offensive"]}
    assert res["label_counts"] == {"x": 4, "y": 4, "offensive": 4}
    assert res["data"]["rows"] == 12 and res["data"]["dropped_rows"] == 0
    for name, exp in expected.items():
        m = res["models"][name]
        for how in ("tuned", "argmax"):
            acc, recall = _accuracy(exp[how], y_class)
            assert m[how]["accuracy"] == pytest.approx(acc), (name, how)
            assert m[how]["recall"] == pytest.approx(recall), (name, how)
            assert m[how]["balanced_accuracy"] == pytest.approx(np.mean(list(recall.values())))
            lo, hi = m[how]["accuracy_ci"]
            assert lo <= acc <= hi
            counts = np.bincount(exp[how], minlength=3)
            assert m[how]["predicted"] == {n: int(c) for n, c in zip(LABELS, counts)}
        groups = m["tuned"]["groups"]
        assert set(groups) == {"a", "b", "(missing)"}
        g = np.asarray(GROUPS, dtype=object)
        for value, rows in (("a", np.flatnonzero(g == "a")), ("(missing)", np.flatnonzero(g == None))):  # noqa: E711
            acc, recall = _accuracy(exp["tuned"], y_class, rows)
            assert groups[value]["n"] == len(rows)
            assert groups[value]["accuracy"] == pytest.approx(acc)
            assert groups[value]["recall"] == pytest.approx(recall)
    # The tuned decision used the saved offsets: "odd" answers "hate speech" everywhere.
    assert res["models"]["odd"]["tuned"]["predicted"] == {"hate speech": 12, "offensive": 0, "neither": 0}
    assert res["models"]["teacher"]["tuned"]["accuracy"] >= 7 / 12
    # The printed table names every model and label.
    assert "recall x" in stdout and "recall offensive" in stdout and "by 'group'" in stdout
    for name in expected:
        assert name in stdout
    assert str(out) in stdout


def test_evaluate_default_output_jsonl_and_model_subset(run, expected, y_class, tmp_path, capsys):
    data = _data(tmp_path, ".jsonl")
    argv = ["evaluate", str(run), "--data", str(data), "--models", "teacher", "--map", "x=*"]
    argv += ["--map", f"y={y_class}", "--n-boot", "0", "--threads", "1"]
    code, _, err = _cli(argv, capsys)
    assert code == 0, err
    res = json.loads((run / "external-ext.json").read_text())
    assert list(res["models"]) == ["teacher"]
    assert res["models"]["teacher"]["tuned"]["accuracy"] == pytest.approx(
        _accuracy(expected["teacher"]["tuned"], y_class)[0]
    )
    assert "accuracy_ci" not in res["models"]["teacher"]["tuned"]
    assert "groups" not in res["models"]["teacher"]["tuned"]


def test_rows_without_text_are_skipped(run, tmp_path, capsys):
    f = tmp_path / "gaps.csv"
    f.write_text("text,label\nhello there,offensive\n,offensive\n   ,neither\nbye now,2\n")
    out = tmp_path / "gaps.json"
    code, _, err = _cli(["evaluate", str(run), "--data", str(f), "--models", "tfidf-lr", "-o", str(out)], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["data"]["rows"] == 2 and res["data"]["dropped_rows"] == 2
    # Labels given as a class name and as a class id both map to themselves.
    assert res["label_map"] == {"offensive": ["offensive"], "2": ["neither"]}


BAD = {
    "unmapped label": (["--map", "x=*"], "label 'y' not mapped", "--map 'y=CLASS"),
    "unknown class in --map": (["--map", "x=hateful"], "'hateful' is not a model class", "hate speech, offensive"),
    "malformed --map": (["--map", "x"], "is not LABEL=CLASS", "--map"),
    "empty class list": (["--map", "x=a,,b"], "is not LABEL=CLASS", "--map"),
    "label mapped twice": (["--map", "x=*", "--map", "x=0"], "twice", ""),
    "missing text column": (["--map", "x=*", "--text-col", "tweet"], "no column 'tweet'", "--text-col"),
    "missing group column": (["--map", "x=*", "--group-col", "nope"], "no column 'nope'", "--group-col"),
    "unknown model": (["--map", "x=*", "--models", "teacher,nosuch"], "no model named nosuch", "pick from"),
    "bad threads": (["--map", "x=*", "--threads", "0"], "--threads 0", "at least 1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_evaluate_bad_input(case, run, tmp_path, capsys):
    args, msg, fix = BAD[case]
    code, out, err = _cli(["evaluate", str(run), "--data", str(_data(tmp_path)), *args], capsys)
    assert code == 2, (out, err)
    assert len(err) == 1 and err[0].startswith("toxdistill: error:"), err
    assert msg in err[0] and fix in err[0]
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("content", ["", "   \n"])
def test_evaluate_empty_file(content, run, tmp_path, capsys):
    f = tmp_path / "empty.csv"
    f.write_text(content)
    code, _, err = _cli(["evaluate", str(run), "--data", str(f), "--map", "x=*"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("toxdistill: error:")
    assert "empty" in err[0]


def test_evaluate_header_only_and_missing_file(run, tmp_path, capsys):
    f = tmp_path / "header.csv"
    f.write_text("text,label\n")
    code, _, err = _cli(["evaluate", str(run), "--data", str(f)], capsys)
    assert code == 2 and len(err) == 1 and "no rows" in err[0]
    code, _, err = _cli(["evaluate", str(run), "--data", str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and len(err) == 1 and "not found" in err[0]


def test_evaluate_run_without_models(tmp_path, capsys):
    (tmp_path / "r" / "models" / "half").mkdir(parents=True)
    data = _data(tmp_path)
    code, _, err = _cli(["evaluate", str(tmp_path / "r"), "--data", str(data), "--map", "x=*"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("toxdistill: error:")
    assert "no models" in err[0]
    code, _, err = _cli(["evaluate", str(tmp_path / "missing"), "--data", str(data)], capsys)
    assert code == 2 and len(err) == 1 and "run folder not found" in err[0]
