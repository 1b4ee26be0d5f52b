"""The output-format editor in real Chromium: a bad schema is a form error beside its field, a
good one saves a version whose chat replies (the fake provider saw ``text.format``) are shown
as formatted JSON and marked valid or not; a label pins a chat from the Prompt tab."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import chat_ready, login, reply_done, unlabelled_inputs
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5, openrouter=False)]

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_format_editor_json_replies_and_a_label(app, live_server, page, fake, shot):
    owner = make_user(app, email="ada@example.com", name="Ada")
    project_id = make_project(app, owner, name="Support bot", system_prompt="Answer in JSON.")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/prompts")
    assert page.input_value("#output_format") == "text"
    assert unlabelled_inputs(page) == []

    # Not JSON, then not a JSON Schema: each a form error on the schema field.
    page.select_option("#output_format", "json_schema")
    page.fill("#output_schema", '{"type": "object",')
    with page.expect_navigation():
        page.click("text=Save and make live")
    expect(page.locator("#output_schema-error")).to_contain_text("This is not JSON")
    assert page.get_attribute("#output_schema", "aria-invalid") == "true"
    page.fill("#output_schema", '{"type": "nonsense"}')
    with page.expect_navigation():
        page.click("text=Save and make live")
    expect(page.locator("#output_schema-error")).to_contain_text("Not a valid JSON Schema")

    page.fill("#output_schema", json.dumps(SCHEMA, indent=2))
    with page.expect_navigation():
        page.click("text=Save and make live")
    expect(page.locator(".alert-success")).to_contain_text("Saved as version 2")
    assert page.input_value("#output_format") == "json_schema"
    assert json.loads(page.input_value("#output_schema")) == SCHEMA
    shot(page, "prompt-output-format", full_page=True)

    # Label v2 "staging" and start a chat from the label.
    page.fill("#name", "staging")
    page.fill("#version", "2")
    with page.expect_navigation():
        page.click("text=Add label")
    row = page.locator("tr[data-label=staging]")
    expect(row).to_contain_text("v2")
    fake.script("responses", Scenario(text='{"answer": "forty-two"}'), Scenario(text="Sorry."))
    row.get_by_role("link", name="New chat").click()
    page.wait_for_url(f"**/projects/{project_id}?label=staging")
    chat_ready(page)
    expect(page.locator(".chat-head .badge.pin")).to_have_text("Pinned to v2")
    page.fill("#message", "What is the answer?")
    page.keyboard.press("Enter")
    reply_done(page)
    sent = fake.calls("responses")[-1].json
    assert sent["text"]["format"] == {
        "type": "json_schema",
        "name": "reply",
        "schema": SCHEMA,
        "strict": True,
    }
    reply = page.locator(".msg-assistant").last
    # Formatted: a highlighted JSON block, one key per line.
    expect(reply.locator("pre code.language-json")).to_have_text('{\n  "answer": "forty-two"\n}\n')
    expect(reply.locator(".msg-info")).to_contain_text("valid JSON")

    page.fill("#message", "And again?")
    page.keyboard.press("Enter")
    reply_done(page)
    expect(page.locator(".msg-assistant .msg-info").last).to_contain_text("invalid JSON: Not JSON")
    page.reload()
    chat_ready(page)
    expect(page.locator(".msg-assistant .msg-info").last).to_contain_text("invalid JSON")
    shot(page, "chat-json-reply")

    # The metrics count the checked replies and the invalid one.
    page.goto(f"{live_server}/projects/{project_id}/prompts?window=24h")
    expect(page.locator(".metrics-row[data-version='2'] .format-invalid")).to_contain_text(
        "50% (1/2)"
    )
    # The refused saves were answered 422 (form errors), which Chromium logs as failed loads.
    assert [p for p in page.problems if "422" not in p] == []
