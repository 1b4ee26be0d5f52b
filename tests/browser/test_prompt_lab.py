"""The prompt lab in real Chromium: the model picker, a candidate saved with another model,
a chat pinned to it (the fake provider sees the model), a canary share, then promotion."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import chat_ready, login, reply_done, unlabelled_inputs
from tests.factories import make_project, make_user

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]


def test_candidate_with_another_model_pinned_chat_canary_and_promotion(
    app, live_server, page, fake, shot
):
    owner = make_user(app, email="ada@example.com", name="Ada")
    project_id = make_project(app, owner, name="Support bot", system_prompt="You are terse.")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/prompts")

    # The picker lists the allowlist, with the version's model chosen.
    options = page.locator("#model option").all_inner_texts()
    assert options == [m["name"] for m in app.config["MODELS"]]
    assert page.input_value("#model") == "gpt-4o-mini"
    assert unlabelled_inputs(page) == []

    page.fill("#content", "You are terse.\nAnswer like a pirate.")
    page.select_option("#model", "gpt-4o")
    page.fill("#temperature", "0.4")
    page.fill("#note", "pirate, bigger model")
    with page.expect_navigation():
        page.click("text=Save as candidate")
    expect(page.locator(".alert-success")).to_contain_text("Saved as version 2, the candidate")
    expect(page.locator("#release-production")).to_contain_text("v1 · gpt-4o-mini")
    expect(page.locator("#release-candidate")).to_contain_text("v2 · gpt-4o")
    candidate = page.locator(".history-item.is-candidate")
    expect(candidate.locator(".version-settings")).to_have_text(
        "gpt-4o · temperature 0.4 · 1,024 tokens max"
    )
    # The editor now works on the candidate.
    assert page.input_value("#model") == "gpt-4o"
    assert page.input_value("#temperature") == "0.4"

    # Compare it with production: the Compare tab opens with both versions chosen.
    page.click("#compare-candidate")
    page.wait_for_url(f"**/projects/{project_id}/compare?left=2&right=1")
    assert (page.input_value("#left-version"), page.input_value("#right-version")) == ("2", "1")
    page.go_back()

    # Try it: a new chat pinned to v2 (production is untouched).
    page.click("#chat-candidate")
    page.wait_for_url(f"**/projects/{project_id}?version=2")
    chat_ready(page)
    expect(page.locator(".chat-head .badge.pin")).to_have_text("Pinned to v2")
    page.fill("#message", "Ahoy?")
    page.keyboard.press("Enter")
    reply_done(page)
    assert fake.calls("responses")[-1].json["model"] == "gpt-4o"
    assert fake.calls("responses")[-1].json["temperature"] == 0.4
    expect(page.locator(".msg-assistant .msg-info").last).to_contain_text("prompt v2")
    expect(page.locator(".conv-item.is-current .badge.pin")).to_have_text("v2")
    assert "version=" not in page.url and "c=" in page.url
    page.reload()
    chat_ready(page)
    expect(page.locator(".chat-head .badge.pin")).to_have_text("Pinned to v2")
    shot(page, "chat-pinned")

    # A canary share, then promotion.
    page.goto(f"{live_server}/projects/{project_id}/prompts")
    page.fill("#percent", "150")
    with page.expect_navigation():
        page.click("text=Set share")
    expect(page.locator("#percent-error")).to_have_text("Use a share from 0 to 100.")
    page.fill("#percent", "10")
    with page.expect_navigation():
        page.click("text=Set share")
    expect(page.locator(".history-item.is-candidate .badge.candidate")).to_have_text(
        "candidate · 10 %"
    )
    shot(page, "prompt-release", full_page=True)
    with page.expect_navigation():
        page.click("#promote")
    expect(page.locator(".alert-success")).to_have_text("Version 2 is promoted: it is now live.")
    expect(page.locator("#release-production")).to_contain_text("v2 · gpt-4o")
    expect(page.locator("#release-candidate")).to_contain_text("none")
    assert page.locator(".history-item.is-active").get_attribute("data-version") == "2"
    # The refused share was answered 422 (a form error), which Chromium logs as a failed load.
    assert page.problems == [
        "console: Failed to load resource: the server responded with a status of 422 "
        "(UNPROCESSABLE ENTITY)"
    ]
