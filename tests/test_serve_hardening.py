"""`toxdistill serve` against abuse: invented methods in /metrics, hostile JSON, the security headers, the Host
and Origin checks of a keyless server, linked files in model folders and the bounds on explain and text length."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.serve.app import create_app  # noqa: E402
from toxdistill.serve.auth import ApiKeys  # noqa: E402
from toxdistill.serve.errors import MAX_ECHOED_ERRORS  # noqa: E402
from toxdistill.serve.models import CHARS_PER_TOKEN  # noqa: E402

LOCAL = "http://localhost"
KEY = "k-hardening-0000000000"
PNG = bytes.fromhex("89504e470d0a1a0a")


@pytest.fixture(scope="module")
def models(served_models):
    return served_models


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    return TestClient(create_app(models), base_url=LOCAL)


@pytest.fixture
def no_model_work(models, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a refused request ran a model")

    for m in models.values():
        for name in ("score", "logits", "logits_batched"):
            monkeypatch.setattr(m, name, boom)


def short_json_error(r, statuses=(400, 422)) -> dict:
    assert r.status_code in statuses, r.text[:300]
    assert len(r.content) < 4000
    body = r.json()
    line = body.get("message") or body["detail"]
    assert isinstance(line, str) and "\n" not in line and "Traceback" not in r.text
    return body


# ---------------------------------------------------------------- /metrics
def test_invented_methods_count_as_other(models):
    client = TestClient(create_app(models), base_url=LOCAL)
    for i in range(30):
        client.request(f"INVENTED{i}", "/")
    text = client.get("/metrics").text
    assert "INVENTED" not in text
    series = re.findall(r'toxdistill_requests_total\{method="other",route="/",status="(\d+)"\}', text)
    assert series and len(text) < 20_000


# ---------------------------------------------------------------- hostile JSON bodies
@pytest.mark.parametrize(
    "raw",
    [
        b'{"texts": "a", "explain": NaN}',
        b'{"texts": "a", "explain": Infinity}',
        b'{"texts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"texts": ["a"], "model": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"texts": ' + b"7" * 5_000 + b"}",
        b'{"texts": ["a"], "explain": ' + b"7" * 4_000 + b"}",
        b'{"texts": "a", "' + b"k" * 200_000 + b'": 1}',
    ],
    ids=["nan", "infinity", "deep-texts", "deep-model", "5000-digits", "4000-digits", "huge-key"],
)
def test_hostile_json_is_a_short_4xx(client, no_model_work, raw):
    r = client.post("/api/classify", content=raw, headers={"content-type": "application/json"})
    short_json_error(r)
    assert client.get("/healthz").status_code == 200


def test_many_invalid_items_give_a_small_422_with_a_count(client, no_model_work):
    raw = b'{"texts": [' + b",".join([b"1"] * 50_000) + b"]}"
    r = client.post("/api/classify", content=raw, headers={"content-type": "application/json"})
    body = short_json_error(r, (422,))
    assert len(body["detail"]) == MAX_ECHOED_ERRORS and body["errors_total"] >= 50_000  # each item, and the str branch
    assert len(r.content) < len(raw) / 10


@pytest.mark.parametrize(
    "line",
    [b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", b'{"text": ' + b"9" * 5_000 + b"}"],
    ids=["deep", "5000-digits"],
)
def test_hostile_jsonl_upload_is_a_short_4xx(client, line):
    data = b'{"text": "fine"}\n' + line + b"\n"
    r = client.post("/batch", files={"file": ("x.jsonl", data)}, data={"model": "odd"})
    assert r.status_code in (400, 413, 422) and "Traceback" not in r.text
    err = re.search(r'id="batch-error">([^<]*)<', r.text)
    assert err and len(err.group(1)) < 300


# ---------------------------------------------------------------- headers, the page and /docs
def test_every_answer_has_the_security_headers(models, client):
    keyed = TestClient(create_app(models, api_keys=ApiKeys([KEY])))
    answers = [
        client.get("/"),
        client.get("/api/models"),
        client.get("/nope"),
        client.get("/static/app.js"),
        client.post("/api/classify", content=b"x" * (2 * 1024 * 1024)),  # 413 from the body limit
        client.get("/", headers={"host": "evil.example"}),  # 403
        keyed.get("/api/models"),  # 401
    ]
    assert [r.status_code for r in answers] == [200, 200, 404, 200, 413, 403, 401]
    for r in answers:
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/", "/models/odd", "/docs", "/nope-page"])
def test_pages_need_no_inline_script_and_docs_no_third_party(client, path):
    html = client.get(path).text
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))  # only /static/app.js
    assert not re.search(r"<script[^>]*>\s*[^<\s]", html)  # no inline code
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert "<style" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from another origin


def test_docs_lists_the_routes_and_openapi_says_so(client):
    html = client.get("/docs").text
    assert "POST /api/classify" in html and "GET /api/models" in html and 'href="/openapi.json"' in html
    assert "/docs" in client.get("/openapi.json").json()["info"]["description"]


# ---------------------------------------------------------------- a keyless server: Host and Origin
@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:8080", "[::1]:5000", "[::1]"])
def test_loopback_host_names_are_served(client, host):
    assert client.get("/healthz", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "localhost.evil.example", "10.0.0.1", ""])
def test_other_host_names_are_refused_without_keys(client, no_model_work, host):
    r = client.post("/api/classify", json={"texts": "x"}, headers={"host": host})
    assert r.status_code == 403 and "loopback" in r.json()["detail"]
    assert client.get("/", headers={"host": host}).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://localhost:5001"},  # another port is another origin
        {"sec-fetch-site": "cross-site"},
    ],
)
def test_cross_site_posts_are_refused_without_keys(client, no_model_work, headers):
    r = client.post("/", data={"text": "you", "model": "odd"}, headers=headers)
    assert r.status_code == 403 and "\n" not in r.json()["detail"]
    r = client.post("/batch", files={"file": ("x.txt", b"hi")}, data={"model": "odd"}, headers=headers)
    assert r.status_code == 403
    assert client.get("/", headers=headers).status_code == 200  # reading the page changes nothing


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"origin": LOCAL},
        {"origin": LOCAL, "sec-fetch-site": "same-origin"},
        {"origin": "null", "sec-fetch-site": "same-origin"},
    ],
    ids=["curl", "page", "fetch", "browser-without-origin"],
)
def test_same_origin_and_originless_posts_work(client, headers):
    assert client.post("/", data={"text": "you", "model": "odd"}, headers=headers).status_code == 200
    assert client.post("/api/classify", json={"texts": "you"}, headers=headers).status_code == 200


def test_the_checks_follow_the_setup(models):
    open_net = TestClient(create_app(models, loopback_only=False), base_url="http://10.0.0.5:5000")
    assert open_net.get("/healthz").status_code == 200  # --insecure-no-auth on a network address
    assert (
        open_net.post("/api/classify", json={"texts": "x"}, headers={"origin": "https://evil.example"}).status_code
        == 403
    )
    keyed = TestClient(create_app(models, api_keys=ApiKeys([KEY])), base_url="http://server.example")
    auth = {"authorization": f"Bearer {KEY}", "origin": "https://other.example"}
    assert keyed.post("/api/classify", json={"texts": "x"}, headers=auth).status_code == 200  # the key decides


# ---------------------------------------------------------------- model folders
def test_linked_files_outside_the_model_folder_are_not_served(models, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "confusion.png").symlink_to(secret)
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "real.png").write_bytes(PNG)
    (inside / "confusion.png").symlink_to(inside / "real.png")
    odd = models["odd"]
    app = create_app({"out": replace(odd, folder=outside), "in": replace(odd, folder=inside)})
    client = TestClient(app, base_url=LOCAL)
    r = client.get("/models/out/confusion.png")
    assert r.status_code == 404 and b"secret" not in r.content
    assert "confusion.png" not in client.get("/models/out").text
    assert client.get("/models/in/confusion.png").content == PNG  # a link that stays inside is the model's


# ---------------------------------------------------------------- explain and long texts
def _spy_lengths(m, monkeypatch) -> list[int]:
    """The length of every text the model's scorer is given from now on, in a list that fills as it scores."""
    seen: list[int] = []
    real = m.scorer.logits

    def spy(texts, *a, **k):
        seen.extend(len(t) for t in texts)
        return real(texts, *a, **k)

    monkeypatch.setattr(m.scorer, "logits", spy)
    return seen


def test_long_texts_are_cut_before_tokenizing(models, monkeypatch):
    m = models["odd"]
    real = m.scorer.logits
    seen = _spy_lengths(m, monkeypatch)
    long = "word " * 200_000  # 1 MB
    [res] = m.results(*m.logits([long]))
    assert res["truncated"] is True and max(seen) <= CHARS_PER_TOKEN * m.scorer.max_length
    short = " ".join(f"w{i}" for i in range(20))
    assert m.results(*m.logits([short]))[0] == m.results(*real(m.prepare([short])))[0]  # short texts: as before


def test_explain_cost_is_a_window_whatever_the_length(models, monkeypatch):
    m = models["odd"]
    seen = _spy_lengths(m, monkeypatch)
    window = m.scorer.max_length
    res, scores = m.explain(" ".join(f"w{i}" for i in range(50_000)))
    assert len(seen) == 1 + window and max(seen) <= CHARS_PER_TOKEN * window
    assert res["truncated"] is True and len(scores) <= CHARS_PER_TOKEN * window
    assert all(s["score"] == 0.0 for s in scores[window:])


def test_explain_scores_match_occluding_the_whole_text(models):
    m = models["odd"]
    words = [f"w{i}" for i in range(m.scorer.max_length + 40)]  # each word is >= 1 token: past the window
    text = " ".join(words)
    res, scores = m.explain(text)
    full = [" ".join(words[:i] + words[i + 1 :]) for i in range(m.scorer.max_length)]
    probs = m.scorer.probabilities(m.logits([text, *full])[0])
    c = res["label_id"]
    expected = probs[0, c] - probs[1:, c]
    assert [s["score"] for s in scores[: len(full)]] == pytest.approx(list(expected), abs=1e-5)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"texts": "a", "explain": NaN}',
        b'{"texts": "a", "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
        b'{"texts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"texts": [' + b"7" * 5_000 + b"]}",
    ],
    ids=["nan", "deep-object", "deep-list", "5000-digits"],
)
@pytest.mark.parametrize("ctype", ["application/json", None], ids=["json", "no-type"])
def test_hostile_json_on_a_live_server(server, raw, ctype):
    import http.client

    conn = http.client.HTTPConnection(server.split("//")[1], timeout=20)
    conn.request("POST", "/api/classify", raw, {"content-type": ctype} if ctype else {})
    r = conn.getresponse()
    body = r.read()
    assert 400 <= r.status < 500 and len(body) < 4000 and b"Traceback" not in body
