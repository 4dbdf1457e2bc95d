"""`toxdistill serve`: the JSON API, the no-JS HTML page, batch files, model cards and the CLI's fast failures."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.cli import main
from toxdistill.inference.predict import Predictor
from toxdistill.serve.app import create_app
from toxdistill.serve.batch import MAX_ROWS, MAX_UPLOAD_BYTES
from toxdistill.serve.errors import ApiError
from toxdistill.serve.limits import MAX_BODY_BYTES
from toxdistill.serve.models import MicroBatcher, close_models, load_models
from toxdistill.serve.registry import ModelRegistry
from toxdistill.serve.schemas import MAX_TEXTS
from toxdistill.serve.views import COLOURS, label_colour, label_css

from conftest import LABELS, SAMPLE_TEXTS  # noqa: E402

# The smallest valid PNG (1x1), so the image route has a real file to send.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)
NAMES = ["even", "lora-teacher", "odd", "teacher"]


@pytest.fixture(scope="module")
def served_run(tiny_run: Path, tmp_path_factory) -> Path:
    """A copy of the tiny run with what real runs also hold: confusion images, a TF-IDF baseline,
    and folders the server must skip (an unfinished atomic write, a folder without metadata)."""
    from toxdistill.models.baseline import TfidfLR

    run = tmp_path_factory.mktemp("serve") / "tiny-run"
    shutil.copytree(tiny_run, run)
    for name in ("teacher", "even"):
        (run / "models" / name / "confusion.png").write_bytes(PNG)
    texts = ["you are nice", "you are nice people", "hate you all", "hate them all", "trash talk", "trash people"] * 3
    labels = [2, 2, 0, 0, 1, 1] * 3
    base = TfidfLR(LABELS).fit(SimpleNamespace(texts=texts, labels=np.array(labels)))
    base.save(run / "models" / "tfidf-lr")
    meta = {
        "name": "tfidf-lr",
        "kind": "baseline",
        "layers": None,
        "label_names": LABELS,
        "max_length": 64,
        "calibration": {"temperature": 1.0, "offsets": [0.0, 0.0, 0.0]},
        "metrics": {"f1_macro": 0.99, "accuracy": 0.99, "throughput_sps": 9000.0},
    }
    (run / "models" / "tfidf-lr" / "toxdistill.json").write_text(json.dumps(meta))
    shutil.copytree(run / "models" / "odd", run / "models" / ".odd.x1y2.tmp")
    (run / "models" / "notes").mkdir()
    return run


@pytest.fixture(scope="module")
def models(served_run: Path):
    ms = load_models(served_run, batch_wait_ms=2.0)
    yield ms
    close_models(ms)


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    return TestClient(create_app(models, run_name="tiny-run"), base_url="http://localhost")


def classify(client: TestClient, **body):
    return client.post("/api/classify", json=body)


# ---------------------------------------------------------------- loading
def test_loads_every_model_and_skips_unfinished_folders(models):
    assert sorted(models) == sorted([*NAMES, "tfidf-lr"])


def test_models_restricts_and_unknown_name_is_an_error(served_run):
    from toxdistill.errors import ToxdistillError

    ms = load_models(served_run, "odd, even", batch_wait_ms=None)
    assert list(ms) == ["odd", "even"]
    with pytest.raises(ToxdistillError, match="pick from"):
        load_models(served_run, "odd,nope")


def test_each_served_model_weighs_its_passes_at_the_cost_measured_here(served_run, monkeypatch):
    from toxdistill.inference.predict import Predictor

    measured = []

    def measure(self, *a, **k):
        measured.append(self)
        self.pass_cost_tokens = 123.0
        return 123.0

    monkeypatch.setattr(Predictor, "measure_pass_cost", measure)
    ms = load_models(served_run, "odd, tfidf-lr", batch_wait_ms=None)
    assert measured == [ms["odd"].scorer]  # the TF-IDF baseline makes no padded passes
    assert ms["odd"].scorer.pass_cost_tokens == 123.0


# ---------------------------------------------------------------- JSON API
def test_healthz_does_no_model_work(client, models, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("healthz ran a model")

    for m in models.values():
        monkeypatch.setattr(m, "logits", boom)
        monkeypatch.setattr(m, "logits_batched", boom)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_api_models(client):
    body = client.get("/api/models").json()
    # The baseline has the best F1 here, but the default is the best transformer model.
    assert body["default"] == "teacher"
    by_name = {m["name"]: m for m in body["models"]}
    assert sorted(by_name) == sorted([*NAMES, "tfidf-lr"])
    t = by_name["teacher"]
    assert t["kind"] == "teacher" and t["layers"] == [1, 2, 3, 4] and t["size_mb"] == 4.0
    assert t["params"] > 0 and t["throughput_sps"] == 500.0 and t["label_names"] == LABELS
    assert set(t["metrics"]) == {"accuracy", "f1_weighted", "f1_macro", "f1_per_class"}
    assert t["metrics"]["f1_per_class"]["offensive"] == 0.9
    assert by_name["tfidf-lr"]["kind"] == "baseline"


def test_classify_shape_matches_predictor(client, served_run):
    r = classify(client, texts=SAMPLE_TEXTS[:4], model="even")
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "even" and len(body["results"]) == 4
    p = Predictor.load(served_run / "models" / "even")
    logits, _ = p.logits(p.prepare(SAMPLE_TEXTS[:4]))
    want_probs, want_ids = p.probabilities(logits), p.decide(logits)
    for res, probs, cid in zip(body["results"], want_probs, want_ids):
        assert set(res) == {"label", "label_id", "probabilities", "truncated"}  # no word_scores unless asked
        assert res["label_id"] == int(cid) and res["label"] == LABELS[int(cid)]
        assert list(res["probabilities"]) == LABELS
        np.testing.assert_allclose([res["probabilities"][n] for n in LABELS], probs, atol=1e-5)
        assert res["truncated"] is False


def test_classify_single_string_and_default_model(client):
    r = classify(client, texts="you are a wonderful person")
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "teacher" and len(body["results"]) == 1
    assert abs(sum(body["results"][0]["probabilities"].values()) - 1) < 1e-5


def test_raw_text_is_cleaned_like_the_training_data(client, models):
    """The run's data.clean settings apply: handles and links are normalised before the model sees them."""
    raw, clean = "@someone_else you are great http://t.co/abc123", "@user you are great http"
    m = models["odd"]
    assert m.prepare([raw]) == [clean]
    # The tiny random model barely reacts to the difference, so compare exactly, not approximately.
    assert not np.array_equal(m.scorer.logits([raw])[0], m.scorer.logits([clean])[0])
    got = classify(client, texts=raw, model="odd").json()["results"][0]["probabilities"]
    want = classify(client, texts=clean, model="odd").json()["results"][0]["probabilities"]
    assert got == want


def test_baseline_is_served_too(client):
    r = classify(client, texts="hate you all", model="tfidf-lr", explain=True)
    assert r.status_code == 200
    assert [w["word"] for w in r.json()["results"][0]["word_scores"]] == ["hate", "you", "all"]


def test_explain_scores_every_word(client, models):
    text = "I hate all of you so much, get out"
    r = classify(client, texts=[text, "lol"], model="odd", explain=True)
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert [w["word"] for w in first["word_scores"]] == text.split()
    assert [w["word"] for w in second["word_scores"]] == ["lol"]
    # Score = drop in the predicted class's probability when the word is removed.
    m = models["odd"]
    c = first["label_id"]
    variant = " ".join(text.split()[1:])
    p = m.scorer.probabilities(m.logits([text, variant])[0])
    assert first["word_scores"][0]["score"] == pytest.approx(p[0, c] - p[1, c], abs=1e-5)


def test_long_text_is_truncated_not_an_error(client):
    words = [f"w{i}" for i in range(100)]  # each is >= 1 token, the tiny models read 64
    r = classify(client, texts=" ".join(words), model="even", explain=True)
    assert r.status_code == 200
    res = r.json()["results"][0]
    assert res["truncated"] is True
    assert len(res["word_scores"]) == 100
    # Words past the window cannot matter: they score 0 without being run.
    assert all(w["score"] == 0.0 for w in res["word_scores"][64:])


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"texts": ""}, "empty or only whitespace"),
        ({"texts": "   \n\t"}, "empty or only whitespace"),
        ({"texts": ["fine", " "]}, "item 1 is empty"),
        ({"texts": []}, "texts is empty"),
        ({"texts": 5}, "string or a list of strings"),
        ({"texts": [1, 2]}, "texts"),
        ({"texts": "ok", "explain": [1]}, "explain"),
        ({"texts": "ok", "model": 3}, "model"),
        ({"text": "typo in the key"}, "texts"),
        ({}, "texts"),
    ],
)
def test_bad_bodies_are_422_with_a_message(client, body, fragment):
    r = client.post("/api/classify", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.json()["message"]


@pytest.mark.parametrize(
    "raw, ctype",
    [
        (b"{not json", "application/json"),
        (b'"just a string"', "application/json"),
        (b'{"texts": "x"}', "text/plain"),
        (b"", "application/json"),
    ],
)
def test_malformed_json_is_422(client, raw, ctype):
    r = client.post("/api/classify", content=raw, headers={"content-type": ctype})
    assert r.status_code == 422, r.text
    assert r.json()["message"]


def test_too_many_texts_is_413(client):
    r = classify(client, texts=["hi"] * (MAX_TEXTS + 1))
    assert r.status_code == 413 and str(MAX_TEXTS) in r.json()["detail"]
    assert classify(client, texts=["hi"] * MAX_TEXTS).status_code == 200


def test_explain_budget_is_413(client):
    r = classify(client, texts=[" ".join(["word"] * 60)] * 100, model="odd", explain=True)
    assert r.status_code == 413 and "fewer texts" in r.json()["detail"]


def test_big_body_is_413_by_header_and_by_size(client):
    big = json.dumps({"texts": "x" * (MAX_BODY_BYTES + 10)}).encode()
    r = client.post("/api/classify", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    # No Content-Length (chunked): the middleware has to count what actually arrives.
    def chunks():
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    r = client.post("/api/classify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_lying_content_length_is_caught_by_size(models):
    """A client may declare a small body and send more: the ASGI middleware counts the real bytes."""
    import asyncio

    app = create_app(models)
    big = json.dumps({"texts": "x" * (MAX_BODY_BYTES + 10)}).encode()
    sent: list[dict] = []
    parts = [big[i : i + 65536] for i in range(0, len(big), 65536)]

    async def receive():
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    async def send(msg):
        sent.append(msg)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/classify",
        "raw_path": b"/api/classify",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"), (b"content-length", b"20")],
        "client": ("t", 1),
        "server": ("t", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413


@pytest.mark.parametrize(
    "name",
    ["nope", "../../etc", "../../../etc/passwd", "/etc/passwd", "teacher/../odd", "even\x00", ".odd.x1y2.tmp", "notes"],
)
def test_unknown_model_is_404_with_valid_names(client, name):
    r = classify(client, texts="hello", model=name)
    assert r.status_code == 404
    body = r.json()
    assert sorted(body["valid_models"]) == sorted([*NAMES, "tfidf-lr"])
    assert "even" in body["detail"]


def test_server_keeps_serving_after_errors(client):
    client.post("/api/classify", content=b"{", headers={"content-type": "application/json"})
    classify(client, texts="", model="even")
    classify(client, texts="x", model="../../etc")
    assert client.get("/healthz").status_code == 200
    assert classify(client, texts="still here", model="even").status_code == 200


def test_concurrent_requests_match_sequential(client):
    texts = [f"{t} {i}" for i, t in enumerate(SAMPLE_TEXTS * 3)]
    want = [classify(client, texts=t, model="odd").json()["results"][0] for t in texts]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: classify(client, texts=t, model="odd"), texts))
    for r, w in zip(got, want):
        assert r.status_code == 200
        res = r.json()["results"][0]
        assert res["label"] == w["label"]
        np.testing.assert_allclose(list(res["probabilities"].values()), list(w["probabilities"].values()), atol=1e-4)


def test_microbatcher_gathers_concurrent_requests():
    calls: list[int] = []

    def run(texts):
        calls.append(len(texts))
        time.sleep(0.01)
        arr = np.array([[float(len(t)), 0.0] for t in texts], dtype=np.float32)
        return arr, np.array([t.startswith("long") for t in texts])

    b = MicroBatcher(run, wait_ms=50, max_batch=64, name="t")
    texts = [f"text number {i}" + "!" * i for i in range(12)]
    start = threading.Barrier(len(texts))

    def one(t):
        start.wait()
        return b.submit([t])

    try:
        with ThreadPoolExecutor(len(texts)) as pool:
            out = list(pool.map(one, texts))
        # Every caller got its own row back, and the calls were merged.
        assert [float(o[0][0, 0]) for o in out] == [float(len(t)) for t in texts]
        assert sum(calls) == len(texts) and len(calls) < len(texts)
        assert b.batches == len(calls)
    finally:
        b.close()


def test_microbatcher_passes_errors_to_every_caller():
    def run(texts):
        raise RuntimeError("model broke")

    b = MicroBatcher(run, wait_ms=0, max_batch=8)
    try:
        with pytest.raises(RuntimeError, match="model broke"):
            b.submit(["x"])
        with pytest.raises(RuntimeError, match="model broke"):
            b.submit(["y"])  # the worker survives a failure
    finally:
        b.close()


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert "/api/classify" in spec["paths"] and "/api/models" in spec["paths"] and "/healthz" in spec["paths"]
    req = spec["components"]["schemas"]["ClassifyRequest"]
    assert set(req["properties"]) == {"texts", "model", "explain"} and req["required"] == ["texts"]
    assert {"404", "413", "422"} <= set(spec["paths"]["/api/classify"]["post"]["responses"])
    assert "/" not in spec["paths"]  # HTML routes stay out of the API schema
    docs = client.get("/docs")
    # The server's own list of the routes: no third-party script on the origin that holds the API key.
    assert docs.status_code == 200 and "POST /api/classify" in docs.text and 'href="/openapi.json"' in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()


# ---------------------------------------------------------------- HTML page (no JavaScript)
def test_page_has_a_real_form_and_every_model(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert re.search(r'<form id="classify-form" method="post" action="/">', html)
    assert '<textarea id="text" name="text"' in html and 'name="compare"' in html
    options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', html.split('id="batch-form"')[0])
    assert sorted(v for v, _ in options) == sorted([*NAMES, "tfidf-lr"])
    shown = dict(options)
    assert "macro F1 0.700" in shown["teacher"] and "500 texts/s" in shown["teacher"]
    assert f"{MAX_UPLOAD_BYTES // 2**20} MB and {MAX_ROWS:,} comments" in html
    for n in NAMES:
        assert f'href="/models/{n}"' in html


def test_form_post_shows_result_bars_and_words(client):
    text = "I hate all of you so much"
    r = client.post("/", data={"text": text, "model": "odd"})
    assert r.status_code == 200
    html = r.text
    want = classify(client, texts=text, model="odd").json()["results"][0]
    css = {"hate speech": "hate", "offensive": "offensive", "neither": "neither"}[want["label"]]
    assert f'class="alert alert-{css}"' in html
    assert re.search(rf'id="predicted-label">{re.escape(want["label"])}<', html)
    assert len(re.findall(r'class="bar bar-(hate|offensive|neither)" style="width: [\d.]+%"', html)) == 3
    words = re.findall(
        r'<span class="word" style="background-color: rgba\([^"]+\)" title="[^"]+" data-score="[^"]+">([^<]+)</span>',
        html,
    )
    assert words == text.split()
    assert 'id="compare-all"' not in html
    assert 'option value="odd" selected' in html  # the choice survives the round trip


def test_form_compare_all(client):
    r = client.post("/", data={"text": "this is trash and so are you", "model": "even", "compare": "1"})
    assert r.status_code == 200
    table = r.text.split('id="compare-all"')[1].split("</table>")[0]
    rows = re.findall(r'<tr><td><a href="/models/([^"]+)">', table)
    assert sorted(rows) == sorted([*NAMES, "tfidf-lr"])
    assert "0.700" in table and "500" in table  # teacher's macro F1 and speed
    assert 'name="compare" value="1" checked' in r.text


def test_form_errors_render_the_page(client):
    r = client.post("/", data={"text": "   ", "model": "even"})
    assert r.status_code == 422 and 'id="form-error"' in r.text and "empty" in r.text
    r = client.post("/", data={"text": "hi", "model": "../../etc"})
    assert r.status_code == 404 and "unknown model" in r.text
    r = client.post("/", data={})
    assert r.status_code == 422


def test_form_escapes_html(client):
    r = client.post("/", data={"text": "<script>alert(1)</script> you", "model": "even"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_static_files(client):
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


# ---------------------------------------------------------------- batch files
def _rows(resp) -> list[dict]:
    return list(csv.DictReader(io.StringIO(resp.text)))


def test_batch_csv_picks_the_tweet_column(client):
    data = b'id,tweet,extra\n1,you are lovely,a\n2,"trash, total trash",b\n3,,c\n4,get out,d\n'
    r = client.post("/batch", files={"file": ("comments.csv", data, "text/csv")}, data={"model": "even"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="comments-even.csv"'
    rows = _rows(r)
    assert [x["text"] for x in rows] == ["you are lovely", "trash, total trash", "get out"]  # blank row skipped
    assert list(rows[0]) == ["text", "label", "p_hate_speech", "p_offensive", "p_neither"]
    want = classify(client, texts=[x["text"] for x in rows], model="even").json()["results"]
    for row, w in zip(rows, want):
        assert row["label"] == w["label"]
        assert float(row["p_offensive"]) == pytest.approx(w["probabilities"]["offensive"], abs=1e-4)


def test_batch_csv_named_column_and_no_silent_fallback(client):
    data = b"a,b\nhello there,you idiot\n"
    r = client.post("/batch", files={"file": ("x.csv", data)}, data={"model": "odd", "column": "b"})
    assert r.status_code == 200 and _rows(r)[0]["text"] == "you idiot"
    # No text/tweet/comment column and none named: refused, as `toxdistill predict` refuses the same file.
    r = client.post("/batch", files={"file": ("x.csv", data)}, data={"model": "odd"})
    assert r.status_code == 422 and "no &#39;text&#39;, &#39;tweet&#39; or &#39;comment&#39; column" in r.text
    assert "columns: a, b" in r.text
    r = client.post("/batch", files={"file": ("x.csv", b"id,Comment\n1,you idiot\n")}, data={"model": "odd"})
    assert r.status_code == 200 and _rows(r)[0]["text"] == "you idiot"  # any case of the known names
    r = client.post("/batch", files={"file": ("x.csv", data)}, data={"model": "odd", "column": "nope"})
    assert r.status_code == 422 and "no column" in r.text and 'id="batch-error"' in r.text


def test_batch_txt_one_comment_per_line(client):
    data = b"first comment, with a comma\n\n  second one  \nthird\n"
    r = client.post("/batch", files={"file": ("lines.txt", data, "text/plain")}, data={"model": "teacher"})
    assert r.status_code == 200
    # Lines are kept as written (as `toxdistill predict` writes them back); blank lines are skipped.
    assert [x["text"] for x in _rows(r)] == ["first comment, with a comma", "  second one  ", "third"]


def test_batch_download_defuses_spreadsheet_formulas(client):
    texts = ['=HYPERLINK("http://x.example","click")', "@user you idiot", "+1 agreed", "-2 for this", "plain text"]
    r = client.post("/batch", files={"file": ("f.txt", "\n".join(texts).encode())}, data={"model": "odd"})
    assert r.status_code == 200
    rows = _rows(r)
    assert [x["text"] for x in rows] == ["'" + t for t in texts[:4]] + ["plain text"]
    # The prefix exists only in the download: the model scored the texts as uploaded.
    want = classify(client, texts=texts, model="odd").json()["results"]
    assert [x["label"] for x in rows] == [w["label"] for w in want]
    for row, w in zip(rows, want):
        assert float(row["p_neither"]) == pytest.approx(w["probabilities"]["neither"], abs=1e-4)


def test_batch_limits_and_bad_files(client):
    too_many = "\n".join(f"comment {i}" for i in range(MAX_ROWS + 1)).encode()
    r = client.post("/batch", files={"file": ("many.txt", too_many)}, data={"model": "odd"})
    assert r.status_code == 413 and f"{MAX_ROWS}" in r.text
    too_big = b"x" * (MAX_UPLOAD_BYTES + 1)
    r = client.post("/batch", files={"file": ("big.txt", too_big)}, data={"model": "odd"})
    assert r.status_code == 413 and "limit is 2 MB" in r.text
    way_too_big = b"x" * (MAX_UPLOAD_BYTES + 200 * 1024)  # refused by the middleware before parsing
    r = client.post("/batch", files={"file": ("big.txt", way_too_big)}, data={"model": "odd"})
    assert r.status_code == 413
    r = client.post("/batch", files={"file": ("empty.txt", b"\n\n")}, data={"model": "odd"})
    assert r.status_code == 422 and "empty" in r.text
    r = client.post("/batch", data={"model": "odd"})
    assert r.status_code == 422
    r = client.post("/batch", files={"file": ("x.txt", b"hi")}, data={"model": "../../etc"})
    assert r.status_code == 404
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- model cards
def test_model_card(client):
    r = client.get("/models/teacher")
    assert r.status_code == 200
    html = r.text
    assert '<h1 id="model-name">teacher</h1>' in html
    assert "0.7000" in html and "train_loss" in html  # macro F1 and the training record
    assert '<img src="/models/teacher/confusion.png"' in html
    assert re.search(r"<th>hate speech</th><td class=\"num\">5</td>", html)  # the confusion table
    r = client.get("/models/odd")
    assert r.status_code == 200 and "confusion.png" not in r.text  # no image on disk, table only


def test_confusion_image(client):
    r = client.get("/models/even/confusion.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == PNG
    assert client.get("/models/odd/confusion.png").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/models/..%2F..%2Fetc%2Fpasswd",
        "/models/..%2F..%2Fetc/confusion.png",
        "/models/../../etc/passwd",
        "/models/%2e%2e/confusion.png",
        "/models/.odd.x1y2.tmp",
        "/models/notes/confusion.png",
        "/models/nope",
    ],
)
def test_model_pages_never_touch_other_paths(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text


# ---------------------------------------------------------------- the registry and the class colours
def test_each_app_serves_its_own_registry(models):
    """Routes read the models from their app's registry, so two apps in one process never mix them up."""
    a = TestClient(create_app({"odd": models["odd"]}, run_name="run-a"), base_url="http://localhost")
    b = TestClient(
        create_app({"even": models["even"], "tfidf-lr": models["tfidf-lr"]}, run_name="run-b"),
        base_url="http://localhost",
    )
    assert a.get("/api/models").json()["default"] == "odd"
    assert [m["name"] for m in b.get("/api/models").json()["models"]] == ["even", "tfidf-lr"]
    assert classify(a, texts="hi").json()["model"] == "odd"
    r = classify(b, texts="hi", model="odd")
    assert r.status_code == 404 and r.json()["valid_models"] == ["even", "tfidf-lr"]
    assert "run-b" in b.get("/").text and "run-a" not in b.get("/").text


def test_registry_lookup_and_default(models):
    reg = ModelRegistry.of({n: models[n] for n in ("tfidf-lr", "odd", "even")}, "r")
    assert reg.default == "odd"  # the best transformer's macro F1 (0.69 > 0.68); the baseline's 0.99 is no default
    assert reg.find(None) is reg.find("") is models["odd"] and reg.find("even") is models["even"]
    assert reg.find("nope") is None
    with pytest.raises(ApiError) as e:
        reg.get("../odd")
    assert e.value.status == 404 and e.value.extra == {"valid_models": ["tfidf-lr", "odd", "even"]}
    with pytest.raises(ValueError, match="at least one model"):
        ModelRegistry.of({}, "r")


def test_focus_class_is_named_by_the_metadata_else_the_first_class(models):
    m = models["odd"]
    assert "focus_class" not in m.meta and m.focus_class == LABELS[0]  # folders written before it was recorded
    assert replace(m, meta={**m.meta, "focus_class": "neither"}).focus_class == "neither"
    assert replace(m, meta={**m.meta, "focus_class": "not a class"}).focus_class == LABELS[0]


def test_the_focus_class_gets_the_hate_colour_whatever_its_name():
    assert label_css("toxic", "toxic") == "hate" and label_css("clean", "toxic") == "neither"
    # A class that merely contains the word is not the class of interest.
    assert label_css("hate speech", "neither") == "neither" and label_css("neither", "neither") == "hate"
    assert label_css("Offensive language", "hate speech") == "offensive"
    assert label_colour("toxic", "toxic") == COLOURS["hate"]


def test_page_colours_follow_the_models_focus_class(models):
    odd = models["odd"]
    client = TestClient(
        create_app({"odd": replace(odd, meta={**odd.meta, "focus_class": "neither"})}), base_url="http://localhost"
    )
    card = client.get("/models/odd").text
    assert '<span class="pill pill-hate">neither</span>' in card
    assert '<span class="pill pill-neither">hate speech</span>' in card
    page = client.post("/", data={"text": "I hate all of you", "model": "odd"}).text
    bars = dict(
        re.findall(r'<th scope="row">([^<]+)</th>\s*<td><div class="bar-track"><div class="bar bar-(\w+)"', page)
    )
    assert bars == {"hate speech": "neither", "offensive": "offensive", "neither": "hate"}


# ---------------------------------------------------------------- CLI
def test_cli_empty_folder_exits_with_one_line(tmp_path, capsys):
    rc = main(["serve", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("toxdistill: error: no models in")


def test_cli_missing_folder_and_unknown_model(tmp_path, served_run, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["serve", str(served_run), "--models", "odd,bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err and "even" in err


def test_cli_busy_port_exits_with_one_line(served_run, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc = main(["serve", str(served_run), "--port", str(port)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--models", "--threads"):
        assert flag in out
