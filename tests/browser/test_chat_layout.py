"""The chat page fills the window, in real Chromium, light and dark, at three sizes: only the
message pane scrolls, the composer and its error line stay on screen, three exchanges fit at
1366×657, and on a phone the conversation list is a drawer (Escape and focus handled)."""

from __future__ import annotations

import pytest

from tests.browser.helpers import chat_ready, horizontal_overflow, login, wait_until
from tests.factories import make_conversation, make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

SIZES = {"1280x800": (1280, 800), "1366x657": (1366, 657), "375x740": (375, 740)}
REPLY = (
    "Refunds take up to thirty days after we receive the parcel; you get an email when it is done."
)
DRAWER = "getComputedStyle(document.getElementById('conversations')).visibility === '{}'"

# Everything the layout promises, measured in one go.
GEOMETRY = """(() => {
  const pane = document.getElementById("messages").getBoundingClientRect();
  const composer = document.getElementById("composer").getBoundingClientRect();
  const inside = (el) => {
    const r = el.getBoundingClientRect();
    return r.top >= pane.top - 1 && r.bottom <= pane.bottom + 1;
  };
  return {
    pageScroll: document.documentElement.scrollHeight - window.innerHeight,
    paneHeight: Math.round(pane.height),
    composerBottom: composer.bottom,
    height: window.innerHeight,
    usersShown: [...document.querySelectorAll(".msg-user")].filter(inside).length,
    repliesShown: [...document.querySelectorAll(".msg-assistant")].filter(inside).length,
  };
})()"""


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def project(app, owner):
    return make_project(
        app, owner, name="Support bot",
        description="Answers customer questions about orders, refunds, exchanges and shipping.",
    )  # fmt: skip


def three_exchanges(app, owner, project, fake) -> int:
    fake.script("responses", *[Scenario(text=REPLY)] * 3)
    conversation = make_conversation(app, owner, project, message="How long do refunds take?")
    from app.chat import services as chat_services
    from app.chat import start as start_turn
    from app.extensions import db
    from app.models import User

    with app.app_context():
        user = db.session.get(User, owner.id)
        for text in ("And for a damaged parcel?", "Thanks, and exchanges?"):
            turn = start_turn.send(
                user=user, project_id=project, message=text, conversation_id=conversation
            )
            chat_services.complete_turn(turn)
    return conversation


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["1280x800", "1366x657"])
def test_the_chat_fills_the_window_and_only_the_pane_scrolls(
    app, live_server, new_page, owner, project, fake, size, scheme, shot
):
    conversation = three_exchanges(app, owner, project, fake)
    width, height = SIZES[size]
    page = new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project}?c={conversation}")
    chat_ready(page)
    geometry = page.evaluate(GEOMETRY)
    assert geometry["pageScroll"] <= 0  # the page itself never scrolls
    assert geometry["composerBottom"] <= geometry["height"]
    # The exchanges are all on screen at once, inside the pane.
    assert (geometry["usersShown"], geometry["repliesShown"]) == (3, 3)
    overflow = page.evaluate("getComputedStyle(document.getElementById('messages')).overflowY")
    assert overflow == "auto"
    assert page.locator("#conv-toggle").is_hidden()  # the list is beside the chat, no drawer
    assert page.locator("#conversations").is_visible()
    if (size, scheme) == ("1366x657", "light"):
        shot(page, "chat-full-height")


def test_a_refused_send_shows_its_error_on_screen(app, live_server, new_page, owner, project, fake):
    page = new_page(viewport={"width": 1366, "height": 657})
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project}")
    chat_ready(page)
    page.fill("#message", "x" * 20_001)
    page.press("#message", "Enter")
    error = page.locator("#composer-error")
    error.wait_for(state="visible")
    assert "20,000" in error.inner_text()
    box = error.bounding_box()
    textarea = page.locator("#message").bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= 657  # in the window
    assert box["y"] + box["height"] <= textarea["y"]  # right above the message box
    assert page.evaluate("document.documentElement.scrollHeight - window.innerHeight") <= 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_on_a_phone_the_conversations_are_a_drawer(
    app, live_server, new_page, owner, project, fake, scheme, shot
):
    conversation = three_exchanges(app, owner, project, fake)
    page = new_page(viewport={"width": 375, "height": 740}, color_scheme=scheme, has_touch=True)
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project}?c={conversation}")
    chat_ready(page)
    assert horizontal_overflow(page) == 0
    geometry = page.evaluate(GEOMETRY)
    assert geometry["pageScroll"] <= 0
    assert geometry["composerBottom"] <= 740
    assert geometry["paneHeight"] >= 300  # the pane gets the height the list used to take

    toggle = page.locator("#conv-toggle")
    drawer = page.locator("#conversations")
    assert toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false"
    assert drawer.is_hidden()
    toggle.click()
    wait_until(page, DRAWER.format("visible"))
    assert toggle.get_attribute("aria-expanded") == "true"
    assert page.evaluate("document.activeElement.getAttribute('aria-current')") == "page"
    if scheme == "light":
        page.wait_for_timeout(250)  # the slide-in
        shot(page, "chat-mobile-drawer")
    page.keyboard.press("Escape")
    wait_until(page, DRAWER.format("hidden"))
    assert page.evaluate("document.activeElement.id") == "conv-toggle"
    assert toggle.get_attribute("aria-expanded") == "false"

    # A tap outside closes it too; links inside navigate.
    toggle.click()
    wait_until(page, DRAWER.format("visible"))
    page.mouse.click(360, 400)
    wait_until(page, DRAWER.format("hidden"))
    assert horizontal_overflow(page) == 0
