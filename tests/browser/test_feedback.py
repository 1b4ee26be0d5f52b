"""Feedback on a reply in a real browser, with the offline demo model: 👍/👎 appear once a
streamed reply has finished, a vote and a comment are saved through the API (cookie session,
CSRF header) and are shown in the reply's footer after a reload; pressing the vote again
removes the feedback."""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Message
from tests.browser.helpers import chat_ready, login, reply_done, unlabelled_inputs, wait_until
from tests.factories import make_project, make_user

pytestmark = pytest.mark.browser

GOOD = ".msg-assistant .feedback-vote[data-vote=up]"
BAD = ".msg-assistant .feedback-vote[data-vote=down]"


def stored_feedback(app):
    with app.app_context():
        return db.session.execute(
            select(Message.rating, Message.feedback).where(Message.role == "assistant")
        ).one()


def pressed(page, selector: str) -> str:
    return page.locator(selector).get_attribute("aria-pressed")


def test_rate_a_reply_change_it_with_a_comment_and_see_it_after_reloads(
    app, live_server, page, shot
):
    app.config["OFFLINE_TOKEN_DELAY_MS"] = 40  # long enough to look at the reply mid-stream
    user = make_user(app)
    project_id = make_project(app, user, name="Support bot")
    login(page, live_server, user)
    page.goto(f"{live_server}/projects/{project_id}")
    chat_ready(page)

    page.fill("#message", "How do refunds work?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant.streaming")
    assert page.locator(".msg-assistant .feedback").count() == 0  # not while it is written
    reply_done(page)
    reply = page.locator(".msg-assistant")
    assert reply.get_attribute("data-status") == "complete"
    good, bad = page.locator(GOOD), page.locator(BAD)
    assert good.get_attribute("aria-label") == "Good reply"
    assert bad.get_attribute("aria-label") == "Bad reply"
    assert (pressed(page, GOOD), pressed(page, BAD)) == ("false", "false")
    assert not page.is_visible(".feedback-note")  # a comment goes with a rating

    # 👍, saved and shown pressed after a reload.
    good.click()
    wait_until(page, f"document.querySelector('{GOOD}').getAttribute('aria-pressed') === 'true'")
    assert stored_feedback(app) == (1, None)
    wait_until(page, "document.getElementById('chat-live').textContent === 'Rated good reply.'")
    page.reload()
    chat_ready(page)
    assert (pressed(page, GOOD), pressed(page, BAD)) == ("true", "false")
    assert page.locator(".feedback-comment").is_hidden()

    # Change to 👎 with a comment; Save closes the form; the comment is in the footer.
    page.locator(BAD).click()
    wait_until(page, f"document.querySelector('{BAD}').getAttribute('aria-pressed') === 'true'")
    assert pressed(page, GOOD) == "false"
    page.get_by_text("Add a comment").click()
    box = page.get_by_label("Comment on this reply")
    box.fill("  It should mention the 30-day limit.  ")
    page.get_by_role("button", name="Save").click()
    comment = page.locator(".msg-assistant .feedback-comment")
    wait_until(page, "!document.querySelector('.msg-assistant .feedback-comment').hidden")
    assert comment.inner_text() == "It should mention the 30-day limit."
    assert not page.locator(".feedback-note").evaluate("d => d.open")
    assert stored_feedback(app) == (-1, "It should mention the 30-day limit.")
    assert unlabelled_inputs(page) == []

    page.reload()
    chat_ready(page)
    assert (pressed(page, GOOD), pressed(page, BAD)) == ("false", "true")
    assert page.locator(".msg-assistant .feedback-comment").inner_text() == (
        "It should mention the 30-day limit."
    )
    assert page.locator(".msg-assistant .msg-meta .feedback-comment").is_visible()
    assert page.get_by_text("Edit comment").is_visible()
    shot(page, "chat-feedback")

    # Escape closes the comment box without saving (and without touching the chat).
    page.get_by_text("Edit comment").click()
    page.get_by_label("Comment on this reply").fill("Changed my mind")
    page.keyboard.press("Escape")
    assert not page.locator(".feedback-note").evaluate("d => d.open")
    assert stored_feedback(app) == (-1, "It should mention the 30-day limit.")

    # Pressing 👎 again removes the feedback, comment included.
    page.locator(BAD).click()
    wait_until(page, f"document.querySelector('{BAD}').getAttribute('aria-pressed') === 'false'")
    assert page.locator(".msg-assistant .feedback-comment").is_hidden()
    assert stored_feedback(app) == (None, None)
    page.reload()
    chat_ready(page)
    assert (pressed(page, GOOD), pressed(page, BAD)) == ("false", "false")
    assert page.problems == []
