"""Layout in real Chromium: the dashboard's cards and search, dark mode (system setting, toggle,
remembered across reloads, applied before the first paint), labelled inputs and visible focus,
and no horizontal scrolling at 375 px."""

import pytest

from app.chat import services as chat_services
from app.chat import start as start_turn
from app.extensions import db
from app.models import User
from tests.browser.helpers import (
    horizontal_overflow,
    login,
    unlabelled_inputs,
)
from tests.factories import make_conversation, make_file, make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

# Records, when <body> first exists, which theme <html> already had: proof that the theme is
# decided before anything in the body is parsed or painted.
THEME_AT_BODY = """
new MutationObserver((_, observer) => {
  if (document.body) {
    window.themeAtBody = document.documentElement.getAttribute("data-theme");
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""
LONG_CALL = "result = compute(" + ", ".join(f"argument_{i}" for i in range(30)) + ")"
LONG_REPLY = f"Use this:\n\n```python\n{LONG_CALL}\n```\n\n{'AVeryLongWordWithoutBreaks' * 4}"


@pytest.fixture
def owner(app):
    return make_user(app, email="ada.lovelace@example.com", name="Ada Lovelace")


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_dashboard_cards_and_search(app, live_server, page, owner, shot):
    support = make_project(
        app,
        owner,
        name="Support bot",
        description="Answers customer questions about orders, refunds and shipping.",
        system_prompt="You are a friendly support agent.",
    )
    make_conversation(app, owner, support, message="Where is my order?")
    make_conversation(app, owner, support, message="Refund please")
    make_file(app, owner, support, name="handbook.md", content=b"# Handbook")
    make_project(app, owner, name="Release notes writer", description="Turns commits into notes.")
    make_project(
        app, owner, name="SQL helper", description="Explains and reviews queries.",
        system_prompt="You are a careful database engineer.",
    )  # fmt: skip
    login(page, live_server, owner)
    cards = page.locator(".project-card")
    assert cards.locator("h2").all_inner_texts() == [
        "SQL helper",
        "Release notes writer",
        "Support bot",
    ]
    support_card = cards.filter(has_text="Support bot")
    facts = support_card.locator(".facts li").all_inner_texts()
    assert facts[:3] == ["prompt v1", "2 conversations", "1 file"]
    assert facts[3] == "active just now"
    time_title = support_card.locator("time").get_attribute("title")
    assert time_title.endswith("UTC")  # the exact time stays available
    release = cards.filter(has_text="Release notes writer").locator(".facts").inner_text()
    assert "default prompt" in release and "0 conversations" in release
    assert page.inner_text("#project-count") == "3 projects"
    shot(page, "dashboard")

    page.fill("#project-search", "refunds")  # matches the description
    assert cards.locator("h2").evaluate_all(
        "els => els.filter(e => e.offsetParent).map(e => e.textContent)"
    ) == ["Support bot"]
    assert page.inner_text("#project-count") == "1 of 3 projects"
    page.fill("#project-search", "notes RELEASE")  # any order, any case
    assert page.locator(".project-card:visible").count() == 1
    page.fill("#project-search", "nothing like this")
    assert page.locator(".project-card:visible").count() == 0
    assert page.is_visible("#no-match")
    page.press("#project-search", "Escape")
    assert page.locator(".project-card:visible").count() == 3
    assert not page.is_visible("#no-match")

    support_card.click()  # the whole card opens the project
    page.wait_for_url(f"{live_server}/projects/{support}")
    assert page.problems == []


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(
    app, live_server, new_page, owner
):
    page = new_page(color_scheme="light")
    page.add_init_script(THEME_AT_BODY)
    login(page, live_server, owner)
    assert page.evaluate("window.themeAtBody") == "light"
    light = background(page)
    toggle = page.locator("#theme-toggle")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert page.get_attribute("html", "data-theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"
    assert background(page) == "rgb(13, 17, 23)" != light
    page.reload()
    assert page.evaluate("window.themeAtBody") == "dark"  # before the first paint
    assert background(page) == "rgb(13, 17, 23)"
    page.goto(live_server + "/projects/create")  # and on every page
    assert page.get_attribute("html", "data-theme") == "dark"
    toggle.click()  # back to what the system says: the choice is forgotten
    assert page.evaluate("localStorage.getItem('prompthub-theme')") is None
    assert background(page) == light

    dark_system = new_page(color_scheme="dark")
    dark_system.add_init_script(THEME_AT_BODY)
    dark_system.goto(live_server + "/login")
    assert dark_system.evaluate("window.themeAtBody") == "dark"
    assert background(dark_system) == "rgb(13, 17, 23)"
    dark_system.click("#theme-toggle")
    dark_system.reload()
    assert dark_system.get_attribute("html", "data-theme") == "light"
    assert page.problems == [] and dark_system.problems == []


def test_inputs_are_labelled_and_focus_is_visible(app, live_server, page, owner):
    project_id = make_project(app, owner, name="Support bot", system_prompt="Be kind.")
    make_conversation(app, owner, project_id)
    page.goto(live_server + "/register")
    assert unlabelled_inputs(page) == []
    login(page, live_server, owner)
    for path in (
        "/",
        "/projects/create",
        f"/projects/{project_id}",
        f"/projects/{project_id}/prompts",
        f"/projects/{project_id}/update",
    ):
        page.goto(live_server + path)
        assert unlabelled_inputs(page) == [], path
    page.goto(live_server + "/")
    page.keyboard.press("Tab")  # the skip link first
    page.keyboard.press("Tab")  # the brand
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert style == ["solid", "3px"]
    assert page.problems == []


def test_pages_fit_a_375px_screen(app, fake, live_server, new_page, owner, shot):
    project_id = make_project(
        app, owner, name="A project with a rather long name for a phone screen",
        description="Description " * 20, system_prompt="Be brief.",
    )  # fmt: skip
    fake.script("responses", Scenario(text=LONG_REPLY))
    with app.app_context():
        user = db.session.get(User, owner.id)
        turn = start_turn.send(
            user=user, project_id=project_id, message="Show me a long line " * 10
        )
        chat_services.complete_turn(turn)
    page = new_page(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    login(page, live_server, owner)
    assert horizontal_overflow(page) == 0, "dashboard"
    page.goto(f"{live_server}/projects/{project_id}?c={turn.conversation_id}")
    page.wait_for_selector(".msg-assistant pre .copy-code")
    assert horizontal_overflow(page) == 0, "chat"
    assert page.locator("#message").is_visible()
    assert page.locator("#send").is_visible()
    # The long code line scrolls inside its block instead of widening the page.
    assert page.eval_on_selector(".msg-assistant pre", "p => p.scrollWidth > p.clientWidth")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "chat-mobile", full_page=True)
    page.click("#user-menu summary")
    assert horizontal_overflow(page) == 0, "open account menu"
    for path in ("/prompts", "/prompts/1", "/update", "/files"):
        page.goto(f"{live_server}/projects/{project_id}{path}")
        assert horizontal_overflow(page) == 0, path
    assert page.problems == []
