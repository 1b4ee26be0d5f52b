"""The composer while a reply is written, and when the session is gone, in real Chromium: the
next message can be drafted and queued (sent when the reply ends, or at once with "Stop and send
now", or taken back with Cancel); a send after the session ended offers a login link that comes
back to the conversation with the message still in the box."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Message
from tests.browser.helpers import chat_ready, login, reply_done, wait_until
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

SLOW = [f"word{i} " for i in range(40)]
SOME_TEXT = "(document.querySelector('.msg-assistant .msg-body')?.textContent.length ?? 0) > 10"


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def chat(live_server, page, owner, app):
    project = make_project(app, owner, name="Support bot")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project}")
    chat_ready(page)
    return page


def stored(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.scalars(db.select(Message).order_by(Message.id))
        return [(m.role, m.status, m.content) for m in rows]


def test_a_message_typed_while_a_reply_streams_is_sent_when_it_ends(app, fake, chat, shot):
    fake.script("responses", Scenario(deltas=SLOW, token_delay_ms=40), Scenario(text="Second."))
    chat.fill("#message", "First question")
    chat.keyboard.press("Enter")
    wait_until(chat, SOME_TEXT)
    assert chat.is_editable("#message")
    chat.fill("#message", "Second question")
    chat.keyboard.press("Enter")
    queued = chat.locator(".msg-user.queued")
    assert queued.inner_text().endswith("Second question")
    assert chat.is_visible("#composer-queued")
    assert chat.input_value("#message") == ""
    assert len(fake.calls("responses")) == 1  # not sent yet
    chat.fill("#message", "And a third thought, drafted meanwhile")
    shot(chat, "chat-queued")
    chat.fill("#message", "")
    # It goes once the first reply is complete, and is answered in turn.
    wait_until(chat, "document.querySelectorAll('.msg-assistant').length === 2")
    reply_done(chat)
    assert chat.locator(".msg-user.queued").count() == 0
    assert chat.is_hidden("#composer-queued")
    assert stored(app) == [
        ("user", "complete", "First question"),
        ("assistant", "complete", "".join(SLOW)),
        ("user", "complete", "Second question"),
        ("assistant", "complete", "Second."),
    ]


def test_stop_and_send_now_and_cancel(app, fake, chat):
    fake.script("responses", Scenario(deltas=SLOW, token_delay_ms=60), Scenario(text="Sure."))
    chat.fill("#message", "Tell me a long story")
    chat.keyboard.press("Enter")
    wait_until(chat, SOME_TEXT)
    # Cancel takes the queued message back into the box.
    chat.fill("#message", "Actually, be brief")
    chat.click("#send")
    chat.click("#queued-cancel")
    assert chat.locator(".msg-user.queued").count() == 0
    assert chat.input_value("#message") == "Actually, be brief"
    # Queue it again, then Stop and send now: the story stops, the message goes at once.
    chat.click("#send")
    chat.click("#queued-stop")
    wait_until(chat, "document.querySelectorAll('.msg-assistant').length === 2")
    reply_done(chat)
    rows = stored(app)
    assert [(role, status) for role, status, _ in rows] == [
        ("user", "complete"),
        ("assistant", "incomplete"),  # stopped
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert rows[2][2] == "Actually, be brief"
    assert chat.locator(".msg-assistant").first.locator(".msg-notice").inner_text() == "Stopped."


def test_a_send_after_the_session_ended_offers_a_way_back(app, live_server, owner, fake, chat):
    fake.script("responses", Scenario(text="Hello."))
    chat.fill("#message", "Hi")
    chat.keyboard.press("Enter")
    reply_done(chat)
    conversation = chat.evaluate("document.getElementById('chat').dataset.conversationId")
    chat.context.clear_cookies()  # the session is gone (expired, or logged out elsewhere)
    chat.fill("#message", "Are you still there?")
    chat.keyboard.press("Enter")
    error = chat.locator("#composer-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Your session has ended. Log in again — your message is kept."
    assert chat.input_value("#message") == "Are you still there?"
    assert chat.locator(".msg-user").count() == 1  # the refused message is not shown as sent
    error.locator("a").click()
    chat.fill("#email", owner.email)
    chat.fill("#password", owner.password)
    chat.click("main button[type=submit]")
    chat.wait_for_url(f"{live_server}/projects/*?c={conversation}")
    chat_ready(chat)
    assert chat.input_value("#message") == "Are you still there?"  # the draft came back
    assert chat.locator(".msg-user .msg-body").all_inner_texts() == ["Hi"]
