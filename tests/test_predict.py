"""The Predictor (ordering, truncation, cleaning) and ``toxdistill predict`` (formats, streaming, errors)."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toxdistill.cli import main
from toxdistill.inference.predict import Predictor

from conftest import LABELS, SAMPLE_TEXTS

PRED_COLS = ["label", "label_id", "p_hate_speech", "p_offensive", "p_neither", "truncated"]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _texts(n: int = 37) -> list[str]:
    rng = np.random.default_rng(1)
    words = ["you", "are", "so", "great", "stupid", "people", "hate", "this", "day", "lol", "love", "it", "trash"]
    return [" ".join(rng.choice(words, rng.integers(1, 25))) for _ in range(n)] + SAMPLE_TEXTS


@pytest.fixture(scope="module")
def pred(tiny_model_dir):
    return Predictor.load(tiny_model_dir, backend="torch")


# ------------------------------------------------------------------ Predictor
def test_length_sorting_keeps_input_order(pred):
    texts = _texts()
    sorted_logits, sorted_trunc = pred.logits(texts, batch_size=8, sort=True)
    plain_logits, plain_trunc = pred.logits(texts, batch_size=8, sort=False)
    one_by_one = np.concatenate([pred.logits([t], batch_size=1)[0] for t in texts])
    np.testing.assert_allclose(sorted_logits, plain_logits, atol=1e-5)
    np.testing.assert_allclose(sorted_logits, one_by_one, atol=1e-5)
    assert (sorted_trunc == plain_trunc).all()
    # Reversing the input reverses the output: rows follow their texts, not the batch order.
    rev, _ = pred.logits(texts[::-1], batch_size=8)
    np.testing.assert_allclose(rev[::-1], sorted_logits, atol=1e-5)


def test_truncation_is_flagged(pred):
    logits, truncated = pred.logits(["short", "word " * 500, "also short"])
    assert truncated.tolist() == [False, True, False]
    assert pred.max_length == 64 and logits.shape == (3, 3)
    assert pred.logits([])[0].shape == (0, 3)


def _many(n: int = 300) -> list[str]:
    """More texts than one chunk at batch 4 (``PIPELINE_BATCHES`` × 4), some cut to the model's window."""
    return _texts(n)[: n - 2] + ["word " * 200, "another long one " * 40]


class WidthBackend:
    """Logits that depend on the whole batch (its padded width) as well as the row: equal outputs mean equal
    batches. Records every batch's width per row."""

    name = "fake"

    def __init__(self):
        self.widths: list[int] = []

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        self.widths += [ids.shape[1]] * len(ids)
        return np.stack([(ids * mask).sum(1), mask.sum(1), np.full(len(ids), ids.shape[1])], 1).astype(np.float32)


@pytest.mark.parametrize("sort", [True, False])
def test_overlapped_tokenizing_gives_the_sequential_results(pred, sort, monkeypatch):
    import threading

    from toxdistill.inference.predict import PIPELINE_BATCHES, pipeline_chunks

    texts = _many()
    chunks = pipeline_chunks(texts, 4, sort)
    assert len(chunks) == -(-len(texts) // (4 * PIPELINE_BATCHES)) > 2
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(texts)))
    if sort:  # by character length: each chunk's texts are no longer than the next chunk's
        chars = [[len(texts[i]) for i in c] for c in chunks]
        assert all(max(a) <= min(b) for a, b in zip(chars, chars[1:]))
    fake = Predictor(WidthBackend(), pred.tokenizer, LABELS, pred.max_length)
    threads: list[str] = []
    encode = Predictor.encode

    def spy(self, chunk):
        threads.append(threading.current_thread().name)
        return encode(self, chunk)

    monkeypatch.setattr(Predictor, "encode", spy)
    fake.overlap = False
    seq, seq_cut = fake.logits(texts, batch_size=4, sort=sort)
    assert set(threads) == {threading.current_thread().name}
    threads.clear()
    fake.overlap = True
    fake.reset_timings()
    got, cut = fake.logits(texts, batch_size=4, sort=sort)
    # Every chunk is tokenized on the worker, ahead of the model: the same batches, so the same outputs.
    assert len(threads) == len(chunks) and all(t.startswith("tokenize") for t in threads)
    np.testing.assert_array_equal(got, seq)
    assert (cut == seq_cut).all() and cut[-2:].all() and not cut[:-2].any()
    ids, _ = fake.encode(texts)
    np.testing.assert_array_equal(got[:, 1], [len(x) for x in ids])  # each row is its own text's, in input order
    # The phases are the caller's time and add up; tokenizing hidden behind the model is counted apart.
    tm = fake.timings
    assert sum(tm[k] for k in ("tokenize", "batching", "model", "other")) == pytest.approx(tm["total"])
    assert tm["tokenize"] > 0 and fake.tokenize_hidden >= 0
    fake.reset_timings()
    assert fake.tokenize_hidden == 0 and fake.timings["total"] == 0


def test_a_small_batch_is_cut_where_padding_costs_more_than_a_pass():
    from toxdistill.inference.predict import PASS_COST_TOKENS, SPLIT_MAX_TEXTS, length_batches

    short, long = [8] * 10, [60] * 6
    cuts = length_batches(short + long, 64)
    assert cuts == [(0, 10), (10, 16)]  # 10 short texts padded to 60 would waste 520 tokens, a pass costs less
    assert length_batches([20] * 12 + [21], 64) == [(0, 13)]  # one more token each costs less than a pass
    assert length_batches([5, 6, 7, 30], 2) == [(0, 2), (2, 4)]  # more than a batch: fixed slices
    for lengths in ([3], [4, 9, 9, 17, 25, 25, 26, 40, 58], list(range(1, SPLIT_MAX_TEXTS + 1))):
        cuts = length_batches(lengths, 64)
        assert cuts[0][0] == 0 and cuts[-1][1] == len(lengths)
        assert all(a < e and e == a2 for (a, e), (a2, _) in zip(cuts, cuts[1:]))
        cost = sum(PASS_COST_TOKENS + (e - a) * lengths[e - 1] for a, e in cuts)
        assert cost <= PASS_COST_TOKENS + len(lengths) * lengths[-1]  # never worse than one padded batch


def test_a_small_request_runs_as_length_batches_with_the_same_results(pred):
    texts = ["lol"] * 6 + ["you are so great and i love this day " * 5] * 3
    ids, _ = pred.encode(texts)
    backend = WidthBackend()
    fake = Predictor(backend, pred.tokenizer, LABELS, pred.max_length)
    got, _ = fake.logits(texts, 64)
    assert sorted(set(backend.widths)) == [len(ids[0]), len(ids[-1])]  # two passes, each at its own width
    np.testing.assert_array_equal(got[:, 1], [len(x) for x in ids])  # rows in input order
    one_pass, _ = pred.logits(texts, 64, sort=False)
    np.testing.assert_allclose(pred.logits(texts, 64)[0], one_pass, atol=1e-5)


class SleepBackend(WidthBackend):
    """A pass takes ``fixed`` seconds plus ``per_token`` for each padded token: its pass cost is their ratio."""

    def __init__(self, fixed: float, per_token: float):
        super().__init__()
        self.fixed, self.per_token = fixed, per_token

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        time.sleep(self.fixed + self.per_token * batch["input_ids"].size)
        return super().__call__(batch)


def test_a_measured_pass_cost_decides_where_a_small_batch_is_cut(pred):
    texts = ["lol"] * 6 + ["you are so great and i love this day " * 5] * 3
    ids, _ = pred.encode(texts)
    waste = 6 * (len(ids[-1]) - len(ids[0]))  # padding the short texts to the long ones' width
    costly = SleepBackend(fixed=0.005, per_token=0.00001)  # a pass costs as much as 500 tokens
    p = Predictor(costly, pred.tokenizer, LABELS, pred.max_length)
    assert p.pass_cost_tokens < waste  # the default cuts this request in two
    assert 350 < p.measure_pass_cost() < 650 and p.pass_cost_tokens > waste
    costly.widths.clear()
    got, _ = p.logits(texts, 64)
    assert set(costly.widths) == {len(ids[-1])}  # one pass: padding costs less than another pass here
    np.testing.assert_array_equal(got[:, 1], [len(x) for x in ids])
    cheap = SleepBackend(fixed=0.0, per_token=0.00002)
    q = Predictor(cheap, pred.tokenizer, LABELS, pred.max_length)
    assert q.measure_pass_cost() < 60
    cheap.widths.clear()
    q.logits(texts, 64)
    assert sorted(set(cheap.widths)) == [len(ids[0]), len(ids[-1])]


def test_an_engine_that_wants_wider_batches_gets_them_masked_and_capped(pred):
    texts = _texts()
    ids, _ = pred.encode(texts)
    plain = Predictor(WidthBackend(), pred.tokenizer, LABELS, pred.max_length).logits(texts, 8)[0]
    wide_backend = WidthBackend()
    wide_backend.pad_multiple = 24  # 64 (max_length) is no multiple: the last step stops there
    wide = Predictor(wide_backend, pred.tokenizer, LABELS, pred.max_length)
    got, _ = wide.logits(texts, 8)
    np.testing.assert_array_equal(got[:, :2], plain[:, :2])  # the same tokens, the extra ones masked
    assert set(wide_backend.widths) <= {24, 48, pred.max_length} and max(len(x) for x in ids) > 48
    assert (got[:, 2] >= plain[:, 2]).all() and (got[:, 2] > plain[:, 2]).any()
    left = Predictor(WidthBackend(), pred.tokenizer, LABELS, pred.max_length)
    left.backend.pad_multiple = 8
    batch = left.batch_inputs([[5, 6, 7]])
    assert batch["input_ids"].shape == (1, 8) and batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 5
    pred.tokenizer.padding_side, side = "left", pred.tokenizer.padding_side
    try:
        batch = left.batch_inputs([[5, 6, 7]])
    finally:
        pred.tokenizer.padding_side = side
    assert batch["attention_mask"][0].tolist() == [0] * 5 + [1, 1, 1]
    assert batch["input_ids"][0, -3:].tolist() == [5, 6, 7]


def test_the_bench_counts_the_padding_of_the_predictors_batches(pred):
    from toxdistill.benchmark.bench import padded_lengths

    texts = _many()
    ids, _ = pred.encode(texts)
    lengths = np.array([len(x) for x in ids])
    for sort in (True, False):
        backend = WidthBackend()
        logits, _ = Predictor(backend, pred.tokenizer, LABELS, pred.max_length).logits(texts, 4, sort=sort)
        np.testing.assert_array_equal(logits[:, 2], padded_lengths(lengths, 4, sort, texts))
        assert sorted(backend.widths) == sorted(logits[:, 2].tolist())
    small = texts[:40]  # one batch's worth at 64: cut by length
    logits, _ = Predictor(WidthBackend(), pred.tokenizer, LABELS, pred.max_length).logits(small, 64)
    np.testing.assert_array_equal(logits[:, 2], padded_lengths(lengths[:40], 64, True, small))
    assert len(set(logits[:, 2].tolist())) > 1


def test_classify_uses_calibration(tiny_model_dir, tmp_path):
    """A saved temperature, bias and offsets change what classify returns, exactly as Calibration says."""
    import shutil

    from toxdistill.evaluation.logits import softmax
    from toxdistill.inference.calibration import Calibration

    d = tmp_path / "calibrated"
    shutil.copytree(tiny_model_dir, d)
    texts = ["hello there", "you are trash", "lol"]
    raw, _ = Predictor.load(d, backend="torch").logits(texts)
    cal = {"temperature": 0.25, "bias": [0.2, 0.0, -0.2], "offsets": [0.0, 0.0, 50.0]}  # every decision: class 2
    meta = json.loads((d / "toxdistill.json").read_text()) | {"calibration": cal}
    (d / "toxdistill.json").write_text(json.dumps(meta))
    out = Predictor.load(d, backend="torch").classify(texts)
    assert [set(o) for o in out] == [{"label", "label_id", "probabilities", "truncated"}] * 3
    want = softmax(raw / 0.25 + np.array(cal["bias"]))
    got = np.array([[o["probabilities"][n] for n in LABELS] for o in out])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, softmax(raw), atol=1e-3)  # the calibration did change the probabilities
    assert [o["label_id"] for o in out] == [2, 2, 2]
    np.testing.assert_allclose(got, Calibration.from_meta(meta).probabilities(raw), atol=1e-6)


def test_prepare_cleans_like_the_run(tiny_run, tiny_model_dir):
    in_run = Predictor.load(tiny_run / "models" / "odd", backend="torch")
    assert in_run.prepare(["@bob look &amp; see https://t.co/x"]) == ["@user look & see http"]
    alone = Predictor.load(tiny_model_dir, backend="torch")  # no run config: texts as given
    assert alone.prepare(["@bob"]) == ["@bob"]


def test_unknown_backend_and_missing_onnx(tiny_model_dir):
    from toxdistill.errors import ToxdistillError

    with pytest.raises(ToxdistillError, match="use auto, torch, onnx, openvino"):
        Predictor.load(tiny_model_dir, backend="tpu")
    with pytest.raises(ToxdistillError, match="no .onnx"):
        Predictor.load(tiny_model_dir, backend="onnx")


# ------------------------------------------------------------------ predict: formats
@pytest.fixture
def inputs(tmp_path):
    texts = _texts(25)
    d = tmp_path / "in"
    d.mkdir()
    pd.DataFrame({"id": [f"{i:03d}" for i in range(len(texts))], "tweet": texts, "extra": "NA"}).to_csv(
        d / "a.csv", index=False
    )
    (d / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    (d / "a.txt").write_text("\n".join(texts) + "\n\n")
    return d, texts


def test_predict_csv_keeps_columns_and_order(tiny_model_dir, inputs, tmp_path, capsys, pred):
    d, texts = inputs
    out = tmp_path / "out.csv"
    code, _, err = _run(["predict", tiny_model_dir, d / "a.csv", "-o", out], capsys)
    assert code == 0, err
    df = pd.read_csv(out, dtype={"id": str}, keep_default_na=False)
    assert list(df.columns) == ["id", "tweet", "extra", *PRED_COLS]
    assert df["id"].tolist() == [f"{i:03d}" for i in range(len(texts))]  # values kept as written
    assert df["tweet"].tolist() == texts and (df["extra"] == "NA").all()
    logits, trunc = pred.logits(texts)
    assert df["label_id"].tolist() == pred.decide(logits).tolist()
    np.testing.assert_allclose(df[PRED_COLS[2:5]].to_numpy(), pred.probabilities(logits), atol=2e-6)
    assert df["truncated"].tolist() == trunc.tolist()
    assert set(df["label"]) <= set(LABELS)
    assert "wrote 31 predictions" in err


def test_chunked_equals_one_shot(tiny_model_dir, inputs, tmp_path, capsys):
    d, _ = inputs
    outs = []
    for chunk in (1, 4, 1000):
        out = tmp_path / f"out{chunk}.csv"
        assert (
            _run(["predict", tiny_model_dir, d / "a.csv", "-o", out, "--chunk-size", chunk, "--batch-size", 3], capsys)[
                0
            ]
            == 0
        )
        outs.append(pd.read_csv(out))
    for other in outs[1:]:
        assert other.drop(columns=PRED_COLS[2:5]).equals(outs[0].drop(columns=PRED_COLS[2:5]))
        np.testing.assert_allclose(other[PRED_COLS[2:5]], outs[0][PRED_COLS[2:5]], atol=1e-5)


@pytest.mark.parametrize(
    "src,out_name", [("a.jsonl", "o.jsonl"), ("a.txt", "o.csv"), ("a.jsonl", "o.csv"), ("a.txt", "o.jsonl")]
)
def test_predict_jsonl_and_text(tiny_model_dir, inputs, tmp_path, capsys, src, out_name):
    d, texts = inputs
    out = tmp_path / out_name
    code, _, err = _run(["predict", tiny_model_dir, d / src, "-o", out, "--chunk-size", 7], capsys)
    assert code == 0, err
    df = pd.read_json(out, lines=True, dtype=False) if out_name.endswith(".jsonl") else pd.read_csv(out)
    assert df["text"].tolist() == texts and len(df) == len(texts)  # blank lines of the .txt skipped
    assert set(PRED_COLS) <= set(df.columns)
    if src.endswith(".jsonl"):
        assert df["id"].tolist() == list(range(len(texts)))


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_predict_stdin(tiny_model_dir, inputs, tmp_path, capsys, monkeypatch, fmt):
    d, texts = inputs
    src = {"txt": "a.txt", "jsonl": "a.jsonl", "csv": "a.csv"}[fmt]
    monkeypatch.setattr("sys.stdin", io.StringIO((d / src).read_text()))
    out = tmp_path / "stdin.csv"
    extra = ["--text-col", "tweet"] if fmt == "csv" else []  # CSV on stdin: --text-col says it is CSV
    code, _, err = _run(["predict", tiny_model_dir, "-", "-o", out, *extra], capsys)
    assert code == 0, err
    df = pd.read_csv(out)
    assert df[("tweet" if fmt == "csv" else "text")].tolist() == texts


def test_predict_text_col_and_name_clash(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "gold.csv"
    pd.DataFrame({"comment": ["you are nice", "you are trash"], "label": ["neither", "offensive"]}).to_csv(
        src, index=False
    )
    out = tmp_path / "o.csv"
    code, _, err = _run(["predict", tiny_model_dir, src, "-o", out, "--text-col", "comment"], capsys)
    assert code == 0, err
    df = pd.read_csv(out)
    assert df["label"].tolist() == ["neither", "offensive"]  # the input's gold labels are kept
    assert {"pred_label", "pred_label_id", "pred_p_offensive"} <= set(df.columns)


def test_predict_with_onnx_export(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    exp = tmp_path / "exp"
    assert _run(["export", tiny_model_dir, "-o", exp], capsys)[0] == 0
    src = tmp_path / "t.txt"
    src.write_text("\n".join(SAMPLE_TEXTS))
    a, b = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    assert _run(["predict", tiny_model_dir, src, "-o", a], capsys)[0] == 0
    code, _, err = _run(["predict", exp, src, "-o", b, "--threads", 1], capsys)
    assert code == 0 and "onnx backend" in err
    ta, tb = pd.read_csv(a), pd.read_csv(b)
    assert ta["label"].tolist() == tb["label"].tolist()
    np.testing.assert_allclose(ta[PRED_COLS[2:5]], tb[PRED_COLS[2:5]], atol=1e-5)


# ------------------------------------------------------------------ predict: errors
def _assert_failed_cleanly(code, err, out: Path, before: bytes):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("toxdistill: error:"), err
    assert "Traceback" not in err
    assert out.read_bytes() == before  # the old output is untouched
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]  # and no temp file is left


def _make_bad(tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    p = tmp_path / f"bad-{kind}"
    if kind == "missing":
        return tmp_path / "nope.csv", []
    if kind == "empty":
        p = p.with_suffix(".csv")
        p.write_text("")
    elif kind == "blank":
        p = p.with_suffix(".txt")
        p.write_text("\n\n  \n")
    elif kind == "header-only":
        p = p.with_suffix(".csv")
        p.write_text("id,text\n")
    elif kind == "missing-column":
        p = p.with_suffix(".csv")
        p.write_text("id,body\n1,hello\n")
    elif kind == "wrong-text-col":
        p = p.with_suffix(".csv")
        p.write_text("id,text\n1,hello\n")
        return p, ["--text-col", "comment"]
    elif kind == "binary":
        p = p.with_suffix(".csv")
        p.write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)) * 4)
    elif kind == "latin1":
        p = p.with_suffix(".txt")
        p.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    elif kind == "bad-json-late":  # fails in a later chunk: the first chunks were already scored
        p = p.with_suffix(".jsonl")
        p.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(6)) + "{oops\n")
        return p, ["--chunk-size", "2"]
    elif kind == "bad-csv-late":
        p = p.with_suffix(".csv")
        p.write_text("text\n" + "".join(f"row {i}\n" for i in range(6)) + '"unclosed quote\n')
        return p, ["--chunk-size", "2"]
    elif kind == "jsonl-no-field":
        p = p.with_suffix(".jsonl")
        p.write_text('{"text": "a"}\n{"body": "b"}\n')
    elif kind == "jsonl-deep":  # valid JSON nested past Python's recursion limit
        p = p.with_suffix(".jsonl")
        p.write_text('{"text": "a"}\n{"text": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
    elif kind == "jsonl-huge-int":  # valid JSON with more digits than int() converts
        p = p.with_suffix(".jsonl")
        p.write_text('{"text": "a", "n": ' + "9" * 5_000 + "}\n")
    elif kind == "folder":
        p.mkdir()
    elif kind.startswith("long-line-"):  # line 3 is over --max-line-bytes 1000
        fmt = kind.removeprefix("long-line-")
        p = p.with_suffix("." + fmt)
        rows = {"txt": ["a", "b", "x" * 1001], "csv": ["text", "a", "x" * 1001], "jsonl": ['{"text": "a"}'] * 2}
        rows["jsonl"].append(json.dumps({"text": "x" * 1001}))
        p.write_text("\n".join(rows[fmt]) + "\n")
        return p, ["--max-line-bytes", "1000"]
    return p, []


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "empty",
        "blank",
        "header-only",
        "missing-column",
        "wrong-text-col",
        "binary",
        "latin1",
        "bad-json-late",
        "bad-csv-late",
        "jsonl-no-field",
        "jsonl-deep",
        "jsonl-huge-int",
        "folder",
        "long-line-txt",
        "long-line-csv",
        "long-line-jsonl",
    ],
)
def test_predict_bad_input(kind, tiny_model_dir, tmp_path, capsys):
    src, extra = _make_bad(tmp_path, kind)
    out = tmp_path / "out" / "existing.csv"
    out.parent.mkdir()
    out.write_text("previous results\n")
    code, _, err = _run(["predict", tiny_model_dir, src, "-o", out, *extra], capsys)
    _assert_failed_cleanly(code, err, out, b"previous results\n")
    if kind.startswith("long-line"):
        assert "line 3 is longer than 1000 bytes" in err


def test_predict_scores_with_the_tfidf_baseline_through_the_one_loader(tmp_path, capsys):
    from toxdistill.inference.predict import BaselineScorer, load_scorer
    from toxdistill.models.baseline import TfidfLR

    from conftest import tiny_dataset

    folder = tmp_path / "tfidf-lr"
    TfidfLR(LABELS).fit(tiny_dataset(200)).save(folder)
    (folder / "toxdistill.json").write_text(json.dumps({"name": "tfidf-lr", "kind": "baseline", "label_names": LABELS}))
    texts = _texts(12)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    code, _, err = _run(["predict", folder, tmp_path / "t.txt", "-o", tmp_path / "o.csv"], capsys)
    assert code == 0, err
    assert "(tfidf backend)" in err
    got = pd.read_csv(tmp_path / "o.csv")
    scorer = load_scorer(folder)
    assert isinstance(scorer, BaselineScorer)
    logits, _ = scorer.logits(scorer.prepare(texts))
    assert list(got.columns) == ["text", *PRED_COLS] and got["text"].tolist() == texts
    assert got["label_id"].tolist() == scorer.decide(logits).tolist()
    np.testing.assert_allclose(got[PRED_COLS[2:5]].to_numpy(), scorer.probabilities(logits), atol=1e-6)


def test_predict_bad_model_folder(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("hello\n")
    out = tmp_path / "o.csv"
    out.write_text("keep")
    code, _, err = _run(["predict", tmp_path / "no-model", src, "-o", out], capsys)
    _assert_failed_cleanly(code, err, out, b"keep")


def test_predict_unwritable_output(tiny_model_dir, tmp_path, capsys, monkeypatch):
    src = tmp_path / "t.txt"
    src.write_text("hello\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "o.csv"
    out.write_text("keep")
    locked.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root ignores the mode bits: make the temp file creation fail instead

            def refuse(*a, **k):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr("toxdistill.inference.scored_output.new_temp_file", refuse)
        code, _, err = _run(["predict", tiny_model_dir, src, "-o", out], capsys)
        _assert_failed_cleanly(code, err, out, b"keep")
    finally:
        locked.chmod(0o755)
    code, _, err = _run(["predict", tiny_model_dir, src, "-o", tmp_path / "no-such-dir" / "o.csv"], capsys)
    assert code != 0 and err.startswith("toxdistill: error:") and "does not exist" in err


def test_predict_option_errors(tiny_model_dir, inputs, tmp_path, capsys):
    d, _ = inputs
    for extra in (["--batch-size", "0"], ["--threads", "0"]):
        code, _, err = _run(["predict", tiny_model_dir, d / "a.csv", "-o", tmp_path / "o.csv", *extra], capsys)
        assert code != 0 and err.startswith("toxdistill: error:")
    code, _, err = _run(["predict", tiny_model_dir, d / "a.txt", "-o", tmp_path / "o.csv", "--text-col", "x"], capsys)
    assert code != 0 and "plain text" in err


# ------------------------------------------------------------------ predict: stopped, killed, permissions
def _stop_on_second_chunk(monkeypatch, stop):
    """``stop()`` while predict scores its second chunk, after the first was written to the .part file."""
    import toxdistill.inference.score_file as sf

    real, calls = sf.prediction_frame, [0]

    def scoring(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            stop()
        return real(*a, **k)

    monkeypatch.setattr(sf, "prediction_frame", scoring)


def _sigterm() -> None:
    """What a SIGTERM runs: the handler predict installed (a default or ignoring one would fail here). Called
    directly rather than signalled, so a handler that any earlier test left on this process is never hit."""
    import signal

    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler), "predict installed no SIGTERM handler"
    handler(signal.SIGTERM, None)


def _interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("stop, code", [(_sigterm, 143), (_interrupt, 130)])
def test_a_stopped_predict_removes_its_part_file_and_keeps_the_output(
    tiny_model_dir, inputs, tmp_path, capsys, monkeypatch, stop, code
):
    d, _ = inputs
    out = tmp_path / "o.csv"
    out.write_text("previous results\n")
    _stop_on_second_chunk(monkeypatch, stop)
    got, _, err = _run(["predict", tiny_model_dir, d / "a.txt", "-o", out, "--chunk-size", 8], capsys)
    assert got == code and len(err.strip().splitlines()) == 1 and "was not written" in err
    assert out.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_predict_removes_the_part_files_killed_predicts_left_of_its_output(tiny_model_dir, inputs, tmp_path, capsys):
    import subprocess
    import sys

    d, _ = inputs
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = os.getppid()
    stale = [f".o.csv.{dead.pid}-0123abcd.part", ".o.csv.k3x9_q2z.part"]  # an older toxdistill's had no pid
    # A live predict's, another output's, and a user's backup.
    kept = [f".o.csv.{live}-0123abcd.part", f".other.csv.{dead.pid}-0123abcd.part", ".o.csv.old"]
    for name in stale + kept:
        (tmp_path / name).write_text("half")
    assert _run(["predict", tiny_model_dir, d / "a.txt", "-o", tmp_path / "o.csv"], capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(kept)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_predict_replacing_an_output_gives_it_the_umasks_permissions(tiny_model_dir, inputs, tmp_path, capsys):
    d, _ = inputs
    out = tmp_path / "o.csv"
    out.write_text("previous results\n")
    out.chmod(0o644)
    before = os.umask(0o022)
    try:
        assert _run(["predict", tiny_model_dir, d / "a.txt", "-o", out], capsys)[0] == 0
    finally:
        os.umask(before)
    assert out.stat().st_mode & 0o777 == 0o644 and out.read_text() != "previous results\n"
