"""The hot path (``serve.fastpath``) answers a valid classify request exactly as the FastAPI route does, and
hands everything else to the route."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.serve.app import create_app  # noqa: E402
from toxdistill.serve.fastpath import FastClassify  # noqa: E402


@pytest.fixture(scope="module")
def client(served_models) -> TestClient:
    return TestClient(create_app(served_models), base_url="http://localhost")


@pytest.mark.parametrize(
    "body",
    [
        b'{"texts": "you are a wonderful person"}',
        b'{"texts": ["hate you all", "lol \\ud800"], "model": "even"}',
        b'{"texts": ["a"], "model": "nope"}',  # 404 from the route
        b'{"texts": ["a"], "explain": true}',  # explanations run on the route
        b'{"texts": ""}',  # 422
        b'{"texts": "a", "explain": NaN}',
        b"not json",
    ],
    ids=["one", "two-and-a-surrogate", "unknown-model", "explain", "blank", "nan", "not-json"],
)
def test_the_hot_path_answers_as_the_route_does(client, monkeypatch, body):
    headers = {"content-type": "application/json; charset=utf-8"}
    fast = client.post("/api/classify", content=body, headers=headers)
    with monkeypatch.context() as m:
        m.setattr(FastClassify, "_answerable", lambda self, msg: None)
        slow = client.post("/api/classify", content=body, headers=headers)
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.headers["content-type"] == slow.headers["content-type"]


def test_the_hot_path_takes_only_what_it_can_answer(served_models):
    app = create_app(served_models)
    fast = next(m for m in app.user_middleware if m.cls is FastClassify)
    hot = FastClassify(app=None, **fast.kwargs)
    ok = {"type": "http.request", "body": b'{"texts": ["a", "b"], "model": "odd"}'}
    assert hot._answerable(ok).text_list() == ["a", "b"]
    for body in (b'{"texts": "a", "explain": true}', b'{"texts": "a", "model": "nope"}', b'{"texts": 1}'):
        assert hot._answerable({"type": "http.request", "body": body}) is None
    assert hot._answerable({**ok, "more_body": True}) is None
    assert hot._answerable({"type": "http.disconnect"}) is None
