"""End to end in a real browser: Debian's chromium driven by Playwright against a real uvicorn server.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``: the
system browser is used). Skips cleanly when either is missing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from conftest import LABELS, REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    p = ctx.new_page()
    p.set_default_timeout(15_000)
    yield p
    ctx.close()


def _label_class(label: str) -> str:
    return {"hate speech": "hate", "offensive": "offensive", "neither": "neither"}[label]


def test_classify_one_comment(server, page):
    page.goto(server + "/")
    page.fill("#text", "I hate all of you so much")
    assert "25 characters, 7 words" in page.inner_text("#text-count")  # the little JS is running
    page.select_option("#model", "odd")
    page.click("#submit")
    page.wait_for_selector("#prediction")
    label = page.inner_text("#predicted-label").strip()
    assert label in LABELS
    assert f"alert-{_label_class(label)}" in page.get_attribute("#prediction", "class")
    assert page.locator("#probabilities .bar").count() == 3
    assert page.locator("#words .word").all_inner_texts() == ["I", "hate", "all", "of", "you", "so", "much"]
    # The page and the API agree.
    api = page.request.post(
        server + "/api/classify", data={"texts": "I hate all of you so much", "model": "odd"}
    ).json()
    assert api["results"][0]["label"] == label
    assert page.input_value("#model") == "odd" and page.input_value("#text") == "I hate all of you so much"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-result.png"), full_page=True)


def test_compare_all_models(server, page):
    page.goto(server + "/")
    page.fill("#text", "this is trash and so are you")
    page.check("#compare")
    page.click("#submit")
    page.wait_for_selector("#compare-all")
    rows = page.locator("#compare-all tbody tr")
    assert rows.count() == 4
    names = sorted(rows.nth(i).locator("td").first.inner_text() for i in range(4))
    assert names == ["even", "lora-teacher", "odd", "teacher"]
    for i in range(4):
        assert rows.nth(i).locator(".pill").inner_text() in LABELS
    assert page.is_checked("#compare")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-compare.png"), full_page=True)


def test_form_works_without_javascript(server, browser):
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.goto(server + "/")
        page.fill("#text", "what a lovely day at the beach")
        page.click("#submit")
        page.wait_for_selector("#prediction")
        assert page.inner_text("#predicted-label").strip() in LABELS
        assert page.inner_text("#text-count") == ""  # proof the script did not run
    finally:
        ctx.close()


def test_batch_upload_downloads_csv(server, page, tmp_path):
    src = tmp_path / "comments.txt"
    src.write_text("you are lovely\nget out of here\n\nlol\n")
    page.goto(server + "/")
    page.set_input_files("#file", str(src))
    page.select_option("#batch-model", "even")
    with page.expect_download() as dl:
        page.click("#batch-form button[type=submit]")
    download = dl.value
    assert download.suggested_filename == "comments-even.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [r["text"] for r in rows] == ["you are lovely", "get out of here", "lol"]
    assert all(r["label"] in LABELS for r in rows)


def test_model_card_from_the_models_table(server, page):
    page.goto(server + "/")
    page.click("#models a[href='/models/teacher']")
    page.wait_for_selector("#model-name")
    assert page.inner_text("#model-name") == "teacher"
    assert "train_loss" in page.inner_text("#training")


# ---------------------------------------------------------------- with API keys
KEY = "browser-key-7f3e2d1c0b9a"


@pytest.fixture(scope="module")
def keyed_server(tiny_run):
    from live_server import live_server

    from toxdistill.serve.app import create_app
    from toxdistill.serve.auth import ApiKeys
    from toxdistill.serve.models import close_models, load_models

    models = load_models(tiny_run, "odd,even", batch_wait_ms=2.0)
    try:
        with live_server(create_app(models, run_name="tiny-run", api_keys=ApiKeys([KEY]))) as url:
            yield url
    finally:
        close_models(models)


def test_the_key_is_asked_once_and_kept_in_the_tab_only(keyed_server, page, tmp_path):
    page.goto(keyed_server + "/")
    assert page.is_visible("#api-key") and page.is_visible("#batch-api-key")
    page.fill("#api-key", KEY)
    assert page.input_value("#batch-api-key") == KEY  # typed once, both forms have it
    page.fill("#text", "what a lovely day")
    page.click("#submit")
    page.wait_for_selector("#prediction")
    # Back on the page: the key is not asked again, and it lives in sessionStorage only.
    assert not page.is_visible("#api-key") and page.is_visible("#key-status")
    assert page.evaluate("sessionStorage.getItem('toxdistill-api-key')") == KEY
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    assert KEY not in page.content().replace(f'value="{KEY}"', "")  # only in the field the script filled
    src = tmp_path / "c.txt"
    src.write_text("you are lovely\nget out\n")
    page.set_input_files("#file", str(src))
    with page.expect_download() as dl:
        page.click("#batch-form button[type=submit]")
    assert dl.value.suggested_filename.endswith(".csv")
    # Forgetting it asks again.
    page.click("#forget-key")
    assert page.is_visible("#api-key") and page.evaluate("sessionStorage.getItem('toxdistill-api-key')") is None


def test_a_wrong_stored_key_is_dropped_and_asked_again(keyed_server, page):
    page.goto(keyed_server + "/")
    page.fill("#api-key", "not-the-key")
    page.fill("#text", "hello")
    page.click("#submit")
    page.wait_for_selector("#form-error")
    assert "not valid" in page.inner_text("#form-error")
    assert page.is_visible("#api-key") and page.input_value("#api-key") == ""
    assert page.evaluate("sessionStorage.getItem('toxdistill-api-key')") is None
    assert page.input_value("#text") == "hello"  # the comment survives the retry


def test_keyed_form_works_without_javascript(keyed_server, browser):
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.goto(keyed_server + "/")
        page.fill("#text", "what a lovely day at the beach")
        page.fill("#api-key", KEY)
        page.click("#submit")
        page.wait_for_selector("#prediction")
        assert page.inner_text("#predicted-label").strip() in LABELS
    finally:
        ctx.close()
