"""The main path in a real browser: register, create a project with a prompt, chat and watch
the reply stream in, Markdown rendered, hostile text shown as text."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_register_create_project_and_chat(app, live_server, page):
    app.config["OFFLINE_TOKEN_DELAY_MS"] = 30  # slow enough to see the stream arrive in pieces
    page.goto(live_server + "/register")
    page.fill("#email", "ada@example.com")
    page.fill("#password", "correct horse battery")
    page.fill("#confirm", "correct horse battery")
    page.click("main button[type=submit]")
    page.wait_for_url(live_server + "/")
    assert "Your projects" in page.inner_text("h1")

    page.click("text=New project")
    page.fill("#name", "Support <b>bot</b>")
    page.fill("#system_prompt", "You are terse.")
    page.click("main button[type=submit]")
    assert page.inner_text("h1") == "Support <b>bot</b>"  # shown as text
    assert page.is_visible("#offline-banner")
    assert page.evaluate("document.activeElement.id") == "message"
    assert not page.is_visible("#stop")  # only while a reply streams

    page.fill("#message", "Hello <img src=x onerror=alert(1)>")
    page.keyboard.press("Enter")
    reply = page.locator(".msg-assistant").last
    # The reply grows in pieces while it streams.
    reply.locator(".msg-body").wait_for()
    lengths = []
    for _ in range(40):
        lengths.append(len(reply.inner_text()))
        if "streaming" not in (reply.get_attribute("class") or ""):
            break
        page.wait_for_timeout(50)
    assert len({n for n in lengths if n}) > 1, lengths
    page.wait_for_selector(".msg-assistant.status-complete")
    assert reply.locator("strong", has_text="Offline demo model.").count() == 1  # Markdown
    assert "offline-demo · offline" in reply.locator(".msg-meta").inner_text()
    user = page.locator(".msg-user").last.inner_text()
    assert user == "Hello <img src=x onerror=alert(1)>"
    assert "c=" in page.url

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)
    page.reload()
    assert page.locator(".msg").count() == 2  # persisted
    assert page.problems == []
