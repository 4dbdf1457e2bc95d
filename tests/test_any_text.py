"""Any text is safe at every entry point: scored (lone surrogates replaced) or refused with a 4xx or one
line, never a 5xx or a traceback. Property-based through the one reader and the Predictor, plus each entry."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toxdistill.cli import main
from toxdistill.config import DataConfig
from toxdistill.data.dataset import load_dataset
from toxdistill.data.readers import detect_format, open_bytes, read_chunks, safe_text
from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import Predictor

# Every category, lone surrogates (Cs) and control characters (Cc) included, which st.text() leaves out.
ANY_CHAR = st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Co", "Zs", "Zl", "L", "N", "P", "S", "M"])
ANY_TEXT = st.text(ANY_CHAR, min_size=0, max_size=40)
PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True)


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@PROPERTY
@given(ANY_TEXT)
def test_safe_text_is_encodable_and_changes_only_what_cannot_be(s):
    out = safe_text(s)
    assert _encodable(out)
    if _encodable(s):
        assert out == s
    else:
        assert "\ufffd" in out and len(out) <= len(s)


def _jsonl(texts: list[str]) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes: valid JSON, as a client would send it.
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode("ascii")


@PROPERTY
@given(st.lists(ANY_TEXT, min_size=1, max_size=6))
def test_the_one_reader_returns_encodable_text_or_refuses_in_one_line(texts):
    for name, data in (
        ("x.jsonl", _jsonl(texts)),
        ("x.csv", pd.DataFrame({"text": [safe_text(t) for t in texts]}).to_csv(index=False).encode()),
        ("x.txt", "\n".join(safe_text(t) for t in texts).encode()),
    ):
        try:
            src = open_bytes(name, data)
            got = [t for chunk, _ in read_chunks(src, detect_format(src), None, 4) for t in chunk]
        except ToxdistillError as e:  # empty, binary (NUL), a header with no rows: refused in one line
            assert "\n" not in str(e)
            continue
        assert all(_encodable(t) for t in got)
        if name == "x.jsonl":
            assert got == [safe_text(t) for t in texts]


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    return Predictor.load(tiny_model_dir, backend="torch")


@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(ANY_TEXT, min_size=1, max_size=5))
def test_the_predictor_scores_any_text(predictor, texts):
    logits, truncated = predictor.logits(predictor.prepare(texts), batch_size=2)
    assert logits.shape == (len(texts), 3) and np.isfinite(logits).all() and len(truncated) == len(texts)
    logits_raw, _ = predictor.logits(texts, batch_size=2)  # without prepare(): still no tokenizer error
    assert logits_raw.shape == logits.shape


# ---------------------------------------------------------------- each entry point
def _post(server: str, path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
    u = urlparse(server)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("POST", path, body, {"Content-Type": ctype})
    r = c.getresponse()
    return r.status, r.read()


def test_api_scores_a_lone_surrogate(server):
    status, body = _post(server, "/api/classify", b'{"texts": ["\\ud800 x"], "explain": true}', "application/json")
    assert status == 200, body
    res = json.loads(body)["results"][0]
    assert res["label"] in ("hate speech", "offensive", "neither")
    assert all(_encodable(w["word"]) for w in res["word_scores"])


@settings(max_examples=80, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(ANY_TEXT, min_size=1, max_size=4), st.booleans())
def test_api_fuzz_with_surrogates_and_control_characters(server, texts, explain):
    body = json.dumps({"texts": texts, "explain": explain}).encode("ascii")
    status, out = _post(server, "/api/classify", body, "application/json")
    assert status in (200, 422), (status, out[:300])
    data = json.loads(out)
    if status == 200:
        assert len(data["results"]) == len(texts)


def test_page_form_and_batch_upload_never_5xx(server):
    status, body = _post(server, "/", b"text=%ED%A0%80+you+idiot&model=", "application/x-www-form-urlencoded")
    assert status in (200, 422), body[:300]
    status, body = _post(server, "/", b"text=%F0%9F%98%82+\x01+ok&model=", "application/x-www-form-urlencoded")
    assert status == 200, body[:300]
    boundary = "xYz"
    upload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + b"text\n\xed\xa0\x80 bad utf-8\n"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, body = _post(server, "/batch", upload, f"multipart/form-data; boundary={boundary}")
    assert status == 422 and b"not UTF-8" in body


def test_predict_jsonl_with_a_lone_surrogate(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_jsonl(["\ud800 you idiot", "fine \udfff"]))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(tiny_model_dir), str(src), "-o", str(out), "--progress", "off"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["\ufffd you idiot", "fine \ufffd"]
    capsys.readouterr()


def test_labelled_jsonl_with_a_lone_surrogate_loads_for_run_and_evaluate(tmp_path):
    src = tmp_path / "d.jsonl"
    lines = [json.dumps({"tweet": t, "class": c}) for t, c in [("\ud800 trash", 1), ("ok then", 2), ("x \udbff", 0)]]
    src.write_text("\n".join(lines) + "\n")
    ds = load_dataset(src, DataConfig(source="file", sha256=None))
    assert ds.texts == ["\ufffd trash", "ok then", "x \ufffd"]
