"""`toxdistill serve` with API keys: the key file, the Bearer check on the API and /metrics, the page's forms,
the schema, and the refusal to listen beyond loopback without keys."""

from __future__ import annotations

import hmac
import socket
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.cli import main  # noqa: E402
from toxdistill.cli.serve import _bind, _is_loopback  # noqa: E402
from toxdistill.errors import ToxdistillError  # noqa: E402
from toxdistill.serve import auth  # noqa: E402
from toxdistill.serve.app import create_app  # noqa: E402
from toxdistill.serve.auth import ENV_VAR, ApiKeys, bearer, keys_from  # noqa: E402

KEY, OTHER = "k-3f9a1c7e5b2d4f60", "k-second-key-00000000"


@pytest.fixture(scope="module")
def models(served_models):
    return served_models


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    return TestClient(create_app(models, run_name="tiny-run", api_keys=ApiKeys([KEY, OTHER])))


@pytest.fixture
def no_model_work(models, monkeypatch):
    """Fail the test if a refused request ran a model anyway."""

    def boom(*a, **k):
        raise AssertionError("a request without a valid key ran a model")

    for m in models.values():
        for name in ("score", "logits", "logits_batched"):
            monkeypatch.setattr(m, name, boom)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------- the key file
def test_key_file_skips_comments_blank_lines_bom_and_crlf(tmp_path):
    f = tmp_path / "keys"
    f.write_bytes(f"\ufeff# team keys\r\n\r\n  {KEY}  \r\n# old: revoked\n{OTHER}\n{KEY}\n".encode())
    keys = ApiKeys.from_file(f)
    assert len(keys) == 2  # the repeated key counts once
    assert keys.check(KEY) and keys.check(OTHER)
    assert not keys.check("# team keys") and not keys.check("old: revoked")
    assert KEY not in repr(keys) and KEY not in str(vars(keys))  # kept as digests only


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "not found"),
        (b"", "holds no keys"),
        (b"# only a comment\n\n   \n", "holds no keys"),
        (b"\xff\xfe\x00k\x00", "is not UTF-8"),
        (b"good-key\nkey # with a comment\n", "line 2 of"),
    ],
    ids=["missing", "empty", "only-comments", "not-utf8", "inline-comment"],
)
def test_bad_key_files_are_one_line_errors_naming_the_file_not_a_key(tmp_path, content, fragment):
    f = tmp_path / "keys.txt"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(ToxdistillError) as e:
        ApiKeys.from_file(f)
    msg = str(e.value)
    assert fragment in msg and str(f) in msg and "\n" not in msg
    assert "good-key" not in msg


def test_unreadable_key_file_and_a_folder(tmp_path, monkeypatch):
    with pytest.raises(ToxdistillError, match="is a folder"):
        ApiKeys.from_file(tmp_path)
    f = tmp_path / "keys"
    f.write_text(KEY)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)  # root reads a chmod-000 file anyway
    with pytest.raises(ToxdistillError, match="cannot read API key file .*Permission denied"):
        ApiKeys.from_file(f)


def test_keys_come_from_the_option_else_the_environment(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(KEY)
    b.write_text(OTHER)
    assert keys_from(None, {}) is None and keys_from(None, {ENV_VAR: "  "}) is None
    assert keys_from(None, {ENV_VAR: str(b)}).check(OTHER)
    from_option = keys_from(str(a), {ENV_VAR: str(b)})
    assert from_option.check(KEY) and not from_option.check(OTHER)
    with pytest.raises(ToxdistillError, match=rf"from \${ENV_VAR}\) not found"):
        keys_from(None, {ENV_VAR: str(tmp_path / "nope")})


def test_check_compares_every_key_in_constant_time(monkeypatch):
    keys = ApiKeys([KEY, OTHER, "k-third"])
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for given in (KEY, "k-third", "wrong", KEY[:-1], KEY + "x", ""):
        calls.clear()
        keys.check(given)
        # every stored key, whatever matched, and always digests of one length: no early exit, no length leak
        assert calls == [(32, 32)] * 3, given
    assert keys.check(KEY) and keys.check("k-third")
    assert not any(keys.check(k) for k in ("wrong", KEY[:-1], KEY + "x", "", None, KEY.upper()))


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
    ],
)
def test_bearer_header_parsing(header, token):
    assert bearer(header) == token


# ---------------------------------------------------------------- the API and /metrics
def test_api_without_a_key_is_401_with_one_json_line(client, no_model_work):
    for r in (client.post("/api/classify", json={"texts": "hi"}), client.get("/api/models")):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/json"
        assert r.headers["www-authenticate"] == 'Bearer realm="toxdistill"'
        assert "\n" not in r.text and set(r.json()) == {"detail"} and "Bearer" in r.json()["detail"]


@pytest.mark.parametrize("header", [f"Bearer {KEY[:-1]}", f"Bearer {KEY}x", f"Basic {KEY}", f"Bearer {KEY.upper()}"])
def test_api_with_a_wrong_key_is_401(client, no_model_work, header):
    r = client.post("/api/classify", json={"texts": "hi"}, headers={"Authorization": header})
    assert r.status_code == 401 and set(r.json()) == {"detail"}
    assert KEY not in r.text and KEY[:-1] not in r.text  # the key is never echoed
    if header.startswith("Bearer"):
        assert r.json()["detail"] == "the API key is not valid"
        assert r.headers["www-authenticate"] == 'Bearer realm="toxdistill", error="invalid_token"'


def test_api_with_a_right_key_is_200(client):
    for key in (KEY, OTHER):
        r = client.post("/api/classify", json={"texts": ["hi", "you are trash"], "model": "odd"}, headers=_auth(key))
        assert r.status_code == 200 and [x["label"] for x in r.json()["results"]]
    assert client.get("/api/models", headers=_auth(KEY)).json()["default"] in ("odd", "even")
    # bad input from a client with a key is still the API's usual 4xx
    assert client.post("/api/classify", json={"texts": ""}, headers=_auth(KEY)).status_code == 422
    assert client.post("/api/classify", json={"texts": "x", "model": "nope"}, headers=_auth(KEY)).status_code == 404


def test_the_key_is_checked_before_the_body_is_read(client, no_model_work):
    """No parsing work, and no hint about the API's shape, for a client without a key."""
    r = client.post("/api/classify", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = client.post("/api/classify", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 401


def test_healthz_stays_open_and_metrics_need_the_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers=_auth(KEY))
    assert r.status_code == 200 and "toxdistill_models_loaded 2.0" in r.text


def test_schema_documents_the_bearer_scheme_only_with_keys(client, models):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A key from the server's --api-keys file",
    }
    for path in ("/api/classify", "/api/models"):
        op = next(iter(spec["paths"][path].values()))
        assert op["security"] == [{"HTTPBearer": []}] and "401" in op["responses"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    open_spec = TestClient(create_app(models), base_url="http://localhost").get("/openapi.json").json()
    assert "securitySchemes" not in open_spec.get("components", {})
    assert "401" not in open_spec["paths"]["/api/classify"]["post"]["responses"]


# ---------------------------------------------------------------- the page
def test_page_asks_for_the_key_and_stores_it_in_the_session_only(client, models):
    page = client.get("/")
    assert page.status_code == 200  # open: it is where the key is typed
    assert page.text.count('name="api_key"') == 2 and 'type="password"' in page.text
    js = client.get("/static/app.js").text
    assert (
        "sessionStorage" in js and "localStorage." not in js and "document.cookie" not in js
    )  # the browser test runs it
    assert (
        'name="api_key"' not in TestClient(create_app(models), base_url="http://localhost").get("/").text
    )  # no keys, no field


@pytest.mark.parametrize("path", ["/", "/batch"])
def test_page_forms_without_a_key_are_401_and_run_no_model(client, no_model_work, path):
    data = {"text": "hello there", "model": "odd"}
    files = {"file": ("c.txt", b"hello\nthere\n", "text/plain")} if path == "/batch" else None
    r = client.post(path, data=data, files=files)
    assert r.status_code == 401 and "type the API key for this server first" in r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert 'id="key-rejected"' not in r.text  # nothing was stored, so nothing to forget
    r = client.post(path, data={**data, "api_key": "guess-1234"}, files=files)
    assert r.status_code == 401 and "that API key is not valid" in r.text
    assert 'id="key-rejected"' in r.text and "guess-1234" not in r.text  # the page drops the stored key
    if path == "/":
        assert 'id="prediction"' not in r.text and "hello there" in r.text  # the text is kept for the retry


def test_page_forms_with_the_key_in_the_field_or_the_header(client):
    r = client.post("/", data={"text": "hello there", "model": "odd", "api_key": f" {KEY} "})
    assert r.status_code == 200 and 'id="prediction"' in r.text
    assert KEY not in r.text  # the key is not written back into the page
    r = client.post("/", data={"text": "hello there", "model": "odd"}, headers=_auth(OTHER))
    assert r.status_code == 200 and 'id="prediction"' in r.text
    r = client.post(
        "/batch", data={"model": "even", "api_key": KEY}, files={"file": ("c.txt", b"hello\nthere\n", "text/plain")}
    )
    assert r.status_code == 200 and r.text.splitlines()[0].startswith("text,label")


def test_open_pages_show_no_key_and_run_no_model(client, no_model_work):
    for path in ("/", "/models/odd", "/docs", "/openapi.json", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert KEY not in r.text and OTHER not in r.text


# ---------------------------------------------------------------- the CLI
def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("toxdistill: error: "), err
    return err


@pytest.mark.parametrize(("content", "fragment"), [(None, "not found"), ("# none yet\n", "holds no keys")])
def test_cli_bad_key_file_exits_with_one_line(tiny_run, tmp_path, capsys, content, fragment):
    f = tmp_path / "keys"
    if content is not None:
        f.write_text(content)
    err = _one_line_error(capsys, main(["serve", str(tiny_run), "--api-keys", str(f)]))
    assert fragment in err and str(f) in err


def test_cli_key_file_from_the_environment(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    err = _one_line_error(capsys, main(["serve", str(tiny_run)]))
    assert f"${ENV_VAR}" in err and "not found" in err


def test_cli_keys_and_insecure_no_auth_contradict(tiny_run, tmp_path, capsys):
    f = tmp_path / "keys"
    f.write_text(KEY)
    err = _one_line_error(capsys, main(["serve", str(tiny_run), "--api-keys", str(f), "--insecure-no-auth"]))
    assert "contradict" in err and KEY not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_cli_refuses_a_non_loopback_host_without_keys(tiny_run, capsys, host, monkeypatch):
    if host == "::" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    monkeypatch.delenv(ENV_VAR, raising=False)
    err = _one_line_error(capsys, main(["serve", str(tiny_run), "--host", host, "--port", "0"]))
    assert f"refusing to serve {host} without API keys" in err and "--insecure-no-auth" in err


def test_bind_accepts_loopback_always_and_any_address_when_open(capsys):
    for host in ("127.0.0.1", "localhost"):
        _bind(host, 0, open_to_all=False).close()
    with pytest.raises(ToxdistillError, match="refusing"):
        _bind("0.0.0.0", 0, open_to_all=False)
    _bind("0.0.0.0", 0, open_to_all=True).close()  # keys, or --insecure-no-auth


@pytest.mark.parametrize(
    ("addr", "loopback"),
    [("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
     ("fe80::1%eth0", False), ("not-an-address", False)],
)  # fmt: skip
def test_is_loopback(addr, loopback):
    assert _is_loopback(addr) is loopback


def test_cli_help_lists_the_auth_flags(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--api-keys" in out and "--insecure-no-auth" in out and ENV_VAR in out
