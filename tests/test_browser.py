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
