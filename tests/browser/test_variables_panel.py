"""The chat page's template variables panel in real Chromium against the fake provider
(docs/templates.md): a missing required value is refused by name, the values typed there reach
the provider with a new conversation's first message, the reply shows them under "Variables",
and Save changes them for the next reply of the conversation."""

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Conversation, User
from app.prompts import services as prompt_services
from tests.browser.helpers import chat_ready, login, reply_done
from tests.factories import make_project, make_user

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def project_id(app, owner):
    project_id = make_project(app, owner, name="Support bot", system_prompt="Be kind.")
    with app.app_context():
        prompt_services.create_version(
            user=db.session.get(User, owner.id),
            project_id=project_id,
            content="You help {{ customer_name }}.{% if vip %} Be extra kind.{% endif %}",
            variables=[
                {"name": "customer_name", "type": "string", "description": "Who is writing"},
                {"name": "vip", "type": "boolean", "default": False, "required": False},
            ],
        )
    return project_id


REFUSED = (
    "console: Failed to load resource: the server responded with a status of 422 "
    "(UNPROCESSABLE ENTITY)"
)


def send(page, text):
    page.fill("#message", text)
    page.keyboard.press("Enter")


def test_the_variables_panel_sets_edits_and_shows_the_values(
    app, fake, live_server, page, owner, project_id, shot
):
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}")
    chat_ready(page)
    panel = page.locator("#vars-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_label("customer_name")).to_be_visible()
    expect(panel.locator("#vars-save")).to_be_hidden()  # nothing to save before a conversation

    # Without the required value: refused by name, on the page and by the field.
    send(page, "Hello")
    expect(page.locator("#composer-error")).to_contain_text("customer_name")
    expect(panel.locator("#var-customer_name-error")).to_contain_text("required")
    assert fake.calls("responses") == []

    panel.get_by_label("customer_name").fill("Grace")
    panel.get_by_label("vip").check()
    send(page, "Hello")
    reply_done(page)
    assert fake.calls("responses")[-1].json["instructions"] == "You help Grace. Be extra kind."
    reply = page.locator(".msg-assistant").last
    reply.locator(".msg-vars > summary").click()
    expect(reply.locator(".msg-vars")).to_contain_text("customer_name")
    expect(reply.locator(".msg-vars")).to_contain_text('"Grace"')
    with app.app_context():
        conversation = db.session.scalar(db.select(Conversation))
        assert conversation.variables == {"customer_name": "Grace", "vip": True}
        conversation_id = conversation.id

    # Save changes the conversation's values: the next reply uses them, and a reload shows them.
    expect(panel.locator("#vars-save")).to_be_visible()
    panel.get_by_label("customer_name").fill("Lin")
    panel.get_by_label("vip").uncheck()
    panel.locator("#vars-save").click()
    expect(panel.locator("#vars-status")).to_contain_text("Saved")
    send(page, "And now?")
    reply_done(page)
    assert fake.calls("responses")[-1].json["instructions"] == "You help Lin."
    page.goto(f"{live_server}/projects/{project_id}?c={conversation_id}")
    chat_ready(page)
    expect(page.locator("#vars-panel").get_by_label("customer_name")).to_have_value("Lin")
    expect(page.locator(".msg-assistant .msg-vars")).to_have_count(2)
    shot(page, "chat-variables")
    assert page.problems == [REFUSED]  # the first send's 422, as the browser logs it


def test_a_value_of_the_wrong_kind_is_shown_by_its_field(live_server, page, owner, project_id):
    """A list variable given from the panel arrives as a list; a Save the server refuses (an
    empty required value is fine, a bad type is not) puts its message by the field."""
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}")
    chat_ready(page)
    panel = page.locator("#vars-panel")
    panel.get_by_label("customer_name").fill("Grace")
    send(page, "Hello")
    reply_done(page)
    # Change the field's kind under the page (as a stale page would send): a number for a string.
    page.evaluate("document.querySelector('[data-variable=customer_name]').dataset.type = 'number'")
    panel.get_by_label("customer_name").evaluate("el => { el.type = 'number'; el.value = '5'; }")
    panel.locator("#vars-save").click()
    expect(panel.locator("#var-customer_name-error")).to_contain_text("string")
    expect(panel.get_by_label("customer_name")).to_have_attribute("aria-invalid", "true")
    assert page.problems == [REFUSED]


def test_the_editor_finds_variables_as_they_are_typed(live_server, page, owner, project_id):
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/prompts")
    names = page.locator("#vars-rows input[name$='-name']")
    expect(names.nth(0)).to_have_value("customer_name")
    expect(names.nth(1)).to_have_value("vip")
    page.fill(
        "#content",
        "Order {{ order_id }} for {{ customer_name }}.{% for item in items %}{{ item }}{% endfor %}"
        "{% raw %}{{ not_a_variable }}{% endraw %}",
    )
    expect(page.locator("#vars-detected")).to_contain_text("order_id, items")
    values = [names.nth(i).input_value() for i in range(names.count())]
    assert values == ["customer_name", "vip", "order_id", "items", ""]
    page.click("button[name=save_live]")
    expect(page.locator(".alert-success")).to_contain_text("Saved as version 3")
    assert page.problems == []
