"""Issue 32's "done when", in real Chromium and the official ``openai`` package: an owner
creates a key on the API keys page, an app streams the project's production answer through
``/v1/chat/completions`` with it, the conversation shows up on the project page, and the key
revoked on the page is refused at the app's next call."""

from __future__ import annotations

import openai
import pytest

from tests.browser.helpers import login
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(openrouter=False)]


def test_create_a_key_use_it_from_an_app_and_revoke_it(app, live_server, page, shot, fake):
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner, name="Support Bot", system_prompt="You help.")
    login(page, live_server, owner)
    page.click("#user-menu summary")
    page.click("#user-menu >> text=API keys")
    page.wait_for_url(f"{live_server}/keys")
    page.fill("#name", "help widget")
    page.select_option("#project_id", label="Support Bot only (support-bot): a project key")
    page.fill("#monthly_tokens", "200000")
    page.click("main button[type=submit] >> text=Create key")
    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("phk_")
    shot(page, "api-keys", full_page=True)

    fake.script("responses", Scenario(deltas=["Your order ", "ships today."]))
    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key=secret, max_retries=0)
    stream = client.chat.completions.create(
        model="support-bot",
        messages=[{"role": "user", "content": "Where is my order?"}],
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "Your order ships today."
    )

    page.goto(f"{live_server}/projects/{project_id}")
    item = page.locator("#conv-list li", has_text="Where is my order?")
    assert item.locator(".source-badge").inner_text() == "API"

    page.goto(f"{live_server}/keys")
    assert secret not in page.content()
    assert "from 127.0.0.1" in page.locator("tr", has_text="help widget").inner_text()  # last use
    page.click("button[aria-label='Revoke help widget']")
    page.wait_for_selector("text=is revoked")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert page.problems == []
