"""A real browser (Debian's Chromium via Playwright) drives both tabs of the launched app."""

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.model]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "")) if os.environ.get("SCREENSHOT_DIR") else None


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `make system-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from app_server import AppServer

    server = AppServer(tmp_path_factory.mktemp("browser")).wait()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.goto(server.url)
        yield pg
        browser.close()
    server.stop()


def test_empty_plot_and_tables_are_clean_before_a_run(page):
    page.locator("#features-table").wait_for(timeout=60_000)
    text = page.locator("body").inner_text()
    assert "Infinity" not in text and "NaN" not in text
    assert page.locator("#score-plot").count() == 0 or not page.locator("#score-plot").is_visible()
    assert page.locator("#plot-placeholder").is_visible()
    headers = page.locator("#features-table").inner_text()
    assert "feature" in headers and "weight" in headers
    held = page.locator("#held-table").inner_text()
    assert "condition" in held and "score" in held
    for table in ("#features-table", "#held-table"):
        cells = [c.strip() for c in page.locator(f"{table} th").all_inner_texts()]
        assert not {"1", "2", "3"} & set(cells), cells


def test_kids_tab_lists_profiles_by_name_and_explains_the_two_answers(page):
    page.get_by_role("tab", name="Kids' Q&A").click()
    about = page.locator("#kids-about")
    about.wait_for(timeout=30_000)
    assert "steered" in about.inner_text().lower() and "plain" in about.inner_text().lower()
    box = page.locator("#kids-profile input")
    assert "Kid-friendly explainer" in box.input_value() and "assets/" not in box.input_value()
    box.click()
    options = page.get_by_role("option").all_inner_texts()
    assert any("Pirate storyteller" in o for o in options) and not any(".json" in o or "assets/" in o for o in options), options
    assert all(" — " in o for o in options), options
    page.keyboard.press("Escape")
    # One click downloads the chosen profile (the button holds the file already).
    with page.expect_download(timeout=30_000) as download:
        page.locator("#kids-profile-download").click()
    assert download.value.suggested_filename == "kids.json"
    page.get_by_role("tab", name="Auto-steer").click()


def test_autosteer_tab_shows_epoch_one_then_stops(page):
    page.locator("#behavior textarea").fill("Behave like a dog")
    page.locator("#prompts textarea").fill("What is your favourite food?")
    # No early stop at a good score: this test is about the Stop button.
    page.locator("#threshold input[type=number]").fill("10")
    page.locator("#threshold input[type=number]").press("Enter")
    assert page.locator("#threshold input[type=number]").input_value() == "10"
    # Two features (2 x 6 candidates to screen instead of 5 x 6): the run reaches epoch 1 sooner.
    page.locator("#n-features input[type=number]").fill("2")
    page.locator("#n-features input[type=number]").press("Enter")
    assert page.locator("#n-features input[type=number]").input_value() == "2"
    page.get_by_label("numeric", exact=True).check()  # faster epochs; the app's end-to-end test runs the default optimiser
    page.locator("#start").click()
    page.get_by_text("Epoch 1:", exact=False).first.wait_for(timeout=300_000)
    page.locator("#stop").click()
    page.locator("#status").get_by_text("Done (stopped)").wait_for(timeout=120_000)
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "autosteer.png"), full_page=True)


def test_kids_tab_answers_a_question_with_two_answers(page):
    page.get_by_role("tab", name="Kids' Q&A").click()
    page.locator("#kids-question textarea").fill("Why is the sky blue?")
    page.locator("#kids-ask").click()
    # Both cards show their first words while the model is still writing...
    page.wait_for_function(
        """() => ['#kids-steered', '#kids-plain'].every(id => {
              const p = document.querySelector(id + ' .writing p');
              return p && p.textContent.trim().length > 0; })""",
        timeout=300_000,
    )
    partial = page.locator("#kids-steered .writing p").inner_text()
    # ...then the checked answers replace them, with their reading-level badges.
    final_badge = page.locator("#kids-steered .answer:not(.writing) .badge")
    final_badge.wait_for(timeout=120_000)
    page.locator("#kids-plain .answer:not(.writing)").get_by_text("Plain model answer").wait_for(timeout=60_000)
    assert final_badge.inner_text().startswith("📖")
    final = page.locator("#kids-steered .answer p").first.inner_text()
    # (the finished answer may be shorter than a late partial one: an unfinished last sentence is cut)
    assert final.startswith(partial[: max(1, min(len(partial), len(final)) // 2)])
    if SHOTS:
        page.screenshot(path=str(SHOTS / "kids.png"), full_page=True)


def test_a_question_in_another_language_gets_a_kind_reply_in_the_browser(page):
    """No model work: the language gate answers before the model is asked."""
    page.get_by_role("tab", name="Kids' Q&A").click()
    page.locator("#kids-question textarea").fill("¿Por qué el cielo es azul?")
    page.locator("#kids-ask").click()
    card = page.locator("#kids-steered .refusal")
    card.wait_for(timeout=60_000)
    assert "English only" in card.inner_text() and "ask it in English" in card.inner_text()
    assert "Por ahora solo sé leer preguntas en inglés" in card.inner_text()  # the same, in the child's language
    if SHOTS:
        page.screenshot(path=str(SHOTS / "kids-not-english.png"), full_page=True)


def test_on_a_phone_picking_a_question_brings_the_question_box_into_view(page):
    """At 375 px the question list comes first and the box sits far below it: a pick scrolls to it."""
    page.set_viewport_size({"width": 375, "height": 800})
    try:
        page.get_by_role("tab", name="Kids' Q&A").click()
        page.locator("#kids-questions label").nth(3).click()
        page.wait_for_function("""() => { const r = document.querySelector('#kids-question textarea').getBoundingClientRect();
                                          return r.top >= 0 && r.bottom <= window.innerHeight; }""", timeout=10_000)
        assert page.locator("#kids-question textarea").input_value() == page.locator("#kids-questions label").nth(3).inner_text().strip()
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
