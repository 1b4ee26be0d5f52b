"""The main path in a real browser with the offline demo model (no provider key): register, the
dashboard, create a project with a prompt, chat and watch the reply stream in, the conversation
list updating live, the live region, and persistence across a reload."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import chat_ready, reply_done, watch_stream

pytestmark = pytest.mark.browser


def test_register_create_project_and_chat(app, live_server, page):
    app.config["OFFLINE_TOKEN_DELAY_MS"] = 60  # slow enough to see pieces even on a busy machine
    page.goto(live_server + "/register")
    page.fill("#email", "ada@example.com")
    page.fill("#name", "Ada")
    page.fill("#password", "correct horse battery")
    page.fill("#confirm", "correct horse battery")
    page.click("main button[type=submit]")
    page.wait_for_url(live_server + "/")
    assert page.inner_text("h1") == "Your projects"
    assert page.is_visible("text=No projects yet")
    assert "Ada" in page.inner_text("#user-menu summary")

    page.get_by_role("link", name="Create your first project").click()
    page.fill("#name", "Support bot")
    page.fill("#description", "Answers customer questions")
    page.fill("#system_prompt", "You are terse.")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Support bot")
    chat_ready(page)
    assert page.is_visible("text=Project “Support bot” created.")
    assert page.is_visible("#offline-banner")
    assert "Offline demo model" in page.inner_text("#offline-banner")
    assert page.evaluate("document.activeElement.id") == "message"  # focus in the message box
    assert not page.is_visible("#stop")  # only while a reply streams
    assert page.inner_text("#chat-title") == "New conversation"
    assert page.is_visible("#conv-empty")

    page.fill("#message", "How do refunds work?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant")
    assert page.is_visible("#stop")
    assert page.is_editable("#message")  # drafting the next message is fine meanwhile
    reply = page.locator(".msg-assistant").last
    lengths = watch_stream(page, reply)
    assert len({n for n in lengths if n}) > 1, lengths  # arrived in more than one piece
    reply_done(page)
    assert reply.get_attribute("data-status") == "complete"
    assert reply.locator("strong", has_text="Offline demo model.").count() == 1  # Markdown
    assert reply.locator("blockquote").inner_text().strip() == "How do refunds work?"
    assert "offline-demo · offline" in reply.locator(".msg-info").inner_text()
    assert "prompt v1" in reply.locator(".msg-info").inner_text()
    assert reply.locator("button.copy-reply").is_visible()
    assert reply.locator("button.regenerate").is_visible()
    assert page.locator("#chat-live").inner_text().startswith("Reply: Offline demo model.")
    assert not page.is_visible("#stop")
    assert page.evaluate("document.activeElement.id") == "message"

    # The new conversation appeared in the list without a reload, titled by the message.
    item = page.locator("#conv-list li")
    assert item.count() == 1
    assert item.locator("a").inner_text() == "How do refunds work?"
    assert item.locator("a").get_attribute("aria-current") == "page"
    assert page.inner_text("#chat-title") == "How do refunds work?"
    assert not page.is_visible("#conv-empty")
    assert "c=" in page.url

    # Shift+Enter is a new line, not a send.
    page.fill("#message", "line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#message") == "line one\nline two"
    page.keyboard.press("Enter")
    reply_done(page)
    assert page.locator(".msg-user .msg-body").last.inner_text() == "line one\nline two"

    page.reload()
    assert page.locator(".msg").count() == 4  # persisted
    assert page.locator("#conv-list li").count() == 1

    page.click(".brand")
    card = page.locator(".project-card")
    assert card.locator("h2").inner_text() == "Support bot"
    facts = card.locator(".facts").inner_text()
    assert "prompt v1" in facts and "1 conversation" in facts and "0 files" in facts
    assert "just now" in facts
    assert page.problems == []
